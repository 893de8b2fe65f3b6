//! The simulated network the core's state machines are tested on: messages between named
//! members, dropped, duplicated and delayed (and so reordered) by a seeded generator.

#![allow(dead_code)] // each test binary uses its own part

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
}

impl<M: Clone> Wire<M> {
    pub fn new(seed: u64) -> Wire<M> {
        Wire {
            rng: StdRng::seed_from_u64(seed),
            in_flight: Vec::new(),
            drop_rate: 0.0,
            dup_rate: 0.0,
            delay: (1, 5),
        }
    }

    /// Sends `msg`, sent at `now`, subject to the network's faults.
    pub fn send(&mut self, now: Instant, from: &str, to: &str, msg: M) {
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

    /// Takes the messages due by `now`.
    pub fn due(&mut self, now: Instant) -> Vec<InFlight<M>> {
        let (due, later) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|m| m.at <= now);
        self.in_flight = later;
        due
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
