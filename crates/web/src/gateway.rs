//! The gateway's core, free of I/O: every browser session, what each may ask and as whom, the
//! requests in flight (the client core's [`Calls`]), the topics followed, and where each
//! publication goes. The driver ([`crate::hub`]) feeds it the time, the browsers' texts, the
//! broker's answers and the proxy's publications, and carries out the [`Action`]s it returns.
//!
//! ```text
//!  browser JSON ──request()──▶ checked, acted as the session's person, token added ──▶ Send
//!  broker frame ──on_reply()──▶ matched by request id ──▶ Deliver the answer to its browser
//!                                 (login, join, leave: the session's topics change)
//!  publication ──on_publication()──▶ seen once ──▶ Deliver to the sessions that follow it
//!                                      (a sealed message: unseal with the recipient's session
//!                                       first; private text reaches that person alone)
//!  on_timeout() ──▶ resend or give up late requests, beat for each person online
//!  on_reconnect() ──▶ the proxy link came back: each room followed is read through `history`
//!                     from its last post seen, and what was missed is delivered as above
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use palaver_client::calls::{Calls, Due};
use palaver_client::feed::{position, Feed, Sequence, SECOND_REPAIR};
use palaver_client::SharedClock;
use palaver_core::LogGate;
use palaver_proto::{
    now_secs, Acts, Cursor, Envelope, EventRef, HistoryQuery, Map, Name, Publication, Reply,
    Session as OnSession, Status,
};
use serde_json::{json, Value as Json};

/// A browser session's number, unique in the process.
pub type Sid = u64;

/// The largest `re` a browser may choose: the largest integer JavaScript holds exactly.
const MAX_RE: u64 = (1 << 53) - 1;
/// Device names a browser may give itself.
const MAX_DEVICE: usize = 48;
/// How often to beat until a server says otherwise, and after a beat went unanswered.
const FIRST_BEAT: Duration = Duration::from_secs(5);
/// The most `history` pages one repair reads per room (500 posts each): a browser that missed
/// more reloads the room when it next opens it.
const REPAIR_PAGES: u32 = 20;
/// Topics every logged-in session follows that are not a room.
const SHARED_TOPICS: [&str; 2] = ["servers", "presence"];

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A request frame for the broker.
    Send(Vec<u8>),
    /// Start following a topic on the proxy (no session followed it).
    Subscribe(String),
    /// Stop following a topic (the last session that followed it stopped).
    Unsubscribe(String),
    /// One JSON text for each of these sessions.
    Deliver(Vec<Sid>, String),
}

/// The requests a session may make, per second and at once.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// How often something went wrong, for the log and for operators.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// Browser requests refused by the gateway (bad JSON, not allowed, too fast).
    pub refused: u64,
    /// Requests the cluster never answered.
    pub gave_up: u64,
    /// Sealed messages that could not be opened.
    pub unseal_failed: u64,
    /// Posts missed while the proxy link was down, read again and delivered.
    pub repaired: u64,
    /// Publications dropped as repeats.
    pub repeats: u64,
}

/// A request bucket: refills at the rate, holds at most the burst.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Session {
    /// Whom the session acts as, once logged in.
    user: Option<Name>,
    token: Option<String>,
    /// The device name its presence and inbox cursor go by (`web-` and the browser's).
    device: String,
    /// Rises with each login and logout: answers to an earlier login's requests are stale.
    generation: u64,
    topics: BTreeSet<String>,
    /// What is left of its request rate (none for a session that is not rated).
    bucket: Option<Bucket>,
}

/// What an answer is for.
enum Pending {
    Browser {
        sid: Sid,
        re: Option<u64>,
        then: Then,
    },
    /// The rooms of a person who just logged in, to follow.
    Joined {
        sid: Sid,
        generation: u64,
    },
    /// A sealed message for `user`, being opened.
    Unseal {
        user: Name,
        id: EventRef,
    },
    Beat {
        sid: Sid,
        generation: u64,
    },
    /// A last beat for a session that closed; nothing waits for it.
    Goodbye,
    /// A room's posts after a reconnect, the `page`th page of this repair.
    Repair {
        channel: Name,
        page: u32,
    },
}

/// What a successful answer changes in the session.
enum Then {
    Nothing,
    Login {
        user: Name,
        device: String,
        token: Option<String>,
    },
    Logout,
    Join(String),
    Leave(String),
}

/// A refusal of the gateway's own, in the shape of the cluster's.
pub(crate) fn refusal(re: Option<u64>, service: &str, why: &str) -> String {
    json!({
        "re": re,
        "service": service,
        "data": {"status": "erro", "description": why, "gateway": true},
    })
    .to_string()
}

/// The gateway's state.
pub struct Gateway {
    calls: Calls,
    pending: HashMap<u64, Pending>,
    sessions: HashMap<Sid, Session>,
    /// Who follows each topic.
    followers: BTreeMap<String, BTreeSet<Sid>>,
    /// When each logged-in session beats next.
    beats: BTreeSet<(Instant, Sid)>,
    /// When the rooms are read again after a reconnect of the proxy link.
    repair_at: Option<Instant>,
    feed: Feed,
    clock: SharedClock,
    rate: Rate,
    log: LogGate,
    pub counts: Counts,
}

impl Gateway {
    /// Each request waits `timeout` for an answer and is sent at most `attempts` times.
    pub fn new(rate: Rate, timeout: Duration, attempts: u32) -> Gateway {
        let prefix = format!("web{:08x}", rand::random::<u32>());
        Gateway {
            calls: Calls::new(timeout, attempts, &prefix),
            pending: HashMap::new(),
            sessions: HashMap::new(),
            followers: BTreeMap::new(),
            beats: BTreeSet::new(),
            repair_at: None,
            feed: Feed::default(),
            clock: SharedClock::new(),
            rate,
            log: LogGate::every_second(),
            counts: Counts::default(),
        }
    }

    /// A browser connected; one that is not `rated` may make requests as fast as it likes.
    pub fn open(&mut self, now: Instant, sid: Sid, rated: bool) {
        self.sessions.insert(
            sid,
            Session {
                user: None,
                token: None,
                device: String::new(),
                generation: 0,
                topics: BTreeSet::new(),
                bucket: rated.then_some(Bucket::full(self.rate, now)),
            },
        );
    }

    /// A browser went away (or was dropped): it follows nothing more, and a person it was
    /// logged in as is told gone from that device at once.
    pub fn close(&mut self, now: Instant, sid: Sid) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(mut s) = self.sessions.remove(&sid) else {
            return out;
        };
        self.quiet(sid, &mut s, &mut out);
        if let Some(user) = s.user.take() {
            let goodbye = beat(&user, &s.device).with("leaving", true);
            self.send(now, goodbye, s.token.as_deref(), Pending::Goodbye, &mut out);
        }
        out
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Who `sid` is logged in as.
    pub fn user(&self, sid: Sid) -> Option<&Name> {
        self.sessions.get(&sid)?.user.as_ref()
    }

    /// The topics some session follows.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.followers.keys().map(String::as_str)
    }

    /// When [`Gateway::on_timeout`] has something to do next.
    pub fn deadline(&self) -> Option<Instant> {
        let beat = self.beats.first().map(|(at, _)| *at);
        [self.calls.deadline(), beat, self.repair_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// A browser's text.
    pub fn request(&mut self, now: Instant, sid: Sid, text: &str) -> Vec<Action> {
        let mut out = Vec::new();
        let Incoming { re, service, data } = match parse(text) {
            Ok(r) => r,
            Err(bad) => {
                self.refuse(sid, bad.re, &bad.service, &bad.why, &mut out);
                return out;
            }
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return out;
        };
        if session
            .bucket
            .as_mut()
            .is_some_and(|b| !b.take(now, self.rate))
        {
            let why = format!(
                "too many requests: at most {} a second ({} at once); wait a moment",
                self.rate.per_second, self.rate.burst
            );
            self.refuse(sid, re, &service, &why, &mut out);
            return out;
        }
        match self.prepare(sid, &service, data) {
            Ok((env, token, then)) => {
                let pending = Pending::Browser { sid, re, then };
                self.send(now, env, token.as_deref(), pending, &mut out);
            }
            Err(why) => self.refuse(sid, re, &service, &why, &mut out),
        }
        out
    }

    /// Checks a browser's request and makes it the session's: the request, the token to send
    /// with it, and what its success changes.
    fn prepare(
        &self,
        sid: Sid,
        service: &str,
        mut data: Map,
    ) -> Result<(Envelope, Option<String>, Then), String> {
        let session = &self.sessions[&sid];
        // Who each service acts as, and what it does to the session, are declared with it
        // (`palaver_proto::SERVICES`).
        let Some(declared) = palaver_proto::service(service) else {
            return Err(format!("unknown service `{service}`"));
        };
        let starts = declared.session == OnSession::Starts;
        if data.get("token").is_some() && !starts {
            let starting: Vec<String> = palaver_proto::SERVICES
                .iter()
                .filter(|s| s.session == OnSession::Starts)
                .map(|s| format!("`{}`", s.name))
                .collect();
            return Err(format!(
                "the gateway keeps your session: send `token` only with {}",
                starting.join(" or ")
            ));
        }
        let me = session.user.as_ref();
        let login_needed = || "log in first".to_owned();
        let mut token = session.token.clone();
        match declared.acts {
            Acts::FrontEnd => {
                return Err(format!("`{service}` is the gateway's to send, not yours"))
            }
            Acts::Anyone => {}
            Acts::Named => {
                // The person named proves nothing yet; a session they had is not sent.
                named(&data, "user")?;
                if !starts {
                    token = None;
                }
            }
            Acts::Person(field) => {
                let me = me.ok_or_else(login_needed)?;
                claim(&mut data, field, me)?;
            }
            Acts::Device => {
                let me = me.ok_or_else(login_needed)?;
                claim(&mut data, "user", me)?;
                data.set("device", session.device.as_str());
            }
            Acts::History => {
                if data.get("with").is_some() {
                    let me = me.ok_or_else(login_needed)?;
                    claim(&mut data, "user", me)?;
                }
            }
        }
        let then = match declared.session {
            OnSession::Keeps => Then::Nothing,
            OnSession::Starts => {
                let device = match data.take("device") {
                    None => format!("{:012x}", rand::random::<u64>() >> 16),
                    Some(v) => v
                        .as_str()
                        .filter(|d| valid_device(d))
                        .ok_or_else(|| {
                            format!(
                                "field `device` must be 1 to {MAX_DEVICE} letters, digits, `-` or `_`"
                            )
                        })?
                        .to_owned(),
                };
                token = data.opt_str("token").ok().flatten().map(str::to_owned);
                Then::Login {
                    user: named(&data, "user")?,
                    device,
                    token: token.clone(),
                }
            }
            OnSession::Ends => Then::Logout,
            OnSession::Follows(field) => Then::Join(named(&data, field)?.to_string()),
            OnSession::Unfollows(field) => Then::Leave(named(&data, field)?.to_string()),
        };
        Ok((
            Envelope {
                service: service.to_owned(),
                data,
            },
            token,
            then,
        ))
    }

    fn refuse(
        &mut self,
        sid: Sid,
        re: Option<u64>,
        service: &str,
        why: &str,
        out: &mut Vec<Action>,
    ) {
        self.counts.refused += 1;
        out.push(Action::Deliver(vec![sid], refusal(re, service, why)));
    }

    /// Stamps `env`, puts it in flight and hands the frame to the driver.
    fn send(
        &mut self,
        now: Instant,
        mut env: Envelope,
        token: Option<&str>,
        pending: Pending,
        out: &mut Vec<Action>,
    ) {
        if let Some(t) = token {
            env.data.set("token", t);
        }
        env.stamp(now_secs(), self.clock.tick());
        let (call, frame) = self.calls.start(now, env);
        out.push(Action::Send(frame.to_vec()));
        self.pending.insert(call, pending);
    }

    /// An answer from the broker.
    pub fn on_reply(&mut self, now: Instant, frame: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        let Some((call, reply)) = self.calls.on_frame(now, frame) else {
            return out;
        };
        let Some(pending) = self.pending.remove(&call) else {
            return out;
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.note(now, &format!("an answer that cannot be read: {e}"));
                self.failed(
                    now,
                    pending,
                    &format!("the cluster's answer cannot be read: {e}"),
                    &mut out,
                );
                return out;
            }
        };
        if let Some(c) = reply.clock() {
            self.clock.observe(c);
        }
        let ok = Reply::status(&reply) != Status::Error;
        match pending {
            Pending::Browser { sid, re, then } => {
                let mut data = reply.data.to_json();
                if ok {
                    self.succeeded(now, sid, then, &reply, &mut data, &mut out);
                }
                let text = json!({"re": re, "service": reply.service, "data": data}).to_string();
                if self.sessions.contains_key(&sid) {
                    out.push(Action::Deliver(vec![sid], text));
                }
            }
            Pending::Joined { sid, generation } => {
                if ok && self.current(sid, generation) {
                    for channel in reply.data.str_list("channels").unwrap_or_default() {
                        self.follow(sid, &channel, &mut out);
                    }
                }
            }
            Pending::Unseal { user, id } => match palaver_client::unsealed(&reply, &id) {
                Ok(envelope) if ok => {
                    let p = Publication {
                        topic: user.to_string(),
                        envelope,
                    };
                    self.deliver(&p, &mut out);
                }
                _ => {
                    self.counts.unseal_failed += 1;
                    let why = Reply::error_text(&reply).unwrap_or_default();
                    self.note(
                        now,
                        &format!("cannot open private message {id} for {user}: {why}"),
                    );
                }
            },
            Pending::Beat { sid, generation } => {
                if self.current(sid, generation) {
                    let every = reply.data.opt_f64("every").ok().flatten().unwrap_or(5.0);
                    let every = Duration::from_secs_f64(every.clamp(0.1, 60.0));
                    self.beats.insert((now + every, sid));
                }
            }
            Pending::Goodbye => {}
            Pending::Repair { channel, page } => {
                self.repaired(now, channel, page, &reply, ok, &mut out);
            }
        }
        out
    }

    /// A page of a room's posts read after a reconnect: what is new goes to the room's
    /// followers, and a full page asks for the next.
    fn repaired(
        &mut self,
        now: Instant,
        channel: Name,
        page: u32,
        reply: &Envelope,
        ok: bool,
        out: &mut Vec<Action>,
    ) {
        let (events, more) = match HistoryQuery::parse_reply(reply) {
            Ok(page) if ok => page,
            failed => {
                let why = match failed {
                    Err(e) => e.to_string(),
                    Ok(_) => Reply::error_text(reply).unwrap_or_default(),
                };
                self.note(
                    now,
                    &format!("cannot fill in the posts {channel} missed: {why}"),
                );
                return;
            }
        };
        let mut fresh = 0u64;
        for p in events.iter().filter_map(Publication::of_event) {
            if self.admit_and_deliver(&p, out) {
                fresh += 1;
            }
        }
        if fresh > 0 {
            self.counts.repaired += fresh;
            tracing::info!(%channel, posts = fresh, "filled in posts missed while the link to the proxy was down");
        }
        if let Some(after) = events
            .last()
            .map(Cursor::of)
            .filter(|_| more && page < REPAIR_PAGES)
        {
            self.repair_room(now, channel, after, page + 1, out);
        }
    }

    /// The proxy link came back after it was lost: each room followed is read again from its
    /// last post seen, now and once more a moment later (for the posts made while the renewed
    /// subscriptions were on their way).
    pub fn on_reconnect(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.repair(now, &mut out);
        self.repair_at = Some(now + SECOND_REPAIR);
        out
    }

    /// The proxy's number `seq` on a publication of `topic`, taken in before the publication
    /// itself: when numbers were skipped (the proxy dropped what this gateway fell too far
    /// behind on), a room's missed posts are read from `history`, from before the gap.
    pub fn on_sequence(&mut self, now: Instant, topic: &str, seq: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.followers.contains_key(topic) {
            return out;
        }
        if let Sequence::Gap(_) = self.feed.sequence(topic, seq) {
            self.note(
                now,
                "the proxy dropped publications for this gateway, which fell behind",
            );
            let room = self
                .is_room(topic)
                .then(|| Name::parse(topic).ok())
                .flatten();
            if let (Some(channel), Some(after)) = (room, self.feed.gap_repair(topic)) {
                self.repair_room(now, channel, after, 1, &mut out);
            }
        }
        out
    }

    /// Whether `topic` is a room followed (not a person's own topic or a shared one).
    fn is_room(&self, topic: &str) -> bool {
        self.followers.contains_key(topic)
            && !SHARED_TOPICS.contains(&topic)
            && !self
                .sessions
                .values()
                .any(|s| s.user.as_ref().is_some_and(|u| u.as_str() == topic))
    }

    fn repair(&mut self, now: Instant, out: &mut Vec<Action>) {
        let rooms = self.feed.repairs(|t| self.is_room(t));
        for (channel, after) in rooms {
            self.repair_room(now, channel, after, 1, out);
        }
    }

    fn repair_room(
        &mut self,
        now: Instant,
        channel: Name,
        after: Cursor,
        page: u32,
        out: &mut Vec<Action>,
    ) {
        let req = Feed::repair_request(&channel, Some(after)).to_envelope();
        self.send(now, req, None, Pending::Repair { channel, page }, out);
    }

    /// Whether `sid` is still logged in as it was at `generation`.
    fn current(&self, sid: Sid, generation: u64) -> bool {
        self.sessions
            .get(&sid)
            .is_some_and(|s| s.generation == generation && s.user.is_some())
    }

    /// A browser's request worked: the session changes as it asked.
    fn succeeded(
        &mut self,
        now: Instant,
        sid: Sid,
        then: Then,
        reply: &Envelope,
        data: &mut Json,
        out: &mut Vec<Action>,
    ) {
        let Some(mut s) = self.sessions.remove(&sid) else {
            return;
        };
        match then {
            Then::Nothing => {}
            Then::Login {
                user,
                device,
                token,
            } => {
                self.quiet(sid, &mut s, out);
                s.generation += 1;
                s.token = reply
                    .data
                    .opt_str("token")
                    .ok()
                    .flatten()
                    .map(str::to_owned)
                    .or(token);
                s.device = format!("web-{device}");
                data["user"] = json!(user.as_str());
                data["device"] = json!(device);
                for topic in std::iter::once(user.as_str()).chain(SHARED_TOPICS) {
                    self.follow_in(sid, &mut s, topic, out);
                }
                let joined = Envelope::new("joined").with("user", user.as_str());
                let generation = s.generation;
                let token = s.token.clone();
                s.user = Some(user);
                self.send(
                    now,
                    joined,
                    token.as_deref(),
                    Pending::Joined { sid, generation },
                    out,
                );
                self.beats.insert((now, sid));
            }
            Then::Logout => {
                self.quiet(sid, &mut s, out);
                s.generation += 1;
                s.user = None;
                s.token = None;
            }
            Then::Join(channel) => {
                let channel = reply
                    .data
                    .opt_str("channel")
                    .ok()
                    .flatten()
                    .map_or(channel, str::to_owned);
                self.follow_in(sid, &mut s, &channel, out);
            }
            Then::Leave(channel) => self.unfollow_in(sid, &mut s, &channel, out),
        }
        self.sessions.insert(sid, s);
    }

    /// Requests late or given up, and beats due.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for due in self.calls.on_timeout(now) {
            match due {
                Due::Resend(frame) => out.push(Action::Send(frame)),
                Due::GaveUp(call) => {
                    self.counts.gave_up += 1;
                    if let Some(p) = self.pending.remove(&call) {
                        let why = format!(
                            "no answer from the cluster after {} attempts; send it again later",
                            self.calls.attempts()
                        );
                        self.failed(now, p, &why, &mut out);
                    }
                }
            }
        }
        if self.repair_at.is_some_and(|at| at <= now) {
            self.repair_at = None;
            self.repair(now, &mut out);
        }
        while let Some(&(at, sid)) = self.beats.first() {
            if at > now {
                break;
            }
            self.beats.pop_first();
            let Some(s) = self.sessions.get(&sid) else {
                continue;
            };
            let Some(user) = &s.user else { continue };
            let beat = beat(user, &s.device);
            let pending = Pending::Beat {
                sid,
                generation: s.generation,
            };
            let token = s.token.clone();
            self.send(now, beat, token.as_deref(), pending, &mut out);
        }
        out
    }

    /// A request got no usable answer: its browser is told; a beat is tried again later.
    fn failed(&mut self, now: Instant, pending: Pending, why: &str, out: &mut Vec<Action>) {
        match pending {
            Pending::Browser { sid, re, .. } if self.sessions.contains_key(&sid) => {
                out.push(Action::Deliver(vec![sid], refusal(re, "error", why)));
            }
            Pending::Beat { sid, generation } if self.current(sid, generation) => {
                self.beats.insert((now + FIRST_BEAT, sid));
            }
            Pending::Joined { sid, generation } if self.current(sid, generation) => {
                // The rooms are followed as the person opens or joins them; the inbox has
                // what they would have missed meanwhile.
                self.note(
                    now,
                    &format!("cannot list the rooms of session {sid}: {why}"),
                );
            }
            Pending::Unseal { user, id } => {
                self.counts.unseal_failed += 1;
                self.note(
                    now,
                    &format!("cannot open private message {id} for {user}: {why}"),
                );
            }
            Pending::Repair { channel, .. } => {
                self.note(
                    now,
                    &format!("cannot fill in the posts {channel} missed: {why}"),
                );
            }
            _ => {}
        }
    }

    /// A publication from the proxy.
    pub fn on_publication(&mut self, now: Instant, p: Publication) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.followers.contains_key(&p.topic) {
            return out;
        }
        if let Some(c) = p.envelope.clock() {
            self.clock.observe(c);
        }
        if p.envelope.service == "sealed" {
            if self.admit(&p) {
                self.unseal(now, &p, &mut out);
            }
        } else {
            self.admit_and_deliver(&p, &mut out);
        }
        out
    }

    /// Whether a publication is new (not a repeat of one seen on its topic); posts and private
    /// messages also move the place that repairs of their topic start from.
    fn admit(&mut self, p: &Publication) -> bool {
        let (id, cursor) = position(&p.envelope.data);
        let cursor = cursor.filter(|_| {
            matches!(
                p.envelope.service.as_str(),
                "publish" | "message" | "sealed"
            )
        });
        let new = self.feed.admit(&p.topic, id.as_deref(), cursor);
        if !new {
            self.counts.repeats += 1;
        }
        new
    }

    /// Delivers a publication unless it is a repeat; whether it was new.
    fn admit_and_deliver(&mut self, p: &Publication, out: &mut Vec<Action>) -> bool {
        let new = self.admit(p);
        if new {
            self.deliver(p, out);
        }
        new
    }

    /// Asks to open a sealed message with the session of the person it is for.
    fn unseal(&mut self, now: Instant, p: &Publication, out: &mut Vec<Action>) {
        let Ok(user) = Name::parse(&p.topic) else {
            return;
        };
        let id = p.envelope.data.opt_str("id").ok().flatten().unwrap_or("");
        let Ok(id) = EventRef::parse("id", id) else {
            return;
        };
        let token = self.followers[&p.topic]
            .iter()
            .filter_map(|sid| self.sessions.get(sid))
            .find(|s| s.user.as_ref() == Some(&user))
            .and_then(|s| s.token.clone());
        let Some(token) = token else {
            return;
        };
        let req = Envelope::new("unseal")
            .with("user", user.as_str())
            .with("id", id.to_string());
        self.send(now, req, Some(&token), Pending::Unseal { user, id }, out);
    }

    /// Hands a publication to the sessions that follow its topic; what is private (a
    /// message, a receipt, a read marker) only to those logged in as the topic's person.
    fn deliver(&self, p: &Publication, out: &mut Vec<Action>) {
        let Some(followers) = self.followers.get(&p.topic) else {
            return;
        };
        let private = matches!(
            p.envelope.service.as_str(),
            "message" | "sealed" | "receipt" | "read"
        );
        let to: Vec<Sid> = followers
            .iter()
            .copied()
            .filter(|sid| {
                !private
                    || self
                        .sessions
                        .get(sid)
                        .and_then(|s| s.user.as_ref())
                        .is_some_and(|u| u.as_str() == p.topic)
            })
            .collect();
        if to.is_empty() {
            return;
        }
        let text = json!({
            "topic": p.topic,
            "service": p.envelope.service,
            "data": p.envelope.data.to_json(),
        })
        .to_string();
        out.push(Action::Deliver(to, text));
    }

    fn follow(&mut self, sid: Sid, topic: &str, out: &mut Vec<Action>) {
        if let Some(mut s) = self.sessions.remove(&sid) {
            self.follow_in(sid, &mut s, topic, out);
            self.sessions.insert(sid, s);
        }
    }

    fn follow_in(&mut self, sid: Sid, s: &mut Session, topic: &str, out: &mut Vec<Action>) {
        if !s.topics.insert(topic.to_owned()) {
            return;
        }
        let set = self.followers.entry(topic.to_owned()).or_default();
        if set.is_empty() {
            out.push(Action::Subscribe(topic.to_owned()));
        }
        set.insert(sid);
    }

    fn unfollow_in(&mut self, sid: Sid, s: &mut Session, topic: &str, out: &mut Vec<Action>) {
        if s.topics.remove(topic) {
            self.drop_follower(sid, topic, out);
        }
    }

    /// The session follows nothing and beats no more (it logs out, in again, or closes).
    fn quiet(&mut self, sid: Sid, s: &mut Session, out: &mut Vec<Action>) {
        for topic in std::mem::take(&mut s.topics) {
            self.drop_follower(sid, &topic, out);
        }
        self.beats.retain(|(_, b)| *b != sid);
    }

    fn drop_follower(&mut self, sid: Sid, topic: &str, out: &mut Vec<Action>) {
        if let Some(set) = self.followers.get_mut(topic) {
            set.remove(&sid);
            if set.is_empty() {
                self.followers.remove(topic);
                out.push(Action::Unsubscribe(topic.to_owned()));
            }
        }
    }

    /// Logs a failure, at most once a second with the count held back.
    fn note(&mut self, now: Instant, what: &str) {
        if let Some(held) = self.log.admit(now) {
            tracing::warn!(held, "{what}");
        }
    }
}

impl Bucket {
    /// A bucket holding its whole burst at `now`.
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    /// When the bucket holds a whole token again at `rate`.
    pub fn ready_at(&self, rate: Rate) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        if rate.per_second > 0.0 {
            self.at + Duration::from_secs_f64(missing / rate.per_second)
        } else {
            self.at + Duration::from_secs(1)
        }
    }

    /// Takes a token at `now`, if the bucket, refilled at `rate` since it was last used,
    /// holds one.
    pub fn take(&mut self, now: Instant, rate: Rate) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A `beat` for `user` on `device`.
fn beat(user: &Name, device: &str) -> Envelope {
    Envelope::new("beat")
        .with("user", user.as_str())
        .with("device", device)
}

/// Whether `d` will do as a browser's device name.
fn valid_device(d: &str) -> bool {
    (1..=MAX_DEVICE).contains(&d.len())
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sets `field` to `me`, refusing a request that names someone else there.
/// The name in `data`'s `field`.
fn named(data: &Map, field: &'static str) -> Result<Name, String> {
    let given = data.opt_str(field).map_err(|e| e.to_string())?;
    Name::parse(given.unwrap_or("")).map_err(|e| format!("field `{field}`: {e}"))
}

fn claim(data: &mut Map, field: &'static str, me: &Name) -> Result<(), String> {
    if let Some(v) = data.get(field) {
        let named = v.as_str().and_then(|s| Name::parse(s).ok());
        if named.as_ref() != Some(me) {
            let who = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            return Err(format!(
                "this session is `{me}`'s; it cannot act as `{who}`"
            ));
        }
    }
    data.set(field, me.as_str());
    Ok(())
}

/// A browser's request, as read.
struct Incoming {
    re: Option<u64>,
    service: String,
    data: Map,
}

/// Why a browser's text will not do, with what could be read of `re` and the service.
struct Unreadable {
    re: Option<u64>,
    service: String,
    why: String,
}

/// Reads a browser's text.
fn parse(text: &str) -> Result<Incoming, Unreadable> {
    let bad = |re, service: &str, why: String| {
        Err(Unreadable {
            re,
            service: service.to_owned(),
            why,
        })
    };
    let value: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return bad(None, "error", format!("not JSON: {e}")),
    };
    let Json::Object(mut top) = value else {
        return bad(
            None,
            "error",
            r#"a message must be one JSON object: {"re": 1, "service": "users", "data": {}}"#
                .into(),
        );
    };
    let re = match top.get("re") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n <= MAX_RE) {
            Some(n) => Some(n),
            None => {
                return bad(
                    None,
                    "error",
                    format!("field `re` must be a whole number from 0 to {MAX_RE}"),
                )
            }
        },
    };
    let service = match top.get("service") {
        Some(Json::String(s)) => s.clone(),
        Some(_) => return bad(re, "error", "field `service` must be a string".into()),
        None => return bad(re, "error", "missing field `service`".into()),
    };
    let data = match top.remove("data") {
        None | Some(Json::Null) => Map::default(),
        Some(Json::Object(m)) => match Map::from_json(&m) {
            Ok(m) => m,
            Err(e) => return bad(re, &service, e.to_string()),
        },
        Some(_) => return bad(re, &service, "field `data` must be an object".into()),
    };
    Ok(Incoming { re, service, data })
}

#[cfg(test)]
mod tests;
