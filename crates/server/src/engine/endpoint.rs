//! The engine's side of the peer endpoint: every frame that arrives there (a peer's request or
//! one-way message, an operator's, or a client's sent straight to this server), every answer to
//! what this server asked, and the one-way messages it sends (replica batches, acks, beats,
//! two-phase steps). Nothing here touches a socket: frames come in as bytes and leave as
//! [`Output::Tell`], [`Output::Ask`] and [`Output::Reply`], stamped with the engine's clocks.

use palaver_proto::peer::{PeerReply, PeerRequest, StatusReport};
use palaver_proto::{Envelope, Event, Name, Reply, Status, MAX_PAGE_BYTES};
use rmpv::Value;

use super::coordination::{Answered, Sink};
use super::{Ask, Engine, Failure, Output, PeerAsk, PeerInput, Route};

/// The largest page of events a server sends for one `fetch`.
pub const MAX_FETCH: usize = 5000;

/// Whether a frame on the peer endpoint is a client service that a client may ask a server for
/// directly, as it would through the broker (the one list, `palaver_proto::SERVICES`, says).
fn is_client_request(body: &[u8]) -> bool {
    Envelope::sniff_service(body)
        .and_then(|s| palaver_proto::service(&s))
        .is_some_and(|s| s.direct)
}

impl Engine {
    /// Coordination's view of the engine's clocks and outputs.
    pub(super) fn sink(&mut self) -> (Sink<'_>, &mut super::coordination::Coordination) {
        (
            Sink {
                at: self.now.at,
                machine: self.now.wall,
                lamport: &mut self.lamport,
                out: &mut self.outputs,
            },
            &mut self.coord,
        )
    }

    /// Hands replication and two-phase deletes the live peers, when they changed.
    pub(super) fn peers_changed(&mut self) {
        if let Some(names) = self.coord.take_peers_changed() {
            self.inbound(PeerInput::Peers(names));
        }
        if let Some(voters) = self.coord.take_voters_changed() {
            self.claims.set_members(voters);
        }
    }

    /// A frame on the peer endpoint, from `route`.
    pub(super) fn peer_frame(&mut self, route: Vec<Vec<u8>>, body: Vec<u8>) {
        if is_client_request(&body) {
            // A client talking to this server directly: answered like a request from the
            // broker, once this server serves.
            let mut frames = route;
            frames.push(body);
            self.direct.push(frames);
            return;
        }
        let before = self.lamport;
        // The requester's correlation id, repeated in the answer.
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
                        self.peer_refused(&service, &e.to_string());
                        Reply::rejection(Some(&service), &e)
                    }
                    Ok((c, req)) => {
                        self.lamport.observe(c.unwrap_or(0));
                        match self.peer_request(req, &route, cid) {
                            Some(reply) => reply.to_envelope(),
                            // One way, or answered later (a digest).
                            None => {
                                self.peers_changed();
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => Reply::rejection(Envelope::sniff_service(&body).as_deref(), &e),
        };
        if Reply::status(&reply) == Status::Error {
            // A refused request moves no clock.
            self.lamport = before;
        }
        self.reply(Route::Direct(route), with_cid(reply, cid));
        self.peers_changed();
    }

    /// Carries out one request of a peer (or an operator); the answer, if it gets one now.
    fn peer_request(
        &mut self,
        req: PeerRequest,
        route: &[Vec<u8>],
        cid: Option<u64>,
    ) -> Option<PeerReply> {
        let refuse = |service: &str, reason: &str| {
            Some(PeerReply::Refused {
                service: service.to_owned(),
                reason: reason.to_owned(),
            })
        };
        Some(match req {
            PeerRequest::Digest => {
                // Reading every event takes seconds on a large store: not here.
                self.outputs.push_back(Output::Digest {
                    route: route.to_vec(),
                    cid,
                });
                return None;
            }
            PeerRequest::Ack { from, origin, seq } => {
                // One way: never answered, unless it is for another server.
                if origin.as_str() != self.name {
                    self.peer_refused("ack", "an ack for another origin");
                    return refuse("ack", "this server is not the origin");
                }
                self.claims.heard(from.as_str(), self.now.at);
                self.inbound(PeerInput::Ack {
                    peer: from.to_string(),
                    seq,
                });
                return None;
            }
            PeerRequest::Replica { origin, events } => {
                // One way: a batch of a peer's own events.
                if origin.as_str() == self.name {
                    self.peer_refused("replica", "a batch of this server's own events");
                    return refuse("replica", "a batch holds only its sender's own events");
                }
                self.claims.heard(origin.as_str(), self.now.at);
                self.inbound(PeerInput::Replica {
                    origin: origin.to_string(),
                    events,
                });
                return None;
            }
            PeerRequest::Beats { beats } => {
                // One way: clients' beats a peer took.
                self.inbound(PeerInput::Beats(beats));
                return None;
            }
            PeerRequest::Claims { from, msg } => {
                // One way: a step of the majority that decides claims.
                if from.as_str() == self.name {
                    self.peer_refused("claims", "a message in this server's own name");
                    return None;
                }
                self.claims.on_message(self.now.at, from.as_str(), msg);
                return None;
            }
            PeerRequest::TwoPc { from, msg } => {
                // One way: a step of a two-phase delete.
                if from.as_str() == self.name {
                    self.peer_refused("twopc", "a message in this server's own name");
                    return None;
                }
                self.inbound(PeerInput::TwoPc {
                    from: from.to_string(),
                    msg,
                });
                return None;
            }
            PeerRequest::Vector { from, vector } => {
                if let Some(i) = &from {
                    let (mut sink, coord) = self.sink();
                    coord.meet(i, &mut sink);
                    self.peers_changed();
                    if let Some(theirs) = &vector {
                        // What the asker holds of our events, it acknowledges.
                        let seq = theirs.get(self.name.as_str()).copied().unwrap_or(0);
                        self.inbound(PeerInput::Ack {
                            peer: i.name.to_string(),
                            seq,
                        });
                    }
                }
                PeerReply::Vector {
                    vector: self
                        .repl
                        .vector()
                        .iter()
                        .map(|(o, n)| (o.to_owned(), n))
                        .collect(),
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
                let page = self
                    .store
                    .events_page(origin.as_str(), after, limit, MAX_PAGE_BYTES);
                let events = match page {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read events for a peer");
                        return refuse("fetch", "the server could not read its events");
                    }
                };
                let held = self.repl.vector().get(origin.as_str());
                let last = events.last().map_or(after, |e| e.seq);
                PeerReply::Fetched {
                    origin,
                    events,
                    more: last < held,
                }
            }
            PeerRequest::Status => PeerReply::Status(Box::new(self.status())),
            req @ (PeerRequest::Clock { .. }
            | PeerRequest::Election { .. }
            | PeerRequest::Coordinator { .. }
            | PeerRequest::Adjust { .. }
            | PeerRequest::Sync) => {
                let (mut sink, coord) = self.sink();
                match coord.serve(req, &mut sink) {
                    Ok(reply) => reply,
                    Err((service, reason)) => return refuse(service, reason),
                }
            }
        })
    }

    /// What the server says about itself, for operators.
    fn status(&self) -> StatusReport {
        let c = &self.coord;
        StatusReport {
            name: c.introduction().name,
            addr: c.addr().to_owned(),
            rank: c.rank(),
            coordinator: c.coordinator().and_then(|m| Name::parse(&m.name).ok()),
            time: self.wall(),
            offset: c.clock().offset(),
            skew: c.clock().skew(),
            peers: c.peer_names(),
            unreachable: self.out_of_reach(),
            electing: c.electing(),
            rounds: c.rounds(),
            users: self.state.user_count() as u64,
            channels: self.state.channel_count() as u64,
        }
    }

    /// What came back for something this server asked.
    pub(super) fn answered(&mut self, ask: Ask, answer: Result<Envelope, Failure>) {
        match ask {
            Ask::Reference(ask) => {
                let (mut sink, coord) = self.sink();
                coord.on_reference(ask, answer, &mut sink);
            }
            Ask::Peer { peer, ask } => self.peer_answered(peer, ask, answer),
        }
        self.peers_changed();
    }

    fn peer_answered(&mut self, peer: String, ask: PeerAsk, answer: Result<Envelope, Failure>) {
        let fetch_failed = |engine: &mut Engine, ask: &PeerAsk| {
            if let PeerAsk::Fetch { origin } = ask {
                engine.inbound(PeerInput::FetchFailed {
                    origin: origin.clone(),
                });
            }
        };
        // Whether the peer is in reach: it answered (even unreadably), or it did not in time;
        // a request never sent says nothing.
        match &answer {
            Ok(_) | Err(Failure::Unreadable(_)) => {
                self.coord.contact(&peer, true);
                self.claims.heard(&peer, self.now.at);
            }
            Err(Failure::Timeout) => self.coord.contact(&peer, false),
            Err(Failure::NotSent) => {}
        }
        let env = match answer {
            Ok(env) => env,
            Err(failure) => {
                if let Failure::Unreadable(e) = &failure {
                    self.peer_dropped(&peer, "unreadable answer from a peer", e);
                } else {
                    tracing::debug!(peer, ?ask, ?failure, "a peer request went unanswered");
                }
                fetch_failed(self, &ask);
                return;
            }
        };
        if let Some(c) = env.clock() {
            self.lamport.observe(c);
        }
        let reply = match PeerReply::parse(env) {
            Ok(PeerReply::Refused { service, reason }) => {
                tracing::debug!(peer, service, reason, "a peer refused");
                fetch_failed(self, &ask);
                return;
            }
            Ok(reply) => reply,
            Err(e) => {
                self.peer_dropped(&peer, "bad answer from a peer", &e.to_string());
                fetch_failed(self, &ask);
                return;
            }
        };
        match (ask, reply) {
            (PeerAsk::Vector, PeerReply::Vector { vector }) => {
                self.inbound(PeerInput::Vector {
                    peer,
                    vector: vector.into_iter().collect(),
                });
            }
            (PeerAsk::Fetch { origin }, PeerReply::Fetched { events, more, .. }) => {
                self.inbound(PeerInput::Fetched {
                    peer,
                    origin,
                    events,
                    more,
                });
            }
            (PeerAsk::Elect, PeerReply::Election) => self.coordinated(&peer, Answered::Election),
            (PeerAsk::Ping, PeerReply::Clock { coordinator, .. }) => {
                self.coordinated(&peer, Answered::Pong(coordinator));
            }
            (PeerAsk::Clock { round, sent }, PeerReply::Clock { time, .. }) => {
                self.coordinated(&peer, Answered::Clock { round, sent, time });
            }
            (PeerAsk::Coordinator | PeerAsk::Adjust | PeerAsk::Sync, _) => {}
            (ask, reply) => {
                let why = format!("asked {ask:?}, answered {reply:?}");
                self.peer_dropped(&peer, "an answer of another kind than the request", &why);
                fetch_failed(self, &ask);
            }
        }
    }

    /// Hands coordination a peer's answer to what it asked.
    fn coordinated(&mut self, peer: &str, answer: Answered) {
        let (mut sink, coord) = self.sink();
        coord.on_answer(peer, answer, &mut sink);
    }

    /// A coordinator's announcement (a publication on `servers`): its frames.
    pub(super) fn announcement(&mut self, frames: &[Vec<u8>]) {
        let p = match palaver_proto::Publication::from_frames(frames) {
            Ok(p) => p,
            Err(e) => {
                self.peer_dropped("proxy", "unreadable announcement", &e.to_string());
                return;
            }
        };
        if p.topic != palaver_proto::TOPIC_SERVERS || p.envelope.service != "election" {
            return;
        }
        let (mut sink, coord) = self.sink();
        coord.on_announcement(&p.envelope, &mut sink);
    }

    /// A peer message refused: logged at most once a second, with a count.
    fn peer_refused(&mut self, service: &str, why: &str) {
        self.peer_drops += 1;
        if let Some(quiet) = self.fail_log.admit(self.now.at) {
            tracing::warn!(
                service,
                error = why,
                dropped = self.peer_drops,
                unlogged = quiet,
                "refused a message on the peer endpoint"
            );
        }
    }

    /// An answer or announcement that could not be read: logged (rate-limited) and counted.
    fn peer_dropped(&mut self, peer: &str, what: &str, why: &str) {
        self.peer_drops += 1;
        if let Some(quiet) = self.fail_log.admit(self.now.at) {
            tracing::warn!(
                peer,
                error = why,
                dropped = self.peer_drops,
                unlogged = quiet,
                "{what}"
            );
        }
    }

    // ---- what this server sends ----

    /// Sends `req` one way to `peer`.
    fn tell(&mut self, peer: &str, req: &PeerRequest, what: &'static str) {
        let mut env = req.to_envelope();
        env.stamp(self.wall(), self.lamport.tick());
        self.outputs.push_back(Output::Tell {
            peer: peer.to_owned(),
            body: env.to_bytes(),
            what,
        });
    }

    /// Sends `body` one way to every peer.
    fn tell_all(&mut self, body: &[u8], what: &'static str) {
        for peer in self.coord.peer_names() {
            self.outputs.push_back(Output::Tell {
                peer,
                body: body.to_vec(),
                what,
            });
        }
    }

    /// Sends this server's newly committed events to every peer's endpoint, in batches of at
    /// most [`MAX_PAGE_BYTES`] of events (one event at least), so that any mix of message
    /// sizes passes every receiver's frame limit. A batch a peer misses (its queue is full, it
    /// is down) is repaired by anti-entropy.
    pub(super) fn replicate_events(&mut self, events: &[Event]) {
        for chunk in pages(events, Event::size_bound, MAX_PAGE_BYTES) {
            // Encoded once for every peer; the request's own form would copy each event.
            let list: Vec<Value> = chunk.iter().map(Event::to_value).collect();
            let mut env = Envelope::new("replica")
                .with("origin", self.name.as_str())
                .with("events", list);
            env.stamp(self.wall(), self.lamport.tick());
            self.tell_all(&env.to_bytes(), "replica batch");
        }
    }

    /// Tells `origin` that we hold its events up to `seq`: straight to its peer endpoint, one
    /// way. No round trip to wait for; a lost ack only makes the origin wait its deadline once,
    /// and the next vector exchange carries the same news.
    pub(super) fn ack(&mut self, origin: &str, seq: u64) {
        let (Ok(from), Ok(origin_name)) = (Name::parse(&self.name), Name::parse(origin)) else {
            return;
        };
        let req = PeerRequest::Ack {
            from,
            origin: origin_name,
            seq,
        };
        self.tell(origin, &req, "ack");
    }

    /// Passes clients' beats taken here on to every peer, one way. A lost message costs
    /// nothing lasting: the client beats again within a third of the presence timeout.
    pub(super) fn pass_beats(&mut self, beats: Vec<palaver_proto::peer::Beat>) {
        for chunk in beats.chunks(palaver_proto::peer::MAX_BEATS) {
            let mut env = PeerRequest::Beats {
                beats: chunk.to_vec(),
            }
            .to_envelope();
            env.stamp(self.wall(), self.lamport.tick());
            self.tell_all(&env.to_bytes(), "beats");
        }
    }

    /// Sends a step of a two-phase delete or of the claims' majority (an envelope made by
    /// `deletes` or `claims`) to `peer`.
    pub(super) fn tell_step(&mut self, peer: &str, mut env: Envelope) {
        env.stamp(self.wall(), self.lamport.tick());
        let what = PeerRequest::SERVICES
            .into_iter()
            .find(|s| *s == env.service)
            .unwrap_or("peer message");
        self.outputs.push_back(Output::Tell {
            peer: peer.to_owned(),
            body: env.to_bytes(),
            what,
        });
    }

    /// Asks `peer` for its version vector, telling it ours (and where we are): a peer that did
    /// not know of us yet starts waiting for our acks at once.
    pub(super) fn ask_vector(&mut self, peer: &str) {
        let req = PeerRequest::Vector {
            from: Some(self.coord.introduction()),
            vector: Some(
                self.repl
                    .vector()
                    .iter()
                    .map(|(o, n)| (o.to_owned(), n))
                    .collect(),
            ),
        };
        let (mut sink, coord) = self.sink();
        coord.ask_peer(peer, PeerAsk::Vector, &req, &mut sink);
    }

    /// Asks `peer` for `origin`'s events after `after`.
    pub(super) fn fetch(&mut self, peer: &str, origin: &str, after: u64, limit: usize) {
        let sent = match Name::parse(origin) {
            Ok(name) => {
                let req = PeerRequest::Fetch {
                    origin: name,
                    after,
                    limit: u64::try_from(limit).ok(),
                };
                let ask = PeerAsk::Fetch {
                    origin: origin.to_owned(),
                };
                let (mut sink, coord) = self.sink();
                coord.ask_peer(peer, ask, &req, &mut sink)
            }
            Err(_) => false,
        };
        if !sent {
            self.inbound(PeerInput::FetchFailed {
                origin: origin.to_owned(),
            });
        }
    }
}

/// `reply` with the requester's correlation id, when it sent one.
pub(super) fn with_cid(reply: Envelope, cid: Option<u64>) -> Envelope {
    match cid {
        Some(cid) => reply.with("cid", cid),
        None => reply,
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
