//! The bully election on a simulated network: seeded drops, delays (and so reorders), crashes,
//! restarts and partitions. In every scenario, once faults stop and things are quiet, exactly
//! one coordinator stands, it has the highest live rank, and every live member knows it. While
//! the members are split, each side has exactly one coordinator of its own, its highest rank.
//!
//! A failing case prints its seed; `PALAVER_SEED=<seed> cargo test -p palaver-core` replays it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palaver_core::election::{Action, Election, Timeouts};
use palaver_core::Member;
use rand::Rng;
use sim::{seeds, split_in_two, InFlight, Steps, Wire};

mod sim;

/// How often the simulated reference hands out its live list.
const LIST_EVERY: Duration = Duration::from_millis(500);
/// How long a crashed member stays on the reference's list (three missed heartbeats).
const LIST_LAG: Duration = Duration::from_millis(1500);
const STEP: Duration = Duration::from_millis(5);
/// The reference's name on the wire: a member cut from it stops being listed after
/// `LIST_LAG`, and gets no lists.
const REFERENCE: &str = "reference";

#[derive(Debug, Clone)]
enum Msg {
    Elect,
    Answer,
    Coordinator(Member),
    Ping,
    Pong(Option<Member>),
    /// An announcement on the `servers` topic, through the proxy.
    Announced(Member),
}

/// The proxy's name on the wire: in no partition's group, so every side reaches it.
const PROXY: &str = "proxy";

struct Node {
    member: Member,
    election: Option<Election>,
    crashed_at: Option<Instant>,
    /// Since when its heartbeats no longer reach the reference (a cut link).
    cut_from_reference: Option<Instant>,
}

struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<Node>,
    wire: Wire<Msg>,
    next_list: Instant,
    /// Coordinators announced, per member, for the "one winner" checks.
    announcements: BTreeMap<String, u64>,
    /// Whether announcements are also published on the topic, which every side reaches.
    topic: bool,
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
                cut_from_reference: None,
            })
            .collect();
        Sim {
            seed,
            now,
            nodes,
            wire: Wire::new(seed),
            next_list: now,
            announcements: BTreeMap::new(),
            topic: false,
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

    /// The reference's view: live members whose heartbeats reach it, plus those that crashed
    /// or were cut from it less than `LIST_LAG` ago.
    fn listed(&self) -> Vec<Member> {
        self.nodes
            .iter()
            .filter(|n| {
                let silent_since = if n.election.is_some() {
                    n.cut_from_reference
                } else {
                    n.crashed_at
                };
                match silent_since {
                    None => n.election.is_some(),
                    Some(t) => self.now.duration_since(t) < LIST_LAG,
                }
            })
            .map(|n| n.member.clone())
            .collect()
    }

    fn name(&self, i: usize) -> &str {
        &self.nodes[i].member.name
    }

    fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.member.name.clone()).collect()
    }

    fn election(&self, name: &str) -> &Election {
        self.nodes[self.idx(name)].election.as_ref().unwrap()
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
                    if self.topic {
                        for n in self.names().into_iter().filter(|n| *n != me.name) {
                            let msg = Msg::Announced(coordinator.clone());
                            self.wire.send(self.now, PROXY, &n, msg);
                        }
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
        if let Msg::Announced(who) = &m.msg {
            let now = self.now;
            if let Some(e) = self.nodes[i].election.as_mut() {
                e.on_announcement(now, who);
            }
            self.flush(i);
            return;
        }
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
            Msg::Announced(_) => unreachable!("handled above"),
        };
        if let Some(reply) = reply {
            let me = self.nodes[i].member.clone();
            self.send(&me, &from, reply);
        }
        self.flush(i);
    }

    /// The invariant: one coordinator, the highest live member, known to every live member.
    fn check_agreement(&self, what: &str) {
        let live: Vec<&Node> = self.nodes.iter().filter(|n| n.election.is_some()).collect();
        self.check_group(&live, what);
    }

    /// The invariant while the members are split into `sides`: on each side exactly one
    /// coordinator, the side's highest live member, known to every live member of that side;
    /// nobody electing.
    fn check_one_coordinator_per_side(&self, sides: &[Vec<String>], what: &str) {
        for (k, side) in sides.iter().enumerate() {
            let live = self.live_among(side);
            if !live.is_empty() {
                self.check_group(&live, &format!("{what}, side {k} {side:?}"));
            }
        }
    }

    /// The invariant of a settled cluster (split or not): no new term, that is, no member won
    /// or announced again since `before` was taken.
    fn check_no_new_term(&self, before: &BTreeMap<String, u64>, what: &str) {
        assert_eq!(
            &self.announcements, before,
            "{what}: seed {}: announcements without a reason",
            self.seed
        );
    }

    fn live_among(&self, names: &[String]) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.election.is_some() && names.contains(&n.member.name))
            .collect()
    }

    /// Whether the live members among `names` agree, as [`Sim::check_group`] requires.
    fn agree(&self, names: &[String]) -> bool {
        let live = self.live_among(names);
        let Some(highest) = live.iter().map(|n| &n.member).max() else {
            return true;
        };
        live.iter().all(|n| {
            let e = n.election.as_ref().unwrap();
            e.coordinator() == Some(highest)
                && e.is_coordinator() == (n.member == *highest)
                && !e.electing()
        })
    }

    /// One coordinator among `live`, the highest of them, known to each of them.
    fn check_group(&self, live: &[&Node], what: &str) {
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
        for n in live {
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

impl Steps for Sim {
    fn now(&self) -> Instant {
        self.now
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for m in self.wire.due(now) {
            self.deliver(m);
        }
        for n in &mut self.nodes {
            let reached = self.wire.reachable(&n.member.name, REFERENCE);
            match (reached, n.cut_from_reference) {
                (false, None) => n.cut_from_reference = Some(now),
                (true, Some(_)) => n.cut_from_reference = None,
                _ => {}
            }
        }
        if now >= self.next_list {
            self.next_list = now + LIST_EVERY;
            let live = self.listed();
            for i in 0..self.nodes.len() {
                if !self.wire.reachable(REFERENCE, self.name(i)) {
                    continue;
                }
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

/// How long members that lost their coordinator may take to agree on the next one: the ping
/// that goes unanswered (up to one interval, then its timeout), then the next rank's election
/// (no answer from above), and a little for messages (20 ms at most each) and steps. Lower
/// ranks that asked it meanwhile get its announcement at once, so they add nothing.
fn replacement_bound(t: &Timeouts) -> Duration {
    t.ping_interval + t.ping_timeout + t.answer + Duration::from_millis(100)
}

#[test]
fn an_isolated_coordinator_is_replaced_by_the_next_rank_and_leads_again_after_heal() {
    let bound = replacement_bound(&Timeouts::default());
    let mut slowest = Duration::ZERO;
    for seed in seeds(20) {
        // Cut from everyone, the reference included (it drops the coordinator from its list
        // after three missed heartbeats); or from the other servers only, the reference still
        // listing it.
        for reference_sees_it in [false, true] {
            let what = if reference_sees_it {
                "cut from the servers only"
            } else {
                "isolated"
            };
            let mut sim = Sim::new(seed, &[1, 2, 3, 4, 5]);
            sim.wire.delay = (1, 20);
            for i in 0..5 {
                sim.boot(i);
            }
            sim.run(QUIET);
            sim.check_agreement("before the partition");
            let top = vec!["s5".to_owned()];
            let rest: Vec<String> = ["s1", "s2", "s3", "s4"].map(String::from).to_vec();
            if reference_sees_it {
                sim.wire.partition(&[&["s5"], &["s1", "s2", "s3", "s4"]]);
            } else {
                sim.wire.isolate("s5");
            }
            let took = sim.run_until(bound, |sim| sim.agree(&rest));
            let Some(took) = took else {
                panic!(
                    "{what}: seed {seed}: the majority did not agree within {bound:?}: {:?}",
                    rest.iter()
                        .map(|n| (n, sim.election(n).coordinator()))
                        .collect::<Vec<_>>()
                );
            };
            slowest = slowest.max(took);
            assert!(
                sim.election("s4").is_coordinator(),
                "{what}: seed {seed}: the next rank leads"
            );
            sim.run(QUIET);
            let sides = [top, rest];
            sim.check_one_coordinator_per_side(&sides, what);
            let before = sim.announcements.clone();
            sim.run(QUIET);
            sim.check_no_new_term(&before, what);
            sim.check_one_coordinator_per_side(&sides, what);
            assert!(
                sim.wire.cut_drops > 0,
                "{what}: seed {seed}: nothing was cut"
            );

            sim.wire.heal();
            sim.run(QUIET);
            sim.check_agreement(&format!("{what}, then healed"));
            assert!(
                sim.election("s5").is_coordinator(),
                "{what}: seed {seed}: the highest rank leads again"
            );
        }
    }
    eprintln!("slowest replacement of an isolated coordinator: {slowest:?} (bound {bound:?})");
}

#[test]
fn a_cluster_split_in_two_has_one_coordinator_per_side_then_one_after_heal() {
    for seed in seeds(30) {
        let mut sim = Sim::new(seed, &[1, 2, 3, 4, 5]);
        sim.wire.delay = (1, 20);
        for i in 0..5 {
            sim.boot(i);
        }
        sim.run(QUIET);
        sim.check_agreement("before the split");
        let names = sim.names();
        let (a, b) = split_in_two(&mut sim.wire.rng, &names);
        let mut sides = vec![a, b];
        // The reference stays with one side (2: on a link of its own, it reaches both).
        let reference = sim.wire.rng.gen_range(0..3);
        let what = format!("split {sides:?}, reference with side {reference}");
        if let Some(side) = sides.get_mut(reference) {
            side.push(REFERENCE.to_owned());
        }
        sim.wire.partition_names(&sides);
        // Lossy at first, so the sides' elections race with drops; then calm, to settle.
        sim.wire.drop_rate = 0.1;
        sim.wire.delay = (1, 100);
        sim.run(Duration::from_secs(3));
        sim.wire.drop_rate = 0.0;
        sim.wire.delay = (1, 20);
        sim.run(QUIET);
        sim.check_one_coordinator_per_side(&sides, &what);
        let before = sim.announcements.clone();
        sim.run(QUIET);
        sim.check_no_new_term(&before, &what);
        sim.check_one_coordinator_per_side(&sides, &what);

        sim.wire.heal();
        sim.run(QUIET);
        sim.check_agreement(&format!("{what}, then healed"));
    }
}

/// Announcements also go out on the topic, which both sides of a partition reach (the proxy,
/// while the peer links are cut): each side keeps its own coordinator for as long as the
/// partition lasts, instead of taking the other side's from the topic, finding it dead and
/// electing again every couple of seconds; after the heal, one again.
#[test]
fn a_partition_the_topic_spans_does_not_make_the_coordinator_flap() {
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, &[1, 2, 3]);
        sim.topic = true;
        sim.wire.delay = (1, 20);
        for i in 0..3 {
            sim.boot(i);
        }
        sim.run(QUIET);
        sim.check_agreement("before the cut");
        // s3 is cut off from s1 and s2; the reference and the proxy reach everyone.
        let sides = vec![
            vec!["s1".to_owned(), "s2".to_owned()],
            vec!["s3".to_owned()],
        ];
        sim.wire.partition_names(&sides);
        sim.run(QUIET);
        sim.check_one_coordinator_per_side(&sides, "s3 cut off, the topic spanning both");
        let before = sim.announcements.clone();
        sim.run(Duration::from_secs(20));
        sim.check_no_new_term(&before, "s3 cut off for 20 s, the topic spanning both");
        sim.wire.heal();
        sim.run(QUIET);
        sim.check_agreement("s3 cut off, then healed");
    }
}
