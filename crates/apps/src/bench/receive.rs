//! The subscribers: SUB sockets on the proxy, many per thread, each following the topics the
//! plan gives it. They count deliveries, the end-to-end latency from the moment a message was
//! sent to the moment it arrived, and any message a socket gets twice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use std::borrow::Cow;

use palaver_proto::Envelope;

use super::plan::Plan;
use super::ready::Ready;
use super::{now_ns, Live};

/// Subscriber sockets per receiving thread.
pub(crate) const SOCKETS_PER_THREAD: usize = 25;

/// What a thread's sockets received.
pub(crate) struct Heard {
    /// Messages received, repeats included.
    pub deliveries: u64,
    /// Of those, the ones sent after the warm-up (they make the rate).
    pub measured: u64,
    /// Messages a socket received a second time.
    pub repeated: u64,
    /// Publications the proxy numbered that a socket never received: dropped by the proxy
    /// for a socket too far behind (what was lost before the proxy shows in no gap).
    pub gaps: u64,
    /// End-to-end latency of the measured ones, in microseconds.
    pub latency: Histogram<u64>,
}

impl Heard {
    pub fn new() -> anyhow::Result<Heard> {
        Ok(Heard {
            deliveries: 0,
            measured: 0,
            repeated: 0,
            gaps: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        })
    }

    pub fn add(&mut self, other: &Heard) -> anyhow::Result<()> {
        self.deliveries += other.deliveries;
        self.measured += other.measured;
        self.repeated += other.repeated;
        self.gaps += other.gaps;
        self.latency.add(&other.latency)?;
        Ok(())
    }
}

struct Socket {
    socket: zmq::Socket,
    topics: Vec<String>,
    /// Whether a message on the last topic subscribed has arrived: then every subscription of
    /// this socket is in force (they reach the proxy in order).
    ready: bool,
    /// Per sender, which sequence numbers arrived (a bit each). One sender's messages go
    /// through different servers, so they may arrive out of order.
    seen: Vec<Vec<u64>>,
    /// Messages of this run received, repeats excepted.
    delivered: u64,
    /// Per topic followed, the proxy's number on the last publication (see
    /// `palaver_proto::stamped_seq`).
    seqs: Vec<Option<u64>>,
}

/// Follows the topics of `plan.listeners[i]` for each `i` in `indices` until told to stop.
pub(crate) fn run(
    ctx: &zmq::Context,
    endpoint: &str,
    plan: &Plan,
    indices: &[usize],
    live: &Live,
    slot: usize,
) -> anyhow::Result<Heard> {
    let mut sockets = Vec::with_capacity(indices.len());
    for &i in indices {
        let socket = ctx.socket(zmq::SUB)?;
        socket.set_linger(0)?;
        socket.set_rcvhwm(1_000_000)?;
        socket.connect(endpoint)?;
        let topics: Vec<String> = plan.listeners[i]
            .iter()
            .map(|&t| plan.topic(t).to_owned())
            .collect();
        for t in &topics {
            socket.set_subscribe(t.as_bytes())?;
        }
        sockets.push(Socket {
            socket,
            topics,
            ready: false,
            seen: vec![Vec::new(); plan.users.len()],
            delivered: 0,
            seqs: vec![None; plan.listeners[i].len()],
        });
    }
    let mut heard = Heard::new()?;
    // Frames are read into reused messages and decoded in place: on two cores the
    // subscribers compete with the system they measure, so they should cost little. For the
    // same reason the thread waits on an epoll set of the sockets' signal descriptors, woken
    // only by the sockets that have something, instead of polling every socket each time one
    // has (with a hundred sockets a thread, the kernel spent more on polls than on TCP).
    let ready = Ready::new(sockets.iter().map(|s| &s.socket))?;
    let (mut topic, mut body) = (zmq::Message::new(), zmq::Message::new());
    // Every socket is read once before the first wait: its signal may have fired before it
    // was in the set.
    let mut due: Vec<usize> = (0..sockets.len()).collect();
    while !live.listening_stopped() {
        for &i in &due {
            let s = &mut sockets[i];
            // ZMQ_FD signals edges: read until the socket says it has nothing more.
            while s.socket.get_events()?.contains(zmq::POLLIN) {
                while s.socket.recv(&mut topic, zmq::DONTWAIT).is_ok() {
                    if !topic.get_more() {
                        continue; // a publication has two frames
                    }
                    s.socket.recv(&mut body, 0)?;
                    while body.get_more() {
                        s.socket.recv(&mut body, 0)?; // more than two: not ours
                    }
                    received(s, &topic, &body, live, &mut heard);
                }
            }
        }
        if let (Some(floor), Some(slowest)) = (
            live.floors.get(slot),
            sockets.iter().map(|s| s.delivered).min(),
        ) {
            floor.store(slowest + 1, Ordering::Relaxed);
        }
        due = ready.wait(50)?;
    }
    Ok(heard)
}

/// The `data.message` string of a publication's body: read in place when it is laid out as
/// Palaver's servers write it, decoded in full otherwise.
fn message_text(body: &[u8]) -> Option<Cow<'_, str>> {
    if let Some((_, text)) = Envelope::peek(body, "message") {
        return Some(Cow::Borrowed(text));
    }
    let env = Envelope::decode(body).ok()?;
    let text = env.data.opt_str("message").ok().flatten()?;
    Some(Cow::Owned(text.to_owned()))
}

fn received(s: &mut Socket, topic: &[u8], body: &[u8], live: &Live, heard: &mut Heard) {
    // SUB filters by prefix: `room-1` also brings `room-10`. Only exact topics count.
    let Some(at) = s.topics.iter().position(|t| t.as_bytes() == topic) else {
        return;
    };
    if let (Some(seq), Some(last)) = (palaver_proto::stamped_seq(body), s.seqs.get_mut(at)) {
        if let Some(before) = last.replace(seq) {
            heard.gaps += seq.saturating_sub(before + 1);
        }
    }
    if !s.ready && at + 1 == s.topics.len() {
        s.ready = true;
        live.ready.fetch_add(1, Ordering::SeqCst);
    }
    let Some(text) = message_text(body) else {
        return;
    };
    let mut parts = text.splitn(3, ':');
    let (Some(Ok(sender)), Some(Ok(seq)), Some(sent)) = (
        parts.next().map(str::parse::<usize>),
        parts.next().map(str::parse::<u64>),
        parts.next(),
    ) else {
        return; // a probe
    };
    let Some(bits) = s.seen.get_mut(sender) else {
        return;
    };
    heard.deliveries += 1;
    let (word, bit) = ((seq / 64) as usize, seq % 64);
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    if bits[word] & (1 << bit) != 0 {
        heard.repeated += 1;
    } else {
        bits[word] |= 1 << bit;
        s.delivered += 1;
        live.unique.fetch_add(1, Ordering::Relaxed);
    }
    let sent: u64 = sent.trim_end_matches('.').parse().unwrap_or(0);
    let from = live.measure_from_ns.load(Ordering::Relaxed);
    if from != 0 && sent >= from {
        heard.measured += 1;
        heard.latency.saturating_record(
            Duration::from_nanos(now_ns().saturating_sub(sent)).as_micros() as u64,
        );
        live.delivered.fetch_add(1, Ordering::Relaxed);
    }
}
