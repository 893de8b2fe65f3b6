//! Receipts between real processes: the sender of a private message hears when the recipient's
//! client took it ("delivered") and when their marker passed it ("read"); `receipts` lists,
//! for one of a person's own messages, who took and read it and when; a person who turns read
//! receipts off sends none, on every server and after a restart.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{bin, dm, events_held, name, notices, personal_subscriber, post, refused, Cluster};
use palaver_client::Receipt;
use palaver_proto::EventRef;

/// The one receipt in `got`, checked to be `state` from `reader` up to `upto`, with no text.
fn one_receipt(got: &[palaver_proto::Envelope], state: &str, reader: &str, upto: &EventRef) {
    let receipts: Vec<_> = got.iter().filter(|e| e.service == "receipt").collect();
    assert_eq!(receipts.len(), 1, "{got:?}");
    let d = &receipts[0].data;
    assert_eq!(d.opt_str("state").unwrap(), Some(state), "{got:?}");
    assert_eq!(d.opt_str("reader").unwrap(), Some(reader));
    assert_eq!(d.opt_str("upto").unwrap(), Some(upto.to_string().as_str()));
    assert!(
        d.get("message").is_none(),
        "a receipt carries no text: {d:?}"
    );
}

fn by_user(mut r: Vec<Receipt>) -> Vec<Receipt> {
    r.sort_by(|a, b| a.user.cmp(&b.user));
    r
}

#[test]
fn the_sender_hears_delivered_then_read_and_receipts_lists_who_and_when() {
    let mut cluster = Cluster::start(&bin(), 3);
    let addrs: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let (ana, bob, cy, den) = (name("ana"), name("bob"), name("cy"), name("den"));
    let mut c = cluster.connection();
    for u in [&ana, &bob, &cy] {
        c.login(u).unwrap();
    }
    let mut to_ana = personal_subscriber(&cluster, &mut c, &ana, &cy);
    let mut to_cy = personal_subscriber(&cluster, &mut c, &cy, &ana);
    let first = dm(&mut c, &ana, &bob, "one");
    let second = dm(&mut c, &ana, &bob, "two");
    // Nothing taken, nothing read.
    let nothing = vec![Receipt {
        user: "bob".into(),
        delivered: None,
        read: None,
    }];
    assert_eq!(c.receipts(&ana, &first).unwrap(), nothing);

    let from_cy = dm(&mut c, &cy, &bob, "and one from me");
    // bob's phone takes its inbox: each sender hears "delivered", up to their latest message,
    // on their own topic.
    let mut seen = HashSet::new();
    let took = c.catch_up(&bob, "phone", &mut seen, |_| {}).unwrap();
    assert_eq!(took, 3);
    one_receipt(
        &notices(&mut to_ana, &["receipt"]),
        "delivered",
        "bob",
        &second,
    );
    one_receipt(
        &notices(&mut to_cy, &["receipt"]),
        "delivered",
        "bob",
        &from_cy,
    );
    let delivered_first = c.receipts(&ana, &first).unwrap()[0].delivered;
    assert!(delivered_first.is_some());
    // A second device taking the same messages tells nobody again, and the listing keeps
    // the first time they were taken.
    let mut seen = HashSet::new();
    assert_eq!(c.catch_up(&bob, "laptop", &mut seen, |_| {}).unwrap(), 3);
    let again = notices(&mut to_ana, &["receipt"]);
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(
        c.receipts(&ana, &first).unwrap()[0].delivered,
        delivered_first
    );

    // bob reads the first: ana hears "read", and the listing shows it for that one only.
    c.read(&bob, &first).unwrap();
    one_receipt(&notices(&mut to_ana, &["receipt"]), "read", "bob", &first);
    let r = c.receipts(&ana, &first).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].user, "bob");
    assert_eq!(r[0].delivered, delivered_first);
    let (delivered, read) = (r[0].delivered.unwrap(), r[0].read.unwrap());
    assert!(
        delivered <= read,
        "read at {read} before it was taken at {delivered}"
    );
    let r = c.receipts(&ana, &second).unwrap();
    assert!(r[0].delivered.is_some() && r[0].read.is_none(), "{r:?}");
    // Through every server, once they have caught up.
    let want = c.receipts(&ana, &first).unwrap();
    let agreed = palaver_testkit::wait_until(Duration::from_secs(10), || {
        addrs
            .iter()
            .all(|addr| cluster.internal(addr).receipts(&ana, &first).ok() == Some(want.clone()))
    });
    assert!(agreed, "the servers list different receipts");

    // A post in a room: who of its other members has read it.
    c.create_room(&den, &ana).unwrap();
    for u in [&ana, &bob, &cy] {
        c.join(u, &den, 0).unwrap();
    }
    let p = post(&mut c, &ana, &den, "hello room");
    c.read(&bob, &p).unwrap();
    let r = by_user(c.receipts(&ana, &p).unwrap());
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!((r[0].user.as_str(), r[0].read.is_some()), ("bob", true));
    assert_eq!((r[1].user.as_str(), r[1].read.is_some()), ("cy", false));
    assert!(r.iter().all(|x| x.delivered.is_none()), "{r:?}");

    // Someone else's message, or none at all: the same refusal, and nothing stored.
    let before = events_held(&cluster);
    refused(c.receipts(&bob, &first), "`bob` has no message");
    refused(c.receipts(&cy, &p), "`cy` has no message");
    let nowhere = EventRef {
        origin: "s1".into(),
        seq: 999_999,
    };
    refused(c.receipts(&ana, &nowhere), "has no message s1:999999");
    refused(c.receipts(&name("zed"), &first), "has not logged in");
    assert_eq!(events_held(&cluster), before, "a refusal stored something");
}

#[test]
fn a_person_who_turns_read_receipts_off_sends_none_anywhere_even_after_a_restart() {
    let mut cluster = Cluster::start(&bin(), 3);
    let addrs: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let (ana, bob, cy) = (name("ana"), name("bob"), name("cy"));
    let mut c = cluster.connection();
    for u in [&ana, &bob, &cy] {
        c.login(u).unwrap();
    }
    assert!(
        c.settings(&bob, None).unwrap(),
        "receipts are on by default"
    );
    let mut to_ana = personal_subscriber(&cluster, &mut c, &ana, &cy);
    let mut to_bob = personal_subscriber(&cluster, &mut c, &bob, &cy);
    // Turned off through one server; every server learns it.
    assert!(!cluster
        .internal(&addrs[0])
        .settings(&bob, Some(false))
        .unwrap());
    let everywhere = palaver_testkit::wait_until(Duration::from_secs(10), || {
        addrs
            .iter()
            .all(|addr| cluster.internal(addr).settings(&bob, None).ok() == Some(false))
    });
    assert!(everywhere, "not every server knows bob turned receipts off");
    // Asking again for what stands stores nothing.
    let before = events_held(&cluster);
    assert!(!c.settings(&bob, Some(false)).unwrap());
    assert_eq!(events_held(&cluster), before);

    let m = dm(&mut c, &ana, &bob, "did you read this?");
    let mut seen = HashSet::new();
    c.catch_up(&bob, "phone", &mut seen, |_| {}).unwrap();
    // Taking it is still told: only reading is private.
    one_receipt(&notices(&mut to_ana, &["receipt"]), "delivered", "bob", &m);
    c.read(&bob, &m).unwrap();
    assert!(
        notices(&mut to_ana, &["receipt"]).is_empty(),
        "a read receipt went out though bob turned them off"
    );
    // bob's own other clients still learn where his marker is.
    let to_him = notices(&mut to_bob, &["read"]);
    assert_eq!(to_him.len(), 1, "{to_him:?}");
    let r = c.receipts(&ana, &m).unwrap();
    assert!(r[0].delivered.is_some() && r[0].read.is_none(), "{r:?}");

    // Kept on disk: a restarted server still knows.
    cluster.kill_server(0);
    cluster.start_server(0);
    assert!(!cluster.internal(&addrs[0]).settings(&bob, None).unwrap());
    let r = cluster.internal(&addrs[0]).receipts(&ana, &m).unwrap();
    assert!(r[0].read.is_none(), "{r:?}");

    // On again: what he read is shown from then on.
    assert!(c.settings(&bob, Some(true)).unwrap());
    let shown = palaver_testkit::wait_until(Duration::from_secs(10), || {
        c.receipts(&ana, &m).unwrap()[0].read.is_some()
    });
    assert!(
        shown,
        "the read time is not shown once receipts are back on"
    );
}

#[test]
fn settings_and_receipts_of_a_password_account_need_its_session() {
    let cluster = Cluster::start(&bin(), 3);
    let (ana, bob) = (name("ana"), name("bob"));
    let mut c = cluster.connection();
    c.login(&bob).unwrap();
    c.register(&ana, "correct horse").unwrap();
    let m = {
        let mut mine = cluster.connection();
        mine.login_with_password(&ana, "correct horse").unwrap();
        dm(&mut mine, &ana, &bob, "only mine to ask about")
    };
    let before = events_held(&cluster);
    refused(c.settings(&ana, Some(false)), "has a password");
    refused(c.receipts(&ana, &m), "has a password");
    assert_eq!(events_held(&cluster), before);
    let mut mine = cluster.connection();
    mine.login_with_password(&ana, "correct horse").unwrap();
    assert!(!mine.settings(&ana, Some(false)).unwrap());
    assert_eq!(mine.receipts(&ana, &m).unwrap()[0].user, "bob");
}
