//! Writes the seed corpus of the fuzz targets: a few dozen MessagePack messages per target,
//! mostly valid ones (each service, each event kind, the limits) and a few that each decoder
//! must refuse, and for `irc`, a few conversations of a client with the gateway core. Run from
//! fuzz/ with `cargo run --example seeds`; it replaces the files of `corpus/request/`,
//! `corpus/event/`, `corpus/peer/` and `corpus/irc/` that it names and leaves any others alone.

use std::{fs, io, path::Path};

use palaver_proto::{
    examples, AccountKind, Envelope, Event, EventKind, MessageKind, Name, MAX_COUNTER,
    MAX_TEXT_BYTES,
};
use rmpv::Value;

fn main() -> io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    write_all(&root.join("request"), requests())?;
    write_all(&root.join("event"), events())?;
    write_all(&root.join("peer"), peers())?;
    write_all(&root.join("irc"), irc())?;
    Ok(())
}

fn write_all<S: AsRef<str>>(dir: &Path, seeds: Vec<(S, Vec<u8>)>) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let count = seeds.len();
    for (file, bytes) in seeds {
        fs::write(dir.join(file.as_ref()), bytes)?;
    }
    println!("{count} seeds in {}", dir.display());
    Ok(())
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("write to Vec");
    out
}

fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn stamped(mut env: Envelope) -> Envelope {
    env.stamp(1_767_270_896.789, 42);
    env
}

fn requests() -> Vec<(String, Vec<u8>)> {
    let publish = || {
        Envelope::new("publish")
            .with("user", "ana")
            .with("channel", "general")
    };
    let message = || {
        Envelope::new("message")
            .with("src", "ana")
            .with("dst", "bob")
    };
    let history = || Envelope::new("history").with("channel", "general");
    let envelopes = vec![
        ("login", Envelope::new("login").with("user", "ana")),
        (
            "login-stamped",
            stamped(Envelope::new("login").with("user", "ana")),
        ),
        (
            "login-request-id",
            stamped(
                Envelope::new("login")
                    .with("user", "bob")
                    .with("request_id", "r-0001"),
            ),
        ),
        ("users", Envelope::new("users")),
        ("users-stamped", stamped(Envelope::new("users"))),
        (
            "settings-off",
            Envelope::new("settings")
                .with("user", "bob")
                .with("receipts", false),
        ),
        (
            "settings-ask",
            Envelope::new("settings").with("user", "bob"),
        ),
        (
            "settings-not-bool",
            Envelope::new("settings")
                .with("user", "bob")
                .with("receipts", 1),
        ),
        (
            "receipts",
            Envelope::new("receipts")
                .with("user", "ana")
                .with("id", "s1:7"),
        ),
        (
            "receipts-bad-id",
            Envelope::new("receipts")
                .with("user", "ana")
                .with("id", "s1:x"),
        ),
        (
            "channel",
            Envelope::new("channel").with("channel", "general"),
        ),
        ("channels", stamped(Envelope::new("channels"))),
        (
            "publish",
            stamped(publish().with("message", "hi bob, welcome to general")),
        ),
        (
            "publish-utf8",
            publish()
                .with("message", "olá, ação! ✓")
                .with("request_id", "x"),
        ),
        (
            "publish-longest",
            publish().with("message", "m".repeat(MAX_TEXT_BYTES)),
        ),
        (
            "publish-too-long",
            publish().with("message", "m".repeat(MAX_TEXT_BYTES + 1)),
        ),
        ("publish-blank", publish().with("message", "  \t")),
        ("message", stamped(message().with("message", "psst"))),
        (
            "message-long-names",
            message()
                .with("src", "a".repeat(32))
                .with("dst", "Z9._-".repeat(6))
                .with("message", "hello"),
        ),
        (
            "clock-float",
            Envelope::new("users")
                .with("clock", 7.0)
                .with("timestamp", 1.5),
        ),
        (
            "clock-max",
            Envelope::new("users").with("clock", MAX_COUNTER),
        ),
        (
            "clock-too-big",
            Envelope::new("users").with("clock", MAX_COUNTER + 1),
        ),
        ("clock-negative", Envelope::new("users").with("clock", -1)),
        (
            "timestamp-string",
            Envelope::new("users").with("timestamp", " 1767270896.5 "),
        ),
        (
            "timestamp-int",
            Envelope::new("users").with("timestamp", 1_767_270_896u64),
        ),
        ("history-channel", history()),
        (
            "history-direct",
            Envelope::new("history")
                .with("user", "ana")
                .with("with", "bob")
                .with("limit", 20),
        ),
        (
            "history-before",
            history().with("before", "42:s2").with("limit", 9999),
        ),
        (
            "history-after",
            history().with("after", "7:s1").with("limit", 1),
        ),
        (
            "history-both",
            history().with("before", "42:s2").with("after", "7:s1"),
        ),
        ("history-bad-cursor", history().with("before", "x:")),
        (
            "unknown-service",
            Envelope::new("dance").with("user", "ana"),
        ),
        (
            "reserved-name",
            Envelope::new("login").with("user", "servers"),
        ),
        ("bad-name", Envelope::new("channel").with("channel", "a b")),
        ("user-not-string", Envelope::new("login").with("user", 5)),
        (
            "replica-origin-first",
            Envelope::new("replica")
                .with("origin", "s1")
                .with("events", vec![Value::from(1), Value::from(2)]),
        ),
        (
            "ack-origin-after-scalars",
            Envelope::new("ack")
                .with("user", "s2")
                .with("flag", true)
                .with("seq", 70_000)
                .with("neg", -70_000)
                .with("ts", 1.5)
                .with("f32", Value::F32(0.25))
                .with("nil", Value::Nil)
                .with("bin", Value::Binary(vec![0, 1, 2]))
                .with("origin", "s1"),
        ),
        (
            "origin-after-map",
            Envelope::new("fetch")
                .with("vv", map(vec![("s1", Value::from(3))]))
                .with("origin", "s3"),
        ),
        (
            "origin-after-ext",
            Envelope::new("fetch")
                .with("x", Value::Ext(1, vec![9; 4]))
                .with("origin", "s3"),
        ),
        (
            "origin-not-string",
            Envelope::new("replica").with("origin", 3),
        ),
    ];
    let mut seeds: Vec<(&str, Vec<u8>)> = envelopes
        .into_iter()
        .map(|(name, env)| (name, env.to_bytes()))
        .collect();
    // Frames laid out as other clients write them, and frames that are not envelopes at all.
    let users = Envelope::new("users").to_bytes();
    let mut trailing = users.clone();
    trailing.push(0);
    seeds.extend([
        (
            "data-first",
            encode(&map(vec![
                ("data", map(vec![("user", Value::from("ana"))])),
                ("service", Value::from("login")),
            ])),
        ),
        (
            "no-data",
            encode(&map(vec![("service", Value::from("users"))])),
        ),
        (
            "data-nil",
            encode(&map(vec![
                ("service", Value::from("channels")),
                ("data", Value::Nil),
            ])),
        ),
        (
            "data-not-map",
            encode(&map(vec![
                ("service", Value::from("users")),
                ("data", Value::from(1)),
            ])),
        ),
        (
            "non-string-key",
            encode(&Value::Map(vec![
                (Value::from("service"), Value::from("users")),
                (
                    Value::from("data"),
                    Value::Map(vec![(Value::from(1), Value::from("one"))]),
                ),
            ])),
        ),
        (
            "nested",
            Envelope::new("users")
                .with(
                    "deep",
                    Value::Array(vec![Value::Array(vec![Value::Array(vec![])])]),
                )
                .to_bytes(),
        ),
        (
            "not-a-map",
            encode(&Value::Array(vec![Value::from("users")])),
        ),
        ("trailing", trailing),
        ("truncated", users[..users.len() - 2].to_vec()),
    ]);
    let mut seeds: Vec<(String, Vec<u8>)> = seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect();
    // Every service, from the shared examples (which a test holds to the declared services).
    seeds.extend(
        examples::requests()
            .into_iter()
            .enumerate()
            .map(|(i, req)| {
                (
                    format!("example-{}-{i}", req.service()),
                    stamped(req.to_envelope()).to_bytes(),
                )
            }),
    );
    seeds
}

fn name(s: &str) -> Name {
    Name::parse(s).expect("a valid name")
}

fn events() -> Vec<(String, Vec<u8>)> {
    let event = |kind, request: Option<&str>| Event {
        origin: "s1".into(),
        seq: 7,
        lamport: 9,
        timestamp: 1_767_270_896.789,
        kind,
        request: request.map(str::to_owned),
    };
    let post = |message: &str| {
        EventKind::Message(MessageKind::Post {
            user: name("ana"),
            channel: name("general"),
            message: message.into(),
        })
    };
    let largest = Event {
        origin: "s".repeat(32),
        seq: MAX_COUNTER,
        lamport: MAX_COUNTER,
        timestamp: f64::MAX,
        kind: EventKind::Message(MessageKind::Direct {
            src: name(&"u".repeat(32)),
            dst: name(&"d".repeat(32)),
            message: "é".repeat(MAX_TEXT_BYTES / 2),
        }),
        request: Some("r".repeat(64)),
    };
    // Every kind, from the shared examples (which a test holds to the declared kinds).
    let mut seeds: Vec<(String, Vec<u8>)> = examples::kinds()
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let request = i.is_multiple_of(2).then(|| format!("r-{i}"));
            let name = format!("{}-{i}", kind.name());
            (name, encode(&event(kind, request.as_deref()).to_value()))
        })
        .collect();
    seeds.push((
        "post-utf8".into(),
        encode(&event(post("olá, ação! ✓"), None).to_value()),
    ));
    seeds.push(("message-largest".into(), encode(&largest.to_value())));
    // Events as another implementation might write them, and events to refuse.
    let with = |mut v: Value, key: &str, value: Value| {
        if let Value::Map(m) = &mut v {
            match m.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
                Some(slot) => slot.1 = value,
                None => m.push((Value::from(key), value)),
            }
        }
        v
    };
    let login = event(
        EventKind::Account(AccountKind::Login { user: name("ana") }),
        None,
    )
    .to_value();
    let post_v = event(post("hi"), None).to_value();
    seeds.extend(
        [
            (
                "timestamp-string",
                encode(&with(login.clone(), "timestamp", Value::from("12.5"))),
            ),
            (
                "timestamp-int",
                encode(&with(login.clone(), "timestamp", Value::from(12))),
            ),
            (
                "no-timestamp",
                encode(&with(login.clone(), "timestamp", Value::Nil)),
            ),
            (
                "lamport-float",
                encode(&with(login.clone(), "lamport", Value::from(9.0))),
            ),
            (
                "lamport-too-big",
                encode(&with(
                    login.clone(),
                    "lamport",
                    Value::from(MAX_COUNTER + 1),
                )),
            ),
            (
                "seq-zero",
                encode(&with(login.clone(), "seq", Value::from(0))),
            ),
            (
                "kind-unknown",
                encode(&with(login.clone(), "kind", Value::from("dance"))),
            ),
            (
                "origin-reserved",
                encode(&with(login.clone(), "origin", Value::from("replica"))),
            ),
            (
                "request-empty",
                encode(&with(login.clone(), "request", Value::from(""))),
            ),
            (
                "request-too-long",
                encode(&with(login, "request", Value::from("r".repeat(65)))),
            ),
            (
                "message-blank",
                encode(&with(post_v.clone(), "message", Value::from(" "))),
            ),
            (
                "message-too-long",
                encode(&with(
                    post_v.clone(),
                    "message",
                    Value::from("m".repeat(MAX_TEXT_BYTES + 1)),
                )),
            ),
            (
                "message-not-string",
                encode(&with(post_v, "message", Value::Binary(b"hi".to_vec()))),
            ),
            ("not-a-map", encode(&Value::Array(vec![Value::from(1)]))),
        ]
        .map(|(name, bytes)| (name.to_owned(), bytes)),
    );
    seeds
}

/// Every peer request and answer, as servers send them.
fn peers() -> Vec<(&'static str, Vec<u8>)> {
    use palaver_proto::peer::{Claim, Introduction, PeerReply, PeerRequest, StatusReport};
    let name = |s: &str| Name::parse(s).expect("valid seed name");
    let me = Some(Introduction {
        name: name("s3"),
        rank: Some(3),
        addr: Some("tcp://127.0.0.1:5568".into()),
    });
    let event = Event {
        origin: "s1".into(),
        seq: 41,
        lamport: 97,
        timestamp: 1_795_379_524.5,
        kind: EventKind::Message(MessageKind::Post {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        }),
        request: Some("r-1".into()),
    };
    let requests = [
        (
            "req-clock",
            PeerRequest::Clock {
                from: me.clone(),
                set: None,
            },
        ),
        ("req-election", PeerRequest::Election { from: me.clone() }),
        (
            "req-coordinator",
            PeerRequest::Coordinator {
                coordinator: name("s3"),
                rank: Some(3),
            },
        ),
        ("req-adjust", PeerRequest::Adjust { delta: -0.25 }),
        ("req-sync", PeerRequest::Sync),
        ("req-status", PeerRequest::Status),
        ("req-digest", PeerRequest::Digest),
        (
            "req-vector",
            PeerRequest::Vector {
                from: me,
                vector: Some([("s1".to_owned(), 40)].into()),
            },
        ),
        (
            "req-fetch",
            PeerRequest::Fetch {
                origin: name("s1"),
                after: 40,
                limit: Some(2000),
            },
        ),
        (
            "req-ack",
            PeerRequest::Ack {
                from: name("s2"),
                origin: name("s1"),
                seq: MAX_COUNTER,
            },
        ),
        (
            "req-replica",
            PeerRequest::Replica {
                origin: name("s1"),
                events: vec![event.clone()],
            },
        ),
    ];
    let replies = [
        (
            "rep-refused",
            PeerReply::Refused {
                service: "fetch".into(),
                reason: "no".into(),
            },
        ),
        (
            "rep-clock",
            PeerReply::Clock {
                time: 12.5,
                coordinator: Claim::Named(name("s3"), Some(3)),
            },
        ),
        (
            "rep-clock-nobody",
            PeerReply::Clock {
                time: 12.5,
                coordinator: Claim::Nobody,
            },
        ),
        ("rep-election", PeerReply::Election),
        (
            "rep-done",
            PeerReply::Done {
                service: "sync".into(),
            },
        ),
        (
            "rep-adjusted",
            PeerReply::Adjusted {
                time: 3.0,
                offset: -1.0,
            },
        ),
        (
            "rep-status",
            PeerReply::Status(Box::new(StatusReport {
                name: name("s1"),
                addr: "tcp://h:1".into(),
                rank: Some(1),
                coordinator: Some(name("s3")),
                time: 5.0,
                offset: 0.5,
                skew: 0.0,
                peers: vec!["s2".into(), "s3".into()],
                unreachable: vec!["s3".into()],
                electing: false,
                rounds: 4,
                users: 2,
                channels: 1,
            })),
        ),
        (
            "rep-digest",
            PeerReply::Digest {
                name: name("s1"),
                events: 44,
                vector: [("s1".to_owned(), 44)].into(),
                digest: "00ff".into(),
            },
        ),
        (
            "rep-vector",
            PeerReply::Vector {
                vector: [("s1".to_owned(), 44)].into(),
            },
        ),
        (
            "rep-fetched",
            PeerReply::Fetched {
                origin: name("s1"),
                events: vec![event],
                more: true,
            },
        ),
    ];
    let mut out: Vec<(&'static str, Vec<u8>)> = requests
        .into_iter()
        .map(|(f, r)| (f, r.to_envelope().to_bytes()))
        .chain(
            replies
                .into_iter()
                .map(|(f, r)| (f, r.to_envelope().to_bytes())),
        )
        .collect();
    // Every step of the messages that decide claims.
    const CLAIMS: [&str; 14] = [
        "req-claims-prepare",
        "req-claims-promise",
        "req-claims-promise-empty",
        "req-claims-accept",
        "req-claims-accept-noop",
        "req-claims-accepted",
        "req-claims-nack",
        "req-claims-forward",
        "req-claims-outcome-decided",
        "req-claims-outcome-no-majority",
        "req-claims-outcome-unknown",
        "req-claims-decided",
        "req-claims-catchup",
        "req-claims-log",
    ];
    let steps = palaver_proto::examples::claim_messages();
    assert_eq!(steps.len(), CLAIMS.len(), "a seed name for every step");
    out.extend(steps.into_iter().zip(CLAIMS).map(|(msg, f)| {
        let req = PeerRequest::Claims {
            from: name("s2"),
            msg,
        };
        (f, req.to_envelope().to_bytes())
    }));
    out.push((
        "bad-fetch-after",
        Envelope::new("fetch")
            .with("origin", "s1")
            .with("after", u64::MAX)
            .to_bytes(),
    ));
    out.push((
        "bad-vector",
        Envelope::new("vector").with("vector", 3).to_bytes(),
    ));
    out
}

/// IRC conversations in the `irc` target's form: a client line per line, `>` and the `data`
/// of the answer to the oldest request unanswered, `<` and a text from the gateway core.
fn irc() -> Vec<(&'static str, Vec<u8>)> {
    let register = "CAP LS 302\n\
        CAP REQ :server-time message-tags echo-message batch labeled-response draft/chathistory \
        draft/read-marker account-tag extended-join away-notify sasl\n\
        NICK ana\nUSER ana 0 * :Ana\nCAP END\n\
        >{\"status\":\"sucesso\",\"user\":\"ana\"}\n\
        >{\"status\":\"OK\",\"channels\":[\"den\"]}\n\
        >{\"status\":\"OK\",\"members\":[\"ana\",\"bob\"]}\n\
        >{\"status\":\"OK\",\"messages\":[{\"id\":\"s1:3\",\"cursor\":\"7:s1\",\"user\":\"bob\",\"channel\":\"den\",\"message\":\"missed\",\"clock\":7}],\"more\":false,\"cursor\":{\"s1\":3}}\n\
        >{\"status\":\"OK\"}\n";
    let chat = "PRIVMSG #den :hello\nPRIVMSG #den :and more\nPRIVMSG bob :psst\n\
        >{\"status\":\"OK\",\"id\":\"s1:5\",\"cursor\":\"9:s1\"}\n\
        <{\"topic\":\"den\",\"service\":\"publish\",\"data\":{\"user\":\"ana\",\"channel\":\"den\",\"message\":\"hello\",\"id\":\"s1:5\",\"clock\":9}}\n\
        >{\"status\":\"OK\",\"ids\":[\"s1:6\"],\"cursors\":[\"10:s1\"],\"id\":\"s1:6\",\"cursor\":\"10:s1\"}\n\
        <{\"topic\":\"den\",\"service\":\"publish\",\"data\":{\"user\":\"bob\",\"channel\":\"den\",\"message\":\"hi\",\"id\":\"s2:1\",\"clock\":11,\"timestamp\":1795379525.25}}\n\
        <{\"topic\":\"ana\",\"service\":\"message\",\"data\":{\"src\":\"bob\",\"dst\":\"ana\",\"message\":\"back\",\"id\":\"s2:2\",\"clock\":12}}\n\
        <{\"topic\":\"den\",\"service\":\"join\",\"data\":{\"user\":\"cy\",\"channel\":\"den\"}}\n\
        <{\"topic\":\"presence\",\"service\":\"presence\",\"data\":{\"user\":\"bob\",\"online\":false}}\n";
    let history = "@label=h1 CHATHISTORY LATEST #den * 10\n\
        >{\"status\":\"OK\",\"messages\":[{\"id\":\"s1:5\",\"cursor\":\"9:s1\",\"user\":\"ana\",\"channel\":\"den\",\"message\":\"hello\",\"timestamp\":1795379525.0}]}\n\
        CHATHISTORY BEFORE #den msgid=s1:5@9 5\nCHATHISTORY TARGETS timestamp=2026-01-01T00:00:00.000Z timestamp=2027-01-01T00:00:00.000Z 5\n\
        MARKREAD #den timestamp=2026-11-22T20:32:05.250Z\nTOPIC #den :new topic\nNAMES #den\nWHOIS bob\nLIST\nAWAY :gone\nPART #den\nQUIT :bye\n";
    let sasl = "CAP LS 302\nCAP REQ sasl\nAUTHENTICATE PLAIN\nAUTHENTICATE AGFuYQBzZWNyZXQ=\n\
        >{\"status\":\"erro\",\"description\":\"wrong password\"}\nAUTHENTICATE *\nPASS secret\nNICK ana\nUSER a 0 * :a\nCAP END\n";
    vec![
        ("register", register.as_bytes().to_vec()),
        ("chat", [register, chat].concat().into_bytes()),
        ("history", [register, history].concat().into_bytes()),
        ("sasl", sasl.as_bytes().to_vec()),
        ("bad-lines", b"PRIVMSG\n:x\n@a=b\nNICK #no\nJOIN #den\nPING\n\xff\xfe\n".to_vec()),
    ]
}
