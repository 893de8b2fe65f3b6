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
//! `zmq::proxy_steerable` loop. Neither keeps anything on disk, so a restart loses nothing but
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
/// many messages. ZeroMQ counts messages, not bytes, so one depth serves two needs badly: an
/// idle subscriber to everything while 16 KB posts flow kept the proxy at 82–83 MB here (95–100
/// MB at 4,000: too close to the 100 MB it must stay under), while subscribers that read but
/// lag in bursts on a busy machine lost 100-byte posts in the fan-out benchmark at 2,000 and
/// 3,000 (none at 4,000 in two runs; at 3,500, none in one run and 83,475 of 3 M in another).
/// `palaver proxy --subscriber-hwm` sets it; a bound in bytes needs a proxy loop of our own.
pub const SUBSCRIBER_HWM: i32 = 3_500;

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
    let publ = ctx.socket(zmq::XPUB)?;
    publ.set_sndhwm(subscriber_hwm)?;
    bind(&publ, "proxy XPUB", xpub)?;
    tracing::info!(xsub, xpub, "proxy ready");
    palaver_supervise::notify_ready();
    steer(&ctx, sub, publ, shutdown, "proxy")
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

/// Runs `zmq::proxy_steerable` on its own thread and stops it with `TERMINATE` when asked.
fn steer(
    ctx: &zmq::Context,
    mut a: zmq::Socket,
    mut b: zmq::Socket,
    shutdown: &Shutdown,
    name: &'static str,
) -> Result<(), InfraError> {
    let endpoint = format!("inproc://{name}-control");
    let mut control = ctx.socket(zmq::PAIR)?;
    control.bind(&endpoint)?;
    let steer = ctx.socket(zmq::PAIR)?;
    steer.connect(&endpoint)?;
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || zmq::proxy_steerable(&mut a, &mut b, &mut control))
        .map_err(|_| InfraError::Zmq(zmq::Error::EFAULT))?;
    while !shutdown.is_triggered() && !thread.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    if thread.is_finished() {
        // The proxy only returns on its own when the context is torn down.
        return match thread.join() {
            Ok(r) => r.map_err(InfraError::from),
            Err(_) => Err(InfraError::Zmq(zmq::Error::EFAULT)),
        };
    }
    steer.send("TERMINATE", 0)?;
    let _ = thread.join();
    tracing::info!("{name} stopped");
    Ok(())
}
