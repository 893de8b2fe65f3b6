//! `palaver listen`: prints every publication on some topics, one per line.
//!
//! With no `--topic`, it follows `servers` and every channel, new ones included from their first
//! post: it subscribes to everything and shows what is not a private message.

use std::io::Write;
use std::time::Duration;

use palaver_client::{Connection, SharedClock, Subscriber};
use palaver_core::Shutdown;
use palaver_proto::TOPIC_SERVERS;

use crate::show;

pub struct Options {
    /// Where to ask for posts missed while the subscriber was cut off.
    pub broker: String,
    pub sub: String,
    pub topics: Vec<String>,
    pub json: bool,
}

/// Runs until `shutdown`.
///
/// # Errors
/// When the sockets cannot be opened, or standard output is closed.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let clock = SharedClock::new();
    let mut sub = Subscriber::open(&ctx, &opts.sub, clock.clone())?;
    // Posts missed while cut off from the proxy are filled in from `history` when it comes
    // back; a short timeout, so that printing never waits long on a broker that is down.
    sub.repair_with(
        Connection::open(&ctx, &opts.broker, clock)?.with_timeout(Duration::from_millis(500), 2),
    )?;
    let follow_all = opts.topics.is_empty();
    if follow_all {
        sub.subscribe_everything()?;
    } else {
        for t in &opts.topics {
            sub.subscribe(t)?;
        }
    }
    let stdout = std::io::stdout();
    while !shutdown.is_triggered() {
        if let Some(r) = sub.recv_timeout(Duration::from_millis(100))? {
            // Private messages belong to their people, not to a channel listener.
            if follow_all
                && matches!(
                    r.publication.envelope.service.as_str(),
                    "message" | "sealed"
                )
                && r.publication.topic != TOPIC_SERVERS
            {
                continue;
            }
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
