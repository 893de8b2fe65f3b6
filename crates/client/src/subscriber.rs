use std::collections::BTreeSet;
use std::time::Duration;

use palaver_proto::{now_secs, Publication};

use crate::{ClientError, SharedClock};

/// A publication as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub publication: Publication,
    /// Local physical time of arrival, seconds since the Unix epoch.
    pub received_at: f64,
}

/// A subscription socket that shows only publications whose topic is exactly one followed.
///
/// ZeroMQ filters by prefix, so a subscriber to `ana` also receives `anabela`'s messages; this
/// type drops them.
pub struct Subscriber {
    socket: zmq::Socket,
    topics: BTreeSet<String>,
    clock: SharedClock,
}

impl Subscriber {
    /// Connects to the proxy's XPUB endpoint.
    ///
    /// # Errors
    /// When the endpoint is malformed.
    pub fn open(
        ctx: &zmq::Context,
        endpoint: &str,
        clock: SharedClock,
    ) -> Result<Subscriber, ClientError> {
        let socket = ctx.socket(zmq::SUB)?;
        socket.set_linger(0)?;
        socket.set_rcvhwm(100_000)?;
        socket.connect(endpoint)?;
        Ok(Subscriber {
            socket,
            topics: BTreeSet::new(),
            clock,
        })
    }

    /// Follows `topic`.
    ///
    /// # Errors
    /// On a socket error.
    pub fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        if self.topics.insert(topic.to_owned()) {
            self.socket.set_subscribe(topic.as_bytes())?;
        }
        Ok(())
    }

    /// Stops following `topic`.
    ///
    /// # Errors
    /// On a socket error.
    pub fn unsubscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        if self.topics.remove(topic) {
            self.socket.set_unsubscribe(topic.as_bytes())?;
        }
        Ok(())
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(String::as_str)
    }

    /// Waits up to `timeout` for the next publication on a followed topic. Returns `None` when
    /// the time runs out. Frames that do not decode, or whose topic is only a prefix match, are
    /// skipped.
    ///
    /// # Errors
    /// On a socket error.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.socket.poll(zmq::POLLIN, left.as_millis() as i64) {
                // A signal (say, Ctrl-C) cuts the wait short; the caller decides what it means.
                Ok(0) | Err(zmq::Error::EINTR) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            let frames = self.socket.recv_multipart(0)?;
            let received_at = now_secs();
            let publication = match Publication::from_frames(&frames) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "skipped a malformed publication");
                    continue;
                }
            };
            if !self.topics.contains(&publication.topic) {
                continue;
            }
            if let Some(clock) = publication.envelope.clock() {
                self.clock.observe(clock);
            }
            return Ok(Some(Received {
                publication,
                received_at,
            }));
        }
    }
}
