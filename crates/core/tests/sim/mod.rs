//! The simulated network the core's state machines are tested on: messages between named
//! members, dropped, duplicated and delayed (and so reordered) by a seeded generator, and
//! partitions: links cut between two members, members isolated from everyone, the members
//! split into groups (as raft-rs's test harness, `harness/src/network.rs`, does).
//!
//! ```text
//!  send ──link cut?──▶ lost
//!    └──▶ drop? duplicate? delay ──▶ in flight ──due: link cut meanwhile?──▶ lost
//!                                                    └──────────────────────▶ delivered
//! ```

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A message on its way.
pub struct InFlight<M> {
    pub at: Instant,
    pub from: String,
    pub to: String,
    pub msg: M,
}

/// The network: what is in flight, and how badly it behaves.
pub struct Wire<M> {
    pub rng: StdRng,
    in_flight: Vec<InFlight<M>>,
    /// Probability that a message is lost.
    pub drop_rate: f64,
    /// Probability that a message arrives twice.
    pub dup_rate: f64,
    /// Delay range, in milliseconds.
    pub delay: (u64, u64),
    /// Links cut in both directions, each pair once with the smaller name first.
    cut: BTreeSet<(String, String)>,
    /// Members cut from every other endpoint.
    isolated: BTreeSet<String>,
    /// Messages lost to a cut link, when sent or when they came due; a test that cuts links
    /// can check that its partition did stop something.
    pub cut_drops: u64,
}

impl<M: Clone> Wire<M> {
    pub fn new(seed: u64) -> Wire<M> {
        Wire {
            rng: StdRng::seed_from_u64(seed),
            in_flight: Vec::new(),
            drop_rate: 0.0,
            dup_rate: 0.0,
            delay: (1, 5),
            cut: BTreeSet::new(),
            isolated: BTreeSet::new(),
            cut_drops: 0,
        }
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&mut self, a: &str, b: &str) {
        if a != b {
            self.cut.insert(link(a, b));
        }
    }

    /// Cuts `name` from every other endpoint, whether it is named anywhere else or not.
    pub fn isolate(&mut self, name: &str) {
        self.isolated.insert(name.to_owned());
    }

    /// Splits the named endpoints into `groups` that reach only their own members: every link
    /// between two groups is cut. Endpoints in no group keep their links (say, a reference
    /// that every side still reaches). Cuts already made stay.
    ///
    /// Panics if an endpoint is in two groups (the test is wrong).
    pub fn partition(&mut self, groups: &[&[&str]]) {
        let groups: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(|n| n.to_string()).collect())
            .collect();
        self.partition_names(&groups);
    }

    /// [`Wire::partition`], for groups of names held as `String`s.
    pub fn partition_names(&mut self, groups: &[Vec<String>]) {
        let mut seen = BTreeSet::new();
        for name in groups.iter().flatten() {
            assert!(seen.insert(name), "{name} is in two groups");
        }
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for a in g {
                    for b in h {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Restores every link cut by [`Wire::cut`], [`Wire::isolate`] and [`Wire::partition`].
    pub fn heal(&mut self) {
        self.cut.clear();
        self.isolated.clear();
    }

    /// Whether a message from `a` gets to `b` now (faults aside). An endpoint always reaches
    /// itself.
    pub fn reachable(&self, a: &str, b: &str) -> bool {
        a == b
            || !(self.isolated.contains(a)
                || self.isolated.contains(b)
                || self.cut.contains(&link(a, b)))
    }

    /// Sends `msg`, sent at `now`, subject to the network's faults: lost at once if the link
    /// is cut.
    pub fn send(&mut self, now: Instant, from: &str, to: &str, msg: M) {
        if !self.reachable(from, to) {
            self.cut_drops += 1;
            return;
        }
        if self.rng.gen_bool(self.drop_rate) {
            return;
        }
        let copies = if self.rng.gen_bool(self.dup_rate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = Duration::from_millis(self.rng.gen_range(self.delay.0..=self.delay.1));
            self.in_flight.push(InFlight {
                at: now + delay,
                from: from.into(),
                to: to.into(),
                msg: msg.clone(),
            });
        }
    }

    /// Takes the messages due by `now`. Those whose link was cut while they travelled are lost,
    /// as a partition loses what is on the wire.
    pub fn due(&mut self, now: Instant) -> Vec<InFlight<M>> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|m| m.at <= now);
        self.in_flight = later;
        let before = due.len();
        let due: Vec<InFlight<M>> = due
            .into_iter()
            .filter(|m| self.reachable(&m.from, &m.to))
            .collect();
        self.cut_drops += (before - due.len()) as u64;
        due
    }
}

/// The key of the link between `a` and `b`, whichever way it is used.
fn link(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Splits `names` at random into two groups, neither empty (`names` has two at least).
pub fn split_in_two(rng: &mut StdRng, names: &[String]) -> (Vec<String>, Vec<String>) {
    assert!(names.len() >= 2, "two sides need two members");
    loop {
        let (a, b): (Vec<String>, Vec<String>) =
            names.iter().cloned().partition(|_| rng.gen_bool(0.5));
        if !a.is_empty() && !b.is_empty() {
            return (a, b);
        }
    }
}

/// Seeds to run: the one in `PALAVER_SEED`, or `count` fixed ones and a fresh one per run. A
/// failing check prints its seed.
pub fn seeds(count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("PALAVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let fresh: u64 = rand::thread_rng().gen();
    (1..=count).chain([fresh]).collect()
}

/// A simulation that advances in steps of simulated time. Running it for a while, or until a
/// condition holds, is the same for every one.
pub trait Steps {
    /// The simulated time now.
    fn now(&self) -> Instant;
    /// One step: time moves on, and what is due happens.
    fn step(&mut self);

    fn run(&mut self, d: Duration) {
        let end = self.now() + d;
        while self.now() < end {
            self.step();
        }
    }

    /// Runs until `done` holds, for `limit` at most; returns how long it took, if it did.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> Option<Duration> {
        let start = self.now();
        while self.now() < start + limit {
            self.step();
            if done(self) {
                return Some(self.now() - start);
            }
        }
        None
    }
}
