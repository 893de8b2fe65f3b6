use std::collections::VecDeque;
use std::time::{Duration, Instant};

use palaver_proto::{Envelope, ProtoError};

/// A request channel to one peer (another server, or the reference): a DEALER socket whose
/// requests the peer answers in order. Each request waits at most `timeout`; when the oldest
/// one times out, the socket is replaced (dropping whatever it still queued) and every request
/// in flight counts as unanswered: the "lazy pirate" pattern, without blocking.
pub struct Link<K> {
    ctx: zmq::Context,
    endpoint: String,
    socket: zmq::Socket,
    pending: VecDeque<Sent<K>>,
    timeout: Duration,
    credentials: palaver_auth::Credentials,
}

/// A request in flight.
pub struct Sent<K> {
    pub kind: K,
    pub at: Instant,
    /// The sender's physical clock when it sent (for round-trip estimates).
    pub clock: f64,
}

/// What happened to a request.
pub enum Outcome<K> {
    Reply(Sent<K>, Result<Envelope, ProtoError>),
    Timeout(Sent<K>),
}

/// The most requests a link keeps in flight; more are refused rather than queued.
const MAX_IN_FLIGHT: usize = 64;

impl<K> Link<K> {
    /// Connects to `endpoint`.
    ///
    /// # Errors
    /// When the endpoint is malformed.
    pub fn open(
        ctx: &zmq::Context,
        endpoint: &str,
        timeout: Duration,
        credentials: &palaver_auth::Credentials,
    ) -> Result<Link<K>, crate::ServerError> {
        Ok(Link {
            ctx: ctx.clone(),
            endpoint: endpoint.to_owned(),
            socket: dealer(ctx, endpoint, credentials)?,
            pending: VecDeque::new(),
            timeout,
            credentials: credentials.clone(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Requests of this kind in flight.
    pub fn in_flight(&self, pred: impl Fn(&K) -> bool) -> usize {
        self.pending.iter().filter(|s| pred(&s.kind)).count()
    }

    /// Sends a stamped request. Returns false (and sends nothing) when too many are in flight or
    /// the socket refuses.
    pub fn send(&mut self, kind: K, env: &Envelope, now: Instant, clock: f64) -> bool {
        if self.pending.len() >= MAX_IN_FLIGHT {
            return false;
        }
        let body = env.to_bytes();
        // An empty delimiter first, so a REP socket (another implementation's) can answer.
        match self
            .socket
            .send_multipart([&[][..], &body[..]], zmq::DONTWAIT)
        {
            Ok(()) => {
                self.pending.push_back(Sent {
                    kind,
                    at: now,
                    clock,
                });
                true
            }
            Err(_) => false,
        }
    }

    /// Reads every reply waiting, matching each to the oldest request in flight.
    pub fn read(&mut self, out: &mut Vec<Outcome<K>>) {
        while let Ok(mut frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let body = frames.pop().unwrap_or_default();
            let Some(sent) = self.pending.pop_front() else {
                continue;
            };
            out.push(Outcome::Reply(sent, Envelope::decode(&body)));
        }
    }

    /// When the oldest request in flight times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.front().map(|s| s.at + self.timeout)
    }

    /// Times out the requests in flight if the oldest is overdue.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Outcome<K>>) {
        if self.deadline().is_some_and(|d| now >= d) {
            out.extend(self.pending.drain(..).map(Outcome::Timeout));
            match dealer(&self.ctx, &self.endpoint, &self.credentials) {
                Ok(socket) => self.socket = socket,
                Err(e) => {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "cannot reopen link")
                }
            }
        }
    }
}

/// Sends `body` back along `route`, the routing frames a ROUTER or DEALER socket received in
/// front of a request.
pub fn send_routed(socket: &zmq::Socket, route: &[Vec<u8>], body: &[u8]) -> Result<(), zmq::Error> {
    let frames = route.iter().map(Vec::as_slice).chain(std::iter::once(body));
    socket.send_multipart(frames, zmq::DONTWAIT)
}

fn dealer(
    ctx: &zmq::Context,
    endpoint: &str,
    credentials: &palaver_auth::Credentials,
) -> Result<zmq::Socket, crate::ServerError> {
    let socket = ctx.socket(zmq::DEALER)?;
    credentials.connect(&socket)?;
    socket.set_linger(0)?;
    socket.set_sndhwm(1000)?;
    socket.connect(endpoint)?;
    Ok(socket)
}
