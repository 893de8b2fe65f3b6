//! The server's driver: one thread that owns the sockets, polls them, reads the clock, and
//! carries the engine's outputs out. Every decision is the engine's (`crate::engine`).
//!
//! ```text
//!  broker DEALER ──requests──▶ ┐                        ┌──▶ Commit ──▶ writer thread ──Done──┐
//!  peer ROUTER, links, SUB ──▶ peers ──Input──▶ Engine ──┼──▶ Hash ──▶ hasher thread ──verdict─┤
//!  writer / hasher wake-ups ────────────────────▶ ┘      ├──▶ Reply ──▶ broker / peer endpoint  │
//!                                                        ├──▶ Publish ──▶ PUB ──▶ proxy         │
//!                                                        └──▶ Ask / Tell / Connect ──▶ peers    │
//!                        Input::Committed / Input::Hashed ◀──────────────────────────────────────┘
//! ```

use std::time::{Duration, Instant};

use palaver_core::Shutdown;
use palaver_store::Store;

use crate::broker_link::{Arrival, BrokerLink};
use crate::engine::{Asker, Engine, Input, Now, Output, Setup};
use crate::hasher::Hasher;
use crate::peers::{Endpoints, Peers};
use crate::writer::Writer;
use crate::{Config, ServerError};

/// How long the reactor waits in `poll` before it looks at the shutdown flag again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs a server until `shutdown` is triggered.
///
/// # Errors
/// When the store cannot be opened or a socket cannot be set up. Once serving, nothing a peer
/// sends makes this return.
pub fn run(cfg: &Config, shutdown: &Shutdown) -> Result<(), ServerError> {
    let ctx = zmq::Context::new();
    cfg.credentials.guard(&ctx, "server")?;
    // The writer owns the write connection; the engine reads through its own (WAL lets a
    // reader see every committed transaction while the writer works).
    let writer = Writer::start(&ctx, &cfg.data_dir)?;
    let store = Store::open(&cfg.data_dir)?;
    let hasher = Hasher::start(&ctx)?;
    // Joined only once caught up with the peers: until then the broker sends clients
    // elsewhere, and nobody reads from a server that lacks what others acknowledged.
    let broker = BrokerLink::new(
        &ctx,
        &cfg.broker_backend,
        cfg.name.as_str(),
        &cfg.credentials,
    )?;
    let publisher = ctx.socket(zmq::PUB)?;
    // People's publications only, which the proxy reads as they come: this bounds the
    // server's memory while the proxy is down.
    publisher.set_sndhwm(10_000)?;
    publisher.set_linger(2000)?;
    cfg.credentials.connect(&publisher, &cfg.proxy_xsub)?;
    connect(&publisher, &cfg.proxy_xsub)?;
    let endpoints = Endpoints {
        peer_bind: cfg.peer.clone(),
        advertise: cfg.advertise.clone(),
        reference: cfg.reference.clone(),
        proxy_xpub: cfg.proxy_xpub.clone(),
        data_dir: cfg.data_dir.clone(),
        credentials: cfg.credentials.clone(),
    };
    let peers = Peers::open(&ctx, &cfg.name, &endpoints)?;
    let setup = Setup {
        name: cfg.name.clone(),
        policy: cfg.policy,
        crash_after_prepare: cfg.crash_after_prepare,
        seed: rand_seed(),
        addr: peers.addr().to_owned(),
        skew: cfg.clock_skew_ms as f64 / 1000.0,
        cluster: cfg.cluster_size,
    };
    let engine = Engine::new(&setup, store, now())?;
    tracing::info!(
        server = %cfg.name,
        broker = %cfg.broker_backend,
        proxy = %cfg.proxy_xsub,
        peer = %peers.addr(),
        reference = %cfg.reference,
        data = %cfg.data_dir.display(),
        "serving"
    );
    let mut reactor = Reactor {
        name: cfg.name.to_string(),
        engine,
        writer,
        hasher,
        broker,
        publisher,
        peers,
        bad_frames: 0,
        fail_log: palaver_core::LogGate::every_second(),
    };
    reactor.serve(shutdown)?;
    // Finish the batch being committed, then commit what is left, peers' events included;
    // writes held for acks are durable then: answer them rather than leave clients waiting.
    if let Some(done) = reactor.writer.wait() {
        reactor.engine.handle(now(), Input::Committed(done));
    }
    reactor.engine.shutdown(now());
    reactor.carry_out()?;
    if let Some(done) = reactor.writer.wait() {
        reactor.engine.handle(now(), Input::Committed(done));
    }
    reactor.engine.release_held();
    reactor.carry_out()?;
    reactor.hasher.stop();
    reactor.broker.farewell();
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

/// The time, for the engine: the monotonic clock and the machine's clock.
fn now() -> Now {
    Now {
        at: Instant::now(),
        wall: palaver_proto::now_secs(),
    }
}

/// A seed for the engine's transaction ids, different at each start.
fn rand_seed() -> u64 {
    let token = palaver_auth::token::new_token();
    u64::from_str_radix(&token[..16], 16).unwrap_or_default()
}

struct Reactor {
    name: String,
    engine: Engine,
    writer: Writer,
    /// Password work, on a thread of its own.
    hasher: Hasher,
    broker: BrokerLink,
    publisher: zmq::Socket,
    peers: Peers,
    /// Frames from the broker that were not requests.
    bad_frames: u64,
    fail_log: palaver_core::LogGate,
}

impl Reactor {
    /// Polls the sockets, hands what arrived to the engine, and carries out what it asks.
    fn serve(&mut self, shutdown: &Shutdown) -> Result<(), ServerError> {
        while !shutdown.is_triggered() {
            let at = Instant::now();
            let due = self
                .engine
                .poll_timeout()
                .into_iter()
                .chain(self.broker.deadline())
                .chain(self.peers.deadline())
                .fold(at + POLL_INTERVAL, Instant::min);
            let wait = due.saturating_duration_since(at);
            let readable = {
                let mut items = vec![
                    self.broker.socket().as_poll_item(zmq::POLLIN),
                    self.writer.wake.as_poll_item(zmq::POLLIN),
                    self.hasher.wake.as_poll_item(zmq::POLLIN),
                ];
                items.extend(
                    self.peers
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
            // One reading of the clock per turn: everything this turn does happens at `now`.
            let now = now();
            let mut inputs = Vec::new();
            self.peers.read(&readable[3..], now.at, &mut inputs);
            for input in inputs {
                self.engine.handle(now, input);
            }
            self.broker.beat(now.at);
            if readable[1] {
                if let Some(done) = self.writer.finished() {
                    self.engine.handle(now, Input::Committed(done));
                }
            }
            if readable[2] {
                for (ticket, verdict) in self.hasher.finished() {
                    self.engine.handle(now, Input::Hashed { ticket, verdict });
                }
            }
            if readable[0] {
                // Everything that arrives while the writer syncs forms the next batch, so
                // concurrent clients share commits without anyone waiting on purpose.
                self.drain(now);
            }
            self.engine.handle_timeout(now);
            self.carry_out()?;
        }
        Ok(())
    }

    /// Reads every request waiting, up to a full batch.
    fn drain(&mut self, now: Now) {
        while self.engine.takes_requests() {
            match self.broker.recv() {
                Some(Arrival::Request { token, body }) => {
                    self.engine.handle(now, Input::Request { token, body });
                }
                Some(Arrival::Unreadable(e)) => {
                    self.bad_frames += 1;
                    if let Some(quiet) = self.fail_log.admit(now.at) {
                        tracing::warn!(error = %e, bad = self.bad_frames, unlogged = quiet, "unreadable message from the broker");
                    }
                }
                None => break,
            }
        }
    }

    /// Does what the engine asked for, in order.
    fn carry_out(&mut self) -> Result<(), ServerError> {
        let now = Instant::now();
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Reply { route, reply } => self.reply(route, reply),
                Output::Publish { topic, envelope } => {
                    if let Err(e) = self
                        .publisher
                        .send_multipart([topic.into_bytes(), envelope.to_bytes()], zmq::DONTWAIT)
                    {
                        tracing::warn!(error = %e, "publication dropped");
                    }
                }
                Output::Commit(job) => self.writer.submit(job),
                Output::Hash { ticket, job } => {
                    if !self.hasher.submit(ticket, job) {
                        tracing::error!(ticket, "the hasher is gone; a password request waits");
                    }
                }
                Output::JoinBroker => self.broker.join(now)?,
                Output::LeaveBroker => self.broker.leave(),
                Output::Ask { ask, envelope } => {
                    if let Some(failed) = self.peers.ask(ask, &envelope, now) {
                        // Handled at once: the engine may ask again (a fetch elsewhere).
                        self.engine.handle(self::now(), failed);
                    }
                }
                Output::Tell { peer, body, what } => self.peers.tell(&peer, &body, what),
                Output::Connect { peer, addr } => self.peers.connect(peer, &addr),
                Output::Disconnect { peer } => self.peers.disconnect(&peer),
                Output::Digest { route, cid } => self.peers.digest(route, cid),
                Output::Ready => palaver_supervise::notify_ready(),
                Output::Crash => {
                    // Let ZeroMQ's I/O thread put the messages on the wire, then die as
                    // `kill -9` would.
                    std::thread::sleep(Duration::from_millis(300));
                    tracing::warn!(server = %self.name, "dying after a prepare, as a fault test asked");
                    std::process::abort();
                }
            }
        }
        Ok(())
    }

    fn reply(&mut self, route: Asker, reply: palaver_proto::Envelope) {
        match route {
            Asker::Broker(token) => {
                if let Err(e) = self.broker.reply(token, &reply.to_bytes()) {
                    self.engine.dropped_replies += 1;
                    if let Some(quiet) = self.fail_log.admit(Instant::now()) {
                        tracing::warn!(error = %e, dropped = self.engine.dropped_replies, unlogged = quiet, "reply dropped");
                    }
                }
            }
            Asker::Direct(route) => self.peers.answer(&route, &reply),
        }
    }
}
