use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use crate::{Event, Store, StoreError};

/// The most events one transaction takes; more wait for the next commit.
pub const MAX_BATCH: usize = 4096;

/// How many jobs may wait for the writer. When full, `submit` blocks: back-pressure reaches the
/// reactor, which then stops reading requests, and ZeroMQ queues them upstream.
const QUEUE: usize = 16 * 1024;

/// A write to carry out; `token` comes back in the matching [`Done`].
pub struct Job {
    pub token: u64,
    pub event: Event,
}

/// The outcome of one job, delivered only after its commit is durable (or has failed).
#[derive(Debug)]
pub struct Done {
    pub token: u64,
    pub result: Result<(), String>,
}

/// Handle to the group-commit thread. Dropping it (or calling [`Writer::close`]) lets the
/// thread finish what is queued and stop.
pub struct Writer {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread. `notify` runs on that thread with each batch's outcomes.
    pub fn spawn(
        store: Store,
        notify: impl FnMut(Vec<Done>) + Send + 'static,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(store, rx, notify))
            .map_err(|source| StoreError::Dir {
                path: "writer thread".into(),
                source,
            })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a job, waiting while the queue is full.
    ///
    /// # Errors
    /// When the writer thread has stopped.
    pub fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(job)
            .map_err(|_| StoreError::WriterGone)
    }

    /// Finishes the queued jobs and stops the thread.
    pub fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(mut store: Store, rx: Receiver<Job>, mut notify: impl FnMut(Vec<Done>)) {
    let mut tokens = Vec::with_capacity(MAX_BATCH);
    let mut events = Vec::with_capacity(MAX_BATCH);
    // Block for the first job of a batch, then take everything that queued up meanwhile: the
    // requests that arrived during the previous fsync share the next one.
    while let Ok(first) = rx.recv() {
        tokens.push(first.token);
        events.push(first.event);
        while events.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    tokens.push(job.token);
                    events.push(job.event);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let results = match store.append(&events) {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, batch = events.len(), "commit failed");
                vec![Err("storage failure".to_owned()); events.len()]
            }
        };
        let done = tokens
            .drain(..)
            .zip(results)
            .map(|(token, result)| Done { token, result })
            .collect();
        events.clear();
        notify(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;
    use palaver_proto::Name;

    #[test]
    fn every_job_is_answered_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer::spawn(store, move |done| {
            for d in done {
                tx.send(d).unwrap();
            }
        })
        .unwrap();
        for seq in 1..=500u64 {
            let user = Name::parse(&format!("u{seq}")).unwrap();
            let event = Event {
                origin: "s1".into(),
                seq,
                lamport: seq,
                timestamp: 0.0,
                kind: EventKind::Login { user },
            };
            writer.submit(Job { token: seq, event }).unwrap();
        }
        let mut seen: Vec<u64> = (0..500)
            .map(|_| rx.recv().unwrap())
            .map(|d| {
                assert!(d.result.is_ok());
                d.token
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=500).collect::<Vec<_>>());
        writer.close();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.counts().unwrap().logins, 500);
    }
}
