//! The senders: each client is a DEALER socket with up to `window` requests in flight, as
//! fast as it can or paced at a rate; a thread drives several clients from one poll loop.
//!
//! Each client's requests go through the client core (`palaver_client::calls::Calls`), as
//! every front end's do: a request id on each, answers matched by it, a late request sent
//! again with the same id. With pacing, latency is counted from the moment a request was due,
//! not from when it left: a client held back by a slow reply still charges the wait to the
//! system (no coordinated omission).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use palaver_client::calls::{Calls, Due};
use palaver_client::{SharedClock, DEFAULT_RETRIES, DEFAULT_TIMEOUT};
use palaver_proto::{Conversation, Envelope, HistoryQuery, Name, Reply, Request, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::plan::{Action, Plan};
use super::ready::Ready;
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
    /// Posts at most this far ahead of the slowest subscriber's deliveries, over this many
    /// channels (each subscriber follows one): `None`, no bound.
    pub ahead: Option<(u64, u64)>,
}

/// What a thread's clients measured.
pub(crate) struct Tally {
    /// Requests answered with success, and with an error, after the warm-up.
    pub ok: u64,
    pub errors: u64,
    /// Requests sent again (same id) after a reply took longer than the timeout, warm-up
    /// included.
    pub resent: u64,
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
            resent: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            by_service: HashMap::new(),
            written: vec![0; topics],
        })
    }

    pub fn add(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        self.resent += other.resent;
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
    calls: Calls,
    /// By the core's token.
    in_flight: HashMap<u64, Pending>,
    sent: u64,
    /// When the next request is due.
    next: Instant,
}

/// Reads every reply waiting on `c`'s socket (its signal descriptor signals edges: read until
/// the socket says it has nothing).
fn read_replies(
    c: &mut Client,
    span: Span,
    clock: &SharedClock,
    tally: &mut Tally,
    live: &Live,
) -> anyhow::Result<()> {
    while c.socket.get_events()?.contains(zmq::POLLIN) {
        while let Ok(frames) = c.socket.recv_multipart(zmq::DONTWAIT) {
            answered(c, &frames, span, clock, tally, live);
        }
    }
    Ok(())
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
            calls: Calls::new(
                DEFAULT_TIMEOUT,
                DEFAULT_RETRIES,
                &format!("{}-{:x}", plan.users[index], now_ns()),
            ),
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
    let ready = Ready::new(clients.iter().map(|c| &c.socket))?;
    // Sockets to read: those signalled, and those sent on (a send may take in the signal).
    let mut to_read: Vec<usize> = (0..clients.len()).collect();
    loop {
        let now = Instant::now();
        let sending = now < span.end && !live.stopped();
        let mut wake = now + POLL;
        // How many more posts the slowest subscriber allows now.
        let mut allowed = match pace.ahead {
            None => u64::MAX,
            Some((window, channels)) => {
                let floor = live.slowest().unwrap_or(0).saturating_mul(channels);
                let posts = live.posts.load(Ordering::Relaxed);
                (floor + window * channels).saturating_sub(posts)
            }
        };
        if allowed == 0 {
            wake = wake.min(now + Duration::from_millis(1));
        }
        for (i, c) in clients.iter_mut().enumerate() {
            if sending
                && allowed > 0
                && c.in_flight.len() < pace.window
                && pace.count.is_none_or(|n| c.sent < n)
                && c.next <= now
            {
                to_read.push(i);
            }
            while sending
                && allowed > 0
                && c.in_flight.len() < pace.window
                && pace.count.is_none_or(|n| c.sent < n)
                && c.next <= now
            {
                c.sent += 1;
                let action = plan.action(c.index, c.sent, &mut rng);
                let env = request(plan, c, action, c.sent, pace.size, run, &clock);
                let (token, frame) = c.calls.start(now, env);
                c.socket.send_multipart([&[][..], frame], 0)?;
                let due = if pace.rate > 0.0 { c.next } else { now };
                let topic = match action {
                    Action::Post(t) => {
                        allowed -= 1;
                        live.posts.fetch_add(1, Ordering::Relaxed);
                        Some(t)
                    }
                    Action::Direct(to) => Some(plan.user_topic(to)),
                    _ => None,
                };
                c.in_flight.insert(token, Pending { due, action, topic });
                c.next = if pace.rate > 0.0 {
                    c.next + interval(pace.rate, &mut rng)
                } else {
                    now
                };
            }
            if pace.rate > 0.0 && c.next > now {
                wake = wake.min(c.next);
            }
            for due in c.calls.on_timeout(now) {
                match due {
                    Due::Resend(frame) => {
                        c.socket.send_multipart([&[][..], &frame[..]], 0)?;
                        tally.resent += 1;
                        to_read.push(i);
                    }
                    Due::GaveUp(token) => {
                        if let Some(p) = c.in_flight.remove(&token) {
                            if p.due >= span.measure_from {
                                tally.errors += 1;
                            }
                        }
                    }
                }
            }
            if let Some(d) = c.calls.deadline() {
                wake = wake.min(d);
            }
        }
        let done = clients.iter().all(|c| {
            c.in_flight.is_empty() && (!sending || pace.count.is_some_and(|n| c.sent >= n))
        });
        if done || now >= span.end + DRAIN {
            break;
        }
        // Read what the sends may have taken in the signal of, wait, read what woke.
        for i in std::mem::take(&mut to_read) {
            read_replies(&mut clients[i], span, &clock, &mut tally, live)?;
        }
        let ms = wake
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1);
        for i in ready.wait(i32::try_from(ms).unwrap_or(i32::MAX))? {
            read_replies(&mut clients[i], span, &clock, &mut tally, live)?;
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
) -> Envelope {
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
        Action::Users => Request::Users {}.to_envelope(),
        Action::Channels => Request::Channels {}.to_envelope(),
        Action::History(t) => Request::History {
            query: HistoryQuery {
                of: Conversation::Channel(plan.channels[t].clone()),
                limit: 20,
                before: None,
                after: None,
                window: Default::default(),
            },
        }
        .to_envelope(),
    };
    env.stamp(palaver_proto::now_secs(), clock.tick());
    env
}

/// A reply: `["", body]`, matched to its request by the core.
fn answered(
    c: &mut Client,
    frames: &[Vec<u8>],
    span: Span,
    clock: &SharedClock,
    tally: &mut Tally,
    live: &Live,
) {
    let Some(body) = frames.last() else {
        return;
    };
    let Some((token, reply)) = c.calls.on_frame(Instant::now(), body) else {
        return;
    };
    let Some(p) = c.in_flight.remove(&token) else {
        return;
    };
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
