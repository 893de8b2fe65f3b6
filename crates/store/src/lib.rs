//! Palaver's storage: one SQLite database per server, written by one group-committing thread.
//!
//! ```text
//!  server reactor ──Job{token, event}──▶ writer thread ──BEGIN; INSERT…; COMMIT (one fsync)──▶ disk
//!        ▲                                     │
//!        └──────────── Done{token, result} ◀───┘  (only after the commit is durable)
//! ```
//!
//! Every state change is an [`Event`] with a unique id (origin server, sequence number), a
//! Lamport time and a timestamp. The schema is in `schema.sql` and in docs/architecture.md.

mod error;
mod event;
mod store;
mod writer;

pub use error::StoreError;
pub use event::{Event, EventKind};
pub use store::{Counts, Snapshot, Store, DB_FILE};
pub use writer::{Done, Job, Writer, MAX_BATCH};
