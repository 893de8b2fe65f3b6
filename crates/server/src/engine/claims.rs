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
//! asks. It proposes nothing yet: no service makes a claim (issue 24's next step).

use std::time::Instant;

use palaver_core::claims::{Action, Ballot, Entry, Msg, Node, Record, Timeouts};
use palaver_proto::claim::Claimed;
use palaver_proto::peer::PeerRequest;
use palaver_proto::{ClaimKind, Event, EventKind, Name};

use super::{Engine, Handled, Queued, Route};

/// This server's part in deciding claims.
pub(super) struct Claims {
    me: Name,
    node: Node<Claimed>,
    /// The servers that vote (kept for a restore, which starts a new machine).
    members: Vec<String>,
}

impl Claims {
    pub(super) fn new(me: &Name) -> Claims {
        Claims {
            me: me.clone(),
            node: Node::new(me.as_str(), Timeouts::default()),
            members: Vec::new(),
        }
    }

    /// Starts again from the log's claim events: this server's promises and votes back into
    /// the acceptor, every decision back into the log (already applied).
    pub(super) fn restore(&mut self, events: &[Event]) {
        let me = &self.me;
        let mut node = Node::new(me.as_str(), Timeouts::default());
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
                Action::Apply { slot, .. } => {
                    tracing::debug!(server = %self.name, slot, "claim applied");
                }
                Action::Answer { id, outcome } => {
                    tracing::warn!(server = %self.name, id, ?outcome, "an answer for a claim nobody here proposed");
                }
            }
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
