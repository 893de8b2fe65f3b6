//! Publications reach the subscribers of exactly their topic.

mod common;

use std::time::Duration;

use common::{bin, name, Cluster};

#[test]
fn a_post_reaches_channel_subscribers_with_every_field() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    let mut sub = cluster.subscriber();
    sub.subscribe("general").unwrap();
    cluster.await_subscription(&mut c, &mut sub, &name("ana"), &name("general"));

    c.publish(&name("ana"), &name("general"), "hello, world")
        .unwrap();
    let got = sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("the post arrives");
    assert_eq!(got.publication.topic, "general");
    let env = &got.publication.envelope;
    assert_eq!(env.service, "publish");
    assert_eq!(env.data.str("user").unwrap(), "ana");
    assert_eq!(env.data.str("channel").unwrap(), "general");
    assert_eq!(env.data.str("message").unwrap(), "hello, world");
    assert!(env.data.timestamp().is_some());
    assert!(env.data.clock().unwrap().is_some());
    assert!(env.data.str("id").unwrap().starts_with("s1:"));
}

#[test]
fn a_subscriber_to_ana_sees_nothing_sent_to_anabela() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    for u in ["ana", "anabela", "bob"] {
        c.login(&name(u)).unwrap();
    }
    let mut sub = cluster.subscriber();
    sub.subscribe("ana").unwrap();
    // Wait until the subscription is active: direct messages to ana start arriving.
    let active = palaver_testkit::wait_until(Duration::from_secs(10), || {
        c.message(&name("bob"), &name("ana"), "ping").unwrap();
        sub.recv_timeout(Duration::from_millis(50))
            .unwrap()
            .is_some()
    });
    assert!(active);
    while sub
        .recv_timeout(Duration::from_millis(100))
        .unwrap()
        .is_some()
    {}

    c.message(&name("bob"), &name("anabela"), "for anabela only")
        .unwrap();
    c.message(&name("bob"), &name("ana"), "for ana").unwrap();
    let got = sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("ana's message arrives");
    assert_eq!(got.publication.topic, "ana");
    assert_eq!(got.publication.envelope.service, "message");
    assert_eq!(
        got.publication.envelope.data.str("message").unwrap(),
        "for ana"
    );
    assert_eq!(got.publication.envelope.data.str("src").unwrap(), "bob");
    assert_eq!(got.publication.envelope.data.str("dst").unwrap(), "ana");
    assert!(sub
        .recv_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
}

#[test]
fn a_subscriber_fills_in_what_it_missed_while_the_proxy_was_down_once_and_in_order() {
    let mut cluster = Cluster::start(&bin(), 2);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    let mut sub = cluster.subscriber();
    sub.repair_with(cluster.connection()).unwrap();
    sub.subscribe("general").unwrap();
    cluster.await_subscription(&mut c, &mut sub, &name("ana"), &name("general"));
    // One post seen live: the repair starts after it.
    c.publish(&name("ana"), &name("general"), "before").unwrap();
    let first = sub.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(
        first
            .unwrap()
            .publication
            .envelope
            .data
            .opt_str("message")
            .unwrap(),
        Some("before")
    );
    cluster.proxy().kill();
    let missed: Vec<String> = (0..20).map(|i| format!("missed {i}")).collect();
    for m in &missed {
        c.publish(&name("ana"), &name("general"), m).unwrap();
    }
    cluster.restart_proxy();
    let mut got = Vec::new();
    palaver_testkit::wait_until(std::time::Duration::from_secs(15), || {
        while let Ok(Some(r)) = sub.recv_timeout(std::time::Duration::from_millis(100)) {
            let d = &r.publication.envelope.data;
            got.push(d.opt_str("message").unwrap().unwrap_or_default().to_owned());
        }
        got.len() >= missed.len()
    });
    // A little longer: nothing comes twice.
    while let Ok(Some(r)) = sub.recv_timeout(std::time::Duration::from_millis(1500)) {
        let d = &r.publication.envelope.data;
        got.push(d.opt_str("message").unwrap().unwrap_or_default().to_owned());
    }
    assert_eq!(got, missed, "every missed post, once, in order");
}
