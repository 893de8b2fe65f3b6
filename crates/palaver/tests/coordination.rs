//! Clocks and coordination between real processes: Berkeley synchronisation of skewed clocks,
//! the bully election when the coordinator dies and when it comes back, ranks that survive a
//! restart of the reference, and Lamport clocks on every message.

mod common;

use std::time::{Duration, Instant};

use common::{bin, name, Cluster};
use palaver_auth::Credentials;
use palaver_client::{Connection, SharedClock, Subscriber};
use palaver_proto::{now_secs, Envelope, ServerEntry, TOPIC_SERVERS};
use palaver_testkit::wait_until;

/// Asks `addr` (a server's peer endpoint) for `env`.
fn ask(key: &Credentials, addr: &str, env: Envelope) -> Option<Envelope> {
    let ctx = zmq::Context::new();
    let mut c = Connection::open_internal(&ctx, addr, SharedClock::new(), key)
        .ok()?
        .with_timeout(Duration::from_millis(500), 1);
    c.call(env).ok()
}

/// How far a server's corrected clock is ahead of this machine's, allowing for the round trip.
fn offset(key: &Credentials, addr: &str) -> Option<f64> {
    let sent = now_secs();
    let reply = ask(key, addr, Envelope::new("clock"))?;
    let received = now_secs();
    Some(reply.data.opt_f64("time").ok()?? + (received - sent) / 2.0 - received)
}

/// The coordinator a server names in its status.
fn coordinator_of(key: &Credentials, addr: &str) -> Option<String> {
    ask(key, addr, Envelope::new("status"))?
        .data
        .opt_str("coordinator")
        .ok()?
        .map(str::to_owned)
}

/// Whether every listed server names `who` as coordinator.
fn all_agree(key: &Credentials, addrs: &[String], who: &str) -> bool {
    addrs
        .iter()
        .all(|a| coordinator_of(key, a).as_deref() == Some(who))
}

fn addrs(cluster: &mut Cluster, servers: &[usize]) -> Vec<String> {
    servers
        .iter()
        .map(|&i| cluster.peer_addr(i).expect("server is running"))
        .collect()
}

/// Waits for an announcement on `servers` naming `who`.
fn await_announcement(sub: &mut Subscriber, who: &str, within: Duration) -> bool {
    let end = Instant::now() + within;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Ok(Some(r)) = sub.recv_timeout(left) {
            let env = &r.publication.envelope;
            if env.service == "election"
                && env.data.opt_str("coordinator").ok().flatten() == Some(who)
            {
                return true;
            }
        }
    }
    false
}

#[test]
fn skewed_clocks_converge_within_50_ms() {
    let mut cluster = Cluster::start_skewed(&bin(), &[-3000, 0, 4000]);
    let key = cluster.credentials().clone();
    let addrs = addrs(&mut cluster, &[0, 1, 2]);
    let mut spread = f64::MAX;
    let converged = wait_until(Duration::from_secs(5), || {
        let offsets: Option<Vec<f64>> = addrs.iter().map(|a| offset(&key, a)).collect();
        let Some(offsets) = offsets else { return false };
        let max = offsets.iter().copied().fold(f64::MIN, f64::max);
        let min = offsets.iter().copied().fold(f64::MAX, f64::min);
        spread = max - min;
        spread <= 0.050
    });
    assert!(
        converged,
        "clocks still {:.0} ms apart after 5 s",
        spread * 1000.0
    );
    // And they stay together.
    let offsets: Vec<f64> = addrs.iter().map(|a| offset(&key, a).unwrap()).collect();
    let max = offsets.iter().copied().fold(f64::MIN, f64::max);
    let min = offsets.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        max - min <= 0.050,
        "clocks drifted apart again: {offsets:?}"
    );
}

#[test]
fn a_killed_coordinator_is_replaced_and_takes_over_again_when_it_returns() {
    let mut cluster = Cluster::start(&bin(), 3);
    let key = cluster.credentials().clone();
    let all = addrs(&mut cluster, &[0, 1, 2]);
    assert!(
        wait_until(Duration::from_secs(10), || all_agree(&key, &all, "s3")),
        "s3 should lead at first"
    );

    let mut sub = cluster.subscriber();
    sub.subscribe(TOPIC_SERVERS).unwrap();
    // Make sure the subscription is active: ask s1 for an election until s3's announcement
    // arrives.
    let heard = wait_until(Duration::from_secs(10), || {
        ask(&key, &all[0], Envelope::new("election"));
        await_announcement(&mut sub, "s3", Duration::from_millis(500))
    });
    assert!(heard, "announcements reach the servers topic");

    cluster.kill_server(2);
    let killed = Instant::now();
    assert!(
        await_announcement(&mut sub, "s2", Duration::from_secs(5)),
        "s2 announced within 5 s of the kill"
    );
    let took = killed.elapsed();
    let live = addrs(&mut cluster, &[0, 1]);
    assert!(
        wait_until(Duration::from_secs(3), || all_agree(&key, &live, "s2")),
        "s1 and s2 agree on s2"
    );
    eprintln!("new coordinator announced {took:?} after the kill");

    cluster.start_server(2);
    assert!(
        await_announcement(&mut sub, "s3", Duration::from_secs(10)),
        "s3 takes over again"
    );
    let all = addrs(&mut cluster, &[0, 1, 2]);
    assert!(
        wait_until(Duration::from_secs(5), || all_agree(&key, &all, "s3")),
        "everyone agrees on s3 again"
    );
}

#[test]
fn ranks_survive_a_restart_of_the_reference() {
    let mut cluster = Cluster::start(&bin(), 3);
    let key = cluster.credentials().clone();
    let ctx = zmq::Context::new();
    let list = |ctx: &zmq::Context, endpoint: &str| -> Vec<(String, u64)> {
        let Ok(c) = Connection::open_internal(ctx, endpoint, SharedClock::new(), &key) else {
            return Vec::new();
        };
        let mut c = c.with_timeout(Duration::from_millis(500), 1);
        let Ok(reply) = c.call(Envelope::new("list")) else {
            return Vec::new();
        };
        let mut v: Vec<(String, u64)> = ServerEntry::parse_list(&reply)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.to_string(), e.rank))
            .collect();
        v.sort();
        v
    };
    let endpoint = cluster.reference_endpoint();
    let mut before = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        before = list(&ctx, &endpoint);
        before.len() == 3
    }));
    cluster.kill_reference();
    cluster.start_reference();
    let mut after = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            after = list(&ctx, &endpoint);
            after.len() == 3
        }),
        "the servers are listed again after the restart: {after:?}"
    );
    assert_eq!(after, before, "same ranks after the restart");
}

#[test]
fn every_reply_and_publication_carries_time_and_clock_and_clocks_never_go_back() {
    let cluster = Cluster::start(&bin(), 1);
    let clock = SharedClock::new();
    let ctx = zmq::Context::new();
    let mut c = Connection::open(&ctx, &cluster.broker_endpoint(), clock.clone()).unwrap();
    let mut sub = Subscriber::open(&ctx, &cluster.sub_endpoint(), clock.clone()).unwrap();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    sub.subscribe("general").unwrap();
    cluster.await_subscription(&mut c, &mut sub, &name("ana"), &name("general"));

    let mut last = clock.now();
    for i in 0..60 {
        let env = match i % 3 {
            0 => Envelope::new("users"),
            1 => Envelope::new("channels"),
            _ => Envelope::new("publish")
                .with("user", "ana")
                .with("channel", "general")
                .with("message", format!("m{i}")),
        };
        let reply = c.call(env).unwrap();
        let sent_clock = clock.now();
        assert!(
            reply.data.timestamp().is_some(),
            "reply {i} has a timestamp"
        );
        let reply_clock = reply.data.clock().unwrap().expect("reply has a clock");
        assert!(reply_clock >= sent_clock.min(reply_clock), "reply clock");
        let now = clock.now();
        assert!(now >= last, "the client's clock went back: {last} → {now}");
        last = now;
    }
    let mut seen = 0;
    while let Some(r) = sub.recv_timeout(Duration::from_millis(500)).unwrap() {
        let d = &r.publication.envelope.data;
        assert!(d.timestamp().is_some() && d.clock().unwrap().is_some());
        let now = clock.now();
        assert!(now >= last);
        last = now;
        seen += 1;
    }
    assert_eq!(seen, 20, "every post was published");
}

#[test]
fn a_clock_request_that_says_the_time_sets_it_or_is_refused() {
    let mut cluster = Cluster::start(&bin(), 1);
    let addr = cluster.peer_addr(0).expect("the server's peer endpoint");
    let key = cluster.credentials().clone();
    let before = offset(&key, &addr).expect("clock answered");
    assert!(
        before.abs() < 1.0,
        "starts near this machine's time: {before}"
    );
    // Another implementation's coordinator tells it the time: an hour ahead.
    let set = Envelope::new("clock").with("time", now_secs() + 3_600.0);
    let reply = ask(&key, &addr, set).expect("answered");
    assert_eq!(
        palaver_proto::Reply::status(&reply),
        palaver_proto::Status::Success
    );
    let after = offset(&key, &addr).unwrap();
    assert!((after - 3_600.0).abs() < 1.0, "set an hour ahead: {after}");
    // Two years away is refused, and changes nothing.
    let far = Envelope::new("clock").with("time", now_secs() + 2.0 * 365.0 * 86_400.0);
    let reply = ask(&key, &addr, far).expect("answered");
    assert_eq!(
        palaver_proto::Reply::status(&reply),
        palaver_proto::Status::Error
    );
    let text = palaver_proto::Reply::error_text(&reply).unwrap_or_default();
    assert!(text.contains("at most a year"), "{text}");
    let last = offset(&key, &addr).unwrap();
    assert!((last - 3_600.0).abs() < 1.0, "unchanged: {last}");
}
