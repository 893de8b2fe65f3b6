//! One simulated cluster: the world that moves engines, disks, network, broker and clients
//! forward in simulated time, from one seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use palaver_proto::{Envelope, Event, Name, Reply, Status};
use palaver_server::engine::{self, Asker, Done, Engine, Failure, Input, Job, Now, Output, Setup};
use palaver_store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::check::Checks;

mod people;
use people::Client;

/// How long faults last, in simulated milliseconds; then everything heals.
const FAULTS_FOR: u64 = 6_000;
/// How long after the faults the cluster has to converge.
const HEAL_WITHIN: u64 = 30_000;
/// How long a server waits for a peer's answer, and for the reference's (as the driver's
/// links do).
const PEER_TIMEOUT: u64 = 800;
const REFERENCE_TIMEOUT: u64 = 1_000;
/// How far apart the servers' clocks may be once Berkeley's rounds have run, in seconds.
const CLOCKS_WITHIN: f64 = 0.1;
/// The reactor's longest wait between turns.
const POLL_INTERVAL: u64 = 100;
/// A client waits this long for an answer before it sends the request again (as the client
/// core does), and tries this often.
const CLIENT_TIMEOUT: u64 = 2_500;
const CLIENT_ATTEMPTS: u32 = 3;
/// The broker sends a request again when its server has been silent this long.
const BROKER_SILENCE: u64 = 900;
/// The broker answers a request no server took within this long with an error.
const BROKER_GIVE_UP: u64 = 10_000;

/// A fault that lasts until a moment: a disk that refuses commits, a paused process, a server
/// cut off from the others.
#[derive(Debug, Clone, Copy)]
enum Window {
    Disk(u64),
    Pause(u64),
    Cut(u64),
}

/// A message on the network, as the sockets carry it: frames, never typed values, so every
/// message is encoded and read back as the real drivers do.
#[derive(Debug, Clone)]
enum Msg {
    /// A frame on the receiver's peer endpoint from server `from`: a request (with a
    /// correlation id) or a one-way message.
    Frame { from: usize, body: Vec<u8> },
    /// An answer, on the receiver's link to the server that answers.
    Answer { body: Vec<u8> },
    /// A publication on `servers`, through the proxy.
    Announcement(Vec<Vec<u8>>),
}

/// Something due at a moment of simulated time.
#[derive(Debug)]
enum Due {
    Deliver {
        to: usize,
        epoch: u64,
        msg: Msg,
    },
    Request {
        to: usize,
        epoch: u64,
        token: u64,
        body: Vec<u8>,
    },
    Answer {
        token: u64,
        reply: Envelope,
    },
    CommitDone {
        server: usize,
        epoch: u64,
    },
    Hashed {
        server: usize,
        epoch: u64,
        ticket: u64,
        verdict: palaver_server::Verdict,
    },
    Tick {
        server: usize,
        epoch: u64,
    },
    /// The engine's next timer (between the driver's regular turns).
    Wake {
        server: usize,
        epoch: u64,
    },
    /// The reference's answer to a server's request `cid`.
    Reference {
        server: usize,
        epoch: u64,
        cid: u64,
        request: Envelope,
    },
    /// An input for a server that was paused when it came: handed over once it runs.
    Later {
        server: usize,
        epoch: u64,
        input: Input,
    },
    /// A server's request `cid` is overdue.
    Overdue {
        server: usize,
        epoch: u64,
        cid: u64,
    },
    Client {
        client: usize,
    },
    BrokerCheck {
        token: u64,
    },
    Crash {
        server: usize,
    },
    Restart {
        server: usize,
    },
}

struct Server {
    name: String,
    dir: tempfile::TempDir,
    /// The simulated disk: the write connection, which only the simulated writer uses.
    disk: Store,
    engine: Option<Engine>,
    /// Counts restarts, so that what was due for an earlier life is dropped.
    epoch: u64,
    writing: Option<Job>,
    accepting: bool,
    disk_fails_until: u64,
    paused_until: u64,
    cut_until: u64,
    /// Seconds its machine's clock is off by.
    skew: f64,
    /// Its requests in flight, by correlation id (the driver's links), and the next id.
    asks: BTreeMap<u64, engine::Ask>,
    cid: u64,
    /// When a wake-up is due already.
    wake: Option<u64>,
}

/// A request the broker holds: whose, and which server has it.
struct Held {
    client: usize,
    body: Vec<u8>,
    server: Option<usize>,
    since: u64,
    asked: u64,
}

pub struct World {
    rng: StdRng,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<Due>>,
    servers: Vec<Server>,
    clients: Vec<Client>,
    /// The broker's requests in flight, by token; the next token.
    broker: BTreeMap<u64, Held>,
    token: u64,
    /// Network faults for this run.
    loss: f64,
    duplicate: f64,
    max_delay: u64,
    /// Session tokens handed out so far (the stand-in hasher numbers them), and the sessions
    /// clients were given: (person, token).
    tokens: u64,
    sessions: Vec<(String, String)>,
    /// Per link (from, to), when its last message is delivered: links keep their order.
    links: BTreeMap<(usize, usize), u64>,
    /// Whether read your writes is checked (see `run`).
    strict: bool,
    /// Fault windows to come: from when, which server, what.
    windows: Vec<(u64, usize, Window)>,
    /// Names acknowledged as created (people and channels), and when.
    created: BTreeMap<String, u64>,
    /// Private messages acknowledged: their ids, and to whom.
    messages: Vec<(String, String)>,
    channels: Vec<String>,
    /// The reference: the real one's logic, its rank book on the simulated disk.
    reference: palaver_infra::Registry,
    _reference_dir: tempfile::TempDir,
    pub checks: Checks,
    verbose: bool,
}

impl World {
    /// Runs seed `seed` with `n` servers; the invariants it broke.
    pub fn run(seed: u64, n: usize, verbose: bool) -> anyhow::Result<Vec<String>> {
        let mut w = World::new(seed, n, verbose)?;
        w.plan_faults();
        // Read your writes rests on the peers' acks: a write is answered once the live peers
        // hold it, or once they have missed the deadline for it (they are taken for down, and
        // repaired later). A network that loses messages or cuts a live server off makes a
        // peer miss it while it still serves, so the guarantee is checked where the network
        // only delays, reorders and duplicates (processes may still crash, pause, or fail
        // their commits).
        w.strict = w.loss == 0.0
            && !w
                .windows
                .iter()
                .any(|(_, _, x)| matches!(x, Window::Cut(_)));
        for c in 0..w.clients.len() {
            let at = w.rng.gen_range(0..200);
            w.at(at, Due::Client { client: c });
        }
        w.run_until(FAULTS_FOR + HEAL_WITHIN)?;
        let views = w.final_view()?;
        w.checks.at_the_end(&views);
        w.inbox_settled(&views);
        w.coordination_settled(true);
        w.sessions_agree()?;
        w.names_agree(&views);
        Ok(w.checks.violations.clone())
    }

    fn new(seed: u64, n: usize, verbose: bool) -> anyhow::Result<World> {
        let mut rng = StdRng::seed_from_u64(seed);
        let shm = std::path::Path::new("/dev/shm");
        let mut servers = Vec::new();
        for i in 0..n {
            let dir = if shm.is_dir() {
                tempfile::Builder::new()
                    .prefix("palaver-sim")
                    .tempdir_in(shm)?
            } else {
                tempfile::tempdir()?
            };
            let disk = Store::open(dir.path()).context("the simulated disk")?;
            let skew = [0.0, 0.0, 0.4, -1.5, 30.0][rng.gen_range(0..5)];
            servers.push(Server {
                skew,
                asks: BTreeMap::new(),
                cid: 0,
                wake: None,
                name: format!("s{}", i + 1),
                dir,
                disk,
                engine: None,
                epoch: 0,
                writing: None,
                accepting: false,
                disk_fails_until: 0,
                paused_until: 0,
                cut_until: 0,
            });
        }
        let clients = (0..rng.gen_range(2..=5))
            .map(|c| Client::new(c, rng.gen_range(5..25)))
            .collect();
        let reference_dir = tempfile::tempdir()?;
        let reference =
            palaver_infra::Registry::open(reference_dir.path(), palaver_infra::HEARTBEAT_TIMEOUT)?;
        let mut w = World {
            reference,
            _reference_dir: reference_dir,
            loss: [0.0, 0.01, 0.05, 0.2][rng.gen_range(0..4)],
            duplicate: [0.0, 0.02][rng.gen_range(0..2)],
            max_delay: [2, 10, 60][rng.gen_range(0..3)],
            windows: Vec::new(),
            links: BTreeMap::new(),
            tokens: 0,
            sessions: Vec::new(),
            strict: true,
            rng,
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            servers,
            clients,
            broker: BTreeMap::new(),
            token: 1,
            created: BTreeMap::new(),
            messages: Vec::new(),
            channels: Vec::new(),
            checks: Checks::default(),
            verbose,
        };
        for s in 0..n {
            w.start(s)?;
        }
        Ok(w)
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("{:>6} ms  {}", self.now, what());
        }
    }

    /// The faults of this run: crashes, failing disks, pauses and cuts from the network, all
    /// before `FAULTS_FOR`.
    fn plan_faults(&mut self) {
        let n = self.servers.len();
        for _ in 0..self.rng.gen_range(0..=4) {
            let s = self.rng.gen_range(0..n);
            let from = self.rng.gen_range(200..FAULTS_FOR - 1_000);
            let until = from + self.rng.gen_range(200..2_500);
            let window = match self.rng.gen_range(0..4) {
                0 => {
                    self.at(from, Due::Crash { server: s });
                    self.at(until, Due::Restart { server: s });
                    continue;
                }
                1 => Window::Disk(until),
                2 => Window::Pause(until),
                _ => Window::Cut(until),
            };
            self.windows.push((from, s, window));
        }
    }

    /// Opens the fault windows whose time has come.
    fn apply_windows(&mut self) {
        let now = self.now;
        let (open, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.windows)
            .into_iter()
            .partition(|(from, _, _)| *from <= now);
        self.windows = later;
        for (_, s, w) in open {
            let server = &mut self.servers[s];
            match w {
                Window::Disk(until) => server.disk_fails_until = server.disk_fails_until.max(until),
                Window::Pause(until) => server.paused_until = server.paused_until.max(until),
                Window::Cut(until) => server.cut_until = server.cut_until.max(until),
            }
            let name = server.name.clone();
            self.log(|| format!("{name}: {w:?}"));
        }
    }

    fn at(&mut self, delay: u64, due: Due) {
        let when = self.now + delay;
        self.seq += 1;
        self.slots.push(Some(due));
        self.queue
            .push(Reverse((when, self.seq, self.slots.len() - 1)));
    }

    /// The simulated time as an instant.
    fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.now)
    }

    /// The time as server `s`'s machine reads it.
    fn now_for(&self, s: usize) -> Now {
        Now {
            at: self.base + Duration::from_millis(self.now),
            wall: 1_767_270_000.0 + self.now as f64 / 1000.0 + self.servers[s].skew,
        }
    }

    fn alive(&self, s: usize) -> bool {
        self.servers[s].engine.is_some()
    }

    fn run_until(&mut self, end: u64) -> anyhow::Result<()> {
        let mut next_check = FAULTS_FOR;
        while let Some(Reverse((when, _, slot))) = self.queue.pop() {
            if when > end {
                break;
            }
            self.now = when;
            self.apply_windows();
            let Some(due) = self.slots[slot].take() else {
                continue;
            };
            self.step(due)?;
            if self.now >= next_check {
                next_check = self.now + 500;
                if self.settled()? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether, faults over, every server is up, idle, and holds the same events, and every
    /// client is done.
    fn settled(&mut self) -> anyhow::Result<bool> {
        if self.now < FAULTS_FOR
            || self.clients.iter().any(|c| !c.done())
            || self
                .servers
                .iter()
                .any(|s| s.engine.is_none() || s.writing.is_some())
        {
            return Ok(false);
        }
        let mut summaries = BTreeSet::new();
        for s in &self.servers {
            summaries.insert(s.disk.summary()?);
            // Every two-phase delete a server prepared is decided there.
            let rooms = s.disk.snapshot()?.rooms;
            if !crate::check::undecided(&s.name, rooms.iter()).is_empty() {
                return Ok(false);
            }
        }
        Ok(summaries.len() == 1 && self.coordination_settled(false))
    }

    fn step(&mut self, due: Due) -> anyhow::Result<()> {
        match due {
            Due::Deliver { to, epoch, msg } => self.deliver(to, epoch, msg),
            Due::Request {
                to,
                epoch,
                token,
                body,
            } => {
                if self.servers[to].epoch != epoch || !self.alive(to) {
                    return Ok(());
                }
                if self.servers[to].paused_until > self.now {
                    let wait = self.servers[to].paused_until - self.now;
                    self.at(
                        wait,
                        Due::Request {
                            to,
                            epoch,
                            token,
                            body,
                        },
                    );
                    return Ok(());
                }
                self.input(to, Input::Request { token, body })
            }
            Due::Answer { token, reply } => {
                self.answer(token, reply);
                Ok(())
            }
            Due::CommitDone { server, epoch } => self.commit_done(server, epoch),
            Due::Hashed {
                server,
                epoch,
                ticket,
                verdict,
            } => {
                if self.servers[server].epoch != epoch {
                    return Ok(());
                }
                self.input(server, Input::Hashed { ticket, verdict })
            }
            Due::Tick { server, epoch } => {
                if self.servers[server].epoch != epoch || !self.alive(server) {
                    return Ok(());
                }
                if self.servers[server].paused_until <= self.now {
                    self.turn(server)?;
                }
                self.at(POLL_INTERVAL, Due::Tick { server, epoch });
                Ok(())
            }
            Due::Wake { server, epoch } => {
                if self.servers[server].epoch != epoch || !self.alive(server) {
                    return Ok(());
                }
                self.servers[server].wake = None;
                if self.servers[server].paused_until <= self.now {
                    self.turn(server)?;
                }
                Ok(())
            }
            Due::Reference {
                server,
                epoch,
                cid,
                request,
            } => {
                let at = self.base + Duration::from_millis(self.now);
                let answer = self.reference.handle(&request, at);
                if self.verbose && request.service != "heartbeat" {
                    let who = self.servers[server].name.clone();
                    let what = format!("{:?}", answer.data)
                        .chars()
                        .take(300)
                        .collect::<String>();
                    self.log(|| format!("reference → {who}: {} {what}", request.service));
                }
                if self.servers[server].epoch == epoch {
                    self.answered(server, cid, Ok(answer))?;
                }
                Ok(())
            }
            Due::Later {
                server,
                epoch,
                input,
            } => {
                if self.servers[server].epoch != epoch {
                    return Ok(());
                }
                self.input(server, input)
            }
            Due::Overdue { server, epoch, cid } => {
                if self.servers[server].epoch != epoch {
                    return Ok(());
                }
                self.answered(server, cid, Err(Failure::Timeout))
            }
            Due::Client { client } => {
                self.client_step(client);
                Ok(())
            }
            Due::BrokerCheck { token } => {
                self.broker_check(token);
                Ok(())
            }
            Due::Crash { server } => {
                self.crash(server);
                Ok(())
            }
            Due::Restart { server } => self.start(server),
        }
    }

    // ---- servers ----

    fn start(&mut self, s: usize) -> anyhow::Result<()> {
        if self.alive(s) {
            return Ok(());
        }
        let cluster = self.servers.len();
        let server = &mut self.servers[s];
        server.epoch += 1;
        server.writing = None;
        server.accepting = false;
        server.asks.clear();
        server.wake = None;
        let setup = Setup {
            name: Name::parse(&server.name)?,
            policy: palaver_server::Policy::default(),
            crash_after_prepare: false,
            seed: server.epoch << 32,
            addr: format!("sim://{}", server.name),
            skew: 0.0,
            cluster,
        };
        let store = Store::open(server.dir.path())?;
        let now = self.now_for(s);
        self.servers[s].engine = Some(Engine::new(&setup, store, now)?);
        let epoch = self.servers[s].epoch;
        self.log(|| format!("{} starts", self.servers[s].name));
        self.at(0, Due::Tick { server: s, epoch });
        Ok(())
    }

    fn crash(&mut self, s: usize) {
        let server = &mut self.servers[s];
        if server.engine.take().is_none() {
            return;
        }
        // What the writer had not committed is lost with the process.
        server.writing = None;
        server.accepting = false;
        server.epoch += 1;
        self.log(|| format!("{} crashes", self.servers[s].name));
        self.requeue_from(s);
    }

    fn input(&mut self, s: usize, input: Input) -> anyhow::Result<()> {
        // A paused process runs nothing: what comes for it (its writer's and hasher's
        // results, answers, timeouts) waits until it runs again.
        if self.servers[s].paused_until > self.now {
            let (wait, epoch) = (
                self.servers[s].paused_until - self.now,
                self.servers[s].epoch,
            );
            self.at(
                wait,
                Due::Later {
                    server: s,
                    epoch,
                    input,
                },
            );
            return Ok(());
        }
        let now = self.now_for(s);
        let Some(engine) = self.servers[s].engine.as_mut() else {
            return Ok(());
        };
        engine.handle(now, input);
        self.turn(s)
    }

    /// The end of a turn: the engine's timers, then its outputs.
    fn turn(&mut self, s: usize) -> anyhow::Result<()> {
        let now = self.now_for(s);
        let Some(engine) = self.servers[s].engine.as_mut() else {
            return Ok(());
        };
        engine.handle_timeout(now);
        let outputs: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
        let next = engine.poll_timeout();
        for o in outputs {
            self.output(s, o)?;
        }
        // The driver sleeps until the engine's next timer, or its poll interval.
        if let Some(next) = next {
            let at = u64::try_from(next.saturating_duration_since(self.base).as_millis())
                .unwrap_or(u64::MAX)
                .max(self.now + 1);
            let server = &mut self.servers[s];
            if at < self.now + POLL_INTERVAL && server.wake.is_none_or(|w| w > at) {
                server.wake = Some(at);
                let epoch = server.epoch;
                self.at(at - self.now, Due::Wake { server: s, epoch });
            }
        }
        Ok(())
    }

    /// Server `s`'s request `cid` was answered, or not: the engine hears of it once.
    fn answered(
        &mut self,
        s: usize,
        cid: u64,
        answer: Result<Envelope, Failure>,
    ) -> anyhow::Result<()> {
        match self.servers[s].asks.remove(&cid) {
            Some(ask) => self.input(s, Input::Answer { ask, answer }),
            // Late, or a copy: the link drops it.
            None => Ok(()),
        }
    }

    fn output(&mut self, s: usize, o: Output) -> anyhow::Result<()> {
        let me = self.servers[s].name.clone();
        match o {
            Output::Reply { route, reply } => match route {
                Asker::Broker(token) => {
                    self.check_durable(s, &reply);
                    let delay = self.rng.gen_range(0..2);
                    self.at(delay, Due::Answer { token, reply });
                }
                Asker::Direct(route) => {
                    let asker = route
                        .first()
                        .and_then(|r| std::str::from_utf8(r).ok())
                        .and_then(|name| self.index(name));
                    if let Some(t) = asker {
                        let body = reply.to_bytes();
                        self.send(s, t, Msg::Answer { body });
                    }
                }
            },
            Output::Publish { topic, envelope } => {
                if topic == palaver_proto::TOPIC_SERVERS {
                    let c = envelope.data.opt_str("coordinator").ok().flatten();
                    self.log(|| format!("{me} announces coordinator {c:?}"));
                    let frames = vec![topic.into_bytes(), envelope.to_bytes()];
                    for t in 0..self.servers.len() {
                        self.send(s, t, Msg::Announcement(frames.clone()));
                    }
                }
            }
            Output::Ready | Output::Connect { .. } | Output::Disconnect { .. } => {}
            Output::Digest { .. } => anyhow::bail!("nobody asks for a digest here"),
            Output::Commit(job) => {
                let latency = self.rng.gen_range(1..6);
                self.servers[s].writing = Some(job);
                let epoch = self.servers[s].epoch;
                self.at(latency, Due::CommitDone { server: s, epoch });
            }
            Output::Hash { ticket, job } => {
                // Password work as the hasher thread does it, with a stand-in for argon2id
                // (a run cannot spend 25 ms a hash) and tokens from the world's counter.
                self.tokens += 1;
                let verdict = fake_work(job, self.tokens);
                let delay = self.rng.gen_range(5..40);
                let epoch = self.servers[s].epoch;
                self.at(
                    delay,
                    Due::Hashed {
                        server: s,
                        epoch,
                        ticket,
                        verdict,
                    },
                );
            }
            Output::JoinBroker => {
                self.servers[s].accepting = true;
                if let (true, Some(e)) = (self.verbose, &self.servers[s].engine) {
                    println!(
                        "{:>6} ms  {me} joins the broker: {}",
                        self.now,
                        e.replication()
                    );
                }
            }
            Output::LeaveBroker => {
                self.log(|| format!("{me} leaves the broker"));
                self.servers[s].accepting = false;
                self.requeue_from(s);
            }
            Output::Ask { ask, envelope } => {
                let server = &mut self.servers[s];
                server.cid += 1;
                let cid = server.cid;
                let epoch = server.epoch;
                let request = envelope.with("cid", cid);
                match &ask {
                    engine::Ask::Reference(_) => {
                        server.asks.insert(cid, ask);
                        self.at(
                            REFERENCE_TIMEOUT,
                            Due::Overdue {
                                server: s,
                                epoch,
                                cid,
                            },
                        );
                        // The reference is reached over the network too (it may lose the
                        // request), but no cut keeps a server from it.
                        if !self.lost() {
                            let delay = self.rng.gen_range(0..=self.max_delay);
                            self.at(
                                delay,
                                Due::Reference {
                                    server: s,
                                    epoch,
                                    cid,
                                    request,
                                },
                            );
                        }
                    }
                    engine::Ask::Peer { peer, .. } => match self.index(peer) {
                        Some(t) => {
                            self.servers[s].asks.insert(cid, ask);
                            self.at(
                                PEER_TIMEOUT,
                                Due::Overdue {
                                    server: s,
                                    epoch,
                                    cid,
                                },
                            );
                            let body = request.to_bytes();
                            self.send(s, t, Msg::Frame { from: s, body });
                        }
                        None => {
                            let answer = Err(Failure::NotSent);
                            self.input(s, Input::Answer { ask, answer })?;
                        }
                    },
                }
            }
            Output::Tell { peer, body, what } => {
                if self.verbose && what == "replica batch" {
                    println!("{:>6} ms  {me} sends a batch to {peer}", self.now);
                }
                if let Some(t) = self.index(&peer) {
                    self.send(s, t, Msg::Frame { from: s, body });
                }
            }
            Output::Crash => self.crash(s),
        }
        Ok(())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == name)
    }

    /// A message on the network: lost, delayed, duplicated; never across a cut.
    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        let cut = |s: &Server| s.cut_until > self.now;
        if cut(&self.servers[from]) || cut(&self.servers[to]) {
            return;
        }
        // Faults end at `FAULTS_FOR`, the network's with the rest.
        let (loss, duplicate) = if self.now < FAULTS_FOR {
            (self.loss, self.duplicate)
        } else {
            (0.0, 0.0)
        };
        let copies = if self.rng.gen_bool(duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            if self.rng.gen_bool(loss) {
                continue;
            }
            // One link keeps its order (a ZeroMQ connection over TCP); messages on different
            // links, and requests from the broker, overtake each other freely.
            let earliest = self.links.get(&(from, to)).copied().unwrap_or(0);
            let at = (self.now + self.rng.gen_range(0..=self.max_delay)).max(earliest);
            self.links.insert((from, to), at);
            let delay = at - self.now;
            let epoch = self.servers[to].epoch;
            self.at(
                delay,
                Due::Deliver {
                    to,
                    epoch,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Whether the network loses this message (while the faults last).
    fn lost(&mut self) -> bool {
        self.now < FAULTS_FOR && self.rng.gen_bool(self.loss)
    }

    fn deliver(&mut self, to: usize, epoch: u64, msg: Msg) -> anyhow::Result<()> {
        if self.servers[to].epoch != epoch || !self.alive(to) {
            return Ok(());
        }
        if self.servers[to].cut_until > self.now {
            return Ok(());
        }
        if self.servers[to].paused_until > self.now {
            let wait = self.servers[to].paused_until - self.now;
            self.at(wait, Due::Deliver { to, epoch, msg });
            return Ok(());
        }
        match msg {
            Msg::Frame { from, body } => {
                let route = vec![self.servers[from].name.clone().into_bytes()];
                self.input(to, Input::Peer { route, body })
            }
            Msg::Answer { body } => {
                let env = Envelope::decode(&body).context("an answer the engine made")?;
                match env.data.opt_counter("cid") {
                    Ok(Some(cid)) => self.answered(to, cid, Ok(env)),
                    other => anyhow::bail!("an answer without its correlation id: {other:?}"),
                }
            }
            Msg::Announcement(frames) => self.input(to, Input::Announcement(frames)),
        }
    }

    /// Whether coordination has settled: every live server takes the same server for
    /// coordinator, the live one the reference ranks highest, and their clocks agree within
    /// [`CLOCKS_WITHIN`]. At the end (`report`), what has not settled is a violation.
    fn coordination_settled(&mut self, report: bool) -> bool {
        let at = self.base + Duration::from_millis(self.now);
        let list = self.reference.handle(&Envelope::new("list"), at);
        let highest = palaver_proto::ServerEntry::parse_list(&list)
            .ok()
            .and_then(|l| l.into_iter().max_by_key(|e| e.rank))
            .map(|e| e.name.to_string());
        let mut views = Vec::new();
        for s in 0..self.servers.len() {
            let wall = self.now_for(s).wall;
            if let Some(e) = &self.servers[s].engine {
                let c = e.coordinator().map(|m| m.name.clone());
                views.push((self.servers[s].name.clone(), c, e.wall_at(wall)));
            }
        }
        let agreed = views.iter().all(|(_, c, _)| *c == highest);
        let walls = views.iter().map(|(_, _, w)| *w);
        let spread = walls.clone().fold(f64::MIN, f64::max) - walls.fold(f64::MAX, f64::min);
        if report {
            if !agreed {
                self.checks.violation(format!(
                    "one coordinator: the reference ranks {highest:?} highest, the servers say {:?}",
                    views.iter().map(|(n, c, _)| (n, c)).collect::<Vec<_>>()
                ));
            }
            if spread > CLOCKS_WITHIN {
                self.checks.violation(format!(
                    "clocks: {spread:.3} s apart once healed: {:?}",
                    views.iter().map(|(n, _, w)| (n, w)).collect::<Vec<_>>()
                ));
            }
        }
        agreed && spread <= CLOCKS_WITHIN
    }

    /// The simulated writer is done: the batch is on the disk, or the disk refused it.
    fn commit_done(&mut self, s: usize, epoch: u64) -> anyhow::Result<()> {
        let server = &mut self.servers[s];
        if server.epoch != epoch {
            return Ok(());
        }
        let Some(job) = server.writing.take() else {
            return Ok(());
        };
        let done = if server.disk_fails_until > self.now {
            if self.verbose {
                let ids: Vec<String> = job.events.iter().map(Event::id).collect();
                println!(
                    "{:>6} ms  {} failed to commit {ids:?}",
                    self.now, server.name
                );
            }
            let n = job.events.len();
            Done {
                events: job.events,
                hidden: job.hidden,
                results: vec![Err("database or disk is full".into()); n],
                failed: Some("database or disk is full".into()),
            }
        } else if job.events.is_empty() && job.hidden.is_empty() {
            server.disk.probe()?;
            Done {
                events: Vec::new(),
                hidden: Vec::new(),
                results: Vec::new(),
                failed: None,
            }
        } else {
            let results = server.disk.append_hiding(job.events.iter(), &job.hidden)?;
            if self.verbose {
                let ids: Vec<String> = job.events.iter().map(Event::id).collect();
                println!(
                    "{:>6} ms  {} committed {ids:?} hidden {:?}",
                    self.now, server.name, job.hidden
                );
            }
            Done {
                events: job.events,
                hidden: job.hidden,
                results,
                failed: None,
            }
        };
        self.input(s, Input::Committed(done))
    }

    /// An answer that says it wrote an event must find it on the answering server's disk.
    fn check_durable(&mut self, s: usize, reply: &Envelope) {
        if Reply::status(reply) == Status::Error {
            return;
        }
        let Ok(Some(id)) = reply.data.opt_str("id") else {
            return;
        };
        let Some((origin, seq)) = id.rsplit_once(':') else {
            return;
        };
        let Ok(seq) = seq.parse::<u64>() else { return };
        // Hidden or not: a repeat found later still answers with the id it had.
        let stored = self.servers[s]
            .disk
            .events_after(origin, seq.saturating_sub(1), 1)
            .ok()
            .and_then(|page| page.first().map(|e| e.seq == seq))
            .unwrap_or(false);
        if !stored {
            self.checks.violation(format!(
                "durable before acknowledged: at {} ms {} answered `{}` with {id} before it was on its disk",
                self.now,
                self.servers[s].name, reply.service
            ));
        }
    }

    // ---- the broker ----

    fn requeue_from(&mut self, s: usize) {
        let tokens: Vec<u64> = self
            .broker
            .iter()
            .filter(|(_, h)| h.server == Some(s))
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            if let Some(h) = self.broker.get_mut(&t) {
                h.server = None;
            }
            self.dispatch(t);
        }
    }

    /// Sends request `token` to a live server in the rotation, if there is one.
    fn dispatch(&mut self, token: u64) {
        let candidates: Vec<usize> = (0..self.servers.len())
            .filter(|s| self.alive(*s) && self.servers[*s].accepting)
            .collect();
        let Some(h) = self.broker.get(&token) else {
            return;
        };
        if candidates.is_empty() {
            if self.now >= h.since + BROKER_GIVE_UP {
                let h = self.broker.remove(&token).expect("held");
                let reply = Reply::error(
                    &Envelope::sniff_service(&h.body).unwrap_or_default(),
                    "no server could take the request in time",
                );
                self.at(0, Due::Answer { token, reply });
            } else {
                self.at(100, Due::BrokerCheck { token });
            }
            return;
        }
        let s = candidates[self.rng.gen_range(0..candidates.len())];
        let body = h.body.clone();
        if let Some(h) = self.broker.get_mut(&token) {
            h.server = Some(s);
            h.asked = self.now;
        }
        let epoch = self.servers[s].epoch;
        let delay = self.rng.gen_range(0..2);
        self.at(
            delay,
            Due::Request {
                to: s,
                epoch,
                token,
                body,
            },
        );
        self.at(BROKER_SILENCE, Due::BrokerCheck { token });
    }

    /// A request whose server went silent (crashed, paused, out of the rotation) goes to
    /// another.
    fn broker_check(&mut self, token: u64) {
        let Some(h) = self.broker.get(&token) else {
            return;
        };
        match h.server {
            None => self.dispatch(token),
            Some(s) => {
                let silent = !self.alive(s)
                    || self.servers[s].paused_until > self.now
                    || !self.servers[s].accepting;
                if silent && self.now >= h.asked + BROKER_SILENCE {
                    self.dispatch(token);
                } else {
                    self.at(BROKER_SILENCE, Due::BrokerCheck { token });
                }
            }
        }
    }

    fn answer(&mut self, token: u64, reply: Envelope) {
        // The first answer to a token passes; a second is dropped.
        let Some(h) = self.broker.remove(&token) else {
            return;
        };
        self.client_answer(h.client, reply);
    }

    fn submit(&mut self, client: usize, body: Vec<u8>) {
        let token = self.token;
        self.token += 1;
        self.broker.insert(
            token,
            Held {
                client,
                body,
                server: None,
                since: self.now,
                asked: self.now,
            },
        );
        self.dispatch(token);
    }

    // ---- the end ----

    /// Asks server `s`'s engine `env` directly (as an operator's tool would), at the end;
    /// its answer, if it is up and answers.
    fn ask_at_the_end(&mut self, s: usize, mut env: Envelope) -> Option<Envelope> {
        let now = self.now_for(s);
        let engine = self.servers[s].engine.as_mut()?;
        env.stamp(1.0, 0);
        let body = env.to_bytes();
        let route = vec![b"end".to_vec()];
        engine.handle(now, Input::Peer { route, body });
        engine.handle_timeout(now);
        std::iter::from_fn(|| engine.poll_output()).find_map(|o| match o {
            Output::Reply {
                route: Asker::Direct(_),
                reply,
            } => Some(reply),
            _ => None,
        })
    }

    /// Every session a client was given is valid on every server, or on none (a password
    /// change or a logout ends it everywhere).
    fn sessions_agree(&mut self) -> anyhow::Result<()> {
        for (user, token) in self.sessions.clone() {
            let mut verdicts = Vec::new();
            for s in 0..self.servers.len() {
                let env = Envelope::new("joined")
                    .with("user", user.as_str())
                    .with("token", token.as_str());
                if let Some(reply) = self.ask_at_the_end(s, env) {
                    let valid = Reply::status(&reply) != Status::Error;
                    verdicts.push((self.servers[s].name.clone(), valid));
                }
            }
            self.log(|| format!("session of {user}: {verdicts:?}"));
            if verdicts.iter().any(|(_, v)| *v) && verdicts.iter().any(|(_, v)| !*v) {
                self.checks.violation(format!(
                    "sessions: {user}'s session {}… is valid on some servers only: {verdicts:?}",
                    &token[..8]
                ));
            }
        }
        Ok(())
    }

    /// A name is claimed once: every server lists the same people and the same channels,
    /// no name is both, every acknowledged login's name is a person's and every acknowledged
    /// channel a channel (or deleted) on every server, and every password a client was told
    /// is in force (unless a change of it was left in doubt) is the one every server holds.
    fn names_agree(&mut self, views: &[crate::check::View]) {
        let mut lists: Vec<(String, BTreeSet<String>, BTreeSet<String>)> = Vec::new();
        for s in 0..self.servers.len() {
            let list = |reply: Option<Envelope>| -> Option<BTreeSet<String>> {
                let reply = reply?;
                Some(reply.data.str_list("users").ok()?.into_iter().collect())
            };
            let users = list(self.ask_at_the_end(s, Envelope::new("users")));
            let channels = list(self.ask_at_the_end(s, Envelope::new("channels")));
            if let (Some(users), Some(channels)) = (users, channels) {
                lists.push((self.servers[s].name.clone(), users, channels));
            }
        }
        for (server, users, channels) in &lists {
            if let Some((first, u, c)) = lists.first() {
                if u != users || c != channels {
                    self.checks.violation(format!(
                        "one answer for every name: {first} lists people {u:?} and channels {c:?}, \
                         {server} lists {users:?} and {channels:?}"
                    ));
                }
            }
            if let Some(both) = users.intersection(channels).next() {
                self.checks.violation(format!(
                    "a name is claimed once: `{both}` is a person's and a channel on {server}"
                ));
            }
            for p in &self.checks.people.clone() {
                if !users.contains(p) {
                    self.checks.violation(format!(
                        "a name is claimed once: `{p}` logged in (acknowledged), but {server} \
                         does not list them"
                    ));
                }
            }
            let deleted = views
                .iter()
                .find(|v| v.name() == server)
                .map(crate::check::View::deleted)
                .cloned()
                .unwrap_or_default();
            for ch in &self.checks.channels.clone() {
                if !channels.contains(ch) && !deleted.contains(ch) {
                    self.checks.violation(format!(
                        "a name is claimed once: channel `{ch}` was created (acknowledged), but \
                         {server} does not have it"
                    ));
                }
            }
        }
        for c in 0..self.clients.len() {
            let (Some(pw), false) = (&self.clients[c].password, self.clients[c].unsure) else {
                continue;
            };
            let want = format!("sim${pw}");
            let Ok(user) = palaver_proto::Name::parse(&self.clients[c].name) else {
                continue;
            };
            for s in &self.servers {
                let Some(engine) = &s.engine else { continue };
                let held = engine.password_of(&user);
                if held != Some(want.as_str()) {
                    self.checks.violation(format!(
                        "a name is claimed once: {user}'s password, acknowledged as {want}, is \
                         {held:?} on {}",
                        s.name
                    ));
                }
            }
        }
    }

    fn final_view(&self) -> anyhow::Result<Vec<crate::check::View>> {
        for s in &self.servers {
            if let (true, Some(e)) = (self.verbose, &s.engine) {
                println!("{}: {}", s.name, e.replication());
            }
        }
        let mut views = Vec::new();
        for s in &self.servers {
            views.push(crate::check::View::read(
                &s.name,
                &s.disk,
                s.engine.is_some(),
            )?);
        }
        Ok(views)
    }
}

/// Password work with a stand-in for argon2id: a "hash" that names the password, checked by
/// comparing, and tokens numbered by the world (deterministic, and fast enough for thousands
/// of runs).
fn fake_work(job: palaver_server::HashJob, n: u64) -> palaver_server::Verdict {
    use palaver_server::{HashJob, Verdict};
    let hash = |pw: &str| format!("sim${pw}");
    match job {
        HashJob::Check { phc, password } => {
            let ok = phc == hash(password.expose());
            Verdict {
                ok,
                hash: None,
                token: ok.then(|| format!("{n:064x}")),
            }
        }
        HashJob::Make { password } => Verdict {
            ok: true,
            hash: Some(hash(password.expose())),
            token: None,
        },
        HashJob::Change { phc, password, new } => {
            let ok = phc == hash(password.expose());
            Verdict {
                ok,
                hash: ok.then(|| hash(new.expose())),
                token: None,
            }
        }
    }
}
