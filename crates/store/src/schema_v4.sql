-- Palaver server database, schema version 4: one table per kind of event. Kept only to migrate
-- older databases (see store.rs, `migrate`); the current schema is schema.sql.
-- (origin, seq): the server that accepted it first and its place in that server's sequence.
-- lamport orders events the same way on every server (lamport, then origin).

CREATE TABLE IF NOT EXISTS logins (
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    ts      REAL    NOT NULL,   -- seconds since the Unix epoch, at the origin
    user    TEXT    NOT NULL,
    request TEXT,               -- the client's request id, when it gave one
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logins_by_user ON logins (user);

CREATE TABLE IF NOT EXISTS channels (
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    ts      REAL    NOT NULL,
    name    TEXT    NOT NULL,
    request TEXT,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS channels_by_name ON channels (name);

CREATE TABLE IF NOT EXISTS posts (
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    ts      REAL    NOT NULL,
    channel TEXT    NOT NULL,
    user    TEXT    NOT NULL,
    message TEXT    NOT NULL,
    request TEXT,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS posts_by_channel ON posts (channel, lamport, origin);

CREATE TABLE IF NOT EXISTS messages (
    origin  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    ts      REAL    NOT NULL,
    src     TEXT    NOT NULL,
    dst     TEXT    NOT NULL,
    message TEXT    NOT NULL,
    request TEXT,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_by_dst ON messages (dst, lamport, origin);
CREATE INDEX IF NOT EXISTS messages_by_src ON messages (src, lamport, origin);

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
