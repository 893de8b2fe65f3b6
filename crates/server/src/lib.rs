//! The Palaver application server.
//!
//! ```text
//!  broker DEALER :5556 ──[envelope…, request]──▶ reactor ──Job──▶ store writer (group commit)
//!                      ◀──[envelope…, reply]──── reactor ◀─Done── (after fsync)
//!                                                   └──[topic, publication]──▶ proxy XSUB :5557
//! ```
//!
//! One reactor thread owns every socket and the in-memory view (who is registered, which
//! channels exist); [`State`] decides what each request does without touching I/O. A batch of
//! requests is committed to disk with one fsync before any of its replies or publications
//! leave. Requests pipeline: a DEALER worker keeps each request's routing envelope, so many
//! requests are in flight at once and share commits. The same thread runs coordination: rank
//! and heartbeats with the reference, the bully election and Berkeley clock synchronisation.

mod broker_link;
pub mod claim;
mod clock;
pub mod engine;
mod hasher;
mod link;
mod peers;
mod reactor;
mod recent;
mod state;
mod writer;

use std::path::PathBuf;

pub use reactor::run;
pub use state::{Handled, HashJob, Policy, State, Verdict};

use palaver_proto::Name;

/// Where a server keeps its data and which sockets it connects to.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's name: its identity as an event origin.
    pub name: Name,
    /// Directory holding this server's database; it belongs to this server alone.
    pub data_dir: PathBuf,
    /// The broker's DEALER endpoint that workers connect to.
    pub broker_backend: String,
    /// The proxy's XSUB endpoint that publishers connect to.
    pub proxy_xsub: String,
    /// The proxy's XPUB endpoint that subscribers connect to.
    pub proxy_xpub: String,
    /// The reference service's endpoint.
    pub reference: String,
    /// This server's peer endpoint, to bind (`tcp://127.0.0.1:*` picks a free port).
    pub peer: String,
    /// The peer address to give the others, when the bound one will not do.
    pub advertise: Option<String>,
    /// The cluster's credentials: the broker's server side, the proxy's publisher side, the
    /// reference and the other servers' peer endpoints admit only their holders, and so does
    /// this server's own peer endpoint.
    pub credentials: palaver_auth::Credentials,
    /// Milliseconds to skew this server's clock by, on purpose (demonstrations and tests).
    pub clock_skew_ms: i64,
    /// Session idle time and presence timeout.
    pub policy: Policy,
    /// How many servers the cluster has at least (claims need a majority of the larger of
    /// this and the servers the reference has ranked).
    pub cluster_size: usize,
    /// For fault tests: abort once the first prepare of a two-phase delete is stored and the
    /// messages after it are sent (a server killed between prepare and commit).
    pub crash_after_prepare: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("storage: {0}")]
    Store(#[from] palaver_store::StoreError),
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: zmq::Error,
    },
    #[error("cannot listen on {endpoint}: {source}")]
    Listen {
        endpoint: String,
        source: zmq::Error,
    },
    #[error("security: {0}")]
    Auth(#[from] palaver_auth::AuthError),
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}
