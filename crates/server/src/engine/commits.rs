//! Commits, as the engine orders them: one batch at a time to the writer, the peers' waiting
//! events along; once committed, the reads after it, then publications and answers, held
//! until the live peers have the batch's writes.

use palaver_proto::{Envelope, Event, Reply, Status};

use super::aside::RETRY_COMMIT;
use super::deletes::Crash;
use super::{
    Asker, Done, Engine, Held, Job, Output, Route, REPLICA_COMMIT_DELAY, REPLICA_COMMIT_EVENTS,
};
use crate::state::Handled;

impl Engine {
    /// The peers' events waiting for a commit, taken out.
    pub(super) fn take_pending(&mut self) -> Vec<Event> {
        self.pending_since = None;
        std::mem::take(&mut self.pending)
    }

    pub(super) fn submit(&mut self, job: Job) {
        self.writing = true;
        self.outputs.push_back(Output::Commit(job));
    }

    /// Hands the waiting batch to the writer (the writer is idle), with the peers' pending
    /// events when the batch writes or reads history, when they have waited long enough, or
    /// when `force`d. A batch with nothing to store is answered at once.
    pub(super) fn dispatch(&mut self, force: bool) {
        let at = self.now.at;
        let writes = self
            .batch
            .iter()
            .any(|q| !q.handled.events.is_empty() || q.handled.read.is_some() || q.handled.repeat);
        let pending_due = force
            || self.pending.len() >= REPLICA_COMMIT_EVENTS
            || self
                .pending_since
                .is_some_and(|t| at >= t + REPLICA_COMMIT_DELAY);
        let flush_pending = pending_due && !self.pending.is_empty();
        if let Some(f) = self.failing.as_mut() {
            // Out of the rotation: try again now, with whatever waits, or with a probe.
            f.next_try = at + RETRY_COMMIT;
            if self.reload_due {
                self.reload();
            }
            if let Some(job) = self.retry.take() {
                // A batch whose events the peers may already hold: the same events, again
                // (its requests, in `committing`, are answered once it is stored).
                self.submit(job);
                return;
            }
            if self.batch.is_empty() && !flush_pending {
                self.committing = Vec::new();
                self.submit(Job {
                    events: Vec::new(),
                    hidden: Vec::new(),
                });
                return;
            }
        }
        if self.batch.is_empty() && !flush_pending {
            return;
        }
        // Reads answered from memory need no commit; writes and history reads (which read
        // the disk) take the peers' pending events along.
        let incoming = if writes || pending_due {
            self.take_pending()
        } else {
            Vec::new()
        };
        self.committing = std::mem::take(&mut self.batch);
        let mut events: Vec<Event> = self
            .committing
            .iter()
            .flat_map(|q| q.handled.events.iter().cloned())
            .collect();
        if events.is_empty() && incoming.is_empty() {
            // Every earlier batch is committed (the writer is idle): answer now.
            self.complete(Done {
                events: Vec::new(),
                hidden: Vec::new(),
                results: Vec::new(),
                failed: None,
            });
            return;
        }
        // The peers take this server's new events while it commits them, as a Raft leader
        // sends entries while it appends them: a write then waits for the slower of its fsync
        // and the peers' acks, not for both in a row. Once sent, they are this server's events
        // for good: a failed commit is tried again with the same events (see `complete`).
        if let Some(last) = events.last().map(|e| e.seq) {
            self.replicate_events(&events);
            self.repl.on_own_sent(last);
        }
        events.extend(incoming);
        let hidden = std::mem::take(&mut self.hidden);
        self.submit(Job { events, hidden });
    }

    /// The writer committed the batch: publishes, and answers (at once for a batch without
    /// writes, after the peers' acks otherwise).
    pub(super) fn complete(&mut self, done: Done) {
        let own: usize = self.committing.iter().map(|q| q.handled.events.len()).sum();
        if let (Some(why), true) = (&done.failed, own > 0) {
            // The peers hold (or may hold) this batch's events already: keep them, numbers and
            // all, and commit the same batch again once the disk takes writes; its requests
            // stay unanswered until then (a client retries elsewhere, where its request id is
            // known). Out of the rotation meanwhile.
            self.step_aside(Some(why));
            self.retry = Some(Job {
                events: done.events,
                hidden: done.hidden,
            });
            return;
        }
        let batch = std::mem::take(&mut self.committing);
        let incoming = &done.events[own.min(done.events.len())..];
        let mut results = done.results.into_iter();
        let mut lost = done.failed.is_some();
        let mut first_error = done.failed.clone();
        let mut replies = Vec::with_capacity(batch.len());
        // Answers that stand on the whole commit (a repeat naming an event that waited for
        // it, a read of the store after it), by their place in `replies`.
        let mut standing = Vec::new();
        let mut published: Vec<Event> = Vec::new();
        let mut publications = Vec::new();
        for q in batch {
            let Handled {
                reply,
                events,
                publication,
                read,
                verify: _,
                delete: _,
                lookup: _,
                claim: _,
                repeat,
            } = q.handled;
            if repeat || read.is_some() {
                standing.push(replies.len());
            }
            let (reply, told) = match &read {
                Some(r) => self.read_stored(r, reply, events.first()),
                None => (reply, Vec::new()),
            };
            // Every event of the request stored, or the request refused (each result taken,
            // so that the next request's line up with its own events).
            let mut stored = true;
            for ev in &events {
                match results.next() {
                    Some(Ok(())) => {}
                    other => {
                        let why = other.and_then(Result::err).unwrap_or_default();
                        first_error.get_or_insert_with(|| format!("{}: {why}", ev.id()));
                        stored = false;
                    }
                }
            }
            if !stored {
                lost = true;
                let service = reply.service.clone();
                let refusal = not_stored(&service);
                replies.push((q.envelope, echoed(refusal, q.echo)));
                continue;
            }
            replies.push((q.envelope, echoed(reply, q.echo)));
            publications.extend(publication);
            publications.extend(told);
            published.extend(events);
        }
        for (e, r) in incoming.iter().zip(results) {
            if let Err(why) = r {
                lost = true;
                first_error.get_or_insert_with(|| format!("{}: {why}", e.id()));
            }
        }
        if lost {
            // What stood on the commit cannot be said (found by the simulation, seed 10118: a
            // repeated answer whose event failed to commit here, its origin dead, was sent).
            for i in standing {
                let (_, reply) = &mut replies[i];
                if Reply::status(reply) != Status::Error {
                    let refusal = not_stored(&reply.service);
                    let id = reply
                        .data
                        .opt_str("request_id")
                        .ok()
                        .flatten()
                        .map(str::to_owned);
                    *reply = echoed(refusal, id);
                }
            }
            // Messages of two-phase deletes may stand on records that did not make it: not
            // sent (the protocol sends again what it still means).
            replies.retain(|(route, _)| !matches!(route, Route::Peer(_)));
            // Memory ran ahead of the disk: start again from what the disk holds. Requests
            // handled since, against the memory being dropped, are refused.
            for q in std::mem::take(&mut self.batch) {
                if matches!(q.envelope, Route::Peer(_)) {
                    continue;
                }
                let service = q.handled.reply.service.clone();
                let refusal = not_stored(&service);
                replies.push((q.envelope, echoed(refusal, q.echo)));
            }
            self.reload();
        } else {
            self.recovered();
        }
        match published.last().map(|e| e.seq) {
            Some(seq) => {
                // Steps of the protocols between servers (claims, two-phase deletes) stand on
                // this server's own records alone: they leave once the commit is durable, not
                // held for the peers' acks as answers to clients are (a claim takes one
                // commit per step, not one commit and a replication round trip). When some of
                // the batch was lost, its refusals leave now, before the server steps aside;
                // what it did store still waits for the peers (found by the simulation, seed
                // 1181: a channel acknowledged as the batch beside it failed was unknown to
                // the next server asked).
                let (steps, answers): (Vec<_>, Vec<_>) =
                    replies.into_iter().partition(|(route, reply)| {
                        matches!(route, Route::Peer(_))
                            || (lost && Reply::status(reply) == Status::Error)
                    });
                if !steps.is_empty() {
                    self.release((0, steps, Vec::new()));
                }
                self.repl.on_own_commit(self.now.at, seq);
                self.held.push_back((seq, answers, publications));
            }
            _ => self.release((0, replies, publications)),
        }
        if lost {
            // After the batch's answers, which still reach the broker.
            self.step_aside(first_error.as_deref());
        }
    }

    /// Publishes a batch's publications, then sends its answers.
    pub(super) fn release(&mut self, (_, replies, publications): Held) {
        for (topic, envelope) in publications {
            self.lamport.tick();
            self.outputs.push_back(Output::Publish { topic, envelope });
        }
        let mut told_peers = false;
        for (route, reply) in replies {
            told_peers |= matches!(route, Route::Peer(_));
            self.reply(route, reply);
        }
        if told_peers && self.crash == Some(Crash::Due) {
            self.outputs.push_back(Output::Crash);
        }
    }

    /// An answer on its way, stamped: to the broker (dropped while out of the rotation, as
    /// the broker gave the request to another server), on the peer endpoint, or a two-phase
    /// step to a peer.
    pub(super) fn reply(&mut self, route: Route, mut reply: Envelope) {
        match route {
            Route::Broker(token) => {
                if !self.accepting {
                    self.dropped_replies += 1;
                    return;
                }
                let refused = Reply::status(&reply) == Status::Error;
                reply.stamp(self.wall(), self.lamport.for_answer(refused));
                // Which server answered (ours): clients show it, operators trace with it.
                reply
                    .data
                    .set("server", rmpv::Value::from(self.name.as_str()));
                // A client learns the coordinator when it logs in (then from `servers`).
                if palaver_proto::starts_session(&reply.service) {
                    if let Some(c) = self.coordinator() {
                        let name = rmpv::Value::from(c.name.as_str());
                        reply.data.set("coordinator", name);
                    }
                }
                let route = Asker::Broker(token);
                self.outputs.push_back(Output::Reply { route, reply });
            }
            Route::Direct(frames) => {
                let refused = Reply::status(&reply) == Status::Error;
                reply.stamp(self.wall(), self.lamport.for_answer(refused));
                let route = Asker::Direct(frames);
                self.outputs.push_back(Output::Reply { route, reply });
            }
            Route::Peer(peer) => self.tell_step(&peer, reply),
            Route::Internal => {}
        }
    }
}

/// `reply` with the client's request id, when it gave one.
fn echoed(reply: Envelope, request_id: Option<String>) -> Envelope {
    match request_id {
        Some(id) => reply.with("request_id", id),
        None => reply,
    }
}

/// The refusal of a request this server could not store. Sent again as it was (the same
/// request id) it is safe, as any request is (it takes effect once), and it says so (`again`):
/// another server then answers, and tells whether it took effect meanwhile. A claim decided
/// by the majority before this server dropped its memory did (found by the simulation, seed
/// 2315: a password change refused so was in force everywhere, and its client did not know).
fn not_stored(service: &str) -> Envelope {
    Reply::error(service, "the server could not store this; try again")
        .with(palaver_proto::AGAIN, true)
}
