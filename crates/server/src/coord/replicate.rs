//! The replication half of [`Coordination`]: vector comparisons, fetches, acks and the
//! `replica` topic. The bookkeeping itself is `palaver_core::replication`.

use std::time::Instant;

use palaver_core::replication::VersionVector;
use palaver_core::{Lamport, Member};
use palaver_proto::{Envelope, Event, Name, ProtoError, Reply, Status, TOPIC_REPLICA};
use rmpv::Value;

use super::{Coordination, Inbound, Peer, PeerAsk, PEER_TIMEOUT};
use crate::link::Link;

impl Coordination {
    /// What arrived for replication since the last call.
    pub fn take_inbound(&mut self) -> Vec<Inbound> {
        std::mem::take(&mut self.inbound)
    }

    /// Asks `peer` for its version vector.
    /// Asks `peer` for its version vector, telling it ours (and where we are): a peer that did
    /// not know of us yet starts waiting for our acks at once.
    pub fn ask_vector(
        &mut self,
        peer: &str,
        ours: &VersionVector,
        now: Instant,
        lamport: &mut Lamport,
    ) {
        let env = self
            .me_fields(Envelope::new("vector"))
            .with("addr", self.addr.as_str())
            .with("vector", vector_value(ours));
        self.ask_peer(peer, PeerAsk::Vector, env, now, lamport);
    }

    /// A peer that introduced itself (in a `vector` request) before the reference listed it.
    pub(super) fn meet(&mut self, d: &palaver_proto::Map) {
        let (Ok(Some(name)), Some(rank), Ok(Some(addr))) = (
            d.opt_str("user"),
            d.get("rank").and_then(Value::as_u64),
            d.opt_str("addr"),
        ) else {
            return;
        };
        if name == self.name.as_str() || self.peers.contains_key(name) || Name::parse(name).is_err()
        {
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
        let env = self
            .me_fields(Envelope::new("fetch"))
            .with("origin", origin)
            .with("after", after)
            .with("limit", limit as u64);
        if !self.ask_peer(
            peer,
            PeerAsk::Fetch {
                origin: origin.to_owned(),
            },
            env,
            now,
            lamport,
        ) {
            self.inbound.push(Inbound::FetchFailed {
                origin: origin.to_owned(),
            });
        }
    }

    /// Tells `origin` that we hold its events up to `seq`: straight to its peer endpoint, one
    /// way (two hops fewer than through the proxy, on every write's path), or published on
    /// `replica` when we do not know its address yet. No round trip to wait for; a lost ack
    /// only makes the origin wait its deadline once.
    pub fn ack(&self, origin: &str, seq: u64, lamport: &mut Lamport, publisher: &zmq::Socket) {
        let mut env = Envelope::new("ack")
            .with("user", self.name.as_str())
            .with("origin", origin)
            .with("seq", seq);
        env.stamp(self.clock.now(), lamport.tick());
        let body = env.to_bytes();
        let direct = self.peers.get(origin).and_then(|p| p.acks.as_ref());
        let sent = match direct {
            Some(socket) => socket.send_multipart([&[][..], &body[..]], zmq::DONTWAIT),
            None => publisher.send_multipart([TOPIC_REPLICA.as_bytes(), &body[..]], zmq::DONTWAIT),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "ack dropped");
        }
    }

    /// Publishes this server's newly committed events on `replica`.
    pub fn publish_events(
        &self,
        events: &[&Event],
        lamport: &mut Lamport,
        publisher: &zmq::Socket,
    ) {
        if events.is_empty() {
            return;
        }
        let list: Vec<Value> = events.iter().map(|e| e.to_value()).collect();
        let mut env = Envelope::new("replica")
            .with("origin", self.name.as_str())
            .with("events", list);
        env.stamp(self.clock.now(), lamport.tick());
        if let Err(e) = publisher.send_multipart(
            [TOPIC_REPLICA.as_bytes(), &env.to_bytes()[..]],
            zmq::DONTWAIT,
        ) {
            tracing::warn!(error = %e, "replica publication dropped; anti-entropy will repair it");
        }
    }

    pub(super) fn read_ack(&mut self, env: &Envelope) {
        if let Ok(Some((peer, seq))) = self.parse_ack(env) {
            self.inbound.push(Inbound::Ack { peer, seq });
        }
    }

    /// An ack of our own events: who sent it and how far it holds them. `None` for an ack
    /// meant for another server (on `replica`, every server hears them all).
    ///
    /// # Errors
    /// When a field is missing or invalid.
    pub(super) fn parse_ack(&self, env: &Envelope) -> Result<Option<(String, u64)>, ProtoError> {
        let d = &env.data;
        let peer = d.name("user")?;
        let origin = d.name("origin")?;
        let seq = d
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or(ProtoError::WrongType {
                field: "seq",
                expected: "a non-negative integer",
            })?;
        Ok((origin == self.name).then(|| (peer.to_string(), seq)))
    }

    pub(super) fn read_replica(&mut self, mut env: Envelope) {
        let Ok(origin) = env.data.name("origin") else {
            return;
        };
        if origin == self.name {
            return;
        }
        match parse_events(&mut env) {
            Ok(events) if events.iter().all(|e| e.origin == origin.as_str()) => {
                self.inbound.push(Inbound::Replica {
                    origin: origin.to_string(),
                    events,
                });
            }
            Ok(_) => tracing::warn!(%origin, "replica events of another origin; ignored"),
            Err(e) => tracing::warn!(%origin, error = %e, "bad replica publication"),
        }
    }
}

/// Takes the events out of a replica publication or a fetch reply.
pub(super) fn parse_events(env: &mut Envelope) -> Result<Vec<Event>, ProtoError> {
    match env.data.take("events") {
        Some(Value::Array(items)) => items.into_iter().map(Event::from_value).collect(),
        _ => Err(ProtoError::WrongType {
            field: "events",
            expected: "a list of events",
        }),
    }
}

pub(super) fn parse_fetched(mut env: Envelope) -> Result<(Vec<Event>, bool), ProtoError> {
    if Reply::status(&env) == Status::Error {
        return Err(ProtoError::Malformed(
            Reply::error_text(&env).unwrap_or_default(),
        ));
    }
    let more = matches!(env.data.get("more"), Some(Value::Boolean(true)));
    Ok((parse_events(&mut env)?, more))
}

pub(super) fn parse_vector(env: &Envelope) -> Result<VersionVector, ProtoError> {
    let wrong = ProtoError::WrongType {
        field: "vector",
        expected: "a map of origin to count",
    };
    let Some(Value::Map(entries)) = env.data.get("vector") else {
        return Err(wrong);
    };
    entries
        .iter()
        .map(|(k, v)| match (k.as_str(), v.as_u64()) {
            (Some(o), Some(n)) => Ok((o.to_owned(), n)),
            _ => Err(wrong.clone()),
        })
        .collect()
}

pub(super) fn vector_value(v: &VersionVector) -> Value {
    Value::Map(
        v.iter()
            .map(|(o, s)| (Value::from(o), Value::from(s)))
            .collect(),
    )
}
