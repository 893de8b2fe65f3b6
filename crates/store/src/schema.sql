-- Palaver server database, schema version 9 (in PRAGMA user_version).
--
-- One table is the log: `events`, every state change once, identified by (origin, seq): the
-- server that accepted it first and its place in that server's sequence. Replication, digests
-- and catch-up read only this table and never name a kind. Each kind keeps its own projections
-- (who is registered, which channels exist, a channel's posts, a conversation's messages),
-- written in the same transaction as the event.
--
-- lamport orders events the same way on every server (lamport, then origin).

CREATE TABLE IF NOT EXISTS events (
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    ts      REAL    NOT NULL,   -- seconds since the Unix epoch, at the origin
    kind    TEXT    NOT NULL,   -- login, channel, post, message, and the account kinds below
    request TEXT,               -- the client's request id, when it gave one
    body    BLOB    NOT NULL,   -- the kind's own fields, a MessagePack map
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;

-- Projections: each row points at the event it comes from.

-- login: every name that has logged in, with its first login.
CREATE TABLE IF NOT EXISTS users (
    name   TEXT    NOT NULL PRIMARY KEY,
    origin TEXT    NOT NULL,
    seq    INTEGER NOT NULL
) WITHOUT ROWID;

-- channel: every channel created, with its creation.
CREATE TABLE IF NOT EXISTS channel_names (
    name   TEXT    NOT NULL PRIMARY KEY,
    origin TEXT    NOT NULL,
    seq    INTEGER NOT NULL
) WITHOUT ROWID;

-- post: a channel's posts in the total order, with who wrote each (so that a person's own
-- posts are never unread to them).
CREATE TABLE IF NOT EXISTS channel_posts (
    channel TEXT    NOT NULL,
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    author  TEXT,
    PRIMARY KEY (channel, lamport, origin, seq)
) WITHOUT ROWID;

-- message: a conversation's private messages in the total order, with who sent each; (a, b)
-- is the pair of names in sorted order, so both directions share one conversation.
CREATE TABLE IF NOT EXISTS direct_messages (
    a       TEXT    NOT NULL,
    b       TEXT    NOT NULL,
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    author  TEXT,
    PRIMARY KEY (a, b, lamport, origin, seq)
) WITHOUT ROWID;

-- register, session, logout, password, unregister, touch: every event about an account (its
-- password hash, its sessions by the SHA-256 of their tokens, their use), by person. Servers
-- keep accounts in memory, rebuilt from these events at start-up; the rules that combine them
-- (docs/accounts.md) give the same result in any order. A register or session also makes its
-- name a user (in `users`).
CREATE TABLE IF NOT EXISTS account_events (
    user    TEXT    NOT NULL,
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user, lamport, origin, seq)
) WITHOUT ROWID;

-- channel, join, leave, prepare, abort, delete: every event about rooms (who created a
-- channel and owns it, who is in it, the two-phase commit that deletes it), in the total
-- order. Servers fold them in memory at start-up (docs/rooms.md); the rules give the same
-- result in any order.
CREATE TABLE IF NOT EXISTS room_events (
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (lamport, origin, seq)
) WITHOUT ROWID;

-- delete: channels deleted, with the first delete stored. Their posts leave channel_posts
-- (and later posts never enter it); the events stay in the log, which servers compare.
CREATE TABLE IF NOT EXISTS deleted_channels (
    name   TEXT    NOT NULL PRIMARY KEY,
    origin TEXT    NOT NULL,
    seq    INTEGER NOT NULL
) WITHOUT ROWID;

-- taken, read, settings: every event about what a person has read (their devices' inbox cursors,
-- their read markers) and whether others may know it, by person.
-- Servers fold them in memory at start-up; cursors only move forward, so order does not matter.
CREATE TABLE IF NOT EXISTS reader_events (
    user    TEXT    NOT NULL,
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user, lamport, origin, seq)
) WITHOUT ROWID;

-- claim_events: every claim event (promises, acceptances, decisions of the log of claims that
-- a majority decides), in the total order. Servers read them at start-up: their own records
-- back into the acceptor, every decision back into the log of claims.
CREATE TABLE IF NOT EXISTS claim_events (
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (lamport, origin, seq)
) WITHOUT ROWID;

-- request: the client's request id (our protocol addition), which makes a request retried
-- through any server take effect once. Replicated with the event. Servers look requests up in
-- memory (the most recent ones, loaded at start-up), so no index serves them.

-- Events that repeat a request already made by another event (a retry that reached a second
-- server while the first, which had the request, was down). Both are kept, so that every
-- server holds the same events; the later one in the total order is hidden from history.
CREATE TABLE IF NOT EXISTS hidden (
    origin TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
