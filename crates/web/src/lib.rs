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
    let gateway = Gateway {
        name: "web",
        broker: &opts.broker,
        sub: &opts.sub,
        rate: opts.rate,
        timeout: opts.timeout,
    };
    with_hub(&gateway, shutdown, |hub: hub::Hub| async move {
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
    })
}

/// What a gateway front door needs of its hub: its name (for its threads) and the cluster.
pub struct Gateway<'a> {
    pub name: &'static str,
    pub broker: &'a str,
    pub sub: &'a str,
    pub rate: Rate,
    pub timeout: Duration,
}

/// Runs `serve` on a two-thread tokio runtime beside a hub on the cluster, for a front door
/// (the web's, IRC's) whose sessions share the hub. When `serve` ends, for whatever reason,
/// open sessions end with the runtime and the hub stops too.
///
/// # Errors
/// When the hub's sockets or the runtime cannot be made, or `serve` fails.
pub fn with_hub<M, F, Fut>(
    gateway: &Gateway<'_>,
    shutdown: &Shutdown,
    serve: F,
) -> anyhow::Result<()>
where
    M: Default + Send + Sync + 'static,
    F: FnOnce(hub::Hub<M>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let ctx = zmq::Context::new();
    let (hub, thread) = hub::spawn(
        &ctx,
        gateway.broker,
        gateway.sub,
        gateway.rate,
        gateway.timeout,
        shutdown.clone(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(gateway.name)
        .enable_all()
        .build()?;
    let served = runtime.block_on(serve(hub));
    // Open connections end with the runtime; their people reconnect to the next gateway.
    runtime.shutdown_timeout(Duration::from_secs(1));
    shutdown.trigger();
    let _ = thread.join();
    served
}
