//! `palaver irc`: a front door for IRC clients onto the same rooms, conversations and history.
//!
//! ```text
//!  IRC client ──TCP──▶ one task each (tokio): lines in, limits (connections per address,
//!                      line length, flood), one bounded queue out
//!                        │ session::Session: IRC ⇄ the web gateway's JSON requests
//!                        ▼
//!                      hub thread (palaver_web::hub): the gateway core on one DEALER ──▶ broker
//!                                                                    and one SUB  ◀── proxy
//! ```
//!
//! The gateway core is the web gateway's: the same sessions, rate limits, subscriptions, gap
//! repair and sealed-message opening serve browsers and IRC clients alike. docs/irc.md says
//! what is supported and how Palaver's concepts appear on IRC.

pub mod line;
mod listen;
pub mod session;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use palaver_core::Shutdown;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub broker: String,
    pub sub: String,
    /// The name the gateway gives itself in its replies.
    pub server_name: String,
    /// Connections from one address at once.
    pub per_address: usize,
    /// Lines a client may send in one second before it is cut off.
    pub flood: usize,
    /// Lines waiting for one client before it counts as too slow.
    pub queue: usize,
    pub rate: palaver_web::Rate,
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
            server_name: "palaver".to_owned(),
            per_address: 16,
            flood: 100,
            queue: 4096,
            rate: palaver_web::Rate {
                per_second: 20.0,
                burst: 40.0,
            },
            timeout: palaver_client::DEFAULT_TIMEOUT,
        }
    }
}

/// Serves IRC clients until `shutdown`.
///
/// # Errors
/// When the address cannot be listened on or the sockets cannot be made.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let gateway = palaver_web::Gateway {
        name: "irc",
        broker: &opts.broker,
        sub: &opts.sub,
        rate: opts.rate,
        timeout: opts.timeout,
    };
    palaver_web::with_hub(&gateway, shutdown, |hub| async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        println!(
            "palaver irc: connect an IRC client to {addr} (cluster at {})",
            opts.broker
        );
        palaver_supervise::notify_ready();
        listen::serve(listener, hub, opts.clone(), shutdown.clone()).await;
        Ok(())
    })
}
