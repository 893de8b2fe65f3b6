//! Palaver's storage: one SQLite database per server, written in batches (group commit).
//!
//! ```text
//!  server reactor ──[events of one batch]──▶ Store::append: BEGIN; INSERT…; COMMIT (one fsync)
//!        ◀── one result per event, once the commit is durable ──┘
//! ```
//!
//! Every state change is an [`Event`] with a unique id (origin server, sequence number), a
//! Lamport time and a timestamp. Every event is one row of one log, `events`; each kind keeps
//! its projections beside it in the same transaction. The schema is in `schema.sql` and in
//! docs/architecture.md.

mod error;
mod migrate;
mod project;
mod ranks;
mod rows;
mod store;

pub use error::StoreError;
pub use palaver_proto::{
    AccountKind, ClaimKind, Event, EventKind, Family, MessageKind, ReaderKind, RoomKind,
};
pub use ranks::{RankBook, RANKS_FILE};
pub use store::{Counts, InboxPage, RequestEvent, Snapshot, Store, DB_FILE, RECENT_REQUESTS};
