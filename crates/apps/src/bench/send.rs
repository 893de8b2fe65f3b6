//! The senders: each client is a DEALER socket with up to `window` requests in flight, as
//! fast as it can or paced at a rate; a thread drives several clients from one poll loop.
//!
//! Every request goes out as `[tag, "", body]`; the broker and the server send the routing
//! frames back in front of the reply, so the tag says which request a reply answers. With
//! pacing, latency is counted from the moment a request was due, not from when it left: a
//! client held back by a slow reply still charges the wait to the system (no coordinated
//! omission).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use palaver_client::SharedClock;
use palaver_proto::{Envelope, Name, Reply, Request, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::plan::{Action, Plan};
use super::{now_ns, Live, Span};

/// How long clients wait for their last replies once they stop sending.
const DRAIN: Duration = Duration::from_secs(5);
/// Longest wait in one poll.
const POLL: Duration = Duration::from_millis(50);

/// How the clients send.
#[derive(Clone, Copy)]
pub(crate) struct Pace {
    pub window: usize,
    /// Requests per second per client; 0 sends as fast as the window allows.
    pub rate: f64,
    /// Bytes of text per message.
    pub size: usize,
    /// Requests per client when the run is counted rather than timed.
    pub count: Option<u64>,
}

/// What a thread's clients measured.
pub(crate) struct Tally {
    /// Requests answered with success, and with an error, after the warm-up.
    pub ok: u64,
    pub errors: u64,
    /// Latency of the successful ones, in microseconds.
    pub latency: Histogram<u64>,
    /// Successful requests per service.
    pub by_service: HashMap<&'static str, u64>,
    /// Posts and private messages answered OK per topic, warm-up included: what the
    /// subscribers should receive.
    pub written: Vec<u64>,
}

impl Tally {
    pub fn new(topics: usize) -> anyhow::Result<Tally> {
        Ok(Tally {
            ok: 0,
            errors: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            by_service: HashMap::new(),
            written: vec![0; topics],
        })
    }

    pub fn add(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latency.add(&other.latency)?;
        for (s, n) in &other.by_service {
            *self.by_service.entry(s).or_default() += n;
        }
        for (a, b) in self.written.iter_mut().zip(&other.written) {
            *a += b;
        }
        Ok(())
    }
}

struct Pending {
    due: Instant,
    action: Action,
    /// The topic a post or private message is published on.
    topic: Option<usize>,
}

struct Client {
    index: usize,
    user: Name,
    socket: zmq::Socket,
    in_flight: HashMap<u64, Pending>,
    sent: u64,
    /// When the next request is due.
    next: Instant,
}

/// Runs the clients `indices` of `plan` until the span ends (or each has sent its count).
pub(crate) fn run(
    ctx: &zmq::Context,
    broker: &str,
    plan: &Plan,
    indices: &[usize],
    pace: Pace,
    span: Span,
    live: &Arc<Live>,
) -> anyhow::Result<Tally> {
    let mut rng = StdRng::from_entropy();
    let mut clients = Vec::with_capacity(indices.len());
    for &index in indices {
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.set_sndhwm(0)?;
        socket.set_rcvhwm(0)?;
        socket.connect(broker)?;
        // Paced clients start at random points of their first interval, not all at once.
        let offset = if pace.rate > 0.0 {
            Duration::from_secs_f64(rng.gen::<f64>() / pace.rate)
        } else {
            Duration::ZERO
        };
        clients.push(Client {
            index,
            user: plan.users[index].clone(),
            socket,
            in_flight: HashMap::new(),
            sent: 0,
            next: span.start + offset,
        });
    }
    let clock = SharedClock::new();
    // Request ids must never repeat across runs, or the servers answer "repeated" and store
    // nothing: they carry this run's start.
    let run = now_ns();
    let mut tally = Tally::new(plan.topic_count())?;
    loop {
        let now = Instant::now();
        let sending = now < span.end && !live.stopped();
        let mut wake = now + POLL;
        for c in &mut clients {
            while sending
                && c.in_flight.len() < pace.window
                && pace.count.is_none_or(|n| c.sent < n)
                && c.next <= now
            {
                c.sent += 1;
                let action = plan.action(c.index, c.sent, &mut rng);
                let body = request(plan, c, action, c.sent, pace.size, run, &clock);
                c.socket
                    .send_multipart([&c.sent.to_be_bytes()[..], &[][..], &body[..]], 0)?;
                let due = if pace.rate > 0.0 { c.next } else { now };
                let topic = match action {
                    Action::Post(t) => Some(t),
                    Action::Direct(to) => Some(plan.user_topic(to)),
                    _ => None,
                };
                c.in_flight.insert(c.sent, Pending { due, action, topic });
                c.next = if pace.rate > 0.0 {
                    c.next + interval(pace.rate, &mut rng)
                } else {
                    now
                };
            }
            if pace.rate > 0.0 && c.next > now {
                wake = wake.min(c.next);
            }
        }
        let done = clients.iter().all(|c| {
            c.in_flight.is_empty() && (!sending || pace.count.is_some_and(|n| c.sent >= n))
        });
        if done || now >= span.end + DRAIN {
            break;
        }
        let readable = {
            let mut items: Vec<zmq::PollItem> = clients
                .iter()
                .map(|c| c.socket.as_poll_item(zmq::POLLIN))
                .collect();
            let ms = wake.saturating_duration_since(now).as_millis().max(1);
            zmq::poll(&mut items, ms as i64)?;
            items
                .iter()
                .map(zmq::PollItem::is_readable)
                .collect::<Vec<_>>()
        };
        for (c, _) in clients.iter_mut().zip(readable).filter(|(_, r)| *r) {
            while let Ok(frames) = c.socket.recv_multipart(zmq::DONTWAIT) {
                answered(c, &frames, span, &clock, &mut tally, live);
            }
        }
    }
    // What never came back counts as failed.
    for c in &clients {
        tally.errors += c
            .in_flight
            .values()
            .filter(|p| p.due >= span.measure_from)
            .count() as u64;
    }
    Ok(tally)
}

/// Exponential gaps: the clients together make a Poisson stream, like people do.
fn interval(rate: f64, rng: &mut impl Rng) -> Duration {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    Duration::from_secs_f64(-u.ln() / rate)
}

/// A request's body. Posts and private messages carry `"<client>:<seq>:<sent ns>"`, padded
/// to `size`, for the subscribers to check.
fn request(
    plan: &Plan,
    c: &Client,
    action: Action,
    seq: u64,
    size: usize,
    run: u64,
    clock: &SharedClock,
) -> Vec<u8> {
    let text = || {
        let mut t = format!("{}:{seq}:{}", c.index, now_ns());
        if t.len() < size {
            t.extend(std::iter::repeat_n('.', size - t.len()));
        }
        t
    };
    let write = |req: Request| {
        req.to_envelope()
            .with("request_id", format!("{}-{run:x}-{seq}", c.user))
    };
    let mut env = match action {
        Action::Post(t) => write(Request::Publish {
            user: c.user.clone(),
            channel: plan.channels[t].clone(),
            message: text(),
        }),
        Action::Direct(to) => write(Request::Message {
            src: c.user.clone(),
            dst: plan.users[to].clone(),
            message: text(),
        }),
        Action::Users => Request::Users.to_envelope(),
        Action::Channels => Request::Channels.to_envelope(),
        Action::History(t) => Envelope::new("history")
            .with("channel", plan.channels[t].as_str())
            .with("limit", 20),
    };
    env.stamp(palaver_proto::now_secs(), clock.tick());
    env.to_bytes()
}

/// A reply: `[tag, "", body]`.
fn answered(
    c: &mut Client,
    frames: &[Vec<u8>],
    span: Span,
    clock: &SharedClock,
    tally: &mut Tally,
    live: &Live,
) {
    let (Some(first), Some(body)) = (frames.first(), frames.last()) else {
        return;
    };
    let Ok(tag) = <[u8; 8]>::try_from(first.as_slice()) else {
        return;
    };
    let Some(p) = c.in_flight.remove(&u64::from_be_bytes(tag)) else {
        return;
    };
    let reply = Envelope::decode(body);
    if let Some(clock_in) = reply.as_ref().ok().and_then(Envelope::clock) {
        clock.observe(clock_in);
    }
    let ok = matches!(reply.as_ref().map(Reply::status), Ok(Status::Success));
    if let (true, Some(t)) = (ok, p.topic) {
        // What the subscribers should see counts from the first request on.
        tally.written[t] += 1;
    }
    if p.due < span.measure_from {
        return;
    }
    if ok {
        tally.ok += 1;
        *tally.by_service.entry(p.action.service()).or_default() += 1;
        tally
            .latency
            .saturating_record(p.due.elapsed().as_micros() as u64);
        live.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.errors += 1;
    }
}
