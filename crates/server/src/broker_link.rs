//! The server's side of the broker (`palaver_proto::work`): join the rotation, beat, take
//! requests, answer them, leave.
//!
//! ```text
//!  join ──▶ connect + ["ready", name, window] ── every BEAT ──▶ ["ready", …] (the heartbeat)
//!  recv ◀── ["request", token, body]            reply ──▶ ["reply", token, body]
//!  leave ──▶ ["leave"] + disconnect: the broker sends what this server held elsewhere
//! ```
//!
//! The broker counts a server silent for 900 ms as gone, so a stopped or stuck server stops
//! getting requests within a second, and the requests it held go to another server with the
//! same token (hence the same request id: they take effect once).

use std::time::{Duration, Instant};

use palaver_proto::work::{ToBroker, ToServer};
use palaver_proto::ProtoError;

use crate::ServerError;

/// How often a server in the rotation tells the broker it is alive.
const BEAT: Duration = Duration::from_millis(250);

/// How many requests a server takes at once: room for a full batch being handled while the
/// one before commits.
const WINDOW: u32 = 2048;

pub(crate) struct BrokerLink {
    socket: zmq::Socket,
    endpoint: String,
    name: String,
    joined: bool,
    next_beat: Instant,
}

/// What arrived from the broker.
pub(crate) enum Arrival {
    Request {
        token: u64,
        body: Vec<u8>,
    },
    /// A frame that is not a request (logged and counted by the caller).
    Unreadable(ProtoError),
}

impl BrokerLink {
    /// A link to the broker's server side at `endpoint`, not yet joined.
    ///
    /// # Errors
    /// When the socket cannot be made.
    pub fn new(
        ctx: &zmq::Context,
        endpoint: &str,
        name: &str,
        credentials: &palaver_auth::Credentials,
    ) -> Result<BrokerLink, ServerError> {
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_rcvhwm(100_000)?;
        socket.set_sndhwm(100_000)?;
        socket.set_linger(2000)?;
        credentials.connect(&socket, endpoint)?;
        Ok(BrokerLink {
            socket,
            endpoint: endpoint.to_owned(),
            name: name.to_owned(),
            joined: false,
            next_beat: Instant::now(),
        })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Joins the rotation: the broker sends requests from the first beat on.
    ///
    /// # Errors
    /// When the endpoint cannot be connected to.
    pub fn join(&mut self, now: Instant) -> Result<(), ServerError> {
        self.socket
            .connect(&self.endpoint)
            .map_err(|source| ServerError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        self.joined = true;
        self.next_beat = now;
        self.beat(now);
        Ok(())
    }

    /// Leaves the rotation: says so (so the broker sends this server's requests elsewhere at
    /// once rather than after the silence), and disconnects.
    pub fn leave(&mut self) {
        if !self.joined {
            return;
        }
        self.farewell();
        if let Err(e) = self.socket.disconnect(&self.endpoint) {
            tracing::warn!(error = %e, "cannot leave the broker");
        }
    }

    /// Says `leave` without disconnecting, for a server that is stopping: its answers, queued
    /// before, still go out as the socket closes (it lingers), and the broker sends whatever
    /// else it held to the others at once instead of after the silence.
    pub fn farewell(&mut self) {
        if std::mem::take(&mut self.joined) {
            let _ = self.socket.send(ToBroker::Leave.encode(), zmq::DONTWAIT);
        }
    }

    /// When the next beat is due, while in the rotation.
    pub fn deadline(&self) -> Option<Instant> {
        self.joined.then_some(self.next_beat)
    }

    /// Beats if one is due.
    pub fn beat(&mut self, now: Instant) {
        if !self.joined || now < self.next_beat {
            return;
        }
        self.next_beat = now + BEAT;
        let ready = ToBroker::Ready {
            name: &self.name,
            window: WINDOW,
        };
        if let Err(e) = self.socket.send(ready.encode(), zmq::DONTWAIT) {
            tracing::debug!(error = %e, "beat not sent");
        }
    }

    /// The next message from the broker, if one waits.
    pub fn recv(&mut self) -> Option<Arrival> {
        match self.socket.recv_bytes(zmq::DONTWAIT) {
            Ok(frame) => Some(match ToServer::decode(&frame) {
                Ok(ToServer::Request { token, body }) => Arrival::Request {
                    token,
                    body: body.to_vec(),
                },
                Err(e) => Arrival::Unreadable(e),
            }),
            Err(zmq::Error::EAGAIN) => None,
            Err(e) => {
                tracing::warn!(error = %e, "receive from the broker failed");
                None
            }
        }
    }

    /// Answers the request the broker named `token`.
    ///
    /// # Errors
    /// When the answer cannot be queued.
    pub fn reply(&self, token: u64, body: &[u8]) -> Result<(), zmq::Error> {
        self.socket
            .send(ToBroker::Reply { token, body }.encode(), zmq::DONTWAIT)
    }
}
