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
