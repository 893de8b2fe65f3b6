//! Replication on a simulated network: seeded drops, duplicates, delays (so reorders), crashes,
//! restarts and partitions. Once the faults stop, every replica holds the same events, each
//! exactly once, in the same order, and every write was answered. While the servers are split,
//! each side answers its writes once the servers on its side have them, without waiting for the
//! other side longer than the ack deadline.
//!
//! A failing case prints its seed; `PALAVER_SEED=<seed> cargo test -p palaver-core` replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use palaver_core::replication::{Action, Config, Replication, VersionVector};
use rand::Rng;
use sim::{seeds, split_in_two, InFlight, Wire};

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
    /// When each unanswered write was committed.
    committed_at: BTreeMap<u64, Instant>,
}

impl Node {
    fn vv(&self) -> VersionVector {
        self.store
            .iter()
            .map(|(o, evs)| (o.clone(), evs.len() as u64))
            .collect()
    }
}

/// A write answered: when, and who held it then.
struct Released {
    origin: usize,
    seq: u64,
    committed: Instant,
    at: Instant,
    /// The other servers whose store held it when it was answered.
    held_by: BTreeSet<usize>,
}

struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<Node>,
    wire: Wire<Msg>,
    next_list: Instant,
    cfg: Config,
    /// Every write answered, for the checks of when and to whom.
    released: Vec<Released>,
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
                committed_at: BTreeMap::new(),
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
            released: Vec::new(),
        }
    }

    fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
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
        self.nodes[i].committed_at.clear();
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
            node.committed_at.insert(seq, self.now);
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
                Action::Release { upto } => self.release(i, upto),
            }
        }
    }

    /// Node `i` answers its writes up to `upto`; notes when, and who held each.
    fn release(&mut self, i: usize, upto: u64) {
        let node = &self.nodes[i];
        let answered: Vec<u64> = node
            .unanswered
            .iter()
            .copied()
            .filter(|s| *s <= upto)
            .collect();
        for seq in answered {
            let held_by = (0..self.nodes.len())
                .filter(|&j| {
                    j != i && self.nodes[j].store.get(&node.name).map_or(0, Vec::len) as u64 >= seq
                })
                .collect();
            self.released.push(Released {
                origin: i,
                seq,
                // Every unanswered write had its commit time noted with it.
                committed: node.committed_at[&seq],
                at: self.now,
                held_by,
            });
        }
        let node = &mut self.nodes[i];
        node.unanswered.retain(|s| *s > upto);
        node.committed_at.retain(|s, _| *s > upto);
    }

    /// Splits the servers in two at random and cuts every link between the sides; returns the
    /// sides' indices. (The reference, which lists every server here, reaches both.)
    fn split(&mut self) -> Vec<Vec<usize>> {
        let names = self.names();
        let (a, b) = split_in_two(&mut self.wire.rng, &names);
        let sides = [a, b];
        self.wire.partition_names(&sides);
        sides
            .iter()
            .map(|side| side.iter().map(|n| self.idx(n)).collect())
            .collect()
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

    /// The invariant while the servers are split into `sides` (indices) since `cut_at`, once
    /// writes stopped and the ack deadline passed: every write was answered; none waited longer
    /// than the deadline; each was answered only once every live server on its side held it;
    /// and once the other side had missed a deadline, writes no longer waited for it: its
    /// servers are suspect, those of the own side trusted.
    fn check_released_on_each_side(&self, sides: &[Vec<usize>], cut_at: Instant, what: &str) {
        let deadline = self.cfg.ack_timeout;
        for side in sides {
            for &i in side {
                let node = &self.nodes[i];
                let Some(repl) = node.repl.as_ref() else {
                    continue;
                };
                assert!(
                    node.unanswered.is_empty(),
                    "{what}: seed {}: {} never answered {:?}",
                    self.seed,
                    node.name,
                    node.unanswered
                );
                let mine: Vec<&Released> = self
                    .released
                    .iter()
                    .filter(|r| r.origin == i && r.at >= cut_at)
                    .collect();
                // The first write after the cut is the one whose deadline the other side misses.
                let first = mine
                    .iter()
                    .map(|r| r.committed)
                    .filter(|t| *t >= cut_at)
                    .min();
                for r in &mine {
                    let waited = r.at - r.committed;
                    assert!(
                        waited <= deadline + STEP,
                        "{what}: seed {}: {} answered {} after {waited:?}",
                        self.seed,
                        node.name,
                        r.seq
                    );
                    for &j in side {
                        assert!(
                            j == i || self.nodes[j].repl.is_none() || r.held_by.contains(&j),
                            "{what}: seed {}: {} answered {} before {}, on its side, held it",
                            self.seed,
                            node.name,
                            r.seq,
                            self.nodes[j].name
                        );
                    }
                    if first.is_some_and(|f| r.committed >= f + deadline + STEP) {
                        assert!(
                            waited < deadline,
                            "{what}: seed {}: {} still waited {waited:?} for the other side to \
                             answer {}",
                            self.seed,
                            node.name,
                            r.seq
                        );
                    }
                }
                let trusted: BTreeSet<&str> = repl.trusted().collect();
                for (j, other) in self.nodes.iter().enumerate() {
                    if j == i || other.repl.is_none() {
                        continue;
                    }
                    let same_side = side.contains(&j);
                    if same_side || first.is_some() {
                        assert_eq!(
                            trusted.contains(other.name.as_str()),
                            same_side,
                            "{what}: seed {}: {} trusts {}: {repl:?}",
                            self.seed,
                            node.name,
                            other.name,
                        );
                    }
                }
            }
        }
    }

    /// Every event written is on every live server exactly once: each origin's events 1..=n,
    /// as the origin wrote them, n being what the origin wrote.
    fn check_every_write_everywhere(&self, what: &str) {
        for n in self.nodes.iter().filter(|n| n.repl.is_some()) {
            for origin in &self.nodes {
                let written = origin.store.get(&origin.name).cloned().unwrap_or_default();
                let held = n.store.get(&origin.name).cloned().unwrap_or_default();
                assert_eq!(
                    held.len(),
                    written.len(),
                    "{what}: seed {}: {} holds {} of the {} events {} wrote",
                    self.seed,
                    n.name,
                    held.len(),
                    written.len(),
                    origin.name
                );
                for (k, (h, w)) in held.iter().zip(&written).enumerate() {
                    assert!(
                        h == w && h.seq == k as u64 + 1,
                        "{what}: seed {}: {} holds {h:?} where {} wrote {w:?}",
                        self.seed,
                        n.name,
                        origin.name
                    );
                }
            }
        }
    }

    /// Once healed and quiet, every live server waits for every other again.
    fn check_trust_restored(&self, what: &str) {
        let live = self.live();
        for n in self.nodes.iter().filter(|n| n.repl.is_some()) {
            let r = n.repl.as_ref().unwrap();
            let trusted: Vec<&str> = r.trusted().collect();
            let others: Vec<&str> = live
                .iter()
                .map(String::as_str)
                .filter(|o| *o != n.name)
                .collect();
            assert_eq!(
                trusted, others,
                "{what}: seed {}: {} still distrusts a peer: {r:?}",
                self.seed, n.name
            );
        }
    }
}

const QUIET: Duration = Duration::from_secs(8);

/// Delays within one step: every message arrives at the next step, in the order sent.
///
/// The partition tests used to need links in order while they checked when writes are
/// answered: with reordering, a batch refused after a gap while a fetch of its origin was in
/// flight stayed missing until the origin's next batch or the next comparison, past the ack
/// deadline of a peer on the same side. `Replication` now fetches again when such a fetch ends
/// short of what was refused, and the partition test runs over reordering links (with these
/// in-order ones for the isolated server).
const IN_ORDER: (u64, u64) = (1, 5);

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

#[test]
fn writes_on_both_sides_of_a_partition_are_answered_and_converge_after_heal() {
    for seed in seeds(30) {
        let mut sim = Sim::new(seed, 5);
        sim.wire.delay = (1, 20);
        for i in 0..5 {
            sim.boot(i);
        }
        sim.run(Duration::from_secs(2), 0.05);
        let sides = sim.split();
        let what = format!("split {sides:?}");
        let cut_at = sim.now;
        // Duplicates, but no loss: a server on the same side is always in time.
        sim.wire.dup_rate = 0.1;
        sim.wire.delay = (1, 50);
        sim.run(Duration::from_secs(3), 0.05);
        sim.run(sim.cfg.ack_timeout + Duration::from_millis(100), 0.0);
        for side in &sides {
            assert!(
                side.iter().any(|&i| sim
                    .released
                    .iter()
                    .any(|r| r.origin == i && r.committed >= cut_at)),
                "{what}: seed {seed}: side {side:?} wrote nothing"
            );
        }
        sim.check_released_on_each_side(&sides, cut_at, &what);

        // Writes go on while the sides exchange what they missed, over reordering links.
        sim.wire.heal();
        sim.wire.delay = (1, 50);
        sim.run(Duration::from_secs(2), 0.05);
        sim.wire.dup_rate = 0.0;
        sim.wire.delay = (1, 20);
        sim.run(QUIET, 0.0);
        let what = format!("{what}, then healed");
        sim.check_converged(&what);
        sim.check_every_write_everywhere(&what);
        sim.check_trust_restored(&what);
    }
}

#[test]
fn an_isolated_server_that_keeps_taking_writes_catches_up_after_heal() {
    for seed in seeds(30) {
        let mut sim = Sim::new(seed, 4);
        sim.wire.delay = IN_ORDER;
        sim.wire.dup_rate = 0.1;
        for i in 0..4 {
            sim.boot(i);
        }
        sim.run(Duration::from_secs(2), 0.05);
        let lone = sim.wire.rng.gen_range(0..4);
        let name = sim.nodes[lone].name.clone();
        sim.wire.isolate(&name);
        let cut_at = sim.now;
        let lone_before = sim.nodes[lone].store[&name].len();
        // The isolated server takes many writes (more than a page), the others some.
        for _ in 0..30 {
            let k = sim.wire.rng.gen_range(1..6);
            sim.write(lone, k);
            sim.run(Duration::from_millis(100), 0.05);
        }
        sim.run(sim.cfg.ack_timeout + Duration::from_millis(100), 0.0);
        let sides = vec![
            vec![lone],
            (0..4).filter(|&i| i != lone).collect::<Vec<_>>(),
        ];
        let what = format!("{name} isolated");
        sim.check_released_on_each_side(&sides, cut_at, &what);
        let taken = sim.nodes[lone].store[&name].len() - lone_before;
        assert!(
            taken > 50,
            "{what}: seed {seed}: only {taken} events written while isolated"
        );

        // Healed, at first over a lossy network, with writes going on.
        sim.wire.heal();
        sim.wire.drop_rate = 0.2;
        sim.wire.dup_rate = 0.1;
        sim.wire.delay = (1, 100);
        sim.run(Duration::from_secs(2), 0.05);
        sim.wire.drop_rate = 0.0;
        sim.wire.dup_rate = 0.0;
        sim.wire.delay = (1, 20);
        sim.run(QUIET, 0.0);
        let what = format!("{what}, then healed");
        sim.check_converged(&what);
        sim.check_every_write_everywhere(&what);
        sim.check_trust_restored(&what);
    }
}
