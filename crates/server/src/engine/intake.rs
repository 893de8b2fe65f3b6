//! Requests, as the engine takes them in: decoded, parsed, their clock taken in only if
//! accepted, their id (or the broker's token) remembered, then decided by the state; or
//! waiting for password work or a two-phase delete. And the events the state makes of
//! itself, clients' beats, and presence announcements.

use palaver_proto::{work, Envelope, Event, ProtoError, Reply, Request, Status, MAX_FRAME_BYTES};

use super::claims::Proposing;
use super::deletes::Waiting;
use super::{Awaiting, Engine, Output, Queued, Route};
use crate::state::{presence_notice, Handled, Proofs, Verdict};

impl Engine {
    /// Handles one request that came by `envelope`. `None` when it waits (for password work,
    /// or for a two-phase delete): it joins a batch once that is done.
    pub(super) fn request(&mut self, envelope: Route, body: Vec<u8>) -> Option<Queued> {
        if body.len() > MAX_FRAME_BYTES {
            tracing::warn!(bytes = body.len(), "refused an oversized frame");
        }
        let env = match Envelope::decode(&body) {
            Ok(env) => env,
            Err(e) => {
                let service = Envelope::sniff_service(&body);
                return Some(Queued {
                    envelope,
                    handled: rejection(service.as_deref(), &e),
                    echo: None,
                });
            }
        };
        // A request's clock is taken in only if the request is accepted: a refused request
        // (unknown service, invalid field, a write the state refuses) moves no clock.
        let before = self.lamport;
        if let Some(clock) = env.clock() {
            self.lamport.observe(clock);
        }
        let echo = palaver_proto::request_id_of(&env.data);
        let wall = self.wall();
        let handled = match Request::parse(&env) {
            Ok((req, meta)) => {
                // A request without an id of its own takes the broker's token as one: if the
                // broker sends it to another server too (this one went silent), it still
                // takes effect once.
                let id = match (&envelope, meta.request_id) {
                    (_, Some(id)) => Some(id),
                    (Route::Broker(token), None) => Some(work::request_id(*token)),
                    (Route::Direct(_) | Route::Internal | Route::Peer(_), None) => None,
                };
                let proofs = Proofs {
                    token: meta.token,
                    password: meta.password,
                };
                let mut handled =
                    self.state
                        .handle_request(req, id.clone(), &proofs, wall, &mut self.lamport);
                if let Some((user, message)) = handled.lookup.take() {
                    // A read marker: the message is looked up here, then the state decides.
                    let found = self.find(&message);
                    handled = self.state.marked(
                        user,
                        &message,
                        found.as_ref(),
                        id.clone(),
                        wall,
                        &mut self.lamport,
                    );
                }
                if let Some(room) = handled.delete.take() {
                    // Decided by every server: answered once the two-phase commit ends.
                    let waiting = Waiting {
                        route: envelope,
                        echo,
                        request: id,
                        proofs,
                        room,
                        asked: self.now.at,
                        began: self.now.at,
                    };
                    self.start_delete(waiting);
                    return None;
                }
                if let Some(p) = handled.claim.take() {
                    // Undecided until the log of claims decides: no clock moves meanwhile.
                    self.lamport = before;
                    self.await_claim(envelope, echo, env.clock(), p);
                    return None;
                }
                if let Some(v) = handled.verify.take() {
                    // Undecided until the password work is done: no clock moves meanwhile (a
                    // wrong password must not push the clock).
                    self.lamport = before;
                    let user = v.pending.user().clone();
                    let waiting = Awaiting {
                        route: envelope,
                        echo,
                        request: id,
                        pending: v.pending,
                        clock: env.clock(),
                    };
                    match self.passwords.submit(self.now.at, &user, &v.job, waiting) {
                        Ok(ticket) => {
                            self.outputs.push_back(Output::Hash { ticket, job: v.job });
                            return None;
                        }
                        Err((w, why)) => {
                            let service = handled.reply.service.clone();
                            return Some(Queued {
                                envelope: w.route,
                                handled: Handled::reply(Reply::error(&service, &why)),
                                echo: w.echo,
                            });
                        }
                    }
                }
                handled
            }
            Err(e) => rejection(Some(&env.service), &e),
        };
        if Reply::status(&handled.reply) == Status::Error {
            self.lamport = before;
        }
        Some(Queued {
            envelope,
            handled,
            echo,
        })
    }

    /// A request whose password work is done: decided now, and into the next batch.
    pub(super) fn verified(&mut self, ticket: u64, verdict: Verdict) {
        let Some(w) = self.passwords.finished(self.now.at, ticket, &verdict) else {
            return;
        };
        self.finish_later(w.route, w.echo, w.clock, |state, wall, lamport| {
            state.verified(w.pending, verdict, w.request, wall, lamport)
        });
    }

    /// Finishes a request that waited (for password work, or for its claim): its clock
    /// (`clock`) is taken in only if `decide` accepts it; one that now makes a claim waits for
    /// it in turn; the rest joins the next batch.
    pub(super) fn finish_later(
        &mut self,
        route: Route,
        echo: Option<String>,
        clock: Option<u64>,
        decide: impl FnOnce(&mut crate::State, f64, &mut palaver_core::Lamport) -> Handled,
    ) {
        let before = self.lamport;
        if let Some(clock) = clock {
            self.lamport.observe(clock);
        }
        let wall = self.wall();
        let mut handled = decide(&mut self.state, wall, &mut self.lamport);
        if let Some(p) = handled.claim.take() {
            self.lamport = before;
            self.await_claim(route, echo, clock, p);
            return;
        }
        if Reply::status(&handled.reply) == Status::Error {
            self.lamport = before;
        }
        self.batch.push(Queued {
            envelope: route,
            handled,
            echo,
        });
    }

    /// A request waits for its claim to be decided.
    fn await_claim(
        &mut self,
        route: Route,
        echo: Option<String>,
        clock: Option<u64>,
        p: crate::state::Proposal,
    ) {
        let waiting = Proposing {
            route,
            echo,
            request: p.request,
            after: p.after,
            clock,
        };
        self.propose(waiting, p.claim);
    }

    /// Each turn: the events the state made of itself join the batch, clients' beats go to
    /// the peers, and presence changes are announced (by the coordinator only, so each is said
    /// once; a new coordinator says the recent ones again, in case its predecessor died first).
    pub(super) fn housekeeping(&mut self) {
        for event in self.state.take_extra() {
            self.batch.push(Queued {
                envelope: Route::Internal,
                handled: Handled {
                    events: vec![event],
                    ..Handled::reply(Reply::ok("touch"))
                },
                echo: None,
            });
        }
        let beats = self.state.take_gossip();
        if !beats.is_empty() {
            self.pass_beats(beats);
        }
        let now = self.wall();
        let mut changes = self.state.presence_changes(now);
        let announcer = self.is_coordinator();
        if announcer && !self.announcer {
            changes = self
                .state
                .presence_since(now - 2.0 * self.state.policy().presence_timeout);
        }
        self.announcer = announcer;
        if !announcer {
            return;
        }
        for c in changes {
            let mut env = presence_notice(&c);
            env.stamp(now, self.lamport.tick());
            self.outputs.push_back(Output::Publish {
                topic: palaver_proto::TOPIC_PRESENCE.to_owned(),
                envelope: env,
            });
        }
    }

    /// The event `id`, from the store or among the peers' events waiting for a commit.
    pub(super) fn find(&self, id: &palaver_proto::EventRef) -> Option<Event> {
        if let Some(e) = self
            .pending
            .iter()
            .find(|e| e.origin == id.origin && e.seq == id.seq)
        {
            return Some(e.clone());
        }
        match self.store.event(&id.origin, id.seq) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot look a message up");
                None
            }
        }
    }
}

fn rejection(service: Option<&str>, err: &ProtoError) -> Handled {
    tracing::debug!(service, error = %err, "rejected a request");
    Handled::reply(Reply::rejection(service, err))
}
