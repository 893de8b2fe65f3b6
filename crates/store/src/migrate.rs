//! Brings an older database to the current schema, in the transaction that opens it.
//!
//! ```text
//!  version 2, 3 ── request ids into the events' rows ──▶ 4 ── one event log ──▶ 5
//!  5 ── accounts' events indexed by person (a new, empty table) ──▶ 6
//!  6 ── rooms' events indexed (channel creations copied in), deleted channels ──▶ 7
//!  7 ── readers' events indexed by person (a new, empty table) ──▶ 8
//!  8 ── posts and private messages name their author (both projections written again) ──▶ 9
//!  9 ── claims' events indexed (a new, empty table) ──▶ 10
//! ```
//!
//! Up to version 3, request ids lived in a table of their own. Up to version 4, each kind of
//! event had a table of its own (`logins`, `channels`, `posts`, `messages`); version 5 keeps
//! every event in `events` and each kind's projections beside it (schema.sql).

use rusqlite::Transaction;

use crate::{Event, StoreError};

/// The schema of version 4, whose tables version 5 reads and drops.
const SCHEMA_V4: &str = include_str!("schema_v4.sql");

/// The tables of version 4, one per kind.
const V4_TABLES: [&str; 4] = ["logins", "channels", "posts", "messages"];

/// Migrates a database of any earlier version (or a new, empty one) to the current one. `insert`
/// stores one event with its projections, as [`crate::Store`] does.
/// `project` writes one event's projections only.
pub(crate) fn to_current(
    tx: &Transaction<'_>,
    insert: impl Fn(&rusqlite::Connection, &Event) -> rusqlite::Result<()>,
    project: impl Fn(&rusqlite::Connection, &Event) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let has_table = |name: &str| -> rusqlite::Result<bool> {
        tx.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
    };
    let old = V4_TABLES
        .iter()
        .map(|t| has_table(t))
        .collect::<rusqlite::Result<Vec<bool>>>()?
        .into_iter()
        .any(|b| b);
    let had_rooms = has_table("room_events")?;
    tx.execute_batch(include_str!("schema.sql"))?;
    authors_into_projections(tx, project)?;
    if !had_rooms {
        // Version 6 → 7: the channels created so far are the first rooms' events.
        tx.execute_batch(
            "INSERT OR IGNORE INTO room_events (lamport, origin, seq)
             SELECT lamport, origin, seq FROM events WHERE kind = 'channel'",
        )?;
    }
    if !old {
        return Ok(());
    }
    // Complete the old layout (a version 2 file may lack tables), bring it to version 4, then
    // move every event into the log.
    tx.execute_batch(SCHEMA_V4)?;
    request_ids_into_rows(tx)?;
    let mut moved = 0u64;
    for event in read_v4(tx)? {
        insert(tx, &event)?;
        moved += 1;
    }
    for table in V4_TABLES {
        tx.execute_batch(&format!("DROP TABLE {table}"))?;
    }
    tracing::info!(
        events = moved,
        "migrated the store to one event log (schema 5)"
    );
    Ok(())
}

/// Version 8 → 9: a channel's posts and a conversation's messages name their author, so that
/// `unread` leaves out a person's own. The two projections are written again from the log, as
/// each event's projection writes them.
fn authors_into_projections(
    tx: &Transaction<'_>,
    project: impl Fn(&rusqlite::Connection, &Event) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let has_author: bool = tx.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('channel_posts') WHERE name = 'author'",
        [],
        |r| r.get(0),
    )?;
    if has_author {
        return Ok(());
    }
    tx.execute_batch("DROP TABLE channel_posts; DROP TABLE direct_messages;")?;
    tx.execute_batch(include_str!("schema.sql"))?;
    let mut stmt = tx.prepare(
        "SELECT origin, seq, lamport, ts, kind, request, body FROM events
         WHERE kind IN ('post', 'message')",
    )?;
    let mut rows = stmt.query([])?;
    let mut written = 0u64;
    while let Some(row) = rows.next()? {
        project(tx, &crate::rows::read_event(row)??)?;
        written += 1;
    }
    tracing::info!(
        events = written,
        "migrated the store: posts and messages name their author (schema 9)"
    );
    Ok(())
}

/// Version 3 → 4: request ids move from their own table into the events' rows.
fn request_ids_into_rows(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let requests_table: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'requests'",
        [],
        |r| r.get(0),
    )?;
    for table in V4_TABLES {
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

/// Every event of a version 4 database, validated as it is read.
fn read_v4(tx: &Transaction<'_>) -> Result<Vec<Event>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT origin, seq, lamport, ts, 'login', user, NULL, NULL, request FROM logins
         UNION ALL SELECT origin, seq, lamport, ts, 'channel', name, NULL, NULL, request FROM channels
         UNION ALL SELECT origin, seq, lamport, ts, 'post', user, channel, message, request FROM posts
         UNION ALL SELECT origin, seq, lamport, ts, 'message', src, dst, message, request FROM messages",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u64>(1)?,
            r.get::<_, u64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<String>>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (origin, seq, lamport, ts, kind, a, b, c, request) = row?;
        let mut fields = vec![(rmpv::Value::from(first_field(&kind)), rmpv::Value::from(a))];
        if let (Some(b), Some(c)) = (b, c) {
            let second = if kind == "post" { "channel" } else { "dst" };
            fields.push((rmpv::Value::from(second), rmpv::Value::from(b)));
            fields.push((rmpv::Value::from("message"), rmpv::Value::from(c)));
        }
        let mut body = Vec::new();
        // Writing into a Vec cannot fail.
        rmpv::encode::write_value(&mut body, &rmpv::Value::Map(fields)).expect("write to Vec");
        let event = Event::from_stored(&origin, seq, lamport, ts, &kind, request, &body)
            .map_err(|e| StoreError::Corrupt(format!("event {origin}:{seq}: {e}")))?;
        out.push(event);
    }
    Ok(out)
}

fn first_field(kind: &str) -> &'static str {
    match kind {
        "channel" => "channel",
        "message" => "src",
        _ => "user",
    }
}
