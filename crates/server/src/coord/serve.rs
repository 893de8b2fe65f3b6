//! The peer endpoint of [`Coordination`]: what other servers, operators and direct clients ask
//! a server, and its answers.

use std::time::Instant;

use palaver_core::election::Election;
use palaver_core::{Lamport, Member};
use palaver_proto::peer::{Claim, PeerReply, PeerRequest, StatusReport, MAX_ADJUST};
use palaver_proto::{Envelope, Name, Reply, Status, MAX_PAGE_BYTES};
use palaver_store::Store;

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
                    let service = env.service.clone();
                    let parsed = env.data.clock().and_then(|c| {
                        let req = PeerRequest::parse(env)?;
                        Ok((c, req))
                    });
                    match parsed {
                        Err(e) => {
                            self.log_bad(&service, &e.to_string());
                            Reply::rejection(Some(&service), &e)
                        }
                        Ok((c, req)) => {
                            lamport.observe(c.unwrap_or(0));
                            match self.peer_request(req, &frames, cid, now, lamport, data) {
                                Some(reply) => reply.to_envelope(),
                                // One way, or answered later (a digest).
                                None => continue,
                            }
                        }
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

    /// The answer to `clock`: the time, and whom this server takes for coordinator.
    fn clock_reply(&self) -> PeerReply {
        PeerReply::Clock {
            time: self.clock.now(),
            coordinator: match self.coordinator() {
                Some(c) => match Name::parse(&c.name) {
                    Ok(name) => Claim::Named(name, Some(c.rank)),
                    Err(_) => Claim::Nobody,
                },
                None => Claim::Nobody,
            },
        }
    }

    /// Stamps `reply` and sends it back along `route` (the requester's routing frames) on the
    /// peer endpoint: answers to peers, operators and clients that came here directly.
    pub fn answer(&self, route: &[Vec<u8>], mut reply: Envelope, lamport: &mut Lamport) {
        let refused = palaver_proto::Reply::status(&reply) == palaver_proto::Status::Error;
        reply.stamp(self.clock.now(), lamport.for_answer(refused));
        if let Err(e) = send_routed(&self.router, route, &reply.to_bytes()) {
            tracing::debug!(error = %e, "peer endpoint reply dropped");
        }
    }

    /// Computes a digest of the store on a thread with its own read connection; the answer
    /// comes back through `digests` (see [`Coordination::answer_digests`]).
    fn start_digest(&self, route: Vec<Vec<u8>>, cid: Option<u64>) {
        let (dir, name, ctx, endpoint) = (
            self.data_dir.clone(),
            self.name.clone(),
            self.ctx.clone(),
            self.digest_endpoint.clone(),
        );
        let work = move || {
            let reply = match Store::open(&dir).and_then(|s| s.summary()) {
                Ok((vector, digest)) => PeerReply::Digest {
                    name,
                    events: vector.iter().map(|(_, n)| n).sum(),
                    vector: vector.into_iter().collect(),
                    digest: format!("{digest:016x}"),
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot digest the store");
                    PeerReply::Refused {
                        service: "digest".into(),
                        reason: "the server could not read its events".into(),
                    }
                }
            }
            .to_envelope();
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

    /// A refused peer message: logged at most once a second, with a count.
    fn log_bad(&mut self, service: &str, why: &str) {
        self.dropped += 1;
        if let Some(quiet) = self.drop_log.admit(Instant::now()) {
            tracing::warn!(
                service,
                error = why,
                dropped = self.dropped,
                unlogged = quiet,
                "refused a message on the peer endpoint"
            );
        }
    }

    /// Carries out one request of a peer (or an operator); the answer, if it gets one now.
    fn peer_request(
        &mut self,
        req: PeerRequest,
        route: &[Vec<u8>],
        cid: Option<u64>,
        now: Instant,
        lamport: &mut Lamport,
        data: Data<'_>,
    ) -> Option<PeerReply> {
        let facts = data.facts;
        let refuse = |service: &str, reason: &str| {
            Some(PeerReply::Refused {
                service: service.to_owned(),
                reason: reason.to_owned(),
            })
        };
        Some(match req {
            PeerRequest::Digest => {
                // Reading every event takes seconds on a large store: not here.
                self.start_digest(route.to_vec(), cid);
                return None;
            }
            PeerRequest::Ack { from, origin, seq } => {
                // One way: never answered, unless it is for another server.
                if origin != self.name {
                    self.log_bad("ack", "an ack for another origin");
                    return refuse("ack", "this server is not the origin");
                }
                self.inbound.push(Inbound::Ack {
                    peer: from.to_string(),
                    seq,
                });
                return None;
            }
            PeerRequest::Replica { origin, events } => {
                // One way: a batch of a peer's own events.
                if origin == self.name {
                    self.log_bad("replica", "a batch of this server's own events");
                    return refuse("replica", "a batch holds only its sender's own events");
                }
                self.inbound.push(Inbound::Replica {
                    origin: origin.to_string(),
                    events,
                });
                return None;
            }
            PeerRequest::Beats { beats } => {
                // One way: clients' beats a peer took.
                self.inbound.push(Inbound::Beats(beats));
                return None;
            }
            PeerRequest::TwoPc { from, msg } => {
                // One way: a step of a two-phase delete.
                if from == self.name {
                    self.log_bad("twopc", "a message in this server's own name");
                    return None;
                }
                self.inbound.push(Inbound::TwoPc {
                    from: from.to_string(),
                    msg,
                });
                return None;
            }
            PeerRequest::Vector { from, vector } => {
                if let Some(i) = &from {
                    self.meet(i);
                    if let Some(theirs) = &vector {
                        // What the asker holds of our events, it acknowledges.
                        let seq = theirs.get(self.name.as_str()).copied().unwrap_or(0);
                        self.inbound.push(Inbound::Ack {
                            peer: i.name.to_string(),
                            seq,
                        });
                    }
                }
                PeerReply::Vector {
                    vector: data.vector.iter().map(|(o, n)| (o.to_owned(), n)).collect(),
                }
            }
            PeerRequest::Fetch {
                origin,
                after,
                limit,
            } => {
                let limit = limit
                    .and_then(|l| usize::try_from(l).ok())
                    .map_or(MAX_FETCH, |l| l.clamp(1, MAX_FETCH));
                // At most MAX_PAGE_BYTES of events, however large each one is.
                let page = data
                    .store
                    .events_page(origin.as_str(), after, limit, MAX_PAGE_BYTES);
                let events = match page {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read events for a peer");
                        return refuse("fetch", "the server could not read its events");
                    }
                };
                let held = data.vector.get(origin.as_str());
                let last = events.last().map_or(after, |e| e.seq);
                PeerReply::Fetched {
                    origin,
                    events,
                    more: last < held,
                }
            }
            PeerRequest::Clock { set, .. } => {
                if let Some(t) = set {
                    // Told what time it is (another implementation's coordinator): shift the
                    // clock by the difference, within the same bound as `adjust`.
                    let delta = t - self.clock.now();
                    if delta.abs() > MAX_ADJUST {
                        return refuse("clock", "a clock can be set at most a year away");
                    }
                    self.clock.adjust(delta);
                    tracing::info!(
                        delta,
                        offset = self.clock.offset(),
                        "clock set by a `clock` request"
                    );
                }
                self.clock_reply()
            }
            PeerRequest::Election { from } => {
                let from = from.and_then(|i| Some(Member::new(i.name.as_str(), i.rank?)));
                let Some(e) = self.election.as_mut() else {
                    return refuse("election", "this server has no rank yet");
                };
                if e.on_election(now, from.as_ref()) {
                    PeerReply::Election
                } else {
                    return refuse("election", "this server's rank is lower than yours");
                }
            }
            PeerRequest::Coordinator { coordinator, rank } => {
                let who = self.member_named(Some(coordinator.as_str()), rank);
                match (who, self.election.as_mut()) {
                    (Some(who), Some(e)) => {
                        e.on_coordinator(now, &who);
                        PeerReply::Done {
                            service: "coordinator".into(),
                        }
                    }
                    _ => return refuse("coordinator", "unknown coordinator, or no rank yet"),
                }
            }
            PeerRequest::Adjust { delta } => {
                self.clock.adjust(delta);
                tracing::debug!(delta, offset = self.clock.offset(), "clock adjusted");
                PeerReply::Adjusted {
                    time: self.clock.now(),
                    offset: self.clock.offset(),
                }
            }
            PeerRequest::Sync => {
                self.schedule.on_sync_asked(now);
                self.do_duties(now, lamport);
                PeerReply::Done {
                    service: "sync".into(),
                }
            }
            PeerRequest::Status => PeerReply::Status(Box::new(StatusReport {
                name: self.name.clone(),
                addr: self.addr.clone(),
                rank: self.rank,
                coordinator: self.coordinator().and_then(|c| Name::parse(&c.name).ok()),
                time: self.clock.now(),
                offset: self.clock.offset(),
                skew: self.clock.skew(),
                peers: self.peers.keys().cloned().collect(),
                electing: self.election.as_ref().is_some_and(Election::electing),
                rounds: self.rounds,
                users: facts.users as u64,
                channels: facts.channels as u64,
            })),
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
