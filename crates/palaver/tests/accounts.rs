//! Accounts that are their owners': passwords, sessions valid on every server, private
//! messages nobody else reads, presence. Real processes, real sockets; the attacks use raw
//! ZeroMQ sockets and only the standard services.

mod common;

use std::time::{Duration, Instant};

use common::{bin, events_held, name, refused, Cluster};
use palaver_client::{ClientError, Connection};
use palaver_proto::{Envelope, Name, Reply, Status};
use palaver_testkit::wait_until;

/// A raw REQ socket to the broker, as any standard client has.
fn raw_req(ctx: &zmq::Context, cluster: &Cluster) -> zmq::Socket {
    let s = ctx.socket(zmq::REQ).unwrap();
    s.set_linger(0).unwrap();
    s.set_rcvtimeo(10_000).unwrap();
    s.connect(&cluster.broker_endpoint()).unwrap();
    s
}

fn ask(s: &zmq::Socket, env: Envelope) -> Envelope {
    s.send(env.to_bytes(), 0).unwrap();
    Envelope::decode_reply(&s.recv_bytes(0).expect("an answer")).unwrap()
}

fn refusal(reply: &Envelope) -> String {
    assert_eq!(Reply::status(reply), Status::Error, "{reply:?}");
    Reply::error_text(reply).unwrap()
}

/// An account `user` with `password`, and a connection logged in to it.
fn account(cluster: &Cluster, user: &str, password: &str) -> Connection {
    let mut c = cluster.connection();
    c.register(&name(user), password).expect("register");
    c.login_with_password(&name(user), password).expect("login");
    c
}

#[test]
fn account_services_refuse_bad_requests_and_change_nothing() {
    let cluster = Cluster::start(&bin(), 3);
    let mut ana = account(&cluster, "ana", "ana-password");
    let mut bob = account(&cluster, "bob", "bob-password");
    let mut anon = cluster.connection();
    anon.login(&name("cy")).unwrap();
    let ana_token = ana.token().unwrap().to_owned();
    let before = events_held(&cluster);

    refused(
        anon.login_with_password(&name("ana"), "not-her-password"),
        "wrong password",
    );
    refused(
        anon.login_with_password(&name("nobody"), "any-password"),
        "has no password",
    );
    refused(
        anon.register(&name("ana"), "another-password"),
        "already registered",
    );
    refused(
        anon.change_password(&name("ana"), "not-her-password", "new-password"),
        "wrong password",
    );
    refused(
        anon.unregister(&name("ana"), "not-her-password"),
        "wrong password",
    );
    // A forged token, and another person's token, on every service that acts as ana.
    for (token, want) in [
        ("f".repeat(64), "not valid"),
        (bob.token().unwrap().to_owned(), "not `ana`'s"),
    ] {
        let mut c = cluster.connection();
        c.set_token(Some(token));
        refused(c.login(&name("ana")), want);
        refused(c.publish(&name("ana"), &name("cy"), "x"), want);
        refused(c.message(&name("ana"), &name("bob"), "x"), want);
        refused(c.beat(&name("ana"), "d", false), want);
        refused(c.logout(&name("ana")), want);
    }
    assert_eq!(
        events_held(&cluster),
        before,
        "no refusal stored anything, on any of the three servers"
    );
    // A logged-out token.
    let mut second = cluster.connection();
    second
        .login_with_password(&name("ana"), "ana-password")
        .unwrap();
    let second_token = second.token().unwrap().to_owned();
    second.logout(&name("ana")).unwrap();
    second.set_token(Some(second_token));
    refused(
        second.message(&name("ana"), &name("bob"), "x"),
        "logged out",
    );
    // The second session's claim, its session event and its logout (and nothing for the
    // refusal after it).
    assert!(
        events_held(&cluster) > before + 2,
        "the second session and its logout were stored, on all three servers"
    );
    // Ana's own session still works.
    ana.message(&name("ana"), &name("bob"), "still here")
        .unwrap();
    assert_eq!(ana.token(), Some(ana_token.as_str()));
    bob.logout(&name("bob")).unwrap();
}

#[test]
fn an_idle_session_expires_on_every_server() {
    let mut cluster = Cluster::start_with(&bin(), 3, &["--session-idle", "2"]);
    // The session opens after this, and its last recorded use is no earlier than its opening.
    let before = Instant::now();
    let mut ana = account(&cluster, "ana", "ana-password");
    ana.beat(&name("ana"), "d", false).unwrap();
    let peers: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let token = ana.token().unwrap().to_owned();
    // Asked without using it up: a post to a channel that does not exist is refused after the
    // session is checked, and a refused request records no use. Good at first, then expired
    // on every server, saying why.
    let verdict = |p: &String| {
        let mut c = cluster.internal(p);
        c.set_token(Some(token.clone()));
        match c.publish(&name("ana"), &name("nowhere"), "x") {
            Err(ClientError::Refused(why)) => why,
            other => panic!("{other:?}"),
        }
    };
    assert!(verdict(&peers[0]).contains("does not exist"));
    let expired_everywhere = wait_until(Duration::from_secs(10), || {
        peers.iter().all(|p| verdict(p).contains("expired"))
    });
    assert!(expired_everywhere);
    assert!(before.elapsed() >= Duration::from_secs(2), "expired early");
    // A new login works.
    ana.login_with_password(&name("ana"), "ana-password")
        .unwrap();
    ana.beat(&name("ana"), "d", false).unwrap();
}

#[test]
fn impersonation_through_the_standard_services_is_refused_and_stores_nothing() {
    let cluster = Cluster::start(&bin(), 3);
    let mut ana = account(&cluster, "ana", "ana-password");
    let mut setup = cluster.connection();
    setup.login(&name("bob")).unwrap();
    setup.create_channel(&name("general")).unwrap();
    ana.message(&name("ana"), &name("bob"), "a secret for bob")
        .unwrap();
    let before = events_held(&cluster);

    let ctx = zmq::Context::new();
    let s = raw_req(&ctx, &cluster);
    let why = refusal(&ask(&s, Envelope::new("login").with("user", "ana")));
    assert!(why.contains("has a password"), "{why}");
    let why = refusal(&ask(
        &s,
        Envelope::new("publish")
            .with("user", "ana")
            .with("channel", "general")
            .with("message", "forged post"),
    ));
    assert!(why.contains("has a password"), "{why}");
    let why = refusal(&ask(
        &s,
        Envelope::new("message")
            .with("src", "ana")
            .with("dst", "bob")
            .with("message", "forged message"),
    ));
    assert!(why.contains("has a password"), "{why}");
    let why = refusal(&ask(
        &s,
        Envelope::new("history")
            .with("user", "ana")
            .with("with", "bob"),
    ));
    assert!(why.contains("has a password"), "{why}");
    assert_eq!(events_held(&cluster), before, "nothing stored anywhere");
    for i in 0..3 {
        let store = common::store(&cluster.data_dir(i));
        assert!(!store.has_post("general", "forged post").unwrap());
    }
    // Bob has no password: the standard holds for him, and he reads his conversation.
    let reply = ask(
        &s,
        Envelope::new("history")
            .with("user", "bob")
            .with("with", "ana"),
    );
    assert_eq!(Reply::status(&reply), Status::Success, "{reply:?}");
}

/// Private messages between accounts never show their text on the open subscriber port,
/// while the recipient's client opens every one, in order.
#[test]
fn private_text_never_crosses_the_open_port() {
    const N: usize = 100;
    let cluster = Cluster::start(&bin(), 3);
    let mut ana = account(&cluster, "ana", "ana-password");
    let bob_conn = account(&cluster, "bob", "bob-password");
    let ctx = zmq::Context::new();
    // The eavesdropper: every topic, raw.
    let spy = ctx.socket(zmq::SUB).unwrap();
    spy.set_rcvhwm(100_000).unwrap();
    spy.connect(&cluster.sub_endpoint()).unwrap();
    spy.set_subscribe(b"").unwrap();
    // Bob's client: his topic, opening sealed messages with his session.
    let mut bob = cluster.subscriber();
    let mut repair = cluster.connection();
    repair.set_token(bob_conn.token().map(str::to_owned));
    bob.repair_with(repair).unwrap();
    bob.unseal_as(name("bob"));
    bob.subscribe("bob").unwrap();
    // Both subscriptions are live once a probe reaches both.
    let live = wait_until(Duration::from_secs(10), || {
        ana.message(&name("ana"), &name("bob"), "probe").unwrap();
        let got = bob
            .recv_timeout(Duration::from_millis(100))
            .unwrap()
            .is_some();
        got && spy.poll(zmq::POLLIN, 100).unwrap() > 0
    });
    assert!(live, "subscriptions never became active");
    while bob
        .recv_timeout(Duration::from_millis(200))
        .unwrap()
        .is_some()
    {}

    for i in 0..N {
        ana.message(&name("ana"), &name("bob"), &format!("whisper-{i:03}"))
            .unwrap();
    }
    let mut shown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while shown.len() < N && Instant::now() < deadline {
        if let Some(r) = bob.recv_timeout(Duration::from_millis(200)).unwrap() {
            let d = &r.publication.envelope.data;
            if r.publication.envelope.service == "message" {
                let text = d.str("message").unwrap().to_owned();
                if text != "probe" {
                    shown.push(text);
                }
            }
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("whisper-{i:03}")).collect();
    assert_eq!(
        shown, want,
        "bob's client shows all of them, in order, once"
    );

    let mut seen = 0;
    let mut sealed = 0;
    while let Ok(frames) = spy.recv_multipart(zmq::DONTWAIT) {
        seen += 1;
        let bytes: Vec<u8> = frames.concat();
        assert!(
            !bytes.windows(8).any(|w| w == b"whisper-"),
            "private text on the open port"
        );
        if frames.len() == 2 {
            if let Ok(env) = Envelope::decode(&frames[1]) {
                sealed += usize::from(env.service == "sealed");
            }
        }
    }
    assert!(sealed >= N, "the spy saw {sealed} notices of {seen} frames");
}

#[test]
fn a_session_is_good_on_every_server_from_login_to_logout() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut bob = cluster.connection();
    bob.login(&name("bob")).unwrap();
    let peers: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let mut direct: Vec<Connection> = peers.iter().map(|p| cluster.internal(p)).collect();
    for round in 0..5 {
        let mut ana = cluster.connection();
        if round == 0 {
            ana.register(&name("ana"), "ana-password").unwrap();
        }
        let token = ana
            .login_with_password(&name("ana"), "ana-password")
            .unwrap();
        // At once, straight to each server's endpoint: accepted by all.
        for (i, c) in direct.iter_mut().enumerate() {
            c.set_token(Some(token.clone()));
            c.message(
                &name("ana"),
                &name("bob"),
                &format!("round {round} via s{}", i + 1),
            )
            .unwrap_or_else(|e| panic!("s{} refused a fresh session: {e}", i + 1));
        }
        ana.logout(&name("ana")).unwrap();
        // At once: refused by all.
        for (i, c) in direct.iter_mut().enumerate() {
            match c.message(&name("ana"), &name("bob"), "after logout") {
                Err(ClientError::Refused(why)) => assert!(why.contains("logged out"), "{why}"),
                other => panic!("s{} took an ended session: {other:?}", i + 1),
            }
        }
    }
}

fn online(c: &mut Connection) -> Vec<String> {
    c.online().unwrap().into_iter().map(|(u, _)| u).collect()
}

#[test]
fn presence_follows_beats_and_outlives_no_server() {
    let mut cluster = Cluster::start_with(&bin(), 3, &["--presence-timeout", "2"]);
    let mut look = cluster.connection();
    let ctx = zmq::Context::new();
    let notices = ctx.socket(zmq::SUB).unwrap();
    notices.set_linger(0).unwrap();
    notices.connect(&cluster.sub_endpoint()).unwrap();
    notices.set_subscribe(b"presence").unwrap();
    let mut ana = account(&cluster, "ana", "ana-password");

    // A client that beats is online; its notice reaches a subscriber.
    let beat = ana.beat(&name("ana"), "laptop", false).unwrap();
    assert!((0.5..=1.0).contains(&beat), "asked to beat every {beat} s");
    assert!(wait_until(Duration::from_secs(5), || online(&mut look) == ["ana"]));
    // Two devices: online while either beats.
    let mut phone = cluster.connection();
    phone.set_token(ana.token().map(str::to_owned));
    phone.beat(&name("ana"), "phone", false).unwrap();
    ana.beat(&name("ana"), "laptop", true).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        phone.beat(&name("ana"), "phone", false).unwrap();
        assert_eq!(online(&mut look), ["ana"], "the phone still beats");
        // The beat interval itself is what is under test here.
        std::thread::sleep(Duration::from_secs_f64(beat));
    }
    // The phone stops beating without a word (say, its process was killed): offline within
    // the timeout, and the notice says so.
    let silent = Instant::now();
    assert!(wait_until(Duration::from_secs(6), || online(&mut look).is_empty()));
    assert!(
        silent.elapsed() < Duration::from_millis(3500),
        "offline only after {:?}",
        silent.elapsed()
    );
    let mut said = Vec::new();
    while notices.poll(zmq::POLLIN, 500).unwrap() > 0 {
        let frames = notices.recv_multipart(0).unwrap();
        let env = Envelope::decode(&frames[1]).unwrap();
        said.push((
            env.data.str("user").unwrap().to_owned(),
            env.data.opt_bool("online").unwrap().unwrap(),
        ));
    }
    assert!(said.contains(&("ana".to_owned(), true)), "{said:?}");
    assert_eq!(said.last(), Some(&("ana".to_owned(), false)), "{said:?}");

    // A person whose only server dies with them online: the others expire them.
    let bob: Name = name("bob");
    let mut setup = cluster.connection();
    setup.login(&bob).unwrap();
    let s1 = cluster.peer_addr(0).unwrap();
    let mut direct = cluster.internal(&s1);
    direct.beat(&bob, "d", false).unwrap();
    assert!(wait_until(Duration::from_secs(5), || online(&mut look)
        .contains(&"bob".to_owned())));
    cluster.kill_server(0);
    let killed = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || !online(&mut look)
        .contains(&"bob".to_owned())));
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "bob stayed online {:?}",
        killed.elapsed()
    );
}

/// Under kill -9 and SIGSTOP of servers, accounts and sessions converge like every other
/// event: once the servers hold the same events, `admin verify` passes and every session is
/// either good on all of them or refused by all of them, for the same reason.
#[test]
fn accounts_and_sessions_converge_under_chaos() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut cluster = Cluster::start(&bin(), 3);
    let mut setup = cluster.connection();
    setup.login(&name("bob")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tokens: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, tokens, broker) = (stop.clone(), tokens.clone(), cluster.broker_endpoint());
            std::thread::spawn(move || {
                let me = name(&format!("acc{w}"));
                let passwords = ["first-password", "second-password"];
                let mut current = 0;
                let mut c = common::client(&broker);
                while c.register(&me, passwords[0]).is_err() && !stop.load(Ordering::Relaxed) {}
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let token = match c.login_with_password(&me, passwords[current]) {
                        Ok(t) => t,
                        // A timed-out change may have happened: try the other password.
                        Err(ClientError::Refused(why)) if why.contains("wrong password") => {
                            current = 1 - current;
                            continue;
                        }
                        Err(_) => continue,
                    };
                    tokens.lock().unwrap().push((me.to_string(), token));
                    let _ = c.message(&me, &name("bob"), &format!("round {round}"));
                    if round.is_multiple_of(3) {
                        drop(c.logout(&me));
                    } else if round % 3 == 1
                        && c.change_password(&me, passwords[current], passwords[1 - current])
                            .is_ok()
                    {
                        current = 1 - current;
                    }
                }
            })
        })
        .collect();

    let enough = |n: usize| {
        wait_until(Duration::from_secs(30), || {
            tokens.lock().unwrap().len() >= n
        })
    };
    assert!(enough(5), "no sessions opened");
    cluster.kill_server(1);
    assert!(enough(15));
    cluster.start_server(1);
    cluster.server(2).unwrap().signal(libc::SIGSTOP);
    assert!(enough(25));
    cluster.server(2).unwrap().signal(libc::SIGCONT);
    assert!(enough(35));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let converged = wait_until(Duration::from_secs(20), || {
        let d: Vec<u64> = (0..3)
            .map(|i| common::store(&cluster.data_dir(i)).digest().unwrap())
            .collect();
        d[0] == d[1] && d[1] == d[2]
    });
    let held: Vec<String> = (0..3)
        .map(|i| {
            let store = common::store(&cluster.data_dir(i));
            format!(
                "{:?} hiding {:?}",
                store.vector().unwrap(),
                store.hidden().unwrap()
            )
        })
        .collect();
    assert!(converged, "the servers never agreed: {held:#?}");
    let (ok, said) = common::admin_verify(&cluster);
    assert!(ok, "admin verify failed:\n{said}");

    let peers: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let mut direct: Vec<Connection> = peers.iter().map(|p| cluster.internal(p)).collect();
    let tokens = tokens.lock().unwrap().clone();
    let mut good = 0;
    for (user, token) in &tokens {
        let verdicts: Vec<Result<(), String>> = direct
            .iter_mut()
            .map(|c| {
                c.set_token(Some(token.clone()));
                match c.beat(&name(user), "check", false) {
                    Ok(_) => Ok(()),
                    Err(ClientError::Refused(why)) => Err(why),
                    Err(e) => panic!("no answer: {e}"),
                }
            })
            .collect();
        assert!(
            verdicts.iter().all(|v| v == &verdicts[0]),
            "{user}'s session is judged differently: {verdicts:?}"
        );
        good += usize::from(verdicts[0].is_ok());
    }
    eprintln!(
        "{} sessions, {good} still good on every server",
        tokens.len()
    );
}

/// Wrong passwords for one name slow down, and a flood of logins is refused quickly instead of
/// taking the server down: it keeps answering everything else.
#[test]
fn password_guessing_and_login_floods_are_bounded() {
    let mut cluster = Cluster::start(&bin(), 3);
    account(&cluster, "ana", "ana-password");
    let s1 = cluster.peer_addr(0).unwrap();
    let mut direct = cluster.internal(&s1);
    // Straight to one server: three wrong guesses are free, the fourth locks the name.
    for _ in 0..4 {
        refused(
            direct.login_with_password(&name("ana"), "a-wrong-guess"),
            "wrong password",
        );
    }
    refused(
        direct.login_with_password(&name("ana"), "ana-password"),
        "too many wrong passwords",
    );
    // Others are not locked out.
    direct.register(&name("bob"), "bob-password").unwrap();

    // A flood: 200 logins in flight at once on one server.
    let mut flood = cluster.internal(&s1);
    let started = Instant::now();
    for _ in 0..200 {
        flood
            .send_request(
                palaver_proto::Request::Login { user: name("bob") }
                    .to_envelope()
                    .with("password", "bob-password"),
            )
            .unwrap();
    }
    // Meanwhile the server answers a read at once.
    let mut other = cluster.internal(&s1);
    let asked = Instant::now();
    other.users().unwrap();
    let read_took = asked.elapsed();
    let (mut ok, mut busy) = (0, 0);
    while let Some((_, answer)) = flood
        .next_answer(Instant::now() + Duration::from_secs(30))
        .unwrap()
    {
        let reply = answer.unwrap();
        match Reply::status(&reply) {
            Status::Success => ok += 1,
            Status::Error => {
                let why = Reply::error_text(&reply).unwrap();
                assert!(why.contains("busy checking passwords"), "{why}");
                busy += 1;
            }
        }
    }
    eprintln!(
        "flood: {ok} logged in, {busy} refused as busy, all answered in {:?}; a read took {read_took:?}",
        started.elapsed()
    );
    assert_eq!(ok + busy, 200);
    assert!(busy >= 150, "the budget let {ok} hashes through at once");
    assert!(
        read_took < Duration::from_secs(1),
        "a read waited {read_took:?}"
    );
}
