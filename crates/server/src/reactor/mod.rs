use std::collections::VecDeque;
use std::time::{Duration, Instant};

use palaver_core::replication::{self, Replication, VersionVector};
use palaver_core::{Lamport, Shutdown};
use palaver_proto::work;
use palaver_proto::{Envelope, Event, ProtoError, Reply, Request, Status, MAX_FRAME_BYTES};
use palaver_store::Store;

use crate::broker_link::{Arrival, BrokerLink};
use crate::coord::{Coordination, Data, Endpoints, Facts, Inbound};
use crate::hasher::Hasher;
use crate::state::{presence_notice, Handled, Pending, Proofs};
use crate::writer::{Done, Job, Writer};
use crate::{Config, ServerError, State};

mod aside;
mod deletes;
mod reads;

use aside::{Failing, RETRY_COMMIT};
use deletes::{Crash, Deletes, Waiting};

/// How long the reactor waits in `poll` before it looks at the shutdown flag again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The most requests one batch (one commit) takes.
const MAX_BATCH: usize = 1024;

/// How long events taken from peers may wait in memory for a commit of their own. They are
/// acknowledged before they are on this server's disk (the origin has them on its disk), so
/// nothing waits for this commit; deferring it lets them share the next commit of this server's
/// own writes instead of costing an fsync per replica publication.
const REPLICA_COMMIT_DELAY: Duration = Duration::from_millis(20);
/// Events from peers that are committed at once however young they are.
const REPLICA_COMMIT_EVENTS: usize = 4096;

/// A server that catches up takes clients only once at most this many events taken from its
/// peers wait for a commit (a few milliseconds of work), so no request waits behind a backlog.
const MAX_PENDING_TO_SERVE: usize = 1024;

/// A server that cannot catch up with its peers (say, the reference is down) serves anyway
/// after this long.
const STARTUP_GRACE: Duration = Duration::from_secs(5);

/// Where a request came from, and the way its answer goes back.
#[derive(Clone)]
enum Route {
    /// Through the broker, which named it by this token.
    Broker(u64),
    /// Straight to this server's peer endpoint.
    Direct(Vec<Vec<u8>>),
    /// Nobody: an event the server made of itself (a session's `touch`, a record of a
    /// two-phase delete).
    Internal,
    /// A message for this peer (of a two-phase delete), sent once the records made before it
    /// are stored.
    Peer(String),
}

/// A reply and the way back.
type Answer = (Route, Envelope);

/// A request waiting for password work on the hasher thread.
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

/// Runs a server until `shutdown` is triggered.
///
/// # Errors
/// When the store cannot be opened or a socket cannot be set up. Once serving, nothing a peer
/// sends makes this return.
pub fn run(cfg: &Config, shutdown: &Shutdown) -> Result<(), ServerError> {
    let ctx = zmq::Context::new();
    cfg.credentials.guard(&ctx, "server")?;
    // The writer owns the write connection; the reactor reads through its own (WAL lets a
    // reader see every committed transaction while the writer works).
    let writer = Writer::start(&ctx, &cfg.data_dir)?;
    let store = Store::open(&cfg.data_dir)?;
    let snapshot = store.snapshot()?;
    tracing::info!(
        server = %cfg.name,
        users = snapshot.users.len(),
        channels = snapshot.channels.len(),
        data = %cfg.data_dir.display(),
        "opened store"
    );
    let lamport = Lamport::starting_at(snapshot.max_lamport);
    let vector: VersionVector = snapshot
        .progress
        .iter()
        .map(|(o, s)| (o.clone(), *s))
        .collect();
    let mut deletes = Deletes::new(&cfg.name);
    deletes.restore(Instant::now(), &snapshot.rooms);
    let state = State::with_policy(cfg.name.as_str(), snapshot, cfg.policy);
    let hasher = Hasher::start(&ctx)?;

    let repl = Replication::new(cfg.name.as_str(), vector, replication::Config::default());

    // Joined only once caught up with the peers: until then the broker sends clients
    // elsewhere, and nobody reads from a server that lacks what others acknowledged.
    let broker = BrokerLink::new(
        &ctx,
        &cfg.broker_backend,
        cfg.name.as_str(),
        &cfg.credentials,
    )?;
    let publisher = ctx.socket(zmq::PUB)?;
    // People's publications only, which the proxy reads as they come: this bounds the
    // server's memory while the proxy is down.
    publisher.set_sndhwm(10_000)?;
    publisher.set_linger(2000)?;
    cfg.credentials.connect(&publisher)?;
    connect(&publisher, &cfg.proxy_xsub)?;
    let endpoints = Endpoints {
        peer_bind: cfg.peer.clone(),
        advertise: cfg.advertise.clone(),
        reference: cfg.reference.clone(),
        proxy_xpub: cfg.proxy_xpub.clone(),
        data_dir: cfg.data_dir.clone(),
        credentials: cfg.credentials.clone(),
    };
    let coord = Coordination::open(
        &ctx,
        &cfg.name,
        &endpoints,
        cfg.clock_skew_ms as f64 / 1000.0,
    )?;
    tracing::info!(
        server = %cfg.name,
        broker = %cfg.broker_backend,
        proxy = %cfg.proxy_xsub,
        peer = %coord.addr(),
        reference = %cfg.reference,
        "serving"
    );

    let mut reactor = Reactor {
        name: cfg.name.to_string(),
        state,
        store,
        writer,
        hasher,
        deletes,
        crash: cfg.crash_after_prepare.then_some(Crash::Armed),
        announcer: false,
        batch: Vec::new(),
        committing: Vec::new(),
        broker,
        publisher,
        lamport,
        coord,
        repl,
        held: VecDeque::new(),
        direct: Vec::new(),
        hidden: Vec::new(),
        pending: Vec::new(),
        pending_since: None,
        accepting: false,
        serve_anyway_at: Instant::now() + STARTUP_GRACE,
        turn: Instant::now(),
        failing: None,
        retry: None,
        reload_due: false,
        dropped_replies: 0,
        bad_frames: 0,
        failed_batches: 0,
        set_aside: 0,
        fail_log: palaver_core::LogGate::every_second(),
    };
    reactor.serve(shutdown)?;
    // Finish the batch being committed, then commit what is left, peers' events included.
    if let Some(done) = reactor.writer.wait() {
        reactor.complete(done);
    }
    reactor.dispatch(true);
    if let Some(done) = reactor.writer.wait() {
        reactor.complete(done);
    }
    // Writes held for acks are durable here: answer them rather than leave clients waiting.
    while let Some(held) = reactor.held.pop_front() {
        reactor.release(held);
    }
    reactor.hasher.stop();
    reactor.broker.farewell();
    tracing::info!(server = %cfg.name, "stopped");
    Ok(())
}

fn connect(socket: &zmq::Socket, endpoint: &str) -> Result<(), ServerError> {
    socket
        .connect(endpoint)
        .map_err(|source| ServerError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })
}

struct Reactor {
    name: String,
    state: State,
    /// The reactor's read connection; commits go through the writer.
    store: Store,
    writer: Writer,
    /// Password work, on a thread of its own.
    hasher: Hasher<Awaiting>,
    /// Two-phase deletes: the commit machine and the client deletes waiting for it.
    deletes: Deletes,
    /// A fault test's crash after a prepare, when asked for.
    crash: Option<Crash>,
    /// Whether this server announces presence changes (it is the coordinator).
    announcer: bool,
    /// Requests handled and waiting for the next commit.
    batch: Vec<Queued>,
    /// Requests whose batch the writer is committing.
    committing: Vec<Queued>,
    broker: BrokerLink,
    publisher: zmq::Socket,
    lamport: Lamport,
    coord: Coordination,
    repl: Replication,
    /// Answers to batches with writes of our own, waiting until the peers have them: the
    /// batch's highest sequence number, and the replies in order.
    held: VecDeque<Held>,
    /// Client requests that came to the peer endpoint directly, for the next batch.
    direct: Vec<Vec<Vec<u8>>>,
    /// Events found to repeat a request another event made, to mark in the next commit.
    hidden: Vec<(String, u64)>,
    /// Events taken from peers (applied in memory, acknowledged) but not yet committed, and
    /// since when the oldest has waited.
    pending: Vec<Event>,
    pending_since: Option<Instant>,
    /// Whether the worker is connected to the broker.
    accepting: bool,
    /// When to take clients even if not caught up with every peer (the peers may be
    /// unreachable): a grace after start-up, or after recovering from failed commits.
    serve_anyway_at: Instant,
    /// The time of this turn of the loop, read once after the poll.
    turn: Instant,
    /// A batch of this server's own events whose commit failed after they were sent to the
    /// peers: committed again, as it is, before anything else.
    retry: Option<Job>,
    /// A reload after a failed commit could not read the store: try again before anything
    /// is served.
    reload_due: bool,
    /// Answers to the broker's requests dropped: sent while out of the rotation (the broker
    /// gave those requests to another server), or not queued.
    dropped_replies: u64,
    /// Frames from the broker that were not requests.
    bad_frames: u64,
    /// Set while commits fail: the server stays out of the broker's rotation until one works.
    failing: Option<Failing>,
    failed_batches: u64,
    /// Peers' events that arrived while commits failed, not kept (fetched again later).
    set_aside: u64,
    fail_log: palaver_core::LogGate,
}

impl Reactor {
    /// Reads what has arrived, handles it as one batch with the events other servers sent,
    /// commits them with one fsync, publishes, and answers once the peers have the writes.
    fn serve(&mut self, shutdown: &Shutdown) -> Result<(), ServerError> {
        while !shutdown.is_triggered() {
            let now = Instant::now();
            let due = [
                self.repl.poll_timeout(),
                // While the writer works, its wake-up comes first.
                self.pending_since
                    .filter(|_| !self.writer.busy())
                    .map(|t| t + REPLICA_COMMIT_DELAY),
            ]
            .into_iter()
            .flatten()
            .chain(self.broker.deadline())
            .chain(self.deletes.deadline())
            .fold(self.coord.deadline(), Instant::min);
            let wait = due.saturating_duration_since(now).min(POLL_INTERVAL);
            let readable = {
                let mut items = vec![
                    self.broker.socket().as_poll_item(zmq::POLLIN),
                    self.writer.wake.as_poll_item(zmq::POLLIN),
                    self.hasher.wake.as_poll_item(zmq::POLLIN),
                ];
                items.extend(
                    self.coord
                        .sockets()
                        .into_iter()
                        .map(|s| s.as_poll_item(zmq::POLLIN)),
                );
                // Round up, so a deadline a fraction of a millisecond away is not spun on.
                let ms = i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
                match zmq::poll(&mut items, ms) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => tracing::warn!(error = %e, "poll failed"),
                }
                items
                    .iter()
                    .map(zmq::PollItem::is_readable)
                    .collect::<Vec<bool>>()
            };
            let now = Instant::now();
            // One reading of the clock per turn: everything this turn does happens at `now`.
            self.turn = now;
            let facts = Facts {
                users: self.state.user_count(),
                channels: self.state.channel_count(),
            };
            let data = Data {
                facts,
                store: &self.store,
                vector: self.repl.vector(),
            };
            self.coord.on_ready(
                &readable[3..],
                now,
                &mut self.lamport,
                &self.publisher,
                data,
            );
            self.coord.on_tick(now, &mut self.lamport, &self.publisher);
            self.broker.beat(now);
            let incoming = self.inbound(now);
            if !incoming.is_empty() {
                self.pending_since.get_or_insert(now);
                self.pending.extend(incoming);
            }
            if self.repl.poll_timeout().is_some_and(|t| t <= now) {
                self.repl.handle_timeout(now);
            }
            if !self.accepting
                && self.failing.is_none()
                && !self.reload_due
                // What it took from peers is (nearly) stored: a client is not made to wait
                // behind a long commit of a backlog.
                && self.pending.len() <= MAX_PENDING_TO_SERVE
                && (self.repl.caught_up() || now >= self.serve_anyway_at)
            {
                if !self.repl.caught_up() {
                    tracing::warn!(server = %self.name, "not caught up with the peers; serving anyway");
                }
                self.broker.join(now)?;
                self.accepting = true;
                tracing::info!(server = %self.name, events = self.repl.vector().total(), "accepting client requests");
                // Serving: caught up, and in the broker's rotation (said once per process).
                palaver_supervise::notify_ready();
            }
            if readable[1] {
                if let Some(done) = self.writer.finished() {
                    self.complete(done);
                }
            }
            let before = self.batch.len();
            if readable[2] {
                self.verified();
            }
            if readable[0] {
                // Everything that arrives while the writer syncs forms the next batch, so
                // concurrent clients share commits without anyone waiting on purpose.
                self.drain();
            }
            if self.accepting {
                // Direct clients wait, like the broker's, until this server has caught up.
                for mut frames in std::mem::take(&mut self.direct) {
                    let body = frames.pop().unwrap_or_default();
                    if let Some(q) = self.request(Route::Direct(frames), body) {
                        self.batch.push(q);
                    }
                }
            }
            self.housekeeping();
            self.two_phase(now);
            let n = self.batch.len() - before;
            // Acks for what just arrived leave before this server's own fsync.
            self.replicate(now);
            let may_commit = self.failing.as_ref().is_none_or(|f| now >= f.next_try);
            if !self.writer.busy() && may_commit {
                self.dispatch(false);
            }
            self.replicate(now);
            if n > 0 {
                self.coord.client_requests(n, now, &mut self.lamport);
            }
        }
        Ok(())
    }

    /// Hands what arrived for replication to the bookkeeping; returns the events to store.
    fn inbound(&mut self, now: Instant) -> Vec<Event> {
        let mut store = Vec::new();
        for inb in self.coord.take_inbound() {
            match inb {
                Inbound::Peers(names) => {
                    self.deletes.set_peers(names.clone());
                    self.repl.set_peers(now, names);
                }
                // While its commits fail, a server takes nothing more into memory: what it
                // cannot store would only pile up (it grew by the cluster's whole write rate).
                // It is not acknowledged, so the origins stop waiting for this server, and it
                // is fetched once commits work again.
                Inbound::Replica { events, .. } if self.failing.is_some() => {
                    self.set_aside(events.len());
                }
                Inbound::Vector { .. } if self.failing.is_some() => {}
                Inbound::Fetched { origin, events, .. } if self.failing.is_some() => {
                    self.set_aside(events.len());
                    self.repl.on_fetch_failed(&origin);
                }
                Inbound::Replica { origin, events } => {
                    self.offer(now, &origin, &origin, events, &mut store);
                }
                Inbound::Vector { peer, vector } => self.repl.on_vector(now, &peer, &vector),
                Inbound::Fetched {
                    peer,
                    origin,
                    events,
                    more,
                } => {
                    let before = store.len();
                    self.offer(now, &peer, &origin, events, &mut store);
                    if store.len() > before && !self.accepting {
                        // Catching up: a server that is fetching is not cut off from its
                        // peers, so it serves once caught up, not at the end of a grace.
                        self.serve_anyway_at = self.serve_anyway_at.max(now + STARTUP_GRACE);
                    }
                    self.repl.on_fetched(now, &peer, &origin, more);
                }
                Inbound::FetchFailed { origin } => self.repl.on_fetch_failed(&origin),
                Inbound::Ack { peer, seq } => self.repl.on_ack(now, &peer, seq),
                Inbound::Client(frames) => self.direct.push(frames),
                Inbound::Beats(beats) => self.state.beats_from_peer(&beats, self.coord.now()),
                Inbound::TwoPc { from, msg } => {
                    self.deletes.on_message(now, &from, msg, &self.state);
                }
            }
        }
        store
    }

    /// Takes the events that are next in line. They take effect in memory and are acknowledged
    /// at once: the origin already has them on its disk, so they are durable before any client
    /// hears of them, here or anywhere. They reach this server's disk with its next write
    /// commit, or within `REPLICA_COMMIT_DELAY`; a crash before that loses nothing that the
    /// origin and anti-entropy cannot give back.
    fn offer(
        &mut self,
        now: Instant,
        from: &str,
        origin: &str,
        events: Vec<Event>,
        out: &mut Vec<Event>,
    ) {
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let take = self.repl.offer(now, from, origin, &seqs);
        let before = out.len();
        for (e, _) in events.into_iter().zip(take).filter(|(_, t)| *t) {
            if let Some(hide) = self.state.apply(&e) {
                self.hidden.push(hide);
            }
            self.deletes.learn(&e);
            self.lamport.observe(e.lamport);
            out.push(e);
        }
        if out.len() > before {
            self.repl.on_stored([origin.to_owned()]);
        }
    }

    /// Carries out what replication asks for.
    fn replicate(&mut self, now: Instant) {
        while let Some(action) = self.repl.poll_action() {
            match action {
                replication::Action::AskVector { peer } => {
                    self.coord
                        .ask_vector(&peer, self.repl.vector(), now, &mut self.lamport)
                }
                replication::Action::Fetch {
                    peer,
                    origin,
                    after,
                    limit,
                } => {
                    self.coord
                        .fetch(&peer, &origin, after, limit, now, &mut self.lamport);
                }
                replication::Action::Ack { peer, seq } => {
                    self.coord.ack(&peer, seq, &mut self.lamport);
                }
                replication::Action::Release { upto } => {
                    while self.held.front().is_some_and(|(seq, _, _)| *seq <= upto) {
                        if let Some(held) = self.held.pop_front() {
                            self.release(held);
                        }
                    }
                }
            }
        }
    }

    /// Reads every request waiting, up to a full batch.
    fn drain(&mut self) {
        while self.batch.len() < MAX_BATCH {
            match self.broker.recv() {
                Some(Arrival::Request { token, body }) => {
                    if let Some(q) = self.request(Route::Broker(token), body) {
                        self.batch.push(q);
                    }
                }
                Some(Arrival::Unreadable(e)) => {
                    self.bad_frames += 1;
                    if let Some(quiet) = self.fail_log.admit(self.turn) {
                        tracing::warn!(error = %e, bad = self.bad_frames, unlogged = quiet, "unreadable message from the broker");
                    }
                }
                None => break,
            }
        }
    }

    /// Handles one request that came by `envelope`. `None` when it waits for password work
    /// (it joins a batch once that is done).
    fn request(&mut self, envelope: Route, body: Vec<u8>) -> Option<Queued> {
        if body.len() > MAX_FRAME_BYTES {
            tracing::warn!(bytes = body.len(), "refused an oversized frame");
        }
        let env = match Envelope::decode(&body) {
            Ok(env) => env,
            Err(e) => {
                let service = Envelope::sniff_service(&body);
                return Some(Queued {
                    envelope,
                    handled: rejection(service.as_deref(), &e),
                    echo: None,
                });
            }
        };
        // A request's clock is taken in only if the request is accepted: a refused request
        // (unknown service, invalid field, a write the state refuses) moves no clock.
        let before = self.lamport;
        if let Some(clock) = env.clock() {
            self.lamport.observe(clock);
        }
        let echo = palaver_proto::request_id_of(&env.data);
        let handled = match Request::parse(&env) {
            Ok((req, meta)) => {
                // A request without an id of its own takes the broker's token as one: if the
                // broker sends it to another server too (this one went silent), it still
                // takes effect once.
                let id = match (&envelope, meta.request_id) {
                    (_, Some(id)) => Some(id),
                    (Route::Broker(token), None) => Some(work::request_id(*token)),
                    (Route::Direct(_) | Route::Internal | Route::Peer(_), None) => None,
                };
                let proofs = Proofs {
                    token: meta.token,
                    password: meta.password,
                };
                let mut handled = self.state.handle_request(
                    req,
                    id.clone(),
                    &proofs,
                    self.coord.now(),
                    &mut self.lamport,
                );
                if let Some((user, message)) = handled.lookup.take() {
                    // A read marker: the message is looked up here, then the state decides.
                    let found = self.find(&message);
                    handled = self.state.marked(
                        user,
                        &message,
                        found.as_ref(),
                        id.clone(),
                        self.coord.now(),
                        &mut self.lamport,
                    );
                }
                if let Some(room) = handled.delete.take() {
                    // Decided by every server: answered once the two-phase commit ends.
                    let waiting = Waiting {
                        route: envelope,
                        echo,
                        request: id,
                        proofs,
                        room,
                        asked: self.turn,
                        began: self.turn,
                    };
                    self.start_delete(waiting);
                    return None;
                }
                if let Some(v) = handled.verify.take() {
                    // Undecided until the password work is done: no clock moves meanwhile (a
                    // wrong password must not push the clock).
                    self.lamport = before;
                    let user = v.pending.user().clone();
                    let waiting = Awaiting {
                        route: envelope,
                        echo,
                        request: id,
                        pending: v.pending,
                        clock: env.clock(),
                    };
                    match self.hasher.submit(self.turn, &user, v.job, waiting) {
                        Ok(()) => return None,
                        Err((w, why)) => {
                            let service = handled.reply.service.clone();
                            return Some(Queued {
                                envelope: w.route,
                                handled: Handled::reply(Reply::error(&service, &why)),
                                echo: w.echo,
                            });
                        }
                    }
                }
                handled
            }
            Err(e) => rejection(Some(&env.service), &e),
        };
        if Reply::status(&handled.reply) == Status::Error {
            self.lamport = before;
        }
        Some(Queued {
            envelope,
            handled,
            echo,
        })
    }

    /// Requests whose password work is done: decided now, and into the next batch.
    fn verified(&mut self) {
        for (w, verdict) in self.hasher.finished(self.turn) {
            let before = self.lamport;
            if let Some(clock) = w.clock {
                self.lamport.observe(clock);
            }
            let handled = self.state.verified(
                w.pending,
                verdict,
                w.request,
                self.coord.now(),
                &mut self.lamport,
            );
            if Reply::status(&handled.reply) == Status::Error {
                self.lamport = before;
            }
            self.batch.push(Queued {
                envelope: w.route,
                handled,
                echo: w.echo,
            });
        }
    }

    /// Each turn: the events the state made of itself join the batch, clients' beats go to
    /// the peers, and presence changes are announced (by the coordinator only, so each is said
    /// once; a new coordinator says the recent ones again, in case its predecessor died first).
    fn housekeeping(&mut self) {
        for event in self.state.take_extra() {
            self.batch.push(Queued {
                envelope: Route::Internal,
                handled: Handled {
                    event: Some(event),
                    ..Handled::reply(Reply::ok("touch"))
                },
                echo: None,
            });
        }
        let beats = self.state.take_gossip();
        if !beats.is_empty() {
            self.coord.pass_beats(beats, &mut self.lamport);
        }
        let now = self.coord.now();
        let mut changes = self.state.presence_changes(now);
        let announcer = self.coord.is_coordinator();
        if announcer && !self.announcer {
            changes = self
                .state
                .presence_since(now - 2.0 * self.state.policy().presence_timeout);
        }
        self.announcer = announcer;
        if !announcer {
            return;
        }
        for c in changes {
            let mut env = presence_notice(&c);
            env.stamp(now, self.lamport.tick());
            let frames = [
                palaver_proto::TOPIC_PRESENCE.as_bytes().to_vec(),
                env.to_bytes(),
            ];
            if let Err(e) = self.publisher.send_multipart(frames, zmq::DONTWAIT) {
                tracing::warn!(error = %e, "presence notice dropped");
            }
        }
    }

    /// The event `id`, from the store or among the peers' events waiting for a commit.
    fn find(&self, id: &palaver_proto::EventRef) -> Option<Event> {
        if let Some(e) = self
            .pending
            .iter()
            .find(|e| e.origin == id.origin && e.seq == id.seq)
        {
            return Some(e.clone());
        }
        match self.store.event(&id.origin, id.seq) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot look a message up");
                None
            }
        }
    }

    /// The peers' events waiting for a commit, taken out.
    fn take_pending(&mut self) -> Vec<Event> {
        self.pending_since = None;
        std::mem::take(&mut self.pending)
    }

    /// Hands the waiting batch to the writer (the writer is idle), with the peers' pending
    /// events when the batch writes or reads history, when they have waited long enough, or
    /// when `force`d. A batch with nothing to store is answered at once.
    fn dispatch(&mut self, force: bool) {
        let writes = self
            .batch
            .iter()
            .any(|q| q.handled.event.is_some() || q.handled.read.is_some());
        let pending_due = force
            || self.pending.len() >= REPLICA_COMMIT_EVENTS
            || self
                .pending_since
                .is_some_and(|t| self.turn >= t + REPLICA_COMMIT_DELAY);
        let flush_pending = pending_due && !self.pending.is_empty();
        if let Some(f) = self.failing.as_mut() {
            // Out of the rotation: try again now, with whatever waits, or with a probe.
            f.next_try = self.turn + RETRY_COMMIT;
            if self.reload_due {
                self.reload();
            }
            if let Some(job) = self.retry.take() {
                // A batch whose events the peers may already hold: the same events, again
                // (its requests, in `committing`, are answered once it is stored).
                self.writer.submit(job);
                return;
            }
            if self.batch.is_empty() && !flush_pending {
                self.committing = Vec::new();
                self.writer.submit(Job {
                    events: Vec::new(),
                    hidden: Vec::new(),
                });
                return;
            }
        }
        if self.batch.is_empty() && !flush_pending {
            return;
        }
        // Reads answered from memory need no commit; writes and history reads (which read
        // the disk) take the peers' pending events along.
        let incoming = if writes || pending_due {
            self.take_pending()
        } else {
            Vec::new()
        };
        self.committing = std::mem::take(&mut self.batch);
        let mut events: Vec<Event> = self
            .committing
            .iter()
            .filter_map(|q| q.handled.event.clone())
            .collect();
        if events.is_empty() && incoming.is_empty() {
            // Every earlier batch is committed (the writer is idle): answer now.
            self.complete(Done {
                events: Vec::new(),
                hidden: Vec::new(),
                results: Vec::new(),
                failed: None,
            });
            return;
        }
        // The peers take this server's new events while it commits them, as a Raft leader
        // sends entries while it appends them: a write then waits for the slower of its fsync
        // and the peers' acks, not for both in a row. Once sent, they are this server's events
        // for good: a failed commit is tried again with the same events (see `complete`).
        if let Some(last) = events.last().map(|e| e.seq) {
            self.coord.replicate_events(&events, &mut self.lamport);
            self.repl.on_own_sent(last);
        }
        events.extend(incoming);
        let hidden = std::mem::take(&mut self.hidden);
        self.writer.submit(Job { events, hidden });
    }

    /// The writer committed the batch: publishes, and answers (at once for a batch without
    /// writes, after the peers' acks otherwise).
    fn complete(&mut self, done: Done) {
        let own = self
            .committing
            .iter()
            .filter(|q| q.handled.event.is_some())
            .count();
        if let (Some(why), true) = (&done.failed, own > 0) {
            // The peers hold (or may hold) this batch's events already: keep them, numbers and
            // all, and commit the same batch again once the disk takes writes; its requests
            // stay unanswered until then (a client retries elsewhere, where its request id is
            // known). Out of the rotation meanwhile.
            self.step_aside(Some(why));
            self.retry = Some(Job {
                events: done.events,
                hidden: done.hidden,
            });
            return;
        }
        let batch = std::mem::take(&mut self.committing);
        let incoming = &done.events[own.min(done.events.len())..];
        let results = done.results;
        let mut results = results.into_iter();
        let mut lost = done.failed.is_some();
        let mut first_error = done.failed.clone();
        let mut replies = Vec::with_capacity(batch.len());
        let mut published: Vec<Event> = Vec::new();
        let mut publications = Vec::new();
        for q in batch {
            let Handled {
                reply,
                event,
                publication,
                read,
                verify: _,
                delete: _,
                lookup: _,
            } = q.handled;
            let (reply, told) = match &read {
                Some(r) => self.read_stored(r, reply, event.as_ref()),
                None => (reply, Vec::new()),
            };

            let stored = match &event {
                None => true,
                Some(ev) => match results.next() {
                    Some(Ok(())) => true,
                    other => {
                        let why = other.and_then(Result::err).unwrap_or_default();
                        first_error.get_or_insert_with(|| format!("{}: {why}", ev.id()));
                        false
                    }
                },
            };
            if !stored {
                lost = true;
                let service = reply.service.clone();
                let refusal = Reply::error(&service, "the server could not store this; try again");
                replies.push((q.envelope, echoed(refusal, q.echo)));
                continue;
            }
            replies.push((q.envelope, echoed(reply, q.echo)));
            publications.extend(publication);
            publications.extend(told);
            if let Some(ev) = event {
                published.push(ev);
            }
        }
        for (e, r) in incoming.iter().zip(results) {
            if let Err(why) = r {
                lost = true;
                first_error.get_or_insert_with(|| format!("{}: {why}", e.id()));
            }
        }
        if lost {
            // Messages of two-phase deletes may stand on records that did not make it: not
            // sent (the protocol sends again what it still means).
            replies.retain(|(route, _)| !matches!(route, Route::Peer(_)));
            // Memory ran ahead of the disk: start again from what the disk holds. Requests
            // handled since, against the memory being dropped, are refused.
            for q in std::mem::take(&mut self.batch) {
                if matches!(q.envelope, Route::Peer(_)) {
                    continue;
                }
                let service = q.handled.reply.service.clone();
                let refusal = Reply::error(&service, "the server could not store this; try again");
                replies.push((q.envelope, echoed(refusal, q.echo)));
            }
            self.reload();
        } else {
            self.recovered();
        }
        let now = self.turn;
        match published.last().map(|e| e.seq) {
            Some(seq) if !lost => {
                self.repl.on_own_commit(now, seq);
                self.held.push_back((seq, replies, publications));
            }
            _ => self.release((0, replies, publications)),
        }
        if lost {
            // After the batch's answers, which still reach the broker.
            self.step_aside(first_error.as_deref());
        }
    }

    /// Publishes a batch's publications, then sends its answers.
    fn release(&mut self, (_, replies, publications): Held) {
        for (topic, env) in publications {
            self.lamport.tick();
            if let Err(e) = self
                .publisher
                .send_multipart([topic.into_bytes(), env.to_bytes()], zmq::DONTWAIT)
            {
                tracing::warn!(error = %e, "publication dropped");
            }
        }
        let mut told_peers = false;
        for (envelope, reply) in replies {
            told_peers |= matches!(envelope, Route::Peer(_));
            self.reply(&envelope, reply);
        }
        if told_peers && self.crash == Some(Crash::Due) {
            // Let ZeroMQ's I/O thread put the messages on the wire, then die as `kill -9` would.
            std::thread::sleep(Duration::from_millis(300));
            tracing::warn!(server = %self.name, "dying after a prepare, as a fault test asked");
            std::process::abort();
        }
    }

    fn reply(&mut self, route: &Route, mut reply: Envelope) {
        match route {
            Route::Broker(token) => {
                if !self.accepting {
                    // Out of the broker's rotation: the broker gave this request to another
                    // server when this one left, and would drop the answer.
                    self.dropped_replies += 1;
                    return;
                }
                reply.stamp(self.coord.now(), stamp_clock(&reply, &mut self.lamport));
                // Which server answered (ours): clients show it, operators trace with it.
                reply
                    .data
                    .set("server", rmpv::Value::from(self.name.as_str()));
                // A client learns the coordinator when it logs in (then from `servers`).
                if reply.service == "login" {
                    if let Some(c) = self.coord.coordinator() {
                        reply
                            .data
                            .set("coordinator", rmpv::Value::from(c.name.as_str()));
                    }
                }
                if let Err(e) = self.broker.reply(*token, &reply.to_bytes()) {
                    self.dropped_replies += 1;
                    if let Some(quiet) = self.fail_log.admit(self.turn) {
                        tracing::warn!(error = %e, dropped = self.dropped_replies, unlogged = quiet, "reply dropped");
                    }
                }
            }
            Route::Direct(envelope) => self.coord.answer(envelope, reply, &mut self.lamport),
            Route::Peer(to) => self.coord.tell(to, reply, &mut self.lamport),
            Route::Internal => {}
        }
    }
}

/// `reply` with the client's request id, when it gave one.
fn echoed(reply: Envelope, request_id: Option<String>) -> Envelope {
    match request_id {
        Some(id) => reply.with("request_id", id),
        None => reply,
    }
}

/// The clock to stamp a reply with (see [`Lamport::for_answer`]).
pub(crate) fn stamp_clock(reply: &Envelope, lamport: &mut Lamport) -> u64 {
    lamport.for_answer(Reply::status(reply) == Status::Error)
}

fn rejection(service: Option<&str>, err: &ProtoError) -> Handled {
    tracing::debug!(service, error = %err, "rejected a request");
    Handled::reply(Reply::rejection(service, err))
}
