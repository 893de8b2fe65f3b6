//! `palaver bench`: throughput, tail latency and delivery of a running cluster (or of one it
//! starts, `--spawn`), measured like a messaging system is measured.
//!
//! ```text
//!  senders: DEALER clients, window W, paced or not ──▶ broker ──▶ servers ──▶ proxy ──▶ SUB sockets
//!  text = "<client>:<seq>:<sent ns>"          request latency ◀─┘   deliveries, end-to-end latency,
//!                                                                    missed and repeated ◀─┘
//! ```
//!
//! Workloads: `publish` (clients post to channels, nobody listens), `fanout` (clients post,
//! many subscribers follow the channels), `dm` (pairs of clients write to each other, each
//! follows its own name), `chat` (paced bots: posts, private messages and reads, each following
//! its name and its channels), `irc-idle` (what idle IRC connections cost a gateway, in
//! memory: [`idle`]).

pub mod idle;
mod plan;
mod ready;
mod receive;
mod send;
mod spawn;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use palaver_client::{ClientError, Connection, SharedClock};
use palaver_proto::Name;
use rand::SeedableRng;

use plan::Plan;
use receive::Heard;
use send::{Pace, Tally};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Publish,
    Fanout,
    Dm,
    Chat,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Publish => "publish",
            Workload::Fanout => "fanout",
            Workload::Dm => "dm",
            Workload::Chat => "chat",
        }
    }
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Length {
    /// Measured for this long after a one-second warm-up.
    Duration(Duration),
    /// Each client sends this many requests, all measured.
    Count(u64),
}

pub struct Options {
    pub workload: Workload,
    pub broker: String,
    pub sub: String,
    /// Start a local cluster with this many servers for the run instead of using one.
    pub spawn: Option<usize>,
    pub clients: usize,
    /// Requests each client keeps in flight: 1 waits for each reply before the next.
    pub window: usize,
    /// Requests per second per client; 0 sends as fast as the window allows.
    pub rate: f64,
    pub length: Length,
    /// Bytes of text per message.
    pub size: usize,
    pub channels: usize,
    /// Subscriber sockets for `fanout`.
    pub subscribers: usize,
    pub json: bool,
}

/// Requests before this much time has passed are not counted: connections and caches settle.
const WARM_UP: Duration = Duration::from_secs(1);
/// Sender threads at most; each drives several clients from one poll loop.
const SENDER_THREADS: usize = 8;
/// Subscriber threads at most; each polls many sockets.
const RECEIVER_THREADS: usize = 8;
/// Sockets that one ZeroMQ context may hold (its limit is 1,023).
const MAX_SHARED_SOCKETS: usize = 1000;
/// How long subscribers keep reading once the senders are done.
const LISTEN_DRAIN: Duration = Duration::from_secs(2);
/// How long subscriptions may take to reach the proxy.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Counters the threads share with the progress bar and the coordinator.
#[derive(Default)]
pub(crate) struct Live {
    pub ok: AtomicU64,
    /// Posts sent, by every client.
    pub posts: AtomicU64,
    /// Per subscriber thread, 1 + the deliveries of its slowest socket (0: no such thread).
    pub floors: [AtomicU64; FLOORS],
    /// Deliveries of messages sent after the warm-up.
    pub delivered: AtomicU64,
    /// Every delivery but repeats.
    pub unique: AtomicU64,
    /// Subscriber sockets whose subscriptions are in force.
    pub ready: AtomicUsize,
    /// Wall-clock nanoseconds from which deliveries count (0: not yet).
    pub measure_from_ns: AtomicU64,
    stop: AtomicBool,
    stop_listening: AtomicBool,
}

/// Subscriber threads that can report their slowest socket (at most [`RECEIVER_THREADS`] run).
pub(crate) const FLOORS: usize = 16;

impl Live {
    /// Deliveries of the slowest subscriber socket (`None` before any thread reports).
    pub fn slowest(&self) -> Option<u64> {
        self.floors
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .filter(|f| *f > 0)
            .min()
            .map(|f| f - 1)
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn listening_stopped(&self) -> bool {
        self.stop_listening.load(Ordering::Relaxed)
    }
}

/// When the clients start, start measuring, and stop sending.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What a run measured.
pub struct Report {
    pub seconds: f64,
    tally: Tally,
    heard: Heard,
    expected: u64,
    subscribers: usize,
}

impl Report {
    pub fn requests_per_second(&self) -> f64 {
        self.tally.ok as f64 / self.seconds
    }
}

/// Runs a workload and prints its results.
///
/// # Errors
/// When the cluster cannot be started or reached, or subscriptions never take effect.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let spawned = opts.spawn.map(spawn::Spawned::start).transpose()?;
    let (broker, sub) = match &spawned {
        Some(s) => (s.broker.clone(), s.sub.clone()),
        None => (opts.broker.clone(), opts.sub.clone()),
    };
    let report = measure(opts, &broker, &sub)?;
    drop(spawned);
    print(opts, &report);
    Ok(())
}

/// Runs a workload against a cluster.
///
/// # Errors
/// When set-up requests fail or subscriptions never take effect.
pub fn measure(opts: &Options, broker: &str, sub: &str) -> anyhow::Result<Report> {
    let ctx = zmq::Context::new();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let plan = Arc::new(Plan::new(
        opts.workload,
        opts.clients,
        opts.channels,
        if opts.workload == Workload::Fanout {
            opts.subscribers
        } else {
            0
        },
        &mut rng,
    )?);
    set_up(&ctx, broker, &plan)?;
    // A ZeroMQ context refuses sockets past 1,023 ("too many open files"), and the binding
    // cannot raise that: with more, each thread makes its own context.
    let own_contexts = plan.users.len() + plan.listeners.len() > MAX_SHARED_SOCKETS;
    let context = move |ctx: &zmq::Context| {
        if own_contexts {
            zmq::Context::new()
        } else {
            ctx.clone()
        }
    };
    let live = Arc::new(Live::default());

    // Subscribers first, and only then the load: nothing sent may be missed for want of a
    // subscription.
    let listeners: Vec<usize> = (0..plan.listeners.len()).collect();
    let per_receiver = receive::SOCKETS_PER_THREAD.max(listeners.len().div_ceil(RECEIVER_THREADS));
    let receivers: Vec<_> = listeners
        .chunks(per_receiver)
        .enumerate()
        .map(|(slot, chunk)| {
            let (ctx, sub, plan, live, chunk) = (
                context(&ctx),
                sub.to_owned(),
                plan.clone(),
                live.clone(),
                chunk.to_vec(),
            );
            std::thread::spawn(move || receive::run(&ctx, &sub, &plan, &chunk, &live, slot))
        })
        .collect();
    if let Err(e) = await_subscriptions(&ctx, broker, &plan, &live) {
        live.stop_listening.store(true, Ordering::SeqCst);
        return Err(e);
    }

    let start = Instant::now();
    let (measure_from, end) = match opts.length {
        Length::Duration(d) => (start + WARM_UP, start + WARM_UP + d),
        // Counted runs end when every client has sent its share.
        Length::Count(_) => (start, start + Duration::from_secs(24 * 3600)),
    };
    live.measure_from_ns.store(
        now_ns() + measure_from.duration_since(start).as_nanos() as u64,
        Ordering::SeqCst,
    );
    let span = Span {
        start,
        measure_from,
        end,
    };
    let pace = Pace {
        window: opts.window.max(1),
        rate: opts.rate.max(0.0),
        size: opts.size,
        count: match opts.length {
            Length::Count(n) => Some(n.max(1)),
            Length::Duration(_) => None,
        },
        // A fan-out's window also bounds how far the posts run ahead of the slowest
        // subscriber, as the raw ZeroMQ fan-out it is measured beside does.
        ahead: (opts.workload == Workload::Fanout)
            .then(|| (opts.window.max(1) as u64, plan.channels.len().max(1) as u64)),
    };
    let clients: Vec<usize> = (0..plan.users.len()).collect();
    let per_thread = clients.len().div_ceil(SENDER_THREADS);
    let senders: Vec<_> = clients
        .chunks(per_thread)
        .map(|chunk| {
            let (ctx, broker, plan, live, chunk) = (
                context(&ctx),
                broker.to_owned(),
                plan.clone(),
                live.clone(),
                chunk.to_vec(),
            );
            std::thread::spawn(move || send::run(&ctx, &broker, &plan, &chunk, pace, span, &live))
        })
        .collect();

    show_progress(opts, &live, span, &senders);
    let mut tally = Tally::new(plan.topic_count())?;
    for s in senders {
        let t = s
            .join()
            .map_err(|_| anyhow!("a client thread panicked"))??;
        tally.add(&t)?;
    }
    let seconds = match opts.length {
        Length::Duration(d) => d.as_secs_f64(),
        Length::Count(_) => start.elapsed().as_secs_f64(),
    };
    let followers = plan.followers();
    let expected: u64 = tally
        .written
        .iter()
        .zip(&followers)
        .map(|(w, f)| w * f)
        .sum();
    // Until everything expected has arrived, or for a while after the last reply.
    let deadline = Instant::now() + LISTEN_DRAIN;
    while live.unique.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    live.stop_listening.store(true, Ordering::SeqCst);
    let mut heard = Heard::new()?;
    for r in receivers {
        let h = r
            .join()
            .map_err(|_| anyhow!("a subscriber thread panicked"))??;
        heard.add(&h)?;
    }
    Ok(Report {
        seconds,
        tally,
        heard,
        expected,
        subscribers: plan.listeners.len(),
    })
}

/// Creates the channels and logs every client in.
fn set_up(ctx: &zmq::Context, broker: &str, plan: &Plan) -> anyhow::Result<()> {
    let mut conn = Connection::open(ctx, broker, SharedClock::new())?;
    for c in &plan.channels {
        match conn.create_channel(c) {
            Ok(()) | Err(ClientError::Refused(_)) => {}
            Err(e) => return Err(e).context("cannot reach the cluster"),
        }
    }
    for u in &plan.users {
        conn.login(u)
            .with_context(|| format!("cannot log {u} in"))?;
    }
    Ok(())
}

/// Subscriptions reach the proxy asynchronously: publish probes on every followed topic
/// until every socket has heard one.
fn await_subscriptions(
    ctx: &zmq::Context,
    broker: &str,
    plan: &Plan,
    live: &Live,
) -> anyhow::Result<()> {
    if plan.listeners.is_empty() {
        return Ok(());
    }
    let mut conn = Connection::open(ctx, broker, SharedClock::new())?;
    let probe = Name::parse(&format!("{}-probe", plan.workload.name()))?;
    conn.login(&probe)?;
    let followed: Vec<usize> = plan
        .followers()
        .iter()
        .enumerate()
        .filter(|(_, f)| **f > 0)
        .map(|(t, _)| t)
        .collect();
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    while live.ready.load(Ordering::SeqCst) < plan.listeners.len() {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} subscriber sockets became active",
                live.ready.load(Ordering::SeqCst),
                plan.listeners.len()
            );
        }
        for &t in &followed {
            match plan.channels.get(t) {
                Some(c) => conn.publish(&probe, c, "probe")?,
                None => conn.message(&probe, &plan.users[t - plan.channels.len()], "probe")?,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A progress bar on the terminal (nothing when stderr is not one) until the senders finish.
fn show_progress<T>(
    opts: &Options,
    live: &Live,
    span: Span,
    senders: &[std::thread::JoinHandle<T>],
) {
    let (len, unit) = match opts.length {
        Length::Duration(d) => ((WARM_UP + d).as_millis() as u64, "{elapsed}"),
        Length::Count(n) => (n * opts.clients.max(1) as u64, "{pos}/{len}"),
    };
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:30}} {unit} {{msg}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut last_ok, mut last_del, mut last_t) = (0, 0, Instant::now());
    while !senders.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(200));
        let (ok, del, t) = (
            live.ok.load(Ordering::Relaxed),
            live.delivered.load(Ordering::Relaxed),
            Instant::now(),
        );
        let dt = t.duration_since(last_t).as_secs_f64().max(1e-3);
        let mut msg = format!("{:.0} req/s", (ok - last_ok) as f64 / dt);
        if !opts.json && del > 0 {
            msg += &format!(", {:.0} deliveries/s", (del - last_del) as f64 / dt);
        }
        if Instant::now() < span.measure_from {
            msg += " (warming up)";
        }
        bar.set_message(msg);
        bar.set_position(match opts.length {
            Length::Duration(_) => span.start.elapsed().as_millis() as u64,
            Length::Count(_) => ok,
        });
        (last_ok, last_del, last_t) = (ok, del, t);
    }
    bar.finish_and_clear();
}

fn print(opts: &Options, r: &Report) {
    let lat = &r.tally.latency;
    let us = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q);
    let missed = r
        .expected
        .saturating_sub(r.heard.deliveries - r.heard.repeated);
    let deliveries_per_second = r.heard.measured as f64 / r.seconds;
    if opts.json {
        let e2e = &r.heard.latency;
        let mut v = serde_json::json!({
            "workload": opts.workload.name(), "clients": opts.clients, "window": opts.window,
            "rate": opts.rate, "size": opts.size, "channels": opts.channels.max(1),
            "subscribers": r.subscribers, "seconds": r.seconds,
            "requests": r.tally.ok, "errors": r.tally.errors, "resent": r.tally.resent,
            "requests_per_second": r.requests_per_second(),
            "by_service": r.tally.by_service,
            "latency_us": {"p50": us(lat, 0.5), "p90": us(lat, 0.9), "p99": us(lat, 0.99),
                           "p999": us(lat, 0.999), "max": lat.max()},
        });
        if r.subscribers > 0 {
            v["deliveries"] = r.heard.deliveries.into();
            v["expected_deliveries"] = r.expected.into();
            v["deliveries_per_second"] = deliveries_per_second.into();
            v["missed"] = missed.into();
            v["repeated"] = r.heard.repeated.into();
            v["gaps"] = r.heard.gaps.into();
            v["end_to_end_us"] = serde_json::json!({"p50": us(e2e, 0.5), "p90": us(e2e, 0.9),
                "p99": us(e2e, 0.99), "p999": us(e2e, 0.999), "max": e2e.max()});
        }
        println!("{v}");
        return;
    }
    let pacing = if opts.rate > 0.0 {
        format!(", {} req/s each", opts.rate)
    } else {
        String::new()
    };
    println!(
        "{}: {} clients x {} in flight{pacing}, {} B, {} channel(s): {:.0} req/s ({} ok, {} errors in {:.1} s; {} sent again)",
        opts.workload.name(),
        opts.clients,
        opts.window,
        opts.size,
        opts.channels.max(1),
        r.requests_per_second(),
        r.tally.ok,
        r.tally.errors,
        r.seconds,
        r.tally.resent
    );
    println!(
        "latency: p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        us(lat, 0.5),
        us(lat, 0.9),
        us(lat, 0.99),
        us(lat, 0.999),
        lat.max()
    );
    if r.subscribers > 0 {
        let e2e = &r.heard.latency;
        println!(
            "{} subscribers: {:.0} deliveries/s; delivered {} of {} expected, missed {} ({} seen as gaps), repeated {}",
            r.subscribers,
            deliveries_per_second,
            r.heard.deliveries,
            r.expected,
            missed,
            r.heard.gaps,
            r.heard.repeated
        );
        println!(
            "end to end: p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            us(e2e, 0.5),
            us(e2e, 0.9),
            us(e2e, 0.99),
            us(e2e, 0.999),
            e2e.max()
        );
    }
}
