//! Claims decided by a majority, as a state machine without I/O: one log of claims (a name
//! created, a password registered or changed, a channel and its owner, a name retired) whose
//! every slot is decided once for the whole cluster by Paxos (Multi-Paxos: one leader, many
//! slots), so no partition can take an acknowledged claim back or give one slot two values.
//!
//! ```text
//!  leader: Prepare(ballot, from slot) ──▶ every member (itself too): promise, or refuse (Nack)
//!          ◀── Promise(what each accepted from that slot on, what each knows decided)
//!          a majority promised: re-proposes what they accepted (the highest ballot's, per
//!          slot; a gap gets a no-op), then new claims in the next slots
//!  leader: Accept(ballot, slot, entry) ──▶ every member: record it unless it promised higher
//!          ◀── Accepted(ballot, slot)
//!          a majority accepted: decided: Decide (the driver stores it, then `learn`s it)
//!          ──Decided(slot, entry)──▶ everyone
//!  every member hands out the decided slots in order, each once (Apply)
//! ```
//!
//! Safety is Paxos's: a value accepted by a majority under ballot b is seen by every later
//! leader's majority of promises (two majorities meet), which re-proposes it, so a slot never
//! takes two values, whoever leads, whatever is lost, duplicated, delayed or crashed. Ballots
//! order leaders, not the bully election: both sides of a partition may elect a coordinator,
//! but only one side can hold a majority of promises.
//!
//! Any member may propose. One that does not lead hands the proposal to the member it last
//! promised to (`Forward`), which proposes it and answers (`Outcome`), so members do not duel
//! for the lead; the proposal is answered where it was made once applied there. A forward
//! that goes unanswered (the leader is cut off, or dead) is answered `Unknown`, and the next
//! proposal campaigns instead. A proposal's answer:
//! - `Decided { slot }`: a majority accepted it; it is the log's entry at `slot`;
//! - `NoMajority`: this member never gathered a majority of promises, so nothing of the
//!   proposal was sent for acceptance: it will never take effect (a member cut off from the
//!   majority answers this, within the phase's timeout);
//! - `Unknown`: it was sent for acceptance, but a majority did not accept in time (the leader
//!   was cut off, or another took over): a later leader may still decide it, or not. The
//!   driver says so, and a retry of the same request finds out.
//!
//! Records are the driver's to keep: it stores each [`Action::Record`] durably before it sends
//! anything that comes after it (a promise or an acceptance must survive a crash), and hands
//! them back through [`Node::restore`] after a restart, with the decided entries through
//! [`Node::restore_decided`]. Membership is every member that may vote (for Palaver, every
//! server the reference ranked, live or not): a majority of it, not of the live ones.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Orders leaders: the higher round wins, then the higher name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    pub round: u64,
    pub node: String,
}

/// A slot's value: a claim, or nothing (what a new leader puts in a slot that no one in its
/// majority accepted anything for, below one they did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<V> {
    Claim(V),
    Noop,
}

/// The messages between members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg<V> {
    /// A would-be leader asks for a promise, and for what was accepted from slot `from` on.
    Prepare {
        ballot: Ballot,
        from: u64,
    },
    /// The promise, with what this member accepted from the asked slot on (and under which
    /// ballot), and what it knows was decided there.
    Promise {
        ballot: Ballot,
        accepted: Vec<(u64, Ballot, Entry<V>)>,
        decided: Vec<(u64, Entry<V>)>,
    },
    /// The leader proposes `entry` for `slot`.
    Accept {
        ballot: Ballot,
        slot: u64,
        entry: Entry<V>,
    },
    Accepted {
        ballot: Ballot,
        slot: u64,
    },
    /// Refused: this member promised `promised`, higher than `ballot`.
    Nack {
        ballot: Ballot,
        promised: Ballot,
        /// The slots the refuser has applied: a stale leader learns that it is behind.
        applied: u64,
    },
    /// A member that does not lead hands a proposal (`id` is its own) to the one it takes
    /// for leader.
    Forward {
        id: u64,
        value: V,
    },
    /// The leader's answer to a forwarded proposal.
    Outcome {
        id: u64,
        outcome: Outcome,
    },
    /// `slot` is decided.
    Decided {
        slot: u64,
        entry: Entry<V>,
    },
    /// A member that found a gap in what it knows decided asks for the slots from `from` on.
    Catchup {
        from: u64,
    },
    /// The answer: decided slots, in order (at most [`MAX_CATCHUP`]).
    Log {
        entries: Vec<(u64, Entry<V>)>,
    },
}

/// The most decided slots one [`Msg::Log`] carries.
pub const MAX_CATCHUP: usize = 1_000;

/// What a member must store durably before it sends what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<V> {
    /// It promised to take nothing below `ballot`.
    Promised(Ballot),
    /// It accepted `entry` for `slot` under `ballot` (which implies the promise).
    Accepted {
        slot: u64,
        ballot: Ballot,
        entry: Entry<V>,
    },
}

/// What became of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Decided { slot: u64 },
    NoMajority,
    Unknown,
}

/// What the driver should do, in order: a send that follows a record leaves only once the
/// record is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<V> {
    Send {
        to: String,
        msg: Msg<V>,
    },
    Record(Record<V>),
    /// A majority accepted `entry` for `slot` (this member leads): store the decision
    /// durably and hand it back through [`Node::learn`], which applies it in its turn. (A
    /// driver whose log replicates the decision to everyone can drop the `Decided` messages
    /// that follow, and feed `learn` from its log alone.)
    Decide {
        slot: u64,
        entry: Entry<V>,
    },
    /// The next slot of the log is decided: apply it (each slot once, in order).
    Apply {
        slot: u64,
        entry: Entry<V>,
    },
    /// The answer to proposal `id`, once it is decided and applied here, or given up.
    Answer {
        id: u64,
        outcome: Outcome,
    },
}

/// Timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long a phase (promises, or one slot's acceptances) waits for a majority.
    pub phase: Duration,
    /// How often unanswered prepares and accepts are sent again.
    pub resend: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            phase: Duration::from_millis(1_500),
            resend: Duration::from_millis(250),
        }
    }
}

struct Campaign<V> {
    ballot: Ballot,
    from: u64,
    promises: BTreeMap<String, Vec<(u64, Ballot, Entry<V>)>>,
    /// Members that refused it (they promised a higher ballot).
    refusals: BTreeSet<String>,
    since: Instant,
    resend_at: Instant,
}

enum Role<V> {
    Follower,
    Campaigning(Campaign<V>),
    /// `refusals`: the members that refused this ballot since.
    Leading {
        ballot: Ballot,
        next_slot: u64,
        refusals: BTreeSet<String>,
    },
}

/// Whose a proposal is: this member's driver's (its id), or a member's that forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asker {
    Here(u64),
    Member(String, u64),
}

/// A slot the leader has proposed and not yet seen decided.
struct Proposing<V> {
    entry: Entry<V>,
    votes: BTreeSet<String>,
    id: Option<Asker>,
    since: Instant,
    resend_at: Instant,
}

/// One member: acceptor and learner always, leader when it proposes.
pub struct Node<V> {
    me: String,
    timeouts: Timeouts,
    members: BTreeSet<String>,
    /// How many members the cluster has at least, known or not yet.
    floor: usize,
    // ---- acceptor (durable) ----
    promised: Ballot,
    accepted: BTreeMap<u64, (Ballot, Entry<V>)>,
    // ---- learner ----
    decided: BTreeMap<u64, Entry<V>>,
    /// Slots 1..=applied were handed out.
    applied: u64,
    // ---- proposer ----
    role: Role<V>,
    /// The highest round seen anywhere, so the next campaign goes above it.
    highest: u64,
    proposing: BTreeMap<u64, Proposing<V>>,
    /// Proposals waiting for this member to lead: whose, the claim, when asked.
    waiting: VecDeque<(Asker, V, Instant)>,
    /// Answers held until their slot is applied here.
    answers: BTreeMap<u64, Asker>,
    /// Proposals handed to the leader, by id: to whom, and when.
    forwarded: BTreeMap<u64, (String, Instant)>,
    /// A leader a forward went unanswered to: not forwarded to again until a newer ballot.
    dead_leader: Option<Ballot>,
    /// Forwarded proposals taken, and when: a forward that arrives twice (the network
    /// repeated it) is proposed once.
    taken: BTreeMap<(String, u64), Instant>,
    /// When to campaign again for the waiting proposals (after another leader refused).
    retry_at: Option<Instant>,
    /// The highest slot another member spoke of, and who: the slots below it were proposed,
    /// so this member asks for the decided ones it lacks.
    heard: u64,
    ask: Option<String>,
    /// When to ask next, and how long to wait after an answer that brought nothing.
    next_ask: Option<Instant>,
    ask_every: Duration,
    /// When each other member was last heard from (any message, or what the driver saw).
    contact: BTreeMap<String, Instant>,
    actions: VecDeque<Action<V>>,
}

impl<V: Clone + PartialEq> Node<V> {
    pub fn new(me: impl Into<String>, timeouts: Timeouts) -> Node<V> {
        Node {
            me: me.into(),
            timeouts,
            members: BTreeSet::new(),
            floor: 1,
            promised: Ballot::default(),
            accepted: BTreeMap::new(),
            decided: BTreeMap::new(),
            applied: 0,
            role: Role::Follower,
            highest: 0,
            proposing: BTreeMap::new(),
            waiting: VecDeque::new(),
            answers: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            dead_leader: None,
            taken: BTreeMap::new(),
            retry_at: None,
            heard: 0,
            ask: None,
            next_ask: None,
            ask_every: timeouts.resend,
            contact: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Every member that votes, this one included; a majority of them decides.
    pub fn set_members(&mut self, members: impl IntoIterator<Item = String>) {
        self.members = members.into_iter().collect();
        self.members.insert(self.me.clone());
    }

    /// The cluster has at least `n` members, whether or not this one knows them all yet: a
    /// majority is one of the larger of `n` and the members known. (A member that starts
    /// before the others are known would otherwise take itself for the whole cluster and
    /// decide alone; the simulation found it, seed 691.)
    pub fn expect(&mut self, n: usize) {
        self.floor = n.max(1);
    }

    fn majority(&self) -> usize {
        self.members.len().max(self.floor) / 2 + 1
    }

    /// Takes back a record stored before a restart.
    pub fn restore(&mut self, record: Record<V>) {
        match record {
            Record::Promised(b) => {
                self.highest = self.highest.max(b.round);
                self.promised = self.promised.clone().max(b);
            }
            Record::Accepted {
                slot,
                ballot,
                entry,
            } => {
                self.highest = self.highest.max(ballot.round);
                self.promised = self.promised.clone().max(ballot.clone());
                if self.accepted.get(&slot).is_none_or(|(b, _)| *b <= ballot) {
                    self.accepted.insert(slot, (ballot, entry));
                }
            }
        }
    }

    /// Takes back a slot known decided and applied before a restart (the driver's log holds
    /// it): it is not handed out again.
    pub fn restore_decided(&mut self, slot: u64, entry: Entry<V>) {
        self.decided.insert(slot, entry);
        while self.decided.contains_key(&(self.applied + 1)) {
            self.applied += 1;
        }
    }

    /// The slots handed out so far: 1..=applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The decided entry at `slot`, if known.
    pub fn decided(&self, slot: u64) -> Option<&Entry<V>> {
        self.decided.get(&slot)
    }

    /// Whether this member leads (a majority promised it, and none has refused it since).
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leading { .. })
    }

    /// Proposes `claim`, answered as `id`: at once in the next slot when this member leads,
    /// otherwise once it has gathered a majority of promises (it campaigns now).
    pub fn propose(&mut self, now: Instant, id: u64, claim: V) {
        // The leader is forwarded to while it is heard from; one silent for a phase (cut
        // off, or dead) is not waited for: this member campaigns instead, and the side that
        // holds a majority goes on deciding.
        if let (Role::Follower, Some(leader)) = (&self.role, self.live_leader(now)) {
            // Another leads: it proposes, and answers; no duel for the lead.
            self.forwarded.insert(id, (leader.clone(), now));
            self.send(&leader, Msg::Forward { id, value: claim });
            return;
        }
        self.take(now, Asker::Here(id), claim);
    }

    /// The leader, when it was heard from within a phase.
    fn live_leader(&self, now: Instant) -> Option<String> {
        self.leader().filter(|l| {
            self.contact
                .get(l)
                .is_some_and(|t| now < *t + self.timeouts.phase)
        })
    }

    /// Hands the waiting proposals made here to `leader`, which won the lead meanwhile; those
    /// forwarded here by others are answered `NoMajority` (nothing of them went out), and
    /// their members send them again.
    fn forward_waiting(&mut self, now: Instant, leader: &str) {
        self.retry_at = None;
        for (asker, claim, _) in std::mem::take(&mut self.waiting) {
            match asker {
                Asker::Here(id) => {
                    self.forwarded.insert(id, (leader.to_owned(), now));
                    self.send(leader, Msg::Forward { id, value: claim });
                }
                Asker::Member(..) => self.answer(asker, Outcome::NoMajority),
            }
        }
    }

    /// The member this one promised to, when it is another that has not gone silent.
    fn leader(&self) -> Option<String> {
        let b = &self.promised;
        (b.round > 0 && b.node != self.me && self.dead_leader.as_ref() != Some(b))
            .then(|| b.node.clone())
    }

    /// `member` was heard from at `now` (the driver may say so of any traffic it sees).
    pub fn heard(&mut self, member: &str, now: Instant) {
        if member != self.me && self.members.contains(member) {
            self.contact.insert(member.to_owned(), now);
        }
    }

    /// Whether a majority (this member included) was heard from within a phase.
    fn in_contact(&self, now: Instant) -> bool {
        let recent = self
            .members
            .iter()
            .filter(|m| **m != self.me)
            .filter(|m| {
                self.contact
                    .get(*m)
                    .is_some_and(|t| now < *t + self.timeouts.phase)
            })
            .count();
        recent + 1 >= self.majority()
    }

    /// A proposal to decide here: in the next slot when leading, else once a majority
    /// promised (campaigning now).
    ///
    /// A leader that has not heard from a majority within a phase (cut off, or only idle)
    /// campaigns again first rather than send the proposal for acceptance: cut off, it then
    /// never gathers the promises, and the proposal is refused as `NoMajority`, knowing that
    /// nothing of it can take effect, instead of left in doubt.
    fn take(&mut self, now: Instant, asker: Asker, claim: V) {
        if let Role::Leading { .. } = self.role {
            if self.in_contact(now) || !self.proposing.is_empty() {
                self.start_slot(now, Entry::Claim(claim), Some(asker));
                return;
            }
            self.role = Role::Follower;
        }
        self.waiting.push_back((asker, claim, now));
        if matches!(self.role, Role::Follower) {
            self.campaign(now);
        }
    }

    /// Handles a message from `from`.
    pub fn on_message(&mut self, now: Instant, from: &str, msg: Msg<V>) {
        self.heard(from, now);
        match msg {
            Msg::Prepare { ballot, from: slot } => self.on_prepare(now, from, ballot, slot),
            Msg::Promise {
                ballot,
                accepted,
                decided,
            } => self.on_promise(now, from, ballot, accepted, decided),
            Msg::Accept {
                ballot,
                slot,
                entry,
            } => {
                self.note_slot(now, from, slot);
                self.on_accept(from, ballot, slot, entry);
            }
            Msg::Accepted { ballot, slot } => self.on_accepted(from, &ballot, slot),
            Msg::Nack {
                ballot,
                promised,
                applied,
            } => {
                self.note_slot(now, from, applied + 1);
                self.on_nack(now, from, &ballot, &promised);
            }
            Msg::Decided { slot, entry } => {
                self.learn(slot, entry);
                self.note_slot(now, from, slot);
            }
            Msg::Forward { id, value } => {
                let key = (from.to_owned(), id);
                if self.members.contains(from) && !self.taken.contains_key(&key) {
                    // Remembered for a while: a repeat comes within the network's delays.
                    let keep = self.forward_wait() * 4;
                    self.taken.retain(|_, at| now < *at + keep);
                    self.taken.insert(key, now);
                    self.take(now, Asker::Member(from.to_owned(), id), value);
                }
            }
            Msg::Outcome { id, outcome } => self.on_outcome(now, from, id, outcome),
            Msg::Catchup { from: slot } => {
                let entries = self
                    .decided
                    .range(slot..)
                    .take(MAX_CATCHUP)
                    .map(|(s, e)| (*s, e.clone()))
                    .collect();
                self.send(from, Msg::Log { entries });
            }
            Msg::Log { entries } => {
                let before = self.applied;
                for (slot, entry) in entries {
                    self.learn(slot, entry);
                }
                // An answer that brought nothing (the slots are not decided yet anywhere it
                // knows): ask less often, up to every few seconds.
                self.ask_every = if self.applied > before {
                    self.timeouts.resend
                } else {
                    (self.ask_every * 2).min(self.timeouts.resend * 16)
                };
            }
        }
    }

    /// `from` knows of `slot`: if this member lacks a decided slot below it, it will ask.
    fn note_slot(&mut self, now: Instant, from: &str, slot: u64) {
        if from == self.me {
            return;
        }
        if slot > self.heard {
            self.heard = slot;
            self.ask = Some(from.to_owned());
        }
        if self.applied + 1 < self.heard && self.next_ask.is_none() {
            self.next_ask = Some(now + self.timeouts.resend);
        }
    }

    /// The leader's answer to a proposal this member forwarded to it.
    fn on_outcome(&mut self, now: Instant, from: &str, id: u64, outcome: Outcome) {
        if self.forwarded.get(&id).is_none_or(|(to, _)| to != from) {
            return;
        }
        self.forwarded.remove(&id);
        match outcome {
            // Answered once decided here too (it may not have heard yet).
            Outcome::Decided { slot } if slot > self.applied => {
                self.answers.insert(slot, Asker::Here(id));
                self.note_slot(now, from, slot + 1);
            }
            Outcome::Decided { .. } | Outcome::NoMajority | Outcome::Unknown => {
                self.answer(Asker::Here(id), outcome);
            }
        }
    }

    /// How long a forwarded proposal waits for the leader's answer: its campaign, then its
    /// slot's acceptances.
    fn forward_wait(&self) -> Duration {
        self.timeouts.phase * 2
    }

    /// The earliest moment something is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let campaign = match &self.role {
            Role::Campaigning(c) => Some(c.resend_at.min(c.since + self.timeouts.phase)),
            Role::Follower | Role::Leading { .. } => None,
        };
        let slots = self
            .proposing
            .values()
            .map(|p| p.resend_at.min(p.since + self.timeouts.phase));
        let waiting = self
            .waiting
            .iter()
            .map(|(_, _, at)| *at + self.timeouts.phase);
        let forwarded = self
            .forwarded
            .values()
            .map(|(_, at)| *at + self.forward_wait());
        campaign
            .into_iter()
            .chain(slots)
            .chain(waiting)
            .chain(forwarded)
            .chain(self.retry_at)
            .chain(self.next_ask)
            .min()
    }

    /// Carries out what is due at `now`: resends, and phases given up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let phase = self.timeouts.phase;
        let resend = self.timeouts.resend;
        let mut sends = Vec::new();
        if self.next_ask.is_some_and(|t| now >= t) {
            // Still short of a slot it heard of: the ones below were proposed, and are (or
            // will be) decided somewhere.
            match self.ask.clone().filter(|_| self.applied + 1 < self.heard) {
                Some(who) => {
                    self.next_ask = Some(now + self.ask_every);
                    let from = self.applied + 1;
                    sends.push((who, Msg::Catchup { from }));
                }
                None => self.next_ask = None,
            }
        }
        let mut give_up_campaign = false;
        if let Role::Campaigning(c) = &mut self.role {
            if now >= c.since + phase {
                give_up_campaign = true;
            } else if now >= c.resend_at {
                c.resend_at = now + resend;
                for m in self.members.iter().filter(|m| !c.promises.contains_key(*m)) {
                    let msg = Msg::Prepare {
                        ballot: c.ballot.clone(),
                        from: c.from,
                    };
                    sends.push((m.clone(), msg));
                }
            }
        }
        let wait = self.forward_wait();
        let late: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, (_, at))| now >= *at + wait)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            // The leader did not answer: it may be cut off, or dead (it may also have decided
            // the proposal). The next proposal campaigns here instead of forwarding to it.
            self.forwarded.remove(&id);
            self.dead_leader = Some(self.promised.clone());
            self.answer(Asker::Here(id), Outcome::Unknown);
        }
        if give_up_campaign {
            // No majority answered: nothing of the waiting proposals went out.
            self.role = Role::Follower;
            for (asker, _, _) in std::mem::take(&mut self.waiting) {
                self.answer(asker, Outcome::NoMajority);
            }
        }
        let mut stale = false;
        if let Role::Leading { ballot, .. } = &self.role {
            for (slot, p) in &mut self.proposing {
                if now >= p.since + phase {
                    stale = true;
                } else if now >= p.resend_at {
                    p.resend_at = now + resend;
                    for m in self.members.iter().filter(|m| !p.votes.contains(*m)) {
                        let msg = Msg::Accept {
                            ballot: ballot.clone(),
                            slot: *slot,
                            entry: p.entry.clone(),
                        };
                        sends.push((m.clone(), msg));
                    }
                }
            }
        }
        for (to, msg) in sends {
            self.send(&to, msg);
        }
        if stale {
            // A majority did not accept in time: this member no longer counts as leading
            // (it may be cut off); what it sent may still be decided by the next leader.
            self.step_down();
        }
        // Proposals that waited a whole phase without a campaign under way (one refused and
        // gave up) are answered: nothing of them went out.
        if matches!(self.role, Role::Follower) {
            while let Some((_, _, at)) = self.waiting.front() {
                if now < *at + phase {
                    break;
                }
                if let Some((asker, _, _)) = self.waiting.pop_front() {
                    self.answer(asker, Outcome::NoMajority);
                }
            }
            if !self.waiting.is_empty() && self.retry_at.is_some_and(|t| now >= t) {
                // Refused for a higher ballot: its member leads now, unless it went silent.
                // Campaigning against it again would only take the lead back and forth (the
                // members of a cluster just started all campaign at once).
                match self.live_leader(now) {
                    Some(leader) => self.forward_waiting(now, &leader),
                    None => self.campaign(now),
                }
            }
        }
    }

    pub fn poll_action(&mut self) -> Option<Action<V>> {
        self.actions.pop_front()
    }

    /// Takes the decided slots to apply out of the actions, in order, leaving the rest in
    /// place: applying a decision stands on nothing else (a driver that may not record or
    /// send yet can still apply what it learned).
    pub fn take_applies(&mut self) -> Vec<(u64, Entry<V>)> {
        let mut applies = Vec::new();
        self.actions.retain(|a| match a {
            Action::Apply { slot, entry } => {
                applies.push((*slot, entry.clone()));
                false
            }
            Action::Send { .. }
            | Action::Record(_)
            | Action::Decide { .. }
            | Action::Answer { .. } => true,
        });
        applies
    }

    // ---- proposer ----

    fn campaign(&mut self, now: Instant) {
        self.retry_at = None;
        self.highest = self.highest.max(self.promised.round) + 1;
        let ballot = Ballot {
            round: self.highest,
            node: self.me.clone(),
        };
        let from = self.applied + 1;
        self.broadcast(
            &Msg::Prepare {
                ballot: ballot.clone(),
                from,
            },
            true,
        );
        self.role = Role::Campaigning(Campaign {
            ballot,
            from,
            promises: BTreeMap::new(),
            refusals: BTreeSet::new(),
            since: now,
            resend_at: now + self.timeouts.resend,
        });
    }

    fn on_promise(
        &mut self,
        now: Instant,
        from: &str,
        ballot: Ballot,
        accepted: Vec<(u64, Ballot, Entry<V>)>,
        decided: Vec<(u64, Entry<V>)>,
    ) {
        for (slot, entry) in decided {
            self.learn(slot, entry);
        }
        let majority = self.majority();
        let member = self.members.contains(from);
        let Role::Campaigning(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot || !member {
            return;
        }
        c.promises.insert(from.to_owned(), accepted);
        if c.promises.len() < majority {
            return;
        }
        // A majority promised: what any of them accepted may have been decided; the highest
        // ballot's value of each slot is proposed again, gaps below get a no-op.
        let mut best: BTreeMap<u64, (Ballot, Entry<V>)> = BTreeMap::new();
        for (slot, b, entry) in c.promises.values().flatten() {
            if best.get(slot).is_none_or(|(seen, _)| seen < b) {
                best.insert(*slot, (b.clone(), entry.clone()));
            }
        }
        let from_slot = c.from;
        let ballot = c.ballot.clone();
        let top = best
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.decided.keys().next_back().copied().unwrap_or(0));
        self.role = Role::Leading {
            ballot,
            next_slot: top + 1,
            refusals: BTreeSet::new(),
        };
        for slot in from_slot..=top {
            if self.decided.contains_key(&slot) {
                continue;
            }
            let entry = best.remove(&slot).map_or(Entry::Noop, |(_, e)| e);
            self.open_slot(now, slot, entry, None);
        }
        for (asker, claim, _) in std::mem::take(&mut self.waiting) {
            self.start_slot(now, Entry::Claim(claim), Some(asker));
        }
    }

    /// Proposes `entry` in the next free slot.
    fn start_slot(&mut self, now: Instant, entry: Entry<V>, id: Option<Asker>) {
        let Role::Leading { next_slot, .. } = &mut self.role else {
            return;
        };
        let slot = *next_slot;
        *next_slot += 1;
        self.open_slot(now, slot, entry, id);
    }

    fn open_slot(&mut self, now: Instant, slot: u64, entry: Entry<V>, id: Option<Asker>) {
        let Role::Leading { ballot, .. } = &self.role else {
            return;
        };
        let ballot = ballot.clone();
        self.broadcast(
            &Msg::Accept {
                ballot,
                slot,
                entry: entry.clone(),
            },
            true,
        );
        self.proposing.insert(
            slot,
            Proposing {
                entry,
                votes: BTreeSet::new(),
                id,
                since: now,
                resend_at: now + self.timeouts.resend,
            },
        );
    }

    fn on_accepted(&mut self, from: &str, ballot: &Ballot, slot: u64) {
        let Role::Leading { ballot: mine, .. } = &self.role else {
            return;
        };
        if mine != ballot || !self.members.contains(from) {
            return;
        }
        let majority = self.majority();
        let Some(p) = self.proposing.get_mut(&slot) else {
            return;
        };
        p.votes.insert(from.to_owned());
        if p.votes.len() < majority {
            return;
        }
        let Some(p) = self.proposing.remove(&slot) else {
            return;
        };
        if let Some(id) = p.id {
            self.answers.insert(slot, id);
        }
        self.actions.push_back(Action::Decide {
            slot,
            entry: p.entry.clone(),
        });
        self.broadcast(
            &Msg::Decided {
                slot,
                entry: p.entry.clone(),
            },
            false,
        );
    }

    /// `from` refused `ballot`, having promised `promised`. One refusal does not end a
    /// campaign or a lead: the others may still make a majority (a member that comes back
    /// from a partition with a high ballot of its own, from campaigns that could not win,
    /// would otherwise depose a leader that still has its majority). A campaign or a lead
    /// ends when so many refused that no majority is left (a lead also when a higher
    /// ballot's prepare reaches it, or a slot finds no majority in time).
    fn on_nack(&mut self, now: Instant, from: &str, ballot: &Ballot, promised: &Ballot) {
        self.highest = self.highest.max(promised.round);
        let majority = self.majority();
        let members = self.members.len().max(self.floor);
        let refusals = match &mut self.role {
            Role::Campaigning(c) if c.ballot == *ballot => &mut c.refusals,
            Role::Leading {
                ballot: mine,
                refusals,
                ..
            } if mine == ballot => refusals,
            Role::Campaigning(_) | Role::Leading { .. } | Role::Follower => return,
        };
        refusals.insert(from.to_owned());
        if members.saturating_sub(refusals.len()) >= majority {
            return;
        }
        // Too many promised higher. Waiting proposals try again with a higher ballot a little
        // later (or are answered once their phase is over).
        self.step_down();
        if !self.waiting.is_empty() {
            self.retry_at = Some(now + self.timeouts.resend);
        }
    }

    /// No longer leads: what it proposed and has not seen decided is answered `Unknown`.
    fn step_down(&mut self) {
        self.role = Role::Follower;
        for (_, p) in std::mem::take(&mut self.proposing) {
            if let Some(id) = p.id {
                self.answer(id, Outcome::Unknown);
            }
        }
    }

    // ---- acceptor ----

    /// Refuses `ballot` (telling `from`) when this member promised a higher one.
    fn refused(&mut self, from: &str, ballot: &Ballot) -> bool {
        self.highest = self.highest.max(ballot.round);
        if *ballot >= self.promised {
            return false;
        }
        let msg = Msg::Nack {
            ballot: ballot.clone(),
            promised: self.promised.clone(),
            applied: self.applied,
        };
        self.send(from, msg);
        true
    }

    fn on_prepare(&mut self, now: Instant, from: &str, ballot: Ballot, slot: u64) {
        if self.refused(from, &ballot) {
            return;
        }
        if ballot > self.promised {
            self.promised = ballot.clone();
            self.actions
                .push_back(Action::Record(Record::Promised(ballot.clone())));
            if ballot.node != self.me {
                // Someone else leads from now on: what waits here goes to it once its
                // campaign has had time to end (see `handle_timeout`).
                if !matches!(self.role, Role::Follower) {
                    self.step_down();
                }
                if !self.waiting.is_empty() && self.retry_at.is_none() {
                    self.retry_at = Some(now + self.timeouts.resend);
                }
            }
        }
        let accepted = self
            .accepted
            .range(slot..)
            .filter(|(s, _)| !self.decided.contains_key(s))
            .map(|(s, (b, e))| (*s, b.clone(), e.clone()))
            .collect();
        let decided = self
            .decided
            .range(slot..)
            .map(|(s, e)| (*s, e.clone()))
            .collect();
        self.send(
            from,
            Msg::Promise {
                ballot,
                accepted,
                decided,
            },
        );
    }

    fn on_accept(&mut self, from: &str, ballot: Ballot, slot: u64, entry: Entry<V>) {
        if self.refused(from, &ballot) {
            return;
        }
        if let Some(known) = self.decided.get(&slot) {
            // Decided already: say so, and take nothing more for it (a leader that asks is
            // behind: it learns the slot instead).
            let entry = known.clone();
            self.send(from, Msg::Decided { slot, entry });
            return;
        }
        if ballot > self.promised && ballot.node != self.me && !matches!(self.role, Role::Follower)
        {
            self.step_down();
        }
        self.promised = ballot.clone();
        let fresh = self.accepted.get(&slot) != Some(&(ballot.clone(), entry.clone()));
        if fresh {
            self.accepted.insert(slot, (ballot.clone(), entry.clone()));
            self.actions.push_back(Action::Record(Record::Accepted {
                slot,
                ballot: ballot.clone(),
                entry,
            }));
        }
        self.send(from, Msg::Accepted { ballot, slot });
    }

    // ---- learner ----

    /// `slot` is decided as `entry` (from the leader, or from the driver's log).
    pub fn learn(&mut self, slot: u64, entry: Entry<V>) {
        if slot <= self.applied || self.decided.contains_key(&slot) {
            return;
        }
        if let Some(p) = self.proposing.remove(&slot) {
            if p.entry != entry {
                // Another leader decided this slot: the proposal goes again, elsewhere.
                if let (Some(id), Entry::Claim(claim)) = (p.id, p.entry) {
                    self.waiting.push_back((id, claim, p.since));
                }
            } else if let Some(id) = p.id {
                self.answers.insert(slot, id);
            }
        }
        self.decided.insert(slot, entry);
        self.accepted.remove(&slot);
        while let Some(entry) = self.decided.get(&(self.applied + 1)) {
            self.applied += 1;
            let slot = self.applied;
            self.actions.push_back(Action::Apply {
                slot,
                entry: entry.clone(),
            });
            if let Some(id) = self.answers.remove(&slot) {
                self.answer(id, Outcome::Decided { slot });
            }
        }
    }

    fn answer(&mut self, asker: Asker, outcome: Outcome) {
        match asker {
            Asker::Here(id) => self.actions.push_back(Action::Answer { id, outcome }),
            Asker::Member(to, id) => self.send(&to, Msg::Outcome { id, outcome }),
        }
    }

    /// Sends `msg` to every member, this one too when `me`.
    fn broadcast(&mut self, msg: &Msg<V>, me: bool) {
        for m in self.members.iter().filter(|m| me || **m != self.me) {
            self.actions.push_back(Action::Send {
                to: m.clone(),
                msg: msg.clone(),
            });
        }
    }

    fn send(&mut self, to: &str, msg: Msg<V>) {
        self.actions.push_back(Action::Send {
            to: to.to_owned(),
            msg,
        });
    }
}
