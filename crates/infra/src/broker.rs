//! The broker: clients' requests to live servers, and their answers back.
//!
//! ```text
//!  clients (REQ/DEALER) ──▶ ROUTER front ──submit──▶ Balancer ──dispatch──▶ ROUTER back ──▶ servers
//!                         ◀── [route…, body] ◀── on_reply(token) ◀── ["reply", token, body] ◀──┘
//! ```
//!
//! The policy (who is live, who takes what, what a silent server's requests become) is
//! `palaver_core::balance`; this is its driver. Servers speak `palaver_proto::work` to it.
//! What the broker refuses itself, with an `erro` the client can read: a frame larger than
//! [`MAX_FRAME_BYTES`], a request that finds the queue full, and one that waited
//! [`Config::queue_deadline`] without any server to take it. What it drops: a client's copy of
//! a request it still holds (same connection, same `request_id`), which the first copy answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use palaver_auth::Credentials;
use palaver_core::balance::{Balancer, Change, Config, Submitted};
use palaver_core::{LogGate, Shutdown};
use palaver_proto::work::{ToBroker, ToServer, MAX_WORK_BYTES};
use palaver_proto::{now_secs, Envelope, ProtoError, Reply, MAX_FRAME_BYTES};

use crate::{bind, InfraError, BROKER_MAX_MSG};

/// How long the loop waits before it looks at the shutdown flag again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Messages read from one side before the loop turns to the other.
const READ_BURST: usize = 256;

/// A client's request while the broker holds it: the way back, and the bytes to send (again).
struct Held {
    route: Vec<Vec<u8>>,
    body: Vec<u8>,
}

struct Broker {
    front: zmq::Socket,
    back: zmq::Socket,
    balancer: Balancer<Vec<u8>, Held>,
    /// Each server's name, by its connection, for the log.
    names: HashMap<Vec<u8>, String>,
    bad_log: LogGate,
    repeat_log: LogGate,
    bad: u64,
    dropped: u64,
}

/// Runs the broker until `shutdown` is triggered. Its client side is open to anyone; its server
/// side admits only processes holding the cluster's `credentials`.
///
/// # Errors
/// When an endpoint cannot be bound.
pub fn run_broker(
    frontend: &str,
    backend: &str,
    credentials: &Credentials,
    shutdown: &Shutdown,
) -> Result<(), InfraError> {
    let ctx = zmq::Context::new();
    credentials.guard(&ctx, "broker")?;
    let front = ctx.socket(zmq::ROUTER)?;
    front.set_maxmsgsize(BROKER_MAX_MSG)?;
    front.set_rcvhwm(100_000)?;
    front.set_sndhwm(100_000)?;
    bind(&front, "broker frontend", frontend)?;
    let back = ctx.socket(zmq::ROUTER)?;
    back.set_rcvhwm(100_000)?;
    back.set_sndhwm(100_000)?;
    // A frame to a server that is gone fails at once (instead of vanishing): its request goes
    // to another server.
    back.set_router_mandatory(true)?;
    // Answers can be far larger than requests (the longest history page is about 8 MiB).
    back.set_maxmsgsize(i64::try_from(MAX_WORK_BYTES).unwrap_or(i64::MAX))?;
    credentials.serve(&back, backend)?;
    bind(&back, "broker backend", backend)?;
    tracing::info!(frontend, backend, "broker ready");
    palaver_supervise::notify_ready();
    let mut broker = Broker {
        front,
        back,
        balancer: Balancer::new(Config::default(), rand::random()),
        names: HashMap::new(),
        bad_log: LogGate::every_second(),
        repeat_log: LogGate::every_second(),
        bad: 0,
        dropped: 0,
    };
    while !shutdown.is_triggered() {
        let now = Instant::now();
        let wait = broker
            .balancer
            .deadline()
            .map_or(POLL_INTERVAL, |d| d.saturating_duration_since(now))
            .min(POLL_INTERVAL);
        let (front_in, back_in) = {
            let mut items = [
                broker.front.as_poll_item(zmq::POLLIN),
                broker.back.as_poll_item(zmq::POLLIN),
            ];
            let ms = i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
            match zmq::poll(&mut items, ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => tracing::warn!(error = %e, "poll failed"),
            }
            (items[0].is_readable(), items[1].is_readable())
        };
        let now = Instant::now();
        if back_in {
            broker.read_servers(now);
        }
        if front_in {
            broker.read_clients(now);
        }
        for held in broker.balancer.tick(now) {
            broker.refuse(&held, "no server could take the request in time; try again");
        }
        broker.log_changes();
        broker.dispatch(now);
    }
    tracing::info!("broker stopped");
    Ok(())
}

/// What names a request to the balancer when its client sent it again: the client's route
/// (its connection) and the request id it gave, when it gave one.
fn client_key(held: &Held) -> Option<Vec<u8>> {
    let (_, id) = Envelope::peek(&held.body, "request_id")?;
    let mut key = Vec::with_capacity(id.len() + 16);
    for frame in &held.route {
        key.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        key.extend_from_slice(frame);
    }
    key.extend_from_slice(id.as_bytes());
    Some(key)
}

impl Broker {
    fn read_clients(&mut self, now: Instant) {
        for _ in 0..READ_BURST {
            let mut frames = match self.front.recv_multipart(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    break;
                }
            };
            let Some(body) = frames.pop() else { continue };
            if frames.is_empty() {
                continue;
            }
            let held = Held {
                route: frames,
                body,
            };
            if held.body.len() > MAX_FRAME_BYTES {
                let err = ProtoError::TooLarge {
                    size: held.body.len(),
                    max: MAX_FRAME_BYTES,
                };
                if let Some(quiet) = self.bad_log.admit(now) {
                    tracing::warn!(
                        bytes = held.body.len(),
                        unlogged = quiet,
                        "refused an oversized frame"
                    );
                }
                self.refuse(&held, &err.to_string());
                continue;
            }
            let bytes = held.body.len();
            let submitted = match client_key(&held) {
                Some(key) => self.balancer.submit_keyed(now, held, bytes, key),
                None => self
                    .balancer
                    .submit(now, held, bytes)
                    .map(Submitted::Queued),
            };
            match submitted {
                Ok(Submitted::Queued(_)) => {}
                Ok(Submitted::Repeat) => self.note_repeat(now),
                Err(held) => {
                    self.note_busy(now);
                    self.refuse(&held, "the cluster is busy; try again");
                }
            }
        }
    }

    fn note_repeat(&mut self, now: Instant) {
        if let Some(quiet) = self.repeat_log.admit(now) {
            tracing::info!(
                repeats = self.balancer.counts().repeats,
                unlogged = quiet,
                "a client sent a request again while its first copy was held: the first answers it"
            );
        }
    }

    fn note_busy(&mut self, now: Instant) {
        let busy = self.balancer.counts().busy;
        if let Some(quiet) = self.bad_log.admit(now) {
            tracing::warn!(
                refused = busy,
                unlogged = quiet,
                queued = self.balancer.queued(),
                in_flight = self.balancer.in_flight(),
                "queue full: requests refused"
            );
        }
    }

    fn read_servers(&mut self, now: Instant) {
        for _ in 0..READ_BURST {
            let frames = match self.back.recv_multipart(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    break;
                }
            };
            let [id, frame] = frames.as_slice() else {
                self.bad_frame(now, &format!("{} frames", frames.len()));
                continue;
            };
            match ToBroker::decode(frame) {
                Ok(ToBroker::Ready { name, window }) => {
                    if !self.names.contains_key(id) {
                        self.names.insert(id.clone(), name.to_owned());
                    }
                    self.balancer.on_beat(now, id.clone(), window as usize);
                }
                Ok(ToBroker::Reply { token, body }) => {
                    if let Some(held) = self.balancer.on_reply(now, id, token) {
                        self.answer_client(&held.route, body);
                    }
                }
                Ok(ToBroker::Leave) => self.balancer.on_leave(now, id),
                Err(e) => {
                    self.balancer.on_heard(now, id);
                    self.bad_frame(now, &e.to_string());
                }
            }
        }
    }

    fn bad_frame(&mut self, now: Instant, why: &str) {
        self.bad += 1;
        if let Some(quiet) = self.bad_log.admit(now) {
            tracing::warn!(
                error = why,
                bad = self.bad,
                unlogged = quiet,
                "unreadable message from a server"
            );
        }
    }

    /// Sends what waits to the servers that have room.
    fn dispatch(&mut self, now: Instant) {
        while let Some((id, token, held)) = self.balancer.dispatch() {
            let frame = ToServer::Request {
                token,
                body: &held.body,
            }
            .encode();
            if let Err(e) = self
                .back
                .send_multipart([id.as_slice(), &frame], zmq::DONTWAIT)
            {
                // Gone, or not reading: its requests (this one included) go to the others.
                tracing::warn!(error = %e, "a server cannot be reached; its requests go elsewhere");
                self.balancer.on_leave(now, &id);
            }
        }
    }

    fn answer_client(&mut self, route: &[Vec<u8>], body: &[u8]) {
        let mut frames: Vec<&[u8]> = route.iter().map(Vec::as_slice).collect();
        frames.push(body);
        if let Err(e) = self.front.send_multipart(frames, zmq::DONTWAIT) {
            self.dropped += 1;
            if let Some(quiet) = self.bad_log.admit(Instant::now()) {
                tracing::warn!(error = %e, dropped = self.dropped, unlogged = quiet, "answer to a client dropped");
            }
        }
    }

    /// Answers a request with an `erro` of the broker's own.
    fn refuse(&mut self, held: &Held, why: &str) {
        let service = Envelope::sniff_service(&held.body);
        let mut reply = Reply::error(service.as_deref().unwrap_or("error"), why);
        // The broker keeps no Lamport clock: 0 moves no client's clock.
        reply.stamp(now_secs(), 0);
        self.answer_client(&held.route, &reply.to_bytes());
    }

    fn log_changes(&mut self) {
        for change in self.balancer.take_changes() {
            let counts = self.balancer.counts();
            match change {
                Change::Joined(id) => tracing::info!(
                    server = self.names.get(&id).map_or("?", String::as_str),
                    servers = self.balancer.live(),
                    "a server joined the rotation"
                ),
                Change::Lost { server, requeued } => tracing::warn!(
                    server = self.names.remove(&server).as_deref().unwrap_or("?"),
                    servers = self.balancer.live(),
                    requeued,
                    resent = counts.resent,
                    late = counts.late,
                    "a server went silent or left: its requests go to the others"
                ),
            }
        }
    }
}
