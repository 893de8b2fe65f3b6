//! A server whose commits fail steps out of the broker's rotation, tries again each second,
//! and comes back once a commit works and it has caught up; a reload of memory from the disk
//! after a failed commit, tried again while the disk cannot be read either.
//!
//! ```text
//!  commit fails ──▶ step_aside: answer what is durable, leave the broker, log (1/s)
//!       │                 └─ each second: the failed batch again (its events went to the
//!       │                    peers), or what waits, or a probe write
//!  commit works ──▶ recovered: reload if due; back in the rotation once caught up
//! ```

use std::time::{Duration, Instant};

use palaver_core::replication::{self, Replication};

use super::{Engine, Output, STARTUP_GRACE};

/// While its commits fail, a server tries one (its waiting work, or a probe) this often.
pub(super) const RETRY_COMMIT: Duration = Duration::from_secs(1);

/// A server whose commits fail: out of the broker's rotation since `since`, trying again at
/// `next_try`.
pub(super) struct Failing {
    pub(super) since: Instant,
    pub(super) next_try: Instant,
}

impl Engine {
    /// A commit failed: leave the broker's rotation (clients go to the other servers) until a
    /// commit works again, and say so at most once a second with a count.
    pub(super) fn step_aside(&mut self, why: Option<&str>) {
        let now = self.now.at;
        self.failed_batches += 1;
        if self.failing.is_none() {
            self.failing = Some(Failing {
                since: now,
                next_try: now + RETRY_COMMIT,
            });
        }
        if self.accepting {
            // Writes already on this disk and waiting for the peers' acks are published now,
            // but not answered: the broker gives their requests to another server, which
            // answers once its peers hold them (as a repeat of the same request id where they
            // do). Answered here, the next server asked might not know of them yet (found by
            // the simulation, seed 1181: a channel acknowledged so was unknown to the next).
            while let Some((_, answers, publications)) = self.held.pop_front() {
                self.dropped_replies += answers.len() as u64;
                self.release((0, Vec::new(), publications));
            }
            self.outputs.push_back(Output::LeaveBroker);
            self.accepting = false;
            tracing::error!(server = %self.name, error = why.unwrap_or("a write failed"),
                "commits fail: out of the broker's rotation until one succeeds");
        } else if let Some(quiet) = self.fail_log.admit(now) {
            tracing::error!(server = %self.name, error = why.unwrap_or("a write failed"),
                failed = self.failed_batches, unlogged = quiet, "commits still fail");
        }
    }

    /// A commit worked: if commits had failed, take clients again once caught up.
    pub(super) fn recovered(&mut self) {
        if self.reload_due {
            self.reload();
        }
        if let Some(f) = self.failing.take() {
            tracing::info!(server = %self.name, after = ?self.now.at.saturating_duration_since(f.since), failed = self.failed_batches,
                set_aside = self.set_aside, "commits work again; back in the broker's rotation once caught up");
            self.serve_anyway_at = self.now.at + STARTUP_GRACE;
            // What arrived meanwhile was set aside: compare with every peer again, fetch it,
            // and take clients only once caught up, as at start-up.
            let vector = self.repl.vector().clone();
            self.compare_again(vector);
        }
    }

    /// The server was stopped (a `SIGSTOP`, a paused machine) for longer than the broker waits
    /// for a silent server: the broker has sent its requests elsewhere, and the peers have
    /// stopped waiting for its acks and written without it. It leaves the rotation, compares
    /// with every peer again, and takes clients only once caught up, as at start-up (serving
    /// at once, it refused a post to a channel whose creation had been acknowledged meanwhile;
    /// the simulation found it, seed 18073). Answers it holds for the peers' acks are kept:
    /// given after it left, they are dropped, and the copies the broker sent elsewhere answer.
    pub(super) fn woke(&mut self, stopped: std::time::Duration) {
        if !self.accepting {
            return;
        }
        tracing::warn!(server = %self.name, ?stopped, "this server was stopped: out of the broker's rotation until caught up");
        self.outputs.push_back(Output::LeaveBroker);
        self.accepting = false;
        self.serve_anyway_at = self.now.at + STARTUP_GRACE;
        let vector = self.repl.vector().clone();
        self.compare_again(vector);
    }

    /// Replication starts again from `vector` with the same peers, comparing with each as at
    /// start-up: the server takes clients again only once caught up.
    fn compare_again(&mut self, vector: replication::VersionVector) {
        let peers: Vec<String> = self.repl.peers().map(str::to_owned).collect();
        self.repl = Replication::new(&self.name, vector, replication::Config::default());
        self.repl.set_peers(self.now.at, peers);
    }

    /// Peers' events arrived while commits fail: counted, not kept (see `inbound`).
    pub(super) fn set_aside(&mut self, n: usize) {
        self.set_aside += n as u64;
    }

    /// After a failed commit: memory and replication bookkeeping start again from the disk.
    ///
    /// If the store cannot be read either (a full disk can refuse a read's temporary file),
    /// memory stays as it is, the server stays out of the rotation, and the reload is tried
    /// again before the next commit: serving from memory that ran ahead of the disk would
    /// claim events the disk does not hold, and anti-entropy would never fetch them.
    pub(super) fn reload(&mut self) {
        // Events still waiting are forgotten with the rest of memory; anti-entropy fetches
        // them again. So are the repeats found among them: decided against memory that is
        // being dropped (a request's event that never reached the disk), they would hide the
        // one event that did (found by the simulation, seed 4088).
        self.take_pending();
        self.hidden.clear();
        match self.store.snapshot() {
            Ok(snap) => {
                let vector = snap.progress.iter().map(|(o, s)| (o.clone(), *s)).collect();
                self.deletes.restore(self.now.at, &snap.rooms);
                self.claims.restore(&snap.claims);
                self.state.reload(snap);
                self.claims_forgotten();
                self.deletes
                    .set_peers(self.repl.peers().map(str::to_owned).collect());
                self.compare_again(vector);
                self.reload_due = false;
            }
            Err(e) => {
                self.reload_due = true;
                if let Some(quiet) = self.fail_log.admit(self.now.at) {
                    tracing::error!(error = %e, unlogged = quiet, "cannot reload after a failed commit; trying again");
                }
            }
        }
    }
}
