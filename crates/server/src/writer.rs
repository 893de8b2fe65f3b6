//! The writer: a thread that owns the store's write connection and commits one batch at a
//! time, so that the reactor keeps taking requests, replicas and acks while the disk syncs.
//!
//! ```text
//!  reactor ── Job{events, hidden} ──▶ writer: BEGIN; INSERT…; COMMIT (fsync)
//!     ▲                                  │
//!     └── Done{events, results} ◀────────┘  + one empty frame on an inproc PAIR, which the
//!                                             reactor polls beside its other sockets
//! ```
//!
//! Without it, a write's path crossed up to three reactors that were each blocked in their
//! own fsync: the origin's, a peer's before it could ack, the origin's again before it could
//! take the ack.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use palaver_proto::Event;
use palaver_store::Store;

use crate::ServerError;

/// A batch to commit: the server's own events, then the peers', and repeats to hide.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub events: Vec<Event>,
    pub hidden: Vec<(String, u64)>,
}

/// A committed batch: its events back, and one result per event (all failed when the
/// transaction itself failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub events: Vec<Event>,
    /// The repeats it was to hide, back with the events (a failed batch is tried again).
    pub hidden: Vec<(String, u64)>,
    pub results: Vec<Result<(), String>>,
    /// Why the transaction failed, when it did (a full disk, an I/O error): nothing of the
    /// batch is stored. A job without events is a probe ([`Store::probe`]).
    pub failed: Option<String>,
}

pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    /// Readable when a batch is done.
    pub wake: zmq::Socket,
    thread: Option<JoinHandle<()>>,
    busy: bool,
}

impl Writer {
    /// Opens the write connection and starts the thread.
    ///
    /// # Errors
    /// When the store cannot be opened or the wake-up socket cannot be made.
    pub fn start(ctx: &zmq::Context, dir: &Path) -> Result<Writer, ServerError> {
        let mut store = Store::open(dir)?;
        let endpoint = format!("inproc://writer-{:p}", &store);
        let wake = ctx.socket(zmq::PAIR)?;
        wake.bind(&endpoint)?;
        let signal = ctx.socket(zmq::PAIR)?;
        signal.connect(&endpoint)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, done) = mpsc::channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                for job in inbox {
                    let outcome = if job.events.is_empty() && job.hidden.is_empty() {
                        store.probe().map(|()| Vec::new())
                    } else {
                        store.append_hiding(job.events.iter(), &job.hidden)
                    };
                    // A failed transaction is reported in `Done`; the reactor logs it (at most
                    // once a second) and steps aside.
                    let (results, failed) = match outcome {
                        Ok(results) => (results, None),
                        Err(e) => (
                            vec![Err(e.to_string()); job.events.len()],
                            Some(e.to_string()),
                        ),
                    };
                    let done = Done {
                        events: job.events,
                        hidden: job.hidden,
                        results,
                        failed,
                    };
                    if outbox.send(done).is_err() || signal.send(&[][..], 0).is_err() {
                        break;
                    }
                }
            })
            .map_err(ServerError::Thread)?;
        Ok(Writer {
            jobs: Some(jobs),
            done,
            wake,
            thread: Some(thread),
            busy: false,
        })
    }

    /// Hands a batch over. Only one is committed at a time: the caller waits for
    /// [`Writer::finished`] before the next.
    pub fn submit(&mut self, job: Job) {
        debug_assert!(!self.busy, "one batch at a time");
        if let Some(jobs) = &self.jobs {
            self.busy = jobs.send(job).is_ok();
        }
    }

    /// The batch just committed, if it is done (after `wake` polled readable).
    pub fn finished(&mut self) -> Option<Done> {
        while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
        let done = self.done.try_recv().ok()?;
        self.busy = false;
        Some(done)
    }

    /// Waits for the batch being committed.
    pub fn wait(&mut self) -> Option<Done> {
        if !self.busy {
            return None;
        }
        let done = self.done.recv().ok()?;
        while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
        self.busy = false;
        Some(done)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the job channel ends the thread once it has finished its batch.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
