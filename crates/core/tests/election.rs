//! The bully election on a simulated network: seeded drops, delays (and so reorders), crashes
//! and restarts. In every scenario, once faults stop and things are quiet, exactly one
//! coordinator stands, it has the highest live rank, and every live member knows it.
//!
//! A failing case prints its seed; `PALAVER_SEED=<seed> cargo test -p palaver-core` replays it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palaver_core::election::{Action, Election, Timeouts};
use palaver_core::Member;
use rand::Rng;
use sim::{seeds, InFlight, Wire};

mod sim;

/// How often the simulated reference hands out its live list.
const LIST_EVERY: Duration = Duration::from_millis(500);
/// How long a crashed member stays on the reference's list (three missed heartbeats).
const LIST_LAG: Duration = Duration::from_millis(1500);
const STEP: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
enum Msg {
    Elect,
    Answer,
    Coordinator(Member),
    Ping,
    Pong(Option<Member>),
}

struct Node {
    member: Member,
    election: Option<Election>,
    crashed_at: Option<Instant>,
}

struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<Node>,
    wire: Wire<Msg>,
    next_list: Instant,
    /// Coordinators announced, per member, for the "one winner" checks.
    announcements: BTreeMap<String, u64>,
}

impl Sim {
    fn new(seed: u64, ranks: &[u64]) -> Sim {
        let now = Instant::now();
        let nodes = ranks
            .iter()
            .map(|&r| Node {
                member: Member::new(format!("s{r}"), r),
                election: None,
                crashed_at: None,
            })
            .collect();
        Sim {
            seed,
            now,
            nodes,
            wire: Wire::new(seed),
            next_list: now,
            announcements: BTreeMap::new(),
        }
    }

    fn idx(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.member.name == name)
            .unwrap()
    }

    /// Boots member `i`: it learns the live list, then starts an election.
    fn boot(&mut self, i: usize) {
        let mut e = Election::new(self.nodes[i].member.clone(), Timeouts::default());
        let live = self.listed();
        e.set_peers(self.now, live);
        e.start(self.now);
        self.nodes[i].election = Some(e);
        self.nodes[i].crashed_at = None;
        self.flush(i);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].election = None;
        self.nodes[i].crashed_at = Some(self.now);
    }

    /// The reference's view: live members, plus those crashed less than `LIST_LAG` ago.
    fn listed(&self) -> Vec<Member> {
        self.nodes
            .iter()
            .filter(|n| {
                n.election.is_some()
                    || n.crashed_at
                        .is_some_and(|t| self.now.duration_since(t) < LIST_LAG)
            })
            .map(|n| n.member.clone())
            .collect()
    }

    fn send(&mut self, from: &Member, to: &Member, msg: Msg) {
        self.wire.send(self.now, &from.name, &to.name, msg);
    }

    /// Carries out node `i`'s pending actions.
    fn flush(&mut self, i: usize) {
        let me = self.nodes[i].member.clone();
        while let Some(action) = self.nodes[i]
            .election
            .as_mut()
            .and_then(Election::poll_action)
        {
            match action {
                Action::Elect { to } => self.send(&me, &to, Msg::Elect),
                Action::Ping { to } => self.send(&me, &to, Msg::Ping),
                Action::Announce { coordinator, to } => {
                    *self
                        .announcements
                        .entry(coordinator.name.clone())
                        .or_default() += 1;
                    for peer in to {
                        self.send(&me, &peer, Msg::Coordinator(coordinator.clone()));
                    }
                }
                Action::Remind { coordinator, to } => {
                    for peer in to {
                        self.send(&me, &peer, Msg::Coordinator(coordinator.clone()));
                    }
                }
            }
        }
    }

    fn deliver(&mut self, m: InFlight<Msg>) {
        let i = self.idx(&m.to);
        let from = self.nodes[self.idx(&m.from)].member.clone();
        let now = self.now;
        let Some(e) = self.nodes[i].election.as_mut() else {
            return;
        };
        let reply = match m.msg {
            Msg::Elect => e.on_election(now, Some(&from)).then_some(Msg::Answer),
            Msg::Answer => {
                e.on_answer(now, &from);
                None
            }
            Msg::Coordinator(who) => {
                e.on_coordinator(now, &who);
                None
            }
            Msg::Ping => Some(Msg::Pong(e.coordinator().cloned())),
            Msg::Pong(theirs) => {
                e.on_pong(now, &from, theirs.as_ref());
                None
            }
        };
        if let Some(reply) = reply {
            let me = self.nodes[i].member.clone();
            self.send(&me, &from, reply);
        }
        self.flush(i);
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += STEP;
            let now = self.now;
            for m in self.wire.due(now) {
                self.deliver(m);
            }
            if now >= self.next_list {
                self.next_list = now + LIST_EVERY;
                let live = self.listed();
                for i in 0..self.nodes.len() {
                    if let Some(e) = self.nodes[i].election.as_mut() {
                        e.set_peers(now, live.clone());
                    }
                    self.flush(i);
                }
            }
            for i in 0..self.nodes.len() {
                if let Some(e) = self.nodes[i].election.as_mut() {
                    if e.poll_timeout().is_some_and(|t| t <= now) {
                        e.handle_timeout(now);
                    }
                }
                self.flush(i);
            }
        }
    }

    /// The invariant: one coordinator, the highest live member, known to every live member.
    fn check_agreement(&self, what: &str) {
        let live: Vec<&Node> = self.nodes.iter().filter(|n| n.election.is_some()).collect();
        let highest = live.iter().map(|n| &n.member).max().unwrap();
        let leaders: Vec<&str> = live
            .iter()
            .filter(|n| n.election.as_ref().unwrap().is_coordinator())
            .map(|n| n.member.name.as_str())
            .collect();
        assert_eq!(
            leaders,
            vec![highest.name.as_str()],
            "{what}: seed {}: leaders",
            self.seed
        );
        for n in &live {
            let e = n.election.as_ref().unwrap();
            assert_eq!(
                e.coordinator(),
                Some(highest),
                "{what}: seed {}: {} disagrees",
                self.seed,
                n.member.name
            );
            assert!(
                !e.electing(),
                "{what}: seed {}: {} still electing",
                self.seed,
                n.member.name
            );
        }
    }
}

const QUIET: Duration = Duration::from_secs(6);

#[test]
fn members_starting_at_the_same_moment_agree() {
    for seed in seeds(40) {
        let mut sim = Sim::new(seed, &[1, 2, 3, 4, 5]);
        for i in 0..5 {
            sim.boot(i);
        }
        sim.run(QUIET);
        sim.check_agreement("simultaneous start");
    }
}

#[test]
fn a_crashed_coordinator_is_replaced_by_the_next_rank() {
    for seed in seeds(40) {
        let mut sim = Sim::new(seed, &[1, 2, 3, 4, 5]);
        for i in 0..5 {
            sim.boot(i);
        }
        sim.run(QUIET);
        sim.check_agreement("before the crash");
        sim.crash(4);
        sim.run(QUIET);
        sim.check_agreement("after the coordinator crashed");
        sim.crash(3);
        sim.run(QUIET);
        sim.check_agreement("after the second coordinator crashed");
    }
}

#[test]
fn a_crash_in_the_middle_of_an_election_still_ends_with_one_winner() {
    for seed in seeds(40) {
        let mut sim = Sim::new(seed, &[1, 2, 3, 4, 5]);
        for i in 0..5 {
            sim.boot(i);
        }
        sim.run(QUIET);
        sim.crash(4);
        // Let the loss be noticed and an election begin, then kill the likely winner mid-way.
        let crash_after = Duration::from_millis(sim.wire.rng.gen_range(900..1600));
        sim.run(crash_after);
        sim.crash(3);
        sim.run(QUIET);
        sim.check_agreement("crash during the election");
    }
}

#[test]
fn dropped_and_delayed_messages_delay_agreement_but_do_not_prevent_it() {
    for seed in seeds(40) {
        let mut sim = Sim::new(seed, &[3, 7, 11, 20]);
        sim.wire.drop_rate = 0.3;
        sim.wire.delay = (1, 400);
        for i in 0..4 {
            sim.boot(i);
        }
        sim.run(Duration::from_secs(5));
        sim.crash(3);
        sim.run(Duration::from_secs(5));
        sim.wire.drop_rate = 0.0;
        sim.wire.delay = (1, 20);
        sim.run(QUIET + QUIET);
        sim.check_agreement("after a lossy period");
    }
}

#[test]
fn a_higher_rank_returning_takes_over() {
    for seed in seeds(40) {
        let mut sim = Sim::new(seed, &[1, 2, 3]);
        for i in 0..3 {
            sim.boot(i);
        }
        sim.run(QUIET);
        sim.crash(2);
        sim.run(QUIET);
        sim.check_agreement("while the top is down");
        assert!(sim.nodes[1].election.as_ref().unwrap().is_coordinator());
        sim.boot(2);
        sim.run(QUIET);
        sim.check_agreement("after the top returned");
        assert!(sim.nodes[2].election.as_ref().unwrap().is_coordinator());
    }
}

#[test]
fn a_quiet_cluster_elects_once() {
    for seed in seeds(40) {
        let mut sim = Sim::new(seed, &[1, 2, 3]);
        for i in 0..3 {
            sim.boot(i);
        }
        sim.run(QUIET);
        let before = sim.announcements.clone();
        sim.run(QUIET);
        assert_eq!(
            sim.announcements, before,
            "seed {}: no elections without a reason",
            seed
        );
    }
}
