//! Two-phase commit, as a state machine without I/O: one decision, commit or abort, that every
//! participant records, whatever crashes, lost messages or changes of leader happen on the way.
//!
//! ```text
//!  requester ──Begin──▶ leader: records Prepared, ──Prepare──▶ participants: record Prepared
//!                                                  ◀──Vote────  (yes), or Aborted (no)
//!  leader: all yes ──Propose(commit)──▶ participants: record it unless fenced ──Accepted──▶
//!          a no, or no votes in time ──Propose(abort)──▶        (the first accept makes it final)
//!  leader, once accepted: records it ──Decided──▶ everyone
//!  a participant prepared too long ──Query──▶ every participant (fences them) ──Known──▶
//!          someone decided: that;  every one but the leader prepared: commit;  else wait
//! ```
//!
//! The decision is 2PC's: commit exactly when every participant voted yes. What makes a
//! decision final, and what a participant left without its leader does:
//!
//! - A proposal of the leader counts once a participant other than the leader has recorded it
//!   (or at once when there is no other participant). A participant records a proposal only
//!   while it is not *fenced*.
//! - A participant that has been prepared for `terminate_after` asks every participant for
//!   what it knows (cooperative termination). A participant asked while prepared becomes fenced:
//!   it will record only final decisions from then on. One never asked, never prepared, records
//!   an abort on the spot (it has not voted yes, so the outcome cannot be commit).
//! - Whoever asks decides as soon as an answer says committed or aborted (that is final), or
//!   when every participant except the leader says prepared: they all voted yes (the leader
//!   prepared before it asked anyone), and being fenced, none will record a proposal of the
//!   leader, so no proposal of the leader can have become or become final: commit.
//!
//! So a leader's proposal and an asker's decision can never differ, two askers always agree,
//! and the participants decide without their leader as long as every other participant
//! answers. A participant restarts fenced (it may have answered an asker just before it died).
//!
//! Records are the driver's to keep: it stores each [`Action::Record`] durably before it sends
//! anything that comes after it, and hands the records back through [`Node::restore`] after a
//! restart. A leader's own bookkeeping is not kept: a restarted leader is a participant like the
//! others and finishes through termination. The driver calls [`Node::handle_timeout`] at
//! [`Node::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// A transaction: its id (unique for ever), who leads it, who takes part, and what it decides
/// about (for Palaver, the channel to delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx<P> {
    pub id: String,
    pub leader: String,
    /// Every participant, the leader and the requester included.
    pub participants: Vec<String>,
    pub payload: P,
}

/// What a participant knows of a transaction, as it answers a [`Msg::Query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Prepared,
    Committed,
    Aborted,
}

/// The messages between the members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg<P> {
    /// Requester → leader: run this transaction (the leader fills in the participants).
    Begin(Tx<P>),
    /// Leader → participants: prepare, and vote.
    Prepare(Tx<P>),
    /// Participant → leader.
    Vote { tx: String, yes: bool },
    /// Leader → participants: record this decision unless fenced.
    Propose { tx: Tx<P>, commit: bool },
    /// Participant → leader: recorded.
    Accepted { tx: String },
    /// Participant → leader: not recorded (fenced, or it holds the other decision).
    Refused { tx: String },
    /// A participant left waiting → every participant: what do you know?
    Query { tx: String },
    /// The answer to a query.
    Known { tx: String, state: Known },
    /// A final decision, for everyone to record.
    Decided { tx: Tx<P>, commit: bool },
}

impl<P> Msg<P> {
    /// The transaction the message is about.
    pub fn tx_id(&self) -> &str {
        match self {
            Msg::Begin(tx) | Msg::Prepare(tx) => &tx.id,
            Msg::Propose { tx, .. } | Msg::Decided { tx, .. } => &tx.id,
            Msg::Vote { tx, .. }
            | Msg::Accepted { tx }
            | Msg::Refused { tx }
            | Msg::Query { tx }
            | Msg::Known { tx, .. } => tx,
        }
    }
}

/// What a participant must store durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<P> {
    /// It voted yes (and stops whatever the transaction would undo, until it is decided).
    Prepared(Tx<P>),
    Committed(Tx<P>),
    /// It aborted: it voted no, or never voted and was asked, or learned the decision.
    Aborted {
        tx: String,
    },
}

/// What the driver should do, in order: a send that follows a record leaves only once the
/// record is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    Send { to: String, msg: Msg<P> },
    Record(Record<P>),
}

/// Timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long a leader waits for every vote before it proposes to abort.
    pub vote: Duration,
    /// How often unanswered messages (begin, prepare, propose, query) are sent again.
    pub resend: Duration,
    /// How long a participant stays prepared before it asks the others.
    pub terminate_after: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            vote: Duration::from_secs(2),
            resend: Duration::from_millis(400),
            terminate_after: Duration::from_secs(4),
        }
    }
}

#[derive(Debug, Clone)]
enum Part<P> {
    /// Voted yes. `fenced`: asked by someone terminating (or restarted): takes only final
    /// decisions. `answers`: what the others said when this one asked.
    Prepared {
        tx: Tx<P>,
        fenced: bool,
        since: Instant,
        next_query: Instant,
        answers: BTreeMap<String, Known>,
    },
    Committed,
    Aborted,
}

#[derive(Debug, Clone)]
enum Phase {
    Voting {
        yes: BTreeSet<String>,
        deadline: Instant,
        resend_at: Instant,
    },
    Proposing {
        commit: bool,
        refused: BTreeSet<String>,
        resend_at: Instant,
    },
}

/// A transaction this member asked a leader to run, until the leader's prepare arrives.
#[derive(Debug, Clone)]
struct Asked<P> {
    tx: Tx<P>,
    resend_at: Instant,
}

/// One member: participant in every transaction it is asked to prepare, leader of those it
/// begins.
#[derive(Debug)]
pub struct Node<P> {
    me: String,
    timeouts: Timeouts,
    /// The other live members, who take part in the transactions this one leads.
    peers: BTreeSet<String>,
    parts: BTreeMap<String, Part<P>>,
    /// The transactions prepared here and not decided yet: all that timeouts look at (decided
    /// ones stay in `parts`, and would make every turn longer).
    open: BTreeSet<String>,
    leading: BTreeMap<String, (Tx<P>, Phase)>,
    asked: BTreeMap<String, Asked<P>>,
    actions: VecDeque<Action<P>>,
    /// Final decisions that contradicted one recorded here: never, if the protocol holds.
    pub conflicts: u64,
}

impl<P: Clone> Node<P> {
    pub fn new(me: impl Into<String>, timeouts: Timeouts) -> Node<P> {
        Node {
            me: me.into(),
            timeouts,
            peers: BTreeSet::new(),
            parts: BTreeMap::new(),
            open: BTreeSet::new(),
            leading: BTreeMap::new(),
            asked: BTreeMap::new(),
            actions: VecDeque::new(),
            conflicts: 0,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The other live members: the participants of transactions this member leads from now on.
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = String>) {
        self.peers = peers.into_iter().filter(|p| *p != self.me).collect();
    }

    /// Takes back a record stored before a restart (in the order they were made). A prepared
    /// transaction comes back fenced, and asks the others once `terminate_after` has passed.
    pub fn restore(&mut self, now: Instant, record: Record<P>) {
        match record {
            Record::Prepared(tx) => {
                if !self.parts.contains_key(&tx.id) {
                    let id = tx.id.clone();
                    self.put(id, self.prepared(now, tx, true));
                }
            }
            Record::Committed(tx) => self.restore_outcome(tx.id, true),
            Record::Aborted { tx } => self.restore_outcome(tx, false),
        }
    }

    /// Takes back a decision stored before a restart, known by its transaction id alone.
    pub fn restore_outcome(&mut self, tx: String, commit: bool) {
        let part = if commit {
            Part::Committed
        } else {
            Part::Aborted
        };
        self.put(tx, part);
    }

    /// Sets what this member knows of transaction `id`, keeping `open` in step.
    fn put(&mut self, id: String, part: Part<P>) {
        if matches!(part, Part::Prepared { .. }) {
            self.open.insert(id.clone());
        } else {
            self.open.remove(&id);
        }
        self.parts.insert(id, part);
    }

    /// What this member recorded of `tx`: `Some(true)` committed, `Some(false)` aborted,
    /// `None` undecided or unknown.
    pub fn outcome(&self, tx: &str) -> Option<bool> {
        match self.parts.get(tx) {
            Some(Part::Committed) => Some(true),
            Some(Part::Aborted) => Some(false),
            _ => None,
        }
    }

    /// Whether this member is prepared for `tx` and waits for its outcome.
    pub fn is_prepared(&self, tx: &str) -> bool {
        matches!(self.parts.get(tx), Some(Part::Prepared { .. }))
    }

    /// Transactions prepared here and not yet decided.
    pub fn undecided(&self) -> usize {
        self.open.len()
    }

    /// Asks `leader` to run a transaction with id `id` about `payload`, this member being the
    /// requester (and a participant). When `leader` is this member, it begins at once, `vote`
    /// saying whether it can take part.
    pub fn request(&mut self, now: Instant, id: String, leader: &str, payload: P, vote: bool) {
        if self.parts.contains_key(&id) || self.asked.contains_key(&id) {
            return;
        }
        let tx = Tx {
            id,
            leader: leader.to_owned(),
            participants: vec![self.me.clone()],
            payload,
        };
        if leader == self.me {
            self.begin(now, tx, vote);
            return;
        }
        self.send(leader, Msg::Begin(tx.clone()));
        self.asked.insert(
            tx.id.clone(),
            Asked {
                tx,
                resend_at: now + self.timeouts.resend,
            },
        );
    }

    /// Gives up on a transaction this member requested and was never asked to prepare: it
    /// records an abort, so that a prepare arriving late is answered no. Does nothing once
    /// prepared (the outcome is then the participants' to find).
    pub fn abandon(&mut self, tx: &str) {
        self.asked.remove(tx);
        if !self.parts.contains_key(tx) {
            self.record_abort(tx);
        }
    }

    /// Handles a message from `from`. `vote` says whether this member can carry the payload
    /// out (asked for a `Prepare` and a `Begin` only).
    pub fn on_message(
        &mut self,
        now: Instant,
        from: &str,
        msg: Msg<P>,
        vote: impl FnOnce(&P) -> bool,
    ) {
        match msg {
            Msg::Begin(mut tx) => {
                if tx.leader != self.me {
                    return;
                }
                if matches!(self.parts.get(&tx.id), Some(Part::Aborted)) {
                    // A requester that asks again missed the abort (told it once): again.
                    self.send(from, Msg::Decided { tx, commit: false });
                    return;
                }
                if self.parts.contains_key(&tx.id) {
                    return;
                }
                let ok = vote(&tx.payload);
                tx.participants = vec![from.to_owned()];
                self.begin(now, tx, ok);
            }
            Msg::Prepare(tx) => self.on_prepare(now, tx, vote),
            Msg::Vote { tx, yes } => self.on_vote(now, from, &tx, yes),
            Msg::Propose { tx, commit } => self.on_propose(from, tx, commit),
            Msg::Accepted { tx } => {
                let Some((t, Phase::Proposing { commit, .. })) = self.leading.get(&tx) else {
                    return;
                };
                if from == self.me || !t.participants.iter().any(|p| p == from) {
                    return;
                }
                let (t, commit) = (t.clone(), *commit);
                self.decide(t, commit, Some(from));
            }
            Msg::Refused { tx } => {
                let Some((t, Phase::Proposing { refused, .. })) = self.leading.get_mut(&tx) else {
                    return;
                };
                refused.insert(from.to_owned());
                if t.participants
                    .iter()
                    .all(|p| *p == self.me || refused.contains(p))
                {
                    // Every other participant is fenced or knows better: the outcome comes
                    // through termination now.
                    self.leading.remove(&tx);
                }
            }
            Msg::Query { tx } => self.on_query(from, &tx),
            Msg::Known { tx, state } => self.on_known(from, &tx, state),
            Msg::Decided { tx, commit } => self.on_decided(tx, commit),
        }
    }

    /// A peer's record, read from the replicated log: its commit or abort of `tx` is final
    /// (a participant records either only once it is). Taken by a member prepared for `tx`.
    pub fn learn(&mut self, tx: &str, from: &str, commit: bool) {
        let Some(Part::Prepared { tx: t, .. }) = self.parts.get(tx) else {
            return;
        };
        if from == self.me || !t.participants.iter().any(|p| p == from) {
            return;
        }
        let t = t.clone();
        self.finish(t, commit);
    }

    /// The earliest moment something is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let leading = self.leading.values().map(|(_, phase)| match phase {
            Phase::Voting {
                deadline,
                resend_at,
                ..
            } => (*deadline).min(*resend_at),
            Phase::Proposing { resend_at, .. } => *resend_at,
        });
        let parts = self.open.iter().filter_map(|id| match self.parts.get(id) {
            Some(Part::Prepared {
                since, next_query, ..
            }) => Some((*since + self.timeouts.terminate_after).max(*next_query)),
            _ => None,
        });
        let asked = self.asked.values().map(|a| a.resend_at);
        leading.chain(parts).chain(asked).min()
    }

    /// Carries out what is due at `now`: resends, proposals to abort, termination queries.
    pub fn handle_timeout(&mut self, now: Instant) {
        let resend = self.timeouts.resend;
        let mut sends = Vec::new();
        for a in self.asked.values_mut() {
            if now >= a.resend_at {
                a.resend_at = now + resend;
                sends.push((a.tx.leader.clone(), Msg::Begin(a.tx.clone())));
            }
        }
        let mut aborts = Vec::new();
        for (id, (tx, phase)) in &mut self.leading {
            match phase {
                Phase::Voting {
                    yes,
                    deadline,
                    resend_at,
                } => {
                    if now >= *deadline {
                        aborts.push(id.clone());
                    } else if now >= *resend_at {
                        *resend_at = now + resend;
                        for p in tx.participants.iter().filter(|p| !yes.contains(*p)) {
                            sends.push((p.clone(), Msg::Prepare(tx.clone())));
                        }
                    }
                }
                Phase::Proposing {
                    commit,
                    refused,
                    resend_at,
                } => {
                    if now >= *resend_at {
                        *resend_at = now + resend;
                        for p in tx.participants.iter().filter(|p| !refused.contains(*p)) {
                            if *p != self.me {
                                let msg = Msg::Propose {
                                    tx: tx.clone(),
                                    commit: *commit,
                                };
                                sends.push((p.clone(), msg));
                            }
                        }
                    }
                }
            }
        }
        let terminate_after = self.timeouts.terminate_after;
        for id in &self.open {
            let Some(Part::Prepared {
                tx,
                fenced,
                since,
                next_query,
                answers,
            }) = self.parts.get_mut(id)
            else {
                continue;
            };
            if now < *since + terminate_after || now < *next_query {
                continue;
            }
            *fenced = true;
            *next_query = now + resend;
            for p in &tx.participants {
                if *p != self.me && answers.get(p) != Some(&Known::Prepared) {
                    sends.push((p.clone(), Msg::Query { tx: tx.id.clone() }));
                }
            }
        }
        for (to, msg) in sends {
            self.send(&to, msg);
        }
        for id in aborts {
            self.propose(&id, false);
        }
        // An asker whose every answer is in already (say, the leader alone is silent) decides.
        let ready: Vec<String> = self
            .open
            .iter()
            .filter(|id| {
                matches!(self.parts.get(*id), Some(Part::Prepared { fenced: true, since, .. })
                    if now >= *since + terminate_after)
            })
            .cloned()
            .collect();
        for id in ready {
            self.try_terminate(&id);
        }
    }

    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    // ---- leader ----

    fn begin(&mut self, now: Instant, mut tx: Tx<P>, vote: bool) {
        let requesters = std::mem::take(&mut tx.participants);
        let mut everyone: BTreeSet<String> = self.peers.clone();
        everyone.insert(self.me.clone());
        everyone.extend(requesters.iter().cloned());
        tx.participants = everyone.into_iter().collect();
        tx.leader = self.me.clone();
        self.asked.remove(&tx.id);
        if !vote {
            // Nobody prepared: only the requester, who waits, needs to hear of it.
            self.record_abort(&tx.id);
            for p in requesters.iter().filter(|p| **p != self.me) {
                let msg = Msg::Decided {
                    tx: tx.clone(),
                    commit: false,
                };
                self.actions.push_back(Action::Send { to: p.clone(), msg });
            }
            return;
        }
        self.actions
            .push_back(Action::Record(Record::Prepared(tx.clone())));
        self.put(tx.id.clone(), self.prepared(now, tx.clone(), false));
        if tx.participants.len() == 1 {
            // Nobody else takes part: the decision is this member's alone.
            self.finish(tx, true);
            return;
        }
        for p in tx.participants.iter().filter(|p| **p != self.me) {
            self.actions.push_back(Action::Send {
                to: p.clone(),
                msg: Msg::Prepare(tx.clone()),
            });
        }
        let phase = Phase::Voting {
            yes: [self.me.clone()].into(),
            deadline: now + self.timeouts.vote,
            resend_at: now + self.timeouts.resend,
        };
        self.leading.insert(tx.id.clone(), (tx, phase));
    }

    fn on_vote(&mut self, _now: Instant, from: &str, id: &str, yes: bool) {
        let Some((tx, Phase::Voting { yes: ayes, .. })) = self.leading.get_mut(id) else {
            return;
        };
        if !tx.participants.iter().any(|p| p == from) {
            return;
        }
        if !yes {
            self.propose(id, false);
            return;
        }
        ayes.insert(from.to_owned());
        if tx.participants.iter().all(|p| ayes.contains(p)) {
            self.propose(id, true);
        }
    }

    /// Proposes a decision to the other participants.
    fn propose(&mut self, id: &str, commit: bool) {
        let Some((tx, phase)) = self.leading.get_mut(id) else {
            return;
        };
        if matches!(phase, Phase::Proposing { .. }) {
            return;
        }
        *phase = Phase::Proposing {
            commit,
            refused: BTreeSet::new(),
            // The first proposal leaves now; `resend` later, again to those that did not answer.
            resend_at: match phase {
                Phase::Voting { resend_at, .. } => *resend_at,
                Phase::Proposing { resend_at, .. } => *resend_at,
            },
        };
        let tx = tx.clone();
        for p in tx.participants.iter().filter(|p| **p != self.me) {
            self.actions.push_back(Action::Send {
                to: p.clone(),
                msg: Msg::Propose {
                    tx: tx.clone(),
                    commit,
                },
            });
        }
    }

    /// `commit` is final (a participant other than this one, `by`, recorded it, or someone
    /// decided it): recorded here, and told to every participant but `by`.
    fn decide(&mut self, tx: Tx<P>, commit: bool, by: Option<&str>) {
        self.finish(tx.clone(), commit);
        for p in tx
            .participants
            .iter()
            .filter(|p| **p != self.me && Some(p.as_str()) != by)
        {
            self.actions.push_back(Action::Send {
                to: p.clone(),
                msg: Msg::Decided {
                    tx: tx.clone(),
                    commit,
                },
            });
        }
    }

    // ---- participant ----

    fn on_prepare(&mut self, now: Instant, tx: Tx<P>, vote: impl FnOnce(&P) -> bool) {
        let leader = tx.leader.clone();
        let id = tx.id.clone();
        self.asked.remove(&id);
        let yes = match self.parts.get(&id) {
            // One transaction has one leader: a prepare of the same id from another is not
            // this transaction's (drivers never reuse an id), and gets no vote.
            Some(Part::Prepared { tx: mine, .. }) if mine.leader != leader => return,
            Some(Part::Prepared { .. } | Part::Committed) => true,
            Some(Part::Aborted) => false,
            None => {
                if tx.participants.contains(&self.me) && vote(&tx.payload) {
                    self.actions
                        .push_back(Action::Record(Record::Prepared(tx.clone())));
                    self.put(id.clone(), self.prepared(now, tx, false));
                    true
                } else {
                    self.record_abort(&id);
                    false
                }
            }
        };
        self.send(&leader, Msg::Vote { tx: id, yes });
    }

    fn on_propose(&mut self, from: &str, tx: Tx<P>, commit: bool) {
        if from != tx.leader {
            return;
        }
        let id = tx.id.clone();
        let accept = match self.parts.get(&id) {
            Some(Part::Prepared { fenced: false, .. }) => {
                self.finish(tx, commit);
                true
            }
            Some(Part::Prepared { fenced: true, .. }) => false,
            Some(Part::Committed) => commit,
            Some(Part::Aborted) => !commit,
            None if !commit => {
                // The requester, told to abort before any prepare reached it: done asking.
                self.asked.remove(&id);
                self.record_abort(&id);
                true
            }
            None => false,
        };
        let msg = if accept {
            Msg::Accepted { tx: id }
        } else {
            Msg::Refused { tx: id }
        };
        self.send(from, msg);
    }

    fn on_query(&mut self, from: &str, id: &str) {
        let state = match self.parts.get_mut(id) {
            Some(Part::Prepared { fenced, .. }) => {
                *fenced = true;
                Known::Prepared
            }
            Some(Part::Committed) => Known::Committed,
            Some(Part::Aborted) => Known::Aborted,
            None => {
                // Never prepared, so never voted yes: the outcome cannot be commit.
                self.asked.remove(id);
                self.record_abort(id);
                Known::Aborted
            }
        };
        self.send(
            from,
            Msg::Known {
                tx: id.to_owned(),
                state,
            },
        );
    }

    fn on_known(&mut self, from: &str, id: &str, state: Known) {
        let Some(Part::Prepared { tx, answers, .. }) = self.parts.get_mut(id) else {
            return;
        };
        if !tx.participants.iter().any(|p| p == from) {
            return;
        }
        answers.insert(from.to_owned(), state);
        self.try_terminate(id);
    }

    /// Decides a prepared, fenced transaction from the answers gathered, when they allow it.
    fn try_terminate(&mut self, id: &str) {
        let Some(Part::Prepared {
            tx,
            fenced: true,
            answers,
            ..
        }) = self.parts.get(id)
        else {
            return;
        };
        let decision = if answers.values().any(|k| *k == Known::Committed) {
            Some(true)
        } else if answers.values().any(|k| *k == Known::Aborted) {
            Some(false)
        } else if tx
            .participants
            .iter()
            .filter(|p| **p != tx.leader && **p != self.me)
            .all(|p| answers.get(p) == Some(&Known::Prepared))
        {
            Some(true)
        } else {
            None
        };
        if let Some(commit) = decision {
            let tx = tx.clone();
            self.leading.remove(id);
            self.decide(tx, commit, None);
        }
    }

    fn on_decided(&mut self, tx: Tx<P>, commit: bool) {
        match self.parts.get(&tx.id) {
            Some(Part::Committed) if !commit => self.conflicts += 1,
            Some(Part::Aborted) if commit => self.conflicts += 1,
            Some(Part::Committed | Part::Aborted) => {}
            // A commit needs this member's yes, so one it never prepared for is not its to
            // record: a message gone astray, taken for nothing (the log brings any real one).
            None if commit => {}
            Some(Part::Prepared { .. }) | None => {
                self.asked.remove(&tx.id);
                self.finish(tx, commit);
            }
        }
    }

    /// Records the final decision on `tx` (once).
    fn finish(&mut self, tx: Tx<P>, commit: bool) {
        self.leading.remove(&tx.id);
        match self.parts.get(&tx.id) {
            Some(Part::Committed) if !commit => self.conflicts += 1,
            Some(Part::Aborted) if commit => self.conflicts += 1,
            Some(Part::Committed | Part::Aborted) => {}
            _ if commit => {
                self.put(tx.id.clone(), Part::Committed);
                self.actions
                    .push_back(Action::Record(Record::Committed(tx)));
            }
            _ => self.record_abort(&tx.id),
        }
    }

    fn record_abort(&mut self, id: &str) {
        self.put(id.to_owned(), Part::Aborted);
        self.actions
            .push_back(Action::Record(Record::Aborted { tx: id.to_owned() }));
    }

    fn prepared(&self, now: Instant, tx: Tx<P>, fenced: bool) -> Part<P> {
        Part::Prepared {
            tx,
            fenced,
            since: now,
            next_query: now,
            answers: BTreeMap::new(),
        }
    }

    fn send(&mut self, to: &str, msg: Msg<P>) {
        if to != self.me {
            self.actions.push_back(Action::Send {
                to: to.to_owned(),
                msg,
            });
        }
    }
}
