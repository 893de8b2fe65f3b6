//! The store's conformance suite: one list of checks, run against every way a store comes to
//! be (new; reopened from disk; migrated in place from schemas 4, 6, 7 and 8), each holding
//! the shared history of `palaver_proto::examples`, which has an event of every kind.
//! Whatever path a server's database took, it must behave the same: every kind appends,
//! projects, counts, digests and reads back.
//!
//! A path is a [`Path`]: how to get a store of an older schema holding the events that schema
//! could hold. The suite then appends the rest of the history and checks everything.

use std::collections::BTreeMap;

use palaver_proto::{examples, Conversation, Cursor, HistoryQuery, Name, Window};
use palaver_store::{Event, EventKind, Family, MessageKind, Store};
use rusqlite::Connection;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Message(MessageKind::Post { message, .. })
            | EventKind::Message(MessageKind::Direct { message, .. }) => message.clone(),
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
        window: Default::default(),
    }
}

/// The history's events of `family`, in the total order (how the store's indexes hand them
/// out).
fn of_family(family: Family, all: &[Event]) -> Vec<Event> {
    let mut out: Vec<Event> = all
        .iter()
        .filter(|e| e.kind.family() == family)
        .cloned()
        .collect();
    out.sort_by(|a, b| (a.lamport, &a.origin, a.seq).cmp(&(b.lamport, &b.origin, b.seq)));
    out
}

/// A way to come by a store: it writes into `dir` a database holding a prefix of the history,
/// and returns how many of its events it holds.
type Path = fn(&std::path::Path) -> usize;

/// Opens the store `path` made, appends the rest of the history, and runs the whole suite on it.
fn conforms(path: Path) {
    let dir = tempfile::tempdir().unwrap();
    let held = path(dir.path());
    let mut store = Store::open(dir.path()).unwrap();
    let rest = &examples::history()[held..];
    let results = store.append(rest).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    suite(&store);
    drop(store);
    // And again after a reopen: nothing a path left behind changes on the second open.
    let mut store = Store::open(dir.path()).unwrap();
    let version: i64 = Connection::open(dir.path().join(palaver_store::DB_FILE))
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 10);
    suite(&store);
    let lamport = examples::history().iter().map(|e| e.lamport).max().unwrap();
    appends_fail_alone_and_hidden_events_leave_history(&mut store, lamport);
}

/// Everything a store must do, given one that holds the whole history (hidden: none).
fn suite(store: &Store) {
    let all = examples::history();
    every_kind_reads_back(store, &all);
    every_kind_counts(store, &all);
    every_family_projects(store, &all);
    history_and_unread(store);
}

/// The log: each origin's events in sequence, in pages, each kind as it was written.
fn every_kind_reads_back(store: &Store, all: &[Event]) {
    let mut vector = BTreeMap::new();
    for origin in ["s1", "s2"] {
        let mine: Vec<Event> = all.iter().filter(|e| e.origin == origin).cloned().collect();
        assert_eq!(store.events_after(origin, 0, 1000).unwrap(), mine);
        assert_eq!(
            store.events_after(origin, 2, 2).unwrap(),
            mine[2..4].to_vec()
        );
        for e in &mine {
            // One event by id comes without its request id (nobody reading it needs it).
            let plain = Event {
                request: None,
                ..e.clone()
            };
            assert_eq!(store.event(origin, e.seq).unwrap(), Some(plain));
        }
        vector.insert(origin.to_owned(), mine.len() as u64);
    }
    assert!(store.events_after("s9", 0, 100).unwrap().is_empty());
    assert_eq!(
        store.vector().unwrap(),
        vector.into_iter().collect::<Vec<_>>()
    );
}

/// Every kind is counted under its own name, and every family adds up.
fn every_kind_counts(store: &Store, all: &[Event]) {
    let counts = store.counts().unwrap();
    for kind in EventKind::NAMES {
        let written = all.iter().filter(|e| e.kind.name() == *kind).count() as u64;
        assert!(written > 0, "the history has no {kind}");
        assert_eq!(counts.kind(kind), written, "{kind}");
    }
    for family in Family::ALL {
        assert_eq!(
            counts.family(*family),
            all.iter().filter(|e| e.kind.family() == *family).count() as u64,
            "{family:?}"
        );
    }
    assert_eq!(counts.total(), all.len() as u64);
}

/// What a server starts from: each family's projection, folded at start-up.
fn every_family_projects(store: &Store, all: &[Event]) {
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.users, vec![name("ana"), name("bob"), name("cid")]);
    assert_eq!(snap.channels, vec![name("den"), name("general")]);
    assert_eq!(
        snap.max_lamport,
        all.iter().map(|e| e.lamport).max().unwrap()
    );
    let requests: Vec<&str> = snap.requests.iter().map(|(r, _)| r.as_str()).collect();
    let mut written: Vec<&Event> = all.iter().filter(|e| e.request.is_some()).collect();
    written.sort_by_key(|e| (e.lamport, e.origin.clone()));
    let written: Vec<&str> = written
        .iter()
        .filter_map(|e| e.request.as_deref())
        .collect();
    assert_eq!(requests, written);
    // Logins are names (`users`), not account events.
    let accounts: Vec<Event> = of_family(Family::Account, all)
        .into_iter()
        .filter(|e| e.kind.name() != "login")
        .collect();
    assert_eq!(snap.accounts, accounts);
    assert_eq!(snap.rooms, of_family(Family::Room, all));
    assert_eq!(snap.readers, of_family(Family::Reader, all));
    assert_eq!(snap.claims, of_family(Family::Claim, all));
    let readers = store
        .reader_events_after(&name("ana"), (0, "", 0), 100)
        .unwrap();
    let anas: Vec<Event> = of_family(Family::Reader, all)
        .into_iter()
        .filter(|e| e.kind.name() != "settings")
        .map(|e| Event { request: None, ..e })
        .collect();
    assert_eq!(readers, anas);
    assert_eq!(store.partners(&name("ana")).unwrap(), vec![name("bob")]);
    // The deleted channel's posts are gone; its name stays taken.
    assert!(store.history(&channel("den", 10)).unwrap().0.is_empty());
}

/// History in the one order (Lamport time, then origin), paged both ways; unread counts.
fn history_and_unread(store: &Store) {
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
    // A range between two cursors, from either end; windows of time.
    let range = |latest: bool| HistoryQuery {
        after: Some(Cursor::of(&h[0])),
        before: Some(Cursor::of(&h[2])),
        window: Window {
            latest,
            ..Window::default()
        },
        ..channel("general", 5)
    };
    assert_eq!(texts(&store.history(&range(false)).unwrap().0), ["two"]);
    assert_eq!(texts(&store.history(&range(true)).unwrap().0), ["two"]);
    let ms = |e: &Event| (e.timestamp * 1e3).floor() as u64;
    assert!(h[0].timestamp < h[1].timestamp && h[1].timestamp < h[2].timestamp);
    let window = |since: Option<u64>, until: Option<u64>, latest: bool, limit: usize| {
        let q = HistoryQuery {
            window: Window {
                since,
                until,
                latest,
            },
            ..channel("general", limit)
        };
        let (page, more) = store.history(&q).unwrap();
        (texts(&page), more)
    };
    let s = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect::<Vec<String>>();
    assert_eq!(window(Some(ms(&h[1])), None, false, 1), (s(&["two"]), true));
    assert_eq!(
        window(Some(ms(&h[1])), None, true, 5),
        (s(&["two", "three"]), false)
    );
    assert_eq!(
        window(None, Some(ms(&h[1])), false, 5),
        (s(&["one"]), false)
    );
    assert_eq!(
        window(Some(ms(&h[0]) + 1), Some(ms(&h[2])), false, 5),
        (s(&["two"]), false)
    );
    assert_eq!(window(Some(ms(&h[2]) + 1), None, false, 5), (s(&[]), false));
    let conversation = |x: &str, y: &str| HistoryQuery {
        of: Conversation::Direct(name(x), name(y)),
        limit: 10,
        before: None,
        after: None,
        window: Default::default(),
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
    let at = |e: &Event| (e.lamport, e.origin.clone());
    let (two, three) = (at(&h[1]), at(&h[2]));
    let count = |of: &Conversation, after: Option<&(u64, String)>, reader: &str| {
        let after = after.map(|(l, o)| (*l, o.as_str()));
        store.count_after(of, after, &name(reader)).unwrap()
    };
    let general = Conversation::Channel(name("general"));
    assert_eq!(count(&general, None, "ana"), 1, "bob's two");
    assert_eq!(count(&general, None, "bob"), 2, "ana's one and three");
    assert_eq!(count(&general, Some(&two), "bob"), 1, "three");
    assert_eq!(count(&general, Some(&three), "bob"), 0);
    assert_eq!(count(&general, None, "cid"), 3);
    let dms = store.history(&conversation("bob", "ana")).unwrap().0;
    let pair = Conversation::Direct(name("bob"), name("ana"));
    assert_eq!(count(&pair, None, "ana"), 1, "psst");
    assert_eq!(count(&pair, Some(&at(&dms[0])), "bob"), 1, "hi bob");
    assert_eq!(count(&pair, Some(&at(&dms[1])), "bob"), 0);
    // Beside the counts: when the newest message and the one at a marker were stamped.
    assert_eq!(
        store.times(&general, Some((two.0, &two.1))).unwrap(),
        (Some(h[2].timestamp), Some(h[1].timestamp))
    );
    assert_eq!(
        store.times(&pair, None).unwrap(),
        (Some(dms[1].timestamp), None)
    );
    let nobody = Conversation::Direct(name("ana"), name("cid"));
    assert_eq!(store.times(&nobody, Some((1, "s1"))).unwrap(), (None, None));
    assert!(store.has_post("general", "two").unwrap());
    assert!(!store.has_post("general", "psst").unwrap());
}

/// A repeated id fails alone, the rest of its batch is stored; a hidden event leaves
/// history, not the log.
fn appends_fail_alone_and_hidden_events_leave_history(store: &mut Store, lamport: u64) {
    let post = |seq: u64, text: &str| Event {
        origin: "s9".into(),
        seq,
        lamport: lamport + seq,
        timestamp: 1.0,
        kind: MessageKind::Post {
            user: name("ana"),
            channel: name("general"),
            message: text.into(),
        }
        .into(),
        request: None,
    };
    let results = store.append(&[post(1, "four")]).unwrap();
    assert!(results[0].is_ok());
    let results = store.append(&[post(1, "again"), post(2, "five")]).unwrap();
    assert!(results[0].is_err() && results[1].is_ok());
    store.append_hiding(&[], &[("s9".to_owned(), 2)]).unwrap();
    assert_eq!(
        texts(&store.history(&channel("general", 10)).unwrap().0),
        ["one", "two", "three", "four"]
    );
    assert_eq!(store.events_after("s9", 0, 10).unwrap().len(), 2);
    store.probe().unwrap();
}

/// A new store: nothing held.
fn new(_: &std::path::Path) -> usize {
    0
}

/// A store written in full and closed.
fn reopened(dir: &std::path::Path) -> usize {
    let mut store = Store::open(dir).unwrap();
    let all = examples::history();
    assert!(store.append(&all).unwrap().iter().all(Result::is_ok));
    all.len()
}

/// What schema 4 held (logins, channels, posts, private messages), one table per kind, with
/// request ids in the rows.
fn schema_4(dir: &std::path::Path) -> usize {
    let held = examples::held_by_schema(4);
    let conn = Connection::open(dir.join(palaver_store::DB_FILE)).unwrap();
    conn.execute_batch(include_str!("../src/schema_v4.sql"))
        .unwrap();
    for e in &held {
        let (o, s, l, t, r) = (&e.origin, e.seq, e.lamport, e.timestamp, &e.request);
        let (table, fields): (&str, Vec<String>) = match &e.kind {
            EventKind::Account(palaver_store::AccountKind::Login { user }) => {
                ("logins", vec![user.to_string()])
            }
            EventKind::Room(palaver_store::RoomKind::Channel { channel, .. }) => {
                ("channels", vec![channel.to_string()])
            }
            EventKind::Message(MessageKind::Post {
                user,
                channel,
                message,
            }) => (
                "posts",
                vec![channel.to_string(), user.to_string(), message.clone()],
            ),
            EventKind::Message(MessageKind::Direct { src, dst, message }) => (
                "messages",
                vec![src.to_string(), dst.to_string(), message.clone()],
            ),
            other => panic!("schema 4 had no {} events", other.name()),
        };
        let marks: Vec<String> = (1..=fields.len() + 5).map(|i| format!("?{i}")).collect();
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![o, &s, &l, &t];
        values.extend(fields.iter().map(|f| f as &dyn rusqlite::ToSql));
        values.push(r);
        conn.execute(
            &format!("INSERT INTO {table} VALUES ({})", marks.join(", ")),
            values.as_slice(),
        )
        .unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
    held.len()
}

/// A current store holding what schema `version` held, taken back to it by `undo`.
fn downgraded(dir: &std::path::Path, version: u32, undo: &str) -> usize {
    let held = examples::held_by_schema(version);
    let mut store = Store::open(dir).unwrap();
    assert!(store.append(&held).unwrap().iter().all(Result::is_ok));
    drop(store);
    let conn = Connection::open(dir.join(palaver_store::DB_FILE)).unwrap();
    conn.execute_batch(undo).unwrap();
    conn.pragma_update(None, "user_version", version).unwrap();
    held.len()
}

/// Schema 6 had no rooms' index (channel creations are copied into it) and no deleted
/// channels.
fn schema_6(dir: &std::path::Path) -> usize {
    downgraded(
        dir,
        6,
        "DROP TABLE room_events; DROP TABLE deleted_channels; DROP TABLE reader_events;
         DROP TABLE claim_events;",
    )
}

/// Schema 7 had no readers' index.
fn schema_7(dir: &std::path::Path) -> usize {
    downgraded(dir, 7, "DROP TABLE reader_events; DROP TABLE claim_events;")
}

/// Schema 8's posts and private messages did not name their author.
fn schema_8(dir: &std::path::Path) -> usize {
    downgraded(
        dir,
        8,
        "ALTER TABLE channel_posts DROP COLUMN author;
         ALTER TABLE direct_messages DROP COLUMN author;
         DROP TABLE claim_events;",
    )
}

/// Schema 9 had no claims' index.
fn schema_9(dir: &std::path::Path) -> usize {
    downgraded(dir, 9, "DROP TABLE claim_events;")
}

#[test]
fn a_new_store_conforms() {
    conforms(new);
}

#[test]
fn a_reopened_store_conforms() {
    conforms(reopened);
}

#[test]
fn a_store_migrated_from_schema_4_conforms() {
    conforms(schema_4);
}

#[test]
fn a_store_migrated_from_schema_6_conforms() {
    conforms(schema_6);
}

#[test]
fn a_store_migrated_from_schema_7_conforms() {
    conforms(schema_7);
}

#[test]
fn a_store_migrated_from_schema_8_conforms() {
    conforms(schema_8);
}

#[test]
fn a_store_migrated_from_schema_9_conforms() {
    conforms(schema_9);
}

/// Schema 4's tables are gone once migrated.
#[test]
fn schema_4_tables_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    schema_4(dir.path());
    drop(Store::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(palaver_store::DB_FILE)).unwrap();
    for table in ["logins", "channels", "posts", "messages"] {
        assert!(
            conn.prepare(&format!("SELECT 1 FROM {table}")).is_err(),
            "{table} still exists"
        );
    }
}

/// The digest covers every event of every kind, and not the order in which origins arrived.
#[test]
fn the_digest_covers_every_event_and_not_the_arrival_order() {
    let all = examples::history();
    let digest = |events: &[Event]| {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.append(events).unwrap().iter().all(Result::is_ok));
        store.digest().unwrap()
    };
    let whole = digest(&all);
    // Another arrival order of whole origins (each origin's own events stay in sequence).
    let (s2, s1): (Vec<Event>, Vec<Event>) = all.iter().cloned().partition(|e| e.origin == "s2");
    assert_eq!(digest(&[s2, s1].concat()), whole);
    // Hiding an event (as a repeat of another's request) changes it.
    {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.append(&all).unwrap().iter().all(Result::is_ok));
        store
            .append_hiding(&[], &[(all[3].origin.clone(), all[3].seq)])
            .unwrap();
        assert_ne!(
            store.digest().unwrap(),
            whole,
            "hidden events are in the digest"
        );
    }
    // Any one event changed, of any kind, changes it.
    for (i, e) in all.iter().enumerate() {
        let mut changed = all.clone();
        changed[i].timestamp += 1.0;
        assert_ne!(
            digest(&changed),
            whole,
            "{} is not in the digest",
            e.kind.name()
        );
    }
}
