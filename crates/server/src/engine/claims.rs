//! Claims decided by a majority, driven: the log of claims of `palaver_core::claims` fed with
//! the peers' `claims` messages and the log's claim events, its records made events of this
//! server's (so they are durable, and come back after a restart), its messages sent once the
//! records before them are stored (docs/replication.md).
//!
//! ```text
//!  peer "claims" ──on_message──▶ Node ──▶ actions
//!  the log's decided events ──learn──▶ Node (every server learns every slot from the log)
//!  actions: Record ──▶ a promise or vote event in the next batch
//!           Decide ──▶ a decided event in the next batch, learned at once
//!           Send   ──▶ a one-way "claims" message, after the records made before it
//!           Apply  ──▶ the slot, in order (what it does to names comes with the services)
//! ```
//!
//! This server is an acceptor and a learner: it promises, accepts and learns what a leader
//! asks. It also proposes the claims its requests make (`register`, a new name's `login`, a
//! session, `channel`…): each request waits, with no clock moved, until its claim is decided
//! and applied here; then the state finishes it (the event that records it joins the next
//! batch, and the answer leaves once the live peers hold it, as for any write). A claim that
//! found no majority is refused with a clear error; nothing of it can take effect later.
//!
//! ```text
//!  request ──State: Outcome::Claim──▶ propose(id) ──▶ … ──▶ Apply(slot): State::apply_claim
//!                                                          Answer(id) ──▶ State::claimed ──▶ batch
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use palaver_core::claims::{Action, Ballot, Entry, Msg, Node, Outcome, Record, Timeouts};
use palaver_proto::claim::{Claim, Claimed};
use palaver_proto::peer::PeerRequest;
use palaver_proto::{ClaimKind, Event, EventKind, Name, Reply, Status};

use super::{Engine, Handled, Queued, Route};
use crate::state::After;

/// What a request whose claim no majority took hears.
pub const NO_MAJORITY: &str = "cannot reach a majority of servers; try again";
/// What a request whose claim was sent for acceptance, but not confirmed in time, hears.
pub const UNKNOWN: &str = "a majority of servers did not confirm in time; the request may \
                           still take effect: send it again (the same request_id) to find out";
/// How many results of this server's claims are kept for their answers.
const RESULTS_KEPT: usize = 1_024;

/// A request that waits for its claim.
pub(super) struct Proposing {
    pub route: Route,
    pub echo: Option<String>,
    pub request: Option<String>,
    pub after: After,
    /// The request's Lamport clock, taken in only if the request takes effect.
    pub clock: Option<u64>,
}

/// This server's part in deciding claims.
pub(super) struct Claims {
    me: Name,
    node: Node<Claimed>,
    /// The servers that vote (kept for a restore, which starts a new machine), and how many
    /// the cluster has at least.
    members: Vec<String>,
    cluster: usize,
    /// Requests waiting for their claims, by proposal id.
    waiting: HashMap<u64, Proposing>,
    next_id: u64,
    /// What each of this server's claims did when applied, by slot, until answered.
    results: BTreeMap<u64, Result<(), String>>,
}

impl Claims {
    pub(super) fn new(me: &Name, cluster: usize) -> Claims {
        let mut node = Node::new(me.as_str(), Timeouts::default());
        node.expect(cluster);
        Claims {
            me: me.clone(),
            node,
            members: Vec::new(),
            cluster,
            waiting: HashMap::new(),
            next_id: 0,
            results: BTreeMap::new(),
        }
    }

    /// Starts again from the log's claim events: this server's promises and votes back into
    /// the acceptor, every decision back into the log (already applied).
    pub(super) fn restore(&mut self, events: &[Event]) {
        let me = &self.me;
        let mut node = Node::new(me.as_str(), Timeouts::default());
        node.expect(self.cluster);
        let mut decided = std::collections::BTreeMap::new();
        for e in events {
            let kind = match &e.kind {
                EventKind::Claim(kind) => kind,
                EventKind::Message(_)
                | EventKind::Account(_)
                | EventKind::Room(_)
                | EventKind::Reader(_) => continue,
            };
            match kind {
                ClaimKind::Promise { round, leader } if e.origin == me.as_str() => {
                    node.restore(Record::Promised(ballot(*round, leader)));
                }
                ClaimKind::Vote {
                    slot,
                    round,
                    leader,
                    claim,
                } if e.origin == me.as_str() => node.restore(Record::Accepted {
                    slot: *slot,
                    ballot: ballot(*round, leader),
                    entry: entry(claim.clone()),
                }),
                ClaimKind::Decided { slot, claim } => {
                    decided.insert(*slot, entry(claim.clone()));
                }
                ClaimKind::Promise { .. } | ClaimKind::Vote { .. } => {}
            }
        }
        for (slot, e) in decided {
            node.restore_decided(slot, e);
        }
        node.set_members(self.members.clone());
        self.node = node;
    }

    pub(super) fn set_members(&mut self, members: Vec<String>) {
        self.members.clone_from(&members);
        self.node.set_members(members);
    }

    /// A claim event from the log, a peer's or this server's: a decision is learned.
    pub(super) fn learn(&mut self, e: &Event) {
        match &e.kind {
            EventKind::Claim(ClaimKind::Decided { slot, claim }) => {
                self.node.learn(*slot, entry(claim.clone()));
            }
            EventKind::Claim(ClaimKind::Promise { .. } | ClaimKind::Vote { .. })
            | EventKind::Message(_)
            | EventKind::Account(_)
            | EventKind::Room(_)
            | EventKind::Reader(_) => {}
        }
    }

    pub(super) fn on_message(&mut self, now: Instant, from: &str, msg: Msg<Claimed>) {
        self.node.on_message(now, from, msg);
    }

    /// Traffic from `peer`: it is in contact (a leader out of contact with a majority
    /// campaigns again before it proposes).
    pub(super) fn heard(&mut self, peer: &str, now: Instant) {
        self.node.heard(peer, now);
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }

    /// The slots of the log of claims applied here: 1..=applied.
    pub(super) fn applied(&self) -> u64 {
        self.node.applied()
    }
}

fn ballot(round: u64, leader: &Name) -> Ballot {
    Ballot {
        round,
        node: leader.to_string(),
    }
}

fn entry(claim: Option<Claimed>) -> Entry<Claimed> {
    claim.map_or(Entry::Noop, Entry::Claim)
}

fn claim_of(entry: Entry<Claimed>) -> Option<Claimed> {
    match entry {
        Entry::Claim(c) => Some(c),
        Entry::Noop => None,
    }
}

/// A server name the machine carries: every one came from a validated message or event, or
/// is this server's own.
fn name(s: &str) -> Option<Name> {
    Name::parse(s).ok()
}

impl Engine {
    /// Each turn: what the log of claims has to do. Its records join the batch as events of
    /// this server's, its messages follow the records made before them. None is made before
    /// this server has caught up (as for two-phase deletes: a record made earlier could take
    /// the number of an event of its own that only its peers still hold).
    pub(super) fn claims_turn(&mut self, now: Instant) {
        if self.claims.deadline().is_some_and(|t| t <= now) {
            self.claims.node.handle_timeout(now);
        }
        while let Some(action) = self.claims.node.poll_action() {
            match action {
                Action::Record(Record::Promised(b)) => {
                    if let Some(leader) = name(&b.node) {
                        let kind = ClaimKind::Promise {
                            round: b.round,
                            leader,
                        };
                        self.claim_record(kind);
                    }
                }
                Action::Record(Record::Accepted {
                    slot,
                    ballot,
                    entry,
                }) => {
                    if let Some(leader) = name(&ballot.node) {
                        let kind = ClaimKind::Vote {
                            slot,
                            round: ballot.round,
                            leader,
                            claim: claim_of(entry),
                        };
                        self.claim_record(kind);
                    }
                }
                Action::Decide { slot, entry } => {
                    let kind = ClaimKind::Decided {
                        slot,
                        claim: claim_of(entry.clone()),
                    };
                    self.claim_record(kind);
                    self.claims.node.learn(slot, entry);
                }
                Action::Send { to, msg } => {
                    // Decisions travel in the log (every server learns from its events).
                    if matches!(msg, Msg::Decided { .. }) {
                        continue;
                    }
                    // To itself: taken at once. Whatever it leads to outside (a message to a
                    // peer, an answer, a decision) joins the batch after the records before
                    // it, so nothing leaves before they are durable.
                    if to == self.claims.me.as_str() {
                        let me = self.claims.me.clone();
                        self.claims.node.on_message(now, me.as_str(), msg);
                        continue;
                    }
                    let env = PeerRequest::Claims {
                        from: self.claims.me.clone(),
                        msg,
                    }
                    .to_envelope();
                    self.batch.push(Queued {
                        envelope: Route::Peer(to),
                        handled: Handled::reply(env),
                        echo: None,
                    });
                }
                Action::Apply { slot, entry } => self.claim_applied(slot, entry),
                Action::Answer { id, outcome } => self.claim_answered(id, outcome),
            }
        }
    }

    /// While this server makes no records (it has not caught up): the decided slots are
    /// applied, the rest of the machine's actions wait for its turn.
    pub(super) fn claims_learned(&mut self) {
        for (slot, entry) in self.claims.node.take_applies() {
            self.claim_applied(slot, entry);
        }
    }

    fn claim_applied(&mut self, slot: u64, entry: Entry<Claimed>) {
        match entry {
            Entry::Claim(c) => {
                let result = self.state.apply_claim(slot, &c);
                tracing::debug!(server = %self.name, slot, ?result, "claim applied");
                if c.server == self.claims.me {
                    self.claims.results.insert(slot, result);
                    while self.claims.results.len() > RESULTS_KEPT {
                        self.claims.results.pop_first();
                    }
                }
            }
            Entry::Noop => {}
        }
    }

    /// A request waits for `claim` to be decided.
    pub(super) fn propose(&mut self, waiting: Proposing, claim: Claim) {
        let id = self.claims.next_id;
        self.claims.next_id += 1;
        let claimed = Claimed {
            claim,
            server: self.claims.me.clone(),
            request: waiting.request.clone(),
        };
        self.claims.waiting.insert(id, waiting);
        self.claims.node.propose(self.now.at, id, claimed);
    }

    /// Proposal `id` is decided (and applied here), refused, or given up: its request is
    /// finished and joins the batch.
    fn claim_answered(&mut self, id: u64, outcome: Outcome) {
        let Some(w) = self.claims.waiting.remove(&id) else {
            tracing::error!(server = %self.name, id, ?outcome, "an answer for a claim nobody here waits for");
            return;
        };
        let decided = match outcome {
            Outcome::Decided { slot } => match self.claims.results.remove(&slot) {
                Some(result) => result.map(|()| slot),
                None => {
                    tracing::error!(server = %self.name, id, slot, "a claim decided without its result");
                    Err(
                        "the claim was decided, but its effect is unknown here; send it again"
                            .into(),
                    )
                }
            },
            Outcome::NoMajority => {
                tracing::info!(server = %self.name, "a claim found no majority: refused");
                Err(NO_MAJORITY.to_owned())
            }
            Outcome::Unknown => {
                tracing::warn!(server = %self.name, "a claim was not confirmed in time");
                Err(UNKNOWN.to_owned())
            }
        };
        self.finish_claimed(w, decided);
    }

    fn finish_claimed(&mut self, w: Proposing, decided: Result<u64, String>) {
        // Refused for want of a majority, or left in doubt: the same request, sent again
        // (the same request id), is safe and may well be decided; the answer says so.
        let again = matches!(&decided, Err(why) if why == NO_MAJORITY || why == UNKNOWN);
        self.finish_later(w.route, w.echo, w.clock, |state, wall, lamport| {
            let mut handled = state.claimed(w.after, decided, w.request, wall, lamport);
            if again && Reply::status(&handled.reply) == Status::Error {
                handled.reply = handled.reply.with(palaver_proto::AGAIN, true);
            }
            handled
        });
    }

    /// After a reload the machine starts again from the store: the requests that waited for
    /// their claims hear that they may try again (a retry with the same id finds out whether
    /// the claim took effect).
    pub(super) fn claims_forgotten(&mut self) {
        let waiting: Vec<Proposing> = self.claims.waiting.drain().map(|(_, w)| w).collect();
        self.claims.results.clear();
        for w in waiting {
            self.finish_claimed(w, Err(UNKNOWN.to_owned()));
        }
    }

    /// A record of the log of claims, as an event of this server's in the next batch.
    fn claim_record(&mut self, kind: ClaimKind) {
        let handled =
            self.state
                .record(EventKind::Claim(kind), None, self.wall(), &mut self.lamport);
        self.batch.push(Queued {
            envelope: Route::Internal,
            handled,
            echo: None,
        });
    }
}
