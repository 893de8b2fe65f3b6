use std::collections::BTreeSet;

use palaver_core::presence::{Change, Presence};
use palaver_core::Lamport;
use palaver_proto::peer::Beat;
use palaver_proto::{
    Envelope, EventRef, HistoryQuery, Name, Publication, Reply, Request, Secret, Status,
};
use palaver_store::{Event, EventKind, RequestEvent, Snapshot, RECENT_REQUESTS};

use crate::recent::Recent;

// One module per client service: what it checks, and what it does to the state.
mod accounts;
mod beat;
mod channel;
mod channels;
mod history;
mod login;
mod logout;
mod message;
mod password;
mod publish;
mod register;
mod unregister;
mod unseal;
mod users;

use accounts::Accounts;

/// How long a session lasts without use, by default: a week.
pub const SESSION_IDLE: f64 = 7.0 * 86_400.0;
/// How long a person stays online after their client's last beat, by default.
pub const PRESENCE_TIMEOUT: f64 = 15.0;

/// The server's rules that an operator may tune.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Seconds a session may go unused before it expires.
    pub session_idle: f64,
    /// Seconds after a client's last beat when it counts as gone.
    pub presence_timeout: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            session_idle: SESSION_IDLE,
            presence_timeout: PRESENCE_TIMEOUT,
        }
    }
}

impl Policy {
    /// How stale a session's last recorded use may get before a use is recorded again (a
    /// `touch` event): a 24th of the idle time, so a session in use never expires and one
    /// left alone expires between 23/24 and all of the idle time after its last use.
    fn touch_every(&self) -> f64 {
        self.session_idle / 24.0
    }

    /// How often clients should beat: a third of the timeout, so one lost beat is not enough
    /// to go offline.
    pub fn beat_every(&self) -> f64 {
        self.presence_timeout / 3.0
    }
}

/// What a request carries to prove who sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proofs {
    pub token: Option<Secret>,
    pub password: Option<Secret>,
}

/// What a client service decided.
enum Outcome {
    /// Answer this, and nothing else.
    Reply(Envelope),
    /// Refuse, saying why; nothing changes.
    Refused(String),
    /// Make this event: stored, replicated, published, then answered with its id.
    Event(EventKind),
    /// Answer from the store after the batch's commit.
    Read(StoredRead),
    /// Hash or check a password first (slow work, done on a thread of its own), then decide
    /// with [`State::verified`].
    Verify(Verify),
}

/// A read of the store, answered after the batch it arrived in commits so that it sees every
/// event acknowledged before it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredRead {
    /// A page of a conversation.
    History(HistoryQuery),
    /// One private message of `user`'s, by id.
    Unseal { user: Name, id: EventRef },
}

/// Password work a request waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Verify {
    /// What to do once it is done.
    pub pending: Pending,
    pub job: HashJob,
}

/// The request that waits for password work.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Login {
        user: Name,
    },
    Register {
        user: Name,
    },
    /// `keep`: the session the request came with, which the change leaves open.
    Password {
        user: Name,
        keep: Option<String>,
    },
    Unregister {
        user: Name,
    },
}

impl Pending {
    pub fn user(&self) -> &Name {
        match self {
            Pending::Login { user }
            | Pending::Register { user }
            | Pending::Password { user, .. }
            | Pending::Unregister { user } => user,
        }
    }

    fn service(&self) -> &'static str {
        match self {
            Pending::Login { .. } => "login",
            Pending::Register { .. } => "register",
            Pending::Password { .. } => "password",
            Pending::Unregister { .. } => "unregister",
        }
    }
}

/// The password work itself.
#[derive(Debug, Clone, PartialEq)]
pub enum HashJob {
    /// Does `password` match `phc`? A match also yields a new session token.
    Check { phc: String, password: Secret },
    /// A hash of a new password.
    Make { password: Secret },
    /// Does `password` match `phc`? If so, a hash of `new`.
    Change {
        phc: String,
        password: Secret,
        new: Secret,
    },
}

/// What the password work found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The password matched (always true for [`HashJob::Make`]).
    pub ok: bool,
    /// The new hash, for `Make` and a matching `Change`.
    pub hash: Option<String>,
    /// A new session token, for a matching `Check`.
    pub token: Option<String>,
}

/// The server's logic, free of I/O: what a request does given what is known.
///
/// A write takes effect in memory as soon as it is accepted, so that later requests of the same
/// batch see it; the driver commits the batch and only then sends any of its replies. If the
/// commit fails, the driver calls [`State::reload`] with what the store really holds, and the
/// batch's requests are answered with errors.
pub struct State {
    origin: String,
    policy: Policy,
    users: BTreeSet<Name>,
    channels: BTreeSet<Name>,
    accounts: Accounts,
    presence: Presence,
    seq: u64,
    /// Recent client request ids and the event each made.
    requests: Recent,
    /// The session the request being handled proved itself with.
    session_used: Option<(Name, String)>,
    /// Events the server makes of itself (sessions' `touch`es), to store with the batch.
    extra: Vec<Event>,
    /// Clients' beats taken here, to pass on to the other servers.
    gossip: Vec<Beat>,
}

/// What a request did.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The answer, to send once `event` (if any) is durable.
    pub reply: Envelope,
    /// The state change to store.
    pub event: Option<Event>,
    /// What to publish once `event` is durable and the live peers have it: topic and message.
    pub publication: Option<(String, Envelope)>,
    /// A read of the store to answer with instead of `reply`, after the batch's commit, so
    /// that it sees every event acknowledged before it (`history`, `unseal`).
    pub read: Option<StoredRead>,
    /// Password work to do first; then [`State::verified`] decides.
    pub verify: Option<Verify>,
}

impl Handled {
    /// An answer and nothing else.
    pub fn reply(reply: Envelope) -> Handled {
        Handled {
            reply,
            event: None,
            publication: None,
            read: None,
            verify: None,
        }
    }
}

impl State {
    /// Starts from what the store holds, with the default policy.
    pub fn new(origin: &str, snap: Snapshot) -> State {
        State::with_policy(origin, snap, Policy::default())
    }

    /// Starts from what the store holds.
    pub fn with_policy(origin: &str, snap: Snapshot, policy: Policy) -> State {
        let mut st = State {
            origin: origin.to_owned(),
            policy,
            users: BTreeSet::new(),
            channels: BTreeSet::new(),
            accounts: Accounts::default(),
            presence: Presence::new(policy.presence_timeout),
            seq: 0,
            requests: Recent::new(RECENT_REQUESTS),
            session_used: None,
            extra: Vec::new(),
            gossip: Vec::new(),
        };
        st.reload(snap);
        st
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Forgets whatever was accepted but not stored, and starts again from `snap`.
    pub fn reload(&mut self, snap: Snapshot) {
        self.users = snap.users.into_iter().collect();
        self.channels = snap.channels.into_iter().collect();
        self.accounts = Accounts::default();
        for e in &snap.accounts {
            self.accounts.on_event(e);
        }
        for closed in self.accounts.retired() {
            self.users.remove(closed);
        }
        self.seq = snap.progress.get(&self.origin).copied().unwrap_or(0);
        self.extra.clear();
        self.requests.clear();
        for (request, made) in snap.requests {
            // A request made twice (see `apply`) names its earlier event.
            match self.requests.get(&request) {
                Some(prev) if (prev.lamport, &prev.origin) <= (made.lamport, &made.origin) => {}
                _ => self.requests.remember(&request, &made),
            }
        }
    }

    /// Takes in an event another server accepted (and this one has just stored).
    ///
    /// A name claimed as a user on one server and as a channel on another at the same moment
    /// keeps the kind this server learned first; see docs/replication.md.
    ///
    /// Returns an event to hide, when this one repeats a request another event already made
    /// (the first attempt reached a server that died before passing it on, and the retry went
    /// elsewhere): of the two, the later in the total order is hidden, the same on every server.
    pub fn apply(&mut self, event: &Event) -> Option<(String, u64)> {
        if event.origin == self.origin {
            // One of this server's own events, back from a peer (this server sent it, then
            // crashed before its commit, or lost its disk): its number is taken.
            self.seq = self.seq.max(event.seq);
        }
        let mut hide = None;
        if let Some(request) = &event.request {
            if !self.requests.made_by(request, event) {
                match self.requests.get(request) {
                    Some(prev) => {
                        let made = RequestEvent::of(event);
                        let (earlier, later) =
                            if (prev.lamport, &prev.origin) <= (made.lamport, &made.origin) {
                                (prev, made)
                            } else {
                                (made, prev)
                            };
                        hide = Some((later.origin.clone(), later.seq));
                        self.requests.replace(request, &earlier);
                    }
                    None => self.requests.remember_event(request, event),
                }
            }
        }
        self.take_in(event);
        hide
    }

    /// What an event, this server's or another's, does to the state in memory.
    fn take_in(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Login { user } => login::on_event(self, user),
            EventKind::Channel { channel } => channel::on_event(self, channel),
            EventKind::Post { .. } | EventKind::Direct { .. } => {}
            EventKind::Register { user, .. } | EventKind::Session { user, .. } => {
                self.accounts.on_event(event);
                login::on_event(self, user);
            }
            EventKind::Unregister { user } => {
                self.accounts.on_event(event);
                self.users.remove(user);
            }
            EventKind::Logout { .. } | EventKind::Password { .. } | EventKind::Touch { .. } => {
                self.accounts.on_event(event)
            }
        }
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Decides what `req`, received at physical time `now`, does, and applies it. An accepted
    /// event takes its Lamport time from `lamport`.
    pub fn handle(&mut self, req: Request, now: f64, lamport: &mut Lamport) -> Handled {
        self.handle_request(req, None, &Proofs::default(), now, lamport)
    }

    /// As [`State::handle`], for a request that may carry the client's request id and proofs
    /// of who sent it: a write whose id was seen before (here, or on any server, through
    /// replication) is not done again; it is answered as the first time, with the same event
    /// id.
    pub fn handle_request(
        &mut self,
        req: Request,
        request: Option<String>,
        proofs: &Proofs,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let service = req.service();
        if let Some(id) = request
            .as_ref()
            .filter(|_| req.writes())
            .and_then(|r| self.requests.get(r))
        {
            return Handled::reply(
                Reply::ok(service)
                    .with("id", id.id())
                    .with("repeated", true),
            );
        }
        self.session_used = None;
        let outcome = match req {
            Request::Login { user } => login::apply(self, user, proofs, now),
            Request::Users => users::apply(self),
            Request::Channel { channel } => channel::apply(self, channel),
            Request::Channels => channels::apply(self),
            Request::Publish {
                user,
                channel,
                message,
            } => publish::apply(self, user, channel, message, proofs, now),
            Request::Message { src, dst, message } => {
                message::apply(self, src, dst, message, proofs, now)
            }
            Request::History(q) => history::apply(self, q, proofs, now),
            Request::Register { user } => register::apply(self, user, proofs),
            Request::Logout { user } => logout::apply(self, user, proofs, now),
            Request::Password { user, new } => password::apply(self, user, new, proofs, now),
            Request::Unregister { user } => unregister::apply(self, user, proofs),
            Request::Beat {
                user,
                device,
                leaving,
            } => beat::apply(self, user, device, leaving, proofs, now),
            Request::Unseal { user, id } => unseal::apply(self, user, id, proofs, now),
        };
        // A login with a password opens a new session each time: a retry must not be answered
        // as "repeated", which would carry no token.
        let request = request.filter(|_| service != "login" || proofs.password.is_none());
        let handled = self.decide(service, outcome, request, now, lamport);
        // A refused request moves no clock, so it records no use either.
        if Reply::status(&handled.reply) == Status::Success {
            self.touch_if_due(now, lamport);
        }
        self.session_used = None;
        handled
    }

    /// Finishes a request that waited for password work.
    pub fn verified(
        &mut self,
        pending: Pending,
        verdict: Verdict,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let service = pending.service();
        let (outcome, token) = match pending {
            Pending::Login { user } => login::verified(self, user, verdict),
            Pending::Register { user } => (register::verified(self, user, verdict), None),
            Pending::Password { user, keep } => {
                (password::verified(self, user, keep, verdict), None)
            }
            Pending::Unregister { user } => (unregister::verified(self, user, verdict), None),
        };
        let request = request.filter(|_| service != "login");
        let mut handled = self.decide(service, outcome, request, now, lamport);
        if let Some(token) = token.filter(|_| handled.event.is_some()) {
            handled.reply = handled
                .reply
                .with("token", token)
                .with("idle", self.policy.session_idle);
        }
        handled
    }

    /// Turns a service's outcome into what the driver does.
    fn decide(
        &mut self,
        service: &'static str,
        outcome: Outcome,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let kind = match outcome {
            Outcome::Reply(reply) => return Handled::reply(reply),
            Outcome::Refused(why) => return Handled::reply(Reply::error(service, &why)),
            Outcome::Read(q) => {
                return Handled {
                    read: Some(q),
                    ..Handled::reply(Reply::ok(service))
                }
            }
            Outcome::Verify(v) => {
                return Handled {
                    verify: Some(v),
                    ..Handled::reply(Reply::ok(service))
                }
            }
            Outcome::Event(kind) => kind,
        };
        let event = self.make(kind, request, now, lamport);
        let reply = Reply::ok(service).with("id", event.id());
        let publication = self.publication(&event);
        Handled {
            reply,
            event: Some(event),
            publication,
            read: None,
            verify: None,
        }
    }

    /// A new event of this server's, taken in at once.
    fn make(
        &mut self,
        kind: EventKind,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Event {
        self.seq += 1;
        let event = Event {
            origin: self.origin.clone(),
            seq: self.seq,
            lamport: lamport.tick(),
            timestamp: now,
            kind,
            request,
        };
        if let Some(r) = &event.request {
            self.requests.remember_event(r, &event);
        }
        if event.kind.account().is_some() {
            self.take_in(&event);
        }
        event
    }

    /// What `event` publishes: a private message to or from an account is sealed (its text
    /// never crosses the open subscriber port).
    fn publication(&self, event: &Event) -> Option<(String, Envelope)> {
        let sealed = match &event.kind {
            EventKind::Direct { src, dst, .. } => {
                self.accounts.protected(src) || self.accounts.protected(dst)
            }
            _ => false,
        };
        let p = if sealed {
            Publication::sealed(event)
        } else {
            Publication::of_event(event)
        };
        p.map(|p| (p.topic, p.envelope))
    }

    /// Whether the request may act as `user`; the session it used is noted, so that its use
    /// is recorded when due.
    fn acting(&mut self, user: &Name, proofs: &Proofs, now: f64) -> Result<Option<String>, String> {
        let session = self
            .accounts
            .acting(user, proofs.token.as_ref(), now, self.policy.session_idle)
            .map_err(|d| d.say(user))?;
        if let Some(s) = &session {
            self.session_used = Some((user.clone(), s.clone()));
        }
        Ok(session)
    }

    /// Records the use of the session the last request came with, if its recorded use is
    /// older than [`Policy::touch_every`].
    fn touch_if_due(&mut self, now: f64, lamport: &mut Lamport) {
        let Some((user, session)) = self.session_used.take() else {
            return;
        };
        if now - self.accounts.last_use(&session) < self.policy.touch_every() {
            return;
        }
        let e = self.make(EventKind::Touch { user, session }, None, now, lamport);
        self.extra.push(e);
    }

    /// Events the server made of itself since the last call, to store like any other.
    pub fn take_extra(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.extra)
    }

    /// Beats taken from clients since the last call, to pass on to the other servers.
    pub fn take_gossip(&mut self) -> Vec<Beat> {
        std::mem::take(&mut self.gossip)
    }

    /// Beats another server took.
    pub fn beats_from_peer(&mut self, beats: &[Beat], now: f64) {
        for b in beats {
            self.presence
                .beat(b.user.as_str(), &b.device, b.at, b.leaving, now);
        }
    }

    /// Expires silent clients; returns who went online or offline since the last call.
    pub fn presence_changes(&mut self, now: f64) -> Vec<Change> {
        self.presence.tick(now);
        std::iter::from_fn(|| self.presence.poll_change()).collect()
    }

    /// The changes since `since`, for a new announcer to repeat.
    pub fn presence_since(&self, since: f64) -> Vec<Change> {
        self.presence.changes_since(since)
    }

    /// When the next client's beats run out.
    pub fn presence_deadline(&self) -> Option<f64> {
        self.presence.next_expiry()
    }
}

/// The announcement of a presence change, on the `presence` topic.
pub fn presence_notice(c: &Change) -> Envelope {
    let env = Envelope::new("presence")
        .with("user", c.user.as_str())
        .with("online", c.online);
    if c.online {
        env.with("since", c.at)
    } else {
        env.with("at", c.at)
    }
}

/// A listing reply: the names under each of `keys`.
fn list(service: &str, names: &BTreeSet<Name>, keys: &[&str]) -> Envelope {
    let names: Vec<rmpv::Value> = names.iter().map(|n| n.as_str().into()).collect();
    keys.iter()
        .fold(Reply::ok(service), |env, key| env.with(key, names.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_proto::Status;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn state() -> State {
        State::new("s1", Snapshot::default())
    }

    fn run(st: &mut State, req: Request) -> Envelope {
        st.handle(req, 1.0, &mut Lamport::default()).reply
    }

    fn ok(env: &Envelope) -> bool {
        Reply::status(env) == Status::Success
    }

    #[test]
    fn the_standard_flow_works() {
        let mut st = state();
        assert!(ok(&run(&mut st, Request::Login { user: name("ana") })));
        assert!(ok(&run(&mut st, Request::Login { user: name("bob") })));
        assert!(ok(&run(
            &mut st,
            Request::Channel {
                channel: name("general")
            }
        )));
        let users = run(&mut st, Request::Users);
        assert_eq!(users.data.str_list("users").unwrap(), vec!["ana", "bob"]);
        let chans = run(&mut st, Request::Channels);
        assert_eq!(chans.data.str_list("users").unwrap(), vec!["general"]);
        assert_eq!(chans.data.str_list("channels").unwrap(), vec!["general"]);
        let post = Request::Publish {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        };
        let h = st.handle(post, 2.0, &mut Lamport::default());
        assert_eq!(h.reply.data.str("status").unwrap(), "OK");
        let ev = h.event.expect("a post is stored");
        let (topic, env) = h.publication.expect("a post is published");
        assert_eq!(topic, "general");
        assert_eq!(env.data.str("id").unwrap(), ev.id());
        assert_eq!(env.data.clock().unwrap(), Some(ev.lamport));
        let dm = Request::Message {
            src: name("ana"),
            dst: name("bob"),
            message: "psst".into(),
        };
        let h = st.handle(dm, 3.0, &mut Lamport::default());
        assert!(ok(&h.reply));
        assert_eq!(h.publication.unwrap().0, "bob");
    }

    #[test]
    fn refusals_say_why_and_change_nothing() {
        let mut st = state();
        run(&mut st, Request::Login { user: name("ana") });
        run(
            &mut st,
            Request::Channel {
                channel: name("general"),
            },
        );
        let cases = [
            (
                Request::Channel {
                    channel: name("general"),
                },
                "already exists",
            ),
            (
                Request::Channel {
                    channel: name("ana"),
                },
                "is a user's name",
            ),
            (
                Request::Login {
                    user: name("general"),
                },
                "is a channel",
            ),
            (
                Request::Publish {
                    user: name("ana"),
                    channel: name("nope"),
                    message: "x".into(),
                },
                "channel `nope` does not exist",
            ),
            (
                Request::Publish {
                    user: name("zed"),
                    channel: name("general"),
                    message: "x".into(),
                },
                "user `zed` has not logged in",
            ),
            (
                Request::Message {
                    src: name("ana"),
                    dst: name("zed"),
                    message: "x".into(),
                },
                "user `zed` does not exist",
            ),
        ];
        for (req, want) in cases {
            let h = st.handle(req, 1.0, &mut Lamport::default());
            assert!(h.event.is_none() && h.publication.is_none());
            assert_eq!(h.reply.data.str("status").unwrap(), "erro");
            assert!(
                Reply::error_text(&h.reply).unwrap().contains(want),
                "{:?}",
                h.reply
            );
        }
        assert_eq!(
            run(&mut st, Request::Users).data.str_list("users").unwrap(),
            vec!["ana"]
        );
    }

    #[test]
    fn a_repeated_request_takes_effect_once() {
        let mut st = state();
        let mut clock = Lamport::default();
        run(&mut st, Request::Login { user: name("ana") });
        run(
            &mut st,
            Request::Channel {
                channel: name("general"),
            },
        );
        let post = || Request::Publish {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        };
        let first = st.handle_request(
            post(),
            Some("r1".into()),
            &Proofs::default(),
            1.0,
            &mut clock,
        );
        let again = st.handle_request(
            post(),
            Some("r1".into()),
            &Proofs::default(),
            2.0,
            &mut clock,
        );
        assert!(
            first.event.is_some() && again.event.is_none(),
            "the retry makes no event"
        );
        assert_eq!(
            again.reply.data.str("id").unwrap(),
            first.reply.data.str("id").unwrap()
        );
        let other = st.handle_request(
            post(),
            Some("r2".into()),
            &Proofs::default(),
            3.0,
            &mut clock,
        );
        assert!(other.event.is_some(), "another id is another post");
        // A retried channel creation is answered as success, not "already exists".
        let make = || Request::Channel {
            channel: name("news"),
        };
        assert!(st
            .handle_request(
                make(),
                Some("c1".into()),
                &Proofs::default(),
                4.0,
                &mut clock
            )
            .event
            .is_some());
        let retry = st.handle_request(
            make(),
            Some("c1".into()),
            &Proofs::default(),
            5.0,
            &mut clock,
        );
        assert_eq!(retry.reply.data.str("status").unwrap(), "sucesso");
    }

    #[test]
    fn a_request_made_twice_on_two_servers_hides_the_later_event_everywhere() {
        let post = |origin: &str, seq: u64, lamport: u64| Event {
            origin: origin.into(),
            seq,
            lamport,
            timestamp: 1.0,
            kind: EventKind::Post {
                user: name("ana"),
                channel: name("general"),
                message: "hi".into(),
            },
            request: Some("r1".into()),
        };
        let (first, retry) = (post("s1", 5, 10), post("s2", 7, 12));
        // One server learns of the first attempt first, another of the retry first.
        let mut a = state();
        assert_eq!(a.apply(&first), None);
        assert_eq!(a.apply(&retry), Some(("s2".into(), 7)));
        let mut b = State::new("s3", Snapshot::default());
        assert_eq!(b.apply(&retry), None);
        assert_eq!(
            b.apply(&first),
            Some(("s2".into(), 7)),
            "the same event is hidden on both"
        );
        let again = b.handle_request(
            Request::Publish {
                user: name("ana"),
                channel: name("general"),
                message: "hi".into(),
            },
            Some("r1".into()),
            &Proofs::default(),
            2.0,
            &mut Lamport::default(),
        );
        assert_eq!(
            again.reply.data.str("id").unwrap(),
            "s1:5",
            "a third try names the earlier event"
        );
    }

    #[test]
    fn own_events_back_from_a_peer_take_their_numbers() {
        let mut st = state();
        let mine = Event {
            origin: "s1".into(),
            seq: 7,
            lamport: 20,
            timestamp: 1.0,
            kind: EventKind::Login { user: name("ana") },
            request: None,
        };
        st.apply(&mine);
        let next = st.handle(
            Request::Login { user: name("bob") },
            2.0,
            &mut Lamport::starting_at(20),
        );
        assert_eq!(
            next.event.unwrap().seq,
            8,
            "never a number a peer already holds"
        );
    }

    #[test]
    fn reload_forgets_what_was_not_stored() {
        let mut st = state();
        let mut clock = Lamport::default();
        let h = st.handle(Request::Channel { channel: name("c") }, 1.0, &mut clock);
        let lamport = h.event.unwrap().lamport;
        st.reload(Snapshot::default());
        let listed = run(&mut st, Request::Channels);
        assert!(listed.data.str_list("channels").unwrap().is_empty());
        let again = st.handle(Request::Channel { channel: name("c") }, 1.0, &mut clock);
        let again = again.event.unwrap();
        assert_eq!(again.seq, 1, "the unstored sequence number is reused");
        assert!(again.lamport > lamport, "the clock never goes back");
    }

    #[test]
    fn events_get_consecutive_ids_and_rising_clocks() {
        let snap = Snapshot {
            progress: [("s1".to_owned(), 41)].into(),
            max_lamport: 100,
            ..Snapshot::default()
        };
        let mut st = State::new("s1", snap);
        let mut clock = Lamport::starting_at(100);
        clock.observe(500);
        let a = st.handle(Request::Login { user: name("a") }, 1.0, &mut clock);
        let b = st.handle(Request::Login { user: name("b") }, 1.0, &mut clock);
        let (a, b) = (a.event.unwrap(), b.event.unwrap());
        assert_eq!((a.seq, b.seq), (42, 43));
        assert!(a.lamport > 500 && b.lamport > a.lamport);
    }

    /// Runs a request as the reactor does, doing its password work (if any) on the spot. The
    /// Lamport clock follows `now`, so later calls make later events.
    fn with_proofs(st: &mut State, req: Request, proofs: Proofs, now: f64) -> Handled {
        let mut clock = Lamport::starting_at((now * 1000.0) as u64);
        let h = st.handle_request(req, None, &proofs, now, &mut clock);
        match h.verify {
            Some(v) => {
                let verdict = crate::hasher::work(v.job);
                st.verified(v.pending, verdict, None, now, &mut clock)
            }
            None => h,
        }
    }

    fn password(p: &str) -> Proofs {
        Proofs {
            password: Some(Secret::new(p)),
            token: None,
        }
    }

    fn token(t: &str) -> Proofs {
        Proofs {
            token: Some(Secret::new(t)),
            password: None,
        }
    }

    /// A state where `ana` has an account with `secret-1` and a session, whose token is
    /// returned; `bob` and `#general` exist without passwords.
    fn with_account() -> (State, String) {
        let mut st = state();
        run(&mut st, Request::Login { user: name("bob") });
        run(
            &mut st,
            Request::Channel {
                channel: name("general"),
            },
        );
        let h = with_proofs(
            &mut st,
            Request::Register { user: name("ana") },
            password("secret-1"),
            1.0,
        );
        assert!(ok(&h.reply), "{:?}", h.reply);
        assert!(matches!(
            h.event.as_ref().map(|e| &e.kind),
            Some(EventKind::Register { .. })
        ));
        let h = with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            password("secret-1"),
            2.0,
        );
        assert!(ok(&h.reply), "{:?}", h.reply);
        let t = h.reply.data.str("token").unwrap().to_owned();
        assert!(matches!(
            h.event.as_ref().map(|e| &e.kind),
            Some(EventKind::Session { .. })
        ));
        (st, t)
    }

    fn refused(h: &Handled, want: &str) {
        assert_eq!(Reply::status(&h.reply), Status::Error, "{:?}", h.reply);
        let text = Reply::error_text(&h.reply).unwrap();
        assert!(text.contains(want), "{text:?} should say {want:?}");
        assert!(h.event.is_none() && h.publication.is_none() && h.read.is_none());
    }

    #[test]
    fn an_account_is_used_only_with_its_session() {
        let (mut st, t) = with_account();
        let post = || Request::Publish {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        };
        let dm = || Request::Message {
            src: name("ana"),
            dst: name("bob"),
            message: "psst".into(),
        };
        let hist = || {
            Request::History(HistoryQuery {
                of: palaver_proto::Conversation::Direct(name("ana"), name("bob")),
                limit: 10,
                before: None,
                after: None,
            })
        };
        // The standard services, without a token: refused, nothing stored.
        refused(
            &with_proofs(
                &mut st,
                Request::Login { user: name("ana") },
                Proofs::default(),
                3.0,
            ),
            "has a password",
        );
        refused(
            &with_proofs(&mut st, post(), Proofs::default(), 3.0),
            "has a password",
        );
        refused(
            &with_proofs(&mut st, dm(), Proofs::default(), 3.0),
            "has a password",
        );
        refused(
            &with_proofs(&mut st, hist(), Proofs::default(), 3.0),
            "has a password",
        );
        // A forged token, and another person's.
        let forged = "f".repeat(64);
        refused(
            &with_proofs(&mut st, post(), token(&forged), 3.0),
            "not valid",
        );
        with_proofs(
            &mut st,
            Request::Register { user: name("cy") },
            password("secret-cy"),
            3.0,
        );
        let cy = with_proofs(
            &mut st,
            Request::Login { user: name("cy") },
            password("secret-cy"),
            3.0,
        );
        let cy_token = cy.reply.data.str("token").unwrap().to_owned();
        refused(
            &with_proofs(&mut st, post(), token(&cy_token), 3.0),
            "not `ana`'s",
        );
        // With the session: accepted; the private message is sealed.
        assert!(ok(&with_proofs(&mut st, post(), token(&t), 3.0).reply));
        let h = with_proofs(&mut st, dm(), token(&t), 3.0);
        assert!(ok(&h.reply));
        let (topic, env) = h.publication.unwrap();
        assert_eq!((topic.as_str(), env.service.as_str()), ("bob", "sealed"));
        assert!(
            env.data.get("message").is_none(),
            "no text on the open port"
        );
        assert!(with_proofs(&mut st, hist(), token(&t), 3.0).read.is_some());
        // Between two names without passwords, the standard's full message.
        let plain = Request::Message {
            src: name("bob"),
            dst: name("bob"),
            message: "note to self".into(),
        };
        let h = with_proofs(&mut st, plain, Proofs::default(), 3.0);
        assert_eq!(h.publication.unwrap().1.service, "message");
    }

    #[test]
    fn account_services_refuse_what_is_wrong_and_change_nothing() {
        let (mut st, t) = with_account();
        let login = |p| with_proofs_owned(Request::Login { user: name("ana") }, p);
        let cases: Vec<((Request, Proofs), &str)> = vec![
            (login(password("wrong-pass")), "wrong password"),
            (
                (
                    Request::Login {
                        user: name("nobody"),
                    },
                    password("secret-1"),
                ),
                "has no password",
            ),
            (
                (
                    Request::Register { user: name("ana") },
                    password("secret-2"),
                ),
                "already registered",
            ),
            (
                (
                    Request::Register {
                        user: name("general"),
                    },
                    password("secret-2"),
                ),
                "is a channel",
            ),
            (
                (Request::Register { user: name("dee") }, password("short")),
                "at least 8",
            ),
            (
                (Request::Register { user: name("dee") }, Proofs::default()),
                "needs a `password`",
            ),
            (
                (
                    Request::Password {
                        user: name("ana"),
                        new: Secret::new("secret-new"),
                    },
                    password("wrong-pass"),
                ),
                "wrong password",
            ),
            (
                (
                    Request::Password {
                        user: name("bob"),
                        new: Secret::new("secret-new"),
                    },
                    password("secret-1"),
                ),
                "has no password",
            ),
            (
                (Request::Logout { user: name("ana") }, Proofs::default()),
                "has a password",
            ),
            (
                (
                    Request::Logout { user: name("ana") },
                    token(&"0".repeat(64)),
                ),
                "not valid",
            ),
            (
                (Request::Logout { user: name("bob") }, token(&t)),
                "no password",
            ),
            (
                (
                    Request::Unregister { user: name("ana") },
                    password("wrong-pass"),
                ),
                "wrong password",
            ),
            (
                (
                    Request::Unregister { user: name("bob") },
                    password("secret-1"),
                ),
                "no account",
            ),
            (
                (
                    Request::Beat {
                        user: name("ana"),
                        device: "d".into(),
                        leaving: false,
                    },
                    Proofs::default(),
                ),
                "has a password",
            ),
        ];
        for ((req, proofs), want) in cases {
            refused(&with_proofs(&mut st, req, proofs, 3.0), want);
        }
        // Still as before: the password, the session.
        assert!(ok(&with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            token(&t),
            4.0
        )
        .reply));
        assert!(ok(&with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            password("secret-1"),
            4.0
        )
        .reply));
    }

    fn with_proofs_owned(req: Request, p: Proofs) -> (Request, Proofs) {
        (req, p)
    }

    #[test]
    fn sessions_end_by_logout_password_change_and_closing() {
        let (mut st, t1) = with_account();
        let again = with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            password("secret-1"),
            3.0,
        );
        let t2 = again.reply.data.str("token").unwrap().to_owned();
        let beat = || Request::Beat {
            user: name("ana"),
            device: "d".into(),
            leaving: false,
        };
        assert!(ok(&with_proofs(&mut st, beat(), token(&t2), 3.0).reply));
        // A change of password from session 2 ends session 1, keeps session 2.
        let change = Request::Password {
            user: name("ana"),
            new: Secret::new("secret-2"),
        };
        let mut p = password("secret-1");
        p.token = Some(Secret::new(&t2));
        assert!(ok(&with_proofs(&mut st, change, p, 4.0).reply));
        refused(
            &with_proofs(&mut st, beat(), token(&t1), 5.0),
            "password change",
        );
        assert!(ok(&with_proofs(&mut st, beat(), token(&t2), 5.0).reply));
        refused(
            &with_proofs(
                &mut st,
                Request::Login { user: name("ana") },
                password("secret-1"),
                5.0,
            ),
            "wrong password",
        );
        // Logout ends session 2.
        assert!(ok(&with_proofs(
            &mut st,
            Request::Logout { user: name("ana") },
            token(&t2),
            6.0
        )
        .reply));
        refused(&with_proofs(&mut st, beat(), token(&t2), 6.0), "logged out");
        // Closing the account retires the name.
        let h = with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            password("secret-2"),
            7.0,
        );
        let t3 = h.reply.data.str("token").unwrap().to_owned();
        assert!(ok(&with_proofs(
            &mut st,
            Request::Unregister { user: name("ana") },
            password("secret-2"),
            8.0
        )
        .reply));
        refused(&with_proofs(&mut st, beat(), token(&t3), 9.0), "closed");
        refused(
            &with_proofs(
                &mut st,
                Request::Register { user: name("ana") },
                password("secret-3"),
                9.0,
            ),
            "cannot be registered again",
        );
        refused(
            &with_proofs(
                &mut st,
                Request::Login { user: name("ana") },
                Proofs::default(),
                9.0,
            ),
            "closed",
        );
        let dm = Request::Message {
            src: name("bob"),
            dst: name("ana"),
            message: "hello?".into(),
        };
        refused(&with_proofs(&mut st, dm, Proofs::default(), 9.0), "closed");
        let users = run(&mut st, Request::Users);
        assert!(!users
            .data
            .str_list("users")
            .unwrap()
            .contains(&"ana".to_owned()));
    }

    #[test]
    fn idle_sessions_expire_and_use_is_recorded_for_every_server() {
        let policy = Policy {
            session_idle: 240.0,
            presence_timeout: 15.0,
        };
        let mut st = State::with_policy("s1", Snapshot::default(), policy);
        with_proofs(
            &mut st,
            Request::Register { user: name("ana") },
            password("secret-1"),
            0.0,
        );
        let h = with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            password("secret-1"),
            0.0,
        );
        let t = h.reply.data.str("token").unwrap().to_owned();
        assert_eq!(h.reply.data.opt_f64("idle").unwrap(), Some(240.0));
        let beat = || Request::Beat {
            user: name("ana"),
            device: "d".into(),
            leaving: false,
        };
        // Used within a 24th of the idle time (10 s): nothing recorded.
        assert!(ok(&with_proofs(&mut st, beat(), token(&t), 5.0).reply));
        assert!(st.take_extra().is_empty());
        // Later: a `touch` event, which every server takes in.
        assert!(ok(&with_proofs(&mut st, beat(), token(&t), 200.0).reply));
        let touches = st.take_extra();
        assert!(
            matches!(touches.as_slice(), [Event { kind: EventKind::Touch { .. }, timestamp, .. }] if *timestamp == 200.0)
        );
        // 240 s after that use, the session is still good; after, expired.
        assert!(ok(&with_proofs(&mut st, beat(), token(&t), 440.0).reply));
        st.take_extra();
        assert!(ok(&with_proofs(&mut st, beat(), token(&t), 680.0).reply));
        st.take_extra();
        refused(&with_proofs(&mut st, beat(), token(&t), 921.0), "expired");
        // Another server that took the same events agrees.
        let mut peer = State::with_policy("s2", Snapshot::default(), policy);
        let mut clock = Lamport::default();
        let mut events = Vec::new();
        let mut fresh = State::with_policy("s1", Snapshot::default(), policy);
        for (req, p, now) in [
            (
                Request::Register { user: name("ana") },
                password("secret-1"),
                0.0,
            ),
            (
                Request::Login { user: name("ana") },
                password("secret-1"),
                0.0,
            ),
        ] {
            let h = fresh.handle_request(req, None, &p, now, &mut clock);
            let v = h.verify.unwrap();
            let h = fresh.verified(v.pending, crate::hasher::work(v.job), None, now, &mut clock);
            events.push(h.event.unwrap());
        }
        for e in &events {
            peer.apply(e);
        }
        assert_eq!(peer.user_count(), 1);
    }
}
