//! `palaver listen`: prints every publication on some topics, one per line.
//!
//! With no `--topic`, it follows `servers` and every channel, and looks for new channels every
//! half second.

use std::io::Write;
use std::time::{Duration, Instant};

use palaver_client::{Connection, SharedClock, Subscriber};
use palaver_core::Shutdown;
use palaver_proto::TOPIC_SERVERS;

use crate::show;

pub struct Options {
    pub broker: String,
    pub sub: String,
    pub topics: Vec<String>,
    pub json: bool,
}

/// How often the default mode looks for new channels.
const REFRESH: Duration = Duration::from_millis(500);
/// How much longer to wait after a failed look.
const BACKOFF: Duration = Duration::from_secs(2);

/// Runs until `shutdown`.
///
/// # Errors
/// When the sockets cannot be opened, or standard output is closed.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let clock = SharedClock::new();
    let mut sub = Subscriber::open(&ctx, &opts.sub, clock.clone())?;
    let follow_all = opts.topics.is_empty();
    let mut conn = if follow_all {
        sub.subscribe(TOPIC_SERVERS)?;
        // A short timeout: a listener must not hang on a broker that is down.
        Some(
            Connection::open(&ctx, &opts.broker, clock)?
                .with_timeout(Duration::from_millis(300), 1),
        )
    } else {
        for t in &opts.topics {
            sub.subscribe(t)?;
        }
        None
    };
    let mut refreshed: Option<Instant> = None;
    let stdout = std::io::stdout();
    while !shutdown.is_triggered() {
        if let Some(conn) = conn.as_mut() {
            if refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
                refreshed = Some(Instant::now());
                match conn.channels() {
                    Ok(channels) => {
                        for c in channels {
                            if !sub.topics().any(|t| t == c) {
                                tracing::info!(channel = %c, "following");
                                sub.subscribe(&c)?;
                            }
                        }
                    }
                    Err(e) => {
                        // Try again later, not at once: printing must not wait on the broker.
                        refreshed = Some(Instant::now() + BACKOFF);
                        tracing::warn!(error = %e, "cannot list channels");
                    }
                }
            }
        }
        if let Some(r) = sub.recv_timeout(Duration::from_millis(100))? {
            let line = if opts.json {
                show::json(&r)
            } else {
                show::line(&r)
            };
            let mut out = stdout.lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
    }
    Ok(())
}
