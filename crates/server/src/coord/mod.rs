//! The server's side of coordination: rank and heartbeats with the reference, the bully
//! election and Berkeley synchronisation with the other servers. The algorithms live in
//! `palaver_core`; this module moves their messages over ZeroMQ and reads the clock.
//!
//! ```text
//!  reference ◀──rank / heartbeat / list── Link ─┐
//!  peer s2   ◀──election / clock / adjust── Link ┤ Coordination ◀── Election, berkeley::Round
//!  peers     ──election / clock / adjust──▶ ROUTER (this server's peer endpoint)
//!  proxy     ──"servers" announcements───▶ SUB
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palaver_core::berkeley::{Round, Sample, Settings};
use palaver_core::election::{Action, Election, Timeouts};
use palaver_core::membership;
use palaver_core::replication::VersionVector;
use palaver_core::schedule::{Duty, Schedule, Timing};
use palaver_core::{Lamport, Member};
use palaver_proto::peer::{Claim, Introduction, PeerReply, PeerRequest};
use palaver_proto::{Envelope, Name, Reply, ServerEntry, Status, TOPIC_SERVERS};
use palaver_store::Store;

use crate::clock::PhysicalClock;
use crate::link::{Link, Outcome, Sent};
use crate::ServerError;

mod replicate;
mod serve;

/// How long to wait for the reference, or for a peer, before giving a request up.
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(1);
const PEER_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a new publisher socket may take to learn the proxy's subscriptions: until then,
/// ZeroMQ drops what it publishes. An announcement made this soon after start-up is made again
/// once this has passed (a restarted server that wins at once would otherwise go unheard).
const PUB_WARMUP: Duration = Duration::from_secs(1);
/// How long a round waits for the members' clocks.
const ROUND_TIMEOUT: Duration = Duration::from_millis(500);

/// Requests to the reference.
enum RefAsk {
    Rank,
    Heartbeat,
    List,
}

/// Requests to another server.
#[derive(Debug)]
enum PeerAsk {
    Elect,
    Ping,
    Clock { round: u64 },
    Coordinator,
    Adjust,
    Sync,
    Vector,
    Fetch { origin: String },
}

/// The largest page of events a server sends for one `fetch`.
pub const MAX_FETCH: usize = 5000;

pub use crate::engine::PeerInput as Inbound;

/// Whether a frame on the peer endpoint is a client service that a client may ask a server for
/// directly, as it would through the broker (the one list, `palaver_proto::SERVICES`, says).
fn is_client_request(body: &[u8]) -> bool {
    Envelope::sniff_service(body)
        .and_then(|s| palaver_proto::service(&s))
        .is_some_and(|s| s.direct)
}

struct Peer {
    member: Member,
    link: Link<PeerAsk>,
    /// Send-only, for acks and replica batches: one-way messages to the peer's endpoint,
    /// which it never answers.
    /// (Apart from the link, so that nothing can upset its matching of replies.)
    acks: Option<zmq::Socket>,
}

/// A DEALER that only sends, to `addr`.
fn ack_socket(
    ctx: &zmq::Context,
    addr: &str,
    credentials: &palaver_auth::Credentials,
) -> Option<zmq::Socket> {
    let open = || -> Result<zmq::Socket, ServerError> {
        let s = ctx.socket(zmq::DEALER)?;
        credentials.connect(&s)?;
        s.set_linger(0)?;
        // Queued while the connection is being made (a CURVE handshake takes a moment, and a
        // new peer's first batches must not be lost), and while a dead peer is still listed
        // (the reference drops it within 3 s, and its socket with it). Batches may be 512 KiB:
        // past 1,000 queued, sends fail, are logged, and anti-entropy repairs them.
        s.set_sndhwm(1_000)?;
        s.set_rcvhwm(1)?;
        s.connect(addr)?;
        Ok(s)
    };
    open()
        .inspect_err(|e| tracing::warn!(addr, error = %e, "no ack socket"))
        .ok()
}

/// What the server tells operators about itself besides coordination.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    pub users: usize,
    pub channels: usize,
}

/// Where to find the reference and the proxy, and where to listen for peers.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Peer endpoint to bind (`tcp://127.0.0.1:*` picks a free port).
    pub peer_bind: String,
    /// Address the others should use, when the bound one will not do (say, bound on `*`).
    pub advertise: Option<String>,
    pub reference: String,
    pub proxy_xpub: String,
    /// The server's data directory: digests read it through a connection of their own.
    pub data_dir: std::path::PathBuf,
    pub credentials: palaver_auth::Credentials,
}

/// The peer address to give the others when none was given: the bound one, unless it was bound
/// on every interface, which names no host; then this host's name (in a container, the name
/// Docker's DNS resolves to it, whatever address the network gives it now), or loopback when the
/// host has no name.
fn advertised(bound: &str, hostname: Option<&str>) -> String {
    match bound.strip_prefix("tcp://0.0.0.0:") {
        Some(port) => format!("tcp://{}:{port}", hostname.unwrap_or("127.0.0.1")),
        None => bound.to_string(),
    }
}

/// This host's name, if it has one.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

pub struct Coordination {
    name: Name,
    addr: String,
    ctx: zmq::Context,
    credentials: palaver_auth::Credentials,
    router: zmq::Socket,
    sub: zmq::Socket,
    /// Digests computed on threads of their own come back here, with their routing frames.
    digests: zmq::Socket,
    digest_endpoint: String,
    data_dir: std::path::PathBuf,
    reference: Link<RefAsk>,
    rank: Option<u64>,
    election: Option<Election>,
    peers: BTreeMap<String, Peer>,
    clock: PhysicalClock,
    /// When heartbeats, peer lists and clock rounds are due.
    schedule: Schedule,
    round: Option<(u64, Round)>,
    rounds: u64,
    inbound: Vec<Inbound>,
    /// Peer messages not sent or not readable, and the gate that keeps their log lines to one
    /// a second.
    dropped: u64,
    drop_log: palaver_core::LogGate,
    /// When the server started, and an announcement to make again once its publisher is warm.
    started: Instant,
    reannounce: Option<Member>,
}

impl Coordination {
    /// Binds the peer endpoint and connects to the reference and the proxy.
    ///
    /// # Errors
    /// When the peer endpoint cannot be bound or an endpoint is malformed.
    pub fn open(
        ctx: &zmq::Context,
        name: &Name,
        ep: &Endpoints,
        skew_secs: f64,
    ) -> Result<Coordination, ServerError> {
        let router = ctx.socket(zmq::ROUTER)?;
        router.set_linger(0)?;
        router.set_maxmsgsize(palaver_proto::MAX_SOCKET_BYTES)?;
        ep.credentials.serve(&router)?;
        router
            .bind(&ep.peer_bind)
            .map_err(|source| ServerError::Listen {
                endpoint: ep.peer_bind.clone(),
                source,
            })?;
        let bound = router
            .get_last_endpoint()?
            .unwrap_or_else(|_| ep.peer_bind.clone());
        let addr = ep
            .advertise
            .clone()
            .unwrap_or_else(|| advertised(&bound, hostname().as_deref()));
        let sub = ctx.socket(zmq::SUB)?;
        sub.set_linger(0)?;
        sub.connect(&ep.proxy_xpub)?;
        sub.set_subscribe(TOPIC_SERVERS.as_bytes())?;
        sub.set_rcvhwm(100_000)?;
        let digests = ctx.socket(zmq::PULL)?;
        let digest_endpoint = format!("inproc://digests-{name}-{:p}", &digests);
        digests.bind(&digest_endpoint)?;
        let now = Instant::now();
        let mut coordination = Coordination {
            name: name.clone(),
            addr,
            ctx: ctx.clone(),
            credentials: ep.credentials.clone(),
            router,
            sub,
            digests,
            digest_endpoint,
            data_dir: ep.data_dir.clone(),
            reference: Link::open(ctx, &ep.reference, REFERENCE_TIMEOUT, &ep.credentials)?,
            rank: None,
            election: None,
            peers: BTreeMap::new(),
            clock: PhysicalClock::with_skew(skew_secs),
            schedule: Schedule::new(now, Timing::default()),
            round: None,
            rounds: 0,
            inbound: Vec::new(),
            dropped: 0,
            drop_log: palaver_core::LogGate::every_second(),
            started: now,
            reannounce: None,
        };
        coordination.do_duties(now, &mut Lamport::default());
        Ok(coordination)
    }

    /// The address peers reach this server at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The corrected physical clock, seconds since the Unix epoch.
    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    pub fn coordinator(&self) -> Option<&Member> {
        self.election.as_ref().and_then(Election::coordinator)
    }

    /// The sockets to poll, in the order [`Coordination::on_ready`] expects their flags.
    pub fn sockets(&self) -> Vec<&zmq::Socket> {
        let mut v = vec![
            &self.router,
            &self.sub,
            self.reference.socket(),
            &self.digests,
        ];
        v.extend(self.peers.values().map(|p| p.link.socket()));
        v
    }

    /// The earliest moment something is due.
    pub fn deadline(&self) -> Instant {
        let mut at = self.schedule.poll_timeout();
        let more = [
            self.election.as_ref().and_then(Election::poll_timeout),
            self.reference.deadline(),
            self.round.as_ref().map(|(_, r)| r.deadline()),
        ];
        for t in more
            .into_iter()
            .flatten()
            .chain(self.peers.values().filter_map(|p| p.link.deadline()))
        {
            at = at.min(t);
        }
        at
    }

    pub(crate) fn is_coordinator(&self) -> bool {
        self.election.as_ref().is_some_and(Election::is_coordinator)
    }

    /// Handles whatever the sockets flagged readable.
    pub fn on_ready(
        &mut self,
        readable: &[bool],
        now: Instant,
        lamport: &mut Lamport,
        publisher: &zmq::Socket,
        data: Data<'_>,
    ) {
        if readable.first() == Some(&true) {
            self.serve_peers(now, lamport, publisher, data);
        }
        if readable.get(1) == Some(&true) {
            self.read_announcements(now, lamport, publisher);
        }
        if readable.get(2) == Some(&true) {
            let mut out = Vec::new();
            self.reference.read(now, &mut out);
            for o in out {
                self.reference_outcome(o, now, lamport, publisher);
            }
        }
        if readable.get(3) == Some(&true) {
            self.answer_digests(lamport);
        }
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for (i, name) in names.iter().enumerate() {
            if readable.get(4 + i) == Some(&true) {
                self.read_peer(name, now, lamport, publisher);
            }
        }
    }

    /// Carries out what is due at `now`: heartbeats, lists, timeouts, election and clock rounds.
    pub fn on_tick(&mut self, now: Instant, lamport: &mut Lamport, publisher: &zmq::Socket) {
        let mut out = Vec::new();
        self.reference.expire(now, &mut out);
        for o in out {
            self.reference_outcome(o, now, lamport, publisher);
        }
        for peer in self.peers.values_mut() {
            let mut out = Vec::new();
            peer.link.expire(now, &mut out);
            if !out.is_empty() {
                tracing::debug!(peer = %peer.member, lost = out.len(), "peer requests timed out");
            }
            for o in out {
                if let Outcome::Timeout(Sent {
                    kind: PeerAsk::Fetch { origin },
                    ..
                }) = o
                {
                    self.inbound.push(Inbound::FetchFailed { origin });
                }
            }
        }
        if let Some(e) = self.election.as_mut() {
            if e.poll_timeout().is_some_and(|t| now >= t) {
                e.handle_timeout(now);
            }
        }
        self.carry_out(now, lamport, publisher);
        if now >= self.started + PUB_WARMUP {
            // Still the coordinator this server announced at start-up: say it again, now heard.
            if let Some(c) = self.reannounce.take() {
                if self.coordinator().is_some_and(|now_c| now_c.name == c.name) {
                    self.announce(&c, lamport, publisher);
                }
            }
        }
        self.finish_round(now, lamport);
        self.schedule.set_coordinator(self.is_coordinator());
        self.schedule.handle_timeout(now);
        self.do_duties(now, lamport);
    }

    /// Counts client requests: every ten, the clocks are synchronised (see
    /// [`palaver_core::schedule`]).
    pub fn client_requests(&mut self, n: usize, now: Instant, lamport: &mut Lamport) {
        self.schedule
            .on_client_requests(now, u64::try_from(n).unwrap_or(u64::MAX));
        self.do_duties(now, lamport);
    }

    /// Carries out the periodic duties that are due.
    fn do_duties(&mut self, now: Instant, lamport: &mut Lamport) {
        while let Some(duty) = self.schedule.poll_duty() {
            match duty {
                Duty::AskRank => self.ask_rank(now, lamport),
                Duty::Heartbeat => {
                    let env = Envelope::new("heartbeat")
                        .with("user", self.name.as_str())
                        .with("addr", self.addr.as_str());
                    self.ask_reference(RefAsk::Heartbeat, env, now, lamport);
                }
                Duty::ListPeers => {
                    self.ask_reference(RefAsk::List, Envelope::new("list"), now, lamport)
                }
                Duty::StartRound => self.start_round(now, lamport),
                Duty::AskSync => {
                    if let Some(c) = self.coordinator().cloned() {
                        self.ask_peer(&c.name, PeerAsk::Sync, &PeerRequest::Sync, now, lamport);
                    }
                }
            }
        }
    }

    // ---- the reference ----

    fn ask_rank(&mut self, now: Instant, lamport: &mut Lamport) {
        if self.reference.in_flight(|k| matches!(k, RefAsk::Rank)) == 0 {
            let env = Envelope::new("rank")
                .with("user", self.name.as_str())
                .with("addr", self.addr.as_str());
            self.ask_reference(RefAsk::Rank, env, now, lamport);
        }
    }

    fn ask_reference(
        &mut self,
        kind: RefAsk,
        mut env: Envelope,
        now: Instant,
        lamport: &mut Lamport,
    ) {
        env.stamp(self.clock.now(), lamport.tick());
        if !self.reference.send(kind, &env, now, self.clock.now()) {
            tracing::debug!(service = %env.service, "reference request not sent");
        }
    }

    fn reference_outcome(
        &mut self,
        o: Outcome<RefAsk>,
        now: Instant,
        lamport: &mut Lamport,
        publisher: &zmq::Socket,
    ) {
        let (kind, env) = match o {
            Outcome::Timeout(sent) => {
                if matches!(sent.kind, RefAsk::Rank) {
                    tracing::warn!(reference = %self.reference.endpoint(), "no answer from the reference; retrying");
                }
                return;
            }
            Outcome::Reply(sent, Ok(env)) => (sent.kind, env),
            Outcome::Reply(_, Err(e)) => {
                tracing::warn!(error = %e, "bad reply from the reference");
                return;
            }
        };
        if let Some(c) = env.clock() {
            lamport.observe(c);
        }
        if Reply::status(&env) == Status::Error {
            tracing::warn!(service = %env.service, error = ?Reply::error_text(&env), "the reference refused");
            if matches!(kind, RefAsk::Heartbeat) {
                // It forgot us (say, it lost its disk): ask again.
                self.rank = None;
                self.schedule.set_ranked(now, false);
            }
            return;
        }
        match kind {
            RefAsk::Rank => match env.data.opt_counter("rank").ok().flatten() {
                Some(rank) => {
                    if self.rank != Some(rank) {
                        tracing::info!(server = %self.name, rank, addr = %self.addr, "ranked");
                    }
                    self.rank = Some(rank);
                    self.schedule.set_ranked(now, true);
                }
                None => tracing::warn!("the reference's rank reply has no rank"),
            },
            RefAsk::Heartbeat => {}
            RefAsk::List => match ServerEntry::parse_list(&env) {
                Ok(list) => {
                    let list = list
                        .into_iter()
                        .map(|e| (Member::new(e.name.as_str(), e.rank), e.addr))
                        .collect();
                    self.set_peers(list, now, lamport, publisher);
                }
                Err(e) => tracing::warn!(error = %e, "bad list from the reference"),
            },
        }
    }

    fn set_peers(
        &mut self,
        list: Vec<(Member, Option<String>)>,
        now: Instant,
        lamport: &mut Lamport,
        publisher: &zmq::Socket,
    ) {
        let Some(rank) = self.rank else { return };
        let me = Member::new(self.name.as_str(), rank);
        let held = self
            .peers
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    (p.member.clone(), p.link.endpoint().to_owned()),
                )
            })
            .collect();
        let changes = membership::plan(me.name.as_str(), &held, &list);
        for name in &changes.close {
            if let Some(p) = self.peers.remove(name) {
                tracing::info!(peer = %p.member, "peer left");
            }
        }
        for (member, addr) in changes.open {
            match Link::open(&self.ctx, &addr, PEER_TIMEOUT, &self.credentials) {
                Ok(link) => {
                    tracing::info!(peer = %member, addr, "peer joined");
                    let acks = ack_socket(&self.ctx, &addr, &self.credentials);
                    self.peers
                        .insert(member.name.clone(), Peer { member, link, acks });
                }
                Err(e) => tracing::warn!(peer = %member, addr, error = %e, "bad peer address"),
            }
        }
        let live: Vec<Member> = self
            .peers
            .values()
            .map(|p| p.member.clone())
            .chain([me.clone()])
            .collect();
        let election = self.election.get_or_insert_with(|| {
            tracing::info!(server = %me, "joining the election");
            Election::new(me, Timeouts::default())
        });
        election.set_peers(now, live);
        self.inbound
            .push(Inbound::Peers(self.peers.keys().cloned().collect()));
        self.carry_out(now, lamport, publisher);
    }

    // ---- other servers ----

    fn ask_peer(
        &mut self,
        name: &str,
        kind: PeerAsk,
        req: &PeerRequest,
        now: Instant,
        lamport: &mut Lamport,
    ) -> bool {
        let Some(peer) = self.peers.get_mut(name) else {
            return false;
        };
        let mut env = req.to_envelope();
        env.stamp(self.clock.now(), lamport.tick());
        peer.link.send(kind, &env, now, self.clock.now())
    }

    /// Who this server is, for the peers' benefit.
    fn introduction(&self) -> Option<Introduction> {
        Some(Introduction {
            name: self.name.clone(),
            rank: self.rank,
            addr: Some(self.addr.clone()),
        })
    }

    /// Carries out the election's pending actions.
    fn carry_out(&mut self, now: Instant, lamport: &mut Lamport, publisher: &zmq::Socket) {
        while let Some(action) = self.election.as_mut().and_then(Election::poll_action) {
            match action {
                Action::Elect { to } => {
                    let req = PeerRequest::Election {
                        from: self.introduction(),
                    };
                    self.ask_peer(&to.name, PeerAsk::Elect, &req, now, lamport);
                }
                Action::Ping { to } => {
                    let req = PeerRequest::Clock {
                        from: self.introduction(),
                        set: None,
                    };
                    self.ask_peer(&to.name, PeerAsk::Ping, &req, now, lamport);
                }
                Action::Announce { coordinator, to } => {
                    tracing::info!(coordinator = %coordinator, "elected coordinator");
                    self.announce(&coordinator, lamport, publisher);
                    if now < self.started + PUB_WARMUP {
                        self.reannounce = Some(coordinator.clone());
                    }
                    self.tell_coordinator(&coordinator, &to, now, lamport);
                }
                Action::Remind { coordinator, to } => {
                    self.tell_coordinator(&coordinator, &to, now, lamport)
                }
            }
        }
    }

    /// Publishes `coordinator`'s election on the `servers` topic.
    fn announce(&mut self, coordinator: &Member, lamport: &mut Lamport, publisher: &zmq::Socket) {
        let mut env = Envelope::new("election")
            .with("coordinator", coordinator.name.as_str())
            .with("rank", coordinator.rank);
        env.stamp(self.clock.now(), lamport.tick());
        if let Err(e) = publisher.send_multipart(
            [TOPIC_SERVERS.as_bytes(), &env.to_bytes()[..]],
            zmq::DONTWAIT,
        ) {
            tracing::warn!(error = %e, "announcement not published");
        }
    }

    fn tell_coordinator(
        &mut self,
        coordinator: &Member,
        to: &[Member],
        now: Instant,
        lamport: &mut Lamport,
    ) {
        let Ok(name) = Name::parse(&coordinator.name) else {
            return;
        };
        let req = PeerRequest::Coordinator {
            coordinator: name,
            rank: Some(coordinator.rank),
        };
        for peer in to {
            self.ask_peer(&peer.name, PeerAsk::Coordinator, &req, now, lamport);
        }
    }

    fn read_peer(
        &mut self,
        name: &str,
        now: Instant,
        lamport: &mut Lamport,
        publisher: &zmq::Socket,
    ) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        let member = peer.member.clone();
        let mut out = Vec::new();
        peer.link.read(now, &mut out);
        for o in out {
            let (sent, env) = match o {
                Outcome::Reply(sent, Ok(env)) => (sent, env),
                Outcome::Reply(sent, Err(e)) => {
                    // Unreadable: logged and counted; a fetch is asked again.
                    self.dropped += 1;
                    if let Some(quiet) = self.drop_log.admit(now) {
                        tracing::warn!(peer = %member, error = %e, dropped = self.dropped, unlogged = quiet, "unreadable reply from a peer");
                    }
                    if let PeerAsk::Fetch { origin } = sent.kind {
                        self.inbound.push(Inbound::FetchFailed { origin });
                    }
                    continue;
                }
                Outcome::Timeout(_) => continue,
            };
            if let Some(c) = env.clock() {
                lamport.observe(c);
            }
            let reply = match PeerReply::parse(env) {
                Ok(PeerReply::Refused { service, reason }) => {
                    tracing::debug!(peer = %member, service, reason, "a peer refused");
                    if let PeerAsk::Fetch { origin } = sent.kind {
                        self.inbound.push(Inbound::FetchFailed { origin });
                    }
                    continue;
                }
                Ok(reply) => reply,
                Err(e) => {
                    self.dropped += 1;
                    if let Some(quiet) = self.drop_log.admit(now) {
                        tracing::warn!(peer = %member, error = %e, dropped = self.dropped, unlogged = quiet, "bad answer from a peer");
                    }
                    if let PeerAsk::Fetch { origin } = sent.kind {
                        self.inbound.push(Inbound::FetchFailed { origin });
                    }
                    continue;
                }
            };
            match (sent.kind, reply) {
                (PeerAsk::Elect, PeerReply::Election) => {
                    if let Some(e) = self.election.as_mut() {
                        e.on_answer(now, &member);
                    }
                }
                (PeerAsk::Ping, PeerReply::Clock { coordinator, .. }) => {
                    let theirs = match coordinator {
                        // A peer of another implementation says nothing: take its word for
                        // leading.
                        Claim::Unsaid => Some(member.clone()),
                        Claim::Nobody => None,
                        Claim::Named(name, rank) => self.member_named(Some(name.as_str()), rank),
                    };
                    if let Some(e) = self.election.as_mut() {
                        e.on_pong(now, &member, theirs.as_ref());
                    }
                }
                (PeerAsk::Clock { round }, PeerReply::Clock { time, .. }) => {
                    if let Some((id, r)) = self.round.as_mut() {
                        if *id == round {
                            r.on_sample(Sample {
                                member: member.clone(),
                                sent: sent.clock,
                                received: self.clock.now(),
                                remote: time,
                            });
                        }
                    }
                }
                (PeerAsk::Vector, PeerReply::Vector { vector }) => {
                    self.inbound.push(Inbound::Vector {
                        peer: name.to_owned(),
                        vector: vector.into_iter().collect(),
                    });
                }
                (PeerAsk::Fetch { origin }, PeerReply::Fetched { events, more, .. }) => {
                    self.inbound.push(Inbound::Fetched {
                        peer: name.to_owned(),
                        origin,
                        events,
                        more,
                    });
                }
                (PeerAsk::Coordinator | PeerAsk::Adjust | PeerAsk::Sync, _) => {}
                (kind, reply) => {
                    self.dropped += 1;
                    if let Some(quiet) = self.drop_log.admit(now) {
                        tracing::warn!(peer = %member, asked = ?kind, answer = ?reply, unlogged = quiet,
                            "an answer of another kind than the request");
                    }
                    if let PeerAsk::Fetch { origin } = kind {
                        self.inbound.push(Inbound::FetchFailed { origin });
                    }
                }
            }
        }
        self.carry_out(now, lamport, publisher);
        self.finish_round(now, lamport);
    }

    /// The member called `name`: ourselves, a known peer, or (with a rank) someone new.
    fn member_named(&self, name: Option<&str>, rank: Option<u64>) -> Option<Member> {
        let name = name?;
        if name == self.name.as_str() {
            return self.rank.map(|r| Member::new(name, r));
        }
        if let Some(rank) = rank {
            return Some(Member::new(name, rank));
        }
        self.peers.get(name).map(|p| p.member.clone())
    }

    /// Coordinator announcements published on `servers`.
    fn read_announcements(&mut self, now: Instant, lamport: &mut Lamport, publisher: &zmq::Socket) {
        while let Ok(frames) = self.sub.recv_multipart(zmq::DONTWAIT) {
            let p = match palaver_proto::Publication::from_frames(&frames) {
                Ok(p) => p,
                Err(e) => {
                    self.dropped += 1;
                    if let Some(quiet) = self.drop_log.admit(Instant::now()) {
                        tracing::warn!(error = %e, dropped = self.dropped, unlogged = quiet, "unreadable announcement");
                    }
                    continue;
                }
            };
            if p.topic != TOPIC_SERVERS || p.envelope.service != "election" {
                continue;
            }
            if let Some(c) = p.envelope.clock() {
                lamport.observe(c);
            }
            let who = self.member_named(
                p.envelope.data.opt_str("coordinator").ok().flatten(),
                p.envelope.data.opt_counter("rank").ok().flatten(),
            );
            if let (Some(who), Some(e)) = (who, self.election.as_mut()) {
                e.on_coordinator(now, &who);
            }
        }
        self.carry_out(now, lamport, publisher);
    }

    // ---- Berkeley ----

    /// Starts a Berkeley round, unless one is still running (when: [`Schedule`]).
    fn start_round(&mut self, now: Instant, lamport: &mut Lamport) {
        if self.round.is_some() {
            return;
        }
        self.rounds += 1;
        let id = self.rounds;
        let members: Vec<Member> = self.peers.values().map(|p| p.member.clone()).collect();
        let mut asked = Vec::new();
        for m in members {
            let req = PeerRequest::Clock {
                from: self.introduction(),
                set: None,
            };
            if self.ask_peer(&m.name, PeerAsk::Clock { round: id }, &req, now, lamport) {
                asked.push(m);
            }
        }
        self.round = Some((id, Round::new(now, asked, ROUND_TIMEOUT)));
        self.finish_round(now, lamport);
    }

    fn finish_round(&mut self, now: Instant, lamport: &mut Lamport) {
        if !self.round.as_ref().is_some_and(|(_, r)| r.is_done(now)) {
            return;
        }
        let Some((id, round)) = self.round.take() else {
            return;
        };
        let c = round.finish(&Settings::default());
        self.clock.adjust(c.own);
        tracing::debug!(round = id, own = c.own, members = c.members.len(), outliers = ?c.outliers, "clocks synchronised");
        for (member, delta) in c.members {
            self.ask_peer(
                &member.name,
                PeerAsk::Adjust,
                &PeerRequest::Adjust { delta },
                now,
                lamport,
            );
        }
    }
}

/// What the peer endpoint needs from the rest of the server to answer.
#[derive(Clone, Copy)]
pub struct Data<'a> {
    pub facts: Facts,
    pub store: &'a Store,
    pub vector: &'a VersionVector,
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn a_wildcard_bind_is_advertised_by_host_name() {
        assert_eq!(
            advertised("tcp://0.0.0.0:5570", Some("3f2a9c1b7d0e")),
            "tcp://3f2a9c1b7d0e:5570"
        );
        assert_eq!(
            advertised("tcp://0.0.0.0:5570", None),
            "tcp://127.0.0.1:5570"
        );
        assert_eq!(
            advertised("tcp://10.0.0.2:5570", Some("h2")),
            "tcp://10.0.0.2:5570"
        );
    }
}
