use std::collections::BTreeMap;
use std::path::Path;

use palaver_proto::{Conversation, HistoryQuery, Name};
use rusqlite::{params, Connection, OptionalExtension};

use crate::project::{insert, project, sorted};
use crate::rows::read_event;
use crate::{Event, EventKind, Family, MessageKind, StoreError};

/// The database file inside a server's data directory.
pub const DB_FILE: &str = "palaver.db";

const SCHEMA_VERSION: i64 = 10;
/// How many recent request ids a server remembers across a restart.
pub const RECENT_REQUESTS: usize = 100_000;

/// A server's database: one log of events, and each kind's projections beside it.
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
    /// Every event about an account, in the total order.
    pub accounts: Vec<Event>,
    /// Every event about rooms (creation, membership, deletes), in the total order.
    pub rooms: Vec<Event>,
    /// Every event about what people have read (inbox cursors), in the total order.
    pub readers: Vec<Event>,
    /// Every claim event (promises, acceptances, decisions), in the total order.
    pub claims: Vec<Event>,
}

/// A page of a person's inbox, as [`Store::inbox`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxPage {
    /// Oldest first, in the total order.
    pub events: Vec<Event>,
    /// The device's cursor once these are taken.
    pub cursor: BTreeMap<String, u64>,
    /// More is pending past the page.
    pub more: bool,
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

    /// Where the event stands in the total order.
    pub fn cursor(&self) -> palaver_proto::Cursor {
        palaver_proto::Cursor {
            lamport: self.lamport,
            origin: self.origin.clone(),
        }
    }
}

/// Events held, by kind, for tests and operators.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    by_kind: BTreeMap<&'static str, u64>,
}

impl Counts {
    /// The events of the kind called `name` (0 for a kind that does not exist).
    pub fn kind(&self, name: &str) -> u64 {
        self.by_kind.get(name).copied().unwrap_or(0)
    }

    /// The events of every kind of `family`.
    pub fn family(&self, family: Family) -> u64 {
        family.kinds().iter().map(|k| self.kind(k)).sum()
    }

    /// Every event.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}

impl Store {
    /// Opens (creating if needed) the database in `dir`, migrating an older one in place.
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
        // Every statement here is prepared once and reused (the log's insert, each kind's
        // projection, history in both directions for channels and conversations, the
        // progress seeks…): more than rusqlite's default of 16, which made them evict each
        // other (1.3 % of a server's time under load went to the cache).
        conn.set_prepared_statement_cache_capacity(64);
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            let tx = conn.unchecked_transaction()?;
            crate::migrate::to_current(&tx, insert, project)?;
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
                let row = row?;
                // Only validated names are ever written; one that fails now is reported.
                match Name::parse(&row) {
                    Ok(name) => out.push(name),
                    Err(e) => {
                        tracing::error!(name = %row, error = %e, "a stored name fails validation; skipped")
                    }
                }
            }
            Ok(out)
        };
        let users = names("SELECT name FROM users ORDER BY name")?;
        let channels = names("SELECT name FROM channel_names ORDER BY name")?;
        let (progress, max_lamport) = self.progress()?;
        let requests = self.recent_requests(&progress)?;
        let indexed = |table: &str| -> Result<Vec<Event>, StoreError> {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT e.origin, e.seq, e.lamport, e.ts, e.kind, e.request, e.body
                 FROM {table} p JOIN events e ON e.origin = p.origin AND e.seq = p.seq
                 ORDER BY p.lamport, p.origin, p.seq"
            ))?;
            let rows = stmt.query_map([], read_event)?;
            rows.map(|row| row?).collect()
        };
        Ok(Snapshot {
            users,
            channels,
            progress,
            max_lamport,
            requests,
            accounts: indexed("account_events")?,
            rooms: indexed("room_events")?,
            readers: indexed("reader_events")?,
            claims: indexed("claim_events")?,
        })
    }

    /// The `RECENT_REQUESTS` latest requests in the total order, oldest first: found among
    /// each origin's latest events (a backward walk of the key), merged.
    fn recent_requests(
        &self,
        origins: &BTreeMap<String, u64>,
    ) -> Result<Vec<(String, RequestEvent)>, StoreError> {
        let mut requests = Vec::new();
        let mut stmt = self.conn.prepare(
            "SELECT request, seq, lamport FROM
                 (SELECT request, seq, lamport FROM events WHERE origin = ?1
                  ORDER BY seq DESC LIMIT ?2)
             WHERE request IS NOT NULL",
        )?;
        for origin in origins.keys() {
            let rows = stmt.query_map(params![origin, RECENT_REQUESTS], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, u64>(2)?,
                ))
            })?;
            for row in rows {
                let (request, seq, lamport) = row?;
                requests.push((
                    request,
                    RequestEvent {
                        origin: origin.clone(),
                        seq,
                        lamport,
                    },
                ));
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
                .execute(params![origin, seq])?;
        }
        let mut results = Vec::new();
        for e in events {
            // An event that fails (a repeated id) fails at its first statement, the log's own
            // insert, before any projection is written.
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

    /// Per origin, how many of its events this store holds. Events are only ever stored in
    /// sequence, so the highest sequence number is also the count.
    ///
    /// # Errors
    /// On a database error.
    pub fn vector(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.progress()?.0.into_iter().collect())
    }

    /// Per origin the highest sequence number held, and the highest Lamport time of all. An
    /// origin numbers its events and stamps them with a rising Lamport clock, so its highest
    /// sequence number also has its highest Lamport time. Each step is an index seek, so this
    /// stays fast however many events are stored.
    fn progress(&self) -> Result<(BTreeMap<String, u64>, u64), StoreError> {
        let mut next = self.conn.prepare_cached(
            "SELECT origin FROM events WHERE origin > ?1 ORDER BY origin LIMIT 1",
        )?;
        let mut last = self.conn.prepare_cached(
            "SELECT seq, lamport FROM events WHERE origin = ?1 ORDER BY seq DESC LIMIT 1",
        )?;
        let mut progress = BTreeMap::new();
        let mut max_lamport = 0;
        let mut origin = String::new();
        while let Some(o) = next
            .query_row([&origin], |r| r.get::<_, String>(0))
            .optional()?
        {
            let (seq, lamport): (u64, u64) =
                last.query_row([&o], |r| Ok((r.get(0)?, r.get(1)?)))?;
            progress.insert(o.clone(), seq);
            max_lamport = max_lamport.max(lamport);
            origin = o;
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
        self.events_page(origin, after, limit, usize::MAX)
    }

    /// As [`Store::events_after`], also stopping before the events' [`Event::size_bound`]s
    /// would pass `max_bytes` (one event at least): a page that fits in one frame, read
    /// without reading what would not fit.
    ///
    /// # Errors
    /// As [`Store::events_after`].
    pub fn events_page(
        &self,
        origin: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT origin, seq, lamport, ts, kind, request, body FROM events
             WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![origin, after, limit], read_event)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for row in rows {
            let event = row??;
            bytes = bytes.saturating_add(event.size_bound());
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(event);
        }
        Ok(out)
    }

    /// The events marked hidden (repeats of another event's request), by origin and seq.
    ///
    /// # Errors
    /// On a database error.
    pub fn hidden(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT origin, seq FROM hidden ORDER BY origin, seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The event `origin:seq`, unless it is missing or hidden (a repeat of another request).
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn event(&self, origin: &str, seq: u64) -> Result<Option<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.origin, e.seq, e.lamport, e.ts, e.kind, NULL, e.body FROM events e
             WHERE e.origin = ?1 AND e.seq = ?2
               AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.origin = e.origin AND h.seq = e.seq)",
        )?;
        let row = stmt
            .query_row(params![origin, seq], read_event)
            .optional()?;
        row.transpose()
    }

    /// Every visible message of a conversation, oldest first: [`Store::history`] paged
    /// forward from the start of the order (for checks that compare servers).
    ///
    /// # Errors
    /// As [`Store::history`].
    pub fn whole_history(&self, of: &Conversation) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        let mut after = palaver_proto::Cursor {
            lamport: 0,
            origin: String::new(),
        };
        loop {
            let q = HistoryQuery {
                of: of.clone(),
                limit: palaver_proto::MAX_HISTORY,
                before: None,
                after: Some(after),
                window: Default::default(),
            };
            let (page, more) = self.history(&q)?;
            let Some(last) = page.last() else { break };
            after = palaver_proto::Cursor::of(last);
            out.extend(page);
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// A conversation's messages in the one order every server shows (Lamport time, then
    /// origin): the newest `limit`, or the `limit` just after `after` (or from `since`), within
    /// whichever of `before`, `after`, `since` and `until` are given (the newest within them
    /// when the window says `latest`). Returns them oldest first, and whether more lie beyond
    /// (in the direction the page was taken).
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn history(&self, q: &HistoryQuery) -> Result<(Vec<Event>, bool), StoreError> {
        use rusqlite::types::Value as Sql;
        let forward = q.window.forward(q.after.as_ref());
        let dir = if forward { "ASC" } else { "DESC" };
        let mut args: Vec<Sql> = Vec::new();
        let mut arg = |v: Sql| {
            args.push(v);
            format!("?{}", args.len())
        };
        let mut filter = match &q.of {
            Conversation::Channel(c) => {
                format!("FROM channel_posts p JOIN events e ON e.origin = p.origin AND e.seq = p.seq WHERE p.channel = {}", arg(Sql::Text(c.to_string())))
            }
            Conversation::Direct(x, y) => {
                let (a, b) = sorted(x.as_str(), y.as_str());
                let (a, b) = (arg(Sql::Text(a.to_owned())), arg(Sql::Text(b.to_owned())));
                format!("FROM direct_messages p JOIN events e ON e.origin = p.origin AND e.seq = p.seq WHERE p.a = {a} AND p.b = {b}")
            }
        };
        let counter = |n: u64| Sql::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        for (cursor, cmp) in [(&q.before, "<"), (&q.after, ">")] {
            if let Some(c) = cursor {
                let (l, o) = (arg(counter(c.lamport)), arg(Sql::Text(c.origin.clone())));
                filter.push_str(&format!(" AND (p.lamport, p.origin) {cmp} ({l}, {o})"));
            }
        }
        let secs = |ms: u64| Sql::Real(ms as f64 / 1e3);
        if let Some(t) = q.window.since {
            filter.push_str(&format!(" AND e.ts >= {}", arg(secs(t))));
        }
        if let Some(t) = q.window.until {
            filter.push_str(&format!(" AND e.ts < {}", arg(secs(t))));
        }
        let limit = arg(counter(q.limit.saturating_add(1) as u64));
        let sql = format!(
            "SELECT e.origin, e.seq, e.lamport, e.ts, e.kind, NULL, e.body {filter}
               AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.origin = p.origin AND h.seq = p.seq)
             ORDER BY p.lamport {dir}, p.origin {dir} LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), read_event)?;
        let mut out = rows
            .map(|row| row?)
            .collect::<Result<Vec<Event>, StoreError>>()?;
        let more = out.len() > q.limit;
        out.truncate(q.limit);
        if !forward {
            out.reverse();
        }
        Ok((out, more))
    }

    /// A page of `user`'s inbox past `cursor`: their private messages (sent and received) and
    /// the posts of `channels` (the rooms they are in), in the total order, at most `limit`;
    /// with the cursor once the page is taken, and whether more is pending. What this store
    /// holds is read first, and only events within it are handed out, so a commit that lands
    /// meanwhile is neither skipped nor counted as taken (see `palaver_core::inbox`).
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn inbox(
        &self,
        user: &Name,
        channels: &[Name],
        cursor: &BTreeMap<String, u64>,
        limit: usize,
    ) -> Result<InboxPage, StoreError> {
        use palaver_core::inbox::{page, Position};
        use palaver_core::replication::VersionVector;
        let held: VersionVector = self.vector()?.into_iter().collect();
        let taken: VersionVector = cursor.iter().map(|(o, s)| (o.clone(), *s)).collect();
        let mut lamport_at = self
            .conn
            .prepare_cached("SELECT lamport FROM events WHERE origin = ?1 AND seq = ?2")?;
        let not_hidden =
            "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.origin = p.origin AND h.seq = p.seq)";
        let posts = format!(
            "SELECT p.lamport, p.origin, p.seq FROM channel_posts p
             WHERE p.channel = ?1 AND p.lamport > ?2 AND p.origin = ?3 AND p.seq > ?4
               AND p.seq <= ?5 AND {not_hidden} ORDER BY p.lamport LIMIT ?6"
        );
        let direct = |side: &str| {
            format!(
                "SELECT p.lamport, p.origin, p.seq FROM direct_messages p
                 WHERE p.{side} = ?1 AND p.lamport > ?2 AND p.origin = ?3 AND p.seq > ?4
                   AND p.seq <= ?5 AND {not_hidden} ORDER BY p.lamport LIMIT ?6"
            )
        };
        let mut candidates = Vec::new();
        let take = limit.saturating_add(1);
        for (origin, upto) in held.iter() {
            let after = taken.get(origin);
            if upto <= after {
                continue;
            }
            // Everything of `origin` past the cursor comes after the cursor's event.
            let floor: u64 = lamport_at
                .query_row(params![origin, after], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let mut run = |sql: &str, key: &str| -> Result<(), StoreError> {
                let mut stmt = self.conn.prepare_cached(sql)?;
                let rows = stmt.query_map(params![key, floor, origin, after, upto, take], |r| {
                    Ok(Position {
                        lamport: r.get(0)?,
                        origin: r.get(1)?,
                        seq: r.get(2)?,
                    })
                })?;
                for row in rows {
                    candidates.push(row?);
                }
                Ok(())
            };
            for c in channels {
                run(&posts, c.as_str())?;
            }
            run(&direct("a"), user.as_str())?;
            run(&direct("b"), user.as_str())?;
        }
        let page = page(&taken, &held, candidates, limit);
        let mut events = Vec::with_capacity(page.events.len());
        for p in &page.events {
            match self.event(&p.origin, p.seq)? {
                Some(e) => events.push(e),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "{}:{} is projected but not in the log",
                        p.origin, p.seq
                    )))
                }
            }
        }
        Ok(InboxPage {
            events,
            cursor: page.next.iter().map(|(o, s)| (o.to_owned(), s)).collect(),
            more: page.more,
        })
    }

    /// The people `user` has private messages with.
    ///
    /// # Errors
    /// On a database error, or a stored name that no longer passes validation.
    pub fn partners(&self, user: &Name) -> Result<Vec<Name>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT b FROM direct_messages WHERE a = ?1
             UNION SELECT DISTINCT a FROM direct_messages WHERE b = ?1",
        )?;
        let rows = stmt.query_map([user.as_str()], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            out.push(Name::parse(&row).map_err(|e| StoreError::Corrupt(format!("{row}: {e}")))?);
        }
        Ok(out)
    }

    /// The private messages to `user` that a device's cursor moving from `from` to `to` (per
    /// origin, a sequence number) has taken: the newest `limit` of them, newest first.
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn taken_between(
        &self,
        user: &Name,
        from: &BTreeMap<String, u64>,
        to: &BTreeMap<String, u64>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut found = Vec::new();
        for side in ["a", "b"] {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT p.lamport, p.origin, p.seq FROM direct_messages p
                 WHERE p.{side} = ?1 AND p.origin = ?2 AND p.seq > ?3 AND p.seq <= ?4
                 ORDER BY p.lamport DESC LIMIT ?5"
            ))?;
            for (origin, upto) in to {
                let after = from.get(origin).copied().unwrap_or(0);
                if *upto <= after {
                    continue;
                }
                let rows =
                    stmt.query_map(params![user.as_str(), origin, after, upto, limit], |r| {
                        Ok((
                            r.get::<_, u64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, u64>(2)?,
                        ))
                    })?;
                for row in rows {
                    found.push(row?);
                }
            }
        }
        found.sort_by(|x, y| (y.0, &y.1).cmp(&(x.0, &x.1)));
        found.dedup();
        let mut out = Vec::new();
        for (_, origin, seq) in found {
            if out.len() == limit {
                break;
            }
            let Some(e) = self.event(&origin, seq)? else {
                continue;
            };
            if matches!(&e.kind, EventKind::Message(MessageKind::Direct { src, dst, .. }) if dst == user && src != user)
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// `user`'s events about reading (`taken`, `read`, `settings`) after position `after`
    /// (Lamport time, origin, sequence number), in that order: at most `limit`.
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn reader_events_after(
        &self,
        user: &Name,
        after: (u64, &str, u64),
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.origin, e.seq, e.lamport, e.ts, e.kind, NULL, e.body
             FROM reader_events r JOIN events e ON e.origin = r.origin AND e.seq = r.seq
             WHERE r.user = ?1 AND (r.lamport, r.origin, r.seq) > (?2, ?3, ?4)
             ORDER BY r.lamport, r.origin, r.seq LIMIT ?5",
        )?;
        let (lamport, origin, seq) = after;
        let rows = stmt.query_map(
            params![user.as_str(), lamport, origin, seq, limit],
            read_event,
        )?;
        rows.map(|r| r?).collect()
    }

    /// When a conversation's newest visible message was stamped, and when the message at
    /// `marker` (a cursor) was: what `unread` shows beside its counts.
    ///
    /// # Errors
    /// On a database error.
    pub fn times(
        &self,
        of: &Conversation,
        marker: Option<(u64, &str)>,
    ) -> Result<(Option<f64>, Option<f64>), StoreError> {
        let (from, filter, a, b) = match of {
            Conversation::Channel(c) => ("channel_posts", "p.channel = ?1", c.as_str(), ""),
            Conversation::Direct(x, y) => {
                let (a, b) = sorted(x.as_str(), y.as_str());
                ("direct_messages", "p.a = ?1 AND p.b = ?2", a, b)
            }
        };
        let visible =
            "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.origin = p.origin AND h.seq = p.seq)";
        // `?2 = ?2` keeps the second parameter in a room's queries too, so both shapes take
        // the same parameters.
        let joined =
            format!("FROM {from} p JOIN events e ON e.origin = p.origin AND e.seq = p.seq");
        let last: Option<f64> = self
            .conn
            .prepare_cached(&format!(
                "SELECT e.ts {joined} WHERE {filter} AND (?2 = ?2) AND {visible}
                 ORDER BY p.lamport DESC, p.origin DESC LIMIT 1"
            ))?
            .query_row(params![a, b], |r| r.get(0))
            .optional()?;
        let marked = match marker {
            None => None,
            Some((lamport, origin)) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT e.ts {joined} WHERE {filter} AND (?2 = ?2)
                       AND p.lamport = ?3 AND p.origin = ?4"
                ))?
                .query_row(params![a, b, lamport, origin], |r| r.get(0))
                .optional()?,
        };
        Ok((last, marked))
    }

    /// How many visible messages of a conversation, written by anyone but `reader`, lie after
    /// `after` (a position in the total order: Lamport time, then origin), or in all of it
    /// without one. What a person wrote is never unread to them.
    ///
    /// # Errors
    /// On a database error.
    pub fn count_after(
        &self,
        of: &Conversation,
        after: Option<(u64, &str)>,
        reader: &Name,
    ) -> Result<u64, StoreError> {
        let (lamport, origin) = after.unwrap_or((0, ""));
        // Visible messages by others than `reader`, who is parameter 1 of both queries.
        let others = "p.author IS NOT ?1 AND NOT EXISTS
            (SELECT 1 FROM hidden h WHERE h.origin = p.origin AND h.seq = p.seq)";
        let reader = reader.as_str();
        let n: u64 = match of {
            Conversation::Channel(c) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT count(*) FROM channel_posts p WHERE p.channel = ?2
                       AND (p.lamport, p.origin) > (?3, ?4) AND {others}"
                ))?
                .query_row(params![reader, c.as_str(), lamport, origin], |r| r.get(0))?,
            Conversation::Direct(x, y) => {
                let (a, b) = sorted(x.as_str(), y.as_str());
                self.conn
                    .prepare_cached(&format!(
                        "SELECT count(*) FROM direct_messages p WHERE p.a = ?2 AND p.b = ?3
                           AND (p.lamport, p.origin) > (?4, ?5) AND {others}"
                    ))?
                    .query_row(params![reader, a, b, lamport, origin], |r| r.get(0))?
            }
        };
        Ok(n)
    }

    /// A digest of every event held, in (origin, seq) order, and of which are hidden: two stores
    /// with the same events, hiding the same repeats, have the same digest. FNV-1a over each
    /// event's MessagePack form, then each hidden event's id.
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
        // Which events are hidden (repeats of another's request) decides what every server
        // shows: two stores that hide differently do not agree, whatever their events.
        for (origin, seq) in self.hidden()? {
            let mut bytes = origin.into_bytes();
            bytes.push(b':');
            bytes.extend(seq.to_be_bytes());
            for b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        tx.finish()?;
        Ok((vector, hash))
    }

    /// How many events of each kind the store holds.
    ///
    /// # Errors
    /// On a database error.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, count(*) FROM events GROUP BY kind")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        let mut counts = Counts::default();
        for row in rows {
            let (kind, n) = row?;
            // Every kind is declared once (`palaver_proto::EventKind::NAMES`); a row of any
            // other kind was not written by this code.
            let Some(known) = EventKind::NAMES.iter().find(|k| **k == kind) else {
                return Err(StoreError::Corrupt(format!("unknown kind {kind}")));
            };
            counts.by_kind.insert(known, n);
        }
        Ok(counts)
    }

    /// Whether a post with this text exists in `channel` (for tests and spot checks).
    ///
    /// # Errors
    /// On a database error, or a stored row that no longer passes validation.
    pub fn has_post(&self, channel: &str, message: &str) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.origin, e.seq, e.lamport, e.ts, e.kind, NULL, e.body
             FROM channel_posts p JOIN events e ON e.origin = p.origin AND e.seq = p.seq
             WHERE p.channel = ?1",
        )?;
        let rows = stmt.query_map([channel], read_event)?;
        for row in rows {
            if let EventKind::Message(MessageKind::Post { message: m, .. }) = row??.kind {
                if m == message {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountKind, RoomKind};

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
                    ev(
                        1,
                        EventKind::Account(AccountKind::Login { user: name("ana") }),
                    ),
                    ev(
                        2,
                        EventKind::Account(AccountKind::Login { user: name("ana") }),
                    ),
                    ev(
                        3,
                        EventKind::Room(RoomKind::Channel {
                            channel: name("general"),
                            owner: None,
                        }),
                    ),
                    ev(
                        4,
                        EventKind::Message(MessageKind::Post {
                            user: name("ana"),
                            channel: name("general"),
                            message: "hi".into(),
                        }),
                    ),
                    ev(
                        5,
                        EventKind::Message(MessageKind::Direct {
                            src: name("ana"),
                            dst: name("ana"),
                            message: "me".into(),
                        }),
                    ),
                    ev(
                        6,
                        EventKind::Account(AccountKind::Register {
                            user: name("cy"),
                            hash: "h".into(),
                        }),
                    ),
                    ev(
                        7,
                        EventKind::Account(AccountKind::Session {
                            user: name("cy"),
                            session: "t".into(),
                            slot: None,
                        }),
                    ),
                ])
                .unwrap();
            assert!(results.iter().all(Result::is_ok));
        }
        let store = Store::open(dir.path()).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.users, vec![name("ana"), name("cy")]);
        assert_eq!(snap.channels, vec![name("general")]);
        assert_eq!(snap.progress.get("s1"), Some(&7));
        assert_eq!(snap.max_lamport, 70);
        let kinds: Vec<&str> = snap.accounts.iter().map(|e| e.kind.name()).collect();
        assert_eq!(kinds, ["register", "session"], "account events, in order");
        let counts = store.counts().unwrap();
        let by_kind: Vec<(&str, u64)> = EventKind::NAMES
            .iter()
            .map(|k| (*k, counts.kind(k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(
            by_kind,
            [
                ("post", 1),
                ("message", 1),
                ("login", 2),
                ("register", 1),
                ("session", 1),
                ("channel", 1)
            ]
        );
        assert_eq!(counts.family(Family::Account), 4);
        assert_eq!(counts.total(), 7);
        assert!(store.has_post("general", "hi").unwrap());
    }

    /// A deleted channel's posts leave the projection, later ones never enter it, and the
    /// room events come back in the total order.
    #[test]
    fn rooms_are_indexed_and_a_delete_empties_the_channel() {
        let dir = tempfile::tempdir().unwrap();
        let general = name("general");
        let post = |seq, text: &str| {
            ev(
                seq,
                EventKind::Message(MessageKind::Post {
                    user: name("ana"),
                    channel: general.clone(),
                    message: text.into(),
                }),
            )
        };
        {
            let mut store = Store::open(dir.path()).unwrap();
            let results = store
                .append(&[
                    ev(
                        1,
                        EventKind::Room(RoomKind::Channel {
                            channel: general.clone(),
                            owner: Some(name("ana")),
                        }),
                    ),
                    ev(
                        2,
                        EventKind::Room(RoomKind::Join {
                            user: name("ana"),
                            channel: general.clone(),
                        }),
                    ),
                    post(3, "before"),
                    ev(
                        4,
                        EventKind::Room(RoomKind::Prepare {
                            tx: "t1".into(),
                            channel: general.clone(),
                            owner: name("ana"),
                            leader: name("s1"),
                            participants: vec![name("s1")],
                        }),
                    ),
                    ev(
                        5,
                        EventKind::Room(RoomKind::Delete {
                            tx: "t1".into(),
                            channel: general.clone(),
                        }),
                    ),
                    post(6, "after"),
                ])
                .unwrap();
            assert!(results.iter().all(Result::is_ok));
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.has_post("general", "before").unwrap());
        assert!(!store.has_post("general", "after").unwrap());
        let kinds: Vec<&str> = store
            .snapshot()
            .unwrap()
            .rooms
            .iter()
            .map(|e| e.kind.name())
            .collect();
        assert_eq!(kinds, ["channel", "join", "prepare", "delete"]);
        // The channel's creation, the join, the prepare and the delete.
        assert_eq!(store.counts().unwrap().family(Family::Room), 4);
        // Every event stays in the log.
        assert_eq!(store.events_after("s1", 0, 100).unwrap().len(), 6);
    }

    #[test]
    fn events_come_back_in_sequence_and_digests_match() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let events = vec![
            ev(
                1,
                EventKind::Account(AccountKind::Login { user: name("ana") }),
            ),
            ev(
                2,
                EventKind::Room(RoomKind::Channel {
                    channel: name("general"),
                    owner: None,
                }),
            ),
            ev(
                3,
                EventKind::Message(MessageKind::Post {
                    user: name("ana"),
                    channel: name("general"),
                    message: "hi".into(),
                }),
            ),
            ev(
                4,
                EventKind::Message(MessageKind::Direct {
                    src: name("ana"),
                    dst: name("ana"),
                    message: "me".into(),
                }),
            ),
            ev(
                5,
                EventKind::Account(AccountKind::Login { user: name("bob") }),
            ),
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
            .append(&[ev(
                1,
                EventKind::Account(AccountKind::Login { user: name("ana") }),
            )])
            .unwrap();
        let results = store
            .append(&[
                ev(
                    1,
                    EventKind::Account(AccountKind::Login { user: name("bob") }),
                ),
                ev(
                    2,
                    EventKind::Account(AccountKind::Login { user: name("cid") }),
                ),
            ])
            .unwrap();
        assert!(results[0].is_err());
        assert!(results[1].is_ok());
        assert_eq!(store.counts().unwrap().kind("login"), 2);
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
                    kind: EventKind::Account(AccountKind::Login { user: name("ana") }),
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
