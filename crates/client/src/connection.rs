use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palaver_proto::{now_secs, Envelope, Name, Reply, Request, Status};

use palaver_auth::Credentials;

use crate::calls::{Calls, Due};
use crate::{ClientError, SharedClock};

/// How long to wait for one attempt's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);
/// Attempts per request before giving up.
pub const DEFAULT_RETRIES: u32 = 3;

/// A request's token, and its reply or why there is none.
pub type Answer = (u64, Result<Envelope, ClientError>);

/// A connection to the broker (or to an internal endpoint) that survives a dead server: the
/// blocking driver of the client core ([`Calls`]).
///
/// One DEALER socket carries the requests; each has a request id, which the answer repeats.
/// A request whose answer is late is sent again, the same bytes on the same socket, up to
/// `retries` attempts; the broker hands it to a live server, and the request id makes it take
/// effect once. Answers to earlier attempts are recognised and dropped.
pub struct Connection {
    endpoint: String,
    socket: zmq::Socket,
    clock: SharedClock,
    calls: Calls,
    /// Answers that arrived while waiting for another request's, kept for
    /// [`Connection::next_answer`].
    answered: std::collections::BTreeMap<u64, Result<Envelope, ClientError>>,
    /// The session token from `login`, sent with every request (it proves who is asking).
    token: Option<String>,
    /// The coordinator the last `login` answer named.
    coordinator: Option<String>,
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
        Connection::open_with(ctx, endpoint, clock, Some(credentials))
    }

    fn open_with(
        ctx: &zmq::Context,
        endpoint: &str,
        clock: SharedClock,
        credentials: Option<&Credentials>,
    ) -> Result<Connection, ClientError> {
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        if let Some(c) = credentials {
            c.connect(&socket, endpoint)?;
        }
        socket.connect(endpoint)?;
        Ok(Connection {
            endpoint: endpoint.to_owned(),
            socket,
            clock,
            calls: Calls::new(DEFAULT_TIMEOUT, DEFAULT_RETRIES, &new_prefix()),
            answered: std::collections::BTreeMap::new(),
            token: None,
            coordinator: None,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration, retries: u32) -> Connection {
        self.calls = Calls::new(timeout, retries, &new_prefix());
        self
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Sends `env` (stamped with the time and the Lamport clock, and given a request id when
    /// it has none) and returns the reply, whatever its status.
    ///
    /// # Errors
    /// On timeout after every attempt, or a reply that does not decode.
    pub fn call(&mut self, env: Envelope) -> Result<Envelope, ClientError> {
        let token = self.send_request(env)?;
        let reply = self.wait(token)?;
        if let Ok(Some(c)) = reply.data.opt_str("coordinator") {
            self.coordinator = Some(c.to_owned());
        }
        Ok(reply)
    }

    /// The coordinator that the last answer naming one (a `login`'s) named.
    pub fn coordinator(&self) -> Option<&str> {
        self.coordinator.as_deref()
    }

    /// Sends `env` (stamped, and given a request id when it has none) without waiting for its
    /// answer: many may be in flight at once. Returns its token; the answer comes from
    /// [`Connection::next_answer`].
    ///
    /// # Errors
    /// When the frame cannot be queued.
    pub fn send_request(&mut self, mut env: Envelope) -> Result<u64, ClientError> {
        if let Some(token) = &self.token {
            if env.data.get("token").is_none() {
                env.data.set("token", token.as_str());
            }
        }
        env.stamp(now_secs(), self.clock.tick());
        let (token, frame) = self.calls.start(Instant::now(), env);
        send(&self.socket, frame)?;
        Ok(token)
    }

    /// The next answer to a request sent with [`Connection::send_request`] (its token, and the
    /// reply or why there is none), waiting until `until` at most. Late requests are sent
    /// again meanwhile.
    ///
    /// # Errors
    /// On a socket error.
    pub fn next_answer(&mut self, until: Instant) -> Result<Option<Answer>, ClientError> {
        loop {
            if let Some(first) = self.answered.pop_first() {
                return Ok(Some(first));
            }
            if self.calls.in_flight() == 0 || Instant::now() >= until {
                return Ok(None);
            }
            self.turn(until)?;
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.calls.in_flight()
    }

    /// Sends a frame as it is (no request id is added), for tests that need to send what no
    /// well-behaved client would. Its answer is the next one without a request id.
    ///
    /// # Errors
    /// As [`Connection::call`].
    pub fn call_raw(&mut self, bytes: &[u8]) -> Result<Envelope, ClientError> {
        let token = self.calls.start_frame(Instant::now(), bytes.to_vec());
        send(&self.socket, bytes)?;
        self.wait(token)
    }

    /// Drives the core until `token` is answered or given up.
    fn wait(&mut self, token: u64) -> Result<Envelope, ClientError> {
        loop {
            if let Some(answer) = self.answered.remove(&token) {
                return answer;
            }
            self.turn(Instant::now() + Duration::from_secs(3600))?;
        }
    }

    /// One turn of the driver: what is due is sent again or given up, and at most one answer
    /// is read (waiting until the next deadline, or `until`).
    fn turn(&mut self, until: Instant) -> Result<(), ClientError> {
        let now = Instant::now();
        for due in self.calls.on_timeout(now) {
            match due {
                Due::Resend(frame) => {
                    tracing::debug!(endpoint = %self.endpoint, "no reply yet; sending again");
                    send(&self.socket, &frame)?;
                }
                Due::GaveUp(t) => {
                    let attempts = self.calls.attempts();
                    self.answered
                        .insert(t, Err(ClientError::Timeout { attempts }));
                }
            }
        }
        if !self.answered.is_empty() {
            return Ok(());
        }
        let wait = self
            .calls
            .deadline()
            .unwrap_or(until)
            .min(until)
            .saturating_duration_since(now);
        let ms = i64::try_from(wait.as_millis().max(1)).unwrap_or(i64::MAX);
        match self.socket.poll(zmq::POLLIN, ms) {
            Ok(0) | Err(zmq::Error::EINTR) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let mut frames = self.socket.recv_multipart(0)?;
        let body = frames.pop().unwrap_or_default();
        if let Some((t, reply)) = self.calls.on_frame(Instant::now(), &body) {
            if let Ok(reply) = &reply {
                if let Some(clock) = reply.clock() {
                    self.clock.observe(clock);
                }
            }
            self.answered.insert(t, reply.map_err(ClientError::from));
        }
        Ok(())
    }

    /// Sends a request and turns an `erro` reply into [`ClientError::Refused`].
    ///
    /// # Errors
    /// As [`Connection::call`], and when the server refuses.
    pub fn request(&mut self, req: &Request) -> Result<Envelope, ClientError> {
        // Every request gets an id (the core adds it), the same on every attempt: a write that
        // did reach a server before its reply was lost takes effect once, whichever server the
        // retry reaches.
        self.call_checked(req.to_envelope())
    }

    /// Sends `env` and turns an `erro` reply into [`ClientError::Refused`].
    fn call_checked(&mut self, env: Envelope) -> Result<Envelope, ClientError> {
        let reply = self.call(env)?;
        match Reply::status(&reply) {
            Status::Success => Ok(reply),
            Status::Error => Err(ClientError::Refused(
                Reply::error_text(&reply).unwrap_or_else(|| "refused".to_owned()),
            )),
        }
    }

    /// Logs in as `user` (a name without a password, or with this connection's session).
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn login(&mut self, user: &Name) -> Result<(), ClientError> {
        self.request(&Request::Login { user: user.clone() })
            .map(drop)
    }

    /// The session token this connection sends with every request, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends `token` with every request from now on (or none).
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// Sends `req` with a `password` field.
    fn with_password(&mut self, req: &Request, password: &str) -> Result<Envelope, ClientError> {
        self.call_checked(req.to_envelope().with("password", password))
    }

    /// Gives `user` a password (the name becomes an account).
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when the name is taken or the password too weak.
    pub fn register(&mut self, user: &Name, password: &str) -> Result<(), ClientError> {
        self.with_password(&Request::Register { user: user.clone() }, password)
            .map(drop)
    }

    /// Logs in to `user`'s account with its password; the session's token is kept and sent
    /// with every request from now on, and returned.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused on a wrong password.
    pub fn login_with_password(
        &mut self,
        user: &Name,
        password: &str,
    ) -> Result<String, ClientError> {
        let reply = self.with_password(&Request::Login { user: user.clone() }, password)?;
        let token = reply.data.str("token")?.to_owned();
        self.token = Some(token.clone());
        Ok(token)
    }

    /// Ends this connection's session.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn logout(&mut self, user: &Name) -> Result<(), ClientError> {
        self.request(&Request::Logout { user: user.clone() })?;
        self.token = None;
        Ok(())
    }

    /// Changes `user`'s password; the other sessions end, this one stays.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when `old` is wrong.
    pub fn change_password(
        &mut self,
        user: &Name,
        old: &str,
        new: &str,
    ) -> Result<(), ClientError> {
        let req = Request::Password {
            user: user.clone(),
            new: palaver_proto::Secret::new(new),
        };
        self.with_password(&req, old).map(drop)
    }

    /// Closes `user`'s account for good.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused on a wrong password.
    pub fn unregister(&mut self, user: &Name, password: &str) -> Result<(), ClientError> {
        self.with_password(&Request::Unregister { user: user.clone() }, password)?;
        self.token = None;
        Ok(())
    }

    /// Says that `user` is online from `device` (or, `leaving`, no longer). Returns how often
    /// the server wants beats, in seconds.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn beat(&mut self, user: &Name, device: &str, leaving: bool) -> Result<f64, ClientError> {
        let reply = self.request(&Request::Beat {
            user: user.clone(),
            device: device.to_owned(),
            leaving,
        })?;
        Ok(reply.data.opt_f64("every")?.unwrap_or(5.0))
    }

    /// Who is online, and since when (seconds since the Unix epoch).
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn online(&mut self) -> Result<Vec<(String, f64)>, ClientError> {
        let reply = self.request(&Request::Users {})?;
        reply
            .data
            .maps("online")?
            .iter()
            .map(|m| {
                Ok((
                    m.str("user")?.to_owned(),
                    m.opt_f64("since")?.unwrap_or(0.0),
                ))
            })
            .collect()
    }

    /// The text of a sealed private message, as the `message` publication it would have been.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when it is not `user`'s.
    pub fn unseal(
        &mut self,
        user: &Name,
        id: &palaver_proto::EventRef,
    ) -> Result<Envelope, ClientError> {
        let reply = self.request(&Request::Unseal {
            user: user.clone(),
            id: id.clone(),
        })?;
        Ok(unsealed(&reply, id)?)
    }

    /// The registered users.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn users(&mut self) -> Result<Vec<String>, ClientError> {
        Ok(self.request(&Request::Users {})?.data.str_list("users")?)
    }

    /// The existing channels.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn channels(&mut self) -> Result<Vec<String>, ClientError> {
        let reply = self.request(&Request::Channels {})?;
        Ok(reply
            .data
            .str_list("channels")
            .or_else(|_| reply.data.str_list("users"))?)
    }

    /// Creates a channel (without an owner: nobody can delete it; see `create_room`).
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when the channel exists.
    pub fn create_channel(&mut self, channel: &Name) -> Result<(), ClientError> {
        self.request(&Request::Channel {
            channel: channel.clone(),
            user: None,
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

fn send(socket: &zmq::Socket, frame: &[u8]) -> Result<(), ClientError> {
    // An empty delimiter first, as a REQ socket sends: the broker and the peer endpoints
    // (ROUTERs) hand it back in front of the answer.
    socket.send_multipart([&[][..], frame], 0)?;
    Ok(())
}

/// A request id prefix that no other connection, here or in any other process, shares: the
/// process, the time, and a counter.
fn new_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// The `message` publication that an `unseal` answer for `id` stands for.
///
/// # Errors
/// When the answer lacks a field of the message.
pub fn unsealed(
    reply: &Envelope,
    id: &palaver_proto::EventRef,
) -> Result<Envelope, palaver_proto::ProtoError> {
    let d = &reply.data;
    Ok(Envelope::new("message")
        .with("src", d.str("src")?)
        .with("dst", d.str("dst")?)
        .with("message", d.str("message")?)
        .with("timestamp", d.opt_f64("sent")?.unwrap_or(0.0))
        .with("clock", d.counter("lamport")?)
        .with("id", id.to_string()))
}
