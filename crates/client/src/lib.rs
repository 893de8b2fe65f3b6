//! The library every Palaver front end uses.
//!
//! ```text
//!  Connection ──DEALER──▶ broker :5555 ──▶ a server  (the core's calls: request ids, matching,
//!                                                     resend with the same id, give up)
//!  Subscriber ◀──SUB───── proxy  :5558 ◀── servers   (exact topic match, Lamport observe,
//!                                                     repeats dropped, gaps filled, sealed
//!                                                     private messages opened with the session)
//!  Heartbeat  ──beat────▶ broker :5555                (presence, as often as servers ask)
//! ```
//!
//! [`calls::Calls`] is the sans-IO core of the requests; `Connection` is its blocking driver.
//!
//! Both share a [`SharedClock`], so a process keeps one Lamport counter across its sockets.

pub mod calls;
mod clock;
mod connection;
pub mod feed;
mod heartbeat;
mod inbox;
pub mod reconnects;
mod rooms;
pub mod say;
mod subscriber;

pub use clock::SharedClock;
pub use connection::{unsealed, Answer, Connection, DEFAULT_RETRIES, DEFAULT_TIMEOUT};
pub use heartbeat::Heartbeat;
pub use inbox::{InboxPage, Receipt};
pub use rooms::{About, Joined};
pub use subscriber::{Received, Subscriber};

use palaver_proto::ProtoError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no answer after {attempts} attempts; is the cluster running?")]
    Timeout { attempts: u32 },
    #[error("{0}")]
    Refused(String),
    #[error("bad reply: {0}")]
    BadReply(#[from] ProtoError),
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("{0}")]
    Auth(#[from] palaver_auth::AuthError),
}
