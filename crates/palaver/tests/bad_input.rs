//! Whatever arrives over the network gets a clear error reply, changes nothing, and never
//! stops the server.

mod common;

use common::{bin, name, Cluster};
use palaver_proto::{Envelope, Reply, Status};
use rand::{Rng, SeedableRng};
use rmpv::Value;

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

#[test]
fn garbage_gets_an_error_reply_and_changes_nothing() {
    let mut cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    let before = common::counts(&cluster.data_dir(0));

    let good = Envelope::new("publish")
        .with("user", "ana")
        .with("channel", "general")
        .with("message", "hello")
        .to_bytes();
    let mut frames: Vec<(String, Vec<u8>, &str)> = vec![
        ("empty frame".into(), vec![], "not valid MessagePack"),
        (
            "truncated".into(),
            good[..good.len() / 2].to_vec(),
            "not valid MessagePack",
        ),
        (
            "not a map".into(),
            encode(&Value::from(42)),
            "must be a MessagePack map",
        ),
        (
            "no service".into(),
            encode(&map(vec![("data", map(vec![]))])),
            "missing field `service`",
        ),
        (
            "service not a string".into(),
            encode(&map(vec![("service", Value::from(1))])),
            "`service` must be a string",
        ),
        (
            "data not a map".into(),
            encode(&map(vec![
                ("service", "users".into()),
                ("data", "x".into()),
            ])),
            "`data` must be a map",
        ),
        (
            "unknown service".into(),
            Envelope::new("dance").to_bytes(),
            "unknown service `dance`",
        ),
        (
            "user not a string".into(),
            Envelope::new("login").with("user", 7).to_bytes(),
            "`user` must be a string",
        ),
        (
            "message not a string".into(),
            Envelope::new("publish")
                .with("user", "ana")
                .with("channel", "general")
                .with("message", Value::Array(vec![]))
                .to_bytes(),
            "`message` must be a string",
        ),
        (
            "clock not a number".into(),
            Envelope::new("users").with("clock", "soon").to_bytes(),
            "`clock` must be",
        ),
        (
            "a negative join limit".into(),
            Envelope::new("join")
                .with("user", "ana")
                .with("channel", "general")
                .with("limit", -1)
                .to_bytes(),
            "`limit` must be a non-negative integer",
        ),
        (
            "an owner that is not a name".into(),
            Envelope::new("channel")
                .with("channel", "den")
                .with("user", Value::Array(vec![]))
                .to_bytes(),
            "`user` must be a string",
        ),
        (
            "a delete without a channel".into(),
            Envelope::new("delete").with("user", "ana").to_bytes(),
            "missing field `channel`",
        ),
        (
            "members of a bad name".into(),
            Envelope::new("members").with("channel", "#den").to_bytes(),
            "`channel`",
        ),
        (
            "a receipts setting that is not true or false".into(),
            Envelope::new("settings")
                .with("user", "ana")
                .with("receipts", "no")
                .to_bytes(),
            "`receipts` must be",
        ),
        (
            "receipts of a message id that is not one".into(),
            Envelope::new("receipts")
                .with("user", "ana")
                .with("id", "s1:-4")
                .to_bytes(),
            "`id`",
        ),
        (
            "a peer's two-phase step from a client".into(),
            Envelope::new("twopc")
                .with("from", "s1")
                .with("step", "decided")
                .to_bytes(),
            "unknown service `twopc`",
        ),
        (
            "JSON instead of MessagePack".into(),
            br#"{"service": "login", "data": {"user": "ana", "timestamp": 1}}"#.to_vec(),
            "this request is JSON; Palaver expects MessagePack",
        ),
        (
            "oversized".into(),
            vec![0x90; 10 << 20],
            "larger than the limit",
        ),
        (
            "trailing bytes".into(),
            [good.clone(), vec![0xc0]].concat(),
            "trailing bytes",
        ),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..50 {
        let len = rng.gen_range(1..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        frames.push((format!("random #{i}"), bytes, ""));
    }
    for (what, bytes, want) in frames {
        let reply = c
            .call_raw(&bytes)
            .unwrap_or_else(|e| panic!("{what}: no reply: {e}"));
        assert_eq!(Reply::status(&reply), Status::Error, "{what}: {reply:?}");
        let text = Reply::error_text(&reply).unwrap_or_default();
        assert!(!text.is_empty(), "{what}: the error says why");
        assert!(text.contains(want), "{what}: {text:?} should say {want:?}");
    }
    assert!(
        cluster.connection().users().is_ok(),
        "the server still serves"
    );
    assert_eq!(
        common::counts(&cluster.data_dir(0)),
        before,
        "nothing was stored"
    );
    // The broker refuses a frame over the limit itself, without passing it on.
    let log = cluster.broker().log();
    assert!(
        log.contains("refused an oversized frame"),
        "the oversized frame is logged"
    );
}

#[test]
fn the_reply_repeats_the_service_of_a_bad_request() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    let reply = c.call(Envelope::new("channel").with("channel", 3)).unwrap();
    assert_eq!(reply.service, "channel");
    assert_eq!(reply.data.str("status").unwrap(), "erro");
}

#[test]
fn the_reference_and_the_peer_endpoints_survive_garbage_too() {
    let mut cluster = Cluster::start(&bin(), 2);
    let ctx = zmq::Context::new();
    let endpoints = [
        cluster.reference_endpoint(),
        cluster.peer_addr(0).unwrap(),
        cluster.peer_addr(1).unwrap(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for endpoint in &endpoints {
        let mut c = palaver_client::Connection::open_internal(
            &ctx,
            endpoint,
            palaver_client::SharedClock::new(),
            cluster.credentials(),
        )
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(2), 1);
        let mut frames: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xc1],
            encode(&Value::from("not a map")),
            Envelope::new("rank").to_bytes(),
            Envelope::new("heartbeat").with("user", 5).to_bytes(),
            Envelope::new("fetch")
                .with("origin", "s1")
                .with("after", "x")
                .to_bytes(),
            Envelope::new("adjust").with("delta", "soon").to_bytes(),
            Envelope::new("adjust").with("delta", 1e300).to_bytes(),
            Envelope::new("election")
                .with("user", Value::Array(vec![]))
                .to_bytes(),
            Envelope::new("coordinator")
                .with("coordinator", "bad name!")
                .to_bytes(),
            Envelope::new("vector").with("vector", 3).to_bytes(),
            // Acks are one-way, but a malformed one, or one for another origin, is answered.
            Envelope::new("ack").to_bytes(),
            Envelope::new("ack")
                .with("user", "s9")
                .with("origin", "bad name!")
                .with("seq", 1)
                .to_bytes(),
            Envelope::new("ack")
                .with("user", "s9")
                .with("origin", "nobody")
                .with("seq", 1)
                .to_bytes(),
            Envelope::new("dance").to_bytes(),
            vec![0x90; 3 << 20],
            // A two-phase step is one way, but a malformed one is answered.
            Envelope::new("twopc")
                .with("from", "s9")
                .with("step", "explode")
                .with("tx", "t1")
                .to_bytes(),
            Envelope::new("twopc")
                .with("from", "s9")
                .with("step", "query")
                .with("tx", "t 1; DROP")
                .to_bytes(),
            Envelope::new("twopc")
                .with("from", "s9")
                .with("step", "prepare")
                .with("tx", "t1")
                .with("leader", "s9")
                .with("channel", "general")
                .with("owner", "ana")
                .with(
                    "participants",
                    (0..65)
                        .map(|i| Value::from(format!("s{i}")))
                        .collect::<Vec<_>>(),
                )
                .to_bytes(),
            Envelope::new("twopc")
                .with("from", "s9")
                .with("step", "vote")
                .with("tx", "t1")
                .with("yes", "maybe")
                .to_bytes(),
        ];
        for _ in 0..30 {
            let len = rng.gen_range(1..300);
            frames.push((0..len).map(|_| rng.gen()).collect());
        }
        for (i, bytes) in frames.iter().enumerate() {
            let reply = c
                .call_raw(bytes)
                .unwrap_or_else(|e| panic!("{endpoint}: frame {i}: no reply: {e}"));
            assert_eq!(
                Reply::status(&reply),
                Status::Error,
                "{endpoint}: frame {i}: {reply:?}"
            );
        }
    }
    // Everything still works: the servers serve, the reference lists both, the clocks agree.
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    assert_eq!(c.users().unwrap(), vec!["ana"]);
    let mut r = palaver_client::Connection::open_internal(
        &ctx,
        &cluster.reference_endpoint(),
        palaver_client::SharedClock::new(),
        cluster.credentials(),
    )
    .unwrap();
    let list = r.call(Envelope::new("list")).unwrap();
    assert_eq!(
        palaver_proto::ServerEntry::parse_list(&list).unwrap().len(),
        2
    );
}

/// Guards against one request poisoning the order: a clock of 2^64−1 used to saturate a
/// server's Lamport clock, and 2^63 was stored as a negative time that sorted first.
#[test]
fn absurd_clocks_are_refused_and_move_no_clock() {
    let cluster = Cluster::start(&bin(), 3);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    c.register(&name("acct"), "acct-password").unwrap();
    // The highest clock any server shows now: every reply through the broker carries one.
    let clock_now = |c: &mut palaver_client::Connection| -> u64 {
        (0..6)
            .map(|_| {
                let reply = c.call_raw(&Envelope::new("users").to_bytes()).unwrap();
                reply.clock().expect("replies carry a clock")
            })
            .max()
            .unwrap()
    };
    let before = clock_now(&mut c);
    let absurd = [
        Value::from(u64::MAX),
        Value::from(1u64 << 63),
        Value::from(1u64 << 53),
        Value::from(-1),
        Value::from(1e300),
        Value::from(f64::NAN),
    ];
    for clock in &absurd {
        for env in [
            Envelope::new("publish")
                .with("user", "ana")
                .with("channel", "general")
                .with("message", "poison"),
            Envelope::new("users"),
        ] {
            let reply = c
                .call_raw(&env.with("clock", clock.clone()).to_bytes())
                .unwrap();
            assert_eq!(Reply::status(&reply), Status::Error, "clock {clock:?}");
            let text = Reply::error_text(&reply).unwrap_or_default();
            assert!(
                text.contains("`clock`") && text.contains("9007199254740991"),
                "clock {clock:?}: {text:?}"
            );
        }
    }
    // Refused for other reasons, with a huge but valid clock: no clock moves either.
    let big = palaver_proto::MAX_COUNTER;
    for env in [
        Envelope::new("dance"),
        Envelope::new("publish")
            .with("user", "ana")
            .with("channel", "nowhere")
            .with("message", "x"),
        Envelope::new("login").with("user", "bad name!"),
        // Refused only once the password is checked, on the hasher thread.
        Envelope::new("login")
            .with("user", "acct")
            .with("password", "wrong-password"),
        Envelope::new("unregister")
            .with("user", "acct")
            .with("password", "wrong-password"),
        Envelope::new("register")
            .with("user", "acct")
            .with("password", "acct-password"),
        Envelope::new("publish")
            .with("user", "acct")
            .with("channel", "general")
            .with("message", "x")
            .with("token", "f".repeat(64)),
    ] {
        let reply = c.call_raw(&env.with("clock", big).to_bytes()).unwrap();
        assert_eq!(Reply::status(&reply), Status::Error);
        assert!(
            reply.clock().unwrap() < big,
            "a refusal does not echo the clock"
        );
    }
    let after = clock_now(&mut c);
    assert!(
        after < before + 1_000,
        "refused requests moved a clock: {before} → {after}"
    );
    // Every server lists the channel's history in the order it was posted.
    for i in 0..5 {
        c.publish(&name("ana"), &name("general"), &format!("m{i}"))
            .unwrap();
    }
    for server in 0..3 {
        let store = common::store(&cluster.data_dir(server));
        let q = palaver_proto::HistoryQuery {
            of: palaver_proto::Conversation::Channel(name("general")),
            limit: 50,
            before: None,
            after: None,
            window: Default::default(),
        };
        let ok = palaver_testkit::wait_until(std::time::Duration::from_secs(5), || {
            store
                .history(&q)
                .map(|(e, _)| e.len() == 5)
                .unwrap_or(false)
        });
        assert!(ok, "s{} holds the five posts", server + 1);
        let (events, _) = store.history(&q).unwrap();
        let texts: Vec<String> = events
            .iter()
            .map(|e| match &e.kind {
                palaver_proto::EventKind::Message(palaver_proto::MessageKind::Post {
                    message,
                    ..
                }) => message.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"], "s{}", server + 1);
    }
}
