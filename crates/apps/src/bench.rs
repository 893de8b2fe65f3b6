//! `palaver bench`: publish throughput and latency of synchronous or pipelined clients against a running
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
    /// Requests each client keeps in flight: 1 is a synchronous (REQ) client; more is a
    /// pipelined DEALER client.
    pub window: usize,
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
                "workload": "publish", "clients": r.clients, "window": opts.window, "size": opts.size,
                "requests": r.requests, "errors": r.errors, "seconds": r.seconds,
                "requests_per_second": r.rate(),
                "latency_us": {"p50": us(0.5), "p90": us(0.9), "p99": us(0.99),
                               "p999": us(0.999), "max": r.latency.max()},
            })
        );
    } else {
        println!(
            "publish: {} clients x {} in flight, {} B: {:.0} req/s ({} requests, {} errors in {:.1} s)",
            r.clients,
            opts.window,
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

/// N clients post to one channel as fast as they can, each with `window` requests in flight.
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
            let (duration, window) = (opts.duration, opts.window);
            std::thread::spawn(move || -> anyhow::Result<(u64, u64, Histogram<u64>)> {
                let user = Name::parse(&format!("bench-{i}"))?;
                let mut conn = Connection::open(&ctx, &broker, SharedClock::new())?;
                conn.login(&user)?;
                barrier.wait();
                let start = Instant::now();
                let span = Span {
                    measure_from: start + WARM_UP,
                    end: start + WARM_UP + duration,
                };
                if window > 1 {
                    pipelined(
                        &ctx,
                        &broker,
                        &user,
                        &channel,
                        &|_| text.clone(),
                        window,
                        span,
                    )
                } else {
                    synchronous(&mut conn, &user, &channel, &text, span)
                }
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

/// When a client measures, and when it stops sending.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    pub measure_from: Instant,
    pub end: Instant,
}

/// Requests answered OK, failed ones, and the latency of the OK ones.
pub(crate) type Tally = (u64, u64, Histogram<u64>);

/// One request at a time, through the client library (REQ, lazy pirate).
fn synchronous(
    conn: &mut Connection,
    user: &Name,
    channel: &Name,
    text: &str,
    span: Span,
) -> anyhow::Result<Tally> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ok, mut errors) = (0, 0);
    loop {
        let t0 = Instant::now();
        if t0 >= span.end {
            break;
        }
        let result = conn.publish(user, channel, text);
        if t0 < span.measure_from {
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
}

/// How long a pipelined client waits for its last replies once it stops sending.
const DRAIN: Duration = Duration::from_secs(5);

/// `window` requests in flight on a DEALER socket. Each request goes out as `[tag, "", body]`;
/// the server sends the routing frames back in front of its reply, so the tag says which
/// request a reply answers.
pub(crate) fn pipelined(
    ctx: &zmq::Context,
    broker: &str,
    user: &Name,
    channel: &Name,
    text: &dyn Fn(u64) -> String,
    window: usize,
    span: Span,
) -> anyhow::Result<Tally> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(broker)?;
    let clock = SharedClock::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut in_flight: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    let mut tag = 0u64;
    // Request ids must never repeat across runs, or the servers answer "repeated" and store
    // nothing: prefix them with this run's start.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    loop {
        let now = Instant::now();
        if now < span.end {
            while in_flight.len() < window {
                tag += 1;
                let mut env = palaver_proto::Request::Publish {
                    user: user.clone(),
                    channel: channel.clone(),
                    message: text(tag),
                }
                .to_envelope()
                .with("request_id", format!("{user}-{run:x}-{tag}"));
                env.stamp(palaver_proto::now_secs(), clock.tick());
                socket.send_multipart([&tag.to_be_bytes()[..], &[][..], &env.to_bytes()[..]], 0)?;
                in_flight.insert(tag, Instant::now());
            }
        } else if in_flight.is_empty() || now >= span.end + DRAIN {
            break;
        }
        if socket.poll(zmq::POLLIN, 100)? == 0 {
            continue;
        }
        let frames = socket.recv_multipart(0)?;
        let (Some(first), Some(body)) = (frames.first(), frames.last()) else {
            continue;
        };
        let Ok(bytes) = <[u8; 8]>::try_from(first.as_slice()) else {
            continue;
        };
        let Some(t0) = in_flight.remove(&u64::from_be_bytes(bytes)) else {
            continue;
        };
        let reply = palaver_proto::Envelope::decode(body);
        if t0 < span.measure_from {
            continue;
        }
        match reply.map(|r| palaver_proto::Reply::status(&r)) {
            Ok(palaver_proto::Status::Success) => {
                ok += 1;
                hist.saturating_record(t0.elapsed().as_micros() as u64);
            }
            _ => errors += 1,
        }
    }
    errors += in_flight
        .values()
        .filter(|t| **t >= span.measure_from)
        .count() as u64;
    Ok((ok, errors, hist))
}
