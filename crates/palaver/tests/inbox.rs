//! Nothing missed while away, between real processes: a person's inbox hands every private
//! message and every post of their rooms over exactly once and in order, through servers
//! killed and stopped while the messages were sent, to each of their devices; a message that a
//! cut-off server accepted late is handed over once it arrives, though the person's cursor had
//! moved past its Lamport time.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{bin, dm, events_held, name, notices, personal_subscriber, post, refused, Cluster};
use palaver_client::{Connection, SharedClock};
use palaver_proto::{Event, EventKind, MessageKind, Name};

/// The text of a post or private message.
fn text(e: &Event) -> String {
    match &e.kind {
        EventKind::Message(MessageKind::Post { message, .. })
        | EventKind::Message(MessageKind::Direct { message, .. }) => message.clone(),
        other => panic!("not a message: {other:?}"),
    }
}

/// Everything waiting for `user`'s `device`, taken page by page, in the order handed out.
fn catch_up(c: &mut Connection, user: &Name, device: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    c.catch_up(user, device, &mut seen, |e| out.push(text(e)))
        .expect("catch up");
    out
}

#[test]
fn everything_sent_while_away_arrives_once_in_order_through_killed_and_stopped_servers() {
    let mut cluster = Cluster::start(&bin(), 3);
    let (ana, bob, den) = (name("ana"), name("bob"), name("den"));
    let mut c = cluster.connection();
    c.login(&ana).unwrap();
    c.login(&bob).unwrap();
    c.create_room(&den, &bob).unwrap();
    c.join(&bob, &den, 0).unwrap();
    // Bob's devices start with nothing waiting.
    assert!(catch_up(&mut c, &bob, "laptop").is_empty());
    assert!(catch_up(&mut c, &bob, "phone").is_empty());

    // Bob is away. Ana writes 200 private messages and 200 posts, in turn; a server is killed
    // with -9 and another stopped along the way.
    let mut want = Vec::new();
    for i in 1..=200 {
        if i == 80 {
            cluster.kill_server(0);
        }
        if i == 140 {
            cluster.server(1).unwrap().signal(libc::SIGSTOP);
        }
        let dm = format!("dm {i:03}");
        c.message(&ana, &bob, &dm).unwrap();
        want.push(dm);
        let post = format!("post {i:03}");
        c.publish(&ana, &den, &post).unwrap();
        want.push(post);
    }
    cluster.server(1).unwrap().signal(libc::SIGCONT);
    cluster.start_server(0);
    events_held(&cluster);

    // Bob comes back on his laptop: all 400, in the order sent, each once.
    let mut back = cluster.connection();
    let got = catch_up(&mut back, &bob, "laptop");
    assert_eq!(got.len(), 400, "{:?}", &got[..got.len().min(5)]);
    assert_eq!(got, want);
    // Again: nothing is repeated.
    assert!(catch_up(&mut back, &bob, "laptop").is_empty());
    // His phone, a device of its own, gets everything too, once.
    assert_eq!(catch_up(&mut back, &bob, "phone"), want);
    assert!(catch_up(&mut back, &bob, "phone").is_empty());
}

/// A server cut off from the others (stopped until they count it gone) accepts a message to
/// bob while bob reads everything else through the others and moves his cursor; when it comes
/// back, bob's next read hands the message over, once.
#[test]
fn a_message_accepted_late_by_a_cut_off_server_is_handed_over_once() {
    let mut cluster = Cluster::start(&bin(), 3);
    let (ana, bob) = (name("ana"), name("bob"));
    let mut c = cluster.connection();
    c.login(&ana).unwrap();
    c.login(&bob).unwrap();
    for i in 0..20 {
        c.message(&ana, &bob, &format!("early {i}")).unwrap();
    }
    assert_eq!(catch_up(&mut c, &bob, "laptop").len(), 20);
    // s3 stops; once the others count it gone (and drop what they queued for it), a message
    // sent straight to it waits in its socket, with a client clock of 0.
    let late_addr = cluster.peer_addr(2).unwrap();
    cluster.server(2).unwrap().signal(libc::SIGSTOP);
    let gone = palaver_testkit::wait_until(Duration::from_secs(15), || {
        (0..2).all(|i| !peers_of(&mut cluster, i).contains(&"s3".to_owned()))
    });
    assert!(gone, "the others still count s3");
    let key = cluster.credentials().clone();
    let sender = std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let mut direct = Connection::open_internal(&ctx, &late_addr, SharedClock::new(), &key)
            .unwrap()
            .with_timeout(Duration::from_secs(30), 1);
        direct.message(&name("ana"), &name("bob"), "late")
    });
    // Meanwhile bob reads everything else, and moves his cursor far ahead.
    for i in 0..50 {
        c.message(&ana, &bob, &format!("meanwhile {i}")).unwrap();
    }
    assert_eq!(catch_up(&mut c, &bob, "laptop").len(), 50);
    cluster.server(2).unwrap().signal(libc::SIGCONT);
    sender
        .join()
        .unwrap()
        .expect("the late message is accepted");
    events_held(&cluster);
    // It reaches him once, after his cursor had moved on. (Where it sorts depends on what the
    // stopped server's clock saw first when it woke; the core's simulation, tests/inbox.rs,
    // has it sort before what was taken.)
    assert_eq!(catch_up(&mut c, &bob, "laptop"), vec!["late".to_owned()]);
    assert!(catch_up(&mut c, &bob, "laptop").is_empty());
}

/// The peers server `i` counts as live.
fn peers_of(cluster: &mut Cluster, i: usize) -> Vec<String> {
    let addr = cluster.peer_addr(i).unwrap();
    let mut c = cluster.internal(&addr);
    c.call(palaver_proto::Envelope::new("status"))
        .ok()
        .and_then(|r| r.data.str_list("peers").ok())
        .unwrap_or_default()
}

#[test]
fn inbox_bad_cases_get_a_clear_error_and_change_nothing() {
    let cluster = Cluster::start(&bin(), 3);
    let mut owner = cluster.connection();
    owner.register(&name("bob"), "correct horse").unwrap();
    owner
        .login_with_password(&name("bob"), "correct horse")
        .unwrap();
    let mut ana = cluster.connection();
    ana.login(&name("ana")).unwrap();
    ana.message(&name("ana"), &name("bob"), "hi").unwrap();
    let before = events_held(&cluster);
    // Another person's device.
    refused(ana.inbox(&name("bob"), "laptop", 10), "has a password");
    refused(
        ana.taken(&name("bob"), "laptop", &[("s1".to_owned(), 1)].into()),
        "has a password",
    );
    // A cursor from the future.
    refused(
        owner.taken(
            &name("bob"),
            "laptop",
            &[("s1".to_owned(), 1_000_000)].into(),
        ),
        "ahead of what the servers hold",
    );
    refused(
        owner.taken(&name("bob"), "laptop", &[("s9".to_owned(), 1)].into()),
        "ahead of what the servers hold",
    );
    assert_eq!(events_held(&cluster), before, "a refusal stored something");
    // Bob's own device works.
    let page = owner.inbox(&name("bob"), "laptop", 10).unwrap();
    assert_eq!(page.events.len(), 1);
}

#[test]
fn read_markers_never_move_back_and_unread_counts_agree_on_every_server() {
    let mut cluster = Cluster::start(&bin(), 3);
    let (ana, bob, den) = (name("ana"), name("bob"), name("den"));
    let mut c = cluster.connection();
    c.login(&ana).unwrap();
    c.login(&bob).unwrap();
    c.create_room(&den, &ana).unwrap();
    c.join(&ana, &den, 0).unwrap();
    c.join(&bob, &den, 0).unwrap();
    let ids: Vec<_> = (0..30)
        .map(|i| post(&mut c, &ana, &den, &format!("p{i}")))
        .collect();
    // Reads of random posts of the room, at once through the three servers.
    let addrs: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let key = cluster.credentials().clone();
    let threads: Vec<_> = addrs
        .into_iter()
        .enumerate()
        .map(|(t, addr)| {
            let (key, ids) = (key.clone(), ids.clone());
            std::thread::spawn(move || {
                let ctx = zmq::Context::new();
                let mut d =
                    Connection::open_internal(&ctx, &addr, SharedClock::new(), &key).unwrap();
                for k in 0..20 {
                    let at = (k * 7 + t * 11) % 29;
                    d.read(&name("bob"), &ids[at]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The highest read any of them made is where the marker stands, on every server.
    let highest = (0..3)
        .flat_map(|t| (0..20).map(move |k| (k * 7 + t * 11) % 29))
        .max()
        .unwrap();
    let want = vec![("#den".to_owned(), (29 - highest) as u64)];
    let agreed = palaver_testkit::wait_until(Duration::from_secs(10), || {
        (0..3).all(|i| {
            let addr = cluster.peer_addr(i).unwrap();
            cluster.internal(&addr).unread(&bob).unwrap() == want
        })
    });
    assert!(agreed, "unread counts differ or are wrong");
    // An older message: the marker stays where it is.
    assert_eq!(c.read(&bob, &ids[0]).unwrap(), ids[highest].to_string());
    assert_eq!(c.unread(&bob).unwrap(), want);
    // ana wrote all 30 and has no marker: none of them is unread to her.
    assert_eq!(c.unread(&ana).unwrap(), vec![("#den".to_owned(), 0)]);
}

#[test]
fn a_read_receipt_reaches_the_sender_and_nobody_else() {
    let cluster = Cluster::start(&bin(), 3);
    let (ana, bob, cy) = (name("ana"), name("bob"), name("cy"));
    let mut c = cluster.connection();
    for u in [&ana, &bob, &cy] {
        c.login(u).unwrap();
    }
    let mut subs: Vec<_> = [&ana, &bob, &cy]
        .iter()
        .map(|u| personal_subscriber(&cluster, &mut c, u, &cy))
        .collect();
    let first = dm(&mut c, &ana, &bob, "one");
    let second = dm(&mut c, &ana, &bob, "two");
    let _third = dm(&mut c, &ana, &bob, "three");
    c.read(&bob, &second).unwrap();
    let services = |s: &mut palaver_client::Subscriber| notices(s, &["receipt", "read"]);
    let to_ana = services(&mut subs[0]);
    assert_eq!(to_ana.len(), 1, "{to_ana:?}");
    let receipt = &to_ana[0].data;
    assert_eq!(receipt.opt_str("reader").unwrap(), Some("bob"));
    assert_eq!(receipt.opt_str("state").unwrap(), Some("read"));
    assert_eq!(
        receipt.opt_str("upto").unwrap(),
        Some(second.to_string().as_str())
    );
    // bob's other clients hear of the new marker; cy hears nothing.
    let to_bob = services(&mut subs[1]);
    assert!(to_bob.iter().any(|e| e.service == "read"), "{to_bob:?}");
    assert!(services(&mut subs[2]).is_empty());
    // bob's unread in the conversation: the one after the marker.
    let unread = c.unread(&bob).unwrap();
    assert!(unread.contains(&("ana".to_owned(), 1)), "{unread:?}");
    // What ana sent is never unread to her.
    let unread = c.unread(&ana).unwrap();
    assert!(unread.contains(&("bob".to_owned(), 0)), "{unread:?}");
    let _ = first;
}

#[test]
fn marking_what_is_not_yours_or_does_not_exist_is_refused_and_changes_nothing() {
    let cluster = Cluster::start(&bin(), 3);
    let (ana, bob, cy, den) = (name("ana"), name("bob"), name("cy"), name("den"));
    let mut c = cluster.connection();
    for u in [&ana, &bob, &cy] {
        c.login(u).unwrap();
    }
    c.create_room(&den, &ana).unwrap();
    c.join(&ana, &den, 0).unwrap();
    let in_den = post(&mut c, &ana, &den, "members only");
    let private = dm(&mut c, &ana, &cy, "between us");
    let before = events_held(&cluster);
    let nowhere = palaver_proto::EventRef {
        origin: "s1".into(),
        seq: 999_999,
    };
    refused(c.read(&bob, &nowhere), "there is no message s1:999999");
    refused(c.read(&bob, &private), "is not in a conversation of `bob`");
    refused(c.read(&bob, &in_den), "`bob` is not in `den`");
    assert_eq!(events_held(&cluster), before, "a refusal stored something");
}
