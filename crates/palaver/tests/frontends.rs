//! The front ends, driven as a person or a script would: the line client over a pipe, the bot,
//! the listener and `palaver up`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{bin, command, name, Cluster};
use palaver_testkit::{wait_until, Proc};

/// Starts `cmd` and hands its stdout over line by line as the lines arrive.
fn spawn_lines(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Runs `palaver client` with `script` on stdin and returns what it printed.
fn client(cluster: &Cluster, user: &str, script: &str) -> String {
    let out = common::run_with_input(&mut command(cluster, "client", &["--user", user]), script);
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_line_client_can_be_scripted() {
    let cluster = Cluster::start(&bin(), 1);
    cluster.connection().login(&name("bob")).unwrap();
    let out = client(
        &cluster,
        "ana",
        "/create general\nhello everyone\n/users\n/channels\n/msg bob hi bob\n/post nowhere x\n/msg zed x\n/frobnicate\n/history\n/history @bob\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("logged in as ana"), "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("> ")) && !out.contains("\x1b["),
        "no prompts when stdin is a pipe:\n{out}"
    );
    for want in [
        "created #general",
        "posted to #general",
        "users: ana, bob",
        "channels: general",
        "sent to bob",
        "error: channel `nowhere` does not exist",
        "error: user `zed` does not exist",
        "unknown command /frobnicate",
        "#general <ana> hello everyone",
        "*ana → bob* hi bob",
        "(1 messages)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        lines
            .iter()
            .skip(1)
            .filter(|l| !l.contains(" #general <") && !l.contains(" → bob*"))
            .all(|l| l.contains("(clock ")),
        "every reply shows the clock:\n{out}"
    );
    assert!(common::store(&cluster.data_dir(0))
        .has_post("general", "hello everyone")
        .unwrap());
}

#[test]
fn the_line_client_shows_incoming_messages_with_both_times() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("bob")).unwrap();
    c.login(&name("anabela")).unwrap();
    let (mut child, rx) = spawn_lines(command(&cluster, "client", &["--user", "ana"]));
    let mut stdin = child.stdin.take().unwrap();
    assert!(rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .starts_with("logged in as ana"));
    // Send to ana until one arrives (the subscription reaches the proxy asynchronously);
    // anabela's messages, sent in between, must never show.
    let mut seen = Vec::new();
    let arrived = wait_until(Duration::from_secs(10), || {
        c.message(&name("bob"), &name("anabela"), "not for ana")
            .unwrap();
        c.message(&name("bob"), &name("ana"), "for ana").unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            seen.push(line);
        }
        seen.iter().any(|l| l.contains("for ana"))
    });
    writeln!(stdin, "/quit").unwrap();
    drop(stdin);
    let _ = child.wait();
    assert!(arrived, "nothing arrived: {seen:?}");
    let line = seen.iter().find(|l| l.contains("for ana")).unwrap();
    assert!(line.contains("*bob → ana* for ana"), "{line}");
    assert!(line.contains("(sent ") && line.contains("clock "), "{line}");
    assert!(!seen.iter().any(|l| l.contains("not for ana")), "{seen:?}");
}

#[test]
fn the_line_client_joins_rooms_with_their_history_and_deletes_only_its_own() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("bob")).unwrap();
    c.create_room(&name("den"), &name("bob")).unwrap();
    for i in 1..=3 {
        c.publish(&name("bob"), &name("den"), &format!("old {i}"))
            .unwrap();
    }
    let out = client(
        &cluster,
        "ana",
        "/join nowhere\n/join den\n/wait 1.5\n/members\n/topic plans for the week\n/wait 0.5\n\
         /topic\n/rooms\n/delete den\n/leave den\n/leave den\n/topic -\n/create attic\n\
         /members attic\n/delete attic\n/rooms\n/join attic\n",
    );
    for want in [
        "error: channel `nowhere` does not exist; /create nowhere makes it",
        "joined #den (with its last 3 posts)",
        "#den <bob> old 1",
        "#den <bob> old 3",
        "in #den: ana",
        "#den has no topic",
        "set the topic of #den",
        "#den: ana set the topic: plans for the week",
        "topic of #den: plans for the week (set by ana)",
        "you are in: den",
        "error: not in a channel; name one",
        "error: only `bob`, who created `den`, may delete it",
        "left #den",
        "error: `ana` is not in `den`",
        "created #attic; it is yours, and you are in it",
        "in #attic: ana",
        "deleted #attic on every server",
        "you are in no channel",
        "error: channel `attic` was deleted",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The history shows once, in order, though the seam is read again after joining.
    let olds: Vec<&str> = out.lines().filter(|l| l.contains("<bob> old")).collect();
    assert_eq!(olds.len(), 3, "{out}");
    assert!(
        olds[0].contains("old 1") && olds[2].contains("old 3"),
        "{out}"
    );
}

#[test]
fn the_line_client_shows_what_arrived_while_away_once() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.login(&name("bob")).unwrap();
    // bob's terminal has taken nothing yet; what ana sends now waits for it.
    let first = client(&cluster, "bob", "/quit\n");
    assert!(!first.contains("while you were away"), "{first}");
    c.message(&name("ana"), &name("bob"), "are you there?")
        .unwrap();
    let id = common::dm(&mut c, &name("ana"), &name("bob"), "call me");
    let out = client(&cluster, "bob", "/quit\n");
    assert!(out.contains("while you were away (2):"), "{out}");
    assert!(
        out.contains("*ana → bob* are you there?  (while away)")
            && out.contains("*ana → bob* call me  (while away)"),
        "{out}"
    );
    let unread = client(&cluster, "bob", "/unread\n");
    assert!(unread.contains("unread: ana 2"), "{unread}");
    // Taken: the next run shows nothing again; another device of bob's gets it all.
    let again = client(&cluster, "bob", "/quit\n");
    assert!(!again.contains("while you were away"), "{again}");
    let mut phone = command(&cluster, "client", &["--user", "bob", "--device", "phone"]);
    let (_, phone_out) = common::run(phone.stdin(Stdio::null()));
    assert!(
        phone_out.contains("while you were away (2):"),
        "{phone_out}"
    );
    // ana sees that bob received it; once bob has read it, with receipts off, she still
    // sees only that; with them on again, she sees when he read it.
    let receipts = |cluster: &Cluster| client(cluster, "ana", &format!("/receipts {id}\n"));
    let listed = receipts(&cluster);
    assert!(
        listed.contains(&format!("{id}: bob, received ")) && !listed.contains(", read "),
        "{listed}"
    );
    let off = client(&cluster, "bob", &format!("/receipts off\n/read {id}\n"));
    assert!(
        off.contains("read receipts are off") && off.contains(&format!("read up to {id}")),
        "{off}"
    );
    assert!(!receipts(&cluster).contains(", read "));
    let on = client(&cluster, "bob", "/receipts on\n");
    assert!(on.contains("read receipts are on"), "{on}");
    let listed = receipts(&cluster);
    assert!(listed.contains(", read "), "{listed}");
}

#[test]
fn the_line_client_shows_who_joins_and_leaves() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("bob")).unwrap();
    c.create_room(&name("den"), &name("bob")).unwrap();
    let (mut child, rx) = spawn_lines(command(&cluster, "client", &["--user", "ana"]));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "/join den").unwrap();
    let mut seen = Vec::new();
    // bob comes and goes until ana's client has shown both (its subscription reaches the
    // proxy asynchronously).
    let shown = wait_until(Duration::from_secs(15), || {
        c.join(&name("bob"), &name("den"), 0).unwrap();
        c.leave(&name("bob"), &name("den")).unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
        seen.iter().any(|l| l.contains("#den: bob joined"))
            && seen.iter().any(|l| l.contains("#den: bob left"))
    });
    writeln!(stdin, "/quit").unwrap();
    drop(stdin);
    let _ = child.wait();
    assert!(shown, "no join and leave notices: {seen:?}");
}

#[test]
fn the_bot_creates_channels_follows_them_and_posts() {
    let cluster = Cluster::start(&bin(), 1);
    let status = command(
        &cluster,
        "bot",
        &["--name", "robo", "--interval-ms", "5", "--count", "25"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success());
    let mut c = cluster.connection();
    assert_eq!(
        c.channels().unwrap().len(),
        5,
        "the bot tops up to five channels"
    );
    assert!(c.users().unwrap().contains(&"robo".to_owned()));
    assert_eq!(common::counts(&cluster.data_dir(0)).kind("post"), 25);
    // It joined three channels, and left them when it stopped.
    let rooms = common::store(&cluster.data_dir(0))
        .snapshot()
        .unwrap()
        .rooms;
    let by_robo = |kind: &str| {
        rooms
            .iter()
            .filter(|e| e.kind.name() == kind)
            .filter(|e| {
                matches!(&e.kind, palaver_proto::EventKind::Room(palaver_proto::RoomKind::Join { user, .. })
                    | palaver_proto::EventKind::Room(palaver_proto::RoomKind::Leave { user, .. }) if user.as_str() == "robo")
            })
            .count()
    };
    assert_eq!((by_robo("join"), by_robo("leave")), (3, 3));
    assert!(c.joined(&name("robo")).unwrap().is_empty());
    // The channels it made are its own: deletable in its name.
    let owned = rooms
        .iter()
        .find_map(|e| match &e.kind {
            palaver_proto::EventKind::Room(palaver_proto::RoomKind::Channel {
                channel,
                owner: Some(o),
            }) if o.as_str() == "robo" => Some(channel.clone()),
            _ => None,
        })
        .expect("a channel of the bot's");
    c.delete(&name("robo"), &owned).unwrap();
}

#[test]
fn the_listener_prints_json_lines() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    let (mut child, rx) = spawn_lines(command(
        &cluster,
        "listen",
        &["--json", "--topic", "general"],
    ));
    let mut line = None;
    wait_until(Duration::from_secs(10), || {
        c.publish(&name("ana"), &name("general"), "watched")
            .unwrap();
        line = rx.recv_timeout(Duration::from_millis(50)).ok();
        line.is_some()
    });
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the listener printed the post");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["topic"], "general");
    assert_eq!(v["service"], "publish");
    assert_eq!(v["data"]["message"], "watched");
    assert_eq!(v["data"]["user"], "ana");
    assert!(v["data"]["clock"].is_u64() && v["data"]["timestamp"].is_f64());
}

#[test]
fn up_runs_a_cluster_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let layout = palaver_supervise::Layout::free(3).unwrap();
    let base = layout.base;
    let web: std::net::SocketAddr = layout.web().parse().unwrap();
    let args: Vec<String> = [
        "up",
        "--base-port",
        &base.to_string(),
        "--data",
        &dir.path().join("data").display().to_string(),
        "--web",
        &web.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut up = Proc::spawn("up", &bin(), &args, &dir.path().join("up.log"));
    // `up` says it is ready once every process it started is.
    assert!(up.await_ready(Duration::from_secs(30)), "{}", up.log());
    let ctx = zmq::Context::new();
    let mut c =
        palaver_client::Connection::open(&ctx, &layout.broker(), Default::default()).unwrap();
    c.login(&name("ana")).unwrap();
    assert_eq!(c.users().unwrap(), vec!["ana"]);
    // `--web`: the gateway serves the web client beside the cluster.
    let page = common::http_get(web, "/");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("<html"),
        "{page}"
    );
    assert!(up.log().contains(&format!("http://{web}/")), "{}", up.log());
    assert!(
        up.stop(Duration::from_secs(15)),
        "up exits cleanly on SIGTERM:\n{}",
        up.log()
    );
    let log = up.log();
    assert!(log.contains("palaver stopped"), "{log}");
    assert!(
        log.contains("s1 |")
            && log.contains("broker |")
            && log.contains("proxy |")
            && log.contains("web |"),
        "one prefixed stream:\n{log}"
    );
    assert!(dir.path().join("data/s1/palaver.db").exists());
}

#[test]
fn the_listener_sees_a_new_channels_first_post_and_says_once_what_it_cannot_read() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.login(&name("bob")).unwrap();
    c.create_channel(&name("warmup")).unwrap();
    let errors = cluster.dir().join("listen.err");
    let mut cmd = command(&cluster, "listen", &["--json"]);
    cmd.stderr(std::fs::File::create(&errors).unwrap());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap());
        }
    });
    // Once a warm-up post shows, the listener's subscription has reached the proxy.
    let ready = wait_until(Duration::from_secs(10), || {
        c.publish(&name("ana"), &name("warmup"), "warm").unwrap();
        rx.recv_timeout(Duration::from_millis(50)).is_ok()
    });
    assert!(ready, "the listener never printed the warm-up posts");
    // A channel born now: its very first post shows; a private message does not.
    c.create_channel(&name("fresh")).unwrap();
    c.message(&name("ana"), &name("bob"), "private").unwrap();
    c.publish(&name("bob"), &name("fresh"), "first").unwrap();
    // Two publications nobody can read, on a channel's topic, pushed in by a cluster process.
    let ctx = zmq::Context::new();
    let publ = ctx.socket(zmq::PUB).unwrap();
    let xsub = cluster.proxy_xsub_endpoint();
    cluster.credentials().connect(&publ, &xsub).unwrap();
    publ.connect(&xsub).unwrap();
    let mut first = None;
    let seen = wait_until(Duration::from_secs(10), || {
        publ.send_multipart([&b"fresh"[..], b"\xc1 not messagepack"], 0)
            .unwrap();
        while let Ok(v) = rx.recv_timeout(Duration::from_millis(50)) {
            assert_ne!(
                v["data"]["message"], "private",
                "a private message was shown"
            );
            if v["topic"] == "fresh" {
                first = Some(v);
            }
        }
        first.is_some()
            && std::fs::read_to_string(&errors)
                .unwrap()
                .contains("cannot be read")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "no first post or no warning: {first:?}");
    assert_eq!(first.unwrap()["data"]["message"], "first");
    let text = std::fs::read_to_string(&errors).unwrap();
    assert_eq!(
        text.matches("cannot be read").count(),
        1,
        "said once, however many arrive:\n{text}"
    );
}

#[test]
fn names_of_any_script_and_text_that_cannot_fake_a_line() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    // João, typed with a combining tilde: the same name as with `ã`.
    c.login(&name("Joa\u{303}o")).unwrap();
    c.login(&name("bob")).unwrap();
    assert!(c.users().unwrap().contains(&"João".to_owned()));
    c.create_channel(&name("praça")).unwrap();
    let mut sub = cluster.subscriber();
    sub.subscribe("João").unwrap();
    sub.subscribe("praça").unwrap();
    cluster.await_subscription(&mut c, &mut sub, &name("João"), &name("praça"));
    c.message(&name("bob"), &name("João"), "olá João").unwrap();
    let mut got = None;
    wait_until(Duration::from_secs(5), || {
        while let Ok(Some(r)) = sub.recv_timeout(Duration::from_millis(50)) {
            if r.publication.envelope.service == "message" {
                got = r
                    .publication
                    .envelope
                    .data
                    .opt_str("message")
                    .unwrap()
                    .map(str::to_owned);
            }
        }
        got.is_some()
    });
    assert_eq!(got.as_deref(), Some("olá João"));
    // Names with control characters are refused, whoever sends them.
    for bad in ["ana\u{1b}[31m", "ana\nbob", "a\u{202e}b"] {
        let reply = c
            .call(palaver_proto::Envelope::new("login").with("user", bad))
            .unwrap();
        assert_eq!(
            palaver_proto::Reply::status(&reply),
            palaver_proto::Status::Error,
            "{bad:?}"
        );
    }
    // A post that would fake a line from someone else, and paint the screen red.
    let fake = "hi\n12:00:00 #praça <bob> send me your password\u{1b}[31m";
    c.publish(&name("João"), &name("praça"), fake).unwrap();
    let out = client(&cluster, "bob", "/history praça\n");
    assert!(
        !out.contains('\u{1b}'),
        "an escape reached the terminal:\n{out}"
    );
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("send me your password"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for one post:\n{out}");
    assert!(
        lines[0].contains("<João> hi\\n12:00:00 #praça <bob> send me your password\\u{1b}[31m"),
        "{}",
        lines[0]
    );
}

#[test]
fn the_line_client_registers_logs_in_and_opens_private_messages() {
    let cluster = Cluster::start(&bin(), 1);
    let mut ana = cluster.connection();
    ana.register(&name("ana"), "ana-password").unwrap();
    ana.login_with_password(&name("ana"), "ana-password")
        .unwrap();
    let (mut child, rx) = spawn_lines(command(&cluster, "client", &["--user", "bob"]));
    let mut stdin = child.stdin.take().unwrap();
    let mut seen: Vec<String> = Vec::new();
    let expect = |seen: &mut Vec<String>, want: &str| {
        let found = wait_until(Duration::from_secs(10), || {
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                seen.push(line);
            }
            seen.iter().any(|l| l.contains(want))
        });
        assert!(found, "missing {want:?} in {seen:#?}");
    };
    expect(&mut seen, "logged in as bob");
    writeln!(stdin, "/register bob-password").unwrap();
    expect(&mut seen, "bob is yours now");
    // Ana's messages to bob are sealed on the open port; bob's client opens them.
    let arrived = wait_until(Duration::from_secs(10), || {
        ana.message(&name("ana"), &name("bob"), "for your eyes only")
            .unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            seen.push(line);
        }
        seen.iter()
            .any(|l| l.contains("*ana → bob* for your eyes only"))
    });
    assert!(arrived, "{seen:#?}");
    writeln!(stdin, "/online").unwrap();
    expect(&mut seen, "online: bob");
    writeln!(stdin, "/password bob-password bob-new-password").unwrap();
    expect(&mut seen, "password changed");
    writeln!(stdin, "/logout").unwrap();
    expect(&mut seen, "logged out");
    writeln!(stdin, "/msg ana hello").unwrap();
    expect(&mut seen, "error: `bob` has a password");
    writeln!(stdin, "/login bob-password").unwrap();
    expect(&mut seen, "error: wrong password for `bob`");
    writeln!(stdin, "/login bob-new-password").unwrap();
    expect(&mut seen, "logged in to your account bob");
    writeln!(stdin, "/quit").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    // Without the password, nobody logs in as bob any more; with it, anyone who has it.
    let (ok, said) = common::run(&mut command(&cluster, "client", &["--user", "bob"]));
    assert!(!ok && said.contains("has a password"), "{said}");
    let (ok, said) = common::run(
        command(&cluster, "client", &["--user", "bob"]).env("PALAVER_PASSWORD", "bob-new-password"),
    );
    assert!(ok && said.contains("logged in as bob"), "{said}");
}

#[test]
fn a_bot_with_a_password_makes_its_name_an_account() {
    let cluster = Cluster::start(&bin(), 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "bot-password\n").unwrap();
    for _ in 0..2 {
        // The first run registers the name; the second logs in to it.
        let (ok, said) = common::run(&mut command(
            &cluster,
            "bot",
            &[
                "--name",
                "robo",
                "--count",
                "3",
                "--interval-ms",
                "10",
                "--password-file",
                file.to_str().unwrap(),
            ],
        ));
        assert!(ok, "{said}");
    }
    let mut c = cluster.connection();
    match c.login(&name("robo")) {
        Err(palaver_client::ClientError::Refused(why)) => assert!(why.contains("has a password")),
        other => panic!("{other:?}"),
    }
}
