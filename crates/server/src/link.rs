use std::time::{Duration, Instant};

use palaver_core::pending::{Matched, Pending};
use palaver_core::LogGate;
use palaver_proto::{Envelope, ProtoError};

/// A request channel to one peer (another server, or the reference): a DEALER socket. Every
/// request carries a correlation id (`cid`) that the peer's answer repeats, so answers are
/// matched to their requests whatever their order; each request waits at most `timeout`. When
/// one times out and the peer has said nothing since it was sent, the socket is replaced
/// (dropping whatever it still queued for a dead peer): the "lazy pirate" pattern, without
/// blocking. A late or unknown answer is logged (rate-limited), counted and dropped.
pub struct Link<K> {
    ctx: zmq::Context,
    endpoint: String,
    socket: zmq::Socket,
    pending: Pending<K>,
    /// When the peer last answered anything.
    heard: Option<Instant>,
    credentials: palaver_auth::Credentials,
    /// Answers that matched no request in flight.
    unknown: u64,
    unknown_log: LogGate,
}

/// What happened to a request.
pub enum Outcome<K> {
    Reply(K, Result<Envelope, ProtoError>),
    Timeout(K),
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
            pending: Pending::new(timeout),
            heard: None,
            credentials: credentials.clone(),
            unknown: 0,
            unknown_log: LogGate::every_second(),
        })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Sends a stamped request with a correlation id. Returns false (and sends nothing) when
    /// too many are in flight or the socket refuses.
    pub fn send(&mut self, kind: K, env: &Envelope, now: Instant) -> bool {
        if self.pending.len() >= MAX_IN_FLIGHT {
            return false;
        }
        let cid = self.pending.insert(now, kind);
        let body = env.clone().with("cid", cid).to_bytes();
        // An empty delimiter first, so a REP socket (another implementation's) can answer.
        match self
            .socket
            .send_multipart([&[][..], &body[..]], zmq::DONTWAIT)
        {
            Ok(()) => true,
            Err(_) => {
                self.pending.cancel(cid);
                false
            }
        }
    }

    /// Reads every answer waiting, matching each to its request by correlation id (an answer
    /// without one, from another implementation, takes the oldest request).
    pub fn read(&mut self, now: Instant, out: &mut Vec<Outcome<K>>) {
        while let Ok(mut frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            self.heard = Some(now);
            let body = frames.pop().unwrap_or_default();
            let decoded = Envelope::decode(&body);
            let cid = match &decoded {
                Ok(env) => env.data.opt_counter("cid").ok().flatten(),
                Err(_) => None,
            };
            match self.pending.on_reply(cid) {
                Matched::Request(f) => out.push(Outcome::Reply(f.what, decoded)),
                Matched::Unknown => {
                    self.unknown += 1;
                    if let Some(quiet) = self.unknown_log.admit(now) {
                        tracing::debug!(endpoint = %self.endpoint, cid, unknown = self.unknown,
                            unlogged = quiet, "an answer matched no request in flight (late?); dropped");
                    }
                }
            }
        }
    }

    /// When the next request in flight times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.deadline()
    }

    /// Times out the requests in flight that are overdue. If the peer has said nothing since
    /// the oldest of them was sent, the socket is replaced and everything in flight is given
    /// up: the peer is silent, and its answers could no longer arrive.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Outcome<K>>) {
        let overdue = self.pending.expire(now);
        let Some(oldest) = overdue.iter().map(|f| f.sent).min() else {
            return;
        };
        let silent = self.heard.is_none_or(|h| h < oldest);
        let mut lost = overdue;
        if silent {
            lost.extend(self.pending.drain());
            match dealer(&self.ctx, &self.endpoint, &self.credentials) {
                Ok(socket) => self.socket = socket,
                Err(e) => {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "cannot reopen link")
                }
            }
        }
        lost.sort_by_key(|f| f.sent);
        out.extend(lost.into_iter().map(|f| Outcome::Timeout(f.what)));
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
    credentials.connect(&socket, endpoint)?;
    socket.set_linger(0)?;
    socket.set_sndhwm(1000)?;
    socket.connect(endpoint)?;
    Ok(socket)
}
