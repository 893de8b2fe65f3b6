//! The hasher: a thread that does the password work (argon2id takes tens of milliseconds and
//! 19 MiB a hash), so that the reactor keeps serving meanwhile; and the limits on that work.
//!
//! ```text
//!  reactor ── submit(user, job) ──▶ Backoff (per name) ─▶ Budget (per server) ─▶ queue ─▶ thread
//!     ▲                                 refused at once, no work done, when locked/over/full    │
//!     └── finished(): (what waited, Verdict) ◀── + one frame on an inproc PAIR ◀─────────────────┘
//! ```

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use palaver_auth::{password, token};
use palaver_core::guard::{Backoff, Budget};
use palaver_proto::Name;

use crate::state::{HashJob, Verdict};
use crate::ServerError;

/// Password hashes (or checks) a server does a second, at most, on average.
pub const HASHES_PER_SECOND: f64 = 10.0;
/// ... and at once, after a quiet spell.
pub const HASH_BURST: u32 = 20;
/// Jobs waiting for the thread, at most; the budget keeps it far from full.
const QUEUE: usize = 64;

struct Waiting<T> {
    user: Name,
    /// Whether the job checks a password (a wrong one counts against the name).
    checks: bool,
    then: T,
}

pub(crate) struct Hasher<T> {
    jobs: Option<mpsc::SyncSender<(u64, HashJob)>>,
    done: mpsc::Receiver<(u64, Verdict)>,
    /// Readable when a job is done.
    pub wake: zmq::Socket,
    thread: Option<JoinHandle<()>>,
    budget: Budget,
    backoff: Backoff<Name>,
    waiting: HashMap<u64, Waiting<T>>,
    next: u64,
}

impl<T> Hasher<T> {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the wake-up socket or the thread cannot be made.
    pub fn start(ctx: &zmq::Context) -> Result<Hasher<T>, ServerError> {
        let (jobs, inbox) = mpsc::sync_channel::<(u64, HashJob)>(QUEUE);
        let (outbox, done) = mpsc::channel();
        let wake = ctx.socket(zmq::PAIR)?;
        let endpoint = format!("inproc://hasher-{:p}", &wake);
        wake.bind(&endpoint)?;
        let signal = ctx.socket(zmq::PAIR)?;
        signal.connect(&endpoint)?;
        let thread = std::thread::Builder::new()
            .name("hasher".into())
            .spawn(move || {
                for (ticket, job) in inbox {
                    let verdict = work(job);
                    if outbox.send((ticket, verdict)).is_err() {
                        return;
                    }
                    if let Err(e) = signal.send(&[][..], 0) {
                        tracing::error!(error = %e, "hasher cannot wake the reactor");
                    }
                }
            })
            .map_err(ServerError::Thread)?;
        Ok(Hasher {
            jobs: Some(jobs),
            done,
            wake,
            thread: Some(thread),
            budget: Budget::new(HASHES_PER_SECOND, HASH_BURST),
            backoff: Backoff::default(),
            waiting: HashMap::new(),
            next: 0,
        })
    }

    /// Queues `job` for `user`'s request, which waits as `then`.
    ///
    /// # Errors
    /// When the limits refuse it: `then` back, and why, fit for the client.
    pub fn submit(
        &mut self,
        now: Instant,
        user: &Name,
        job: HashJob,
        then: T,
    ) -> Result<(), (T, String)> {
        let checks = !matches!(job, HashJob::Make { .. });
        let refusal = if checks {
            self.backoff.check(user, now).err().map(|wait| {
                format!(
                    "too many wrong passwords for `{user}`; try again in {}",
                    seconds(wait)
                )
            })
        } else {
            None
        }
        .or_else(|| {
            self.budget.take(now).err().map(|wait| {
                format!(
                    "this server is busy checking passwords; try again in {}",
                    seconds(wait)
                )
            })
        });
        if let Some(why) = refusal {
            return Err((then, why));
        }
        let ticket = self.next;
        let Some(jobs) = &self.jobs else {
            return Err((then, "the server is stopping".into()));
        };
        if jobs.try_send((ticket, job)).is_err() {
            return Err((
                then,
                "this server is busy checking passwords; try again".into(),
            ));
        }
        self.next += 1;
        self.waiting.insert(
            ticket,
            Waiting {
                user: user.clone(),
                checks,
                then,
            },
        );
        Ok(())
    }

    /// The jobs done since the last call, with what waited for each. A wrong password counts
    /// against its name; a right one clears the name's count.
    pub fn finished(&mut self, now: Instant) -> Vec<(T, Verdict)> {
        // Empty the wake-up frames; the results are in the channel.
        while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
        let mut out = Vec::new();
        while let Ok((ticket, verdict)) = self.done.try_recv() {
            let Some(w) = self.waiting.remove(&ticket) else {
                tracing::error!(ticket, "a password job came back that nobody waits for");
                continue;
            };
            if w.checks {
                if verdict.ok {
                    self.backoff.succeeded(&w.user);
                } else {
                    self.backoff.failed(&w.user, now);
                }
            }
            out.push((w.then, verdict));
        }
        out
    }

    /// Waits for the jobs in hand and stops the thread.
    pub fn stop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the hasher thread panicked");
            }
        }
    }
}

impl<T> Drop for Hasher<T> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Does one job.
pub(crate) fn work(job: HashJob) -> Verdict {
    match job {
        HashJob::Check { phc, password: pw } => {
            let ok = password::verify(pw.expose(), &phc);
            Verdict {
                ok,
                hash: None,
                token: ok.then(token::new_token),
            }
        }
        HashJob::Make { password: pw } => Verdict {
            ok: true,
            hash: Some(password::hash(pw.expose())),
            token: None,
        },
        HashJob::Change {
            phc,
            password: pw,
            new,
        } => {
            let ok = password::verify(pw.expose(), &phc);
            Verdict {
                ok,
                hash: ok.then(|| password::hash(new.expose())),
                token: None,
            }
        }
    }
}

/// A wait as people read it: whole seconds, at least one.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64().ceil().max(1.0);
    if s == 1.0 {
        "1 second".into()
    } else {
        format!("{s} seconds")
    }
}
