//! `palaver irc` against a real cluster, over real TCP: registration (plain, PASS, SASL PLAIN),
//! rooms and private messages in both directions with a person on the client core, and the
//! answers IRC clients expect to bad input and abuse.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{bin, name, Cluster};
use palaver_irc::line::Message;
use palaver_proto::Name;
use palaver_testkit::Proc;

const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct horse battery";

/// A `palaver irc` process for a cluster.
struct Irc {
    proc: Proc,
    addr: String,
}

impl Irc {
    fn start(cluster: &Cluster, extra: &[&str]) -> Irc {
        let extra: Vec<&str> = ["--name", "irc.test"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let (proc, addr) = common::gateway(
            cluster,
            "irc",
            "127.0.0.1:0",
            &extra,
            "connect an IRC client to ",
            ' ',
        );
        let addr = addr.trim_end_matches(',').to_owned();
        Irc { proc, addr }
    }

    /// Where it takes TLS connections, when it does.
    fn tls_addr(&self) -> String {
        let log = self.proc.log();
        let rest = log.split("with TLS to ").nth(1).expect("a TLS listener");
        rest.split(' ').next().unwrap().to_owned()
    }
}

/// One IRC client connection: lines written, lines read and kept.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    seen: Vec<String>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// The next line, if one comes within the read timeout; `None` at the end too.
    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.reader.read_line(&mut l) {
            Ok(0) => None,
            Ok(_) => Some(l.trim_end_matches(['\r', '\n']).to_owned()),
            Err(_) => None,
        }
    }

    /// Reads until a line satisfies `pred`; panics with what was read when none does in time.
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(l) = self.line() {
                self.seen.push(l.clone());
                if pred(&l) {
                    return l;
                }
            }
        }
        panic!("no line {what}; read:\n{}", self.seen.join("\n"));
    }

    /// Reads until the server closes the connection; the lines read.
    fn until_closed(&mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        while Instant::now() < deadline {
            let mut l = String::new();
            match self.reader.read_line(&mut l) {
                Ok(0) => return got,
                Ok(_) => got.push(l.trim_end().to_owned()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return got,
            }
        }
        panic!(
            "the server kept the connection open; read:\n{}",
            got.join("\n")
        );
    }

    /// Registers as `nick` (with `pass`, if any) and waits for the end of the MOTD.
    fn register(addr: &str, nick: &str, pass: Option<&str>) -> Client {
        let mut c = Client::connect(addr);
        if let Some(p) = pass {
            c.send(&format!("PASS :{p}"));
        }
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :{nick}"));
        c.expect("welcoming", |l| l.contains(&format!(" 001 {nick} ")));
        c.expect("ending the MOTD", |l| l.contains(" 376 "));
        c
    }

    /// Reads the next `chathistory` batch (after any other lines): its messages, parsed.
    fn history_batch(&mut self) -> Vec<Message> {
        let start = self.expect("starting a chathistory batch", |l| {
            l.contains(" BATCH +") && l.contains(" chathistory ")
        });
        let id = parse(&start).params[0][1..].to_owned();
        let mut got = Vec::new();
        loop {
            let l = self.expect("in the batch", |_| true);
            let m = parse(&l);
            if m.command == "BATCH" && m.params[0] == format!("-{id}") {
                return got;
            }
            assert_eq!(m.tag_value("batch"), Some(Some(id.as_str())), "{l}");
            got.push(m);
        }
    }

    fn join(&mut self, room: &str) {
        self.send(&format!("JOIN #{room}"));
        self.expect("ending NAMES", |l| {
            l.contains(" 366 ") && l.contains(&format!("#{room} "))
        });
    }
}

/// Waits until server 0's posts of `room` are `done` (a write is acknowledged once the live
/// servers have it, so this is brief); its posts then.
fn stored_in(cluster: &Cluster, room: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let of = palaver_proto::Conversation::Channel(name(room));
    palaver_testkit::wait_until(WAIT, || done(&common::history(cluster, 0, &of)));
    common::history(cluster, 0, &of)
}

fn parse(line: &str) -> Message {
    Message::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// A person on the client core, following their own topic and `rooms`.
struct Person {
    conn: palaver_client::Connection,
    sub: palaver_client::Subscriber,
    name: Name,
}

impl Person {
    fn login(cluster: &Cluster, who: &str, rooms: &[&str]) -> Person {
        let mut conn = cluster.connection();
        let me = name(who);
        conn.login(&me).expect("login");
        let mut sub = cluster.subscriber();
        sub.subscribe(who).expect("subscribe");
        for r in rooms {
            sub.subscribe(r).expect("subscribe");
        }
        Person {
            conn,
            sub,
            name: me,
        }
    }

    /// Joins `den` (which `ana` is in), and waits until `ana` sees it: her subscription to
    /// the room is then live.
    fn join_den_seen_by(&mut self, ana: &mut Client) {
        let joined = self.conn.call(
            palaver_proto::Envelope::new("join")
                .with("user", self.name.as_str())
                .with("channel", "den"),
        );
        assert!(joined.is_ok(), "{joined:?}");
        let line = format!(":{0}!{0}@palaver JOIN #den", self.name);
        ana.expect("with the join", |l| l == line);
    }

    /// The next publication whose text is `text`, within the wait.
    fn receive(&mut self, text: &str) -> palaver_proto::Envelope {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(r) = self
                .sub
                .recv_timeout(Duration::from_millis(100))
                .expect("receive")
            {
                if r.publication
                    .envelope
                    .data
                    .opt_str("message")
                    .ok()
                    .flatten()
                    == Some(text)
                {
                    return r.publication.envelope;
                }
            }
        }
        panic!("`{text}` never arrived");
    }
}

#[test]
fn an_irc_person_and_a_client_core_person_chat_in_a_room_and_privately_both_ways() {
    let cluster = Cluster::start(&bin(), 3);
    let irc = Irc::start(&cluster, &[]);
    let mut bob = Person::login(&cluster, "bob", &[]);
    let mut ana = Client::register(&irc.addr, "ana", None);
    // A room that does not exist is created by joining it, owned by the joiner.
    ana.join("den");
    assert!(
        ana.seen.iter().any(|l| l.contains(" 353 ana = #den :@ana")),
        "{:?}",
        ana.seen
    );
    let den = name("den");
    bob.sub.subscribe("den").unwrap();
    bob.join_den_seen_by(&mut ana);
    // The client core posts; the IRC client sees it live.
    cluster.await_subscription(&mut bob.conn, &mut bob.sub, &bob.name, &den);
    bob.conn
        .publish(&bob.name, &den, "hello from the terminal")
        .unwrap();
    ana.expect("with bob's post", |l| {
        l == ":bob!bob@palaver PRIVMSG #den :hello from the terminal"
    });
    // The IRC client posts; the client core sees it.
    ana.send("PRIVMSG #den :hello from irc");
    let post = bob.receive("hello from irc");
    assert_eq!(post.data.opt_str("user").unwrap(), Some("ana"));
    // A paste, in one write: it reaches the room whole and in the order sent, live and in
    // the history every server keeps (the gateway sends the lines that wait as one request).
    let paste: Vec<String> = (0..40).map(|i| format!("pasted line {i}")).collect();
    let raw: String = paste
        .iter()
        .map(|l| format!("PRIVMSG #den :{l}\r\n"))
        .collect();
    ana.send_raw(raw.as_bytes());
    for line in &paste {
        bob.receive(line);
    }
    let history = bob
        .conn
        .call(
            palaver_proto::Envelope::new("history")
                .with("channel", "den")
                .with("limit", 40),
        )
        .expect("history");
    let texts: Vec<String> = match history.data.get("messages") {
        Some(rmpv::Value::Array(messages)) => messages
            .iter()
            .filter_map(|m| {
                let rmpv::Value::Map(m) = m else { return None };
                let m = palaver_proto::Map(m.clone());
                m.opt_str("message").ok().flatten().map(str::to_owned)
            })
            .collect(),
        other => panic!("no messages in {other:?}"),
    };
    assert_eq!(texts, paste);
    // Private messages, both ways.
    ana.send("PRIVMSG bob :psst, bob");
    let pm = bob.receive("psst, bob");
    assert_eq!(pm.data.opt_str("src").unwrap(), Some("ana"));
    bob.conn
        .message(&bob.name, &name("ana"), "psst, ana")
        .unwrap();
    ana.expect("with bob's private message", |l| {
        l == ":bob!bob@palaver PRIVMSG ana :psst, ana"
    });
    // A private message to nobody is a 401 with the cluster's reason.
    ana.send("PRIVMSG nobody-here :hello?");
    ana.expect("refusing a message to nobody", |l| {
        l.starts_with(":irc.test 401 ana nobody-here :")
    });
    // Topic, names, list, whois, part.
    ana.send("TOPIC #den :plans for the week");
    ana.expect("with the new topic", |l| {
        l == ":ana!ana@palaver TOPIC #den :plans for the week"
    });
    ana.send("LIST");
    ana.expect("listing den", |l| l.contains(" 322 ana #den "));
    ana.send("WHOIS bob");
    ana.expect("knowing bob", |l| l.contains(" 311 ana bob bob palaver "));
    ana.send("PART #den");
    ana.expect("parting", |l| l == ":ana!ana@palaver PART #den");
    // Joining again plays the recent posts back, the paste's last line among them.
    ana.send("JOIN #den");
    ana.expect("with the post played back", |l| {
        l.ends_with("PRIVMSG #den :pasted line 39")
    });
    ana.send("QUIT :bye");
    let last = ana.until_closed();
    assert!(
        last.iter()
            .any(|l| l.starts_with("ERROR :Closing link: bye")),
        "{last:?}"
    );
}

#[test]
fn sasl_and_pass_log_in_to_a_password_account_and_nobody_else_can_take_its_nick() {
    let cluster = Cluster::start(&bin(), 3);
    let irc = Irc::start(&cluster, &[]);
    let mut conn = cluster.connection();
    conn.register(&name("cy"), PASSWORD).expect("register");
    // Without the password the nick is refused, and another one can be chosen.
    let mut c = Client::connect(&irc.addr);
    c.send("NICK cy");
    c.send("USER cy 0 * :Cy");
    c.expect("refusing the nick", |l| {
        l.starts_with(":irc.test 433 * cy :")
    });
    c.send("NICK cy-guest");
    c.expect("welcoming the other nick", |l| l.contains(" 001 cy-guest "));
    // SASL PLAIN with the right password.
    let mut s = Client::connect(&irc.addr);
    s.send("CAP LS 302");
    s.expect("offering SASL", |l| {
        l.contains("CAP * LS :") && l.contains("sasl=PLAIN")
    });
    s.send("NICK whoever");
    s.send("USER whoever 0 * :W");
    s.send("CAP REQ :sasl server-time");
    s.expect("acknowledging", |l| l.contains(" ACK :sasl server-time"));
    s.send("AUTHENTICATE PLAIN");
    s.expect("asking for the payload", |l| l == "AUTHENTICATE +");
    let wrong = base64::engine::general_purpose::STANDARD.encode("\0cy\0not it");
    s.send(&format!("AUTHENTICATE {wrong}"));
    s.expect("refusing the wrong password", |l| l.contains(" 904 "));
    s.send("AUTHENTICATE PLAIN");
    let right = base64::engine::general_purpose::STANDARD.encode(format!("\0cy\0{PASSWORD}"));
    s.send(&format!("AUTHENTICATE {right}"));
    s.expect("logging in", |l| {
        l.contains(" 900 whoever ") && l.ends_with("You are now logged in as cy")
    });
    s.expect("succeeding", |l| l.contains(" 903 "));
    s.send("CAP END");
    s.expect("taking the account's nick", |l| {
        l == ":whoever!whoever@palaver NICK cy"
    });
    s.expect("welcoming cy", |l| l.contains(" 001 cy "));
    // PASS works too.
    let mut p = Client::register(&irc.addr, "cy", Some(PASSWORD));
    p.join("hall");
    // Both of cy's connections are cy: a post from one reaches the other's room.
    s.join("hall");
    p.send("PRIVMSG #hall :from my other client");
    s.expect("with the other client's post", |l| {
        l.ends_with("PRIVMSG #hall :from my other client")
    });
}

#[test]
fn bad_input_gets_the_replies_irc_clients_expect_and_changes_nothing() {
    let cluster = Cluster::start(&bin(), 3);
    let irc = Irc::start(&cluster, &["--per-address", "4", "--flood", "30"]);
    let mut c = Client::connect(&irc.addr);
    c.send("JOIN #den");
    c.expect("refusing before registration", |l| {
        l == ":irc.test 451 * :You have not registered"
    });
    c.send("NICK #bad");
    c.expect("refusing the nick", |l| {
        l.starts_with(":irc.test 432 * #bad ")
    });
    c.send("NICK ana");
    c.send("USER ana 0 * :Ana");
    c.expect("welcoming", |l| l.contains(" 001 ana "));
    c.send("FROBNICATE now");
    c.expect("not knowing it", |l| {
        l == ":irc.test 421 ana FROBNICATE :Unknown command"
    });
    c.send(&format!("PRIVMSG #den :{}", "x".repeat(600)));
    c.expect("refusing the long line", |l| {
        l.contains(" 417 ana :Input line was too long")
    });
    // A line with no end in sight is skipped to its end, and the next one is read.
    c.send_raw(&vec![b'y'; 10_000]);
    c.send_raw(b"\r\nPING after\r\n");
    c.expect("answering after the long line", |l| {
        l.ends_with("PONG irc.test :after")
    });
    c.send_raw(b"PRIVMSG #den :\xff\xfe\r\n");
    c.expect("refusing invalid UTF-8", |l| {
        l.contains("FAIL * INVALID_UTF8")
    });
    c.send("PRIVMSG #nowhere :hello");
    c.expect("refusing a post to a room that does not exist", |l| {
        l.starts_with(":irc.test 404 ana #nowhere :")
    });
    // Nothing of it was stored: no such room, no post.
    let mut conn = cluster.connection();
    assert!(!conn
        .channels()
        .unwrap()
        .iter()
        .any(|ch| ch == "nowhere" || ch == "den"));
    // Too many connections from one address.
    let _others: Vec<Client> = (0..3).map(|_| Client::connect(&irc.addr)).collect();
    let mut fifth = Client::connect(&irc.addr);
    let last = fifth.until_closed();
    assert!(
        last.iter()
            .any(|l| l.starts_with("ERROR :Too many connections")),
        "{last:?}"
    );
    // A flood is cut off.
    let lines: String = (0..60).map(|i| format!("PING f{i}\r\n")).collect();
    c.send_raw(lines.as_bytes());
    let last = c.until_closed();
    assert!(
        last.iter().any(|l| l.starts_with("ERROR :Flooding")),
        "{last:?}"
    );
}

#[test]
fn a_client_over_its_request_rate_is_slowed_down_not_refused() {
    // Regression: the requests over the rate were refused, and the client saw errors for
    // commands it had every right to send; IRC servers hold such a client back instead.
    let cluster = Cluster::start(&bin(), 3);
    let irc = Irc::start(&cluster, &["--rate", "5", "--burst", "5"]);
    let mut c = Client::register(&irc.addr, "pacy", None);
    c.join("pace");
    let start = std::time::Instant::now();
    let n = 16;
    let lines: String = (0..n).map(|_| "NAMES #pace\r\n").collect();
    c.send_raw(lines.as_bytes());
    for i in 0..n {
        c.expect(&format!("names {i} answered"), |l| {
            l.contains(" 366 ") || l.contains(" 403 ")
        });
    }
    // At 5 a second, with at most 4 at once, the last cannot have gone before (16 - 4) / 5 s.
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(2_400),
        "paced: {:?}",
        start.elapsed()
    );
    assert!(
        !c.seen.iter().any(|l| l.contains(" 403 ")),
        "none refused: {:#?}",
        c.seen
    );
}

/// Posts that `CHATHISTORY` pages through: three groups twelve hours apart (the servers' clocks
/// are moved), read back by msgid from the newest to the oldest, by time, between two times,
/// around a message, and as targets, each compared with what the servers hold.
#[test]
fn chathistory_pages_through_a_day_of_posts_by_msgid_and_by_time() {
    const HALF_DAY_MS: i64 = 12 * 3_600_000;
    const GROUP: usize = 250;
    let cluster = Cluster::start_skewed(&bin(), &[-2 * HALF_DAY_MS; 3]);
    let irc = Irc::start(&cluster, &[]);
    let mut bob = Person::login(&cluster, "bob", &[]);
    let diary = name("diary");
    for (service, ok) in [("channel", "sucesso"), ("join", "OK")] {
        let r = bob.conn.call(
            palaver_proto::Envelope::new(service)
                .with("user", "bob")
                .with("channel", "diary"),
        );
        assert_eq!(r.unwrap().data.opt_str("status").unwrap(), Some(ok));
    }
    for group in 0..3 {
        if group > 0 {
            for i in 0..3 {
                let shift = HALF_DAY_MS.to_string();
                let (ok, out) =
                    common::admin(&cluster, &["set-clock", &Cluster::server_name(i), &shift]);
                assert!(ok, "{out}");
            }
        }
        for n in 0..GROUP {
            common::post(
                &mut bob.conn,
                &bob.name,
                &diary,
                &format!("g{group} post {n}"),
            );
        }
    }
    stored_in(&cluster, "diary", |posts| posts.len() == 3 * GROUP);
    let of = palaver_proto::Conversation::Channel(diary.clone());
    let held = common::store(&cluster.data_dir(0))
        .whole_history(&of)
        .unwrap();
    assert_eq!(held.len(), 3 * GROUP);
    let text = |e: &palaver_proto::Event| match &e.kind {
        palaver_proto::EventKind::Message(palaver_proto::MessageKind::Post { message, .. }) => {
            message.clone()
        }
        other => panic!("not a post: {other:?}"),
    };
    // As the gateway shows times: down to the millisecond.
    let ms = |e: &palaver_proto::Event| (e.timestamp * 1000.0).floor() as u64;
    let span = ms(&held[held.len() - 1]).saturating_sub(ms(&held[0]));
    assert!(span > 20 * 3_600_000, "the posts span {span} ms");
    let all: Vec<String> = held.iter().map(text).collect();
    let iso = |e: &palaver_proto::Event| palaver_irc::session::iso_time(ms(e) as f64 / 1000.0);

    let mut ana = Client::connect(&irc.addr);
    ana.send("CAP LS 302");
    ana.send("CAP REQ :batch server-time message-tags draft/chathistory labeled-response");
    ana.send("NICK ana");
    ana.send("USER ana 0 * :Ana");
    ana.expect("acknowledging", |l| l.contains(" CAP * ACK "));
    ana.send("CAP END");
    ana.expect("offering history", |l| l.contains(" CHATHISTORY=500 "));
    ana.expect("ending the MOTD", |l| l.contains(" 376 "));
    ana.join("diary");
    let texts =
        |page: &[Message]| -> Vec<String> { page.iter().map(|m| m.params[1].clone()).collect() };
    // From the newest back to the oldest, 100 at a time, by msgid.
    ana.send("CHATHISTORY LATEST #diary * 100");
    let mut pages = vec![ana.history_batch()];
    loop {
        let oldest = pages
            .last()
            .unwrap()
            .first()
            .map(|m| m.tag_value("msgid").flatten().expect("a msgid").to_owned());
        let Some(oldest) = oldest else { break };
        ana.send(&format!("CHATHISTORY BEFORE #diary msgid={oldest} 100"));
        pages.push(ana.history_batch());
    }
    assert_eq!(
        pages.len(),
        3 * GROUP / 100 + 2,
        "pages of 100, then the rest, then none"
    );
    let mut paged = Vec::new();
    for page in pages.iter().rev() {
        for m in page {
            assert_eq!(m.source.as_deref(), Some("bob!bob@palaver"));
            assert_eq!(m.params[0], "#diary");
            assert!(m.tag_value("time").flatten().is_some(), "{m:?}");
        }
        paged.extend(texts(page));
    }
    assert_eq!(paged, all, "every post once, in the servers' order");
    // After the first group's last post, by time: the day's other posts, from the oldest.
    let last_of_first = &held[GROUP - 1];
    ana.send(&format!(
        "CHATHISTORY AFTER #diary timestamp={} 300",
        iso(last_of_first)
    ));
    let want: Vec<String> = held
        .iter()
        .filter(|e| ms(e) > ms(last_of_first))
        .take(300)
        .map(text)
        .collect();
    assert_eq!(want.len(), 300);
    assert_eq!(texts(&ana.history_batch()), want);
    // Between the first and the third group: the second, whole.
    let first_of_third = &held[2 * GROUP];
    ana.send(&format!(
        "CHATHISTORY BETWEEN #diary timestamp={} timestamp={} 500",
        iso(last_of_first),
        iso(first_of_third)
    ));
    let between: Vec<String> = held
        .iter()
        .filter(|e| ms(e) > ms(last_of_first) && ms(e) < ms(first_of_third))
        .map(text)
        .collect();
    assert!(between.iter().all(|t| t.starts_with("g1 ")), "{between:?}");
    assert_eq!(texts(&ana.history_batch()), between);
    // Around a message: two before it, it, and two after.
    let m = paged.iter().position(|t| t == "g1 post 100").unwrap();
    let around_id = pages
        .iter()
        .flatten()
        .find(|x| x.params[1] == "g1 post 100")
        .and_then(|x| x.tag_value("msgid").flatten().map(str::to_owned))
        .unwrap();
    ana.send(&format!("CHATHISTORY AROUND #diary msgid={around_id} 5"));
    assert_eq!(texts(&ana.history_batch()), all[m - 2..m + 3]);
    // The rooms with posts in the day, labelled.
    ana.send(&format!(
        "@label=t1 CHATHISTORY TARGETS timestamp={} timestamp={} 10",
        iso(&held[0]),
        iso(&held[held.len() - 1])
    ));
    ana.expect("labelling the answer", |l| {
        l.starts_with("@label=t1 ") && l.contains(" BATCH +") && l.ends_with("labeled-response")
    });
    ana.expect("listing the diary", |l| {
        l.contains(" CHATHISTORY TARGETS #diary ") && l.ends_with(&iso(&held[held.len() - 1]))
    });
}

/// What arrives while an IRC person is away (posts in their rooms, private messages) is shown
/// when they come back, with its time, and only that once.
#[test]
fn what_was_missed_while_away_reaches_the_irc_client_once() {
    let cluster = Cluster::start(&bin(), 3);
    let irc = Irc::start(&cluster, &[]);
    let mut bob = Person::login(&cluster, "bob", &[]);
    let mut ana = Client::register(&irc.addr, "ana", None);
    ana.join("den");
    bob.join_den_seen_by(&mut ana);
    ana.send("QUIT :later");
    ana.until_closed();
    common::post(&mut bob.conn, &bob.name, &name("den"), "while you were out");
    bob.conn
        .message(&bob.name, &name("ana"), "call me")
        .unwrap();
    let back = |caps: bool| {
        let mut c = Client::connect(&irc.addr);
        if caps {
            c.send("CAP REQ :server-time");
        }
        c.send("NICK ana");
        c.send("USER ana 0 * :Ana");
        if caps {
            c.send("CAP END");
        }
        c.expect("rejoining den", |l| l == ":ana!ana@palaver JOIN #den");
        c
    };
    let mut ana = back(true);
    ana.expect("with the post missed", |l| {
        l.starts_with("@time=") && l.ends_with(" :bob!bob@palaver PRIVMSG #den :while you were out")
    });
    ana.expect("with the private message missed", |l| {
        l.starts_with("@time=") && l.ends_with(" :bob!bob@palaver PRIVMSG ana :call me")
    });
    ana.send("QUIT");
    ana.until_closed();
    // Taken: the next connection is not shown them again.
    let mut ana = back(false);
    ana.expect("ending den's names", |l| l.contains(" 366 ana #den "));
    // The inbox is asked for with the rooms' names, before NAMES ends; two round trips
    // later (a history read, a PING) its answer, were anything still in it, would be shown.
    ana.send("CHATHISTORY LATEST #den * 5");
    ana.expect("answering history", |l| {
        l.contains("PRIVMSG #den :while you were out")
    });
    ana.send("PING :done");
    ana.expect("ponging", |l| l.ends_with(" :done"));
    let shown: Vec<&String> = ana
        .seen
        .iter()
        .filter(|l| l.contains("call me") || l.contains("PRIVMSG #den"))
        .collect();
    assert_eq!(
        shown.len(),
        1,
        "only CHATHISTORY's copy of the post: {shown:?}"
    );
}

/// A browser's WebSocket to `palaver web`, driven synchronously: requests answered by `re`.
struct Browser {
    ws: tokio_tungstenite::tungstenite::WebSocket<TcpStream>,
    next: u64,
    kept: Vec<serde_json::Value>,
}

impl Browser {
    fn connect(addr: &str) -> Browser {
        use tokio_tungstenite::tungstenite;
        let stream = TcpStream::connect(addr).expect("connect to the web gateway");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).expect("handshake");
        Browser {
            ws,
            next: 1,
            kept: Vec::new(),
        }
    }

    fn next_text(&mut self) -> serde_json::Value {
        loop {
            let msg = self.ws.read().expect("a WebSocket message");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                return serde_json::from_str(&t).expect("JSON");
            }
        }
    }

    fn call(&mut self, service: &str, data: serde_json::Value) -> serde_json::Value {
        let re = self.next;
        self.next += 1;
        let text = serde_json::json!({"re": re, "service": service, "data": data}).to_string();
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .expect("send");
        loop {
            let v = self.next_text();
            if v["re"] == re {
                return v;
            }
            self.kept.push(v);
        }
    }

    /// Waits for a publication that `pred` accepts.
    fn publication(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        if let Some(i) = self.kept.iter().position(&pred) {
            return self.kept.remove(i);
        }
        loop {
            let v = self.next_text();
            if pred(&v) {
                return v;
            }
            self.kept.push(v);
        }
    }
}

/// The `time` tag of the line whose text is `text`, among those read.
fn time_of(c: &Client, text: &str) -> String {
    let line = c
        .seen
        .iter()
        .find(|l| l.ends_with(&format!(" :{text}")))
        .unwrap_or_else(|| panic!("`{text}` was not shown"));
    parse(line)
        .tag_value("time")
        .flatten()
        .expect("a time tag")
        .to_owned()
}

/// A read marker moved on the web is told to the person's IRC client, and one moved from IRC
/// reaches the web: both are Palaver's one marker.
#[test]
fn a_read_marker_moved_on_the_web_is_seen_on_irc_and_the_other_way() {
    let cluster = Cluster::start(&bin(), 3);
    let irc = Irc::start(&cluster, &[]);
    let (_web, web_addr) =
        common::gateway(&cluster, "web", "127.0.0.1:0", &[], "open http://", '/');
    let mut bob = Person::login(&cluster, "bob", &[]);
    let mut ana = Client::connect(&irc.addr);
    ana.send("CAP REQ :server-time draft/read-marker");
    ana.send("NICK ana");
    ana.send("USER ana 0 * :Ana");
    ana.send("CAP END");
    ana.expect("ending the MOTD", |l| l.contains(" 376 "));
    ana.send("JOIN #den");
    ana.expect("with no marker yet", |l| l == ":irc.test MARKREAD #den :*");
    ana.expect("ending NAMES", |l| l.contains(" 366 ana #den "));
    let den = name("den");
    bob.join_den_seen_by(&mut ana);
    common::post(&mut bob.conn, &bob.name, &den, "first");
    let second = common::post(&mut bob.conn, &bob.name, &den, "second");
    ana.expect("with the second post", |l| {
        l.ends_with("PRIVMSG #den :second")
    });
    let (t1, t2) = (time_of(&ana, "first"), time_of(&ana, "second"));
    // Ana reads on the web, up to the second post: her IRC client is told.
    let mut web = Browser::connect(&web_addr);
    assert_eq!(web.next_text()["service"], "hello");
    let r = web.call(
        "login",
        serde_json::json!({"user": "ana", "device": "laptop"}),
    );
    assert_eq!(r["data"]["status"], "sucesso", "{r}");
    let r = web.call("read", serde_json::json!({"id": second.to_string()}));
    assert_eq!(r["data"]["status"], "OK", "{r}");
    ana.expect("with the marker moved on the web", |l| {
        l == format!(":irc.test MARKREAD #den :timestamp={t2}")
    });
    // A marker never moves back: MARKREAD to the first post leaves it at the second.
    ana.send(&format!("MARKREAD #den timestamp={t1}"));
    let stands = ana.expect("with where the marker stands", |l| l.contains(" MARKREAD "));
    assert_eq!(stands, format!(":irc.test MARKREAD #den :timestamp={t2}"));
    let third = common::post(&mut bob.conn, &bob.name, &den, "third");
    ana.expect("with the third post", |l| {
        l.ends_with("PRIVMSG #den :third")
    });
    let t3 = time_of(&ana, "third");
    // From IRC, up to the third: the web is told, and `unread` agrees.
    ana.send(&format!("MARKREAD #den timestamp={t3}"));
    let moved =
        web.publication(|v| v["service"] == "read" && v["data"]["upto"] == third.to_string());
    assert_eq!(moved["data"]["channel"], "den");
    let r = web.call("unread", serde_json::json!({}));
    assert_eq!(r["data"]["channels"][0]["unread"], 0, "{r}");
}

/// `--tls-cert`/`--tls-key`: IRC over TLS on a second listener, with a certificate the test
/// makes; plain text on the TLS port gets nowhere, and a key that is not the certificate's
/// stops the gateway before it listens.
#[test]
fn irc_over_tls_with_a_certificate_the_test_makes() {
    use std::sync::Arc;
    let cluster = Cluster::start(&bin(), 3);
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (cluster.dir().join("irc.crt"), cluster.dir().join("irc.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let irc = Irc::start(
        &cluster,
        &[
            "--tls-cert",
            c,
            "--tls-key",
            k,
            "--tls-listen",
            "127.0.0.1:0",
        ],
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(irc.tls_addr()).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"NICK ana\r\nUSER ana 0 * :Ana\r\nJOIN #den\r\nPRIVMSG #den :over tls\r\n")
        .unwrap();
    tls.flush().unwrap();
    let mut lines = BufReader::new(tls);
    let mut read = Vec::new();
    let mut l = String::new();
    while !read.iter().any(|x: &String| x.contains(" 366 ana #den ")) {
        l.clear();
        let n = lines
            .read_line(&mut l)
            .unwrap_or_else(|e| panic!("{e}; read {read:?}"));
        assert!(n > 0, "closed; read {read:?}");
        read.push(l.trim_end().to_owned());
    }
    assert!(read.iter().any(|x| x.contains(" 001 ana ")), "{read:?}");
    let stored = stored_in(&cluster, "den", |posts| !posts.is_empty());
    assert_eq!(stored, ["over tls"]);
    // Plain text on the TLS port: no IRC comes back.
    let mut plain = Client::connect(&irc.tls_addr());
    plain.send("NICK bob");
    plain.send("USER bob 0 * :Bob");
    let got = plain.until_closed();
    assert!(got.iter().all(|l| !l.contains(" 001 ")), "{got:?}");
    // The plain listener still takes IRC.
    Client::register(&irc.addr, "cy", None);
    // A key that is not the certificate's: said, and nothing listens.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let wrong = cluster.dir().join("other.key");
    std::fs::write(&wrong, other.signing_key.serialize_pem()).unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "irc",
            "--listen",
            "127.0.0.1:0",
            "--broker",
            &cluster.broker_endpoint(),
            "--sub",
            &cluster.sub_endpoint(),
        ])
        .args(["--tls-cert", c, "--tls-key", wrong.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("does not go with the certificate"),
        "{said}"
    );
}

/// Two gateways against one cluster; the one ana is on is killed mid-conversation. She
/// reconnects to the other and misses nothing: what was posted and sent to her meanwhile is
/// played back from her inbox, and the room's history has the rest.
#[test]
fn a_gateway_killed_mid_conversation_loses_nothing_for_its_people() {
    let cluster = Cluster::start(&bin(), 3);
    let mut first = Irc::start(&cluster, &[]);
    let second = Irc::start(&cluster, &[]);
    let mut bob = Person::login(&cluster, "bob", &[]);
    let mut ana = Client::register(&first.addr, "ana", None);
    ana.join("den");
    let den = name("den");
    bob.join_den_seen_by(&mut ana);
    common::post(&mut bob.conn, &bob.name, &den, "before");
    ana.expect("with bob's post", |l| l.ends_with("PRIVMSG #den :before"));
    let stored = |text: &str| {
        let posts = stored_in(&cluster, "den", |posts| posts.iter().any(|t| t == text));
        assert!(
            posts.iter().any(|t| t == text),
            "`{text}` was never stored: {posts:?}"
        );
    };
    ana.send("PRIVMSG #den :are you there?");
    stored("are you there?");
    first.proc.kill();
    ana.until_closed();
    // Meanwhile, posts and a private message she is not connected to see.
    for text in ["during one", "during two"] {
        common::post(&mut bob.conn, &bob.name, &den, text);
    }
    bob.conn
        .message(&bob.name, &name("ana"), "ping me")
        .unwrap();
    let mut ana = Client::connect(&second.addr);
    ana.send("NICK ana");
    ana.send("USER ana 0 * :Ana");
    ana.expect("rejoining den", |l| l == ":ana!ana@palaver JOIN #den");
    for text in ["during one", "during two"] {
        ana.expect("with a post made while away", |l| {
            l.ends_with(&format!("PRIVMSG #den :{text}"))
        });
    }
    ana.expect("with the private message", |l| {
        l.ends_with("PRIVMSG ana :ping me")
    });
    // The conversation goes on through the second gateway, both ways.
    ana.send("PRIVMSG #den :back");
    stored("back");
    common::post(&mut bob.conn, &bob.name, &den, "welcome back");
    ana.expect("with bob's post", |l| {
        l.ends_with("PRIVMSG #den :welcome back")
    });
    // And the room's history holds everything once, in one order.
    let want = [
        "before",
        "are you there?",
        "during one",
        "during two",
        "back",
        "welcome back",
    ];
    let held = stored_in(&cluster, "den", |posts| posts.len() >= want.len());
    assert_eq!(held, want);
}
