//! `palaver web`: a WebSocket gateway and the web client.
//!
//! ```text
//!  browser ──HTTP──▶ /            the web client (assets/, embedded in the binary)
//!  browser ──WS────▶ /ws          one session task each (tokio), JSON both ways
//!                                    │ limits: connections per address, message size
//!                                    ▼
//!                                  hub thread: the gateway core on one DEALER ──▶ broker
//!                                                               and one SUB  ◀── proxy
//! ```
//!
//! The JSON messages and the limits are in docs/protocol.md ("The WebSocket gateway").

pub mod gateway;
mod http;
pub mod hub;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use palaver_core::Shutdown;

pub use gateway::Rate;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub broker: String,
    pub sub: String,
    /// WebSocket connections from one address at once.
    pub per_address: usize,
    /// The largest message a browser may send, in bytes.
    pub max_message: usize,
    pub rate: Rate,
    /// Messages waiting for one browser before it counts as too slow.
    pub queue: usize,
    /// How long a request waits for each attempt's answer.
    pub timeout: Duration,
}

impl Options {
    /// The documented defaults, on `listen`, for the cluster at `broker` and `sub`.
    pub fn new(listen: SocketAddr, broker: &str, sub: &str) -> Options {
        Options {
            listen,
            broker: broker.to_owned(),
            sub: sub.to_owned(),
            per_address: 16,
            max_message: 64 << 10,
            rate: Rate {
                per_second: 20.0,
                burst: 40.0,
            },
            queue: 4096,
            timeout: palaver_client::DEFAULT_TIMEOUT,
        }
    }
}

/// Serves the web client and the WebSocket until `shutdown`.
///
/// # Errors
/// When the address cannot be listened on or the sockets cannot be made.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let (hub, thread) = hub::spawn(
        &ctx,
        &opts.broker,
        &opts.sub,
        opts.rate,
        opts.timeout,
        shutdown.clone(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("web")
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        println!(
            "palaver web: open http://{addr}/ in a browser (cluster at {})",
            opts.broker
        );
        palaver_supervise::notify_ready();
        let app = http::router(hub, opts);
        let stop = shutdown.clone();
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            while !stop.is_triggered() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .context("serving HTTP")
    });
    // Open WebSockets end with the runtime; the browsers reconnect to the next gateway.
    runtime.shutdown_timeout(Duration::from_secs(1));
    shutdown.trigger();
    let _ = thread.join();
    served
}
