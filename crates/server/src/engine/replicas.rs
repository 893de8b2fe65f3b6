//! Replication, as the engine drives it: the peers' events taken in order (and set aside while
//! commits fail), and what `palaver_core::replication` asks for turned into outputs.

use palaver_core::replication;
use palaver_proto::Event;

use super::{Engine, PeerInput, STARTUP_GRACE};

impl Engine {
    /// Takes in what coordination received.
    pub(super) fn inbound(&mut self, inb: PeerInput) {
        let now = self.now.at;
        let mut store = Vec::new();
        match inb {
            PeerInput::Peers(names) => {
                self.deletes.set_peers(names.clone());
                self.repl.set_peers(now, names);
            }
            // While its commits fail, a server takes nothing more into memory: what it cannot
            // store would only pile up (it grew by the cluster's whole write rate). It is not
            // acknowledged, so the origins stop waiting for this server, and it is fetched
            // once commits work again.
            PeerInput::Replica { events, .. } if self.failing.is_some() => {
                self.set_aside(events.len());
            }
            PeerInput::Vector { .. } if self.failing.is_some() => {}
            PeerInput::Fetched { origin, events, .. } if self.failing.is_some() => {
                self.set_aside(events.len());
                self.repl.on_fetch_failed(&origin);
            }
            PeerInput::Replica { origin, events } => {
                self.offer(&origin, &origin, events, &mut store);
            }
            PeerInput::Vector { peer, vector } => self.repl.on_vector(now, &peer, &vector),
            PeerInput::Fetched {
                peer,
                origin,
                events,
                more,
            } => {
                self.offer(&peer, &origin, events, &mut store);
                if !store.is_empty() && !self.accepting {
                    // Catching up: a server that is fetching is not cut off from its peers, so
                    // it serves once caught up, not at the end of a grace.
                    self.serve_anyway_at = self.serve_anyway_at.max(now + STARTUP_GRACE);
                }
                self.repl.on_fetched(now, &peer, &origin, more);
            }
            PeerInput::FetchFailed { origin } => self.repl.on_fetch_failed(&origin),
            PeerInput::Ack { peer, seq } => self.repl.on_ack(now, &peer, seq),
            PeerInput::Beats(beats) => self.state.beats_from_peer(&beats, self.wall()),
            PeerInput::TwoPc { from, msg } => {
                self.deletes.on_message(now, &from, msg, &self.state);
            }
        }
        if !store.is_empty() {
            self.pending_since.get_or_insert(now);
            self.pending.extend(store);
        }
    }

    /// Takes the events that are next in line. They take effect in memory and are acknowledged
    /// at once: the origin already has them on its disk, so they are durable before any client
    /// hears of them, here or anywhere. They reach this server's disk with its next write
    /// commit, or within `REPLICA_COMMIT_DELAY`; a crash before that loses nothing that the
    /// origin and anti-entropy cannot give back.
    pub(super) fn offer(
        &mut self,
        from: &str,
        origin: &str,
        events: Vec<Event>,
        out: &mut Vec<Event>,
    ) {
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let take = self.repl.offer(self.now.at, from, origin, &seqs);
        let before = out.len();
        for (e, _) in events.into_iter().zip(take).filter(|(_, t)| *t) {
            if let Some(hide) = self.state.apply(&e) {
                tracing::info!(server = %self.name, event = %e.id(), request = ?e.request,
                    hidden = %format!("{}:{}", hide.0, hide.1), "a request made twice: the later event is hidden");
                self.hidden.push(hide);
            }
            self.deletes.learn(self.now.at, &e);
            self.claims.learn(&e);
            self.lamport.observe(e.lamport);
            out.push(e);
        }
        if out.len() > before {
            self.repl.on_stored([origin.to_owned()]);
        }
    }

    /// Turns what replication asks for into outputs.
    pub(super) fn replicate(&mut self) {
        while let Some(action) = self.repl.poll_action() {
            match action {
                replication::Action::AskVector { peer } => self.ask_vector(&peer),
                replication::Action::Fetch {
                    peer,
                    origin,
                    after,
                    limit,
                } => self.fetch(&peer, &origin, after, limit),
                replication::Action::Ack { peer, seq } => self.ack(&peer, seq),
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
}
