//! Replication on a simulated network: seeded drops, duplicates, delays (so reorders), crashes
//! and restarts. Once the faults stop, every replica holds the same events, each exactly once,
//! in the same order, and every write was answered.
//!
//! A failing case prints its seed; `PALAVER_SEED=<seed> cargo test -p palaver-core` replays it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palaver_core::replication::{Action, Config, Replication, VersionVector};
use rand::Rng;
use sim::{seeds, InFlight, Wire};

mod sim;

const STEP: Duration = Duration::from_millis(5);
const LIST_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ev {
    lamport: u64,
    origin: String,
    seq: u64,
}

#[derive(Debug, Clone)]
enum Msg {
    Replica(Vec<Ev>),
    Ack(u64),
    AskVector,
    Vector(VersionVector),
    Fetch {
        origin: String,
        after: u64,
        limit: usize,
    },
    Fetched {
        origin: String,
        events: Vec<Ev>,
        more: bool,
    },
}

struct Node {
    name: String,
    repl: Option<Replication>,
    /// Durable: survives crashes.
    store: BTreeMap<String, Vec<Ev>>,
    lamport: u64,
    /// Own writes not yet answered, and the highest answered.
    unanswered: Vec<u64>,
}

impl Node {
    fn vv(&self) -> VersionVector {
        self.store
            .iter()
            .map(|(o, evs)| (o.clone(), evs.len() as u64))
            .collect()
    }
}

struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<Node>,
    wire: Wire<Msg>,
    next_list: Instant,
    cfg: Config,
}

impl Sim {
    fn new(seed: u64, n: usize) -> Sim {
        let now = Instant::now();
        let nodes = (1..=n)
            .map(|i| Node {
                name: format!("s{i}"),
                repl: None,
                store: BTreeMap::new(),
                lamport: 0,
                unanswered: Vec::new(),
            })
            .collect();
        let cfg = Config {
            page: 7,
            ..Config::default()
        };
        Sim {
            seed,
            now,
            nodes,
            wire: Wire::new(seed),
            next_list: now,
            cfg,
        }
    }

    fn idx(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }

    fn live(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.repl.is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    fn boot(&mut self, i: usize) {
        let vv = self.nodes[i].vv();
        let mut r = Replication::new(&self.nodes[i].name, vv, self.cfg);
        r.set_peers(self.now, self.live());
        self.nodes[i].repl = Some(r);
        self.nodes[i].unanswered.clear();
        self.flush(i);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].repl = None;
    }

    fn send(&mut self, from: &str, to: &str, msg: Msg) {
        self.wire.send(self.now, from, to, msg);
    }

    /// Node `i` accepts `k` writes of its own, commits them, and publishes them.
    fn write(&mut self, i: usize, k: usize) {
        if self.nodes[i].repl.is_none() {
            return;
        }
        let me = self.nodes[i].name.clone();
        let mut evs = Vec::new();
        for _ in 0..k {
            let node = &mut self.nodes[i];
            node.lamport += 1;
            let seq = node.store.get(&me).map_or(0, Vec::len) as u64 + 1;
            let ev = Ev {
                lamport: node.lamport,
                origin: me.clone(),
                seq,
            };
            node.store.entry(me.clone()).or_default().push(ev.clone());
            node.unanswered.push(seq);
            evs.push(ev);
        }
        let last = evs.last().unwrap().seq;
        let now = self.now;
        self.nodes[i]
            .repl
            .as_mut()
            .unwrap()
            .on_own_commit(now, last);
        for peer in self.live().into_iter().filter(|p| *p != me) {
            self.send(&me, &peer, Msg::Replica(evs.clone()));
        }
        self.flush(i);
    }

    /// Stores what `offer` took; returns the origins touched.
    fn take(&mut self, i: usize, from: &str, origin: &str, events: &[Ev]) {
        let now = self.now;
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let flags = self.nodes[i]
            .repl
            .as_mut()
            .unwrap()
            .offer(now, from, origin, &seqs);
        let node = &mut self.nodes[i];
        let mut took = false;
        for (e, take) in events.iter().zip(flags) {
            if take {
                let held = node.store.entry(origin.to_owned()).or_default();
                assert_eq!(
                    held.len() as u64 + 1,
                    e.seq,
                    "seed {}: {} would apply {:?} out of order or twice",
                    self.seed,
                    node.name,
                    e
                );
                held.push(e.clone());
                node.lamport = node.lamport.max(e.lamport);
                took = true;
            }
        }
        if took {
            node.repl.as_mut().unwrap().on_stored([origin.to_owned()]);
        }
    }

    fn deliver(&mut self, m: InFlight<Msg>) {
        let i = self.idx(&m.to);
        if self.nodes[i].repl.is_none() {
            return;
        }
        let now = self.now;
        let me = self.nodes[i].name.clone();
        match m.msg {
            Msg::Replica(events) => {
                let origin = events[0].origin.clone();
                self.take(i, &m.from, &origin, &events);
            }
            Msg::Ack(seq) => self.nodes[i]
                .repl
                .as_mut()
                .unwrap()
                .on_ack(now, &m.from, seq),
            Msg::AskVector => {
                let vv = self.nodes[i].vv();
                self.send(&me, &m.from, Msg::Vector(vv));
            }
            Msg::Vector(vv) => self.nodes[i]
                .repl
                .as_mut()
                .unwrap()
                .on_vector(now, &m.from, &vv),
            Msg::Fetch {
                origin,
                after,
                limit,
            } => {
                let held = self.nodes[i]
                    .store
                    .get(&origin)
                    .cloned()
                    .unwrap_or_default();
                let events: Vec<Ev> = held
                    .iter()
                    .skip(after as usize)
                    .take(limit)
                    .cloned()
                    .collect();
                let more = (after as usize + events.len()) < held.len();
                self.send(
                    &me,
                    &m.from,
                    Msg::Fetched {
                        origin,
                        events,
                        more,
                    },
                );
            }
            Msg::Fetched {
                origin,
                events,
                more,
            } => {
                if !events.is_empty() {
                    self.take(i, &m.from, &origin, &events);
                }
                self.nodes[i]
                    .repl
                    .as_mut()
                    .unwrap()
                    .on_fetched(now, &m.from, &origin, more);
            }
        }
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let me = self.nodes[i].name.clone();
        while let Some(a) = self.nodes[i]
            .repl
            .as_mut()
            .and_then(Replication::poll_action)
        {
            match a {
                Action::AskVector { peer } => self.send(&me, &peer, Msg::AskVector),
                Action::Fetch {
                    peer,
                    origin,
                    after,
                    limit,
                } => self.send(
                    &me,
                    &peer,
                    Msg::Fetch {
                        origin,
                        after,
                        limit,
                    },
                ),
                Action::Ack { peer, seq } => self.send(&me, &peer, Msg::Ack(seq)),
                Action::Release { upto } => self.nodes[i].unanswered.retain(|s| *s > upto),
            }
        }
    }

    fn run(&mut self, d: Duration, write_rate: f64) {
        let end = self.now + d;
        while self.now < end {
            self.now += STEP;
            let now = self.now;
            for m in self.wire.due(now) {
                self.deliver(m);
            }
            if now >= self.next_list {
                self.next_list = now + LIST_EVERY;
                let live = self.live();
                for i in 0..self.nodes.len() {
                    if let Some(r) = self.nodes[i].repl.as_mut() {
                        r.set_peers(now, live.clone());
                    }
                    self.flush(i);
                }
            }
            for i in 0..self.nodes.len() {
                if write_rate > 0.0 && self.wire.rng.gen_bool(write_rate) {
                    let k = self.wire.rng.gen_range(1..4);
                    self.write(i, k);
                }
                if let Some(r) = self.nodes[i].repl.as_mut() {
                    if r.poll_timeout().is_some_and(|t| t <= now) {
                        r.handle_timeout(now);
                    }
                }
                self.flush(i);
            }
        }
    }

    fn check_converged(&self, what: &str) {
        let live: Vec<&Node> = self.nodes.iter().filter(|n| n.repl.is_some()).collect();
        let first = &live[0];
        let order = |n: &Node| {
            let mut all: Vec<Ev> = n.store.values().flatten().cloned().collect();
            all.sort();
            all
        };
        for n in &live {
            assert_eq!(
                n.vv(),
                first.vv(),
                "{what}: seed {}: {} and {} hold different events",
                self.seed,
                n.name,
                first.name
            );
            assert_eq!(
                order(n),
                order(first),
                "{what}: seed {}: different order",
                self.seed
            );
            assert_eq!(
                n.repl.as_ref().unwrap().vector(),
                &n.vv(),
                "{what}: seed {}: vector of {}",
                self.seed,
                n.name
            );
            assert!(
                n.unanswered.is_empty(),
                "{what}: seed {}: {} never answered {:?}",
                self.seed,
                n.name,
                n.unanswered
            );
            assert!(
                n.repl.as_ref().unwrap().caught_up(),
                "{what}: seed {}: {} not caught up",
                self.seed,
                n.name
            );
        }
    }
}

const QUIET: Duration = Duration::from_secs(8);

#[test]
fn a_calm_cluster_replicates_everything_and_answers_every_write() {
    for seed in seeds(30) {
        let mut sim = Sim::new(seed, 3);
        for i in 0..3 {
            sim.boot(i);
        }
        sim.run(Duration::from_secs(3), 0.05);
        sim.run(QUIET, 0.0);
        sim.check_converged("calm");
        assert!(
            sim.nodes[0].store.values().flatten().count() > 50,
            "seed {seed}: the test wrote something"
        );
    }
}

#[test]
fn drops_duplicates_and_reorders_are_repaired() {
    for seed in seeds(30) {
        let mut sim = Sim::new(seed, 4);
        sim.wire.drop_rate = 0.3;
        sim.wire.dup_rate = 0.2;
        sim.wire.delay = (1, 300);
        for i in 0..4 {
            sim.boot(i);
        }
        sim.run(Duration::from_secs(6), 0.05);
        sim.wire.drop_rate = 0.0;
        sim.wire.dup_rate = 0.0;
        sim.wire.delay = (1, 10);
        sim.run(QUIET, 0.0);
        sim.check_converged("after a lossy period");
    }
}

#[test]
fn crashed_and_restarted_servers_catch_up() {
    for seed in seeds(30) {
        let mut sim = Sim::new(seed, 3);
        sim.wire.drop_rate = 0.1;
        sim.wire.delay = (1, 50);
        for i in 0..3 {
            sim.boot(i);
        }
        for round in 0..4 {
            sim.run(Duration::from_secs(2), 0.05);
            let victim = sim.wire.rng.gen_range(0..3);
            sim.crash(victim);
            sim.run(Duration::from_secs(2), 0.05);
            sim.boot(victim);
            let _ = round;
        }
        sim.wire.drop_rate = 0.0;
        sim.wire.delay = (1, 10);
        sim.run(QUIET, 0.0);
        sim.check_converged("after crashes");
    }
}

#[test]
fn a_server_that_missed_a_lot_catches_up_in_pages() {
    for seed in seeds(30).into_iter().take(5) {
        let mut sim = Sim::new(seed, 3);
        sim.boot(0);
        sim.boot(1);
        sim.run(Duration::from_secs(5), 0.3);
        let missed = sim.nodes[0].store.values().flatten().count();
        sim.boot(2);
        sim.run(QUIET, 0.0);
        sim.check_converged("late joiner");
        assert!(missed > 500, "seed {seed}: it missed {missed} events");
    }
}

#[test]
fn peers_that_fell_behind_are_waited_for_again_under_steady_writes() {
    for seed in seeds(30).into_iter().take(10) {
        let mut sim = Sim::new(seed, 3);
        sim.cfg.page = 500;
        sim.wire.delay = (1, 20);
        for i in 0..3 {
            sim.boot(i);
        }
        sim.run(Duration::from_secs(1), 0.5);
        // A lossy second makes peers miss acks and fall from trust.
        sim.wire.drop_rate = 0.5;
        sim.run(Duration::from_secs(1), 0.5);
        sim.wire.drop_rate = 0.0;
        // Writes go on without pause; an ack always trails the latest write, yet the peers
        // must be trusted again once they have caught up.
        sim.run(Duration::from_secs(5), 1.0);
        for n in &sim.nodes {
            let r = n.repl.as_ref().unwrap();
            assert_eq!(
                r.trusted().count(),
                2,
                "seed {seed}: {} still distrusts a peer: {r:?}",
                n.name
            );
        }
        sim.run(QUIET, 0.0);
        sim.check_converged("after steady writes");
    }
}

#[test]
fn a_restarted_server_compares_again_as_soon_as_its_catch_up_ends() {
    let t0 = Instant::now();
    let mut r = Replication::new("s3", VersionVector::default(), Config::default());
    let drain = |r: &mut Replication| std::iter::from_fn(|| r.poll_action()).collect::<Vec<_>>();
    r.set_peers(t0, ["s1".to_owned()]);
    assert!(drain(&mut r)
        .iter()
        .any(|a| matches!(a, Action::AskVector { peer } if peer == "s1")));
    let theirs: VersionVector = [("s1".to_owned(), 3)].into_iter().collect();
    r.on_vector(t0, "s1", &theirs);
    assert!(drain(&mut r)
        .iter()
        .any(|a| matches!(a, Action::Fetch { origin, after: 0, .. } if origin == "s1")));
    assert_eq!(r.offer(t0, "s1", "s1", &[1, 2, 3]), [true, true, true]);
    r.on_stored(["s1".to_owned()]);
    r.on_fetched(t0, "s1", "s1", false);
    // At once, not at the next periodic exchange a second later.
    assert!(drain(&mut r)
        .iter()
        .any(|a| matches!(a, Action::AskVector { peer } if peer == "s1")));
    assert!(
        !r.caught_up(),
        "caught up only by an exchange that shows it"
    );
    r.on_vector(t0, "s1", &theirs);
    assert!(r.caught_up());
}
