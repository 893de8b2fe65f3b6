use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use palaver_core::LogGate;
use palaver_proto::{now_secs, Cursor, Event, HistoryQuery, Name, Publication};

use crate::feed::{position, Feed, Sequence, SECOND_REPAIR};
use crate::reconnects::Reconnects;
use crate::{ClientError, Connection, SharedClock};

/// Gap repair: a connection to ask `history` on, and a monitor of the subscriber's socket.
struct Repair {
    conn: Connection,
    link: Reconnects,
    due: Vec<Instant>,
    /// Rooms just joined, to read again after the first post `join` gave (or from the newest,
    /// when it gave none), and when.
    seams: Vec<(Instant, Name, Option<Cursor>)>,
}

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
    ctx: zmq::Context,
    socket: zmq::Socket,
    topics: BTreeSet<String>,
    /// Every topic, channels born after the subscription included (see
    /// [`Subscriber::subscribe_everything`]).
    everything: bool,
    /// Publications that could not be read, per topic: the first of each topic is logged.
    unreadable: BTreeMap<String, u64>,
    clock: SharedClock,
    /// What was seen, to drop repeats and to know where to repair from.
    feed: Feed,
    /// Topics that carry a channel's posts.
    channels: HashSet<String>,
    repair: Option<Repair>,
    /// Repaired posts, waiting to be handed out before new ones.
    backlog: VecDeque<Received>,
    /// Whose sealed private messages to open (through the repair connection, which carries
    /// the person's session).
    unseal_as: Option<palaver_proto::Name>,
    /// Gaps are logged at most once a second.
    gaps_logged: Option<LogGate>,
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
            ctx: ctx.clone(),
            socket,
            topics: BTreeSet::new(),
            everything: false,
            unreadable: BTreeMap::new(),
            clock,
            feed: Feed::default(),
            channels: HashSet::new(),
            repair: None,
            backlog: VecDeque::new(),
            unseal_as: None,
            gaps_logged: None,
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

    /// Fills gaps after a reconnect: when the connection to the proxy comes back, each channel
    /// followed is read through `history` on `conn` from the last post seen, and what was
    /// missed is handed out (in order, and once) before anything new.
    ///
    /// # Errors
    /// When the socket monitor cannot be set up.
    pub fn repair_with(&mut self, conn: Connection) -> Result<(), ClientError> {
        let link = Reconnects::watch(&self.ctx, &self.socket)?;
        self.repair = Some(Repair {
            conn,
            link,
            due: Vec::new(),
            seams: Vec::new(),
        });
        Ok(())
    }

    /// A room was joined (subscribe to it first): the posts [`Connection::join`] gave are
    /// handed out before anything new, once each; and a moment later the room is read again
    /// through `history` from the first of them, so that a post made while the subscription
    /// was on its way to the proxy shows too (once: repeats are dropped by id).
    pub fn joined(&mut self, channel: &Name, posts: &[Event]) {
        self.channels.insert(channel.to_string());
        let now = now_secs();
        for event in posts {
            admit_post(&mut self.feed, &mut self.backlog, channel, event, now);
        }
        if let Some(r) = self.repair.as_mut() {
            let from = posts.first().map(|e| Cursor {
                lamport: e.lamport,
                origin: e.origin.clone(),
            });
            r.seams
                .push((Instant::now() + SECOND_REPAIR, channel.clone(), from));
        }
    }

    /// Opens `user`'s sealed private messages as they arrive (a `sealed` notice becomes the
    /// `message` publication it stands for), asking `unseal` on the connection given to
    /// [`Subscriber::repair_with`], which must carry `user`'s session token. A notice that
    /// cannot be opened is handed out as it is.
    pub fn unseal_as(&mut self, user: palaver_proto::Name) {
        self.unseal_as = Some(user);
    }

    /// Sends `token` with the repair connection's requests (`history`, `unseal`) from now on.
    pub fn set_token(&mut self, token: Option<String>) {
        if let Some(r) = self.repair.as_mut() {
            r.conn.set_token(token);
        }
    }

    /// Repeats dropped so far.
    pub fn repeats(&self) -> u64 {
        self.feed.repeats
    }

    /// Publications the proxy dropped for this subscriber (it fell too far behind), counted
    /// from the gaps in their numbers. A channel's missed posts are read from `history` and
    /// handed out in order; a person's private messages are not (their inbox and `history`
    /// of the conversation hold them), but are counted here and logged.
    pub fn missed(&self) -> u64 {
        self.feed.missed
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
        let deadline = Instant::now() + timeout;
        loop {
            self.watch_connection();
            if let Some(r) = self.backlog.pop_front() {
                return Ok(Some(r));
            }
            let now = Instant::now();
            let mut until = deadline;
            if let Some(next) = self.repair.as_ref().and_then(|r| {
                r.due
                    .iter()
                    .chain(r.seams.iter().map(|(at, _, _)| at))
                    .min()
                    .copied()
            }) {
                until = until.min(next);
            }
            let left = until.saturating_duration_since(now);
            let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
            let readable = {
                let mut items = vec![self.socket.as_poll_item(zmq::POLLIN)];
                if let Some(r) = &self.repair {
                    items.push(r.link.as_poll_item());
                }
                match zmq::poll(&mut items, ms) {
                    // A signal (say, Ctrl-C) cuts the wait short; the caller decides.
                    Err(zmq::Error::EINTR) => return Ok(None),
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                items[0].is_readable()
            };
            if !readable {
                if Instant::now() >= deadline {
                    self.watch_connection();
                    return Ok(self.backlog.pop_front());
                }
                continue;
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
            let gap = frames
                .get(1)
                .and_then(|body| palaver_proto::stamped_seq(body))
                .map(|seq| (self.feed.sequence(&publication.topic, seq), seq));
            if let Some(clock) = publication.envelope.clock() {
                self.clock.observe(clock);
            }
            if publication.envelope.service == "publish" {
                self.channels.insert(publication.topic.clone());
            }
            let (id, cursor) = position(&publication.envelope.data);
            // Only posts and private messages move the place that repairs start from: a join
            // or leave notice has no history to repair from.
            let cursor = cursor.filter(|_| {
                matches!(
                    publication.envelope.service.as_str(),
                    "publish" | "message" | "sealed"
                )
            });
            if let Some((Sequence::Gap(missed), seq)) = gap {
                self.fill_gap(&publication, missed, seq);
            }
            if !self.feed.admit(&publication.topic, id.as_deref(), cursor) {
                continue;
            }
            let publication = self.open_sealed(publication);
            let received = Received {
                publication,
                received_at,
            };
            // After what a gap repair queued, in order.
            if !self.backlog.is_empty() {
                self.backlog.push_back(received);
                continue;
            }
            return Ok(Some(received));
        }
    }

    /// A `sealed` notice for the person this subscriber opens messages for, as the `message`
    /// it stands for; anything else as it is.
    fn open_sealed(&mut self, p: Publication) -> Publication {
        let (Some(user), Some(repair)) = (&self.unseal_as, self.repair.as_mut()) else {
            return p;
        };
        if p.envelope.service != "sealed" {
            return p;
        }
        let Some(id) = p
            .envelope
            .data
            .opt_str("id")
            .ok()
            .flatten()
            .and_then(|id| palaver_proto::EventRef::parse("id", id).ok())
        else {
            return p;
        };
        match repair.conn.unseal(user, &id) {
            Ok(envelope) => Publication {
                topic: p.topic,
                envelope,
            },
            Err(e) => {
                tracing::warn!(%id, error = %e, "cannot open a private message");
                p
            }
        }
    }

    /// The proxy skipped `missed` publications of `p`'s topic before this one (numbered
    /// `seq`): a channel's are read from `history` now, from before the gap, and queued.
    fn fill_gap(&mut self, p: &Publication, missed: u64, seq: u64) {
        let channel = (p.envelope.service == "publish")
            .then(|| Name::parse(&p.topic).ok())
            .flatten();
        let repaired = match (&channel, self.repair.as_mut()) {
            (Some(channel), Some(r)) => {
                let after = self.feed.gap_repair(&p.topic);
                fill(
                    &mut r.conn,
                    &mut self.feed,
                    &mut self.backlog,
                    channel,
                    after,
                );
                true
            }
            _ => false,
        };
        let gate = self.gaps_logged.get_or_insert_with(LogGate::every_second);
        if let Some(quiet) = gate.admit(Instant::now()) {
            tracing::warn!(
                topic = %p.topic,
                missed,
                seq,
                total = self.feed.missed,
                unlogged = quiet,
                repaired,
                "the proxy dropped publications for this subscriber, which fell behind"
            );
        }
    }

    /// Reads the socket monitor, and repairs the channels when a reconnect makes it due.
    fn watch_connection(&mut self) {
        let Some(r) = self.repair.as_mut() else {
            return;
        };
        let now = Instant::now();
        if r.link.came_back() {
            r.due = vec![now, now + SECOND_REPAIR];
        }
        let (seams, later): (Vec<_>, Vec<_>) = std::mem::take(&mut r.seams)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        r.seams = later;
        for (_, channel, from) in seams {
            fill(
                &mut r.conn,
                &mut self.feed,
                &mut self.backlog,
                &channel,
                from,
            );
        }
        if !r.due.iter().any(|d| *d <= now) {
            return;
        }
        r.due.retain(|d| *d > now);
        let channels = &self.channels;
        for (channel, cursor) in self.feed.repairs(|t| channels.contains(t)) {
            let after = Some(cursor);
            fill(
                &mut r.conn,
                &mut self.feed,
                &mut self.backlog,
                &channel,
                after,
            );
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

/// Pages of `history` one repair reads at most (500 posts each).
const REPAIR_PAGES: usize = 20;

/// Reads `channel`'s posts after `after` (the newest ones, without it) through `history` on
/// `conn`, page after page while pages come back full, and queues what was not seen yet, in
/// order.
fn fill(
    conn: &mut Connection,
    feed: &mut Feed,
    backlog: &mut VecDeque<Received>,
    channel: &Name,
    after: Option<Cursor>,
) {
    let mut after = after;
    for _ in 0..REPAIR_PAGES {
        let reply = match conn.request(&Feed::repair_request(channel, after.clone())) {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "cannot fill in missed posts");
                return;
            }
        };
        let events = match HistoryQuery::parse_reply(&reply) {
            Ok((events, _)) => events,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "cannot read missed posts");
                return;
            }
        };
        let now = now_secs();
        for event in &events {
            admit_post(feed, backlog, channel, event, now);
        }
        // Without a cursor the newest page was read: nothing after it yet.
        let (Some(_), Some(last)) = (&after, events.last()) else {
            return;
        };
        if events.len() < palaver_proto::MAX_HISTORY {
            return;
        }
        after = Some(Cursor {
            lamport: last.lamport,
            origin: last.origin.clone(),
        });
    }
}

/// Queues a post read through `history` or `join`, unless it was seen on `channel` already.
fn admit_post(
    feed: &mut Feed,
    backlog: &mut VecDeque<Received>,
    channel: &Name,
    event: &Event,
    received_at: f64,
) {
    let Some(publication) = Publication::of_event(event) else {
        return;
    };
    let (id, cursor) = position(&publication.envelope.data);
    if feed.admit(channel.as_str(), id.as_deref(), cursor) {
        backlog.push_back(Received {
            publication,
            received_at,
        });
    }
}
