//! The limits on password work, and the requests that wait for it: a per-server budget and a
//! per-name backoff decide whether a job is done at all (refused at once otherwise, with no
//! work done); each job goes out as a ticket, and its verdict comes back to the request that
//! waits for it. The work itself (argon2id) is the hasher thread's (`crate::hasher`).
//!
//! ```text
//!  request ── submit(user, job) ──▶ Backoff (per name) ─▶ Budget (per server) ─▶ Output::Hash
//!     ▲                                 refused at once, no work done, when locked/over       │
//!     └── finished(ticket, verdict): what waited ◀── Input::Hashed ◀── hasher thread ◀───────┘
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use palaver_core::guard::{Backoff, Budget};
use palaver_proto::Name;

use crate::state::{HashJob, Verdict};

/// Password hashes (or checks) a server does a second, at most, on average.
pub const HASHES_PER_SECOND: f64 = 10.0;
/// ... and at once, after a quiet spell.
pub const HASH_BURST: u32 = 20;

struct Waiting<T> {
    user: Name,
    /// Whether the job checks a password (a wrong one counts against the name).
    checks: bool,
    then: T,
}

pub(crate) struct Passwords<T> {
    budget: Budget,
    backoff: Backoff<Name>,
    waiting: HashMap<u64, Waiting<T>>,
    next: u64,
}

impl<T> Passwords<T> {
    pub fn new() -> Passwords<T> {
        Passwords {
            budget: Budget::new(HASHES_PER_SECOND, HASH_BURST),
            backoff: Backoff::default(),
            waiting: HashMap::new(),
            next: 0,
        }
    }

    /// Admits `job` for `user`'s request, which waits as `then`: its ticket.
    ///
    /// # Errors
    /// When the limits refuse it: `then` back, and why, fit for the client.
    pub fn submit(
        &mut self,
        now: Instant,
        user: &Name,
        job: &HashJob,
        then: T,
    ) -> Result<u64, (T, String)> {
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
        self.next += 1;
        self.waiting.insert(
            ticket,
            Waiting {
                user: user.clone(),
                checks,
                then,
            },
        );
        Ok(ticket)
    }

    /// Job `ticket` is done: what waited for it. A wrong password counts against its name; a
    /// right one clears the name's count.
    pub fn finished(&mut self, now: Instant, ticket: u64, verdict: &Verdict) -> Option<T> {
        let Some(w) = self.waiting.remove(&ticket) else {
            tracing::error!(ticket, "a password job came back that nobody waits for");
            return None;
        };
        if w.checks {
            if verdict.ok {
                self.backoff.succeeded(&w.user);
            } else {
                self.backoff.failed(&w.user, now);
            }
        }
        Some(w.then)
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
