//! Each family's projections: the tables beside the log that a kind's events are indexed in,
//! written in the same transaction as the event. The log itself (`events`) never names a
//! kind; every `match` here is over one family's kinds, with no catch-all, so a new kind is a
//! compile error until its projections are decided.

use rusqlite::{params, Connection};

use crate::{AccountKind, ClaimKind, Event, EventKind, MessageKind, ReaderKind, RoomKind};
use palaver_proto::Naming;

/// Stores one event in the log, and its family's projections.
pub(crate) fn insert(tx: &Connection, e: &Event) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (origin, seq, lamport, ts, kind, request, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.origin,
        e.seq,
        e.lamport,
        e.timestamp,
        e.kind.name(),
        e.request,
        e.body()
    ])?;
    project(tx, e)
}

/// An event's projections, by family.
pub(crate) fn project(tx: &Connection, e: &Event) -> rusqlite::Result<()> {
    match &e.kind {
        EventKind::Message(kind) => message(tx, e, kind),
        EventKind::Account(kind) => account(tx, e, kind),
        EventKind::Room(kind) => room(tx, e, kind),
        EventKind::Reader(kind) => reader(tx, e, kind),
        EventKind::Claim(kind) => claim(tx, e, kind),
    }
}

/// Posts by channel and private messages by conversation, in the total order.
fn message(tx: &Connection, e: &Event, kind: &MessageKind) -> rusqlite::Result<()> {
    match kind {
        // A post to a deleted channel (one sent while the delete was being decided, or by a
        // server that was cut off) stays in the log but never shows.
        MessageKind::Post { channel, user, .. } => tx
            .prepare_cached(
                "INSERT INTO channel_posts (channel, lamport, origin, seq, author)
                 SELECT ?1, ?2, ?3, ?4, ?5
                 WHERE NOT EXISTS (SELECT 1 FROM deleted_channels WHERE name = ?1)",
            )?
            .execute(params![
                channel.as_str(),
                e.lamport,
                e.origin,
                e.seq,
                user.as_str()
            ])?,
        MessageKind::Direct { src, dst, .. } => {
            let (a, b) = sorted(src.as_str(), dst.as_str());
            tx.prepare_cached(
                "INSERT INTO direct_messages (a, b, lamport, origin, seq, author)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![a, b, e.lamport, e.origin, e.seq, src.as_str()])?
        }
    };
    Ok(())
}

/// The names people have logged in as (`users`), and every event about a password account
/// (`account_events`), which servers fold at start-up.
fn account(tx: &Connection, e: &Event, kind: &AccountKind) -> rusqlite::Result<()> {
    // Whether the kind makes the name a person's, and whether servers fold it at start-up.
    let (user, names, folded) = match kind {
        AccountKind::Login { user } => (user, true, false),
        AccountKind::Register { user, .. } | AccountKind::Session { user, .. } => {
            (user, true, true)
        }
        AccountKind::Logout { user, .. }
        | AccountKind::Password { user, .. }
        | AccountKind::Unregister { user }
        | AccountKind::Touch { user, .. } => (user, false, true),
    };
    if names {
        tx.prepare_cached("INSERT OR IGNORE INTO users (name, origin, seq) VALUES (?1, ?2, ?3)")?
            .execute(params![user.as_str(), e.origin, e.seq])?;
    }
    if folded {
        tx.prepare_cached(
            "INSERT INTO account_events (user, lamport, origin, seq) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![user.as_str(), e.lamport, e.origin, e.seq])?;
    }
    Ok(())
}

/// Every room event (`room_events`, folded at start-up), channel names, and deleted channels
/// (whose posts go).
fn room(tx: &Connection, e: &Event, kind: &RoomKind) -> rusqlite::Result<()> {
    match kind.naming() {
        Naming::Creates(channel) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO channel_names (name, origin, seq) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![channel.as_str(), e.origin, e.seq])?;
        }
        Naming::Deletes(channel) => {
            let name = channel.as_str();
            tx.prepare_cached(
                "INSERT OR IGNORE INTO deleted_channels (name, origin, seq) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, e.origin, e.seq])?;
            tx.prepare_cached("DELETE FROM channel_posts WHERE channel = ?1")?
                .execute(params![name])?;
        }
        Naming::Nothing => {}
    }
    tx.prepare_cached("INSERT INTO room_events (lamport, origin, seq) VALUES (?1, ?2, ?3)")?
        .execute(params![e.lamport, e.origin, e.seq])?;
    Ok(())
}

/// Every event about what a person has read or taken, and their settings (`reader_events`,
/// folded at start-up).
fn reader(tx: &Connection, e: &Event, kind: &ReaderKind) -> rusqlite::Result<()> {
    let user = match kind {
        ReaderKind::Read { user, .. }
        | ReaderKind::Taken { user, .. }
        | ReaderKind::Settings { user, .. } => user,
    };
    tx.prepare_cached(
        "INSERT INTO reader_events (user, lamport, origin, seq) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user.as_str(), e.lamport, e.origin, e.seq])?;
    Ok(())
}

/// Every claim event (`claim_events`, read at start-up).
fn claim(tx: &Connection, e: &Event, kind: &ClaimKind) -> rusqlite::Result<()> {
    match kind {
        ClaimKind::Promise { .. } | ClaimKind::Vote { .. } | ClaimKind::Decided { .. } => {}
    }
    tx.prepare_cached("INSERT INTO claim_events (lamport, origin, seq) VALUES (?1, ?2, ?3)")?
        .execute(params![e.lamport, e.origin, e.seq])?;
    Ok(())
}

/// The two names of a conversation in sorted order: both directions share it.
pub(crate) fn sorted<'a>(x: &'a str, y: &'a str) -> (&'a str, &'a str) {
    if x <= y {
        (x, y)
    } else {
        (y, x)
    }
}
