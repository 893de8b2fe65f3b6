//! Palaver's infrastructure: the request broker, the publication proxy and the reference.
//!
//! ```text
//!  clients (REQ/DEALER) ──▶ ROUTER :5555 ═ broker ═ ROUTER :5556 ──▶ servers (DEALER workers)
//!  publishers (PUB)     ──▶ XSUB   :5557 ═ proxy  ═ XPUB   :5558 ──▶ subscribers (SUB)
//!  servers (REQ/DEALER) ──▶ ROUTER :5560 reference (ranks on disk, heartbeats in memory)
//! ```
//!
//! The broker knows its servers (see [`broker`]): it sends a request only to a live server
//! with room, and sends what a silent server held to another. The proxy is a
//! loop of its own that numbers each topic's publications. Neither keeps anything on disk, so a restart loses nothing but
//! the messages in flight, which clients retry.

mod broker;
mod reference;

pub use broker::run_broker;
pub use reference::{run_reference, Registry, HEARTBEAT_TIMEOUT};

use std::time::Duration;

use palaver_auth::Credentials;
use palaver_core::Shutdown;

/// Frames larger than this make the broker drop the sending connection (see
/// [`palaver_proto::MAX_SOCKET_BYTES`]). Servers refuse anything over 1 MiB with an error reply,
/// so everything between the two limits still gets an answer.
pub const BROKER_MAX_MSG: i64 = palaver_proto::MAX_SOCKET_BYTES;

/// Publications queued per subscriber before the proxy drops that subscriber's excess: a slow
/// subscriber loses messages instead of slowing everyone else, and costs the proxy at most this
/// many publications. What it misses is not silent: every publication carries its topic's
/// sequence number (`palaver_proto::stamp`), so the subscriber sees the gap and reads what it
/// missed from `history`.
///
/// ZeroMQ counts messages, not bytes, and a writer learns of its reader's progress only every
/// half a queue, so a queue must be twice as deep as the bursts it absorbs: at 379 (a byte
/// budget of 6 MiB over the largest post) the fan-out benchmark, held to 500 publications ahead
/// of its slowest subscriber, lost 0.2 % to gaps; at 1,000 (ZeroMQ's default, and the raw
/// ZeroMQ row's) none. A subscriber that never reads then holds at most 1,000 publications:
/// about 1.5 MB of 1 KB posts, 17 MB of the longest (16 KiB) ones. `palaver proxy
/// --subscriber-hwm` sets it; a bound in bytes needs a subscriber side of our own.
pub const SUBSCRIBER_HWM: i32 = 1_000;

/// Publications queued from the servers: the proxy reads them as fast as they come, so this
/// only bounds its memory while it cannot (say, it was paused).
pub const PUBLISHER_HWM: i32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("{what} {endpoint}: {source}")]
    Bind {
        what: &'static str,
        endpoint: String,
        source: zmq::Error,
    },
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("storage: {0}")]
    Store(#[from] palaver_store::StoreError),
    #[error("security: {0}")]
    Auth(#[from] palaver_auth::AuthError),
}

/// Runs the publication proxy until `shutdown` is triggered. Its subscriber side is open to
/// anyone; its publisher side admits only processes holding the cluster's `credentials`.
///
/// The loop is Palaver's own rather than `zmq::proxy`: each publication leaves with its
/// topic's next sequence number (`palaver_proto::stamp`), subscriptions go the other way, and memory freed
/// by subscribers that leave is handed back to the system.
///
/// # Errors
/// When an endpoint cannot be bound.
pub fn run_proxy(
    xsub: &str,
    xpub: &str,
    subscriber_hwm: i32,
    credentials: &Credentials,
    shutdown: &Shutdown,
) -> Result<(), InfraError> {
    let ctx = zmq::Context::new();
    credentials.guard(&ctx, "proxy")?;
    let sub = ctx.socket(zmq::XSUB)?;
    sub.set_rcvhwm(PUBLISHER_HWM)?;
    credentials.serve(&sub, xsub)?;
    bind(&sub, "proxy XSUB", xsub)?;
    let mut publ = ctx.socket(zmq::XPUB)?;
    publ.set_sndhwm(subscriber_hwm)?;
    // Subscribers send only (un)subscriptions: a small read buffer per connection is enough,
    // and it is most of what an idle subscriber costs.
    set_in_batch_size(&mut publ, SUBSCRIBER_READ_BUFFER)?;
    bind(&publ, "proxy XPUB", xpub)?;
    tracing::info!(xsub, xpub, subscriber_hwm, "proxy ready");
    palaver_supervise::notify_ready();
    let mut proxy = Proxy::default();
    let mut trimmed = std::time::Instant::now();
    while !shutdown.is_triggered() {
        let mut items = [
            sub.as_poll_item(zmq::POLLIN),
            publ.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, 50) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let (publications, subscriptions) = (items[0].is_readable(), items[1].is_readable());
        if publications {
            proxy.forward(&sub, &publ)?;
        }
        if subscriptions {
            // Subscribe and unsubscribe messages, to the publishers (XSUB passes them on).
            while let Ok(frames) = publ.recv_multipart(zmq::DONTWAIT) {
                for frame in frames {
                    sub.send(frame, zmq::DONTWAIT)?;
                }
            }
        }
        if trimmed.elapsed() >= TRIM_EVERY {
            trimmed = std::time::Instant::now();
            give_back_memory();
        }
    }
    tracing::info!(forwarded = proxy.forwarded, "proxy stopped");
    Ok(())
}

/// How often the proxy hands freed memory back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Returns the heap's free pages to the system. libzmq allocates every queued publication
/// with the C allocator, which keeps freed memory for reuse: after a subscriber that never
/// read leaves, its megabytes would stay with the proxy.
fn give_back_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The proxy's one piece of state: each topic's last sequence number.
#[derive(Default)]
struct Proxy {
    topics: std::collections::HashMap<Vec<u8>, u64>,
    forwarded: u64,
    unstamped: u64,
    gate: Option<palaver_core::LogGate>,
}

/// Publications forwarded before the proxy looks at its other socket again.
const BURST: usize = 1024;

impl Proxy {
    /// `topic`'s next number; the topic's bytes are copied only the first time it is seen.
    fn next_seq(&mut self, topic: &[u8]) -> u64 {
        if let Some(seq) = self.topics.get_mut(topic) {
            *seq += 1;
            return *seq;
        }
        self.topics.insert(topic.to_vec(), 1);
        1
    }

    /// Forwards what the publishers sent, each publication stamped. What is queued for
    /// subscribers is copied into memory of libzmq's own (the C allocator's, which
    /// [`give_back_memory`] trims), never handed over from Rust's allocator.
    fn forward(&mut self, sub: &zmq::Socket, publ: &zmq::Socket) -> Result<(), InfraError> {
        let (mut topic, mut body) = (zmq::Message::new(), zmq::Message::new());
        for _ in 0..BURST {
            match sub.recv(&mut topic, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            if !topic.get_more() {
                // Not a publication of ours: passed on as it came.
                publ.send(std::mem::replace(&mut topic, zmq::Message::new()), 0)?;
                continue;
            }
            sub.recv(&mut body, 0)?;
            if body.get_more() {
                publ.send(
                    std::mem::replace(&mut topic, zmq::Message::new()),
                    zmq::SNDMORE,
                )?;
                publ.send(
                    std::mem::replace(&mut body, zmq::Message::new()),
                    zmq::SNDMORE,
                )?;
                loop {
                    let mut part = zmq::Message::new();
                    sub.recv(&mut part, 0)?;
                    let more = part.get_more();
                    publ.send(part, if more { zmq::SNDMORE } else { 0 })?;
                    if !more {
                        break;
                    }
                }
                continue;
            }
            let seq = self.next_seq(&topic);
            let out = match palaver_proto::stamp(&body, seq) {
                Some(stamped) => zmq::Message::from(&stamped[..]),
                None => {
                    self.unstamped += 1;
                    let gate = self
                        .gate
                        .get_or_insert_with(palaver_core::LogGate::every_second);
                    if let Some(quiet) = gate.admit(std::time::Instant::now()) {
                        tracing::warn!(
                            unstamped = self.unstamped,
                            unlogged = quiet,
                            "a publication that is not a MessagePack map went out unstamped"
                        );
                    }
                    std::mem::replace(&mut body, zmq::Message::new())
                }
            };
            publ.send(
                std::mem::replace(&mut topic, zmq::Message::new()),
                zmq::SNDMORE,
            )?;
            publ.send(out, 0)?;
            self.forwarded += 1;
        }
        Ok(())
    }
}

/// Bytes each subscriber connection reads into (libzmq's default, 8,192, comes with about
/// 10 KB of reference counters for the messages cut from it: 18 KB of a subscriber's 22).
pub const SUBSCRIBER_READ_BUFFER: i32 = 512;

/// `ZMQ_IN_BATCH_SIZE` (a draft option of libzmq 4.3, compiled in by `vendor/zmq-sys`), which
/// the `zmq` crate does not name.
fn set_in_batch_size(socket: &mut zmq::Socket, bytes: i32) -> Result<(), InfraError> {
    const ZMQ_IN_BATCH_SIZE: std::os::raw::c_int = 101;
    // SAFETY: the socket pointer is live for the call; the value is an int, as the option
    // expects, passed with its size.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            ZMQ_IN_BATCH_SIZE,
            std::ptr::addr_of!(bytes).cast(),
            std::mem::size_of::<i32>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(InfraError::Zmq(zmq::Error::from_raw(unsafe {
            zmq_sys::zmq_errno()
        })))
    }
}

pub(crate) fn bind(
    socket: &zmq::Socket,
    what: &'static str,
    endpoint: &str,
) -> Result<(), InfraError> {
    socket.set_linger(0)?;
    socket.bind(endpoint).map_err(|source| InfraError::Bind {
        what,
        endpoint: endpoint.to_owned(),
        source,
    })
}
