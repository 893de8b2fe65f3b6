//! The hasher: a thread that does the password work (argon2id takes tens of milliseconds and
//! 19 MiB a hash), so that the reactor keeps serving meanwhile. Which work is done at all (a
//! budget per server, a backoff per name) is the engine's to decide (`engine::passwords`);
//! the budget keeps the queue short.
//!
//! ```text
//!  reactor ── submit(ticket, job) ──▶ queue ──▶ thread: work(job)
//!     ▲                                              │
//!     └── finished(): (ticket, Verdict) ◀── + one frame on an inproc PAIR
//! ```

use std::sync::mpsc;
use std::thread::JoinHandle;

use palaver_auth::{password, token};

use crate::state::{HashJob, Verdict};
use crate::ServerError;

pub(crate) struct Hasher {
    jobs: Option<mpsc::Sender<(u64, HashJob)>>,
    done: mpsc::Receiver<(u64, Verdict)>,
    /// Readable when a job is done.
    pub wake: zmq::Socket,
    thread: Option<JoinHandle<()>>,
}

impl Hasher {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the wake-up socket or the thread cannot be made.
    pub fn start(ctx: &zmq::Context) -> Result<Hasher, ServerError> {
        let (jobs, inbox) = mpsc::channel::<(u64, HashJob)>();
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
        })
    }

    /// Queues job `ticket`. `false` when the thread is gone.
    pub fn submit(&mut self, ticket: u64, job: HashJob) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((ticket, job)).is_ok())
    }

    /// The jobs done since the last call.
    pub fn finished(&mut self) -> Vec<(u64, Verdict)> {
        // Empty the wake-up frames; the results are in the channel.
        while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
        std::iter::from_fn(|| self.done.try_recv().ok()).collect()
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

impl Drop for Hasher {
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
