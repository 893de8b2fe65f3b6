use super::*;

fn parse(line: &str) -> Message {
    Message::parse(line.as_bytes()).expect("a valid line")
}

/// Feeds lines; returns what came out.
fn feed(s: &mut Session, lines: &[&str]) -> Vec<Out> {
    lines.iter().flat_map(|l| s.on_line(&parse(l))).collect()
}

fn lines(out: &[Out]) -> Vec<String> {
    out.iter()
        .flat_map(|o| match o {
            Out::Line(l) => vec![l.clone()],
            Out::Lines(ls) => {
                let ls = ls
                    .strip_suffix("\r\n")
                    .expect("shared lines end with CR LF");
                ls.split("\r\n").map(str::to_owned).collect()
            }
            Out::Gateway(_) | Out::Close => Vec::new(),
        })
        .collect()
}

/// The gateway requests among `out`, as JSON.
fn requests(out: &[Out]) -> Vec<Json> {
    out.iter()
        .filter_map(|o| match o {
            Out::Gateway(t) => Some(serde_json::from_str(t).expect("JSON")),
            _ => None,
        })
        .collect()
}

fn answer(s: &mut Session, req: &Json, data: Json) -> Vec<Out> {
    let text = json!({"re": req["re"], "service": req["service"], "data": data}).to_string();
    s.on_gateway(&text)
}

/// Joins `#den`, answering the join and the names it asks for.
fn join_den(s: &mut Session) {
    let out = feed(s, &["JOIN #den"]);
    let out = answer(s, &requests(&out)[0], json!({"status": "OK"}));
    for r in requests(&out) {
        answer(s, &r, json!({"status": "OK", "members": ["ana"]}));
    }
}

/// A session registered as `ana`, with `caps` acknowledged.
fn registered(caps: &str) -> Session {
    registered_in(caps, Rooms::default())
}

/// A session registered as `ana`, with `caps` acknowledged, on a gateway that knows `rooms`.
fn registered_in(caps: &str, rooms: Rooms) -> Session {
    let mut s = Session::sharing("irc.test", rooms);
    let mut out = feed(
        &mut s,
        &[
            "CAP LS 302",
            &format!("CAP REQ :{caps}"),
            "NICK ana",
            "USER ana 0 * :Ana",
        ],
    );
    out.extend(feed(&mut s, &["CAP END"]));
    let login = requests(&out).pop().expect("a login");
    let out = answer(&mut s, &login, json!({"status": "sucesso", "user": "ana"}));
    let rooms = requests(&out).pop().expect("the rooms");
    answer(&mut s, &rooms, json!({"status": "OK", "channels": []}));
    s
}

#[test]
fn registration_logs_in_as_the_nick_and_welcomes_once_answered() {
    let mut s = Session::new("irc.test");
    assert!(requests(&feed(&mut s, &["NICK ana"])).is_empty());
    let out = feed(&mut s, &["USER ana 0 * :Ana Lima"]);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["service"], "login");
    assert_eq!(reqs[0]["data"], json!({"user": "ana", "device": "irc-ana"}));
    assert_eq!(s.nick(), None, "not registered before the answer");
    let out = answer(
        &mut s,
        &reqs[0],
        json!({"status": "sucesso", "user": "ana"}),
    );
    let l = lines(&out);
    assert!(
        l[0].starts_with(":irc.test 001 ana :Welcome to Palaver, ana!ana@palaver"),
        "{l:?}"
    );
    assert!(l
        .iter()
        .any(|x| x.contains(" 005 ana ") && x.contains("CASEMAPPING=ascii")));
    assert!(l.iter().any(|x| x.contains(" 376 ana ")));
    assert_eq!(requests(&out)[0]["service"], "joined");
    assert_eq!(s.nick(), Some("ana"));
}

#[test]
fn a_nick_with_a_password_is_refused_without_one_and_another_can_be_chosen() {
    let mut s = Session::new("irc.test");
    let out = feed(&mut s, &["NICK ana", "USER ana 0 * :Ana"]);
    let out = answer(
        &mut s,
        &requests(&out)[0],
        json!({"status": "erro", "description": "`ana` has a password"}),
    );
    let l = lines(&out);
    assert_eq!(l.len(), 1);
    assert!(
        l[0].starts_with(":irc.test 433 * ana :Nickname is unavailable: `ana` has a password"),
        "{l:?}"
    );
    let out = feed(&mut s, &["NICK bea"]);
    assert_eq!(requests(&out)[0]["data"]["user"], "bea");
}

#[test]
fn pass_goes_with_the_login_and_a_wrong_one_is_464() {
    let mut s = Session::new("irc.test");
    let out = feed(&mut s, &["PASS secret", "NICK ana", "USER ana 0 * :Ana"]);
    let req = &requests(&out)[0];
    assert_eq!(req["data"]["password"], "secret");
    let out = answer(
        &mut s,
        req,
        json!({"status": "erro", "description": "wrong password"}),
    );
    assert!(lines(&out)[0].contains(" 464 ana :Password incorrect: wrong password"));
}

#[test]
fn sasl_plain_logs_in_before_registration_ends() {
    let mut s = Session::new("irc.test");
    let out = feed(&mut s, &["CAP LS 302", "NICK guest", "USER guest 0 * :G"]);
    assert!(lines(&out)[0].contains("CAP * LS :sasl=PLAIN server-time message-tags echo-message"));
    assert!(requests(&out).is_empty(), "registration waits for CAP END");
    let out = feed(&mut s, &["CAP REQ :sasl", "AUTHENTICATE PLAIN"]);
    assert_eq!(
        lines(&out),
        [":irc.test CAP guest ACK :sasl", "AUTHENTICATE +"]
    );
    let payload = base64::engine::general_purpose::STANDARD.encode("\0ana\0correct horse");
    let out = feed(&mut s, &[&format!("AUTHENTICATE {payload}")]);
    let req = &requests(&out)[0];
    assert_eq!(
        req["data"],
        json!({"user": "ana", "password": "correct horse", "device": "irc-guest"})
    );
    let out = answer(&mut s, req, json!({"status": "sucesso", "user": "ana"}));
    let l = lines(&out);
    assert!(
        l[0].contains(" 900 guest guest!guest@palaver ana :You are now logged in as ana"),
        "{l:?}"
    );
    assert!(l[1].contains(" 903 "));
    let out = feed(&mut s, &["CAP END"]);
    let l = lines(&out);
    // The nick becomes the account's, then the welcome.
    assert_eq!(l[0], ":guest!guest@palaver NICK ana");
    assert!(l[1].contains(" 001 ana "));
    assert!(
        requests(&out).iter().all(|r| r["service"] != "login"),
        "no second login"
    );
}

#[test]
fn sasl_failures_and_aborts_are_numerics() {
    let mut s = Session::new("irc.test");
    let out = feed(&mut s, &["AUTHENTICATE EXTERNAL"]);
    assert!(lines(&out)[1].contains(" 904 "));
    let out = feed(&mut s, &["AUTHENTICATE PLAIN", "AUTHENTICATE %%%notbase64"]);
    assert!(lines(&out)[1].contains(" 904 * :SASL authentication failed: not base64"));
    let out = feed(&mut s, &["AUTHENTICATE PLAIN", "AUTHENTICATE *"]);
    assert!(lines(&out)[1].contains(" 906 "));
    let out = feed(&mut s, &["AUTHENTICATE PLAIN", "AUTHENTICATE +"]);
    assert!(lines(&out)[1].contains("expected authzid, authcid and password"));
}

#[test]
fn commands_before_registration_are_451_and_unknown_ones_421() {
    let mut s = Session::new("irc.test");
    let l = lines(&feed(&mut s, &["JOIN #den", "PING x"]));
    assert_eq!(
        l,
        [
            ":irc.test 451 * :You have not registered",
            ":irc.test PONG irc.test :x"
        ]
    );
    let mut s = registered("");
    let l = lines(&feed(&mut s, &["FROB x"]));
    assert_eq!(l, [":irc.test 421 ana FROB :Unknown command"]);
    let l = lines(&feed(&mut s, &["NICK bob"]));
    assert!(l[0].contains(" 432 ana bob :On Palaver your nick is your account"));
}

#[test]
fn joining_a_room_that_does_not_exist_creates_it_then_joins() {
    let mut s = registered("");
    let out = feed(&mut s, &["JOIN #den"]);
    let join = &requests(&out)[0];
    assert_eq!(
        (join["service"].as_str(), &join["data"]["channel"]),
        (Some("join"), &json!("den"))
    );
    let out = answer(
        &mut s,
        join,
        json!({"status": "erro", "description": "channel `den` does not exist"}),
    );
    let create = &requests(&out)[0];
    assert_eq!(create["service"], "channel");
    let out = answer(&mut s, create, json!({"status": "sucesso"}));
    let join = &requests(&out)[0];
    assert_eq!(join["service"], "join");
    let posts = json!([{"user": "cy", "message": "earlier", "id": "s1:3", "timestamp": 1.5}]);
    let out = answer(
        &mut s,
        join,
        json!({"status": "OK", "topic": "plans", "topic_by": "cy", "messages": posts}),
    );
    let l = lines(&out);
    assert_eq!(l[0], ":ana!ana@palaver JOIN #den");
    assert_eq!(l[1], ":irc.test 332 ana #den :plans");
    assert_eq!(l[3], ":cy!cy@palaver PRIVMSG #den :earlier");
    let names = &requests(&out)[0];
    let out = answer(
        &mut s,
        names,
        json!({"status": "OK", "members": ["ana", "cy"], "owner": "ana"}),
    );
    assert_eq!(
        lines(&out),
        [
            ":irc.test 353 ana = #den :@ana cy",
            ":irc.test 366 ana #den :End of /NAMES list"
        ]
    );
}

#[test]
fn messages_go_to_rooms_and_people_and_failures_say_why() {
    let mut s = registered("");
    let out = feed(&mut s, &["PRIVMSG #den,bob :hi there"]);
    let reqs = requests(&out);
    assert_eq!(reqs[0]["service"], "publish");
    assert_eq!(
        reqs[0]["data"],
        json!({"channel": "den", "message": "hi there"})
    );
    assert_eq!(reqs[1]["service"], "message");
    assert_eq!(
        reqs[1]["data"],
        json!({"dst": "bob", "message": "hi there"})
    );
    answer(&mut s, &reqs[0], json!({"status": "OK", "id": "s1:1"}));
    let out = answer(
        &mut s,
        &reqs[1],
        json!({"status": "erro", "description": "no such user `bob`"}),
    );
    assert_eq!(lines(&out), [":irc.test 401 ana bob :no such user `bob`"]);
    // A NOTICE's failure is silent, as IRC wants.
    let out = feed(&mut s, &["NOTICE bob :psst"]);
    let out = answer(
        &mut s,
        &requests(&out)[0],
        json!({"status": "erro", "description": "no"}),
    );
    assert!(lines(&out).is_empty());
    // An ACTION is kept as text.
    let out = feed(&mut s, &["PRIVMSG #den :\u{1}ACTION waves\u{1}"]);
    assert_eq!(requests(&out)[0]["data"]["message"], "* ana waves");
}

#[test]
fn publications_become_lines_with_time_and_id_when_asked() {
    let mut s = registered("server-time message-tags");
    join_den(&mut s);
    let post = json!({"topic": "den", "service": "publish",
        "data": {"user": "cy", "channel": "den", "message": "hello", "id": "s2:9", "clock": 40, "timestamp": 1_795_379_525.25}});
    let l = lines(&s.on_gateway(&post.to_string()));
    assert_eq!(
        l,
        ["@time=2026-11-22T20:32:05.250Z;msgid=s2:9@40 :cy!cy@palaver PRIVMSG #den :hello"]
    );
    // One's own post is not repeated without echo-message, whether its publication comes
    // before its answer or after; the person's post from another client shows.
    let first = request(&feed(
        &mut s,
        &["PRIVMSG #den :first", "PRIVMSG #den :second"],
    ));
    let own = |text: &str, id: &str| {
        json!({"topic": "den", "service": "publish", "data": {"user": "ana", "channel": "den", "message": text, "id": id, "clock": 7}}).to_string()
    };
    assert!(lines(&s.on_gateway(&own("first", "s1:1"))).is_empty());
    let out = answer(&mut s, &first, json!({"status": "OK", "id": "s1:1"}));
    assert!(lines(&out).is_empty());
    let second = request(&out);
    assert!(lines(&answer(
        &mut s,
        &second,
        json!({"status": "OK", "id": "s1:2"})
    ))
    .is_empty());
    assert!(lines(&s.on_gateway(&own("second", "s1:2"))).is_empty());
    assert_eq!(
        lines(&s.on_gateway(&own("from my phone", "s2:5"))),
        ["@msgid=s2:5@7 :ana!ana@palaver PRIVMSG #den :from my phone"]
    );
    let dm = json!({"topic": "ana", "service": "message", "data": {"src": "bob", "dst": "ana", "message": "psst"}});
    assert_eq!(
        lines(&s.on_gateway(&dm.to_string())),
        [":bob!bob@palaver PRIVMSG ana :psst"]
    );
    let join =
        json!({"topic": "den", "service": "join", "data": {"user": "bob", "channel": "den"}});
    assert_eq!(
        lines(&s.on_gateway(&join.to_string())),
        [":bob!bob@palaver JOIN #den"]
    );
    // Rooms not joined on IRC show nothing.
    let elsewhere = json!({"topic": "hall", "service": "publish", "data": {"user": "cy", "channel": "hall", "message": "x"}});
    assert!(lines(&s.on_gateway(&elsewhere.to_string())).is_empty());
}

#[test]
fn echo_message_repeats_ones_own_text_once_accepted() {
    let mut s = registered("echo-message");
    let out = feed(&mut s, &["PRIVMSG #den :mine"]);
    let out = answer(
        &mut s,
        &requests(&out)[0],
        json!({"status": "OK", "id": "s1:7"}),
    );
    assert_eq!(lines(&out), [":ana!ana@palaver PRIVMSG #den :mine"]);
}

#[test]
fn a_long_post_is_cut_into_lines_that_fit() {
    let mut s = registered("");
    join_den(&mut s);
    let text = "word ".repeat(200);
    let post = json!({"topic": "den", "service": "publish", "data": {"user": "cy", "channel": "den", "message": text}});
    let l = lines(&s.on_gateway(&post.to_string()));
    assert!(l.len() >= 3);
    assert!(l.iter().all(|x| x.len() + 2 <= crate::line::MAX_LINE));
}

#[test]
fn server_time_is_iso_8601_in_utc_with_milliseconds() {
    assert_eq!(iso_time(0.0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_time(951_782_400.5), "2000-02-29T00:00:00.500Z");
    assert_eq!(iso_time(1_795_379_525.25), "2026-11-22T20:32:05.250Z");
}

/// The publication of a post of `ana`'s.
fn own_post(channel: &str, text: &str, id: &str) -> String {
    json!({"topic": channel, "service": "publish",
        "data": {"user": "ana", "channel": channel, "message": text, "id": id, "clock": 9}})
    .to_string()
}

/// The one request among `out`.
fn request(out: &[Out]) -> Json {
    let mut r = requests(out);
    assert_eq!(r.len(), 1, "{out:?}");
    r.pop().unwrap()
}

fn post(seq: u64, lamport: u64, text: &str, secs: f64) -> Json {
    json!({"id": format!("s1:{seq}"), "cursor": format!("{lamport}:s1"), "clock": lamport,
        "timestamp": secs, "user": "bob", "channel": "den", "message": text})
}

#[test]
fn chathistory_pages_by_msgid_and_by_time_in_a_batch() {
    let mut s = registered("batch server-time message-tags draft/chathistory");
    let r = request(&feed(&mut s, &["CHATHISTORY LATEST #den * 2"]));
    assert_eq!(r["service"], "history");
    assert_eq!(r["data"], json!({"channel": "den", "limit": 2}));
    let page = json!({"status": "OK", "more": true, "messages": [
        post(4, 16, "one", 1_795_379_525.25), post(5, 17, "two", 1_795_379_526.0)]});
    assert_eq!(
        lines(&answer(&mut s, &r, page)),
        [
            ":irc.test BATCH +b1 chathistory :#den",
            "@time=2026-11-22T20:32:05.250Z;msgid=s1:4@16;batch=b1 :bob!bob@palaver PRIVMSG #den :one",
            "@time=2026-11-22T20:32:06.000Z;msgid=s1:5@17;batch=b1 :bob!bob@palaver PRIVMSG #den :two",
            ":irc.test BATCH -b1",
        ]
    );
    let ask = |s: &mut Session, line: &str| request(&feed(s, &[line]))["data"].clone();
    // Each reference becomes the page's bounds.
    assert_eq!(
        ask(&mut s, "CHATHISTORY BEFORE #den msgid=s1:4@16 100"),
        json!({"channel": "den", "limit": 100, "before": "16:s1"})
    );
    assert_eq!(
        ask(
            &mut s,
            "CHATHISTORY AFTER bob timestamp=2026-11-22T20:32:05.250Z 9999"
        ),
        json!({"with": "bob", "limit": 500, "since": 1_795_379_525.251})
    );
    assert_eq!(
        ask(&mut s, "CHATHISTORY LATEST #den msgid=s1:4@16 10"),
        json!({"channel": "den", "limit": 10, "after": "16:s1", "latest": true})
    );
    assert_eq!(
        ask(
            &mut s,
            "CHATHISTORY BETWEEN #den msgid=s1:4@16 msgid=s2:1@30 10"
        ),
        json!({"channel": "den", "limit": 10, "after": "16:s1", "before": "30:s2"})
    );
    assert_eq!(
        ask(&mut s, "CHATHISTORY BETWEEN #den timestamp=2026-11-22T20:32:06.000Z timestamp=2026-11-22T20:32:05.000Z 10"),
        json!({"channel": "den", "limit": 10, "until": 1_795_379_526.0, "since": 1_795_379_525.001, "latest": true})
    );
    // AROUND: the messages before the reference, then from it on.
    let r = request(&feed(&mut s, &["CHATHISTORY AROUND #den msgid=s1:5@17 3"]));
    assert_eq!(
        r["data"],
        json!({"channel": "den", "limit": 1, "before": "17:s1", "latest": true})
    );
    let before = json!({"status": "OK", "messages": [post(4, 16, "one", 1.0)]});
    let r2 = request(&answer(&mut s, &r, before));
    assert_eq!(
        r2["data"],
        json!({"channel": "den", "limit": 2, "after": "16:s1"})
    );
    let rest =
        json!({"status": "OK", "messages": [post(5, 17, "two", 2.0), post(6, 18, "three", 3.0)]});
    let texts: Vec<String> = lines(&answer(&mut s, &r2, rest))
        .iter()
        .map(|l| parse(l))
        .filter(|m| m.command == "PRIVMSG")
        .filter_map(|m| m.params.last().cloned())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    // A room that cannot be read, and bad requests, fail in the standard way.
    let r = request(&feed(&mut s, &["CHATHISTORY LATEST #nope * 5"]));
    let out = answer(
        &mut s,
        &r,
        json!({"status": "erro", "description": "channel `nope` does not exist"}),
    );
    assert_eq!(
        lines(&out),
        [":irc.test FAIL CHATHISTORY INVALID_TARGET LATEST #nope :channel `nope` does not exist"]
    );
    for (bad, reply) in [
        (
            "CHATHISTORY SIDEWAYS #den * 5",
            "FAIL CHATHISTORY INVALID_PARAMS SIDEWAYS :Unknown subcommand",
        ),
        (
            "CHATHISTORY LATEST #den",
            "FAIL CHATHISTORY NEED_MORE_PARAMS LATEST :Missing parameters",
        ),
        (
            "CHATHISTORY LATEST #den * many",
            "FAIL CHATHISTORY INVALID_PARAMS LATEST many :Invalid limit",
        ),
        (
            "CHATHISTORY BEFORE #den msgid=nonsense 5",
            "FAIL CHATHISTORY INVALID_PARAMS BEFORE :Invalid message reference",
        ),
        (
            "CHATHISTORY BEFORE #den * 5",
            "FAIL CHATHISTORY INVALID_PARAMS BEFORE :`*` is only for LATEST",
        ),
        (
            "CHATHISTORY LATEST a,b * 5",
            "FAIL CHATHISTORY INVALID_TARGET LATEST a,b :Not a room or a person's nick",
        ),
        (
            "CHATHISTORY TARGETS * * 5",
            "FAIL CHATHISTORY INVALID_PARAMS TARGETS :TARGETS takes two timestamps",
        ),
    ] {
        let out = feed(&mut s, &[bad]);
        assert!(requests(&out).is_empty(), "{bad}");
        assert_eq!(lines(&out), [format!(":irc.test {reply}")], "{bad}");
    }
}

#[test]
fn chathistory_targets_lists_conversations_by_their_newest_message() {
    let mut s = registered("batch draft/chathistory");
    let r = request(&feed(
        &mut s,
        &["CHATHISTORY TARGETS timestamp=2026-11-22T20:32:10.000Z timestamp=2026-11-22T20:00:00.000Z 2"],
    ));
    assert_eq!(r["service"], "unread");
    let unread = json!({"status": "OK",
        "channels": [{"channel": "den", "unread": 0, "last_at": 1_795_379_526.0},
                     {"channel": "old", "unread": 0, "last_at": 1_700_000_000.0},
                     {"channel": "quiet", "unread": 0}],
        "conversations": [{"with": "bob", "unread": 1, "last_at": 1_795_379_525.25},
                          {"with": "cy", "unread": 1, "last_at": 1_795_379_529.0}]});
    assert_eq!(
        lines(&answer(&mut s, &r, unread)),
        [
            ":irc.test BATCH +b1 :draft/chathistory-targets",
            "@batch=b1 :irc.test CHATHISTORY TARGETS bob :2026-11-22T20:32:05.250Z",
            "@batch=b1 :irc.test CHATHISTORY TARGETS #den :2026-11-22T20:32:06.000Z",
            ":irc.test BATCH -b1",
        ]
    );
}

#[test]
fn a_labelled_command_is_answered_under_its_label_once_everything_it_asked_is_back() {
    let mut s = registered("batch labeled-response echo-message");
    // One line: labelled itself; none: an ACK.
    assert_eq!(
        lines(&feed(&mut s, &["@label=p1 PING x"])),
        ["@label=p1 :irc.test PONG irc.test :x"]
    );
    assert_eq!(
        lines(&feed(&mut s, &["@label=p2 PONG x"])),
        ["@label=p2 :irc.test ACK"]
    );
    // A JOIN waits for the room and its names; then every line goes in one labelled batch.
    let out = feed(&mut s, &["@label=j JOIN #den"]);
    assert!(lines(&out).is_empty());
    let join = request(&out);
    let out = answer(&mut s, &join, json!({"status": "OK", "topic": "plans"}));
    assert!(
        lines(&out).is_empty(),
        "held until the names are back: {out:?}"
    );
    let names = request(&out);
    let out = answer(
        &mut s,
        &names,
        json!({"status": "OK", "members": ["ana", "bob"], "owner": "bob"}),
    );
    assert_eq!(
        lines(&out),
        [
            "@label=j :irc.test BATCH +b1 :labeled-response",
            "@batch=b1 :ana!ana@palaver JOIN #den",
            "@batch=b1 :irc.test 332 ana #den :plans",
            "@batch=b1 :irc.test 353 ana = #den :ana @bob",
            "@batch=b1 :irc.test 366 ana #den :End of /NAMES list",
            ":irc.test BATCH -b1",
        ]
    );
    // A publication meanwhile is not held; an echo is the labelled answer.
    let out = feed(&mut s, &["@label=m PRIVMSG #den :hi"]);
    let say = request(&out);
    let other = json!({"topic": "den", "service": "publish", "data": {"user": "bob", "channel": "den", "message": "yo", "id": "s2:1", "clock": 3}});
    assert_eq!(
        lines(&s.on_gateway(&other.to_string())),
        [":bob!bob@palaver PRIVMSG #den :yo"]
    );
    assert_eq!(
        lines(&answer(
            &mut s,
            &say,
            json!({"status": "OK", "id": "s1:9", "cursor": "4:s1"})
        )),
        ["@label=m :ana!ana@palaver PRIVMSG #den :hi"]
    );
    // Without the capabilities, a label is ignored.
    let mut plain = registered("echo-message");
    assert_eq!(
        lines(&feed(&mut plain, &["@label=x PING y"])),
        [":irc.test PONG irc.test :y"]
    );
}

#[test]
fn what_arrived_while_away_is_shown_once_after_the_rooms_then_taken() {
    let mut s = Session::new("irc.test");
    let out = feed(&mut s, &["NICK ana", "USER ana 0 * :Ana"]);
    let out = answer(
        &mut s,
        &request(&out),
        json!({"status": "sucesso", "user": "ana"}),
    );
    let rooms = requests(&out).pop().unwrap();
    let out = answer(&mut s, &rooms, json!({"status": "OK", "channels": ["den"]}));
    let reqs = requests(&out);
    assert_eq!(
        reqs[1]["service"], "inbox",
        "after the rooms' names: {reqs:?}"
    );
    // A post shown live before the inbox is read is not shown again.
    let live = json!({"topic": "den", "service": "publish", "data": {"user": "bob", "channel": "den", "message": "live", "id": "s1:3", "clock": 5}});
    assert_eq!(lines(&s.on_gateway(&live.to_string())).len(), 1);
    let page = json!({"status": "OK", "more": true, "cursor": {"s1": 4}, "messages": [
        {"id": "s1:1", "cursor": "2:s1", "src": "bob", "dst": "ana", "message": "psst", "timestamp": 1.0},
        {"id": "s1:2", "cursor": "3:s1", "src": "ana", "dst": "bob", "message": "hey", "timestamp": 2.0},
        {"id": "s1:3", "cursor": "5:s1", "user": "bob", "channel": "den", "message": "live", "timestamp": 3.0},
        {"id": "s1:4", "cursor": "6:s1", "user": "cy", "channel": "elsewhere", "message": "not joined", "timestamp": 4.0},
    ]});
    let out = answer(&mut s, &reqs[1], page);
    assert_eq!(
        lines(&out),
        [
            ":bob!bob@palaver PRIVMSG ana :psst",
            ":ana!ana@palaver PRIVMSG bob :hey",
        ]
    );
    let taken = request(&out);
    assert_eq!(
        (taken["service"].as_str(), &taken["data"]),
        (Some("taken"), &json!({"cursor": {"s1": 4}}))
    );
    // More pending: the next page is read once this one is taken.
    let next = request(&answer(&mut s, &taken, json!({"status": "OK"})));
    assert_eq!(next["service"], "inbox");
    let out = answer(
        &mut s,
        &next,
        json!({"status": "OK", "more": false, "cursor": {"s1": 4}, "messages": []}),
    );
    assert!(out.is_empty(), "nothing more to take: {out:?}");
}

#[test]
fn read_markers_are_times_set_by_markread_and_told_when_moved_anywhere() {
    let mut s = registered("draft/read-marker");
    // Joining: the room's marker comes before its names.
    let join = request(&feed(&mut s, &["JOIN #den"]));
    let unread = request(&answer(&mut s, &join, json!({"status": "OK"})));
    assert_eq!(unread["service"], "unread");
    let marked = json!({"status": "OK", "channels": [
        {"channel": "den", "unread": 2, "marker": "16:s1", "marker_at": 1_795_379_525.25}],
        "conversations": []});
    let out = answer(&mut s, &unread, marked.clone());
    assert_eq!(
        lines(&out),
        [":irc.test MARKREAD #den :timestamp=2026-11-22T20:32:05.250Z"]
    );
    let names = request(&out);
    assert_eq!(names["service"], "members");
    answer(&mut s, &names, json!({"status": "OK", "members": ["ana"]}));
    // Asking, for a conversation with no marker: `*`.
    let ask = request(&feed(&mut s, &["MARKREAD bob"]));
    assert_eq!(
        lines(&answer(&mut s, &ask, marked.clone())),
        [":irc.test MARKREAD bob :*"]
    );
    // Setting: the newest message at or before that time becomes the marker.
    let find = request(&feed(
        &mut s,
        &["MARKREAD #den timestamp=2026-11-22T20:32:06.000Z"],
    ));
    assert_eq!(
        (find["service"].as_str(), &find["data"]),
        (
            Some("history"),
            &json!({"channel": "den", "until": 1_795_379_526.001, "limit": 1})
        )
    );
    let page = json!({"status": "OK", "messages": [{"id": "s1:5", "cursor": "17:s1", "user": "bob", "channel": "den", "message": "two", "timestamp": 1_795_379_526.0}]});
    let read = request(&answer(&mut s, &find, page));
    assert_eq!(
        (read["service"].as_str(), &read["data"]),
        (Some("read"), &json!({"id": "s1:5"}))
    );
    let again = request(&answer(
        &mut s,
        &read,
        json!({"status": "OK", "id": "s3:9"}),
    ));
    assert_eq!(again["service"], "unread");
    // Moved on another client: told too.
    let moved = json!({"topic": "ana", "service": "read", "data": {"user": "ana", "upto": "s1:5", "channel": "den"}});
    assert_eq!(
        request(&s.on_gateway(&moved.to_string()))["service"],
        "unread"
    );
    // Bad requests.
    for (bad, reply) in [
        ("MARKREAD", "FAIL MARKREAD NEED_MORE_PARAMS :Missing parameters"),
        ("MARKREAD #den yesterday", "FAIL MARKREAD INVALID_PARAMS #den yesterday :Expected timestamp=YYYY-MM-DDThh:mm:ss.sssZ"),
    ] {
        let out = feed(&mut s, &[bad]);
        assert!(requests(&out).is_empty(), "{bad}");
        assert_eq!(lines(&out), [format!(":irc.test {reply}")], "{bad}");
    }
}

#[test]
fn accounts_joins_and_presence_show_as_the_capabilities_asked_for_them() {
    let mut s = registered("account-tag extended-join away-notify no-implicit-names");
    // No NAMES after a JOIN: the client asks when it wants them.
    let join = request(&feed(&mut s, &["JOIN #den"]));
    let out = answer(&mut s, &join, json!({"status": "OK"}));
    assert_eq!(lines(&out), [":ana!ana@palaver JOIN #den ana :ana"]);
    assert!(requests(&out).is_empty(), "{out:?}");
    let names = request(&feed(&mut s, &["NAMES #den"]));
    answer(
        &mut s,
        &names,
        json!({"status": "OK", "members": ["ana", "bob"]}),
    );
    let publish = |service: &str, data: Json| {
        json!({"topic": "den", "service": service, "data": data}).to_string()
    };
    let joined = publish("join", json!({"user": "cy", "channel": "den"}));
    assert_eq!(
        lines(&s.on_gateway(&joined)),
        [":cy!cy@palaver JOIN #den cy :cy"]
    );
    let post = publish(
        "publish",
        json!({"user": "cy", "channel": "den", "message": "hi", "id": "s1:1", "clock": 2}),
    );
    assert_eq!(
        lines(&s.on_gateway(&post)),
        ["@account=cy :cy!cy@palaver PRIVMSG #den :hi"]
    );
    // Presence of people in one's rooms (bob from NAMES, cy from the join); not of others.
    let presence = |user: &str, online: bool| {
        json!({"topic": "presence", "service": "presence", "data": {"user": user, "online": online}}).to_string()
    };
    assert_eq!(
        lines(&s.on_gateway(&presence("bob", false))),
        [":bob!bob@palaver AWAY Offline"]
    );
    assert_eq!(
        lines(&s.on_gateway(&presence("cy", true))),
        [":cy!cy@palaver AWAY"]
    );
    assert!(lines(&s.on_gateway(&presence("stranger", false))).is_empty());
    let left = publish("leave", json!({"user": "cy", "channel": "den"}));
    assert_eq!(lines(&s.on_gateway(&left)), [":cy!cy@palaver PART #den"]);
    assert!(
        lines(&s.on_gateway(&presence("cy", false))).is_empty(),
        "cy left every room"
    );
    // Without the capabilities: none of it.
    let mut plain = registered("");
    assert!(lines(&plain.on_gateway(&presence("bob", false))).is_empty());
}

#[test]
fn commands_sent_on_the_heels_of_registration_wait_for_the_login() {
    let mut s = Session::new("irc.test");
    let out = feed(
        &mut s,
        &[
            "NICK ana",
            "USER ana 0 * :Ana",
            "JOIN #den",
            "PRIVMSG #den :hi",
        ],
    );
    assert!(lines(&out).is_empty(), "no 451: {out:?}");
    let login = request(&out);
    let out = answer(&mut s, &login, json!({"status": "sucesso", "user": "ana"}));
    let services: Vec<Json> = requests(&out)
        .iter()
        .map(|r| r["service"].clone())
        .collect();
    assert_eq!(
        services,
        ["joined", "join"],
        "the post waits for the room to be joined"
    );
    assert!(lines(&out).iter().any(|l| l.contains(" 001 ana ")));
    let out = answer(&mut s, &requests(&out)[1], json!({"status": "OK"}));
    let names = request(&out);
    let out = answer(&mut s, &names, json!({"status": "OK", "members": ["ana"]}));
    let post = request(&out);
    assert_eq!(post["service"], "publish");
    answer(&mut s, &post, json!({"status": "OK", "id": "s1:1"}));
    // The next command waits for the post to come back from the cluster, unshown.
    assert!(s.awaits_echoes());
    assert!(lines(&s.on_gateway(&own_post("den", "hi", "s1:1"))).is_empty());
    assert!(!s.awaits_echoes());
    // A PING does not wait.
    let out = feed(
        &mut s,
        &["JOIN #elsewhere", "PRIVMSG #elsewhere :x", "PING :y"],
    );
    assert_eq!(lines(&out), [":irc.test PONG irc.test :y"]);
    assert_eq!(request(&out)["service"], "join");
    // Before NICK and USER, a command is still refused.
    let mut fresh = Session::new("irc.test");
    assert_eq!(
        lines(&feed(&mut fresh, &["JOIN #den"])),
        [":irc.test 451 * :You have not registered"]
    );
}

#[test]
fn a_post_is_formed_once_for_every_connection_that_shows_it_alike() {
    // Regression: each of a room's connections parsed every post's JSON and formed its lines
    // itself; a hundred people in a room cost a hundred of each per post.
    let rooms = Rooms::default();
    let tags = "server-time message-tags";
    let mut tagged = [
        registered_in(tags, rooms.clone()),
        registered_in(tags, rooms.clone()),
    ];
    let mut plain = registered_in("echo-message", rooms.clone());
    let mut elsewhere = registered_in(tags, rooms);
    for s in tagged.iter_mut().chain([&mut plain]) {
        join_den(s);
    }
    let shared = |s: &mut Session, text: &str, formed: &Formed| {
        let mut out = Vec::new();
        s.on_shared(text, formed, &mut out);
        match out.as_slice() {
            [Out::Lines(ls)] => ls.clone(),
            other => panic!("one block of shared lines, not {other:?}"),
        }
    };
    let post = json!({"topic": "den", "service": "publish",
        "data": {"user": "cy", "channel": "den", "message": "hello", "id": "s2:9", "clock": 40, "timestamp": 1_795_379_525.25}});
    let formed = Formed::default();
    let a = shared(&mut tagged[0], &post.to_string(), &formed);
    let b = shared(&mut tagged[1], &post.to_string(), &formed);
    assert!(std::sync::Arc::ptr_eq(&a, &b), "formed once, shared");
    assert_eq!(
        &*a,
        "@time=2026-11-22T20:32:05.250Z;msgid=s2:9@40 :cy!cy@palaver PRIVMSG #den :hello\r\n"
    );
    // Other capabilities, other lines; a connection not in the room, none.
    let p = shared(&mut plain, &post.to_string(), &formed);
    assert_eq!(&*p, ":cy!cy@palaver PRIVMSG #den :hello\r\n");
    let mut none = Vec::new();
    elsewhere.on_shared(&post.to_string(), &formed, &mut none);
    assert!(none.is_empty());
    // A long text is cut into lines, all in the one block.
    let long = "x".repeat(500);
    let post = json!({"topic": "den", "service": "publish",
        "data": {"user": "cy", "channel": "den", "message": long, "id": "s2:10", "clock": 41}});
    let p = shared(&mut plain, &post.to_string(), &Formed::default());
    assert_eq!(p.matches("\r\n").count(), 2);
    assert_eq!(p.matches('x').count(), 500);
    // A private message is formed for the person it is to.
    let dm = json!({"topic": "ana", "service": "message",
        "data": {"src": "cy", "dst": "ana", "message": "psst", "id": "s1:3", "clock": 42}});
    assert_eq!(
        &*shared(&mut plain, &dm.to_string(), &Formed::default()),
        ":cy!cy@palaver PRIVMSG ana :psst\r\n"
    );
}

#[test]
fn pasted_lines_are_posted_together_in_the_order_sent() {
    // Regression: a client's lines went to the cluster at once, each to whichever server the
    // broker chose, and a paste reached the room shuffled. Then one line went per round trip:
    // a paste of 64 lines took 64.
    const W: usize = MAX_WAITING;
    let mut s = registered("echo-message message-tags");
    join_den(&mut s);
    let paste: Vec<String> = (0..W + 6)
        .map(|i| format!("PRIVMSG #den :line {i}"))
        .collect();
    let paste: Vec<&str> = paste.iter().map(String::as_str).collect();
    let req = request(&feed(&mut s, &paste[..=W]));
    assert_eq!(req["data"]["message"], "line 0");
    // W wait behind the first: the driver reads no further, and a line sent anyway is
    // refused rather than posted out of order.
    assert!(s.saturated());
    assert_eq!(
        lines(&feed(&mut s, &paste[W + 1..W + 2])),
        [":irc.test FAIL PRIVMSG TEMPORARILY_UNAVAILABLE :Too many commands are waiting for the ones before them"]
    );
    let out = answer(
        &mut s,
        &req,
        json!({"status": "OK", "id": "s1:1", "cursor": "10:s1"}),
    );
    assert_eq!(
        lines(&out),
        ["@msgid=s1:1@10 :ana!ana@palaver PRIVMSG #den :line 0"]
    );
    // Those that waited go together, in one request, in the order sent, once the first post
    // came back from the cluster (posted before that, the next server could publish them
    // first).
    assert!(requests(&out).is_empty());
    let out = s.on_gateway(&own_post("den", "line 0", "s1:1"));
    assert!(lines(&out).is_empty());
    let req = request(&out);
    assert_eq!(req["service"], "posts");
    assert_eq!(req["data"]["channel"], "den");
    let sent: Vec<String> = (1..=W).map(|i| format!("line {i}")).collect();
    assert_eq!(req["data"]["messages"], json!(sent));
    assert!(!s.saturated());
    // Each is echoed under its own msgid, and its publication is not shown again.
    let ids: Vec<String> = (2..W + 2).map(|i| format!("s1:{i}")).collect();
    let cursors: Vec<String> = (11..W + 11).map(|l| format!("{l}:s1")).collect();
    let out = answer(
        &mut s,
        &req,
        json!({"status": "OK", "ids": ids, "cursors": cursors, "id": format!("s1:{}", W + 1), "cursor": format!("{}:s1", W + 10)}),
    );
    let echoed = lines(&out);
    assert_eq!(echoed.len(), W);
    assert_eq!(
        echoed[0],
        "@msgid=s1:2@11 :ana!ana@palaver PRIVMSG #den :line 1"
    );
    assert_eq!(
        echoed[W - 1],
        format!(
            "@msgid=s1:{}@{} :ana!ana@palaver PRIVMSG #den :line {W}",
            W + 1,
            W + 10
        )
    );
    assert!(lines(&s.on_gateway(&own_post("den", "line 7", "s1:8"))).is_empty());
    // A PING is answered at once, even behind posts; the next post waits for them.
    let out = feed(&mut s, &["PRIVMSG #den :alone", "PING :t"]);
    assert_eq!(lines(&out), [":irc.test PONG irc.test :t"]);
    assert!(requests(&out).is_empty() && s.awaits_echoes());
    // When they do not all come back (the one lost is filled in later), it goes anyway.
    let out = s.echoes_late();
    assert_eq!(request(&out)["data"]["message"], "alone");
}

#[test]
fn a_paste_is_cut_where_another_command_or_target_or_label_comes_between() {
    let mut s = registered("labeled-response batch");
    let out = feed(
        &mut s,
        &[
            "PRIVMSG #den :first",
            "PRIVMSG #den :a",
            "PRIVMSG #den :b",
            "NOTICE #den :c",
            "PRIVMSG #hall :d",
            "PRIVMSG #hall :e",
            "@label=x PRIVMSG #hall :f",
            "PRIVMSG bob :g",
            "PRIVMSG bob :h",
        ],
    );
    let mut req = request(&out);
    let mut sent = Vec::new();
    loop {
        let texts = match req["service"].as_str() {
            Some("posts") => req["data"]["messages"].clone(),
            _ => json!([req["data"]["message"]]),
        };
        sent.push((req["service"].clone(), texts));
        let out = answer(&mut s, &req, json!({"status": "OK", "id": "s1:1"}));
        match requests(&out).first() {
            Some(next) => req = next.clone(),
            None => break,
        }
    }
    let want = [
        ("publish", json!(["first"])),
        ("posts", json!(["a", "b"])),
        ("publish", json!(["c"])),
        ("posts", json!(["d", "e"])),
        ("publish", json!(["f"])),
        ("message", json!(["g"])),
        ("message", json!(["h"])),
    ];
    let want: Vec<(Json, Json)> = want.into_iter().map(|(s, t)| (json!(s), t)).collect();
    assert_eq!(sent, want);
}

#[test]
fn mode_queries_are_answered_and_changes_refused() {
    // Regression: irssi asks for the ban list on joining and was told modes cannot change.
    let mut s = registered("");
    assert_eq!(
        lines(&feed(&mut s, &["MODE #den"])),
        [":irc.test 324 ana #den :+nt"]
    );
    assert_eq!(
        lines(&feed(&mut s, &["MODE #den b"])),
        [":irc.test 368 ana #den :End of channel ban list"]
    );
    assert_eq!(
        lines(&feed(&mut s, &["MODE #den +o bob"])),
        [":irc.test 482 ana #den :Room modes are not changed over IRC"]
    );
}

#[test]
fn a_gateways_connections_keep_one_copy_of_a_rooms_members() {
    // Regression: each connection kept its own copy of every member of its rooms, so a room
    // of 1,000 people all on one gateway held a million names.
    let rooms = Rooms::default();
    let mut first = registered_in("away-notify", rooms.clone());
    let mut second = registered_in("away-notify", rooms.clone());
    join_den(&mut first);
    join_den(&mut second);
    assert_eq!(rooms.len(), 1);
    let joined =
        json!({"topic": "den", "service": "join", "data": {"user": "cy", "channel": "den"}});
    first.on_gateway(&joined.to_string());
    // The second connection has not been told of cy's join yet, and knows her all the same.
    let presence = json!({"topic": "presence", "service": "presence", "data": {"user": "cy", "online": false}});
    assert_eq!(
        lines(&second.on_gateway(&presence.to_string())),
        [":cy!cy@palaver AWAY Offline"]
    );
    // The room is forgotten once no connection is in it.
    drop(first);
    assert_eq!(rooms.len(), 1);
    drop(second);
    assert_eq!(rooms.len(), 0);
}
