//! Claims decided by a majority (Multi-Paxos) on a simulated network: seeded drops,
//! duplicates, delays (so reorders), partitions (a split in two, an isolated member), crashes
//! at any moment and restarts from the durable records, while proposals go mostly to the
//! member that the others take for coordinator and sometimes to any member (duelling leaders).
//! Whatever happens:
//!
//! - one value per slot: no two members ever apply different entries at one slot;
//! - in order: every member applies slots 1, 2, 3… each once;
//! - an answer `Decided { slot }` names the slot whose entry is that very proposal;
//! - an answer `NoMajority` means the proposal never takes effect, anywhere, ever;
//! - no proposal is decided twice;
//! - once the faults stop and everyone is back, a new proposal is decided, and every member
//!   holds the same log.
//!
//! A failing case prints its seed; `PALAVER_SEED=<seed> cargo test -p palaver-core --test
//! claims` replays it (`PALAVER_TRACE=1` tells its story).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use palaver_core::claims::{Action, Entry, Msg, Node, Outcome, Record, Timeouts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sim::{seeds, split_in_two, Steps, Wire};

mod sim;

const STEP: Duration = Duration::from_millis(5);

struct Member {
    name: String,
    node: Option<Node<String>>,
    /// Durable at once, over all its lives: its records, and the entries it applied.
    records: Vec<Record<String>>,
    applied: Vec<Entry<String>>,
    restart_at: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Faults {
    drop_rate: f64,
    dup_rate: f64,
    max_delay: u64,
    crashes_per_sec: f64,
    /// Probability of a crash right after any action a member carries out.
    crash_in_flush: f64,
    partitions_per_sec: f64,
    /// Probability that a proposal goes to a random member rather than the coordinator.
    stray: f64,
    proposals_per_sec: f64,
}

#[derive(Default, Debug)]
struct Stats {
    decided: u64,
    no_majority: u64,
    unknown: u64,
    crashes: u64,
    partitions: u64,
    prepares: u64,
    forwards: u64,
}

struct Sim {
    seed: u64,
    start: Instant,
    now: Instant,
    rng: StdRng,
    trace: bool,
    members: Vec<Member>,
    wire: Wire<Msg<String>>,
    faults: Faults,
    faulty: bool,
    partition_until: Option<Instant>,
    /// Every slot as first applied anywhere.
    log: BTreeMap<u64, Entry<String>>,
    /// Proposals by id: the claim, and its answer.
    proposals: BTreeMap<u64, (String, Option<Outcome>)>,
    next_id: u64,
    stats: Stats,
}

impl Sim {
    fn new(seed: u64, n: usize, faults: Faults) -> Sim {
        let now = Instant::now();
        let mut wire = Wire::new(seed);
        wire.drop_rate = faults.drop_rate;
        wire.dup_rate = faults.dup_rate;
        wire.delay = (1, faults.max_delay.max(1));
        let members = (1..=n)
            .map(|i| Member {
                name: format!("s{i}"),
                node: None,
                records: Vec::new(),
                applied: Vec::new(),
                restart_at: None,
            })
            .collect();
        let mut sim = Sim {
            seed,
            start: now,
            now,
            rng: StdRng::seed_from_u64(seed ^ 0x000c_1a15),
            trace: std::env::var_os("PALAVER_TRACE").is_some(),
            members,
            wire,
            faults,
            faulty: false,
            partition_until: None,
            log: BTreeMap::new(),
            proposals: BTreeMap::new(),
            next_id: 1,
            stats: Stats::default(),
        };
        for i in 0..n {
            sim.boot(i);
        }
        sim
    }

    fn at(&self, what: &str) -> String {
        format!("{what}: PALAVER_SEED={}", self.seed)
    }

    fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    fn idx(&self, name: &str) -> usize {
        self.members.iter().position(|m| m.name == name).unwrap()
    }

    fn boot(&mut self, i: usize) {
        let names = self.names();
        let timeouts = Timeouts::default();
        let m = &mut self.members[i];
        let mut node = Node::new(m.name.clone(), timeouts);
        node.set_members(names);
        for r in m.records.clone() {
            node.restore(r);
        }
        for (k, e) in m.applied.iter().enumerate() {
            node.restore_decided(k as u64 + 1, e.clone());
        }
        m.node = Some(node);
        m.restart_at = None;
        if self.trace {
            eprintln!("{:?} {} starts", self.now - self.start, m.name);
        }
    }

    fn crash(&mut self, i: usize) {
        if self.members[i].node.take().is_none() {
            return;
        }
        self.stats.crashes += 1;
        let back = self.now + Duration::from_millis(self.rng.gen_range(100..2_000));
        self.members[i].restart_at = Some(back);
        if self.trace {
            eprintln!(
                "{:?} {} crashes",
                self.now - self.start,
                self.members[i].name
            );
        }
    }

    /// Carries out what member `i` asked for, in order. A crash may strike between two
    /// actions: what came before a send's record is durable, the rest is lost.
    fn flush(&mut self, i: usize) {
        loop {
            let Some(node) = self.members[i].node.as_mut() else {
                return;
            };
            let Some(action) = node.poll_action() else {
                return;
            };
            let me = self.members[i].name.clone();
            match action {
                Action::Record(r) => self.members[i].records.push(r),
                Action::Decide { slot, entry } => {
                    // Stored, then learned (a crash in between: the others' `Decided` and
                    // catch-up give it back).
                    if let Some(node) = self.members[i].node.as_mut() {
                        node.learn(slot, entry);
                    }
                }
                Action::Send { to, msg } => {
                    match &msg {
                        Msg::Prepare { .. } => self.stats.prepares += 1,
                        Msg::Forward { .. } => self.stats.forwards += 1,
                        Msg::Promise { .. }
                        | Msg::Accept { .. }
                        | Msg::Accepted { .. }
                        | Msg::Nack { .. }
                        | Msg::Outcome { .. }
                        | Msg::Decided { .. }
                        | Msg::Catchup { .. }
                        | Msg::Log { .. } => {}
                    }
                    if self.trace {
                        eprintln!("{:?} {me} → {to}: {msg:?}", self.now - self.start);
                    }
                    self.wire.send(self.now, &me, &to, msg);
                }
                Action::Apply { slot, entry } => {
                    let m = &mut self.members[i];
                    assert_eq!(
                        slot,
                        m.applied.len() as u64 + 1,
                        "{}",
                        self.at(&format!("{me} applies slot {slot} out of order"))
                    );
                    m.applied.push(entry.clone());
                    match self.log.get(&slot) {
                        Some(first) => assert_eq!(
                            *first,
                            entry,
                            "{}",
                            self.at(&format!("{me} applies another value at slot {slot}"))
                        ),
                        None => {
                            self.log.insert(slot, entry);
                        }
                    }
                }
                Action::Answer { id, outcome } => {
                    if self.trace {
                        eprintln!("{:?} {me} answers {id}: {outcome:?}", self.now - self.start);
                    }
                    let (claim, answer) = self.proposals.get_mut(&id).expect("a proposal");
                    assert!(
                        answer.is_none(),
                        "{}",
                        format!("{id} answered twice: PALAVER_SEED={}", self.seed)
                    );
                    *answer = Some(outcome);
                    match outcome {
                        Outcome::Decided { slot } => {
                            self.stats.decided += 1;
                            let claim = claim.clone();
                            assert_eq!(
                                self.log.get(&slot),
                                Some(&Entry::Claim(claim)),
                                "{}",
                                self.at(&format!("{id} answered decided at slot {slot}"))
                            );
                        }
                        Outcome::NoMajority => self.stats.no_majority += 1,
                        Outcome::Unknown => self.stats.unknown += 1,
                    }
                }
            }
            if self.faulty && self.rng.gen_bool(self.faults.crash_in_flush) {
                self.crash(i);
                return;
            }
        }
    }

    /// The member proposals go to: the highest-ranked up member that `from` reaches.
    fn coordinator(&self, from: &str) -> Option<usize> {
        (0..self.members.len()).rev().find(|&i| {
            self.members[i].node.is_some() && self.wire.reachable(from, &self.members[i].name)
        })
    }

    fn propose(&mut self, at: usize) {
        let id = self.next_id;
        self.next_id += 1;
        let claim = format!("v{id}");
        self.proposals.insert(id, (claim.clone(), None));
        let now = self.now;
        if let Some(node) = self.members[at].node.as_mut() {
            node.propose(now, id, claim);
        }
        self.flush(at);
    }

    fn random_faults(&mut self) {
        let dt = STEP.as_secs_f64();
        let n = self.members.len();
        if self
            .rng
            .gen_bool((self.faults.crashes_per_sec * dt).min(1.0))
        {
            let i = self.rng.gen_range(0..n);
            self.crash(i);
        }
        if self.partition_until.is_none()
            && self
                .rng
                .gen_bool((self.faults.partitions_per_sec * dt).min(1.0))
        {
            self.stats.partitions += 1;
            let names = self.names();
            if self.rng.gen_bool(0.5) {
                let (a, b) = split_in_two(&mut self.rng, &names);
                self.wire.partition_names(&[a, b]);
            } else {
                let who = names[self.rng.gen_range(0..n)].clone();
                self.wire.isolate(&who);
            }
            let lasts = Duration::from_millis(self.rng.gen_range(200..3_000));
            self.partition_until = Some(self.now + lasts);
        }
        if self
            .rng
            .gen_bool((self.faults.proposals_per_sec * dt).min(1.0))
        {
            let from = self.rng.gen_range(0..n);
            let at = if self.rng.gen_bool(self.faults.stray) {
                Some(from)
            } else {
                self.coordinator(&self.members[from].name.clone())
            };
            if let Some(at) = at.filter(|&i| self.members[i].node.is_some()) {
                self.propose(at);
            }
        }
    }

    /// Checks made once everything has settled.
    fn check_end(&self) {
        let first = &self.members[0].applied;
        for m in &self.members[1..] {
            assert_eq!(
                m.applied,
                *first,
                "{}",
                self.at(&format!("{} and s1 hold different logs", m.name))
            );
        }
        let mut seen = BTreeSet::new();
        for e in self.log.values() {
            if let Entry::Claim(c) = e {
                assert!(
                    seen.insert(c.clone()),
                    "{}",
                    self.at(&format!("{c} decided twice"))
                );
            }
        }
        for (id, (claim, answer)) in &self.proposals {
            if *answer == Some(Outcome::NoMajority) {
                assert!(
                    !seen.contains(claim),
                    "{}",
                    self.at(&format!("{id} was answered no-majority but took effect"))
                );
            }
        }
    }
}

impl Steps for Sim {
    fn now(&self) -> Instant {
        self.now
    }

    fn step(&mut self) {
        self.now += STEP;
        if self.partition_until.is_some_and(|t| self.now >= t) {
            self.partition_until = None;
            self.wire.heal();
        }
        for i in 0..self.members.len() {
            if self.members[i].restart_at.is_some_and(|t| self.now >= t) {
                self.boot(i);
            }
        }
        for d in self.wire.due(self.now) {
            let i = self.idx(&d.to);
            let now = self.now;
            if let Some(node) = self.members[i].node.as_mut() {
                node.on_message(now, &d.from, d.msg);
                self.flush(i);
            }
        }
        for i in 0..self.members.len() {
            let now = self.now;
            if let Some(node) = self.members[i].node.as_mut() {
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                    self.flush(i);
                }
            }
        }
        if self.faulty {
            self.random_faults();
        }
    }
}

fn run(seed: u64, n: usize, faults: Faults) -> Stats {
    let mut sim = Sim::new(seed, n, faults);
    sim.faulty = true;
    sim.run(Duration::from_secs(10));
    // Heal: no more faults, everyone back.
    sim.faulty = false;
    sim.wire.heal();
    sim.partition_until = None;
    sim.wire.drop_rate = 0.0;
    for i in 0..n {
        if sim.members[i].node.is_none() {
            sim.boot(i);
        }
    }
    sim.run(Duration::from_secs(5));
    // A new proposal, sent again (as a client does) while its answer is not `Decided`: a
    // leader that had not heard it was overtaken answers `Unknown` once.
    let top = n - 1;
    let mut done = None;
    let mut id = 0;
    for _ in 0..3 {
        sim.propose(top);
        id = sim.next_id - 1;
        let answered = sim.run_until(Duration::from_secs(10), |s| s.proposals[&id].1.is_some());
        if answered.is_none() || !matches!(sim.proposals[&id].1, Some(Outcome::Decided { .. })) {
            continue;
        }
        done = sim.run_until(Duration::from_secs(10), |s| {
            s.members
                .iter()
                .all(|m| m.applied.len() == s.members[top].applied.len())
        });
        break;
    }
    assert!(
        done.is_some(),
        "{}",
        sim.at(&format!(
            "after healing, a proposal is decided and reaches everyone (answer {:?}, applied {:?})",
            sim.proposals[&id].1,
            sim.members
                .iter()
                .map(|m| m.applied.len())
                .collect::<Vec<_>>()
        ))
    );
    sim.check_end();
    sim.stats
}

fn calm() -> Faults {
    Faults {
        drop_rate: 0.0,
        dup_rate: 0.0,
        max_delay: 3,
        crashes_per_sec: 0.0,
        crash_in_flush: 0.0,
        partitions_per_sec: 0.0,
        stray: 0.0,
        proposals_per_sec: 20.0,
    }
}

#[test]
fn a_calm_cluster_decides_every_proposal_once_in_order() {
    for seed in seeds(5) {
        let stats = run(seed, 3, calm());
        assert!(stats.decided > 100, "{stats:?}: PALAVER_SEED={seed}");
        assert_eq!(
            stats.no_majority + stats.unknown,
            0,
            "{stats:?}: PALAVER_SEED={seed}"
        );
    }
}

#[test]
fn one_member_alone_decides() {
    for seed in seeds(2) {
        let stats = run(seed, 1, calm());
        assert!(stats.decided > 100, "{stats:?}");
    }
}

#[test]
fn a_slot_never_takes_two_values_under_every_fault() {
    let mut total = Stats::default();
    let seeds = seeds(40);
    let replay = seeds.len() == 1;
    for seed in seeds {
        for n in [3, 5] {
            let faults = Faults {
                drop_rate: 0.1,
                dup_rate: 0.05,
                max_delay: 40,
                crashes_per_sec: 0.5,
                crash_in_flush: 0.002,
                partitions_per_sec: 0.4,
                stray: 0.2,
                proposals_per_sec: 15.0,
            };
            let s = run(seed, n, faults);
            total.decided += s.decided;
            total.no_majority += s.no_majority;
            total.unknown += s.unknown;
            total.crashes += s.crashes;
            total.partitions += s.partitions;
            total.forwards += s.forwards;
        }
    }
    if replay {
        return;
    }
    // The runs went through the protocol's corners.
    assert!(total.decided > 1_000, "{total:?}");
    assert!(total.no_majority > 0 && total.unknown > 0, "{total:?}");
    assert!(total.crashes > 50 && total.partitions > 50, "{total:?}");
    assert!(total.forwards > 100, "{total:?}");
}

/// A member cut off from the majority answers its proposals `NoMajority` within the phase
/// (and they never take effect), while the majority goes on deciding.
#[test]
fn the_minority_refuses_and_the_majority_decides() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed, 3, calm());
        sim.run(Duration::from_millis(200));
        sim.wire.isolate("s3");
        sim.propose(2);
        let cut = sim.next_id - 1;
        sim.propose(1);
        let majority = sim.next_id - 1;
        let took = sim.run_until(Duration::from_secs(5), |s| {
            s.proposals[&cut].1.is_some() && s.proposals[&majority].1.is_some()
        });
        assert!(took.is_some(), "{}", sim.at("both answered"));
        assert_eq!(
            sim.proposals[&cut].1,
            Some(Outcome::NoMajority),
            "{}",
            sim.at("cut off")
        );
        assert!(
            took.unwrap() <= Timeouts::default().phase + Duration::from_millis(50),
            "{}",
            sim.at("answered within the phase")
        );
        assert!(
            matches!(sim.proposals[&majority].1, Some(Outcome::Decided { .. })),
            "{}",
            sim.at("the majority decides")
        );
        sim.wire.heal();
        sim.run(Duration::from_secs(3));
        sim.propose(2);
        let after = sim.next_id - 1;
        sim.run_until(Duration::from_secs(10), |s| s.proposals[&after].1.is_some());
        assert!(
            matches!(sim.proposals[&after].1, Some(Outcome::Decided { .. })),
            "{}",
            sim.at("healed, s3's proposal is decided")
        );
        sim.run(Duration::from_secs(2));
        sim.check_end();
    }
}

/// Once a member leads, a proposal made at another is forwarded to it and decided there,
/// without a campaign of its own (no duel for the lead); answered where it was made, once
/// applied there.
#[test]
fn a_proposal_elsewhere_goes_to_the_leader() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed, 3, calm());
        sim.propose(2);
        let first = sim.next_id - 1;
        sim.run_until(Duration::from_secs(3), |s| s.proposals[&first].1.is_some());
        let prepares = sim.stats.prepares;
        for at in [0, 1, 0, 1] {
            sim.propose(at);
            let id = sim.next_id - 1;
            sim.run_until(Duration::from_secs(3), |s| s.proposals[&id].1.is_some());
            let Some(Outcome::Decided { slot }) = sim.proposals[&id].1 else {
                panic!(
                    "{}",
                    sim.at(&format!("{id} decided: {:?}", sim.proposals[&id].1))
                );
            };
            assert!(
                sim.members[at].applied.len() as u64 >= slot,
                "{}",
                sim.at("answered once applied where it was made")
            );
        }
        assert_eq!(
            sim.stats.prepares,
            prepares,
            "{}",
            sim.at("no new campaign")
        );
        assert_eq!(sim.stats.forwards, 4, "{}", sim.at("forwarded"));
        sim.run(Duration::from_secs(1));
        sim.check_end();
    }
}

/// A cluster just started, with proposals at every member at once (a gateway's people all
/// logging in): the members campaign against each other once, and those that lose hand
/// their proposals to the winner instead of campaigning again. Every proposal is decided.
#[test]
fn proposals_at_every_member_at_once_are_all_decided() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed, 3, calm());
        let first = sim.next_id;
        for _ in 0..10 {
            for at in 0..3 {
                sim.propose(at);
            }
        }
        let last = sim.next_id - 1;
        let took = sim.run_until(Duration::from_secs(10), |s| {
            (first..=last).all(|id| s.proposals[&id].1.is_some())
        });
        assert!(took.is_some(), "{}", sim.at("all answered"));
        for id in first..=last {
            assert!(
                matches!(sim.proposals[&id].1, Some(Outcome::Decided { .. })),
                "{}",
                sim.at(&format!("{id} decided: {:?}", sim.proposals[&id].1))
            );
        }
        sim.run(Duration::from_secs(1));
        sim.check_end();
    }
}
