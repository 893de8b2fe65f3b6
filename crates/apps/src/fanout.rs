//! `palaver bench --workload fanout`: publishers post to one channel, M subscribers follow it.
//! Counts what the subscribers receive (deliveries/s), the end-to-end latency from the moment a
//! post was sent to the moment a subscriber got it, and what each subscriber missed or got
//! twice.
//!
//! ```text
//!  publishers (DEALER, window W) ──▶ broker ──▶ servers ──▶ proxy ──▶ M SUB sockets (a few threads)
//!  text = "<publisher>:<seq>:<sent ns>"                                 └─ latency, gaps, repeats
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use palaver_client::{ClientError, Connection, SharedClock};
use palaver_proto::{Name, Publication};

use crate::bench::{pipelined, Span};

pub struct Options {
    pub broker: String,
    pub sub: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub window: usize,
    pub duration: Duration,
    pub size: usize,
    pub json: bool,
}

/// Subscriber sockets per receiving thread.
const SOCKETS_PER_THREAD: usize = 25;
/// How long subscribers keep reading once the publishers stop.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Received {
    /// Publications received, repeats included.
    deliveries: u64,
    /// Publications received a second time.
    repeated: u64,
    latency: Option<Histogram<u64>>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs the fan-out workload and prints its results.
///
/// # Errors
/// When the cluster does not answer the set-up requests, or the subscriptions never start.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let channel = Name::parse("fanout")?;
    let mut setup = Connection::open(&ctx, &opts.broker, SharedClock::new())?;
    match setup.create_channel(&channel) {
        Ok(()) | Err(ClientError::Refused(_)) => {}
        Err(e) => return Err(e).context("cannot reach the cluster"),
    }
    let probe = Name::parse("fanout-probe")?;
    setup.login(&probe)?;

    // Subscribers, a few threads each polling many sockets.
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    let mut left = opts.subscribers;
    while left > 0 {
        let n = left.min(SOCKETS_PER_THREAD);
        left -= n;
        let (ctx, sub, stop, ready) = (ctx.clone(), opts.sub.clone(), stop.clone(), ready.clone());
        threads.push(std::thread::spawn(move || {
            receive(&ctx, &sub, n, &stop, &ready)
        }));
    }
    // ZeroMQ subscriptions reach the proxy asynchronously: probe until every socket has heard.
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready.load(Ordering::SeqCst) < opts.subscribers {
        if Instant::now() > deadline {
            stop.store(true, Ordering::SeqCst);
            bail!(
                "only {} of {} subscriptions became active",
                ready.load(Ordering::SeqCst),
                opts.subscribers
            );
        }
        setup.publish(&probe, &channel, "probe")?;
        std::thread::sleep(Duration::from_millis(20));
    }

    let start = Instant::now();
    let span = Span {
        measure_from: start,
        end: start + opts.duration,
    };
    let publishers: Vec<_> = (0..opts.publishers)
        .map(|i| {
            let (ctx, broker, channel) = (ctx.clone(), opts.broker.clone(), channel.clone());
            let (window, size) = (opts.window, opts.size);
            std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
                let user = Name::parse(&format!("fanout-{i}"))?;
                Connection::open(&ctx, &broker, SharedClock::new())?.login(&user)?;
                let text = |seq: u64| {
                    let mut t = format!("{i}:{seq}:{}", now_ns());
                    while t.len() < size {
                        t.push('.');
                    }
                    t
                };
                let (ok, errors, _) =
                    pipelined(&ctx, &broker, &user, &channel, &text, window, span)?;
                Ok((ok, errors))
            })
        })
        .collect();
    let (mut sent, mut errors) = (0, 0);
    for p in publishers {
        let (ok, err) = p.join().map_err(|_| anyhow!("a publisher panicked"))??;
        sent += ok;
        errors += err;
    }
    let publishing = start.elapsed().as_secs_f64();
    std::thread::sleep(DRAIN);
    stop.store(true, Ordering::SeqCst);
    let mut total = Received::default();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in threads {
        let r = t
            .join()
            .map_err(|_| anyhow!("a subscriber thread panicked"))??;
        total.deliveries += r.deliveries;
        total.repeated += r.repeated;
        if let Some(h) = &r.latency {
            latency.add(h)?;
        }
    }
    let expected = sent * opts.subscribers as u64;
    // Every post answered OK should reach every subscriber once.
    let missed = expected.saturating_sub(total.deliveries - total.repeated);
    let us = |q: f64| latency.value_at_quantile(q);
    let rate = total.deliveries as f64 / publishing;
    if opts.json {
        println!(
            "{}",
            serde_json::json!({
                "workload": "fanout", "publishers": opts.publishers, "subscribers": opts.subscribers,
                "window": opts.window, "size": opts.size, "seconds": publishing,
                "published": sent, "errors": errors, "requests_per_second": sent as f64 / publishing,
                "deliveries": total.deliveries, "expected_deliveries": expected,
                "deliveries_per_second": rate, "missed": missed, "repeated": total.repeated,
                "end_to_end_us": {"p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p999": us(0.999), "max": latency.max()},
            })
        );
    } else {
        println!(
            "fanout: {} publishers x {} in flight → {} subscribers, {} B: {:.0} posts/s, {:.0} deliveries/s",
            opts.publishers, opts.window, opts.subscribers, opts.size, sent as f64 / publishing, rate
        );
        println!(
            "delivered {} of {} expected; missed {}, repeated {}; {} publish errors",
            total.deliveries, expected, missed, total.repeated, errors
        );
        println!(
            "end to end: p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            latency.max()
        );
    }
    Ok(())
}

/// One receiving thread: `n` SUB sockets on the fan-out channel.
fn receive(
    ctx: &zmq::Context,
    endpoint: &str,
    n: usize,
    stop: &AtomicBool,
    ready: &AtomicUsize,
) -> anyhow::Result<Received> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let s = ctx.socket(zmq::SUB)?;
        s.set_linger(0)?;
        s.set_rcvhwm(1_000_000)?;
        s.connect(endpoint)?;
        s.set_subscribe(b"fanout")?;
        sockets.push(s);
    }
    let mut heard = vec![false; n];
    // Per socket and publisher: which sequence numbers arrived (a bit each). Posts of one
    // publisher go through different servers, so they may arrive out of order.
    let mut seen: Vec<HashMap<u64, Vec<u64>>> = vec![HashMap::new(); n];
    let mut out = Received {
        latency: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ..Received::default()
    };
    while !stop.load(Ordering::SeqCst) {
        let mut items: Vec<zmq::PollItem> = sockets
            .iter()
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect();
        if zmq::poll(&mut items, 50).unwrap_or(0) == 0 {
            continue;
        }
        let readable: Vec<bool> = items.iter().map(zmq::PollItem::is_readable).collect();
        drop(items);
        for (i, s) in sockets.iter().enumerate().filter(|(i, _)| readable[*i]) {
            while let Ok(frames) = s.recv_multipart(zmq::DONTWAIT) {
                let Ok(p) = Publication::from_frames(&frames) else {
                    continue;
                };
                if p.topic != "fanout" {
                    continue;
                }
                let Ok(text) = p.envelope.data.str("message") else {
                    continue;
                };
                if !heard[i] {
                    heard[i] = true;
                    ready.fetch_add(1, Ordering::SeqCst);
                }
                let mut parts = text.splitn(3, ':');
                let (Some(Ok(publisher)), Some(Ok(seq)), Some(sent)) = (
                    parts.next().map(str::parse::<u64>),
                    parts.next().map(str::parse::<u64>),
                    parts.next(),
                ) else {
                    continue; // a probe
                };
                let sent: u64 = sent.trim_end_matches('.').parse().unwrap_or(0);
                out.deliveries += 1;
                if let Some(h) = out.latency.as_mut() {
                    h.saturating_record(now_ns().saturating_sub(sent) / 1000);
                }
                let bits = seen[i].entry(publisher).or_default();
                let (word, bit) = ((seq / 64) as usize, seq % 64);
                if bits.len() <= word {
                    bits.resize(word + 1, 0);
                }
                if bits[word] & (1 << bit) != 0 {
                    out.repeated += 1;
                } else {
                    bits[word] |= 1 << bit;
                }
            }
        }
    }
    Ok(out)
}
