//! The two-phase delete, driven: the commit state machine of `palaver_core::commit` fed with
//! the peers' messages and the log's records, its own records made events of this server's
//! (so they are durable, replicated, and come back after a restart), and client `delete`s that
//! wait for their outcome here (docs/rooms.md).
//!
//! ```text
//!  client delete ──start──▶ Node::request(leader = the coordinator) ──▶ actions
//!  peer "twopc"  ──on_message──▶ Node                                  ──▶ actions
//!  peers' prepare/abort/delete events ──learn──▶ Node
//!  actions: Record ──▶ an event (prepare, abort, delete) in the next batch
//!           Send   ──▶ a one-way "twopc" message, sent once the records before it are stored
//! ```
//!
//! The requester retries an aborted transaction (say, a server had just died and was still
//! counted) with a new one until `GIVE_UP` has passed since the client asked.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palaver_core::commit::{Action, Node, Record, Timeouts};
use palaver_proto::peer::PeerRequest;
use palaver_proto::room::Room;
use palaver_proto::{Envelope, Event, EventKind, Name, Reply, Request, RoomKind, Step};

use crate::state::Proofs;
use crate::State;

use super::{Engine, Handled, Queued, Route};

/// How long a requester waits for the leader's prepare before it gives the attempt up.
const BEGIN_WAIT: Duration = Duration::from_secs(3);
/// How long after an abort the requester tries again.
const AGAIN_AFTER: Duration = Duration::from_millis(300);
/// How long a client's delete is worked on before it is answered with what is known (clients
/// wait 2.5 s an attempt, and try three times).
const GIVE_UP: Duration = Duration::from_secs(7);

/// A client's delete, waiting for its outcome.
pub(super) struct Waiting {
    pub route: Route,
    pub echo: Option<String>,
    pub request: Option<String>,
    pub proofs: Proofs,
    pub room: Room,
    /// When the client asked.
    pub asked: Instant,
    /// When the current attempt began.
    pub began: Instant,
}

/// Where a fault test's crash after a prepare stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Crash {
    /// Waiting for a prepare of this server's.
    Armed,
    /// A prepare is in the batch: die once its batch's messages are out.
    Due,
}

impl Engine {
    /// A client's delete begins: led by the coordinator (or this server, when none is known).
    pub(super) fn start_delete(&mut self, waiting: Waiting) {
        let leader = self.coordinator().map(|c| c.name.clone());
        self.deletes
            .start(self.now.at, waiting, leader.as_deref(), &self.state);
    }

    /// Each turn: what the two-phase deletes have to do. Their records join the batch as
    /// events of this server's, their messages to peers follow the records made before them,
    /// and the deletes that aborted with time left start again.
    pub(super) fn two_phase(&mut self, now: Instant) {
        let (outs, again) = self.deletes.turn(now);
        for out in outs {
            let q = match out {
                Out::Send { to, env } => Queued {
                    envelope: Route::Peer(to),
                    handled: Handled::reply(env),
                    echo: None,
                },
                Out::Reply { route, echo, reply } => Queued {
                    envelope: route,
                    handled: Handled::reply(reply),
                    echo,
                },
                Out::Record {
                    kind,
                    request,
                    route,
                    echo,
                    channel,
                    failed,
                } => {
                    if matches!(*kind, EventKind::Room(RoomKind::Prepare { .. }))
                        && self.crash == Some(Crash::Armed)
                    {
                        self.crash = Some(Crash::Due);
                    }
                    let mut handled =
                        self.state
                            .record(*kind, request, self.wall(), &mut self.lamport);
                    if let Some(c) = channel {
                        handled.reply = handled.reply.with("channel", c.as_str());
                    }
                    if let Some(why) = failed {
                        handled.reply = Reply::error("delete", &why);
                    }
                    Queued {
                        envelope: route,
                        handled,
                        echo,
                    }
                }
            };
            self.batch.push(q);
        }
        for (w, req) in again {
            let mut handled = self.state.handle_request(
                req,
                w.request.clone(),
                &w.proofs,
                self.wall(),
                &mut self.lamport,
            );
            match handled.delete.take() {
                Some(room) => self.start_delete(Waiting { room, ..w }),
                None => self.batch.push(Queued {
                    envelope: w.route,
                    handled,
                    echo: w.echo,
                }),
            }
        }
    }
}

/// What the driver hands the reactor: a reply or a record for the next batch, or a message
/// for a peer (which also waits for the batch, behind the records made before it).
pub(super) enum Out {
    /// A record of the machine's, as an event of this server's, with the client's route
    /// when it answers a waiting delete (`reply`, then, is what the client gets).
    Record {
        kind: Box<EventKind>,
        request: Option<String>,
        route: Route,
        echo: Option<String>,
        channel: Option<Name>,
        failed: Option<String>,
    },
    /// An answer without a record.
    Reply {
        route: Route,
        echo: Option<String>,
        reply: Envelope,
    },
    /// A message for a peer.
    Send { to: String, env: Envelope },
}

pub(super) struct Deletes {
    me: Name,
    /// The next transaction's number (from a seed of the driver's, so that ids differ from
    /// one start to the next, and a simulation replays them).
    next_tx: u64,
    node: Node<Room>,
    /// Client deletes waiting, by transaction.
    waiting: BTreeMap<String, Waiting>,
    /// Client deletes to start again, and when.
    again: Vec<(Instant, Waiting)>,
}

impl Deletes {
    pub(super) fn new(me: &Name, seed: u64) -> Deletes {
        Deletes {
            me: me.clone(),
            next_tx: seed,
            node: Node::new(me.as_str(), Timeouts::default()),
            waiting: BTreeMap::new(),
            again: Vec::new(),
        }
    }

    /// Starts again from the log's room events (at start-up, and after the memory was found
    /// ahead of the disk): this server's records back into the machine, the peers' decisions
    /// learned. Clients still waiting keep waiting.
    pub(super) fn restore(&mut self, now: Instant, rooms: &[Event]) {
        self.node = Node::new(self.me.as_str(), Timeouts::default());
        let (own, peers): (Vec<&Event>, Vec<&Event>) =
            rooms.iter().partition(|e| e.origin == self.me.as_str());
        for e in own.into_iter().chain(peers) {
            self.learn(now, e);
        }
    }

    /// A room event from the log. A peer's commit or abort decides the transaction here. One
    /// of this server's own records goes back into the machine: read from the disk after a
    /// restart, or fetched back from the peers when the crash lost it before it reached the
    /// disk (a prepare that came back that way was never decided; the simulation found it,
    /// seed 4409).
    pub(super) fn learn(&mut self, now: Instant, e: &Event) {
        let step = match &e.kind {
            EventKind::Room(room) => room.step(),
            EventKind::Message(_)
            | EventKind::Account(_)
            | EventKind::Reader(_)
            | EventKind::Claim(_) => None,
        };
        let own = e.origin == self.me.as_str();
        match step {
            Some(Step::Prepared {
                tx,
                channel,
                owner,
                leader,
                participants,
            }) if own => self.node.restore(
                now,
                Record::Prepared(palaver_core::commit::Tx {
                    id: tx.to_owned(),
                    leader: leader.to_string(),
                    participants: participants.iter().map(Name::to_string).collect(),
                    payload: Room {
                        channel: channel.clone(),
                        owner: owner.clone(),
                    },
                }),
            ),
            Some(Step::Decided { tx, commit }) if own => {
                self.node.restore_outcome(tx.to_owned(), commit);
            }
            Some(Step::Decided { tx, commit }) => self.node.learn(tx, &e.origin, commit),
            Some(Step::Prepared { .. }) | None => {}
        }
    }

    pub(super) fn set_peers(&mut self, peers: Vec<String>) {
        self.node.set_peers(peers);
    }

    /// A client's delete, checked by the state: a transaction led by `leader` (the coordinator,
    /// or this server when there is none) begins.
    pub(super) fn start(&mut self, now: Instant, w: Waiting, leader: Option<&str>, st: &State) {
        let id = format!("{}-{:016x}", self.me, self.next_tx);
        self.next_tx = self.next_tx.wrapping_add(1);
        let leader = leader.unwrap_or(self.me.as_str()).to_owned();
        let vote = st.can_delete(&w.room);
        self.node
            .request(now, id.clone(), &leader, w.room.clone(), vote);
        self.waiting.insert(id, Waiting { began: now, ..w });
    }

    /// A step of a peer's.
    pub(super) fn on_message(
        &mut self,
        now: Instant,
        from: &str,
        msg: palaver_core::commit::Msg<Room>,
        st: &State,
    ) {
        self.node
            .on_message(now, from, msg, |room| st.can_delete(room));
    }

    /// The earliest moment something is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let waiting = self.waiting.iter().map(|(id, w)| {
            if self.unanswered(id) {
                (w.began + BEGIN_WAIT).min(w.asked + GIVE_UP)
            } else {
                w.asked + GIVE_UP
            }
        });
        let again = self.again.iter().map(|(at, _)| *at);
        self.node
            .poll_timeout()
            .into_iter()
            .chain(waiting)
            .chain(again)
            .min()
    }

    /// Whether the leader has not asked this server to prepare `tx` yet (nor decided it).
    fn unanswered(&self, tx: &str) -> bool {
        !self.node.is_prepared(tx) && self.node.outcome(tx).is_none()
    }

    /// Carries out what is due, and returns what the reactor must do, in order. Deletes due to
    /// start again are returned as requests to handle afresh.
    pub(super) fn turn(&mut self, now: Instant) -> (Vec<Out>, Vec<(Waiting, Request)>) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        let mut out = Vec::new();
        let stale: Vec<String> = self
            .waiting
            .iter()
            .filter(|(id, w)| {
                now >= w.began + BEGIN_WAIT && self.unanswered(id) || now >= w.asked + GIVE_UP
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if self.node.is_prepared(&id) {
                // Prepared: the outcome is the participants' to find; the client hears what
                // is known so far.
                if let Some(w) = self.waiting.remove(&id) {
                    let channel = &w.room.channel;
                    out.push(Out::Reply {
                        route: w.route,
                        echo: w.echo,
                        reply: Reply::error(
                            "delete",
                            &format!(
                                "the servers have not decided yet whether to delete `{channel}` \
                                 (one is unreachable); it takes no posts until they do"
                            ),
                        ),
                    });
                }
            } else {
                // Never prepared: give this attempt up (a late prepare is answered no).
                self.node.abandon(&id);
            }
        }
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Send { to, msg } => {
                    let env = PeerRequest::TwoPc {
                        from: self.me.clone(),
                        msg,
                    }
                    .to_envelope();
                    out.push(Out::Send { to, env });
                }
                Action::Record(r) => out.push(self.record(now, r)),
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.again)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.again = later;
        let again = due
            .into_iter()
            .map(|(_, w)| {
                let req = Request::Delete {
                    user: w.room.owner.clone(),
                    channel: w.room.channel.clone(),
                };
                (w, req)
            })
            .collect();
        (out, again)
    }

    /// A record of the machine's, as the event that stores it; a decision answers the client
    /// waiting for it, or (an abort, with time left) makes it try again.
    fn record(&mut self, now: Instant, r: Record<Room>) -> Out {
        let (kind, decided) = match r {
            Record::Prepared(tx) => {
                let kind = EventKind::Room(RoomKind::Prepare {
                    channel: tx.payload.channel.clone(),
                    owner: tx.payload.owner.clone(),
                    leader: name(&tx.leader),
                    participants: tx.participants.iter().map(|p| name(p)).collect(),
                    tx: tx.id,
                });
                (kind, None)
            }
            Record::Committed(tx) => {
                let id = tx.id.clone();
                let kind = EventKind::Room(RoomKind::Delete {
                    tx: tx.id,
                    channel: tx.payload.channel,
                });
                (kind, Some((id, true)))
            }
            Record::Aborted { tx } => (
                EventKind::Room(RoomKind::Abort { tx: tx.clone() }),
                Some((tx, false)),
            ),
        };
        let kind = Box::new(kind);
        let internal = |kind| Out::Record {
            kind,
            request: None,
            route: Route::Internal,
            echo: None,
            channel: None,
            failed: None,
        };
        let Some((id, committed)) = decided else {
            return internal(kind);
        };
        let Some(w) = self.waiting.remove(&id) else {
            return internal(kind);
        };
        if committed {
            return Out::Record {
                kind,
                request: w.request.clone(),
                route: w.route,
                echo: w.echo,
                channel: Some(w.room.channel),
                failed: None,
            };
        }
        if now + AGAIN_AFTER < w.asked + GIVE_UP {
            self.again.push((now + AGAIN_AFTER, w));
            return internal(kind);
        }
        let channel = w.room.channel.clone();
        Out::Record {
            kind,
            request: None,
            route: w.route,
            echo: w.echo,
            channel: Some(w.room.channel),
            failed: Some(format!(
                "the servers could not agree to delete `{channel}` now (one may have just \
                 stopped); try again"
            )),
        }
    }
}

/// A server name the machine carries: every one came from a validated message or event, or
/// is this server's own.
fn name(s: &str) -> Name {
    // Server names in transactions are parsed on arrival (palaver_proto::room), or this
    // server's own, so they are valid names.
    Name::parse(s).expect("a transaction names valid servers")
}
