//! The replication half of [`Coordination`]: vector comparisons, fetches, acks and the
//! `replica` topic. The bookkeeping itself is `palaver_core::replication`.

use std::time::Instant;

use palaver_core::replication::VersionVector;
use palaver_core::{Lamport, Member};
use palaver_proto::peer::{Introduction, PeerRequest};
use palaver_proto::{Envelope, Event, Name, MAX_PAGE_BYTES};
use rmpv::Value;

use super::{Coordination, Inbound, Peer, PeerAsk, PEER_TIMEOUT};
use crate::link::Link;

impl Coordination {
    /// What arrived for replication since the last call.
    pub fn take_inbound(&mut self) -> Vec<Inbound> {
        std::mem::take(&mut self.inbound)
    }

    /// Asks `peer` for its version vector, telling it ours (and where we are): a peer that did
    /// not know of us yet starts waiting for our acks at once.
    pub fn ask_vector(
        &mut self,
        peer: &str,
        ours: &VersionVector,
        now: Instant,
        lamport: &mut Lamport,
    ) {
        let req = PeerRequest::Vector {
            from: self.introduction(),
            vector: Some(ours.iter().map(|(o, n)| (o.to_owned(), n)).collect()),
        };
        self.ask_peer(peer, PeerAsk::Vector, &req, now, lamport);
    }

    /// A peer that introduced itself (in a `vector` request) before the reference listed it.
    pub(super) fn meet(&mut self, who: &Introduction) {
        let (name, Some(rank), Some(addr)) = (who.name.as_str(), who.rank, who.addr.as_deref())
        else {
            return;
        };
        if name == self.name.as_str() || self.peers.contains_key(name) {
            return;
        }
        let member = Member::new(name, rank);
        match Link::open(&self.ctx, addr, PEER_TIMEOUT, &self.credentials) {
            Ok(link) => {
                tracing::info!(peer = %member, addr, "peer introduced itself");
                let acks = super::ack_socket(&self.ctx, addr, &self.credentials);
                self.peers
                    .insert(name.to_owned(), Peer { member, link, acks });
                self.inbound
                    .push(Inbound::Peers(self.peers.keys().cloned().collect()));
            }
            Err(e) => tracing::warn!(peer = %member, addr, error = %e, "bad peer address"),
        }
    }

    /// Asks `peer` for `origin`'s events after `after`.
    pub fn fetch(
        &mut self,
        peer: &str,
        origin: &str,
        after: u64,
        limit: usize,
        now: Instant,
        lamport: &mut Lamport,
    ) {
        let kind = PeerAsk::Fetch {
            origin: origin.to_owned(),
        };
        let sent = match Name::parse(origin) {
            Ok(origin) => {
                let req = PeerRequest::Fetch {
                    origin,
                    after,
                    limit: u64::try_from(limit).ok(),
                };
                self.ask_peer(peer, kind, &req, now, lamport)
            }
            Err(_) => false,
        };
        if !sent {
            self.inbound.push(Inbound::FetchFailed {
                origin: origin.to_owned(),
            });
        }
    }

    /// Tells `origin` that we hold its events up to `seq`: straight to its peer endpoint, one
    /// way. No round trip to wait for; a lost ack only makes the origin wait its deadline once,
    /// and the next vector exchange carries the same news.
    pub fn ack(&mut self, origin: &str, seq: u64, lamport: &mut Lamport) {
        let Ok(origin_name) = Name::parse(origin) else {
            return;
        };
        let req = PeerRequest::Ack {
            from: self.name.clone(),
            origin: origin_name,
            seq,
        };
        let mut env = req.to_envelope();
        env.stamp(self.clock.now(), lamport.tick());
        self.push(origin, &env.to_bytes(), "ack");
    }

    /// Sends this server's newly committed events to every peer's endpoint, in batches of at
    /// most [`MAX_PAGE_BYTES`] of events (one event at least), so that any mix of message
    /// sizes passes every receiver's frame limit. A batch a peer misses (its queue is full, it
    /// is down) is repaired by anti-entropy.
    pub fn replicate_events(&mut self, events: &[Event], lamport: &mut Lamport) {
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for chunk in pages(events, Event::size_bound, MAX_PAGE_BYTES) {
            // Encoded once for every peer; the request's own form would copy each event.
            let list: Vec<Value> = chunk.iter().map(Event::to_value).collect();
            let mut env = Envelope::new("replica")
                .with("origin", self.name.as_str())
                .with("events", list);
            env.stamp(self.clock.now(), lamport.tick());
            let body = env.to_bytes();
            for peer in &names {
                self.push(peer, &body, "replica batch");
            }
        }
    }

    /// Passes clients' beats taken here on to every peer, one way. A lost message costs
    /// nothing lasting: the client beats again within a third of the presence timeout.
    pub fn pass_beats(&mut self, beats: Vec<palaver_proto::peer::Beat>, lamport: &mut Lamport) {
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for chunk in beats.chunks(palaver_proto::peer::MAX_BEATS) {
            let mut env = PeerRequest::Beats {
                beats: chunk.to_vec(),
            }
            .to_envelope();
            env.stamp(self.clock.now(), lamport.tick());
            let body = env.to_bytes();
            for peer in &names {
                self.push(peer, &body, "beats");
            }
        }
    }

    /// Sends `env`, a one-way message (of a two-phase delete), to `peer`; the protocol sends
    /// again what goes unanswered.
    pub fn tell(&mut self, peer: &str, mut env: Envelope, lamport: &mut Lamport) {
        env.stamp(self.clock.now(), lamport.tick());
        self.push(peer, &env.to_bytes(), "twopc");
    }

    /// Sends a one-way message to `peer`'s endpoint; a failure is logged (rate-limited) and
    /// counted, and left to anti-entropy.
    fn push(&mut self, peer: &str, body: &[u8], what: &'static str) {
        let socket = self.peers.get(peer).and_then(|p| p.acks.as_ref());
        let sent = match socket {
            Some(s) => s
                .send_multipart([&[][..], body], zmq::DONTWAIT)
                .map_err(|e| e.to_string()),
            None => Err("no route to this peer yet".to_owned()),
        };
        if let Err(error) = sent {
            self.dropped += 1;
            if let Some(quiet) = self.drop_log.admit(Instant::now()) {
                tracing::warn!(peer, what, %error, dropped = self.dropped, unlogged = quiet,
                    "not sent to a peer; anti-entropy will repair it");
            }
        }
    }
}

/// Splits `items` into runs of at most `max` bytes by `size`, each run holding at least one
/// item: what fits in one frame.
fn pages<T>(items: &[T], size: impl Fn(&T) -> usize, max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|item| {
                bytes += size(item);
                bytes <= max
            })
            .count()
            .max(1);
        let (page, tail) = rest.split_at(n);
        rest = tail;
        Some(page)
    })
}

#[cfg(test)]
mod tests {
    use super::pages;

    #[test]
    fn pages_are_capped_in_bytes_and_never_empty() {
        let sizes = [10, 10, 10, 25, 5, 40, 1];
        let got: Vec<Vec<usize>> = pages(&sizes, |s| *s, 30).map(<[usize]>::to_vec).collect();
        assert_eq!(got, vec![vec![10, 10, 10], vec![25, 5], vec![40], vec![1]]);
        assert_eq!(pages(&[] as &[usize], |s| *s, 30).count(), 0);
    }
}
