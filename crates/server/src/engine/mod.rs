//! The server's engine: every decision a server makes about requests, commits, replication
//! and replies, with no sockets, threads or clock of its own (in the shape of quinn-proto).
//! The driver (`crate::reactor`) hands it what arrived with the time, and carries out what
//! it asks for.
//!
//! ```text
//!  Input::Request (broker token / direct) ─┐                      ┌─▶ Output::Commit(Job) ─▶ writer
//!  Input::Peer (replicas, vectors, acks,   │                      ├─▶ Output::Replicate / Ack / Fetch / AskVector
//!               two-phase steps, beats)    ├─▶ handle(now, input) ├─▶ Output::Publish, then Output::Reply
//!  Input::Committed (the writer's Done)    │   handle_timeout(now)├─▶ Output::Hash ─▶ hasher
//!  Input::Hashed (a password verdict)     ─┘   poll_timeout()     └─▶ Output::JoinBroker / LeaveBroker / Ready
//! ```
//!
//! The rules it keeps, each with unit tests on simulated time (`tests.rs`):
//! - **Group commit.** Requests handled while the writer works form the next batch; a batch
//!   goes to the writer as soon as it is idle, with the peers' events that wait (at most
//!   [`REPLICA_COMMIT_DELAY`], so they share a commit with this server's own writes).
//! - **Durable, then acknowledged by the peers, then answered.** A batch's answers and
//!   publications leave once it is committed and, if it wrote, once the live peers hold its
//!   events; publications before answers.
//! - **A refused request moves no clock.**
//! - **Request ids.** A request without one takes the broker's token as its id, so a request
//!   the broker sends again elsewhere takes effect once.
//! - **The serving gate.** Clients are taken only once caught up with the peers (or after a
//!   grace when they cannot be reached), and never while commits fail.
//! - **Failed commits** (`aside.rs`): out of the rotation, nothing more kept in memory, the
//!   failed batch tried again each second under the same numbers.
//! - **Two-phase deletes** (`deletes.rs`), **reads of the store** after the commit
//!   (`reads.rs`), and **password work** under limits (`passwords.rs`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use palaver_core::replication::{self, Replication, VersionVector};
use palaver_core::{Lamport, Member};
use palaver_proto::{Envelope, Event};
use palaver_store::{Store, StoreError};

use crate::state::{Handled, HashJob, Pending, Verdict};
pub use crate::writer::{Done, Job};
use crate::{Policy, State};

mod aside;
mod claims;
mod commits;
mod coordination;
mod deletes;
mod endpoint;
mod intake;
mod passwords;
mod reads;
mod replicas;
#[cfg(test)]
mod tests;

use aside::Failing;
use claims::Claims;
use coordination::Coordination;
use deletes::{Crash, Deletes};
pub use endpoint::MAX_FETCH;
use passwords::Passwords;

/// The most requests one batch (one commit) takes.
pub const MAX_BATCH: usize = 1024;

/// How long events taken from peers may wait in memory for a commit of their own. They are
/// acknowledged before they are on this server's disk (the origin has them on its disk), so
/// nothing waits for this commit; deferring it lets them share the next commit of this server's
/// own writes instead of costing an fsync per replica publication.
pub const REPLICA_COMMIT_DELAY: Duration = Duration::from_millis(20);
/// Events from peers that are committed at once however young they are.
const REPLICA_COMMIT_EVENTS: usize = 4096;

/// A server that catches up takes clients only once at most this many events taken from its
/// peers wait for a commit (a few milliseconds of work), so no request waits behind a backlog.
const MAX_PENDING_TO_SERVE: usize = 1024;

/// A turn this long after the last one means the server was stopped: as long as the broker
/// waits for a silent server before it sends its requests elsewhere (see `aside::woke`).
const STOPPED_AFTER: Duration = Duration::from_millis(900);

/// A server that cannot catch up with its peers (say, the reference is down) serves anyway
/// after this long.
pub const STARTUP_GRACE: Duration = Duration::from_secs(5);

/// The time of an input: the monotonic instant every timer is measured in, and the server's
/// corrected physical clock (seconds since the Unix epoch) that events and answers carry.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: f64,
}

/// Where a request came from, and the way its answer goes back.
#[derive(Debug, Clone)]
pub enum Route {
    /// Through the broker, which named it by this token.
    Broker(u64),
    /// Straight to this server's peer endpoint: the requester's routing frames.
    Direct(Vec<Vec<u8>>),
    /// Nobody: an event the server made of itself (a session's `touch`, a record of a
    /// two-phase delete).
    Internal,
    /// A message for this peer (of a two-phase delete), sent once the records made before it
    /// are stored.
    Peer(String),
}

/// Whoever asked, as an answer goes back to them: the two routes of [`Route`] that lead to a
/// requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asker {
    /// Through the broker, which named the request by this token.
    Broker(u64),
    /// On this server's peer endpoint: the requester's routing frames.
    Direct(Vec<Vec<u8>>),
}

/// What the peers sent, for replication, two-phase deletes and presence (read from the peer
/// endpoint by `endpoint.rs`, or from answers to this server's requests).
#[derive(Debug)]
pub(crate) enum PeerInput {
    /// The live servers changed (names, this one excluded).
    Peers(Vec<String>),
    /// Events published on `replica` by their origin.
    Replica { origin: String, events: Vec<Event> },
    /// A peer's answer to our `vector`.
    Vector { peer: String, vector: VersionVector },
    /// A peer's answer to our `fetch`.
    Fetched {
        peer: String,
        origin: String,
        events: Vec<Event>,
        more: bool,
    },
    /// A `fetch` of ours went unanswered.
    FetchFailed { origin: String },
    /// A peer holds our events up to `seq`.
    Ack { peer: String, seq: u64 },
    /// Clients' beats another server took.
    Beats(Vec<palaver_proto::peer::Beat>),
    /// A step of a two-phase delete, from server `from`.
    TwoPc {
        from: String,
        msg: palaver_core::commit::Msg<palaver_proto::room::Room>,
    },
}

/// A request to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefAsk {
    Rank,
    Heartbeat,
    List,
}

/// A request to another server, as its answer will be read.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerAsk {
    Elect,
    Ping,
    /// A Berkeley round's question, and this server's clock when it asked.
    Clock {
        round: u64,
        sent: f64,
    },
    Coordinator,
    Adjust,
    Sync,
    Vector,
    Fetch {
        origin: String,
    },
}

/// Whom this server asks, and what.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    Reference(RefAsk),
    Peer { peer: String, ask: PeerAsk },
}

/// Why a request of this server's has no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// None came within the request's deadline.
    Timeout,
    /// It could not be sent (no link to that peer, too many in flight).
    NotSent,
    /// An answer came that is not MessagePack: what was wrong.
    Unreadable(String),
}

/// What arrives.
#[derive(Debug)]
pub enum Input {
    /// A client's request through the broker, named by the broker's token.
    Request { token: u64, body: Vec<u8> },
    /// A frame on this server's peer endpoint: the sender's routing frames, and the body (a
    /// peer's request or one-way message, an operator's request, or a client's request sent
    /// straight here, answered along [`Route::Direct`]).
    Peer { route: Vec<Vec<u8>>, body: Vec<u8> },
    /// The answer to an [`Output::Ask`], or why none came.
    Answer {
        ask: Ask,
        answer: Result<Envelope, Failure>,
    },
    /// A publication on `servers` (a coordinator's announcement): its frames.
    Announcement(Vec<Vec<u8>>),
    /// A digest asked for with [`Output::Digest`], done: the answer for `route`.
    Digested {
        route: Vec<Vec<u8>>,
        reply: Envelope,
    },
    /// The writer is done with the batch it was given.
    Committed(Done),
    /// Password work `ticket` is done.
    Hashed { ticket: u64, verdict: Verdict },
}

/// What the driver is asked to do, in order.
#[derive(Debug)]
pub enum Output {
    /// Send an answer, stamped, to whoever asked.
    Reply { route: Asker, reply: Envelope },
    /// Publish on `topic`.
    Publish { topic: String, envelope: Envelope },
    /// Commit this batch (the writer is idle); its [`Done`] comes back as
    /// [`Input::Committed`].
    Commit(Job),
    /// Do this password work; its verdict comes back as [`Input::Hashed`].
    Hash { ticket: u64, job: HashJob },
    /// Join the broker's rotation (caught up, commits work).
    JoinBroker,
    /// Leave the broker's rotation (commits fail).
    LeaveBroker,
    /// Send this request (stamped); its answer, or why none came, comes back as
    /// [`Input::Answer`] with the same `ask`.
    Ask { ask: Ask, envelope: Envelope },
    /// Send `body`, a one-way message (stamped and encoded), to `peer`'s endpoint. A message
    /// not sent is logged and counted; the protocols repair it (anti-entropy, resends).
    Tell {
        peer: String,
        body: Vec<u8>,
        what: &'static str,
    },
    /// Hold a link to `peer` at `addr` (a peer joined, or moved).
    Connect { peer: String, addr: String },
    /// Drop the link to `peer` (it left).
    Disconnect { peer: String },
    /// Compute a digest of the store away from the engine (it reads every event); its answer
    /// comes back as [`Input::Digested`].
    Digest {
        route: Vec<Vec<u8>>,
        cid: Option<u64>,
    },
    /// Serving for the first time: tell the supervisor.
    Ready,
    /// A fault test asked to die here, as `kill -9` would, once the messages before are out.
    Crash,
}

/// A reply and the way back.
type Answer = (Route, Envelope);

/// A request waiting for password work.
struct Awaiting {
    route: Route,
    echo: Option<String>,
    request: Option<String>,
    pending: Pending,
    /// The request's Lamport clock, taken in only if the request is accepted in the end.
    clock: Option<u64>,
}

/// Answers and publications held until the live peers have the batch's writes: the batch's
/// highest sequence number, its replies in order, and its publications (so that whatever a
/// subscriber sees, any server it asks next already holds).
type Held = (u64, Vec<Answer>, Vec<(String, Envelope)>);

/// A request handled but not yet answered: its answer waits for the batch's commit.
struct Queued {
    envelope: Route,
    handled: Handled,
    /// The client's `request_id`, repeated in the answer so that a client with many requests
    /// in flight matches each answer to its request.
    echo: Option<String>,
}

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub name: palaver_proto::Name,
    pub policy: Policy,
    /// For fault tests: die once the first prepare of a two-phase delete is stored and the
    /// messages after it are out.
    pub crash_after_prepare: bool,
    /// Where transaction ids start (each server's own, so two never meet).
    pub seed: u64,
    /// The peer endpoint the others reach this server at (told to the reference and peers).
    pub addr: String,
    /// Seconds this server's clock is skewed by, on purpose (demonstrations and tests).
    pub skew: f64,
    /// How many servers the cluster has at least: claims need a majority of the larger of
    /// this and the servers the reference has ranked.
    pub cluster: usize,
}

pub struct Engine {
    name: String,
    state: State,
    /// The engine's read connection; commits go through the writer.
    store: Store,
    /// Two-phase deletes: the commit machine and the client deletes waiting for it.
    deletes: Deletes,
    /// Claims decided by a majority: this server's part in the log of claims.
    claims: Claims,
    /// A fault test's crash after a prepare, when asked for.
    crash: Option<Crash>,
    /// Password work: the limits, and the requests that wait for it.
    passwords: Passwords<Awaiting>,
    /// Rank, peers, the election and Berkeley rounds.
    coord: Coordination,
    /// Whether this server announces presence changes (it is the coordinator).
    announcer: bool,
    /// Requests handled and waiting for the next commit.
    batch: Vec<Queued>,
    /// Requests whose batch the writer is committing.
    committing: Vec<Queued>,
    /// Whether the writer has a batch.
    writing: bool,
    lamport: Lamport,
    repl: Replication,
    /// Answers to batches with writes of our own, waiting until the peers have them.
    held: VecDeque<Held>,
    /// Client requests that came to the peer endpoint directly, for the next batch.
    direct: Vec<Vec<Vec<u8>>>,
    /// Events found to repeat a request another event made, to mark in the next commit.
    hidden: Vec<(String, u64)>,
    /// Events taken from peers (applied in memory, acknowledged) but not yet committed, and
    /// since when the oldest has waited.
    pending: Vec<Event>,
    pending_since: Option<Instant>,
    /// Whether this server is in the broker's rotation.
    accepting: bool,
    /// Whether it has ever served (the supervisor hears of the first time).
    served: bool,
    /// When to take clients even if not caught up with every peer (the peers may be
    /// unreachable): a grace after start-up, or after recovering from failed commits.
    serve_anyway_at: Instant,
    /// The time of the input being handled, and when the engine last ran (an input or a turn).
    now: Now,
    last_turn: Instant,
    /// Client requests handled since the last turn.
    requests: usize,
    /// A batch of this server's own events whose commit failed after they were sent to the
    /// peers: committed again, as it is, before anything else.
    retry: Option<Job>,
    /// A reload after a failed commit could not read the store: try again before anything
    /// is served.
    reload_due: bool,
    /// Set while commits fail: the server stays out of the broker's rotation until one works.
    failing: Option<Failing>,
    /// Answers to the broker's requests dropped: sent while out of the rotation (the broker
    /// gave those requests to another server).
    pub dropped_replies: u64,
    pub failed_batches: u64,
    /// Peers' events that arrived while commits failed, not kept (fetched again later).
    pub set_aside: u64,
    /// Peer messages and answers refused or unreadable.
    pub peer_drops: u64,
    fail_log: palaver_core::LogGate,
    outputs: VecDeque<Output>,
}

impl Engine {
    /// Starts from what `store` holds.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn new(setup: &Setup, store: Store, now: Now) -> Result<Engine, StoreError> {
        let snapshot = store.snapshot()?;
        tracing::info!(
            server = %setup.name,
            users = snapshot.users.len(),
            channels = snapshot.channels.len(),
            "opened store"
        );
        let lamport = Lamport::starting_at(snapshot.max_lamport);
        let vector: VersionVector = snapshot
            .progress
            .iter()
            .map(|(o, s)| (o.clone(), *s))
            .collect();
        let mut deletes = Deletes::new(&setup.name, setup.seed);
        deletes.restore(now.at, &snapshot.rooms);
        let mut claims = Claims::new(&setup.name, setup.cluster);
        claims.restore(&snapshot.claims);
        let state = State::with_policy(setup.name.as_str(), snapshot, setup.policy);
        let repl = Replication::new(setup.name.as_str(), vector, replication::Config::default());
        Ok(Engine {
            name: setup.name.to_string(),
            state,
            store,
            deletes,
            claims,
            crash: setup.crash_after_prepare.then_some(Crash::Armed),
            passwords: Passwords::new(),
            coord: Coordination::new(&setup.name, &setup.addr, setup.skew, now.at),
            announcer: false,
            batch: Vec::new(),
            committing: Vec::new(),
            writing: false,
            lamport,
            repl,
            held: VecDeque::new(),
            direct: Vec::new(),
            hidden: Vec::new(),
            pending: Vec::new(),
            pending_since: None,
            accepting: false,
            served: false,
            serve_anyway_at: now.at + STARTUP_GRACE,
            now,
            last_turn: now.at,
            requests: 0,
            retry: None,
            reload_due: false,
            failing: None,
            dropped_replies: 0,
            failed_batches: 0,
            set_aside: 0,
            peer_drops: 0,
            fail_log: palaver_core::LogGate::every_second(),
            outputs: VecDeque::new(),
        })
    }

    // ---- what the driver reads ----

    /// The Lamport clock.
    pub fn lamport(&self) -> u64 {
        self.lamport.now()
    }

    /// The corrected physical clock (skew and Berkeley's corrections applied) at the time of
    /// the input being handled.
    pub fn wall(&self) -> f64 {
        self.coord.wall(self.now.wall)
    }

    /// The corrected physical clock when the machine's clock reads `machine`.
    pub fn wall_at(&self, machine: f64) -> f64 {
        self.coord.wall(machine)
    }

    /// The coordinator, as the election last said.
    pub fn coordinator(&self) -> Option<&Member> {
        self.coord.coordinator()
    }

    /// The store's read connection (the peer endpoint answers fetches from it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Replication's bookkeeping, for a simulation's story.
    pub fn replication(&self) -> String {
        format!("{:?}", self.repl)
    }

    /// What this server holds, per origin.
    pub fn vector(&self) -> &VersionVector {
        self.repl.vector()
    }

    pub fn user_count(&self) -> usize {
        self.state.user_count()
    }

    /// The password hash in force for `user` here, if the name is an open account (for
    /// checks that every server holds the same one).
    pub fn password_of(&self, user: &palaver_proto::Name) -> Option<&str> {
        self.state.password_of(user)
    }

    pub fn channel_count(&self) -> usize {
        self.state.channel_count()
    }

    /// Whether another request fits in the batch being gathered.
    pub fn takes_requests(&self) -> bool {
        self.batch.len() < MAX_BATCH
    }

    /// Whether the writer has a batch.
    pub fn writing(&self) -> bool {
        self.writing
    }

    fn is_coordinator(&self) -> bool {
        self.coordinator().is_some_and(|c| c.name == self.name)
    }

    // ---- sans-IO ----

    /// Takes in what arrived at `now`.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.now = now;
        self.stopped(now.at);
        match input {
            Input::Request { .. } if !self.accepting => {
                // Out of the broker's rotation (starting, stepped aside, or just back from a
                // stop): the broker gives what it sent here to another server once it hears
                // that this one left. Decided here, against memory that may be behind, it
                // refused a post to a channel whose creation had been acknowledged (a
                // request that reached a paused server, handled the moment it ran again;
                // the simulation found it, seed 14795).
                self.dropped_replies += 1;
                self.requests += 1;
            }
            Input::Request { token, body } => {
                if let Some(q) = self.request(Route::Broker(token), body) {
                    self.batch.push(q);
                }
                self.requests += 1;
            }
            Input::Peer { route, body } => self.peer_frame(route, body),
            Input::Answer { ask, answer } => self.answered(ask, answer),
            Input::Announcement(frames) => self.announcement(&frames),
            Input::Digested { route, reply } => self.reply(Route::Direct(route), reply),
            Input::Committed(done) => {
                self.writing = false;
                self.complete(done);
            }
            Input::Hashed { ticket, verdict } => self.verified(ticket, verdict),
        }
    }

    /// Moves time forward to `now`, and does what a turn of the loop does once what arrived
    /// is handled: the serving gate, the events the state made of itself, presence, two-phase
    /// deletes, replication's messages, and the next commit when the writer is idle.
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        let at = now.at;
        self.stopped(at);
        if self.repl.poll_timeout().is_some_and(|t| t <= at) {
            self.repl.handle_timeout(at);
        }
        let (mut sink, coord) = self.sink();
        coord.handle_timeout(&mut sink);
        self.peers_changed();
        self.gate();
        if self.accepting {
            // Direct clients wait, like the broker's, until this server has caught up.
            for mut frames in std::mem::take(&mut self.direct) {
                let body = frames.pop().unwrap_or_default();
                if let Some(q) = self.request(Route::Direct(frames), body) {
                    self.batch.push(q);
                }
                self.requests += 1;
            }
        }
        self.housekeeping();
        if self.accepting {
            // A two-phase delete's records are events of this server's own: none is made
            // before it has caught up, when its own events that only its peers still hold
            // (lost with a crash) are back and their numbers taken (made earlier, a prepare
            // took the number of one the peers held, and one id named two events; the
            // simulation found it, seed 41 with deletes). The protocol waits meanwhile.
            self.two_phase(at);
            self.claims_turn(at);
        } else {
            // Decisions learned meanwhile still take effect, as the events they came with do.
            self.claims_learned();
        }
        // Acks for what just arrived leave before this server's own fsync.
        self.replicate();
        let may_commit = self.failing.as_ref().is_none_or(|f| at >= f.next_try);
        if !self.writing && may_commit {
            self.dispatch(false);
        }
        self.replicate();
        if self.requests > 0 {
            let n = std::mem::take(&mut self.requests);
            let (mut sink, coord) = self.sink();
            coord.on_client_requests(n, &mut sink);
        }
    }

    /// Whether the server was stopped before `at` (nothing ran for longer than the broker
    /// waits for a silent server): then it steps out of the rotation until caught up, before
    /// it decides anything.
    fn stopped(&mut self, at: Instant) {
        let since = at.saturating_duration_since(std::mem::replace(&mut self.last_turn, at));
        if since > STOPPED_AFTER {
            self.woke(since);
        }
    }

    /// The slots of the log of claims applied here (1..=n).
    pub fn claims_applied(&self) -> u64 {
        self.claims.applied()
    }

    /// Live peers (listed by the reference) whose last request went unanswered: a partition
    /// or a cut link, logged once when it starts and once when it ends.
    pub fn out_of_reach(&self) -> Vec<String> {
        self.coord.out_of_reach().map(str::to_owned).collect()
    }

    /// When [`Engine::handle_timeout`] should run next, if anything is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.repl.poll_timeout(),
            // While the writer works, its wake-up comes first.
            self.pending_since
                .filter(|_| !self.writing)
                .map(|t| t + REPLICA_COMMIT_DELAY),
            self.deletes.deadline(),
            self.claims.deadline(),
            self.failing.as_ref().map(|f| f.next_try),
            (!self.accepting).then_some(self.serve_anyway_at),
            Some(self.coord.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The server stops: whatever waits is committed (the writer is idle), and what was held
    /// for the peers' acks is answered (it is durable).
    pub fn shutdown(&mut self, now: Now) {
        self.now = now;
        if !self.writing {
            self.dispatch(true);
        }
    }

    /// Answers everything held for acks (after the last commit, at shutdown).
    pub fn release_held(&mut self) {
        while let Some(held) = self.held.pop_front() {
            self.release(held);
        }
    }

    // ---- the serving gate ----

    /// Joins the broker's rotation once caught up with the peers (or once the grace is over)
    /// and the commits work.
    fn gate(&mut self) {
        let at = self.now.at;
        if self.accepting
            || self.failing.is_some()
            || self.reload_due
            // What it took from peers is (nearly) stored: a client is not made to wait
            // behind a long commit of a backlog.
            || self.pending.len() > MAX_PENDING_TO_SERVE
            || !(self.repl.caught_up() || at >= self.serve_anyway_at)
        {
            return;
        }
        if !self.repl.caught_up() {
            tracing::warn!(server = %self.name, "not caught up with the peers; serving anyway");
        }
        self.accepting = true;
        self.outputs.push_back(Output::JoinBroker);
        tracing::info!(server = %self.name, events = self.repl.vector().total(), "accepting client requests");
        if !std::mem::replace(&mut self.served, true) {
            self.outputs.push_back(Output::Ready);
        }
    }
}
