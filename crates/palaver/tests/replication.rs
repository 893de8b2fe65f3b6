//! Replication between real servers: every server ends up holding everything, a write is seen
//! by the very next request whichever server answers it, and a restarted server catches up.

mod common;

use std::time::Duration;

use common::{bin, name, Cluster};
use palaver_client::{Connection, SharedClock};
use palaver_testkit::wait_until;

/// Whether all `n` servers hold the same events (same digest and counts).
fn converged(cluster: &Cluster, n: usize) -> bool {
    let digests: Vec<(u64, palaver_store::Counts)> = (0..n)
        .map(|i| {
            let s = common::store(&cluster.data_dir(i));
            (s.digest().unwrap(), s.counts().unwrap())
        })
        .collect();
    digests.windows(2).all(|w| w[0] == w[1])
}

#[test]
fn every_server_holds_everything() {
    let cluster = Cluster::start(&bin(), 3);
    let mut setup = cluster.connection();
    setup.login(&name("ana")).unwrap();
    setup.create_channel(&name("general")).unwrap();
    let ctx = zmq::Context::new();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (ctx, broker) = (ctx.clone(), cluster.broker_endpoint());
            std::thread::spawn(move || {
                let mut c = Connection::open(&ctx, &broker, SharedClock::new()).unwrap();
                let me = name(&format!("w{w}"));
                c.login(&me).unwrap();
                for i in 0..100 {
                    c.publish(&me, &name("general"), &format!("post {i} by {me}"))
                        .unwrap();
                    c.message(&me, &name("ana"), &format!("dm {i} from {me}"))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(10), || converged(&cluster, 3)),
        "servers did not converge"
    );
    let counts = common::counts(&cluster.data_dir(2));
    assert_eq!(
        (
            counts.kind("post"),
            counts.kind("message"),
            counts.kind("channel")
        ),
        (400, 400, 1)
    );
}

#[test]
fn the_next_request_sees_the_write_whichever_server_answers() {
    let cluster = Cluster::start(&bin(), 3);
    // One standard client: each request may go to a different server.
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    for i in 0..1000 {
        let user = name(&format!("u{i}"));
        c.login(&user).unwrap();
        assert!(
            c.users().unwrap().contains(&user.to_string()),
            "round {i}: the new user is listed"
        );
        c.message(&name("ana"), &user, "welcome")
            .unwrap_or_else(|e| panic!("round {i}: message to a new user: {e}"));
        let channel = name(&format!("c{i}"));
        c.create_channel(&channel).unwrap();
        assert!(
            c.channels().unwrap().contains(&channel.to_string()),
            "round {i}: the new channel is listed"
        );
        c.publish(&user, &channel, "first")
            .unwrap_or_else(|e| panic!("round {i}: post to a new channel: {e}"));
    }
}

#[test]
fn a_restarted_server_catches_up() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    cluster.kill_server(2);
    for i in 0..500 {
        c.publish(
            &name("ana"),
            &name("general"),
            &format!("while s3 was down {i}"),
        )
        .unwrap();
    }
    cluster.start_server(2);
    assert!(
        wait_until(Duration::from_secs(10), || converged(&cluster, 3)),
        "s3 did not catch up"
    );
    assert_eq!(common::counts(&cluster.data_dir(2)).kind("post"), 500);
}

#[test]
fn a_retried_write_takes_effect_once_whichever_server_gets_it() {
    let cluster = Cluster::start(&bin(), 3);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    let post = || {
        palaver_proto::Envelope::new("publish")
            .with("user", "ana")
            .with("channel", "general")
            .with("message", "only once")
            .with("request_id", "retry-me")
    };
    // The broker hands each copy to the next server in turn.
    let replies: Vec<_> = (0..4).map(|_| c.call(post()).unwrap()).collect();
    let ids: Vec<&str> = replies.iter().map(|r| r.data.str("id").unwrap()).collect();
    assert!(
        replies
            .iter()
            .all(|r| r.data.str("status").unwrap() == "OK"),
        "{replies:?}"
    );
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "every copy names the same event: {ids:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || converged(
        &cluster, 3
    )));
    for i in 0..3 {
        assert_eq!(
            common::counts(&cluster.data_dir(i)).kind("post"),
            1,
            "server {i} holds the post once"
        );
    }
}

#[test]
fn every_server_tells_the_same_history() {
    use palaver_proto::Envelope;
    let cluster = Cluster::start(&bin(), 3);
    let mut setup = cluster.connection();
    setup.login(&name("ana")).unwrap();
    setup.login(&name("bob")).unwrap();
    setup.create_channel(&name("general")).unwrap();
    let ctx = zmq::Context::new();
    let writers: Vec<_> = ["ana", "bob"]
        .into_iter()
        .map(|who| {
            let (ctx, broker) = (ctx.clone(), cluster.broker_endpoint());
            std::thread::spawn(move || {
                let mut c = Connection::open(&ctx, &broker, SharedClock::new()).unwrap();
                for i in 0..60 {
                    c.publish(&name(who), &name("general"), &format!("{who} {i}"))
                        .unwrap();
                    if i % 10 == 0 {
                        c.message(
                            &name(who),
                            &name(if who == "ana" { "bob" } else { "ana" }),
                            &format!("dm {i}"),
                        )
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(wait_until(Duration::from_secs(10), || converged(
        &cluster, 3
    )));
    let mut c = cluster.connection();
    let page = |c: &mut Connection, env: Envelope| -> (Vec<String>, bool, Option<String>) {
        let reply = c.call(env).unwrap();
        let Some(rmpv::Value::Array(items)) = reply.data.get("messages") else {
            panic!("no messages: {reply:?}")
        };
        let texts: Vec<String> = items
            .iter()
            .map(|m| {
                let m = palaver_proto::Map(m.as_map().unwrap().clone());
                m.str("message").unwrap().to_owned()
            })
            .collect();
        let first = items.first().map(|m| {
            palaver_proto::Map(m.as_map().unwrap().clone())
                .str("cursor")
                .unwrap()
                .to_owned()
        });
        (
            texts,
            reply
                .data
                .get("more")
                .and_then(rmpv::Value::as_bool)
                .unwrap_or(false),
            first,
        )
    };
    // Six asks: the broker spreads them over all three servers; all must agree.
    let answers: Vec<_> = (0..6)
        .map(|_| {
            page(
                &mut c,
                Envelope::new("history")
                    .with("channel", "general")
                    .with("limit", 50),
            )
        })
        .collect();
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "servers disagree on the history"
    );
    let (newest, more, first) = answers[0].clone();
    assert_eq!(newest.len(), 50);
    assert!(more, "there are older posts");
    // Page back from the oldest of those: the rest, 70 in all.
    let (older, more, _) = page(
        &mut c,
        Envelope::new("history")
            .with("channel", "general")
            .with("limit", 500)
            .with("before", first.unwrap()),
    );
    assert_eq!(older.len() + newest.len(), 120);
    assert!(!more);
    // Each writer's posts appear in the order it sent them.
    let all: Vec<String> = older.into_iter().chain(newest).collect();
    for who in ["ana", "bob"] {
        let mine: Vec<&String> = all.iter().filter(|t| t.starts_with(who)).collect();
        let expected: Vec<String> = (0..60).map(|i| format!("{who} {i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    let (dms, _, _) = page(
        &mut c,
        Envelope::new("history")
            .with("user", "ana")
            .with("with", "bob"),
    );
    assert_eq!(dms.len(), 12, "the private conversation, both ways");
}

#[test]
fn the_next_request_sees_the_write_when_each_goes_straight_to_another_server() {
    let mut cluster = Cluster::start(&bin(), 3);
    // One connection per server, each to its own endpoint: request k goes to server k mod 3.
    let mut conns: Vec<Connection> = (0..3)
        .map(|i| {
            let addr = cluster.peer_addr(i).unwrap();
            cluster.internal(&addr)
        })
        .collect();
    let mut k = 0;
    let mut next = move || {
        k += 1;
        k % 3
    };
    conns[next()].login(&name("ana")).unwrap();
    for i in 0..1000 {
        let user = name(&format!("d{i}"));
        conns[next()].login(&user).unwrap();
        assert!(
            conns[next()].users().unwrap().contains(&user.to_string()),
            "round {i}: user listed"
        );
        conns[next()]
            .message(&name("ana"), &user, "hi")
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        let channel = name(&format!("dc{i}"));
        conns[next()].create_channel(&channel).unwrap();
        assert!(
            conns[next()]
                .channels()
                .unwrap()
                .contains(&channel.to_string()),
            "round {i}: channel listed"
        );
        conns[next()]
            .publish(&user, &channel, "first")
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
    }
}
