use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use palaver_core::Shutdown;
use palaver_proto::{now_secs, Envelope, ProtoError, Reply, Request, MAX_FRAME_BYTES};
use palaver_store::{Done, Event, Job, Store, Writer};

use crate::{Config, Outcome, ServerError, State};

/// How long the reactor waits in `poll` before it looks at the shutdown flag again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Requests read per turn of the loop before finished writes are answered, so replies keep
/// flowing under a flood of requests.
const READ_BURST: usize = 512;

/// A write waiting for its commit: where to send the answer.
struct Pending {
    envelope: Vec<Vec<u8>>,
    event: Event,
}

/// Runs a server until `shutdown` is triggered.
///
/// # Errors
/// When the store cannot be opened or a socket cannot be set up. Once serving, nothing a peer
/// sends makes this return.
pub fn run(cfg: &Config, shutdown: &Shutdown) -> Result<(), ServerError> {
    let store = Store::open(&cfg.data_dir)?;
    let snapshot = store.snapshot()?;
    tracing::info!(
        server = %cfg.name,
        users = snapshot.users.len(),
        channels = snapshot.channels.len(),
        data = %cfg.data_dir.display(),
        "opened store"
    );
    let state = State::new(cfg.name.as_str(), snapshot);

    let ctx = zmq::Context::new();
    let wake_endpoint = format!("inproc://wake-{}", cfg.name);
    let wake = ctx.socket(zmq::PULL)?;
    wake.bind(&wake_endpoint)?;
    let wake_tx = ctx.socket(zmq::PUSH)?;
    wake_tx.connect(&wake_endpoint)?;
    let (done_tx, done_rx) = mpsc::channel::<Vec<Done>>();
    let writer = Writer::spawn(store, move |done| {
        // The reactor may be gone during shutdown; then nobody is waiting for the answers.
        if done_tx.send(done).is_ok() {
            let _ = wake_tx.send(&[][..], zmq::DONTWAIT);
        }
    })?;

    let worker = ctx.socket(zmq::DEALER)?;
    worker.set_rcvhwm(100_000)?;
    worker.set_sndhwm(100_000)?;
    worker.set_linger(2000)?;
    connect(&worker, &cfg.broker_backend)?;
    let publisher = ctx.socket(zmq::PUB)?;
    publisher.set_sndhwm(100_000)?;
    publisher.set_linger(2000)?;
    connect(&publisher, &cfg.proxy_xsub)?;
    tracing::info!(server = %cfg.name, broker = %cfg.broker_backend, proxy = %cfg.proxy_xsub, "serving");

    let mut reactor = Reactor {
        state,
        writer,
        worker,
        publisher,
        pending: HashMap::new(),
        next_token: 0,
    };
    reactor.serve(&wake, &done_rx, shutdown);
    reactor.writer.close();
    while let Ok(done) = done_rx.try_recv() {
        reactor.finish(done);
    }
    tracing::info!(server = %cfg.name, "stopped");
    Ok(())
}

fn connect(socket: &zmq::Socket, endpoint: &str) -> Result<(), ServerError> {
    socket
        .connect(endpoint)
        .map_err(|source| ServerError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })
}

struct Reactor {
    state: State,
    writer: Writer,
    worker: zmq::Socket,
    publisher: zmq::Socket,
    pending: HashMap<u64, Pending>,
    next_token: u64,
}

impl Reactor {
    fn serve(
        &mut self,
        wake: &zmq::Socket,
        done_rx: &mpsc::Receiver<Vec<Done>>,
        shutdown: &Shutdown,
    ) {
        while !shutdown.is_triggered() {
            let (worker_ready, wake_ready) = {
                let mut items = [
                    self.worker.as_poll_item(zmq::POLLIN),
                    wake.as_poll_item(zmq::POLLIN),
                ];
                if let Err(e) = zmq::poll(&mut items, POLL_INTERVAL.as_millis() as i64) {
                    tracing::warn!(error = %e, "poll failed");
                    continue;
                }
                (items[0].is_readable(), items[1].is_readable())
            };
            if wake_ready {
                while wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
            }
            while let Ok(done) = done_rx.try_recv() {
                self.finish(done);
            }
            if worker_ready {
                for _ in 0..READ_BURST {
                    match self.worker.recv_multipart(zmq::DONTWAIT) {
                        Ok(frames) => self.request(frames),
                        Err(zmq::Error::EAGAIN) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "receive failed");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Handles one request: `[routing envelope…, body]`.
    fn request(&mut self, mut frames: Vec<Vec<u8>>) {
        let Some(body) = frames.pop() else { return };
        let envelope = frames;
        if body.len() > MAX_FRAME_BYTES {
            tracing::warn!(bytes = body.len(), "refused an oversized frame");
        }
        let env = match Envelope::decode(&body) {
            Ok(env) => env,
            Err(e) => {
                let service = Envelope::sniff_service(&body);
                self.reject(&envelope, service.as_deref(), &e);
                return;
            }
        };
        if let Some(clock) = env.clock() {
            self.state.observe(clock);
        }
        let req = match Request::parse(&env) {
            Ok((req, _meta)) => req,
            Err(e) => {
                self.reject(&envelope, Some(&env.service), &e);
                return;
            }
        };
        match self.state.handle(req, now_secs()) {
            Outcome::Reply(reply) => self.reply(&envelope, reply),
            Outcome::Write(event) => {
                self.next_token += 1;
                let token = self.next_token;
                let job = Job {
                    token,
                    event: event.clone(),
                };
                self.pending.insert(token, Pending { envelope, event });
                if let Err(e) = self.writer.submit(job) {
                    tracing::error!(error = %e, "store writer is gone");
                    if let Some(p) = self.pending.remove(&token) {
                        let reply = self.state.failed(&p.event);
                        self.reply(&p.envelope, reply);
                    }
                }
            }
        }
    }

    fn reject(&mut self, envelope: &[Vec<u8>], service: Option<&str>, err: &ProtoError) {
        tracing::debug!(service, error = %err, "rejected a request");
        self.reply(envelope, Reply::rejection(service, err));
    }

    /// Answers the writes whose commits finished, publishing what they made.
    fn finish(&mut self, done: Vec<Done>) {
        for d in done {
            let Some(p) = self.pending.remove(&d.token) else {
                continue;
            };
            match d.result {
                Ok(()) => {
                    let (reply, publication) = self.state.committed(&p.event);
                    if let Some((topic, mut env)) = publication {
                        // The publication keeps the event's Lamport time, but the clock moves on.
                        self.state.tick();
                        let timestamp = p.event.timestamp;
                        env.data.set("timestamp", timestamp);
                        let frames = [topic.into_bytes(), env.to_bytes()];
                        if let Err(e) = self.publisher.send_multipart(frames, zmq::DONTWAIT) {
                            tracing::warn!(error = %e, "publication dropped");
                        }
                    }
                    self.reply(&p.envelope, reply);
                }
                Err(e) => {
                    tracing::error!(error = %e, id = %p.event.id(), "write failed");
                    let reply = self.state.failed(&p.event);
                    self.reply(&p.envelope, reply);
                }
            }
        }
    }

    fn reply(&mut self, envelope: &[Vec<u8>], mut reply: Envelope) {
        reply.stamp(now_secs(), self.state.tick());
        let mut frames: Vec<&[u8]> = envelope.iter().map(Vec::as_slice).collect();
        let body = reply.to_bytes();
        frames.push(&body);
        if let Err(e) = self.worker.send_multipart(frames, zmq::DONTWAIT) {
            tracing::warn!(error = %e, "reply dropped");
        }
    }
}
