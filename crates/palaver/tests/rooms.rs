//! Rooms between real processes: joining (with the newest posts, and nothing lost or repeated
//! at the seam with live ones), leaving, members, and the two-phase delete with every server
//! up, with a participant killed between prepare and commit, with the coordinator killed after
//! prepare, and with a participant stopped through the whole protocol. Each time every server
//! ends with the channel deleted and every transaction decided, `admin verify` passes, and
//! every server refuses posts to the channel.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{admin_verify, bin, events_held, name, refused, Cluster};
use palaver_client::{Connection, SharedClock};
use palaver_proto::{Envelope, Event, EventKind, Name, RoomKind};
use palaver_testkit::wait_until;

/// A connection that waits long enough for a delete decided after a fault (the protocol's
/// timeouts take a few seconds).
fn patient(c: Connection) -> Connection {
    c.with_timeout(Duration::from_secs(15), 1)
}

/// The coordinator server `i` names in its status.
fn coordinator_of(cluster: &mut Cluster, i: usize) -> Option<String> {
    let addr = cluster.peer_addr(i)?;
    let ctx = zmq::Context::new();
    let mut c = Connection::open_internal(&ctx, &addr, SharedClock::new(), cluster.credentials())
        .ok()?
        .with_timeout(Duration::from_millis(500), 1);
    c.call(Envelope::new("status"))
        .ok()?
        .data
        .opt_str("coordinator")
        .ok()?
        .map(str::to_owned)
}

/// The index of the server every running one of `among` names coordinator.
fn coordinator(cluster: &mut Cluster, among: &[usize]) -> usize {
    let mut found = None;
    let agreed = wait_until(Duration::from_secs(15), || {
        let named: Vec<Option<String>> =
            among.iter().map(|&i| coordinator_of(cluster, i)).collect();
        found = named[0].clone();
        found.is_some() && named.iter().all(|n| *n == found)
    });
    assert!(agreed, "the servers do not agree on a coordinator");
    let who = found.unwrap();
    (0..3)
        .find(|&i| Cluster::server_name(i) == who)
        .expect("a server of the cluster")
}

/// Room events of server `i`, from its disk.
fn room_events(cluster: &Cluster, i: usize) -> Vec<Event> {
    common::store(&cluster.data_dir(i))
        .snapshot()
        .expect("snapshot")
        .rooms
}

/// Whether server `i` holds `channel` as deleted and has decided every transaction it
/// prepared.
fn settled(cluster: &Cluster, i: usize, channel: &Name) -> bool {
    let me = Cluster::server_name(i);
    let events = room_events(cluster, i);
    let deleted = events.iter().any(
        |e| matches!(&e.kind, EventKind::Room(RoomKind::Delete { channel: c, .. }) if c == channel),
    );
    let mut open = BTreeSet::new();
    for e in events.iter().filter(|e| e.origin == me) {
        match &e.kind {
            EventKind::Room(RoomKind::Prepare { tx, .. }) => {
                open.insert(tx.clone());
            }
            EventKind::Room(RoomKind::Abort { tx })
            | EventKind::Room(RoomKind::Delete { tx, .. }) => {
                open.remove(tx);
            }
            _ => {}
        }
    }
    deleted && open.is_empty()
}

/// Waits until each of `servers` is settled on `channel` deleted. The requester answers once
/// the decision is final, which can be before every participant has written its own record.
fn settle(cluster: &Cluster, servers: &[usize], channel: &Name) {
    settle_within(cluster, servers, channel, Duration::from_secs(10));
}

fn settle_within(cluster: &Cluster, servers: &[usize], channel: &Name, deadline: Duration) {
    let done = wait_until(deadline, || {
        servers.iter().all(|&i| settled(cluster, i, channel))
    });
    let states: Vec<(usize, bool)> = servers
        .iter()
        .map(|&i| (i, settled(cluster, i, channel)))
        .collect();
    assert!(done, "not every server has decided: {states:?}");
}

/// Atomicity, read from the disks: no transaction is committed by one server and aborted by
/// another.
fn no_split_decision(cluster: &Cluster) {
    let mut committed = BTreeSet::new();
    let mut aborted = BTreeSet::new();
    for i in 0..3 {
        for e in room_events(cluster, i) {
            match e.kind {
                EventKind::Room(RoomKind::Delete { tx, .. }) => {
                    committed.insert(tx);
                }
                EventKind::Room(RoomKind::Abort { tx }) => {
                    aborted.insert(tx);
                }
                _ => {}
            }
        }
    }
    let both: Vec<_> = committed.intersection(&aborted).collect();
    assert!(both.is_empty(), "committed and aborted: {both:?}");
}

/// Waits until every server is settled on `channel` deleted, then checks atomicity, `admin
/// verify`, and that every server refuses a post to it.
fn all_deleted(cluster: &mut Cluster, channel: &Name, poster: &Name) {
    settle_within(cluster, &[0, 1, 2], channel, Duration::from_secs(30));
    no_split_decision(cluster);
    // Each server has its decision; the others' records may still be on their way.
    let mut out = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        let (ok, o) = admin_verify(cluster);
        out = o;
        ok
    });
    assert!(ok, "admin verify failed:\n{out}");
    for i in 0..3 {
        let addr = cluster.peer_addr(i).expect("running");
        let mut direct = cluster.internal(&addr);
        refused(
            direct.publish(poster, channel, "still here?"),
            "was deleted",
        );
        refused(direct.join(poster, channel, 5), "was deleted");
        let listed = direct.channels().expect("channels");
        assert!(!listed.contains(&channel.to_string()), "{listed:?}");
    }
}

/// A cluster with `ana` (the owner) and `bob` logged in, and `ana`'s channel `channel`.
fn with_room(cluster: &Cluster, channel: &str) -> Connection {
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.login(&name("bob")).unwrap();
    c.create_room(&name(channel), &name("ana")).unwrap();
    c
}

#[test]
fn room_services_refuse_what_is_wrong_and_change_nothing() {
    let cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "den");
    c.create_channel(&name("lobby")).unwrap();
    let (ana, bob, den) = (name("ana"), name("bob"), name("den"));
    let before = events_held(&cluster);
    refused(c.join(&ana, &name("nowhere"), 10), "does not exist");
    refused(c.leave(&ana, &den), "`ana` is not in `den`");
    refused(c.delete(&bob, &den), "only `ana`");
    refused(c.delete(&ana, &name("lobby")), "has no owner");
    refused(c.delete(&ana, &name("nowhere")), "does not exist");
    refused(c.members(&name("nowhere")), "does not exist");
    refused(c.join(&name("zed"), &den, 10), "`zed` has not logged in");
    assert_eq!(events_held(&cluster), before, "a refusal stored something");

    // Join, members, joined, leave: each through whichever server the broker picks.
    let joined = c.join(&ana, &den, 10).unwrap();
    assert!(joined.posts.is_empty());
    c.join(&bob, &den, 10).unwrap();
    // Joining again changes nothing and answers the same way.
    let n = events_held(&cluster);
    c.join(&bob, &den, 10).unwrap();
    assert_eq!(events_held(&cluster), n);
    assert_eq!(c.members(&den).unwrap(), vec!["ana", "bob"]);
    assert_eq!(c.joined(&bob).unwrap(), vec!["den"]);
    c.leave(&bob, &den).unwrap();
    assert_eq!(c.members(&den).unwrap(), vec!["ana"]);
    assert!(c.joined(&bob).unwrap().is_empty());

    // The owner deletes it; then everything about it is refused, everywhere.
    c.delete(&ana, &den).unwrap();
    let before = events_held(&cluster);
    refused(c.delete(&ana, &den), "was deleted");
    refused(c.publish(&ana, &den, "hello?"), "was deleted");
    refused(c.join(&bob, &den, 10), "was deleted");
    refused(c.members(&den), "was deleted");
    refused(c.create_room(&den, &ana), "not used again");
    refused(c.create_channel(&den), "not used again");
    refused(c.login(&den), "is a channel");
    assert!(c.joined(&ana).unwrap().is_empty());
    assert!(!c.channels().unwrap().contains(&"den".to_owned()));
    let history = c.request(&palaver_proto::Request::History {
        query: palaver_proto::HistoryQuery {
            of: palaver_proto::Conversation::Channel(den.clone()),
            limit: 10,
            before: None,
            after: None,
            window: Default::default(),
        },
    });
    refused(history, "was deleted");
    assert_eq!(events_held(&cluster), before, "a refusal stored something");
}

#[test]
fn a_password_account_joins_and_leaves_only_with_its_session() {
    let cluster = Cluster::start(&bin(), 3);
    let mut owner = cluster.connection();
    owner.register(&name("ana"), "correct horse").unwrap();
    owner
        .login_with_password(&name("ana"), "correct horse")
        .unwrap();
    owner.create_room(&name("den"), &name("ana")).unwrap();
    let mut stranger = cluster.connection();
    let before = events_held(&cluster);
    refused(
        stranger.join(&name("ana"), &name("den"), 5),
        "has a password",
    );
    refused(
        stranger.delete(&name("ana"), &name("den")),
        "has a password",
    );
    refused(
        stranger.create_room(&name("attic"), &name("ana")),
        "has a password",
    );
    assert_eq!(events_held(&cluster), before);
    owner.join(&name("ana"), &name("den"), 5).unwrap();
    refused(stranger.leave(&name("ana"), &name("den")), "has a password");
    owner.leave(&name("ana"), &name("den")).unwrap();
}

/// A newcomer to a channel of 500 posts, joining while someone keeps posting, sees the newest
/// 50 in order and then every later post, none missing and none twice.
#[test]
fn a_newcomer_sees_the_newest_posts_then_live_ones_with_nothing_lost_or_repeated() {
    let cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "hall");
    let (ana, bob, hall) = (name("ana"), name("bob"), name("hall"));
    for i in 1..=500 {
        c.publish(&ana, &hall, &format!("m{i:04}")).unwrap();
    }
    const LAST: u32 = 700;
    let broker = cluster.broker_endpoint();
    let writer = std::thread::spawn(move || {
        let mut w = common::client(&broker);
        for i in 501..=LAST {
            w.publish(&name("ana"), &name("hall"), &format!("m{i:04}"))
                .unwrap();
        }
    });
    // Let some live posts go by before joining, so that the join lands in the middle of them.
    let started = wait_until(Duration::from_secs(10), || {
        common::counts(&cluster.data_dir(0)).kind("post") >= 520
    });
    assert!(started);
    let mut sub = cluster.subscriber();
    sub.repair_with(cluster.connection()).unwrap();
    sub.subscribe("hall").unwrap();
    let joined = c.join(&bob, &hall, 50).unwrap();
    assert_eq!(joined.posts.len(), 50);
    assert!(joined.more);
    sub.joined(&hall, &joined.posts);
    let mut seen: Vec<u32> = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while seen.last() != Some(&LAST) && Instant::now() < end {
        if let Some(r) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            let env = &r.publication.envelope;
            if env.service != "publish" {
                continue;
            }
            let text = env.data.opt_str("message").unwrap().unwrap();
            seen.push(text[1..].parse().unwrap());
        }
    }
    writer.join().unwrap();
    // The seam is checked again a moment after joining: take what that brings too.
    while let Some(r) = sub.recv_timeout(Duration::from_millis(1500)).unwrap() {
        if r.publication.envelope.service == "publish" {
            let text = r
                .publication
                .envelope
                .data
                .opt_str("message")
                .unwrap()
                .unwrap();
            seen.push(text[1..].parse().unwrap());
        }
    }
    let first = seen[0];
    assert!(first > 450, "the history starts too early: m{first}");
    // The first 50 are the history, in order.
    let history: Vec<u32> = (first..first + 50).collect();
    assert_eq!(&seen[..50], &history[..]);
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a post was shown twice");
    let want: Vec<u32> = (first..=LAST).collect();
    assert_eq!(sorted, want, "a post is missing after the seam");
}

#[test]
fn a_delete_with_every_server_up_reaches_every_server() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "den");
    let (ana, den) = (name("ana"), name("den"));
    c.join(&ana, &den, 5).unwrap();
    c.publish(&ana, &den, "soon gone").unwrap();
    let mut sub = cluster.subscriber();
    sub.subscribe("den").unwrap();
    cluster.await_subscription(&mut c, &mut sub, &ana, &den);
    c.delete(&ana, &den).unwrap();
    // Subscribers hear of it once, however many servers recorded it.
    let mut notices = 0;
    while let Some(r) = sub.recv_timeout(Duration::from_millis(1000)).unwrap() {
        if r.publication.envelope.service == "delete" {
            notices += 1;
        }
    }
    assert_eq!(notices, 1);
    all_deleted(&mut cluster, &den, &ana);
    // Every server took part, and recorded the commit itself.
    for i in 0..3 {
        let me = Cluster::server_name(i);
        assert!(
            room_events(&cluster, i)
                .iter()
                .any(|e| e.origin == me
                    && matches!(e.kind, EventKind::Room(RoomKind::Delete { .. }))),
            "{me} has no delete of its own"
        );
    }
}

#[test]
fn a_participant_killed_between_prepare_and_commit_learns_the_outcome_when_it_returns() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "den");
    let (ana, den) = (name("ana"), name("den"));
    let lead = coordinator(&mut cluster, &[0, 1, 2]);
    let victim = (lead + 1) % 3;
    cluster.start_server_with(victim, &["--crash-after-prepare"]);
    assert_eq!(coordinator(&mut cluster, &[0, 1, 2]), lead);
    // Asked of the coordinator itself, so that the victim is a participant, not the requester.
    let addr = cluster.peer_addr(lead).unwrap();
    let mut direct = patient(cluster.internal(&addr));
    direct.delete(&ana, &den).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || cluster.server_exited(victim)),
        "the participant did not die after preparing"
    );
    // The two that are up have decided; the victim, back, learns it.
    settle(&cluster, &[lead, 3 - lead - victim], &den);
    cluster.start_server(victim);
    all_deleted(&mut cluster, &den, &ana);
    let _ = &mut c;
}

#[test]
fn a_coordinator_killed_after_prepare_is_replaced_and_the_delete_is_finished() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "den");
    let (ana, bob, den) = (name("ana"), name("bob"), name("den"));
    c.join(&bob, &den, 5).unwrap();
    let lead = coordinator(&mut cluster, &[0, 1, 2]);
    cluster.start_server_with(lead, &["--crash-after-prepare"]);
    assert_eq!(coordinator(&mut cluster, &[0, 1, 2]), lead);
    let asked = (lead + 1) % 3;
    let other = 3 - lead - asked;
    let addr = cluster.peer_addr(asked).unwrap();
    let ctx_addr = addr.clone();
    let key = cluster.credentials().clone();
    let deleting = std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let mut direct =
            patient(Connection::open_internal(&ctx, &ctx_addr, SharedClock::new(), &key).unwrap());
        direct.delete(&name("ana"), &name("den"))
    });
    assert!(
        wait_until(Duration::from_secs(5), || cluster.server_exited(lead)),
        "the coordinator did not die after preparing"
    );
    // Meanwhile the participants hold the channel: no posts, no joins.
    let other_addr = cluster.peer_addr(other).unwrap();
    let mut there = cluster.internal(&other_addr);
    refused(there.publish(&bob, &den, "anyone?"), "being deleted");
    refused(there.join(&bob, &den, 5), "being deleted");
    // The survivors elect a new coordinator and finish the delete without the old one.
    deleting
        .join()
        .unwrap()
        .expect("the delete is finished without the old coordinator");
    settle(&cluster, &[asked, other], &den);
    let new_lead = coordinator(&mut cluster, &[asked, other]);
    assert_ne!(new_lead, lead);
    cluster.start_server(lead);
    all_deleted(&mut cluster, &den, &ana);
}

#[test]
fn a_participant_stopped_through_the_whole_delete_catches_up_when_it_wakes() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "den");
    let (ana, den) = (name("ana"), name("den"));
    let lead = coordinator(&mut cluster, &[0, 1, 2]);
    let sleeper = (lead + 1) % 3;
    cluster.server(sleeper).unwrap().signal(libc::SIGSTOP);
    let mut c2 = patient(cluster.connection());
    c2.delete(&ana, &den)
        .expect("the delete goes through without the stopped server");
    let awake: Vec<usize> = (0..3).filter(|i| *i != sleeper).collect();
    settle(&cluster, &awake, &den);
    cluster.server(sleeper).unwrap().signal(libc::SIGCONT);
    all_deleted(&mut cluster, &den, &ana);
    let _ = &mut c;
}

/// Joins and leaves of one person sent at once through different servers end with the same
/// members everywhere: the latest in the total order, as docs/rooms.md says.
#[test]
fn concurrent_joins_and_leaves_through_different_servers_converge() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "den");
    c.join(&name("ana"), &name("den"), 0).unwrap();
    let addrs: Vec<String> = (0..3).map(|i| cluster.peer_addr(i).unwrap()).collect();
    let key = cluster.credentials().clone();
    let threads: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let (addr, key) = (addr.clone(), key.clone());
            std::thread::spawn(move || {
                let ctx = zmq::Context::new();
                let mut direct =
                    Connection::open_internal(&ctx, &addr, SharedClock::new(), &key).unwrap();
                for round in 0..40 {
                    // Each server's own view decides whether it accepts; conflicting ones
                    // are accepted by different servers at the same moment.
                    let _ = if (round + i) % 2 == 0 {
                        direct.join(&name("ana"), &name("den"), 0).map(drop)
                    } else {
                        direct.leave(&name("ana"), &name("den"))
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let views = |cluster: &mut Cluster| -> Vec<(Vec<String>, Vec<String>)> {
        (0..3)
            .map(|i| {
                let addr = cluster.peer_addr(i).unwrap();
                let mut d = cluster.internal(&addr);
                (
                    d.members(&name("den")).unwrap(),
                    d.joined(&name("ana")).unwrap(),
                )
            })
            .collect()
    };
    let agreed = wait_until(Duration::from_secs(10), || {
        let v = views(&mut cluster);
        v.iter().all(|x| *x == v[0])
    });
    let v = views(&mut cluster);
    assert!(agreed, "the servers disagree: {v:?}");
    // And what they agree on is the rule: the latest join or leave in the total order. (Read
    // from s1's disk, which the peers' last events reach within a commit's delay of memory.)
    let latest_is_join = |cluster: &Cluster| {
        let latest = room_events(cluster, 0)
            .into_iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Room(RoomKind::Join { .. })
                        | EventKind::Room(RoomKind::Leave { .. })
                )
            })
            .max_by(|a, b| (a.lamport, &a.origin).cmp(&(b.lamport, &b.origin)))
            .unwrap();
        matches!(latest.kind, EventKind::Room(RoomKind::Join { .. }))
    };
    let member = v[0].0.contains(&"ana".to_owned());
    let rule = wait_until(Duration::from_secs(5), || {
        latest_is_join(&cluster) == member
    });
    assert!(
        rule,
        "members {v:?}, but the latest event on disk says otherwise"
    );
}

/// `topic`: set by someone in the room, published to it, shown by `join` and `members` on
/// every server, and kept when every server is killed and started again.
#[test]
fn a_topic_is_shown_on_join_and_in_members_everywhere_and_survives_restarts() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = with_room(&cluster, "den");
    let (ana, bob, den) = (name("ana"), name("bob"), name("den"));
    let before = events_held(&cluster);
    refused(
        c.set_topic(&bob, &den, Some("mine")),
        "join `den` to set its topic",
    );
    refused(c.set_topic(&ana, &den, Some("   ")), "empty");
    refused(c.set_topic(&ana, &den, Some(&"x".repeat(391))), "390");
    assert_eq!(events_held(&cluster), before, "a refusal stored something");
    c.join(&ana, &den, 10).unwrap();
    let mut sub = cluster.subscriber();
    sub.subscribe("den").unwrap();
    c.set_topic(&ana, &den, Some("plans for the week")).unwrap();
    let heard = sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("the room hears of its topic");
    assert_eq!(heard.publication.envelope.service, "topic");
    assert_eq!(
        heard.publication.envelope.data.opt_str("topic").unwrap(),
        Some("plans for the week")
    );
    let joined = c.join(&bob, &den, 10).unwrap();
    let topic = Some(("plans for the week".to_owned(), "ana".to_owned()));
    assert_eq!(joined.about.topic, topic);
    assert_eq!(joined.about.owner.as_deref(), Some("ana"));
    for i in 0..3 {
        cluster.kill_server(i);
    }
    for i in 0..3 {
        cluster.start_server(i);
    }
    // A server back first serves alone until the others return, then fetches what they
    // hold: once every server holds the same events, each says the same, whichever the
    // broker picks.
    let same = wait_until(Duration::from_secs(10), || {
        let held: BTreeSet<_> = (0..3).map(|i| room_events(&cluster, i).len()).collect();
        held.len() == 1
    });
    assert!(same, "the servers hold different room events");
    for _ in 0..6 {
        let (people, about) = c.room(&den).unwrap();
        assert_eq!(people, vec!["ana", "bob"]);
        assert_eq!(about.topic, topic);
    }
    c.set_topic(&bob, &den, None).unwrap();
    assert_eq!(c.room(&den).unwrap().1.topic, None);
}
