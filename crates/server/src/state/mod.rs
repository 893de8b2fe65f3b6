use std::collections::BTreeSet;

use palaver_core::presence::{Change, Presence};
use palaver_core::Lamport;
use palaver_proto::peer::Beat;
use palaver_proto::{
    Envelope, EventRef, HistoryQuery, Name, Naming, Publication, Reply, Request, Secret, Status,
};
use palaver_store::{
    AccountKind, Event, EventKind, MessageKind, ReaderKind, RequestEvent, Snapshot, RECENT_REQUESTS,
};

use crate::recent::Recent;

// One module per client service: what it checks, and what it does to the state.
mod accounts;
mod beat;
mod channel;
mod channels;
mod delete;
mod history;
mod inbox;
mod join;
mod joined;
mod leave;
mod login;
mod logout;
mod members;
mod message;
mod names;
mod password;
mod posts;
mod publish;
mod read;
mod readers;
mod receipts;
mod register;
mod rooms;
mod settings;
mod taken;
mod topic;
mod unread;
mod unregister;
mod unseal;
mod users;

use accounts::Accounts;
use names::{Kind, Names, Standing};
use palaver_proto::claim::{Claim, Claimed};
use palaver_proto::room::Room;
use readers::Readers;
use rooms::Rooms;

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

/// What a client service decided, or why it refuses (nothing changes then).
type Decision = Result<Outcome, String>;

/// What a client service decided.
enum Outcome {
    /// Answer this, and nothing else.
    Reply(Envelope),
    /// Refuse, saying why; nothing changes.
    Refused(String),
    /// Make this event: stored, replicated, published, then answered with its id.
    Event(EventKind),
    /// Make these events, one after another, each with a request id of its own
    /// ([`palaver_proto::post_request`]); answered with their ids once all are stored.
    Events(Vec<EventKind>),
    /// Make this event, then answer from the store after the batch's commit.
    EventThenRead(EventKind, StoredRead),
    /// Delete a channel on every server (the reactor runs the two-phase commit).
    Delete(Room),
    /// Look message `id` up in the store, then decide with [`State::marked`].
    Lookup { user: Name, id: EventRef },
    /// Answer from the store after the batch's commit.
    Read(StoredRead),
    /// Hash or check a password first (slow work, done on a thread of its own), then decide
    /// with [`State::verified`].
    Verify(Verify),
    /// Have the log of claims decide this first (a majority of the servers), then finish
    /// with [`State::claimed`].
    Claim(Claim, After),
}

/// A claim a request waits for, and what the request does once it is decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub claim: Claim,
    pub after: After,
    /// The request's id (none for a login with a password, which opens a new session each
    /// time).
    pub request: Option<String>,
}

/// What a request does once its claim took effect: the event that records it.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    Login {
        user: Name,
    },
    /// A session opened: the token goes back to the client (only its hash is kept).
    Session {
        user: Name,
        session: String,
        token: String,
    },
    Register {
        user: Name,
        hash: String,
    },
    Password {
        user: Name,
        hash: String,
        keep: Option<String>,
    },
    Unregister {
        user: Name,
    },
    Channel {
        channel: Name,
        owner: Option<Name>,
    },
}

impl After {
    fn service(&self) -> &'static str {
        match self {
            After::Login { .. } | After::Session { .. } => "login",
            After::Register { .. } => "register",
            After::Password { .. } => "password",
            After::Unregister { .. } => "unregister",
            After::Channel { .. } => "channel",
        }
    }

    /// The event that records the decided claim (at `slot`), and a session's token.
    fn made(self, slot: u64) -> (EventKind, Option<String>) {
        let account = |k| (EventKind::Account(k), None);
        match self {
            After::Login { user } => account(AccountKind::Login { user }),
            After::Session {
                user,
                session,
                token,
            } => (
                EventKind::Account(AccountKind::Session {
                    user,
                    session,
                    slot: Some(slot),
                }),
                Some(token),
            ),
            After::Register { user, hash } => account(AccountKind::Register { user, hash }),
            After::Password { user, hash, keep } => {
                account(AccountKind::Password { user, hash, keep })
            }
            After::Unregister { user } => account(AccountKind::Unregister { user }),
            After::Channel { channel, owner } => (
                EventKind::Room(palaver_proto::RoomKind::Channel { channel, owner }),
                None,
            ),
        }
    }
}

/// A read of the store, answered after the batch it arrived in commits so that it sees every
/// event acknowledged before it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredRead {
    /// A page of a conversation.
    History(HistoryQuery),
    /// One private message of `user`'s, by id.
    Unseal { user: Name, id: EventRef },
    /// A channel's newest `limit` posts, for someone joining it.
    Join { channel: Name, limit: usize },
    /// How much of each of `user`'s rooms and conversations lies after their markers.
    Unread { user: Name },
    /// Receipts of the private messages to `user` that a device's cursor moving from `from`
    /// took (published to their senders once the `taken` event is stored).
    Delivered {
        user: Name,
        from: std::collections::BTreeMap<String, u64>,
        to: std::collections::BTreeMap<String, u64>,
    },
    /// Who has taken and read `user`'s own message `id`: `readers` are the people it was for
    /// (the recipient of a private message, the other members of a room), each with whether
    /// they send read receipts.
    Receipts { user: Name, id: EventRef },
    /// A page of `user`'s inbox after `cursor`: their private messages and the posts of
    /// `channels`.
    Inbox {
        user: Name,
        channels: Vec<Name>,
        cursor: std::collections::BTreeMap<String, u64>,
        limit: usize,
    },
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
    /// `was`: the password hash the login is checked against.
    Login {
        user: Name,
        was: String,
    },
    Register {
        user: Name,
    },
    /// `keep`: the session the request came with, which the change leaves open; `was`: the
    /// password hash it is checked against.
    Password {
        user: Name,
        keep: Option<String>,
        was: String,
    },
    Unregister {
        user: Name,
        was: String,
    },
}

impl Pending {
    pub fn user(&self) -> &Name {
        match self {
            Pending::Login { user, .. }
            | Pending::Register { user }
            | Pending::Password { user, .. }
            | Pending::Unregister { user, .. } => user,
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
    /// Whose each name is.
    names: Names,
    accounts: Accounts,
    /// The request ids of the claims that took effect: a claim made again by a retried
    /// request is a repeat, not a conflict.
    claim_requests: std::collections::HashSet<String>,
    /// The last slot of the log of claims applied.
    claims_applied: u64,
    rooms: Rooms,
    readers: Readers,
    /// Per origin, the highest sequence number taken in (what a confirmed cursor may reach).
    held: std::collections::BTreeMap<String, u64>,
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
    /// The answer, to send once `events` (if any) are durable.
    pub reply: Envelope,
    /// The state changes to store, in order (most requests make one, or none).
    pub events: Vec<Event>,
    /// What to publish once `events` are durable and the live peers have them: topic and
    /// message.
    pub publication: Vec<(String, Envelope)>,
    /// A read of the store to answer with instead of `reply`, after the batch's commit, so
    /// that it sees every event acknowledged before it (`history`, `unseal`).
    pub read: Option<StoredRead>,
    /// Password work to do first; then [`State::verified`] decides.
    pub verify: Option<Verify>,
    /// A channel to delete on every server: the reactor runs the two-phase commit, and
    /// answers once it is decided.
    pub delete: Option<Room>,
    /// A message to look up in the store; then [`State::marked`] decides.
    pub lookup: Option<(Name, EventRef)>,
    /// A claim for the log of claims to decide; then [`State::claimed`] finishes.
    pub claim: Option<Proposal>,
    /// An answer that repeats an earlier one (the request id is known): the event it names
    /// may have come from a peer and wait in memory, so the answer waits for the commit that
    /// stores what waits.
    pub repeat: bool,
}

impl Handled {
    /// An answer and nothing else.
    pub fn reply(reply: Envelope) -> Handled {
        Handled {
            reply,
            events: Vec::new(),
            publication: Vec::new(),
            read: None,
            verify: None,
            delete: None,
            lookup: None,
            claim: None,
            repeat: false,
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
            names: Names::default(),
            accounts: Accounts::default(),
            claim_requests: std::collections::HashSet::new(),
            claims_applied: 0,
            rooms: Rooms::new(origin),
            readers: Readers::default(),
            held: std::collections::BTreeMap::new(),
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
        self.names = Names::from_used(snap.users, snap.channels);
        self.accounts = Accounts::default();
        for e in &snap.accounts {
            self.accounts.on_event(e);
        }
        self.rooms = Rooms::new(&self.origin);
        for e in &snap.rooms {
            self.rooms.on_event(e);
        }
        // The log of claims, applied again in its order, as far as it has no gap.
        self.claim_requests.clear();
        self.claims_applied = 0;
        let mut decided = std::collections::BTreeMap::new();
        for e in &snap.claims {
            match &e.kind {
                EventKind::Claim(palaver_proto::ClaimKind::Decided { slot, claim }) => {
                    decided.insert(*slot, claim.as_ref());
                }
                EventKind::Claim(
                    palaver_proto::ClaimKind::Promise { .. }
                    | palaver_proto::ClaimKind::Vote { .. },
                )
                | EventKind::Message(_)
                | EventKind::Account(_)
                | EventKind::Room(_)
                | EventKind::Reader(_) => {}
            }
        }
        let mut next = 1;
        while let Some(c) = decided.get(&next) {
            if let Some(c) = c {
                if let Err(why) = self.apply_claim(next, c) {
                    tracing::debug!(slot = next, why, "a decided claim took no effect");
                }
            }
            next += 1;
        }
        for name in self.names.all() {
            let standing = self.standing(&name);
            self.names.settle(&name, standing);
        }
        self.readers = Readers::default();
        for e in &snap.readers {
            self.readers.on_event(e);
        }
        self.held = snap.progress.clone();
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
        self.note_held(event);
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

    /// What an event, this server's or another's, does to the state in memory: each family's
    /// fold takes it, and the names it makes or retires are noted.
    fn take_in(&mut self, event: &Event) {
        match &event.kind {
            // Posts and private messages live in the store alone.
            EventKind::Message(_) => {}
            EventKind::Account(kind) => {
                self.accounts.on_event(event);
                match kind {
                    AccountKind::Login { user }
                    | AccountKind::Register { user, .. }
                    | AccountKind::Session { user, .. } => {
                        self.names.used_as_person(user);
                        self.settle(user);
                    }
                    AccountKind::Unregister { user } | AccountKind::Password { user, .. } => {
                        self.settle(user);
                    }
                    AccountKind::Logout { .. } | AccountKind::Touch { .. } => {}
                }
            }
            EventKind::Room(kind) => {
                match kind.naming() {
                    Naming::Creates(channel) => {
                        self.names.used_as_channel(channel);
                        self.settle(channel);
                    }
                    Naming::Deletes(_) | Naming::Nothing => {}
                }
                self.rooms.on_event(event);
            }
            EventKind::Reader(_) => self.readers.on_event(event),
            // The log of claims is taken in its order: the engine hands each decided slot to
            // [`State::apply_claim`].
            EventKind::Claim(_) => {}
        }
    }

    /// What the account rules say of `name`, for whose it is.
    fn standing(&self, name: &Name) -> Standing {
        Standing {
            protected: self.accounts.protected(name),
            closed: self.accounts.closed(name),
        }
    }

    /// Applies the naming rules to `name` again.
    fn settle(&mut self, name: &Name) {
        let standing = self.standing(name);
        self.names.settle(name, standing);
    }

    /// Slot `slot` of the log of claims, decided: what it does to names and accounts, the
    /// same on every server, judged by what earlier slots decided alone (never by what this
    /// server happens to hold besides). `Err` says why it took no effect; a claim its own
    /// request already made is a repeat, and takes effect once.
    pub fn apply_claim(&mut self, slot: u64, c: &Claimed) -> Result<(), String> {
        self.claims_applied = self.claims_applied.max(slot);
        if c.request
            .as_ref()
            .is_some_and(|r| self.claim_requests.contains(r))
        {
            return Ok(());
        }
        let (name, result) = match &c.claim {
            Claim::Person { name } => (
                name,
                match self.names.claimed(name) {
                    Some(Kind::Channel) => Err(format!("`{name}` is a channel, not a user")),
                    Some(Kind::Person) | None if self.accounts.closed_by_claim(name) => {
                        Err(format!("`{name}` has closed their account"))
                    }
                    Some(Kind::Person) | None => Ok(Kind::Person),
                },
            ),
            Claim::Channel { name, owner } => (
                name,
                match self.names.claimed(name) {
                    Some(Kind::Channel) => Err(format!("channel `{name}` already exists")),
                    Some(Kind::Person) => Err(format!("`{name}` is a user's name")),
                    None => {
                        self.rooms.claimed(name, owner.as_ref());
                        Ok(Kind::Channel)
                    }
                },
            ),
            Claim::Password {
                user,
                hash,
                was,
                keep,
            } => (
                user,
                match self.names.claimed(user) {
                    Some(Kind::Channel) => Err(format!("`{user}` is a channel, not a user")),
                    Some(Kind::Person) | None => self
                        .accounts
                        .claim_password(slot, user, hash, was.as_deref(), keep.as_deref())
                        .map(|()| Kind::Person),
                },
            ),
            Claim::Retire { user, was } => (
                user,
                self.accounts
                    .claim_retire(user, was.as_deref())
                    .map(|()| Kind::Person),
            ),
            Claim::Session {
                user,
                session,
                was,
                at_ms,
            } => (
                user,
                self.accounts
                    .claim_session(slot, user, session, was, *at_ms as f64 / 1000.0)
                    .map(|()| Kind::Person),
            ),
        };
        let kind = result?;
        self.names.claim(name, kind);
        self.settle(&name.clone());
        if let Some(r) = &c.request {
            self.claim_requests.insert(r.clone());
        }
        Ok(())
    }

    /// The password hash in force for `user`, if the name is an open account.
    pub fn password_of(&self, user: &Name) -> Option<&str> {
        self.accounts.password(user)
    }

    /// The last slot of the log of claims applied here.
    pub fn claims_applied(&self) -> u64 {
        self.claims_applied
    }

    /// Finishes a request whose claim the log of claims decided (at `decided`'s slot), or
    /// refused, or could not decide (`Err`: why, for the client).
    pub fn claimed(
        &mut self,
        after: After,
        decided: Result<u64, String>,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let service = after.service();
        // Its event made already, here or elsewhere (a retry that another server answered
        // first).
        if let Some(repeated) = request
            .as_ref()
            .and_then(|r| self.repeated_event(service, r))
        {
            return repeated;
        }
        let (outcome, token) = match decided {
            Ok(slot) => {
                let (kind, token) = after.made(slot);
                (Outcome::Event(kind), token)
            }
            Err(why) => (Outcome::Refused(why), None),
        };
        let mut handled = self.decide(service, outcome, request, now, lamport);
        if let Some(token) = token.filter(|_| !handled.events.is_empty()) {
            handled.reply = handled
                .reply
                .with("token", token)
                .with("idle", self.policy.session_idle);
        }
        handled
    }

    pub fn user_count(&self) -> usize {
        self.names.users().len()
    }

    pub fn channel_count(&self) -> usize {
        self.live_channels().count()
    }

    /// The channels that exist (deleted ones left out).
    fn live_channels(&self) -> impl Iterator<Item = &Name> {
        self.names
            .channels()
            .iter()
            .filter(|c| !self.rooms.is_deleted(c))
    }

    /// `channel` exists and is not deleted; otherwise why not, as a client should read it.
    fn existing_room(&self, channel: &Name) -> Result<(), String> {
        if self.rooms.is_deleted(channel) {
            return Err(format!("channel `{channel}` was deleted"));
        }
        if !self.names.is_channel(channel) {
            return Err(format!("channel `{channel}` does not exist"));
        }
        Ok(())
    }

    /// What `join` and `members` say about `channel` besides its people (its owner, its
    /// topic).
    pub fn describe_room(&self, channel: &Name, reply: Envelope) -> Envelope {
        self.rooms.describe(channel, reply)
    }

    /// `channel` exists, and takes posts and joins (it is not being deleted here).
    fn open_room(&self, channel: &Name) -> Result<(), String> {
        self.existing_room(channel)?;
        if self.rooms.is_stopped(channel) {
            return Err(format!(
                "channel `{channel}` is being deleted; it takes no posts or joins meanwhile"
            ));
        }
        Ok(())
    }

    /// Whether `room.owner` may delete `room.channel` (it exists, is not deleted, and is
    /// theirs); otherwise why not.
    fn may_delete(&self, room: &Room) -> Result<(), String> {
        let channel = &room.channel;
        self.existing_room(channel)?;
        match self.rooms.owner(channel) {
            None => Err(format!(
                "channel `{channel}` has no owner (it was created without one), so nobody can delete it"
            )),
            Some(owner) if *owner != room.owner => {
                Err(format!("only `{owner}`, who created `{channel}`, may delete it"))
            }
            Some(_) => Ok(()),
        }
    }

    /// This server's vote in a two-phase delete: whether it can carry it out.
    pub fn can_delete(&self, room: &Room) -> bool {
        self.may_delete(room).is_ok()
    }

    /// Whether `channel` is deleted here.
    pub fn is_deleted(&self, channel: &Name) -> bool {
        self.rooms.is_deleted(channel)
    }

    /// Makes an event of the server's own (a record of the two-phase delete), with what it
    /// publishes; `request`, the client's request id it answers, if any.
    pub fn record(
        &mut self,
        kind: EventKind,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        // The client's delete may have reached two servers (the broker sent it again), and
        // the other's record of it may be here already: this record is the protocol's all the
        // same, kept without the request id, so that no server takes it for a second event of
        // the same request (made with the id after the other's arrived, it was hidden
        // everywhere but here; the simulation found it, seed 23 with deletes).
        let request = request.filter(|r| self.requests.get(r).is_none());
        self.decide("delete", Outcome::Event(kind), request, now, lamport)
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
        // `posts` finds its own repeats, post by post (see `make_all`).
        let whole = !matches!(req, Request::Posts { .. });
        if let Some(mut handled) = request
            .as_ref()
            .filter(|_| req.writes() && whole)
            .and_then(|r| self.repeated(service, r))
        {
            // A join asked again still gets the channel's posts.
            if let Request::Join { channel, limit, .. } = req {
                handled.read = Some(StoredRead::Join { channel, limit });
            }
            return handled;
        }
        self.session_used = None;
        let outcome = match req {
            Request::Login { user } => Ok(login::apply(self, user, proofs, now)),
            Request::Users {} => Ok(users::apply(self)),
            Request::Channel { channel, user } => channel::apply(self, channel, user, proofs, now),
            Request::Channels {} => Ok(channels::apply(self)),
            Request::Publish {
                user,
                channel,
                message,
            } => publish::apply(self, user, channel, message, proofs, now),
            Request::Posts {
                user,
                channel,
                messages,
            } => posts::apply(self, user, channel, messages, proofs, now),
            Request::Message { src, dst, message } => {
                message::apply(self, src, dst, message, proofs, now)
            }
            Request::History { query: q } => history::apply(self, q, proofs, now),
            Request::Register { user } => Ok(register::apply(self, user, proofs)),
            Request::Logout { user } => logout::apply(self, user, proofs, now),
            Request::Password { user, new } => Ok(password::apply(self, user, new, proofs, now)),
            Request::Unregister { user } => Ok(unregister::apply(self, user, proofs)),
            Request::Beat {
                user,
                device,
                leaving,
            } => beat::apply(self, user, device, leaving, proofs, now),
            Request::Unseal { user, id } => unseal::apply(self, user, id, proofs, now),
            Request::Join {
                user,
                channel,
                limit,
            } => join::apply(self, user, channel, limit, proofs, now),
            Request::Leave { user, channel } => leave::apply(self, user, channel, proofs, now),
            Request::Members { channel } => members::apply(self, channel),
            Request::Joined { user } => Ok(joined::apply(self, user)),
            Request::Delete { user, channel } => delete::apply(self, user, channel, proofs, now),
            Request::Inbox {
                user,
                device,
                limit,
            } => inbox::apply(self, user, device, limit, proofs, now),
            Request::Taken {
                user,
                device,
                cursor,
            } => taken::apply(self, user, device, cursor, proofs, now),
            Request::Read { user, id } => read::apply(self, user, id, proofs, now),
            Request::Unread { user } => unread::apply(self, user, proofs, now),
            Request::Settings { user, receipts } => {
                settings::apply(self, user, receipts, proofs, now)
            }
            Request::Receipts { user, id } => receipts::apply(self, user, id, proofs, now),
            Request::Topic {
                user,
                channel,
                topic,
            } => topic::apply(self, user, channel, topic, proofs, now),
        }
        .unwrap_or_else(Outcome::Refused);
        // A login with a password opens a new session each time: a retry must not be answered
        // as "repeated", which would carry no token.
        let request = request
            .filter(|_| !palaver_proto::starts_session(service) || proofs.password.is_none());
        let handled = self.decide(service, outcome, request, now, lamport);
        // A refused request moves no clock, so it records no use either; nor does one that
        // waits for password work (the driver sets the clock back until it is decided).
        if Reply::status(&handled.reply) == Status::Success && handled.verify.is_none() {
            self.touch_if_due(now, lamport);
        }
        self.session_used = None;
        handled
    }

    /// Finishes a `read` whose message the reactor looked up (`found`, if it exists).
    pub fn marked(
        &mut self,
        user: Name,
        id: &EventRef,
        found: Option<&Event>,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let outcome = read::found(self, user, id, found);
        self.decide("read", outcome, request, now, lamport)
    }

    /// The rooms `user` is in and the marker of each, for `unread`.
    pub fn unread_places(&self, user: &Name) -> Vec<(palaver_proto::Place, Option<(u64, String)>)> {
        self.rooms
            .joined(user)
            .map(|c| palaver_proto::Place::Channel(c.clone()))
            .map(|p| {
                let m = self
                    .readers
                    .marker(user, &p)
                    .map(|m| (m.at, m.id.origin.clone()));
                (p, m)
            })
            .collect()
    }

    /// `user`'s marker in the conversation with `with`, for `unread`.
    pub fn marker_with(&self, user: &Name, with: &Name) -> Option<(u64, String)> {
        self.readers
            .marker(user, &palaver_proto::Place::With(with.clone()))
            .map(|m| (m.at, m.id.origin.clone()))
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
        let outcome = match pending {
            Pending::Login { user, was } => login::verified(self, user, was, verdict, now),
            Pending::Register { user } => register::verified(self, user, verdict),
            Pending::Password { user, keep, was } => {
                password::verified(self, user, keep, was, verdict)
            }
            Pending::Unregister { user, was } => unregister::verified(self, user, was, verdict),
        };
        let request = request.filter(|_| !palaver_proto::starts_session(service));
        // The same request may have taken effect elsewhere while its password work ran (the
        // broker sent it again when this server was slow): it is not made twice. Made twice,
        // this server remembered its own, later event and never hid it, while every other
        // server did (found once the digest covered hidden events).
        if let Some(repeated) = request.as_ref().and_then(|r| self.repeated(service, r)) {
            return repeated;
        }
        self.decide(service, outcome, request, now, lamport)
    }

    /// The answer to a request whose id made an event already: the same answer as the first
    /// time, with the same event id.
    fn repeated(&self, service: &str, request: &str) -> Option<Handled> {
        self.repeated_event(service, request).or_else(|| {
            // A claim the request made took effect, and its event is not here (yet, or ever:
            // the server that proposed it may have died before writing it): it is not made
            // again, nor refused against what it changed (a password change retried
            // elsewhere would meet the new password and hear "wrong password").
            self.claim_requests.contains(request).then(|| Handled {
                repeat: true,
                ..Handled::reply(Reply::ok(service).with("repeated", true))
            })
        })
    }

    /// The answer to a request whose id made an event already.
    fn repeated_event(&self, service: &str, request: &str) -> Option<Handled> {
        let id = self.requests.get(request)?;
        let reply = Reply::ok(service)
            .with("id", id.id())
            .with("cursor", id.cursor().to_string())
            .with("repeated", true);
        Some(Handled {
            repeat: true,
            ..Handled::reply(reply)
        })
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
            Outcome::Delete(room) => {
                return Handled {
                    delete: Some(room),
                    ..Handled::reply(Reply::ok(service))
                }
            }
            Outcome::Lookup { user, id } => {
                return Handled {
                    lookup: Some((user, id)),
                    ..Handled::reply(Reply::ok(service))
                }
            }
            Outcome::Claim(claim, after) => {
                return Handled {
                    claim: Some(Proposal {
                        claim,
                        after,
                        request,
                    }),
                    ..Handled::reply(Reply::ok(service))
                }
            }
            Outcome::Event(kind) => (kind, None),
            Outcome::EventThenRead(kind, read) => (kind, Some(read)),
            Outcome::Events(kinds) => return self.make_all(service, kinds, request, now, lamport),
        };
        let (kind, read) = kind;
        let event = self.make(kind, request, now, lamport);
        let reply = Reply::ok(service)
            .with("id", event.id())
            .with("cursor", palaver_proto::Cursor::of(&event).to_string());
        let publication = self.publication(&event);
        Handled {
            reply,
            events: vec![event],
            publication,
            read,
            verify: None,
            delete: None,
            lookup: None,
            claim: None,
            repeat: false,
        }
    }

    /// Several events of one request, one after another (`posts`): each that its own request
    /// id shows held already (an earlier attempt's, on this server or through replication) is
    /// not made again. Answered with every id and cursor, in order, and the last one's.
    fn make_all(
        &mut self,
        service: &'static str,
        kinds: Vec<EventKind>,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let n = kinds.len();
        let mut handled = Handled::reply(Reply::ok(service));
        let (mut ids, mut cursors, mut last) = (Vec::with_capacity(n), Vec::with_capacity(n), None);
        let own = |i| {
            request
                .as_deref()
                .map(|r| palaver_proto::post_request(r, i, n))
        };
        if let Some(last) = own(n - 1).as_deref().and_then(|r| self.requests.get(r)) {
            // The last is held, so all are: answered as the first time (without the list of
            // ids if the oldest have been forgotten meanwhile).
            let mut reply = Reply::ok(service)
                .with("id", last.id())
                .with("cursor", last.cursor().to_string())
                .with("repeated", true);
            let held: Option<Vec<RequestEvent>> =
                (0..n).map(|i| self.requests.get(&own(i)?)).collect();
            if let Some(held) = held {
                let (ids, cursors) = held
                    .iter()
                    .map(|e| (e.id().into(), e.cursor().to_string().into()))
                    .unzip();
                reply = reply
                    .with("ids", rmpv::Value::Array(ids))
                    .with("cursors", rmpv::Value::Array(cursors));
            }
            return Handled {
                repeat: true,
                ..Handled::reply(reply)
            };
        }
        for (i, kind) in kinds.into_iter().enumerate() {
            let own = own(i);
            if let Some(held) = own.as_deref().and_then(|r| self.requests.get(r)) {
                // It may wait in memory for a commit: the answer waits for the one after it.
                handled.repeat = true;
                ids.push(rmpv::Value::from(held.id()));
                cursors.push(rmpv::Value::from(held.cursor().to_string()));
                last = Some((held.id(), held.cursor().to_string()));
                continue;
            }
            let event = self.make(kind, own, now, lamport);
            let cursor = palaver_proto::Cursor::of(&event).to_string();
            ids.push(rmpv::Value::from(event.id()));
            cursors.push(rmpv::Value::from(cursor.as_str()));
            last = Some((event.id(), cursor));
            handled.publication.extend(self.publication(&event));
            handled.events.push(event);
        }
        if let Some((id, cursor)) = last {
            handled.reply = handled
                .reply
                .with("id", id)
                .with("cursor", cursor)
                .with("ids", rmpv::Value::Array(ids))
                .with("cursors", rmpv::Value::Array(cursors));
        }
        handled
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
        self.note_held(&event);
        // What the event does to memory, as for anyone else's (the service may have done
        // part of it already: taking an event in twice changes nothing).
        self.take_in(&event);
        event
    }

    /// Notes that `event` is held (it is taken in in each origin's order).
    fn note_held(&mut self, event: &Event) {
        let held = self.held.entry(event.origin.clone()).or_insert(0);
        *held = (*held).max(event.seq);
    }

    /// What `event` publishes: a private message to or from an account is sealed (its text
    /// never crosses the open subscriber port).
    fn publication(&self, event: &Event) -> Vec<(String, Envelope)> {
        let p = match &event.kind {
            EventKind::Message(MessageKind::Direct { src, dst, .. })
                if self.accounts.protected(src) || self.accounts.protected(dst) =>
            {
                Publication::sealed(event)
            }
            EventKind::Message(_) => Publication::of_event(event),
            EventKind::Room(_) => Publication::notice(event),
            EventKind::Reader(ReaderKind::Read {
                user, place, id, ..
            }) => return read_notices(user, place, id, event, self.readers.sends_receipts(user)),
            EventKind::Reader(ReaderKind::Taken { .. } | ReaderKind::Settings { .. })
            | EventKind::Account(_)
            | EventKind::Claim(_) => None,
        };
        p.map(|p| (p.topic, p.envelope)).into_iter().collect()
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

    /// Whether the request may act as `user`, who must have logged in (or registered): what
    /// most services ask first.
    fn person(&mut self, user: &Name, proofs: &Proofs, now: f64) -> Result<(), String> {
        self.acting(user, proofs, now)?;
        self.logged_in(user)
    }

    /// `user` has logged in (or registered); otherwise the refusal every service gives.
    fn logged_in(&self, user: &Name) -> Result<(), String> {
        if self.names.is_user(user) {
            Ok(())
        } else {
            Err(format!("user `{user}` has not logged in"))
        }
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
        let e = self.make(
            EventKind::Account(AccountKind::Touch { user, session }),
            None,
            now,
            lamport,
        );
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

/// What a moved read marker announces: the new marker, on the reader's own topic (for their
/// other clients), and in a conversation a receipt on the other person's topic. Neither holds
/// any text.
fn read_notices(
    user: &Name,
    place: &palaver_proto::Place,
    id: &EventRef,
    e: &Event,
    receipts: bool,
) -> Vec<(String, Envelope)> {
    let stamp = |env: Envelope| {
        env.with("timestamp", e.timestamp)
            .with("clock", e.lamport)
            .with("id", e.id())
    };
    let marker = Envelope::new("read")
        .with("user", user.as_str())
        .with("upto", id.to_string());
    let mut out = Vec::new();
    match place {
        palaver_proto::Place::Channel(c) => {
            out.push((user.to_string(), stamp(marker.with("channel", c.as_str()))));
        }
        palaver_proto::Place::With(w) => {
            out.push((user.to_string(), stamp(marker.with("with", w.as_str()))));
            if receipts {
                out.push((
                    w.to_string(),
                    stamp(receipt(user, w, id, "read", e.timestamp)),
                ));
            }
        }
    }
    out
}

/// A receipt for `sender`, on their own topic: `reader` has taken (`state` "delivered") or
/// read ("read") their private messages up to `upto`, at `at`. It holds no text.
pub fn receipt(reader: &Name, sender: &Name, upto: &EventRef, state: &str, at: f64) -> Envelope {
    Envelope::new("receipt")
        .with("reader", reader.as_str())
        .with("sender", sender.as_str())
        .with("upto", upto.to_string())
        .with("state", state)
        .with("at", at)
}

/// A listing reply: the names under each of `keys`.
fn list(service: &str, names: &BTreeSet<Name>, keys: &[&str]) -> Envelope {
    let names: Vec<rmpv::Value> = names.iter().map(|n| n.as_str().into()).collect();
    keys.iter()
        .fold(Reply::ok(service), |env, key| env.with(key, names.clone()))
}

#[cfg(test)]
mod tests;
