//! Coordination, as the engine decides it: the server's rank and heartbeats with the reference,
//! who its peers are, the bully election and Berkeley rounds. The algorithms are
//! `palaver_core`'s (`Election`, `berkeley::Round`, `Schedule`, `membership`); this is the glue
//! that feeds them what arrived and turns what they ask for into messages, with no socket or
//! clock of its own. The driver carries the messages ([`Output::Ask`]) and brings back their
//! answers, or why none came ([`Input::Answer`](super::Input::Answer)).
//!
//! ```text
//!  reference answers (rank, list) ──┐                     ┌─▶ Ask::Reference (rank, heartbeat, list)
//!  peers' answers (election, clock) ├─▶ Coordination ─────┼─▶ Ask::Peer (election, ping, clock, adjust…)
//!  announcements on `servers`       │   (now, lamport)    ├─▶ Publish on `servers` (a new coordinator)
//!  peers' requests (election, clock,┘                     └─▶ Connect / Disconnect (the peers' links)
//!   coordinator, adjust, sync)
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use palaver_core::berkeley::{Round, Sample, Settings};
use palaver_core::election::{Action, Election, Timeouts};
use palaver_core::membership;
use palaver_core::schedule::{Duty, Schedule, Timing};
use palaver_core::{Lamport, Member};
use palaver_proto::peer::{Claim, Introduction, PeerReply, PeerRequest, MAX_ADJUST};
use palaver_proto::{Envelope, Name, Reply, ServerEntry, Status, TOPIC_SERVERS};

use super::{Ask, Failure, Output, PeerAsk, RefAsk};
use crate::clock::PhysicalClock;

/// How long a new publisher socket may take to learn the proxy's subscriptions: until then,
/// ZeroMQ drops what it publishes. An announcement made this soon after start-up is made again
/// once this has passed (a restarted server that wins at once would otherwise go unheard).
const PUB_WARMUP: Duration = Duration::from_secs(1);
/// How long a round waits for the members' clocks.
const ROUND_TIMEOUT: Duration = Duration::from_millis(500);

/// Where coordination's messages go: the engine's Lamport clock (every message is stamped
/// with a tick of it), its outputs, and the time.
pub(super) struct Sink<'a> {
    pub at: Instant,
    /// The machine's clock (seconds since the Unix epoch), before skew and correction.
    pub machine: f64,
    pub lamport: &'a mut Lamport,
    pub out: &'a mut VecDeque<Output>,
}

/// A peer's answer that coordination reads, matched to what it asked.
pub(super) enum Answered {
    /// `OK` to our election message: a higher rank stands.
    Election,
    /// The answer to a ping: whom the peer takes for coordinator.
    Pong(Claim),
    /// A member's clock for round `round`, which this server asked at `sent`.
    Clock { round: u64, sent: f64, time: f64 },
}

/// A refusal of a peer's request: the service and why.
pub(super) type Refusal = (&'static str, &'static str);

pub(super) struct Coordination {
    name: Name,
    /// The peer endpoint the others reach this server at.
    addr: String,
    rank: Option<u64>,
    /// Whether a `rank` request is in flight (one at a time).
    asking_rank: bool,
    election: Option<Election>,
    /// The live peers, with their peer endpoints: those the driver holds links to.
    peers: BTreeMap<String, (Member, String)>,
    clock: PhysicalClock,
    /// When heartbeats, peer lists and clock rounds are due.
    schedule: Schedule,
    round: Option<(u64, Round)>,
    rounds: u64,
    /// When the server started, and an announcement to make again once its publisher is warm.
    started: Instant,
    reannounce: Option<Member>,
    /// The peers changed since the engine last looked.
    peers_changed: bool,
    /// Whether the reference has listed the live servers yet. Until then, a peer that
    /// introduced itself is connected to but not handed on: the first list decides whom
    /// replication catches up with at start-up (handed a lone early peer first, a server
    /// caught up with it alone and served without what the others held; the simulation found
    /// it, seed 3798).
    listed: bool,
    /// Live peers whose last request went unanswered: contact lost (logged once, and again
    /// when they answer).
    silent: BTreeSet<String>,
    /// Every server the reference ranked, live or not: those that vote on claims. Changed
    /// since the engine last looked?
    voters: BTreeSet<String>,
    voters_changed: bool,
}

impl Coordination {
    pub(super) fn new(name: &Name, addr: &str, skew: f64, at: Instant) -> Coordination {
        Coordination {
            name: name.clone(),
            addr: addr.to_owned(),
            rank: None,
            asking_rank: false,
            election: None,
            peers: BTreeMap::new(),
            clock: PhysicalClock::with_skew(skew),
            schedule: Schedule::new(at, Timing::default()),
            round: None,
            rounds: 0,
            started: at,
            reannounce: None,
            peers_changed: false,
            listed: false,
            silent: BTreeSet::new(),
            voters: BTreeSet::new(),
            voters_changed: false,
        }
    }

    /// The servers that vote on claims, when they changed since the last call.
    pub(super) fn take_voters_changed(&mut self) -> Option<Vec<String>> {
        std::mem::take(&mut self.voters_changed).then(|| self.voters.iter().cloned().collect())
    }

    /// Live peers whose last request went unanswered.
    pub(super) fn out_of_reach(&self) -> impl Iterator<Item = &str> {
        self.silent.iter().map(String::as_str)
    }

    /// A request to `peer` was answered (`true`) or went unanswered: a live peer this server
    /// cannot reach (a partition, a cut link) is logged once when contact is lost, and once
    /// when it is back.
    pub(super) fn contact(&mut self, peer: &str, answered: bool) {
        self.silent.retain(|p| self.peers.contains_key(p));
        if answered {
            if self.silent.remove(peer) {
                tracing::info!(server = %self.name, peer, "in contact with the peer again");
            }
        } else if self.peers.contains_key(peer) && self.silent.insert(peer.to_owned()) {
            tracing::warn!(server = %self.name, peer, "lost contact with a live peer: its requests go unanswered");
        }
    }

    /// The corrected physical clock when the machine's reads `machine`.
    pub(super) fn wall(&self, machine: f64) -> f64 {
        self.clock.at(machine)
    }

    pub(super) fn clock(&self) -> &PhysicalClock {
        &self.clock
    }

    pub(super) fn rank(&self) -> Option<u64> {
        self.rank
    }

    pub(super) fn addr(&self) -> &str {
        &self.addr
    }

    pub(super) fn coordinator(&self) -> Option<&Member> {
        self.election.as_ref().and_then(Election::coordinator)
    }

    pub(super) fn electing(&self) -> bool {
        self.election.as_ref().is_some_and(Election::electing)
    }

    pub(super) fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The live peers' names.
    pub(super) fn peer_names(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    /// The live peers' names, if they changed since the last call (and the reference has
    /// listed them once).
    pub(super) fn take_peers_changed(&mut self) -> Option<Vec<String>> {
        if !self.listed {
            return None;
        }
        std::mem::take(&mut self.peers_changed).then(|| self.peer_names())
    }

    /// When [`Coordination::handle_timeout`] is due next.
    pub(super) fn poll_timeout(&self) -> Instant {
        let mut at = self.schedule.poll_timeout();
        let more = [
            self.election.as_ref().and_then(Election::poll_timeout),
            self.round.as_ref().map(|(_, r)| r.deadline()),
            self.reannounce.as_ref().map(|_| self.started + PUB_WARMUP),
        ];
        for t in more.into_iter().flatten() {
            at = at.min(t);
        }
        at
    }

    /// Carries out what is due: the election's timeouts, a round's end, an announcement
    /// to repeat, heartbeats, lists and rounds.
    pub(super) fn handle_timeout(&mut self, s: &mut Sink<'_>) {
        if let Some(e) = self.election.as_mut() {
            if e.poll_timeout().is_some_and(|t| s.at >= t) {
                e.handle_timeout(s.at);
            }
        }
        self.carry_out(s);
        if s.at >= self.started + PUB_WARMUP {
            // Still the coordinator this server announced at start-up: say it again, now heard.
            if let Some(c) = self.reannounce.take() {
                if self.coordinator().is_some_and(|now_c| now_c.name == c.name) {
                    self.announce(&c, s);
                }
            }
        }
        self.finish_round(s);
        self.schedule
            .set_coordinator(self.election.as_ref().is_some_and(Election::is_coordinator));
        self.schedule.handle_timeout(s.at);
        self.do_duties(s);
    }

    /// Counts client requests: every ten, the clocks are synchronised (see
    /// [`palaver_core::schedule`]).
    pub(super) fn on_client_requests(&mut self, n: usize, s: &mut Sink<'_>) {
        self.schedule
            .on_client_requests(s.at, u64::try_from(n).unwrap_or(u64::MAX));
        self.do_duties(s);
    }

    fn do_duties(&mut self, s: &mut Sink<'_>) {
        while let Some(duty) = self.schedule.poll_duty() {
            match duty {
                Duty::AskRank => {
                    if !std::mem::replace(&mut self.asking_rank, true) {
                        let env = Envelope::new("rank")
                            .with("user", self.name.as_str())
                            .with("addr", self.addr.as_str());
                        self.ask_reference(RefAsk::Rank, env, s);
                    }
                }
                Duty::Heartbeat => {
                    let env = Envelope::new("heartbeat")
                        .with("user", self.name.as_str())
                        .with("addr", self.addr.as_str());
                    self.ask_reference(RefAsk::Heartbeat, env, s);
                }
                // Every server the reference ranked, live or not (`all`): the live ones are the
                // peers; all of them vote on claims. A reference that ignores `all` lists the
                // live ones only, and they are the voters then.
                Duty::ListPeers => {
                    let ask = Envelope::new("list").with("all", true);
                    self.ask_reference(RefAsk::List, ask, s);
                }
                Duty::StartRound => self.start_round(s),
                Duty::AskSync => {
                    if let Some(c) = self.coordinator().cloned() {
                        self.ask_peer(&c.name, PeerAsk::Sync, &PeerRequest::Sync, s);
                    }
                }
            }
        }
    }

    // ---- the reference ----

    fn ask_reference(&mut self, ask: RefAsk, mut envelope: Envelope, s: &mut Sink<'_>) {
        envelope.stamp(self.wall(s.machine), s.lamport.tick());
        s.out.push_back(Output::Ask {
            ask: Ask::Reference(ask),
            envelope,
        });
    }

    /// The reference answered `ask`, or did not.
    pub(super) fn on_reference(
        &mut self,
        ask: RefAsk,
        answer: Result<Envelope, Failure>,
        s: &mut Sink<'_>,
    ) {
        if ask == RefAsk::Rank {
            self.asking_rank = false;
        }
        let env = match answer {
            Ok(env) => env,
            Err(Failure::Unreadable(e)) => {
                tracing::warn!(error = %e, "bad reply from the reference");
                return;
            }
            Err(_) => {
                if ask == RefAsk::Rank {
                    tracing::warn!("no answer from the reference; retrying");
                }
                return;
            }
        };
        if let Some(c) = env.clock() {
            s.lamport.observe(c);
        }
        if Reply::status(&env) == Status::Error {
            tracing::warn!(service = %env.service, error = ?Reply::error_text(&env), "the reference refused");
            if ask == RefAsk::Heartbeat {
                // It forgot us (say, it lost its disk): ask again.
                self.rank = None;
                self.schedule.set_ranked(s.at, false);
            }
            return;
        }
        match ask {
            RefAsk::Rank => match env.data.opt_counter("rank").ok().flatten() {
                Some(rank) => {
                    if self.rank != Some(rank) {
                        tracing::info!(server = %self.name, rank, addr = %self.addr, "ranked");
                    }
                    self.rank = Some(rank);
                    self.schedule.set_ranked(s.at, true);
                }
                None => tracing::warn!("the reference's rank reply has no rank"),
            },
            RefAsk::Heartbeat => {}
            RefAsk::List => match ServerEntry::parse_list(&env) {
                Ok(list) => {
                    let voters: BTreeSet<String> =
                        list.iter().map(|e| e.name.to_string()).collect();
                    if voters != self.voters {
                        tracing::info!(voters = ?voters, "the servers that vote on claims");
                        self.voters = voters;
                        self.voters_changed = true;
                    }
                    let list = list
                        .into_iter()
                        .filter(|e| e.alive != Some(false))
                        .map(|e| (Member::new(e.name.as_str(), e.rank), e.addr))
                        .collect();
                    self.set_peers(list, s);
                }
                Err(e) => tracing::warn!(error = %e, "bad list from the reference"),
            },
        }
        self.do_duties(s);
    }

    /// The reference's list of live servers: links to open and close, and the election's
    /// members.
    fn set_peers(&mut self, list: Vec<(Member, Option<String>)>, s: &mut Sink<'_>) {
        let Some(rank) = self.rank else { return };
        let me = Member::new(self.name.as_str(), rank);
        let changes = membership::plan(me.name.as_str(), &self.peers, &list);
        for name in changes.close {
            if let Some((member, _)) = self.peers.remove(&name) {
                tracing::info!(peer = %member, "peer left");
                s.out.push_back(Output::Disconnect { peer: name });
                self.peers_changed = true;
            }
        }
        for (member, addr) in changes.open {
            tracing::info!(peer = %member, addr, "peer joined");
            self.connect(member, addr, s);
        }
        let live: Vec<Member> = self
            .peers
            .values()
            .map(|(m, _)| m.clone())
            .chain([me.clone()])
            .collect();
        let election = self.election.get_or_insert_with(|| {
            tracing::info!(server = %me, "joining the election");
            Election::new(me, Timeouts::default())
        });
        election.set_peers(s.at, live);
        // Replication hears of the peers each time the list comes, changed or not.
        self.peers_changed = true;
        self.listed = true;
        self.carry_out(s);
    }

    fn connect(&mut self, member: Member, addr: String, s: &mut Sink<'_>) {
        s.out.push_back(Output::Connect {
            peer: member.name.clone(),
            addr: addr.clone(),
        });
        self.peers.insert(member.name.clone(), (member, addr));
        self.peers_changed = true;
    }

    /// A peer that introduced itself (in a `vector` request) before the reference listed it.
    pub(super) fn meet(&mut self, who: &Introduction, s: &mut Sink<'_>) {
        let (name, Some(rank), Some(addr)) = (who.name.as_str(), who.rank, who.addr.as_deref())
        else {
            return;
        };
        if name == self.name.as_str() || self.peers.contains_key(name) {
            return;
        }
        let member = Member::new(name, rank);
        tracing::info!(peer = %member, addr, "peer introduced itself");
        self.connect(member, addr.to_owned(), s);
        // It votes on claims once the reference lists it: asked now, not at the next list a
        // second away (a cluster just started could not decide names meanwhile: a server
        // forwarding to a leader that did not count it yet went unanswered).
        let ask = Envelope::new("list").with("all", true);
        self.ask_reference(RefAsk::List, ask, s);
    }

    // ---- other servers ----

    /// Asks `peer`, if it is one; whether it is.
    pub(super) fn ask_peer(
        &mut self,
        peer: &str,
        ask: PeerAsk,
        req: &PeerRequest,
        s: &mut Sink<'_>,
    ) -> bool {
        if !self.peers.contains_key(peer) {
            return false;
        }
        let mut envelope = req.to_envelope();
        envelope.stamp(self.wall(s.machine), s.lamport.tick());
        s.out.push_back(Output::Ask {
            ask: Ask::Peer {
                peer: peer.to_owned(),
                ask,
            },
            envelope,
        });
        true
    }

    /// Who this server is, for the peers' benefit.
    pub(super) fn introduction(&self) -> Introduction {
        Introduction {
            name: self.name.clone(),
            rank: self.rank,
            addr: Some(self.addr.clone()),
        }
    }

    /// Carries out the election's pending actions.
    fn carry_out(&mut self, s: &mut Sink<'_>) {
        while let Some(action) = self.election.as_mut().and_then(Election::poll_action) {
            match action {
                Action::Elect { to } => {
                    let req = PeerRequest::Election {
                        from: Some(self.introduction()),
                    };
                    self.ask_peer(&to.name, PeerAsk::Elect, &req, s);
                }
                Action::Ping { to } => {
                    let req = PeerRequest::Clock {
                        from: Some(self.introduction()),
                        set: None,
                    };
                    self.ask_peer(&to.name, PeerAsk::Ping, &req, s);
                }
                Action::Announce { coordinator, to } => {
                    tracing::info!(coordinator = %coordinator, "elected coordinator");
                    self.announce(&coordinator, s);
                    if s.at < self.started + PUB_WARMUP {
                        self.reannounce = Some(coordinator.clone());
                    }
                    self.tell_coordinator(&coordinator, &to, s);
                }
                Action::Remind { coordinator, to } => self.tell_coordinator(&coordinator, &to, s),
            }
        }
    }

    /// Publishes `coordinator`'s election on the `servers` topic.
    fn announce(&mut self, coordinator: &Member, s: &mut Sink<'_>) {
        let mut envelope = Envelope::new("election")
            .with("coordinator", coordinator.name.as_str())
            .with("rank", coordinator.rank);
        envelope.stamp(self.wall(s.machine), s.lamport.tick());
        s.out.push_back(Output::Publish {
            topic: TOPIC_SERVERS.to_owned(),
            envelope,
        });
    }

    fn tell_coordinator(&mut self, coordinator: &Member, to: &[Member], s: &mut Sink<'_>) {
        let Ok(name) = Name::parse(&coordinator.name) else {
            return;
        };
        let req = PeerRequest::Coordinator {
            coordinator: name,
            rank: Some(coordinator.rank),
        };
        for peer in to {
            self.ask_peer(&peer.name, PeerAsk::Coordinator, &req, s);
        }
    }

    /// A peer's answer to an election message, a ping or a round's `clock`.
    pub(super) fn on_answer(&mut self, peer: &str, answer: Answered, s: &mut Sink<'_>) {
        let Some(member) = self.peers.get(peer).map(|(m, _)| m.clone()) else {
            return;
        };
        match answer {
            Answered::Election => {
                if let Some(e) = self.election.as_mut() {
                    e.on_answer(s.at, &member);
                }
            }
            Answered::Pong(coordinator) => {
                let theirs = match coordinator {
                    // A peer of another implementation says nothing: take its word for
                    // leading.
                    Claim::Unsaid => Some(member.clone()),
                    Claim::Nobody => None,
                    Claim::Named(name, rank) => self.member_named(Some(name.as_str()), rank),
                };
                if let Some(e) = self.election.as_mut() {
                    e.on_pong(s.at, &member, theirs.as_ref());
                }
            }
            Answered::Clock { round, sent, time } => {
                let received = self.wall(s.machine);
                if let Some((id, r)) = self.round.as_mut() {
                    if *id == round {
                        r.on_sample(Sample {
                            member,
                            sent,
                            received,
                            remote: time,
                        });
                    }
                }
            }
        }
        self.carry_out(s);
        self.finish_round(s);
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
        self.peers.get(name).map(|(m, _)| m.clone())
    }

    /// A coordinator's announcement, published on `servers`.
    pub(super) fn on_announcement(&mut self, env: &Envelope, s: &mut Sink<'_>) {
        if let Some(c) = env.clock() {
            s.lamport.observe(c);
        }
        let who = self.member_named(
            env.data.opt_str("coordinator").ok().flatten(),
            env.data.opt_counter("rank").ok().flatten(),
        );
        if let (Some(who), Some(e)) = (who, self.election.as_mut()) {
            e.on_announcement(s.at, &who);
        }
        self.carry_out(s);
    }

    /// Answers a peer's coordination request: `clock`, `election`, `coordinator`, `adjust`
    /// and `sync` (other requests are the engine's).
    pub(super) fn serve(
        &mut self,
        req: PeerRequest,
        s: &mut Sink<'_>,
    ) -> Result<PeerReply, Refusal> {
        let reply = match req {
            PeerRequest::Clock { set, .. } => {
                if let Some(t) = set {
                    // Told what time it is (another implementation's coordinator): shift the
                    // clock by the difference, within the same bound as `adjust`.
                    let delta = t - self.wall(s.machine);
                    if delta.abs() > MAX_ADJUST {
                        return Err(("clock", "a clock can be set at most a year away"));
                    }
                    self.clock.adjust(delta);
                    tracing::info!(
                        delta,
                        offset = self.clock.offset(),
                        "clock set by a `clock` request"
                    );
                }
                PeerReply::Clock {
                    time: self.wall(s.machine),
                    coordinator: match self.coordinator() {
                        Some(c) => match Name::parse(&c.name) {
                            Ok(name) => Claim::Named(name, Some(c.rank)),
                            Err(_) => Claim::Nobody,
                        },
                        None => Claim::Nobody,
                    },
                }
            }
            PeerRequest::Election { from } => {
                let from = from.and_then(|i| Some(Member::new(i.name.as_str(), i.rank?)));
                let Some(e) = self.election.as_mut() else {
                    return Err(("election", "this server has no rank yet"));
                };
                if !e.on_election(s.at, from.as_ref()) {
                    return Err(("election", "this server's rank is lower than yours"));
                }
                PeerReply::Election
            }
            PeerRequest::Coordinator { coordinator, rank } => {
                let who = self.member_named(Some(coordinator.as_str()), rank);
                let (Some(who), Some(e)) = (who, self.election.as_mut()) else {
                    return Err(("coordinator", "unknown coordinator, or no rank yet"));
                };
                e.on_coordinator(s.at, &who);
                PeerReply::Done {
                    service: "coordinator".into(),
                }
            }
            PeerRequest::Adjust { delta } => {
                self.clock.adjust(delta);
                tracing::debug!(delta, offset = self.clock.offset(), "clock adjusted");
                PeerReply::Adjusted {
                    time: self.wall(s.machine),
                    offset: self.clock.offset(),
                }
            }
            PeerRequest::Sync => {
                self.schedule.on_sync_asked(s.at);
                self.do_duties(s);
                PeerReply::Done {
                    service: "sync".into(),
                }
            }
            other => {
                tracing::error!(request = ?other, "not a coordination request");
                return Err(("peer", "not a coordination request"));
            }
        };
        self.carry_out(s);
        Ok(reply)
    }

    // ---- Berkeley ----

    /// Starts a Berkeley round, unless one is still running (when: [`Schedule`]).
    fn start_round(&mut self, s: &mut Sink<'_>) {
        if self.round.is_some() {
            return;
        }
        self.rounds += 1;
        let id = self.rounds;
        let members: Vec<Member> = self.peers.values().map(|(m, _)| m.clone()).collect();
        let sent = self.wall(s.machine);
        for m in &members {
            let req = PeerRequest::Clock {
                from: Some(self.introduction()),
                set: None,
            };
            self.ask_peer(&m.name, PeerAsk::Clock { round: id, sent }, &req, s);
        }
        self.round = Some((id, Round::new(s.at, members, ROUND_TIMEOUT)));
        self.finish_round(s);
    }

    fn finish_round(&mut self, s: &mut Sink<'_>) {
        if !self.round.as_ref().is_some_and(|(_, r)| r.is_done(s.at)) {
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
                s,
            );
        }
    }
}
