//! Palaver's wire protocol: every message that crosses a socket, as typed Rust values.
//!
//! ```text
//!   bytes ──decode──▶ Envelope {service, data} ──Request::parse──▶ Request (typed, validated)
//!   Reply / Publication ──encode──▶ bytes
//! ```
//!
//! Every message is one MessagePack map `{"service": <name>, "data": {...}}`. The decoder never
//! panics on what arrives from the network: malformed bytes, wrong types, missing fields,
//! oversized frames and invalid names all become a [`ProtoError`] whose text is fit to send
//! back to the peer as the `description` of an `erro` reply.

pub mod claim;
mod envelope;
mod error;
mod event;
pub mod examples;
pub mod field;
mod history;
mod name;
pub mod peer;
mod reply;
mod request;
pub mod room;
mod servers;
pub mod service;
mod text;
mod time;
pub mod work;

pub use envelope::{Envelope, Map};
pub use error::ProtoError;
pub use event::{
    AccountKind, ClaimKind, Event, EventKind, Family, MessageKind, Naming, Notice, Place,
    ReaderKind, RoomKind, Step, MAX_HASH_BYTES,
};
pub use history::{
    message_event, Conversation, Cursor, HistoryQuery, Window, DEFAULT_HISTORY, MAX_HISTORY,
};
pub use name::{Name, NameError, MAX_NAME_BYTES, MAX_NAME_LEN, RESERVED_NAMES};
pub use reply::{stamp, stamped_seq, Publication, Reply, Status, AGAIN, SEQ_KEY};
pub use request::{
    post_request, request_id_of, EventRef, Request, RequestMeta, Secret, MAX_DEVICE_BYTES,
    MAX_PASSWORD_BYTES, MAX_POSTS, MAX_TEXT_BYTES, MAX_TOKEN_BYTES,
};
pub use servers::{endpoint, ServerEntry};
pub use service::{service, starts_session, Acts, Effect, Service, Session, SERVICES};
pub use text::printable;
pub use time::{format_clock_time, now_secs};

/// The largest frame a process accepts; anything larger is answered with an error unread.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Frames larger than this make a receiving socket drop the sender's connection (ZeroMQ's
/// `ZMQ_MAXMSGSIZE`): a guard against a peer that would make a process buffer without bound.
/// Everything between [`MAX_FRAME_BYTES`] and this still gets an error reply.
pub const MAX_SOCKET_BYTES: i64 = 16 << 20;

/// The largest clock, sequence number or Lamport time a message may carry: 2^53−1, the largest
/// integer every JavaScript client represents exactly. Anything larger is refused where it is
/// decoded, so no clock can be pushed to saturation and every stored counter fits SQLite's
/// signed 64-bit integers.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// Topic on which servers announce an elected coordinator.
pub const TOPIC_SERVERS: &str = "servers";
/// Topic on which people going online and offline are announced (ours).
pub const TOPIC_PRESENCE: &str = "presence";
/// The most bytes of events one replica batch or one fetched page carries. A batch or page
/// always takes at least one event, and the largest event (see [`Event::size_bound`]) is far
/// below this, so any mix of message sizes passes; and a whole page stays well under
/// [`MAX_FRAME_BYTES`], which every receiver enforces.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

/// Status word of a successful `login` or `channel` (the standard's spelling).
pub const SUCESSO: &str = "sucesso";
/// Status word of a successful `publish` or `message`.
pub const OK: &str = "OK";
/// Status word of every failure.
pub const ERRO: &str = "erro";
