//! The network side of `palaver chat`: one thread that owns every socket (the request
//! connection, the subscriber, the heartbeat) and turns the screen's [`Effect`]s into requests
//! and what arrives into [`Net`] news. The screen never waits on the network.
//!
//! Nothing is lost across a broker or server restart: a post or private message that gets no
//! answer stays in the outbox and is sent again, with the same request id (so it takes effect
//! once), until the cluster answers; and every few seconds, and whenever the cluster answers
//! again, the device's inbox is taken, which hands over anything that did not arrive live.

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use palaver_client::{say, ClientError, Connection, Heartbeat, Received, SharedClock, Subscriber};
use palaver_proto::{
    message_event, Conversation, Cursor, Envelope, Event, EventKind, HistoryQuery, MessageKind,
    Name, Place, Request,
};

use crate::app::{Effect, Link, Net};
use crate::buffer::Receipt;

pub struct Options {
    pub broker: String,
    pub sub: String,
    pub user: Name,
    pub password: Option<String>,
    /// This client among the person's devices: its inbox cursor is its own.
    pub device: String,
}

/// How many messages a page of history holds.
const PAGE: usize = 50;
/// How often the inbox is swept for what did not arrive live.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a request waits for its answer (then once more) before the cluster counts as
/// unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a cluster that stopped answering is asked again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A connected session, before its thread starts.
pub struct Session {
    opts: Options,
    ctx: zmq::Context,
    conn: Connection,
    sub: Subscriber,
    heartbeat: Option<Heartbeat>,
    /// Ids handed to the screen: what the inbox hands over again is not news.
    seen: HashSet<String>,
    /// Writes not yet answered, with the request id each keeps on every attempt.
    outbox: VecDeque<(Envelope, Option<(Name, Name)>)>,
    down_since: Option<f64>,
    last_probe: Instant,
    last_sweep: Instant,
    news: Option<mpsc::Sender<Net>>,
}

impl Session {
    /// Logs in and subscribes: the person's own topic (private messages, receipts, markers),
    /// `servers` (elections), `presence`, and each room they are in.
    ///
    /// # Errors
    /// When the sockets cannot be opened or the login is refused.
    pub fn connect(opts: Options) -> anyhow::Result<Session> {
        let ctx = zmq::Context::new();
        let clock = SharedClock::new();
        // Short deadlines: a person should see "reconnecting" within seconds, and the
        // outbox keeps what did not go through.
        let mut conn =
            Connection::open(&ctx, &opts.broker, clock.clone())?.with_timeout(REQUEST_TIMEOUT, 1);
        match &opts.password {
            Some(pw) => conn.login_with_password(&opts.user, pw).map(drop),
            None => conn.login(&opts.user),
        }
        .with_context(|| format!("cannot log in as {}", opts.user))?;
        let mut sub = Subscriber::open(&ctx, &opts.sub, clock.clone())?;
        let mut repair = Connection::open(&ctx, &opts.broker, clock.clone())?;
        repair.set_token(conn.token().map(str::to_owned));
        sub.repair_with(repair)?;
        sub.unseal_as(opts.user.clone());
        for topic in [opts.user.as_str(), "servers", "presence"] {
            sub.subscribe(topic)?;
        }
        let heartbeat = Heartbeat::start(
            &ctx,
            &opts.broker,
            clock,
            opts.user.clone(),
            conn.token().map(str::to_owned),
        )
        .ok();
        Ok(Session {
            opts,
            ctx,
            conn,
            sub,
            heartbeat,
            seen: HashSet::new(),
            outbox: VecDeque::new(),
            down_since: None,
            last_probe: Instant::now(),
            last_sweep: Instant::now(),
            news: None,
        })
    }

    /// Runs the session on a thread of its own until the screen quits (or goes away).
    pub fn spawn(
        mut self,
        news: mpsc::Sender<Net>,
    ) -> (mpsc::Sender<Effect>, std::thread::JoinHandle<()>) {
        let (tx, effects) = mpsc::channel();
        self.news = Some(news);
        let handle = std::thread::spawn(move || self.run(&effects));
        (tx, handle)
    }

    fn tell(&self, n: Net) {
        if let Some(tx) = &self.news {
            let _ = tx.send(n);
        }
    }

    fn me(&self) -> Name {
        self.opts.user.clone()
    }

    fn run(mut self, effects: &mpsc::Receiver<Effect>) {
        self.start();
        loop {
            loop {
                match effects.try_recv() {
                    Ok(Effect::Quit) | Err(mpsc::TryRecvError::Disconnected) => {
                        self.finish();
                        return;
                    }
                    Ok(e) => self.effect(e),
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            match self.sub.recv_timeout(Duration::from_millis(50)) {
                Ok(Some(r)) => self.publication(&r),
                Ok(None) => {}
                Err(e) => self.tell(Net::Error(format!("subscription: {e}"))),
            }
            if self.down_since.is_some() && self.last_probe.elapsed() >= PROBE_EVERY {
                self.last_probe = Instant::now();
                self.flush();
            }
            if self.down_since.is_none() && self.last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep(false);
            }
        }
    }

    /// What the screen needs first: the places with their unread counts and markers, who is
    /// online, the coordinator, then what arrived while away.
    fn start(&mut self) {
        // The login answer named the coordinator; later elections come on `servers`.
        if let Some(c) = self.conn.coordinator() {
            self.tell(Net::Coordinator(c.to_owned()));
        }
        let me = self.me();
        let t = Instant::now();
        match self.conn.request(&Request::Unread { user: me.clone() }) {
            Ok(reply) => {
                self.answered(&reply, t);
                let places = places(&reply);
                for (p, _, _) in &places {
                    if let Place::Channel(c) = p {
                        let _ = self.sub.subscribe(c.as_str());
                    }
                }
                self.tell(Net::Ready { places });
            }
            Err(e) => self.failed(&e),
        }
        if let Ok(people) = self.conn.online() {
            self.tell(Net::Online(people));
        }
        self.tell(Net::Info(format!(
            "logged in as {me}; F1 for help, /join a room, /msg someone"
        )));
        self.sweep(true);
    }

    /// Takes the inbox: what is new to the screen goes to it (marked as arrived while away
    /// at the start), and the device's cursor moves past it all.
    fn sweep(&mut self, away: bool) {
        self.last_sweep = Instant::now();
        let me = self.me();
        let device = self.opts.device.clone();
        let mut found = Vec::new();
        let mut seen = std::mem::take(&mut self.seen);
        let r = self
            .conn
            .catch_up(&me, &device, &mut seen, |e| found.push(e.clone()));
        self.seen = seen;
        for event in found {
            self.tell(Net::Message { event, away });
        }
        if let Err(e) = r {
            self.failed(&e);
        }
    }

    /// Confirms what this device took, before leaving.
    fn finish(&mut self) {
        if self.down_since.is_none() {
            self.sweep(false);
        }
        drop(self.heartbeat.take());
    }

    fn effect(&mut self, e: Effect) {
        let me = self.me();
        match e {
            Effect::Post { channel, text } => self.write(
                Request::Publish {
                    user: me,
                    channel,
                    message: text,
                },
                None,
            ),
            Effect::Message { to, text } => {
                let pair = Some((me.clone(), to.clone()));
                self.write(
                    Request::Message {
                        src: me,
                        dst: to,
                        message: text,
                    },
                    pair,
                )
            }
            Effect::Read { id } => {
                let _ = self.ask(&Request::Read { user: me, id });
            }
            Effect::History { place, before } => {
                let of = match &place {
                    Place::Channel(c) => Conversation::Channel(c.clone()),
                    Place::With(w) => Conversation::Direct(me, w.clone()),
                };
                let q = HistoryQuery {
                    of,
                    limit: PAGE,
                    before: before.map(|(lamport, origin)| Cursor { lamport, origin }),
                    after: None,
                    window: Default::default(),
                };
                if let Some(reply) = self.ask(&Request::History { query: q }) {
                    match HistoryQuery::parse_reply(&reply) {
                        Ok((events, more)) => {
                            self.note_seen(&events);
                            self.tell(Net::History {
                                place,
                                events,
                                more,
                            });
                        }
                        Err(e) => self.tell(Net::Error(format!("history: {e}"))),
                    }
                }
            }
            Effect::Join(channel) => self.join(channel),
            Effect::Create(channel) => {
                let req = Request::Channel {
                    channel: channel.clone(),
                    user: Some(me),
                };
                if self.ask(&req).is_some() {
                    self.tell(Net::Info(format!("created #{channel}; it is yours")));
                    self.join(channel);
                }
            }
            Effect::Leave(channel) => {
                let req = Request::Leave {
                    user: me,
                    channel: channel.clone(),
                };
                if self.ask(&req).is_some() {
                    let _ = self.sub.unsubscribe(channel.as_str());
                    self.tell(Net::Left(channel));
                }
            }
            Effect::Delete(channel) => {
                let req = Request::Delete {
                    user: me,
                    channel: channel.clone(),
                };
                if self.ask(&req).is_some() {
                    self.tell(Net::Info(format!("deleted #{channel} on every server")));
                }
            }
            Effect::Members(channel) => {
                let req = Request::Members {
                    channel: channel.clone(),
                };
                if let Some(reply) = self.ask(&req) {
                    let people = reply.data.str_list("members").unwrap_or_default();
                    let topic = reply
                        .data
                        .opt_str("topic")
                        .ok()
                        .flatten()
                        .map(str::to_owned);
                    self.tell(Net::Members {
                        channel,
                        people,
                        topic,
                    });
                }
            }
            Effect::Channels => {
                if let Some(reply) = self.ask(&Request::Channels {}) {
                    let list = reply.data.str_list("channels").unwrap_or_default();
                    self.tell(Net::Channels(list));
                }
            }
            Effect::Command(line) => self.command(&line),
            Effect::Quit => {}
        }
    }

    fn join(&mut self, channel: Name) {
        let _ = self.sub.subscribe(channel.as_str());
        let req = Request::Join {
            user: self.me(),
            channel: channel.clone(),
            limit: PAGE,
        };
        let Some(reply) = self.ask(&req) else {
            return;
        };
        let (events, more) = HistoryQuery::parse_reply(&reply).unwrap_or_default();
        self.sub.joined(&channel, &events);
        self.note_seen(&events);
        // The posts first, so that the screen opens the room with them.
        self.tell(Net::History {
            place: Place::Channel(channel.clone()),
            events,
            more,
        });
        self.tell(Net::Joined(channel));
    }

    /// The commands the screen leaves to the network side.
    fn command(&mut self, line: &str) {
        let me = self.me();
        let mut words = line.trim_start_matches('/').split_whitespace();
        let verb = words.next().unwrap_or("");
        let arg = words.next().unwrap_or("");
        let said = match verb {
            "users" => self
                .conn
                .users()
                .map(|u| format!("registered: {}", u.join(", "))),
            "online" => self.conn.online().map(|people| {
                let names: Vec<String> = people.into_iter().map(|(u, _)| u).collect();
                format!("online: {}", names.join(", "))
            }),
            "unread" => say::unread(&mut self.conn, &me),
            "read" => match palaver_proto::EventRef::parse("id", arg) {
                Ok(id) => self
                    .conn
                    .read(&me, &id)
                    .map(|at| format!("read up to {at}")),
                Err(e) => Err(ClientError::Refused(e.to_string())),
            },
            "receipts" => say::receipts(&mut self.conn, &me, arg),
            "rooms" => self
                .conn
                .joined(&me)
                .map(|r| format!("you are in: {}", r.join(", "))),
            "post" => {
                let text = line.splitn(3, ' ').nth(2).unwrap_or("").trim().to_owned();
                match Name::parse(arg.trim_start_matches('#')) {
                    Ok(channel) if !text.is_empty() => {
                        self.write(
                            Request::Publish {
                                user: me,
                                channel,
                                message: text,
                            },
                            None,
                        );
                        return;
                    }
                    _ => Err(ClientError::Refused("usage: /post ROOM TEXT".into())),
                }
            }
            "register" => {
                let pw = line.split_once(' ').map_or("", |x| x.1).to_owned();
                self.conn
                    .register(&me, &pw)
                    .and_then(|()| self.log_in(&me, &pw))
                    .map(|()| format!("{me} is yours now: only your password opens it"))
            }
            "login" => {
                let pw = line.split_once(' ').map_or("", |x| x.1).to_owned();
                self.log_in(&me, &pw)
                    .map(|()| format!("logged in to your account {me}"))
            }
            "password" => {
                let new = words.next().unwrap_or("");
                if arg.is_empty() || new.is_empty() {
                    Err(ClientError::Refused("usage: /password OLD NEW".into()))
                } else {
                    self.conn
                        .change_password(&me, arg, new)
                        .map(|()| "password changed; your other sessions have ended".to_owned())
                }
            }
            "unregister" => {
                let pw = line.split_once(' ').map_or("", |x| x.1).to_owned();
                self.conn.unregister(&me, &pw).map(|()| {
                    self.session_changed();
                    format!("account {me} closed; the name is retired")
                })
            }
            "logout" => self.conn.logout(&me).map(|()| {
                self.session_changed();
                "logged out; your session has ended on every server".to_owned()
            }),
            _ => Err(ClientError::Refused(format!(
                "/{verb} is not a command here; F1 lists them"
            ))),
        };
        match said {
            Ok(text) => self.tell(Net::Info(text)),
            Err(e) => self.failed(&e),
        }
    }

    /// Logs in to the account with `password`; the new session is used from now on.
    fn log_in(&mut self, me: &Name, password: &str) -> Result<(), ClientError> {
        if password.is_empty() {
            return Err(ClientError::Refused("usage: /login PASSWORD".into()));
        }
        self.conn.login_with_password(me, password)?;
        self.session_changed();
        Ok(())
    }

    /// The session changed: the subscriber (which opens sealed messages) and the heartbeat
    /// take the new token.
    fn session_changed(&mut self) {
        let token = self.conn.token().map(str::to_owned);
        self.sub.set_token(token.clone());
        self.heartbeat = None;
        self.heartbeat = Heartbeat::start(
            &self.ctx,
            &self.opts.broker,
            self.conn.clock().clone(),
            self.me(),
            token,
        )
        .ok();
    }

    /// A request whose failure is told to the screen; the reply when it worked.
    fn ask(&mut self, req: &Request) -> Option<Envelope> {
        let t = Instant::now();
        match self.conn.request(req) {
            Ok(reply) => {
                self.answered(&reply, t);
                Some(reply)
            }
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// A post or private message: into the outbox, then sent (now, or when the cluster
    /// answers again). `pair` is (sender, recipient) for a private message, which comes back
    /// to the screen from the reply (its own publication goes to the recipient's topic).
    fn write(&mut self, req: Request, pair: Option<(Name, Name)>) {
        let id = format!(
            "{}-{}",
            self.opts.device,
            palaver_proto::now_secs().to_bits()
        );
        let env = req.to_envelope().with("request_id", id);
        self.outbox.push_back((env, pair));
        if self.down_since.is_none() {
            self.flush();
        }
    }

    /// Sends what waits in the outbox, in order, until one gets no answer.
    fn flush(&mut self) {
        if self.outbox.is_empty() && self.down_since.is_some() {
            // Nothing to send: ask anything, to learn whether the cluster is back.
            let t = Instant::now();
            match self.conn.request(&Request::Users {}) {
                Ok(reply) => self.answered(&reply, t),
                Err(e) => self.failed(&e),
            }
            return;
        }
        while let Some((env, pair)) = self.outbox.front().cloned() {
            let t = Instant::now();
            match self.conn.call(env.clone()) {
                Ok(reply) => {
                    self.outbox.pop_front();
                    self.answered(&reply, t);
                    if palaver_proto::Reply::status(&reply) == palaver_proto::Status::Error {
                        let why = palaver_proto::Reply::error_text(&reply).unwrap_or_default();
                        self.tell(Net::Error(why));
                        continue;
                    }
                    if let Some((src, dst)) = pair {
                        if let Some(e) = own_message(&reply, &env, src, dst) {
                            self.seen.insert(e.id());
                            self.tell(Net::Message {
                                event: e,
                                away: false,
                            });
                        }
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    return;
                }
            }
        }
    }

    /// A reply came: the cluster answers (again).
    fn answered(&mut self, reply: &Envelope, since: Instant) {
        let server = reply
            .data
            .opt_str("server")
            .ok()
            .flatten()
            .map(str::to_owned);
        if let Ok(Some(c)) = reply.data.opt_str("coordinator") {
            self.tell(Net::Coordinator(c.to_owned()));
        }
        self.tell(Net::Answered {
            server,
            latency_ms: since.elapsed().as_secs_f64() * 1000.0,
            clock: self.conn.clock().now(),
        });
        if self.down_since.take().is_some() {
            self.tell(Net::Link(Link::Online));
            // What was sent meanwhile, then what arrived meanwhile.
            self.flush();
            self.sweep(false);
        }
    }

    /// A request failed: a refusal is said; no answer means the cluster is unreachable.
    fn failed(&mut self, e: &ClientError) {
        match e {
            ClientError::Refused(why) => self.tell(Net::Error(why.clone())),
            other => {
                if self.down_since.is_none() {
                    let since = palaver_proto::now_secs();
                    self.down_since = Some(since);
                    self.last_probe = Instant::now();
                    self.tell(Net::Link(Link::Reconnecting { since }));
                }
                tracing::debug!(error = %other, "a request got no answer");
            }
        }
    }

    fn note_seen(&mut self, events: &[Event]) {
        self.seen.extend(events.iter().map(Event::id));
    }

    /// A publication on a followed topic.
    fn publication(&mut self, r: &Received) {
        let env = &r.publication.envelope;
        let d = &env.data;
        let text = |k: &'static str| d.opt_str(k).ok().flatten().unwrap_or("?").to_owned();
        let position = || {
            let origin = text("id").rsplit_once(':').map(|(o, _)| o.to_owned());
            (
                d.clock().ok().flatten().unwrap_or(0),
                origin.unwrap_or_default(),
            )
        };
        let at = d.timestamp().unwrap_or(r.received_at);
        let room = || Name::parse(&text("channel")).ok().map(Place::Channel);
        match env.service.as_str() {
            "publish" | "message" => match message_event(d) {
                Ok(e) => {
                    if self.seen.insert(e.id()) {
                        self.tell(Net::Message {
                            event: e,
                            away: false,
                        });
                    }
                }
                Err(err) => tracing::debug!(error = %err, "a publication that is not a message"),
            },
            "join" | "leave" => {
                let verb = if env.service == "join" {
                    "joined"
                } else {
                    "left"
                };
                if let Some(Place::Channel(c)) = room() {
                    self.tell(Net::MembersChanged(c));
                }
                self.tell(Net::Notice {
                    place: room(),
                    position: position(),
                    at,
                    text: format!("{} {verb}", text("user")),
                });
            }
            "topic" => {
                if let Some(Place::Channel(c)) = room() {
                    self.tell(Net::MembersChanged(c));
                }
                let said = match d.opt_str("topic").ok().flatten() {
                    Some(t) => format!("{} set the topic: {t}", text("user")),
                    None => format!("{} cleared the topic", text("user")),
                };
                self.tell(Net::Notice {
                    place: room(),
                    position: position(),
                    at,
                    text: said,
                });
            }
            "delete" => self.tell(Net::Notice {
                place: room(),
                position: position(),
                at,
                text: format!("#{} was deleted by its owner", text("channel")),
            }),
            "receipt" => {
                let state = match d.opt_str("state").ok().flatten() {
                    Some("read") => Receipt::Read,
                    _ => Receipt::Delivered,
                };
                self.tell(Net::Receipt {
                    reader: text("reader"),
                    upto: text("upto"),
                    state,
                });
            }
            "read" => {
                let place = match d.opt_str("channel").ok().flatten() {
                    Some(c) => Name::parse(c).ok().map(Place::Channel),
                    None => Name::parse(&text("with")).ok().map(Place::With),
                };
                if let Some(place) = place {
                    self.tell(Net::Marker {
                        place,
                        upto: text("upto"),
                    });
                }
            }
            "presence" => {
                let online = d.opt_bool("online").ok().flatten().unwrap_or(false);
                let user = text("user");
                self.tell(Net::Presence {
                    user: user.clone(),
                    online,
                    at,
                });
                let what = if online { "is online" } else { "went offline" };
                self.tell(Net::Notice {
                    place: None,
                    position: position(),
                    at,
                    text: format!("{user} {what}"),
                });
            }
            "election" => self.tell(Net::Coordinator(text("coordinator"))),
            _ => {}
        }
    }
}

/// The places in an `unread` reply: each room and conversation, its count and its marker.
fn places(reply: &Envelope) -> Vec<(Place, u64, Option<crate::buffer::Position>)> {
    let marker = |m: &palaver_proto::Map| {
        m.opt_str("marker").ok().flatten().and_then(|s| {
            let (l, o) = s.split_once(':')?;
            Some((l.parse().ok()?, o.to_owned()))
        })
    };
    let mut out = Vec::new();
    for m in reply.data.maps("channels").unwrap_or_default() {
        if let Ok(c) = m.name("channel") {
            out.push((
                Place::Channel(c),
                m.counter("unread").unwrap_or(0),
                marker(&m),
            ));
        }
    }
    for m in reply.data.maps("conversations").unwrap_or_default() {
        if let Ok(w) = m.name("with") {
            out.push((Place::With(w), m.counter("unread").unwrap_or(0), marker(&m)));
        }
    }
    out
}

/// The private message a `message` reply stored, as an event for the screen.
fn own_message(reply: &Envelope, sent: &Envelope, src: Name, dst: Name) -> Option<Event> {
    let id = palaver_proto::EventRef::parse("id", reply.data.opt_str("id").ok()??).ok()?;
    Some(Event {
        origin: id.origin,
        seq: id.seq,
        // The reply's clock is at or after the message's: it sorts after what was seen.
        lamport: reply.data.clock().ok()??,
        timestamp: reply
            .data
            .timestamp()
            .unwrap_or_else(palaver_proto::now_secs),
        kind: EventKind::Message(MessageKind::Direct {
            src,
            dst,
            message: sent.data.opt_str("message").ok()??.to_owned(),
        }),
        request: None,
    })
}
