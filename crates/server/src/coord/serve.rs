//! The peer endpoint of [`Coordination`]: what other servers, operators and direct clients ask
//! a server, and its answers.

use std::time::Instant;

use palaver_core::election::Election;
use palaver_core::replication::VersionVector;
use palaver_core::{Lamport, Member};
use palaver_proto::{Envelope, Event, ProtoError, Reply, Status, MAX_PAGE_BYTES};
use palaver_store::Store;
use rmpv::Value;

use super::replicate::{parse_vector, vector_value};
use crate::link::send_routed;

use super::{is_client_request, Coordination, Data, Inbound, MAX_FETCH};

impl Coordination {
    /// Answers requests that arrived on the peer endpoint.
    pub(super) fn serve_peers(
        &mut self,
        now: Instant,
        lamport: &mut Lamport,
        publisher: &zmq::Socket,
        data: Data<'_>,
    ) {
        while let Ok(mut frames) = self.router.recv_multipart(zmq::DONTWAIT) {
            if frames.last().is_some_and(|b| is_client_request(b)) {
                // A client talking to this server directly: the reactor answers it like a
                // request from the broker.
                self.inbound.push(Inbound::Client(frames));
                continue;
            }
            let body = frames.pop().unwrap_or_default();
            let before = *lamport;
            // The requester's correlation id, repeated in the answer (see `Link`).
            let mut cid = None;
            let reply = match Envelope::decode(&body) {
                Ok(env) => {
                    cid = env.data.opt_counter("cid").ok().flatten();
                    match env.data.clock() {
                        Ok(c) => lamport.observe(c.unwrap_or(0)),
                        Err(e) => {
                            let reply = with_cid(Reply::rejection(Some(&env.service), &e), cid);
                            self.answer(&frames, reply, lamport);
                            continue;
                        }
                    }
                    if env.service == "digest" {
                        // Reading every event takes seconds on a large store: not here.
                        self.start_digest(frames, cid);
                        continue;
                    }
                    if env.service == "replica" {
                        // One way, like an ack: a batch of a peer's events. Only the
                        // cluster reaches this endpoint; a malformed batch is answered and logged.
                        match self.read_replica(env) {
                            Ok(()) => continue,
                            Err(e) => Reply::error("replica", &e),
                        }
                    } else if env.service == "ack" {
                        // One way: a peer's ack of our events is never answered; a malformed
                        // one is, like any bad request.
                        match self.parse_ack(&env) {
                            Ok(Some((peer, seq))) => {
                                self.inbound.push(Inbound::Ack { peer, seq });
                                continue;
                            }
                            Ok(None) => Reply::error("ack", "this server is not the origin"),
                            Err(e) => Reply::error("ack", &e.to_string()),
                        }
                    } else {
                        self.peer_request(&env, now, lamport, data)
                            .unwrap_or_else(|e| Reply::error(&env.service, &e.to_string()))
                    }
                }
                Err(e) => Reply::rejection(Envelope::sniff_service(&body).as_deref(), &e),
            };
            if Reply::status(&reply) == Status::Error {
                // A refused request moves no clock.
                *lamport = before;
            }
            self.answer(&frames, with_cid(reply, cid), lamport);
        }
        self.carry_out(now, lamport, publisher);
    }

    /// Stamps `reply` and sends it back along `route` (the requester's routing frames) on the
    /// peer endpoint: answers to peers, operators and clients that came here directly.
    pub fn answer(&self, route: &[Vec<u8>], mut reply: Envelope, lamport: &mut Lamport) {
        reply.stamp(
            self.clock.now(),
            crate::reactor::stamp_clock(&reply, lamport),
        );
        if let Err(e) = send_routed(&self.router, route, &reply.to_bytes()) {
            tracing::debug!(error = %e, "peer endpoint reply dropped");
        }
    }

    /// Computes a digest of the store on a thread with its own read connection; the answer
    /// comes back through `digests` (see [`Coordination::answer_digests`]).
    fn start_digest(&self, route: Vec<Vec<u8>>, cid: Option<u64>) {
        let (dir, name, ctx, endpoint) = (
            self.data_dir.clone(),
            self.name.to_string(),
            self.ctx.clone(),
            self.digest_endpoint.clone(),
        );
        let work = move || {
            let reply = match Store::open(&dir).and_then(|s| s.summary()) {
                Ok((vector, digest)) => {
                    let vector: VersionVector = vector.into_iter().collect();
                    Reply::ok("digest")
                        .with("name", name)
                        .with("events", vector.total())
                        .with("vector", vector_value(&vector))
                        .with("digest", format!("{digest:016x}"))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot digest the store");
                    Reply::error("digest", "the server could not read its events")
                }
            };
            let body = with_cid(reply, cid).to_bytes();
            let sent = ctx.socket(zmq::PUSH).and_then(|push| {
                push.set_linger(1000)?;
                push.connect(&endpoint)?;
                push.send_multipart(
                    route
                        .iter()
                        .map(Vec::as_slice)
                        .chain(std::iter::once(&body[..])),
                    0,
                )
            });
            if let Err(e) = sent {
                tracing::warn!(error = %e, "digest answer lost");
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("digest".into())
            .spawn(work)
        {
            tracing::error!(error = %e, "cannot start a digest");
        }
    }

    /// Sends the digests that are done to those who asked.
    pub(super) fn answer_digests(&mut self, lamport: &mut Lamport) {
        while let Ok(mut frames) = self.digests.recv_multipart(zmq::DONTWAIT) {
            let body = frames.pop().unwrap_or_default();
            if let Ok(reply) = Envelope::decode(&body) {
                self.answer(&frames, reply, lamport);
            }
        }
    }

    fn peer_request(
        &mut self,
        env: &Envelope,
        now: Instant,
        lamport: &mut Lamport,
        data: Data<'_>,
    ) -> Result<Envelope, ProtoError> {
        let d = &env.data;
        let facts = data.facts;
        Ok(match env.service.as_str() {
            "vector" => {
                // The asker's own vector is optional, but must be well-formed when given.
                let theirs = if d.get("vector").is_some() {
                    Some(parse_vector(env)?)
                } else {
                    None
                };
                self.meet(d);
                if let (Ok(Some(peer)), Some(theirs)) = (d.opt_str("user"), theirs) {
                    let seq = theirs.get(self.name.as_str());
                    self.inbound.push(Inbound::Ack {
                        peer: peer.to_owned(),
                        seq,
                    });
                }
                Reply::ok("vector").with("vector", vector_value(data.vector))
            }
            "fetch" => {
                let origin = d.name("origin")?.to_string();
                let after =
                    d.get("after")
                        .and_then(Value::as_u64)
                        .ok_or(ProtoError::WrongType {
                            field: "after",
                            expected: "a non-negative integer",
                        })?;
                let limit = d
                    .get("limit")
                    .and_then(Value::as_u64)
                    .unwrap_or(MAX_FETCH as u64);
                let limit = usize::try_from(limit).map_or(MAX_FETCH, |l| l.clamp(1, MAX_FETCH));
                let events = match data.store.events_after(&origin, after, limit) {
                    // At most MAX_PAGE_BYTES of events, however large each one is.
                    Ok(mut events) => {
                        let fits =
                            super::replicate::pages(&events, Event::size_bound, MAX_PAGE_BYTES)
                                .next()
                                .map_or(0, <[Event]>::len);
                        events.truncate(fits);
                        Ok(events)
                    }
                    Err(e) => Err(e),
                };
                let events = match events {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read events for a peer");
                        return Ok(Reply::error(
                            "fetch",
                            "the server could not read its events",
                        ));
                    }
                };
                let held = data.vector.get(&origin);
                let last = events.last().map_or(after, |e| e.seq);
                let events: Vec<Value> = events.iter().map(Event::to_value).collect();
                Reply::ok("fetch")
                    .with("origin", origin.as_str())
                    .with("events", events)
                    .with("more", last < held)
            }
            "clock" => {
                let reply = Reply::ok("clock")
                    .with("time", self.clock.now())
                    .with("name", self.name.as_str());
                match self.coordinator() {
                    Some(c) => reply
                        .with("coordinator", c.name.as_str())
                        .with("coordinator_rank", c.rank),
                    None => reply.with("coordinator", Value::Nil),
                }
            }
            "election" => {
                let from = match (d.opt_str("user")?, d.get("rank").and_then(Value::as_u64)) {
                    (Some(name), Some(rank)) => Some(Member::new(name, rank)),
                    _ => None,
                };
                let Some(e) = self.election.as_mut() else {
                    return Ok(Reply::error("election", "this server has no rank yet"));
                };
                if e.on_election(now, from.as_ref()) {
                    Reply::ok("election").with("election", "OK")
                } else {
                    Reply::error("election", "this server's rank is lower than yours")
                }
            }
            "coordinator" => {
                let who = self.member_named(Some(d.str("coordinator")?), d.get("rank"));
                match (who, self.election.as_mut()) {
                    (Some(who), Some(e)) => {
                        e.on_coordinator(now, &who);
                        Reply::ok("coordinator")
                    }
                    _ => Reply::error("coordinator", "unknown coordinator, or no rank yet"),
                }
            }
            "adjust" => {
                let delta = d.opt_f64("delta")?.ok_or(ProtoError::Missing("delta"))?;
                if !delta.is_finite() || delta.abs() > 86_400.0 * 365.0 {
                    return Ok(Reply::error(
                        "adjust",
                        "`delta` must be a finite number of seconds",
                    ));
                }
                self.clock.adjust(delta);
                tracing::debug!(delta, offset = self.clock.offset(), "clock adjusted");
                Reply::ok("adjust")
                    .with("time", self.clock.now())
                    .with("offset", self.clock.offset())
            }
            "sync" => {
                if self.is_coordinator() {
                    self.start_round(now, lamport);
                }
                Reply::ok("sync")
            }
            "status" => {
                let peers: Vec<Value> = self
                    .peers
                    .values()
                    .map(|p| Value::from(p.member.name.as_str()))
                    .collect();
                let mut reply = Reply::ok("status")
                    .with("name", self.name.as_str())
                    .with("addr", self.addr.as_str())
                    .with("time", self.clock.now())
                    .with("offset", self.clock.offset())
                    .with("skew", self.clock.skew())
                    .with("peers", peers)
                    .with(
                        "electing",
                        self.election.as_ref().is_some_and(Election::electing),
                    )
                    .with("rounds", self.rounds)
                    .with("users", facts.users as u64)
                    .with("channels", facts.channels as u64);
                if let Some(rank) = self.rank {
                    reply = reply.with("rank", rank);
                }
                if let Some(c) = self.coordinator() {
                    reply = reply.with("coordinator", c.name.as_str());
                }
                reply
            }
            other => return Err(ProtoError::UnknownService(other.to_owned())),
        })
    }
}

/// `reply` with the requester's correlation id, when it sent one.
fn with_cid(reply: Envelope, cid: Option<u64>) -> Envelope {
    match cid {
        Some(cid) => reply.with("cid", cid),
        None => reply,
    }
}
