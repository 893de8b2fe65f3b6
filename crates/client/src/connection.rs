use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palaver_proto::{now_secs, Envelope, Name, Reply, Request, Status};

use palaver_auth::Credentials;

use crate::{ClientError, SharedClock};

/// How long to wait for one attempt's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);
/// Attempts per request before giving up.
pub const DEFAULT_RETRIES: u32 = 3;

/// A request socket to the broker that survives a dead server.
///
/// A REQ socket that loses its request (the server died holding it) would wait forever; this
/// one waits `timeout`, then throws the socket away, opens a new one and sends again (the
/// "lazy pirate" pattern), up to `retries` attempts.
pub struct Connection {
    ctx: zmq::Context,
    endpoint: String,
    socket: zmq::Socket,
    clock: SharedClock,
    timeout: Duration,
    retries: u32,
    /// The cluster's credentials, for an internal endpoint (a server's peer endpoint, the
    /// reference); `None` for the open broker port.
    credentials: Option<Credentials>,
}

impl Connection {
    /// Opens a connection to `endpoint` (say `tcp://127.0.0.1:5555`). ZeroMQ connects lazily, so
    /// this succeeds even before the broker is up.
    ///
    /// # Errors
    /// When the endpoint is malformed.
    pub fn open(
        ctx: &zmq::Context,
        endpoint: &str,
        clock: SharedClock,
    ) -> Result<Connection, ClientError> {
        Connection::open_with(ctx, endpoint, clock, None)
    }

    /// Opens a connection to an endpoint that only the cluster may use (a server's peer
    /// endpoint, the reference), presenting the cluster's `credentials`.
    ///
    /// # Errors
    /// When the endpoint is malformed.
    pub fn open_internal(
        ctx: &zmq::Context,
        endpoint: &str,
        clock: SharedClock,
        credentials: &Credentials,
    ) -> Result<Connection, ClientError> {
        Connection::open_with(ctx, endpoint, clock, Some(credentials.clone()))
    }

    fn open_with(
        ctx: &zmq::Context,
        endpoint: &str,
        clock: SharedClock,
        credentials: Option<Credentials>,
    ) -> Result<Connection, ClientError> {
        let socket = req_socket(ctx, endpoint, credentials.as_ref())?;
        Ok(Connection {
            ctx: ctx.clone(),
            endpoint: endpoint.to_owned(),
            socket,
            clock,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            credentials,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration, retries: u32) -> Connection {
        self.timeout = timeout;
        self.retries = retries.max(1);
        self
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Sends `env` (stamped with the time and the Lamport clock) and returns the reply, whatever
    /// its status.
    ///
    /// # Errors
    /// On timeout after every attempt, or a reply that does not decode.
    pub fn call(&mut self, mut env: Envelope) -> Result<Envelope, ClientError> {
        env.stamp(now_secs(), self.clock.tick());
        let bytes = env.to_bytes();
        self.call_raw(&bytes)
    }

    /// Sends a frame as it is, for tests that need to send what no well-behaved client would.
    ///
    /// # Errors
    /// As [`Connection::call`].
    pub fn call_raw(&mut self, bytes: &[u8]) -> Result<Envelope, ClientError> {
        for attempt in 1..=self.retries {
            self.socket.send(bytes, 0)?;
            if self
                .socket
                .poll(zmq::POLLIN, self.timeout.as_millis() as i64)?
                > 0
            {
                let reply = Envelope::decode(&self.socket.recv_bytes(0)?)?;
                if let Some(clock) = reply.clock() {
                    self.clock.observe(clock);
                }
                return Ok(reply);
            }
            tracing::debug!(attempt, endpoint = %self.endpoint, "no reply; reconnecting");
            self.socket = req_socket(&self.ctx, &self.endpoint, self.credentials.as_ref())?;
        }
        Err(ClientError::Timeout {
            attempts: self.retries,
        })
    }

    /// Sends a request and turns an `erro` reply into [`ClientError::Refused`].
    ///
    /// # Errors
    /// As [`Connection::call`], and when the server refuses.
    pub fn request(&mut self, req: &Request) -> Result<Envelope, ClientError> {
        let mut env = req.to_envelope();
        if req.writes() {
            // The same id on every retry: a write that did reach a server before its reply was
            // lost takes effect once, whichever server the retry reaches.
            env = env.with("request_id", new_request_id());
        }
        let reply = self.call(env)?;
        match Reply::status(&reply) {
            Status::Success => Ok(reply),
            Status::Error => Err(ClientError::Refused(
                Reply::error_text(&reply).unwrap_or_else(|| "refused".to_owned()),
            )),
        }
    }

    /// Logs in as `user`.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn login(&mut self, user: &Name) -> Result<(), ClientError> {
        self.request(&Request::Login { user: user.clone() })
            .map(drop)
    }

    /// The registered users.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn users(&mut self) -> Result<Vec<String>, ClientError> {
        Ok(self.request(&Request::Users)?.data.str_list("users")?)
    }

    /// The existing channels.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn channels(&mut self) -> Result<Vec<String>, ClientError> {
        let reply = self.request(&Request::Channels)?;
        Ok(reply
            .data
            .str_list("channels")
            .or_else(|_| reply.data.str_list("users"))?)
    }

    /// Creates a channel.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when the channel exists.
    pub fn create_channel(&mut self, channel: &Name) -> Result<(), ClientError> {
        self.request(&Request::Channel {
            channel: channel.clone(),
        })
        .map(drop)
    }

    /// Posts to a channel.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn publish(
        &mut self,
        user: &Name,
        channel: &Name,
        message: &str,
    ) -> Result<(), ClientError> {
        let req = Request::Publish {
            user: user.clone(),
            channel: channel.clone(),
            message: message.to_owned(),
        };
        self.request(&req).map(drop)
    }

    /// Sends a private message.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn message(&mut self, src: &Name, dst: &Name, message: &str) -> Result<(), ClientError> {
        let req = Request::Message {
            src: src.clone(),
            dst: dst.clone(),
            message: message.to_owned(),
        };
        self.request(&req).map(drop)
    }
}

fn req_socket(
    ctx: &zmq::Context,
    endpoint: &str,
    credentials: Option<&Credentials>,
) -> Result<zmq::Socket, ClientError> {
    let socket = ctx.socket(zmq::REQ)?;
    socket.set_linger(0)?;
    if let Some(c) = credentials {
        c.connect(&socket)?;
    }
    socket.connect(endpoint)?;
    Ok(socket)
}

/// An id unique to this process and moment: process id, time in nanoseconds, and a counter.
fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}
