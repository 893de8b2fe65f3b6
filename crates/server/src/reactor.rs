use std::time::{Duration, Instant};

use palaver_core::{Lamport, Shutdown};
use palaver_proto::{Envelope, ProtoError, Reply, Request, MAX_FRAME_BYTES};
use palaver_store::Store;

use crate::coord::{Coordination, Endpoints, Facts};
use crate::state::Handled;
use crate::{Config, ServerError, State};

/// How long the reactor waits in `poll` before it looks at the shutdown flag again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The most requests one batch (one commit) takes.
const MAX_BATCH: usize = 1024;

/// A request handled but not yet answered: its answer waits for the batch's commit.
struct Queued {
    envelope: Vec<Vec<u8>>,
    handled: Handled,
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
    let lamport = Lamport::starting_at(snapshot.max_lamport);
    let state = State::new(cfg.name.as_str(), snapshot);

    let ctx = zmq::Context::new();
    let worker = ctx.socket(zmq::DEALER)?;
    worker.set_rcvhwm(100_000)?;
    worker.set_sndhwm(100_000)?;
    worker.set_linger(2000)?;
    connect(&worker, &cfg.broker_backend)?;
    let publisher = ctx.socket(zmq::PUB)?;
    publisher.set_sndhwm(100_000)?;
    publisher.set_linger(2000)?;
    connect(&publisher, &cfg.proxy_xsub)?;
    let endpoints = Endpoints {
        peer_bind: cfg.peer.clone(),
        advertise: cfg.advertise.clone(),
        reference: cfg.reference.clone(),
        proxy_xpub: cfg.proxy_xpub.clone(),
    };
    let coord = Coordination::open(
        &ctx,
        &cfg.name,
        &endpoints,
        cfg.clock_skew_ms as f64 / 1000.0,
    )?;
    tracing::info!(
        server = %cfg.name,
        broker = %cfg.broker_backend,
        proxy = %cfg.proxy_xsub,
        peer = %coord.addr(),
        reference = %cfg.reference,
        "serving"
    );

    let mut reactor = Reactor {
        state,
        store,
        worker,
        publisher,
        lamport,
        coord,
    };
    reactor.serve(shutdown);
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
    store: Store,
    worker: zmq::Socket,
    publisher: zmq::Socket,
    lamport: Lamport,
    coord: Coordination,
}

impl Reactor {
    /// Reads what has arrived, handles it as one batch, commits the batch's writes with one
    /// fsync, then answers every request of the batch in order.
    fn serve(&mut self, shutdown: &Shutdown) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while !shutdown.is_triggered() {
            let now = Instant::now();
            let wait = self
                .coord
                .deadline()
                .saturating_duration_since(now)
                .min(POLL_INTERVAL);
            let readable = {
                let mut items = vec![self.worker.as_poll_item(zmq::POLLIN)];
                items.extend(
                    self.coord
                        .sockets()
                        .into_iter()
                        .map(|s| s.as_poll_item(zmq::POLLIN)),
                );
                // Round up, so a deadline a fraction of a millisecond away is not spun on.
                let ms = i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
                match zmq::poll(&mut items, ms) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => tracing::warn!(error = %e, "poll failed"),
                }
                items
                    .iter()
                    .map(zmq::PollItem::is_readable)
                    .collect::<Vec<bool>>()
            };
            let now = Instant::now();
            let facts = Facts {
                users: self.state.user_count(),
                channels: self.state.channel_count(),
            };
            self.coord.on_ready(
                &readable[1..],
                now,
                &mut self.lamport,
                &self.publisher,
                facts,
            );
            self.coord.on_tick(now, &mut self.lamport, &self.publisher);
            if readable[0] {
                // Everything that arrived while the previous batch was being synced forms the
                // next batch, so concurrent clients share commits without anyone waiting on
                // purpose.
                self.drain(&mut batch);
                let n = batch.len();
                self.commit(&mut batch);
                self.coord
                    .client_requests(n, Instant::now(), &mut self.lamport);
            }
        }
    }

    /// Reads every request waiting, up to a full batch.
    fn drain(&mut self, batch: &mut Vec<Queued>) {
        while batch.len() < MAX_BATCH {
            match self.worker.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => batch.push(self.request(frames)),
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    break;
                }
            }
        }
    }

    /// Handles one request: `[routing envelope…, body]`.
    fn request(&mut self, mut frames: Vec<Vec<u8>>) -> Queued {
        let body = frames.pop().unwrap_or_default();
        let envelope = frames;
        if body.len() > MAX_FRAME_BYTES {
            tracing::warn!(bytes = body.len(), "refused an oversized frame");
        }
        let env = match Envelope::decode(&body) {
            Ok(env) => env,
            Err(e) => {
                let service = Envelope::sniff_service(&body);
                return Queued {
                    envelope,
                    handled: rejection(service.as_deref(), &e),
                };
            }
        };
        if let Some(clock) = env.clock() {
            self.lamport.observe(clock);
        }
        let handled = match Request::parse(&env) {
            Ok((req, _meta)) => self.state.handle(req, self.coord.now(), &mut self.lamport),
            Err(e) => rejection(Some(&env.service), &e),
        };
        Queued { envelope, handled }
    }

    /// Stores the batch's events in one transaction, then answers and publishes.
    fn commit(&mut self, batch: &mut Vec<Queued>) {
        let events = batch.iter().filter_map(|q| q.handled.event.as_ref());
        let results = if events.clone().next().is_none() {
            Vec::new()
        } else {
            match self.store.append(events) {
                Ok(results) => results,
                Err(e) => {
                    tracing::error!(error = %e, "commit failed");
                    vec![Err(e.to_string()); batch.len()]
                }
            }
        };
        let mut results = results.into_iter();
        let mut lost = false;
        for q in batch.drain(..) {
            let Handled {
                reply,
                event,
                publication,
            } = q.handled;
            let stored = match &event {
                None => true,
                Some(ev) => match results.next() {
                    Some(Ok(())) => true,
                    other => {
                        let why = other
                            .and_then(Result::err)
                            .unwrap_or_else(|| "no result".into());
                        tracing::error!(id = %ev.id(), error = %why, "write failed");
                        false
                    }
                },
            };
            if !stored {
                lost = true;
                let service = reply.service.clone();
                self.reply(
                    &q.envelope,
                    Reply::error(&service, "the server could not store this; try again"),
                );
                continue;
            }
            self.reply(&q.envelope, reply);
            if let Some((topic, env)) = publication {
                self.lamport.tick();
                if let Err(e) = self
                    .publisher
                    .send_multipart([topic.into_bytes(), env.to_bytes()], zmq::DONTWAIT)
                {
                    tracing::warn!(error = %e, "publication dropped");
                }
            }
        }
        if lost {
            // Memory ran ahead of the disk: start again from what the disk holds.
            match self.store.snapshot() {
                Ok(snap) => self.state.reload(snap),
                Err(e) => tracing::error!(error = %e, "cannot reload state after a failed commit"),
            }
        }
    }

    fn reply(&mut self, envelope: &[Vec<u8>], mut reply: Envelope) {
        reply.stamp(self.coord.now(), self.lamport.tick());
        let body = reply.to_bytes();
        let frames = envelope
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(body.as_slice()));
        if let Err(e) = self.worker.send_multipart(frames, zmq::DONTWAIT) {
            tracing::warn!(error = %e, "reply dropped");
        }
    }
}

fn rejection(service: Option<&str>, err: &ProtoError) -> Handled {
    tracing::debug!(service, error = %err, "rejected a request");
    Handled {
        reply: Reply::rejection(service, err),
        event: None,
        publication: None,
    }
}
