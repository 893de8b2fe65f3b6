//! One suite of store behaviours, run against every way a store comes to be: new, reopened
//! from disk, and migrated in place from a version 4 file (one table per kind). Whatever path
//! a server's database took, it must behave the same.

use std::path::Path;

use palaver_proto::{Conversation, Cursor, HistoryQuery, Name};
use palaver_store::{Counts, Event, EventKind, Store};
use rusqlite::{params, Connection};

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn ev(origin: &str, seq: u64, lamport: u64, kind: EventKind) -> Event {
    Event {
        origin: origin.into(),
        seq,
        lamport,
        timestamp: 1_000.0 + seq as f64,
        kind,
        request: seq.is_multiple_of(2).then(|| format!("req-{origin}-{seq}")),
    }
}

fn post(origin: &str, seq: u64, lamport: u64, channel: &str, text: &str) -> Event {
    ev(
        origin,
        seq,
        lamport,
        EventKind::Post {
            user: name("ana"),
            channel: name(channel),
            message: text.into(),
        },
    )
}

fn dm(origin: &str, seq: u64, lamport: u64, src: &str, dst: &str, text: &str) -> Event {
    ev(
        origin,
        seq,
        lamport,
        EventKind::Direct {
            src: name(src),
            dst: name(dst),
            message: text.into(),
        },
    )
}

/// Two origins' events, interleaved in Lamport time.
fn events() -> Vec<Event> {
    vec![
        ev("s1", 1, 1, EventKind::Login { user: name("ana") }),
        ev(
            "s1",
            2,
            2,
            EventKind::Channel {
                channel: name("general"),
                owner: None,
            },
        ),
        ev("s2", 1, 3, EventKind::Login { user: name("bob") }),
        post("s1", 3, 4, "general", "one"),
        ev(
            "s2",
            2,
            4,
            EventKind::Post {
                user: name("bob"),
                channel: name("general"),
                message: "two".into(),
            },
        ),
        dm("s2", 3, 5, "bob", "ana", "psst"),
        post("s1", 4, 6, "general", "three"),
        dm("s1", 5, 7, "ana", "bob", "hi bob"),
        ev("s1", 6, 8, EventKind::Login { user: name("ana") }),
    ]
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Post { message, .. } | EventKind::Direct { message, .. } => message.clone(),
            other => panic!("not a message: {other:?}"),
        })
        .collect()
}

fn channel(c: &str, limit: usize) -> HistoryQuery {
    HistoryQuery {
        of: Conversation::Channel(name(c)),
        limit,
        before: None,
        after: None,
    }
}

/// Everything a store must do, given one that holds [`events`] (hidden: none).
fn suite(store: &mut Store) {
    let all = events();
    // The log: each origin's events in sequence, in pages.
    let s1: Vec<Event> = all.iter().filter(|e| e.origin == "s1").cloned().collect();
    assert_eq!(store.events_after("s1", 0, 100).unwrap(), s1);
    assert_eq!(store.events_after("s1", 2, 2).unwrap(), s1[2..4].to_vec());
    assert!(store.events_after("s9", 0, 100).unwrap().is_empty());
    assert_eq!(
        store.vector().unwrap(),
        vec![("s1".to_owned(), 6), ("s2".to_owned(), 3)]
    );
    // What a server starts from.
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.users, vec![name("ana"), name("bob")]);
    assert_eq!(snap.channels, vec![name("general")]);
    assert_eq!(snap.max_lamport, 8);
    let requests: Vec<&str> = snap.requests.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(requests, ["req-s1-2", "req-s2-2", "req-s1-4", "req-s1-6"]);
    assert_eq!(
        store.counts().unwrap(),
        Counts {
            logins: 3,
            channels: 1,
            posts: 3,
            messages: 2,
            accounts: 0,
            rooms: 0,
            readers: 0,
        }
    );
    // History in the one order (Lamport time, then origin), paged both ways.
    let (h, more) = store.history(&channel("general", 10)).unwrap();
    assert_eq!(
        (texts(&h), more),
        (vec!["one".into(), "two".into(), "three".into()], false)
    );
    let (newest, more) = store.history(&channel("general", 2)).unwrap();
    assert_eq!(
        (texts(&newest), more),
        (vec!["two".into(), "three".into()], true)
    );
    let before = HistoryQuery {
        before: Some(Cursor::of(&newest[0])),
        ..channel("general", 5)
    };
    assert_eq!(texts(&store.history(&before).unwrap().0), ["one"]);
    let after = HistoryQuery {
        after: Some(Cursor::of(&h[0])),
        ..channel("general", 1)
    };
    let (next, more) = store.history(&after).unwrap();
    assert_eq!((texts(&next), more), (vec!["two".into()], true));
    let conversation = |x: &str, y: &str| HistoryQuery {
        of: Conversation::Direct(name(x), name(y)),
        limit: 10,
        before: None,
        after: None,
    };
    let both = ["psst".to_owned(), "hi bob".to_owned()];
    assert_eq!(
        texts(&store.history(&conversation("ana", "bob")).unwrap().0),
        both
    );
    assert_eq!(
        texts(&store.history(&conversation("bob", "ana")).unwrap().0),
        both
    );
    assert!(store
        .history(&conversation("ana", "cid"))
        .unwrap()
        .0
        .is_empty());
    // Unread: what others wrote after a place; a person's own never counts.
    let count = |of: &Conversation, after: Option<(u64, &str)>, reader: &str| {
        store.count_after(of, after, &name(reader)).unwrap()
    };
    let general = Conversation::Channel(name("general"));
    assert_eq!(count(&general, None, "ana"), 1, "bob's two");
    assert_eq!(count(&general, None, "bob"), 2, "ana's one and three");
    assert_eq!(count(&general, Some((4, "s2")), "bob"), 1, "three");
    assert_eq!(count(&general, None, "cid"), 3);
    let pair = Conversation::Direct(name("bob"), name("ana"));
    assert_eq!(count(&pair, None, "ana"), 1, "psst");
    assert_eq!(count(&pair, Some((5, "s2")), "bob"), 1, "hi bob");
    assert_eq!(count(&pair, Some((7, "s1")), "bob"), 0);
    assert!(store.has_post("general", "two").unwrap());
    assert!(!store.has_post("general", "psst").unwrap());
    // A repeated id fails alone; the rest of its batch is stored.
    let results = store
        .append(&[
            post("s1", 4, 6, "general", "again"),
            post("s2", 4, 9, "general", "four"),
        ])
        .unwrap();
    assert!(results[0].is_err() && results[1].is_ok());
    // A hidden event leaves history, not the log.
    let hidden = vec![("s2".to_owned(), 4)];
    store.append_hiding(&[], &hidden).unwrap();
    assert_eq!(
        texts(&store.history(&channel("general", 10)).unwrap().0).len(),
        3
    );
    assert_eq!(store.events_after("s2", 3, 10).unwrap().len(), 1);
    store.probe().unwrap();
}

fn new_store(dir: &Path) -> Store {
    let mut store = Store::open(dir).unwrap();
    let results = store.append(&events()).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    store
}

#[test]
fn a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    suite(&mut new_store(dir.path()));
}

#[test]
fn a_reopened_store() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_store(dir.path()));
    suite(&mut Store::open(dir.path()).unwrap());
}

#[test]
fn stores_with_the_same_events_have_the_same_digest() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sa = new_store(a.path());
    let mut sb = Store::open(b.path()).unwrap();
    // Another arrival order of whole origins (each origin's own events stay in sequence).
    let (s2, s1): (Vec<Event>, Vec<Event>) = events().into_iter().partition(|e| e.origin == "s2");
    sb.append(&s2).unwrap();
    assert_ne!(sa.digest().unwrap(), sb.digest().unwrap());
    sb.append(&s1).unwrap();
    assert_eq!(sa.digest().unwrap(), sb.digest().unwrap());
}

/// Writes [`events`] as a version 4 server did: one table per kind, request ids in the rows.
fn write_version_4(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let conn = Connection::open(dir.join(palaver_store::DB_FILE)).unwrap();
    conn.execute_batch(include_str!("../src/schema_v4.sql"))
        .unwrap();
    for e in events() {
        let (o, s, l, t, r) = (&e.origin, e.seq, e.lamport, e.timestamp, &e.request);
        match &e.kind {
            EventKind::Login { user } => conn.execute(
                "INSERT INTO logins VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![o, s, l, t, user.as_str(), r],
            ),
            EventKind::Channel { channel, .. } => conn.execute(
                "INSERT INTO channels VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![o, s, l, t, channel.as_str(), r],
            ),
            EventKind::Post {
                user,
                channel,
                message,
            } => conn.execute(
                "INSERT INTO posts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![o, s, l, t, channel.as_str(), user.as_str(), message, r],
            ),
            EventKind::Direct { src, dst, message } => conn.execute(
                "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![o, s, l, t, src.as_str(), dst.as_str(), message, r],
            ),
            other => panic!("version 4 had no {} events", other.name()),
        }
        .unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
}

#[test]
fn a_store_migrated_from_version_4() {
    let dir = tempfile::tempdir().unwrap();
    write_version_4(dir.path());
    let mut store = Store::open(dir.path()).unwrap();
    suite(&mut store);
    drop(store);
    // The kind tables are gone, the version is current, and a second open changes nothing.
    let conn = Connection::open(dir.path().join(palaver_store::DB_FILE)).unwrap();
    for table in ["logins", "channels", "posts", "messages"] {
        assert!(
            conn.prepare(&format!("SELECT 1 FROM {table}")).is_err(),
            "{table} still exists"
        );
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 9);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.counts().unwrap().posts, 4);
    // The channels of the old layout are rooms' first events.
    let rooms = store.snapshot().unwrap().rooms;
    assert!(rooms.iter().all(|e| e.kind.name() == "channel") && !rooms.is_empty());
}

/// Version 6 → 7: the channels created so far are indexed as rooms' events.
#[test]
fn a_version_6_store_indexes_its_channels_as_rooms() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_store(dir.path()));
    let conn = Connection::open(dir.path().join(palaver_store::DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TABLE room_events; DROP TABLE deleted_channels; PRAGMA user_version = 6;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    let rooms = store.snapshot().unwrap().rooms;
    let channels: Vec<String> = rooms
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Channel { channel, .. } => Some(channel.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(channels, ["general"]);
}

/// Version 8 → 9: posts and private messages name their author, for `unread`.
#[test]
fn a_version_8_store_names_the_authors_of_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_store(dir.path()));
    let conn = Connection::open(dir.path().join(palaver_store::DB_FILE)).unwrap();
    conn.execute_batch(
        "ALTER TABLE channel_posts DROP COLUMN author;
         ALTER TABLE direct_messages DROP COLUMN author;
         PRAGMA user_version = 8;",
    )
    .unwrap();
    drop(conn);
    suite(&mut Store::open(dir.path()).unwrap());
}
