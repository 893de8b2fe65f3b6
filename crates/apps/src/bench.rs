//! `palaver bench`: publish throughput and latency of synchronous clients against a running
//! cluster, measured like a messaging system is measured.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use palaver_client::{ClientError, Connection, SharedClock};
use palaver_proto::Name;

pub struct Options {
    pub broker: String,
    pub clients: usize,
    pub duration: Duration,
    pub size: usize,
    pub json: bool,
}

/// Requests before this much time has passed are not counted: connections and caches settle.
const WARM_UP: Duration = Duration::from_secs(1);

/// What a run measured.
#[derive(Debug)]
pub struct Results {
    pub clients: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Request latency in microseconds.
    pub latency: Histogram<u64>,
}

impl Results {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Runs the publish benchmark and prints its results.
///
/// # Errors
/// When the cluster does not answer the set-up requests.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let r = publish(opts)?;
    let us = |q: f64| r.latency.value_at_quantile(q);
    if opts.json {
        println!(
            "{}",
            serde_json::json!({
                "workload": "publish", "clients": r.clients, "size": opts.size,
                "requests": r.requests, "errors": r.errors, "seconds": r.seconds,
                "requests_per_second": r.rate(),
                "latency_us": {"p50": us(0.5), "p90": us(0.9), "p99": us(0.99),
                               "p999": us(0.999), "max": r.latency.max()},
            })
        );
    } else {
        println!(
            "publish: {} clients, {} B: {:.0} req/s ({} requests, {} errors in {:.1} s)",
            r.clients,
            opts.size,
            r.rate(),
            r.requests,
            r.errors,
            r.seconds
        );
        println!(
            "latency: p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            r.latency.max()
        );
    }
    Ok(())
}

/// N synchronous clients post to one channel as fast as they can.
///
/// # Errors
/// When set-up requests fail.
pub fn publish(opts: &Options) -> anyhow::Result<Results> {
    let ctx = zmq::Context::new();
    let channel = Name::parse("bench")?;
    let mut setup = Connection::open(&ctx, &opts.broker, SharedClock::new())?;
    match setup.create_channel(&channel) {
        Ok(()) | Err(ClientError::Refused(_)) => {}
        Err(e) => return Err(e).context("cannot reach the cluster"),
    }
    let text = "x".repeat(opts.size.max(1));
    let barrier = Arc::new(Barrier::new(opts.clients));
    let threads: Vec<_> = (0..opts.clients)
        .map(|i| {
            let (ctx, broker, channel, text, barrier) = (
                ctx.clone(),
                opts.broker.clone(),
                channel.clone(),
                text.clone(),
                barrier.clone(),
            );
            let duration = opts.duration;
            std::thread::spawn(move || -> anyhow::Result<(u64, u64, Histogram<u64>)> {
                let user = Name::parse(&format!("bench-{i}"))?;
                let mut conn = Connection::open(&ctx, &broker, SharedClock::new())?;
                conn.login(&user)?;
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let (mut ok, mut errors) = (0, 0);
                barrier.wait();
                let start = Instant::now();
                let end = start + WARM_UP + duration;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let result = conn.publish(&user, &channel, &text);
                    let measured = t0 >= start + WARM_UP;
                    if !measured {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            ok += 1;
                            hist.saturating_record(t0.elapsed().as_micros() as u64);
                        }
                        Err(_) => errors += 1,
                    }
                }
                Ok((ok, errors, hist))
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut requests, mut errors) = (0, 0);
    for t in threads {
        let (ok, err, hist) = t
            .join()
            .map_err(|_| anyhow!("a client thread panicked"))??;
        requests += ok;
        errors += err;
        latency.add(&hist)?;
    }
    Ok(Results {
        clients: opts.clients,
        requests,
        errors,
        seconds: opts.duration.as_secs_f64(),
        latency,
    })
}
