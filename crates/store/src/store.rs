use std::collections::BTreeMap;
use std::path::Path;

use palaver_proto::{Conversation, HistoryQuery, Name};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Event, EventKind, StoreError};

/// The database file inside a server's data directory.
pub const DB_FILE: &str = "palaver.db";

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 4;
/// How many recent request ids a server remembers across a restart.
pub const RECENT_REQUESTS: usize = 100_000;

/// The tables whose rows are events, each keyed by (origin, seq).
const EVENT_TABLES: [&str; 4] = ["logins", "channels", "posts", "messages"];

/// A server's database: one table per kind of event.
pub struct Store {
    conn: Connection,
}

/// What a server needs in memory to start serving.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub users: Vec<Name>,
    pub channels: Vec<Name>,
    /// Highest sequence number stored per origin.
    pub progress: BTreeMap<String, u64>,
    /// Highest Lamport time of any stored event.
    pub max_lamport: u64,
    /// The most recent request ids, oldest first, with the event each made.
    pub requests: Vec<(String, RequestEvent)>,
}

/// The event a client request made: enough to name it and to order it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEvent {
    pub origin: String,
    pub seq: u64,
    pub lamport: u64,
}

impl RequestEvent {
    pub fn of(e: &Event) -> RequestEvent {
        RequestEvent {
            origin: e.origin.clone(),
            seq: e.seq,
            lamport: e.lamport,
        }
    }

    pub fn id(&self) -> String {
        format!("{}:{}", self.origin, self.seq)
    }
}

/// Row counts, for tests and operators.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub logins: u64,
    pub channels: u64,
    pub posts: u64,
    pub messages: u64,
}

/// Brings an older database to the current schema. Up to version 3, request ids lived in a
/// table of their own; keeping them in the event's row saves a b-tree insert per write.
fn migrate(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let requests_table: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'requests'",
        [],
        |r| r.get(0),
    )?;
    for table in EVENT_TABLES {
        let has_request: bool = tx.query_row(
            &format!(
                "SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = 'request'"
            ),
            [],
            |r| r.get(0),
        )?;
        if !has_request {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN request TEXT"))?;
        }
        if requests_table {
            tx.execute_batch(&format!(
                "UPDATE {table} SET request = (SELECT r.request FROM requests r
                     WHERE r.origin = {table}.origin AND r.seq = {table}.seq)"
            ))?;
        }
    }
    if requests_table {
        tx.execute_batch("DROP TABLE requests")?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created or the database cannot be opened or migrated.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        // WAL lets readers run beside the writer; synchronous=FULL makes every COMMIT fsync the
        // log, which is what "on disk before acknowledged" needs. Group commit pays for it.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA)?;
            migrate(&tx)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        Ok(Store { conn })
    }

    /// Reads what the server keeps in memory.
    ///
    /// # Errors
    /// On a database error, or a stored name that no longer passes validation.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let names = |sql: &str| -> Result<Vec<Name>, StoreError> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                // Only validated names are ever written; a row that fails is skipped, not fatal.
                if let Ok(name) = Name::parse(&row?) {
                    out.push(name);
                }
            }
            Ok(out)
        };
        let users = names("SELECT DISTINCT user FROM logins ORDER BY user")?;
        let channels = names("SELECT DISTINCT name FROM channels ORDER BY name")?;
        let (progress, max_lamport) = self.progress()?;
        let requests = self.recent_requests(&progress)?;
        Ok(Snapshot {
            users,
            channels,
            progress,
            max_lamport,
            requests,
        })
    }

    /// The `RECENT_REQUESTS` latest requests in the total order, oldest first: found among
    /// each origin's latest events of each kind (a backward walk of the key), merged.
    fn recent_requests(
        &self,
        origins: &BTreeMap<String, u64>,
    ) -> Result<Vec<(String, RequestEvent)>, StoreError> {
        let mut requests = Vec::new();
        for table in EVENT_TABLES {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT request, seq, lamport FROM
                     (SELECT request, seq, lamport FROM {table} WHERE origin = ?1
                      ORDER BY seq DESC LIMIT ?2)
                 WHERE request IS NOT NULL"
            ))?;
            for origin in origins.keys() {
                let rows = stmt.query_map(params![origin, RECENT_REQUESTS as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
                for row in rows {
                    let (request, seq, lamport) = row?;
                    requests.push((
                        request,
                        RequestEvent {
                            origin: origin.clone(),
                            seq: seq as u64,
                            lamport: lamport as u64,
                        },
                    ));
                }
            }
        }
        requests
            .sort_unstable_by(|(_, a), (_, b)| (a.lamport, &a.origin).cmp(&(b.lamport, &b.origin)));
        let drop = requests.len().saturating_sub(RECENT_REQUESTS);
        requests.drain(..drop);
        Ok(requests)
    }

    /// Stores a batch of events in one transaction with one durable commit. Returns one result
    /// per event: an event that fails (say, a repeated id) does not sink the others.
    ///
    /// # Errors
    /// When the transaction cannot be started or committed; then nothing of the batch is stored.
    pub fn append<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Vec<Result<(), String>>, StoreError> {
        self.append_hiding(events, &[])
    }

    /// As [`Store::append`], also marking `hidden` events (by origin and seq) as repeats of an
    /// earlier request, in the same transaction.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn append_hiding<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
        hidden: &[(String, u64)],
    ) -> Result<Vec<Result<(), String>>, StoreError> {
        let tx = self.conn.transaction()?;
        for (origin, seq) in hidden {
            tx.prepare_cached("INSERT OR IGNORE INTO hidden (origin, seq) VALUES (?1, ?2)")?
                .execute(params![origin, *seq as i64])?;
        }
        let mut results = Vec::new();
        for e in events {
            results.push(insert(&tx, e).map_err(|err| err.to_string()));
        }
        tx.commit()?;
        Ok(results)
    }

    /// A write that changes nothing: a row inserted and deleted in one durable transaction.
    /// A server whose commits failed (say, its disk was full) uses it to learn when it can
    /// write again, even when it has nothing to store.
    ///
    /// # Errors
    /// When the transaction cannot be committed.
    pub fn probe(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "INSERT OR IGNORE INTO hidden (origin, seq) VALUES ('', 0);
             DELETE FROM hidden WHERE origin = '' AND seq = 0;",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The last event of each origin in `table`: origin, sequence number and Lamport time. An
    /// origin numbers its events and stamps them with a rising Lamport clock, so its highest
    /// sequence number also has its highest Lamport time. Each step is an index seek, so this
    /// stays fast however many events are stored.
    fn heads(&self, table: &str) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let mut next = self.conn.prepare_cached(&format!(
            "SELECT origin FROM {table} WHERE origin > ?1 ORDER BY origin LIMIT 1"
        ))?;
        let mut last = self.conn.prepare_cached(&format!(
            "SELECT seq, lamport FROM {table} WHERE origin = ?1 ORDER BY seq DESC LIMIT 1"
        ))?;
        let mut out = Vec::new();
        let mut origin = String::new();
        while let Some(o) = next
            .query_row([&origin], |r| r.get::<_, String>(0))
            .optional()?
        {
            let (seq, lamport): (i64, i64) =
                last.query_row([&o], |r| Ok((r.get(0)?, r.get(1)?)))?;
            out.push((o.clone(), seq as u64, lamport as u64));
            origin = o;
        }
        Ok(out)
    }

    /// Per origin, how many of its events this store holds. Events are only ever stored in
    /// sequence, so the highest sequence number is also the count.
    ///
    /// # Errors
    /// On a database error.
    pub fn vector(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.progress()?.0.into_iter().collect())
    }

    /// Per origin the highest sequence number held, and the highest Lamport time of all.
    fn progress(&self) -> Result<(BTreeMap<String, u64>, u64), StoreError> {
        let mut progress = BTreeMap::new();
        let mut max_lamport = 0;
        for table in EVENT_TABLES {
            for (origin, seq, lamport) in self.heads(table)? {
                let p = progress.entry(origin).or_insert(0);
                *p = seq.max(*p);
                max_lamport = max_lamport.max(lamport);
            }
        }
        Ok((progress, max_lamport))
    }

    /// `origin`'s events with sequence numbers after `after`, in order, at most `limit`.
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn events_after(
        &self,
        origin: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, lamport, ts, 'login', user, NULL, NULL, request FROM logins
                 WHERE origin = ?1 AND seq > ?2 AND seq <= ?3
             UNION ALL SELECT seq, lamport, ts, 'channel', name, NULL, NULL, request FROM channels
                 WHERE origin = ?1 AND seq > ?2 AND seq <= ?3
             UNION ALL SELECT seq, lamport, ts, 'post', user, channel, message, request FROM posts
                 WHERE origin = ?1 AND seq > ?2 AND seq <= ?3
             UNION ALL SELECT seq, lamport, ts, 'message', src, dst, message, request FROM messages
                 WHERE origin = ?1 AND seq > ?2 AND seq <= ?3
             ORDER BY 1",
        )?;
        let upto = after.saturating_add(limit as u64);
        let rows = stmt.query_map(params![origin, after as i64, upto as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, lamport, ts, kind, a, b, c, request) = row?;
            let bad = || StoreError::Corrupt(format!("event {origin}:{seq}"));
            let name = |s: &str| Name::parse(s).map_err(|_| bad());
            let kind = match (kind.as_str(), b, c) {
                ("login", _, _) => EventKind::Login { user: name(&a)? },
                ("channel", _, _) => EventKind::Channel { channel: name(&a)? },
                ("post", Some(channel), Some(message)) => EventKind::Post {
                    user: name(&a)?,
                    channel: name(&channel)?,
                    message,
                },
                ("message", Some(dst), Some(message)) => EventKind::Direct {
                    src: name(&a)?,
                    dst: name(&dst)?,
                    message,
                },
                _ => return Err(bad()),
            };
            out.push(Event {
                origin: origin.to_owned(),
                seq: seq as u64,
                lamport: lamport as u64,
                timestamp: ts,
                kind,
                request,
            });
        }
        Ok(out)
    }

    /// A conversation's messages in the one order every server shows (Lamport time, then
    /// origin): the newest `limit`, or the `limit` just before or after a cursor. Returns them
    /// oldest first, and whether more lie beyond.
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn history(&self, q: &HistoryQuery) -> Result<(Vec<Event>, bool), StoreError> {
        let forward = q.after.is_some();
        let (lamport, origin) = match (&q.before, &q.after) {
            (Some(c), _) | (_, Some(c)) => (c.lamport as i64, c.origin.clone()),
            (None, None) => (i64::MAX, String::new()),
        };
        let (cmp, dir) = if forward { (">", "ASC") } else { ("<", "DESC") };
        let (sql, a, b) = match &q.of {
            Conversation::Channel(c) => (
                format!(
                    "SELECT origin, seq, lamport, ts, 'post', user, channel, message FROM posts
                     WHERE channel = ?1 AND (lamport, origin) {cmp} (?3, ?4)
                       AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.origin = posts.origin AND h.seq = posts.seq)
                     ORDER BY lamport {dir}, origin {dir} LIMIT ?5"
                ),
                c.to_string(),
                String::new(),
            ),
            Conversation::Direct(x, y) => (
                format!(
                    "SELECT origin, seq, lamport, ts, 'message', src, dst, message FROM messages
                     WHERE ((src = ?1 AND dst = ?2) OR (src = ?2 AND dst = ?1))
                       AND (lamport, origin) {cmp} (?3, ?4)
                       AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.origin = messages.origin AND h.seq = messages.seq)
                     ORDER BY lamport {dir}, origin {dir} LIMIT ?5"
                ),
                x.to_string(),
                y.to_string(),
            ),
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![a, b, lamport, origin, q.limit as i64 + 1], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (origin, seq, lamport, ts, kind, x, y, message) = row?;
            let bad = || StoreError::Corrupt(format!("event {origin}:{seq}"));
            let name = |s: &str| Name::parse(s).map_err(|_| bad());
            let kind = if kind == "post" {
                EventKind::Post {
                    user: name(&x)?,
                    channel: name(&y)?,
                    message,
                }
            } else {
                EventKind::Direct {
                    src: name(&x)?,
                    dst: name(&y)?,
                    message,
                }
            };
            out.push(Event {
                origin,
                seq: seq as u64,
                lamport: lamport as u64,
                timestamp: ts,
                kind,
                request: None,
            });
        }
        let more = out.len() > q.limit;
        out.truncate(q.limit);
        if !forward {
            out.reverse();
        }
        Ok((out, more))
    }

    /// A digest of every event held, in (origin, seq) order: two stores with the same events
    /// have the same digest. FNV-1a over each event's MessagePack form.
    ///
    /// # Errors
    /// On a database error.
    pub fn digest(&self) -> Result<u64, StoreError> {
        Ok(self.summary()?.1)
    }

    /// The version vector and the digest of one consistent view of the store (one read
    /// transaction, whatever a writer commits meanwhile).
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn summary(&self) -> Result<(Vec<(String, u64)>, u64), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let vector = self.vector()?;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (origin, held) in vector.iter().cloned() {
            let mut after = 0;
            while after < held {
                let page = self.events_after(&origin, after, 5000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in &page {
                    let mut bytes = Vec::new();
                    // Writing into a Vec cannot fail.
                    rmpv::encode::write_value(&mut bytes, &e.to_value()).expect("write to Vec");
                    for b in bytes {
                        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                    }
                }
            }
        }
        tx.finish()?;
        Ok((vector, hash))
    }

    /// How many rows each table holds.
    ///
    /// # Errors
    /// On a database error.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let count = |table: &str| -> Result<u64, StoreError> {
            let n: i64 =
                self.conn
                    .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(n as u64)
        };
        Ok(Counts {
            logins: count("logins")?,
            channels: count("channels")?,
            posts: count("posts")?,
            messages: count("messages")?,
        })
    }

    /// Whether a post with this text exists (for tests and spot checks).
    ///
    /// # Errors
    /// On a database error.
    pub fn has_post(&self, channel: &str, message: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM posts WHERE channel = ?1 AND message = ?2 LIMIT 1",
                params![channel, message],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

fn insert(tx: &rusqlite::Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    let (origin, seq, lamport, ts, request) = (
        e.origin.as_str(),
        e.seq as i64,
        e.lamport as i64,
        e.timestamp,
        e.request.as_deref(),
    );
    match &e.kind {
        EventKind::Login { user } => tx
            .prepare_cached(
                "INSERT INTO logins (origin, seq, lamport, ts, user, request)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![origin, seq, lamport, ts, user.as_str(), request]),
        EventKind::Channel { channel } => tx
            .prepare_cached(
                "INSERT INTO channels (origin, seq, lamport, ts, name, request)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![origin, seq, lamport, ts, channel.as_str(), request]),
        EventKind::Post {
            user,
            channel,
            message,
        } => tx
            .prepare_cached(
                "INSERT INTO posts (origin, seq, lamport, ts, channel, user, message, request)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                origin,
                seq,
                lamport,
                ts,
                channel.as_str(),
                user.as_str(),
                message,
                request
            ]),
        EventKind::Direct { src, dst, message } => tx
            .prepare_cached(
                "INSERT INTO messages (origin, seq, lamport, ts, src, dst, message, request)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                origin,
                seq,
                lamport,
                ts,
                src.as_str(),
                dst.as_str(),
                message,
                request
            ]),
    }
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn ev(seq: u64, kind: EventKind) -> Event {
        Event {
            origin: "s1".into(),
            seq,
            lamport: seq * 10,
            timestamp: 1.0,
            kind,
            request: seq.is_multiple_of(2).then(|| format!("req-{seq}")),
        }
    }

    #[test]
    fn stores_and_reloads_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(dir.path()).unwrap();
            let results = store
                .append(&[
                    ev(1, EventKind::Login { user: name("ana") }),
                    ev(2, EventKind::Login { user: name("ana") }),
                    ev(
                        3,
                        EventKind::Channel {
                            channel: name("general"),
                        },
                    ),
                    ev(
                        4,
                        EventKind::Post {
                            user: name("ana"),
                            channel: name("general"),
                            message: "hi".into(),
                        },
                    ),
                    ev(
                        5,
                        EventKind::Direct {
                            src: name("ana"),
                            dst: name("ana"),
                            message: "me".into(),
                        },
                    ),
                ])
                .unwrap();
            assert!(results.iter().all(Result::is_ok));
        }
        let store = Store::open(dir.path()).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.users, vec![name("ana")]);
        assert_eq!(snap.channels, vec![name("general")]);
        assert_eq!(snap.progress.get("s1"), Some(&5));
        assert_eq!(snap.max_lamport, 50);
        assert_eq!(
            store.counts().unwrap(),
            Counts {
                logins: 2,
                channels: 1,
                posts: 1,
                messages: 1
            }
        );
        assert!(store.has_post("general", "hi").unwrap());
    }

    #[test]
    fn events_come_back_in_sequence_and_digests_match() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let events = vec![
            ev(1, EventKind::Login { user: name("ana") }),
            ev(
                2,
                EventKind::Channel {
                    channel: name("general"),
                },
            ),
            ev(
                3,
                EventKind::Post {
                    user: name("ana"),
                    channel: name("general"),
                    message: "hi".into(),
                },
            ),
            ev(
                4,
                EventKind::Direct {
                    src: name("ana"),
                    dst: name("ana"),
                    message: "me".into(),
                },
            ),
            ev(5, EventKind::Login { user: name("bob") }),
        ];
        let mut sa = Store::open(a.path()).unwrap();
        sa.append(&events).unwrap();
        assert_eq!(sa.vector().unwrap(), vec![("s1".to_owned(), 5)]);
        assert_eq!(sa.events_after("s1", 0, 100).unwrap(), events);
        assert_eq!(sa.events_after("s1", 2, 2).unwrap(), events[2..4].to_vec());
        assert!(sa.events_after("s2", 0, 100).unwrap().is_empty());
        let mut sb = Store::open(b.path()).unwrap();
        sb.append(&events[..4]).unwrap();
        assert_ne!(sa.digest().unwrap(), sb.digest().unwrap());
        sb.append(&events[4..]).unwrap();
        assert_eq!(sa.digest().unwrap(), sb.digest().unwrap());
    }

    #[test]
    fn a_repeated_id_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .append(&[ev(1, EventKind::Login { user: name("ana") })])
            .unwrap();
        let results = store
            .append(&[
                ev(1, EventKind::Login { user: name("bob") }),
                ev(2, EventKind::Login { user: name("cid") }),
            ])
            .unwrap();
        assert!(results[0].is_err());
        assert!(results[1].is_ok());
        assert_eq!(store.counts().unwrap().logins, 2);
    }

    #[test]
    fn recent_requests_come_back_in_total_order_across_origins() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut events = Vec::new();
        for (origin, lamports) in [("s1", [5, 1, 9]), ("s2", [2, 7, 3])] {
            for (i, lamport) in lamports.into_iter().enumerate() {
                events.push(Event {
                    origin: origin.into(),
                    seq: i as u64 + 1,
                    lamport,
                    timestamp: 1.0,
                    kind: EventKind::Login { user: name("ana") },
                    request: Some(format!("{origin}-{lamport}")),
                });
            }
        }
        store.append(&events).unwrap();
        let order: Vec<String> = store
            .snapshot()
            .unwrap()
            .requests
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(order, ["s1-1", "s2-2", "s2-3", "s1-5", "s2-7", "s1-9"]);
    }

    #[test]
    fn a_version_2_database_is_migrated_with_its_request_ids() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE requests (origin TEXT NOT NULL, seq INTEGER NOT NULL,
                     request TEXT NOT NULL, lamport INTEGER NOT NULL, PRIMARY KEY (origin, seq));
                 CREATE INDEX requests_by_request ON requests (request);
                 CREATE TABLE logins (origin TEXT NOT NULL, seq INTEGER NOT NULL,
                     lamport INTEGER NOT NULL, ts REAL NOT NULL, user TEXT NOT NULL,
                     PRIMARY KEY (origin, seq)) WITHOUT ROWID;
                 INSERT INTO logins VALUES ('s1', 1, 10, 1.0, 'ana');
                 INSERT INTO requests VALUES ('s1', 1, 'req-1', 10);
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.requests.len(), 1);
        assert_eq!(snap.requests[0].0, "req-1");
        assert_eq!(
            store.events_after("s1", 0, 10).unwrap()[0]
                .request
                .as_deref(),
            Some("req-1")
        );
        // The ids now live in the events' rows.
        assert!(store.conn.prepare("SELECT 1 FROM requests").is_err());
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
