use std::collections::{BTreeMap, BTreeSet};
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
    /// Every topic, channels born after the subscription included (see
    /// [`Subscriber::subscribe_everything`]).
    everything: bool,
    /// Publications that could not be read, per topic: the first of each topic is logged.
    unreadable: BTreeMap<String, u64>,
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
            everything: false,
            unreadable: BTreeMap::new(),
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

    /// Follows every topic, including channels created later: their first post arrives too,
    /// which a subscription made after learning of the channel could miss.
    ///
    /// # Errors
    /// On a socket error.
    pub fn subscribe_everything(&mut self) -> Result<(), ClientError> {
        if !self.everything {
            self.socket.set_subscribe(b"")?;
            self.everything = true;
        }
        Ok(())
    }

    /// How many publications could not be read, per topic.
    pub fn unreadable(&self) -> &BTreeMap<String, u64> {
        &self.unreadable
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
                    self.note_unreadable(&frames, &e.to_string());
                    continue;
                }
            };
            if !self.everything && !self.topics.contains(&publication.topic) {
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

    /// A publication that cannot be read: said once per topic (a warning that a person sees),
    /// counted after that.
    fn note_unreadable(&mut self, frames: &[Vec<u8>], why: &str) {
        let topic = frames
            .first()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default();
        if !self.everything && !self.topics.contains(&topic) {
            return;
        }
        let seen = self.unreadable.entry(topic.clone()).or_insert(0);
        *seen += 1;
        if *seen == 1 {
            tracing::warn!(topic, error = why, "dropped a publication that cannot be read (further ones on this topic are dropped without a word)");
        }
    }
}
