//! Two-phase commit on a simulated network: seeded drops, duplicates, delays (so reorders), link
//! cuts, partitions, crashes (a leader right after its prepares, a participant between prepare
//! and commit, anyone right after a record) and restarts from the durable records, while the
//! coordinator that leads new transactions changes as members come and go. Whatever happens:
//!
//! - atomicity: no transaction is committed by one member and aborted by another (nor
//!   contradicted at one), whoever recorded it, crashed members included;
//! - validity: a transaction commits only once every participant recorded `Prepared`;
//! - termination: once the faults stop and everyone is back, every prepared member decides, and
//!   nothing is left waiting;
//! - every request its requester still remembers ends decided at the requester; one abandoned
//!   before the requester prepared never commits.
//!
//! A failing case prints its seed; `PALAVER_SEED=<seed> cargo test -p palaver-core --test commit`
//! replays it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palaver_core::commit::{Action, Msg, Node, Record, Timeouts, Tx};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sim::{seeds, split_in_two, InFlight, Steps, Wire};

mod sim;

const STEP: Duration = Duration::from_millis(5);
/// How often the coordinator hands out its list of live members.
const LIST_EVERY: Duration = Duration::from_millis(500);
/// How long a crashed member stays on that list.
const LIST_LAG: Duration = Duration::from_secs(1);
/// How long a requester that gives up waits for a prepare, as the server does.
const ABANDON_AFTER: Duration = Duration::from_secs(3);
/// How long the system must stay still (no member with anything due) to count as settled.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the quiet period may last before termination counts as failed.
const QUIET_LIMIT: Duration = Duration::from_secs(60);

type Payload = String;

/// One member: its state machine while it runs, and what it stored, which survives crashes.
struct Member {
    name: String,
    node: Option<Node<Payload>>,
    /// Durable at once: every record, in order, over all its lives.
    records: Vec<Record<Payload>>,
    timeouts: Timeouts,
    crashed_at: Option<Instant>,
    /// When a crashed member comes back during the fault phase (`None`: at the quiet period).
    restart_at: Option<Instant>,
    /// Conflicts its earlier lives counted.
    conflicts: u64,
}

impl Member {
    fn prepared(&self, id: &str) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::Prepared(tx) if tx.id == id))
    }

    /// The outcome it recorded for `id`, if any (the first; the checks see to it that there is
    /// only one).
    fn outcome(&self, id: &str) -> Option<bool> {
        self.records.iter().find_map(|r| match r {
            Record::Committed(tx) if tx.id == id => Some(true),
            Record::Aborted { tx } if tx == id => Some(false),
            _ => None,
        })
    }
}

/// A transaction some member asked for, as its driver remembers it.
struct Request {
    id: String,
    requester: String,
    leader: String,
    at: Instant,
    /// Whether the requester's driver gives up after `ABANDON_AFTER` without an outcome.
    abandons: bool,
    /// Abandoned while the requester was not prepared: can never commit.
    abandoned_unprepared: bool,
    /// The requester crashed before it had an outcome, and its driver forgot the request.
    forgotten: bool,
    /// The requester crashed before it had an outcome, and its driver (which kept the request)
    /// asks again, the same leader, once it is back.
    again: bool,
    payload: Payload,
}

/// The faults of a run, and the members' timeouts (safety must not depend on them).
#[derive(Clone, Copy, Default)]
struct Faults {
    timeouts: Timeouts,
    /// Whether each member draws timeouts of its own instead (as configurations may differ).
    skewed: bool,
    /// Probability that a message is lost, arrives twice; delays up to `max_delay` ms.
    drop_rate: f64,
    dup_rate: f64,
    max_delay: u64,
    /// Crashes of random members, per second; each down for a while, or until the quiet period.
    crashes_per_sec: f64,
    /// Partitions (a split in two, an isolated member or a cut link), per second.
    partitions_per_sec: f64,
    /// Probability that a leader crashes right after it sent a prepare (maybe before the others).
    crash_after_prepare: f64,
    /// Probability that a participant crashes right after it recorded `Prepared` (its vote may
    /// or may not have left), or right after it answered a query.
    crash_after_prepared: f64,
    /// Probability that a member crashes right after it recorded an outcome, before telling it.
    crash_after_outcome: f64,
    /// Probability that a transaction has a member that votes no.
    refusals: f64,
    /// Transactions requested per second.
    requests_per_sec: f64,
}

/// Counts over runs, to see that the runs went through the protocol's corners.
#[derive(Default, Debug)]
struct Stats {
    runs: u64,
    requests: u64,
    committed: u64,
    aborted: u64,
    abandoned: u64,
    forgotten: u64,
    crashes: u64,
    queries: u64,
    refused: u64,
    slowest_quiet: Duration,
}

struct Sim {
    seed: u64,
    start: Instant,
    now: Instant,
    rng: StdRng,
    /// `PALAVER_TRACE=1`: prints every delivery, record, crash and restart.
    trace: bool,
    members: Vec<Member>,
    wire: Wire<Msg<Payload>>,
    faults: Faults,
    /// Whether the fault phase is on (random faults, crashes in the middle of a flush).
    faulty: bool,
    /// The coordinator's list of live members (lagging), and when it is handed out next.
    listed: Vec<String>,
    next_list: Instant,
    /// The partitions on, each until when, as the links they cut.
    partitions: Vec<(Instant, Vec<(String, String)>)>,
    requests: Vec<Request>,
    next_tx: u64,
    /// The member that votes no on a transaction, for those that have one.
    refuser: BTreeMap<String, String>,
    /// Every transaction as first recorded prepared, and its first outcome and who recorded it:
    /// the continuous checks compare each record with them.
    txs: BTreeMap<String, Tx<Payload>>,
    outcomes: BTreeMap<String, (bool, String)>,
    queries: u64,
    refused: u64,
    crashes: u64,
}

impl Sim {
    fn new(seed: u64, n: usize, faults: Faults) -> Sim {
        let now = Instant::now();
        let mut wire = Wire::new(seed);
        wire.drop_rate = faults.drop_rate;
        wire.dup_rate = faults.dup_rate;
        wire.delay = (1, faults.max_delay.max(1));
        let mut rng = StdRng::seed_from_u64(seed ^ 0x2bc_c0de);
        let members: Vec<Member> = (1..=n)
            .map(|i| Member {
                name: format!("s{i}"),
                node: None,
                records: Vec::new(),
                timeouts: if faults.skewed {
                    timeouts(&mut rng)
                } else {
                    faults.timeouts
                },
                crashed_at: None,
                restart_at: None,
                conflicts: 0,
            })
            .collect();
        let listed = members.iter().map(|m| m.name.clone()).collect();
        let mut sim = Sim {
            seed,
            start: now,
            now,
            rng,
            trace: std::env::var_os("PALAVER_TRACE").is_some(),
            members,
            wire,
            faults,
            faulty: false,
            listed,
            next_list: now + LIST_EVERY,
            partitions: Vec::new(),
            requests: Vec::new(),
            next_tx: 0,
            refuser: BTreeMap::new(),
            txs: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            queries: 0,
            refused: 0,
            crashes: 0,
        };
        for i in 0..n {
            sim.boot(i);
        }
        sim
    }

    /// The prefix of every failure message: what was checked, and how to replay it.
    fn at(&self, what: &str) -> String {
        format!("{what}: PALAVER_SEED={}", self.seed)
    }

    fn idx(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    fn member(&self, name: &str) -> &Member {
        &self.members[self.idx(name)]
    }

    fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    fn up(&self, name: &str) -> bool {
        self.member(name).node.is_some()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].node.is_some())
            .collect()
    }

    /// Starts member `i` from its durable records, fenced as the protocol wants, with the
    /// coordinator's current list.
    fn boot(&mut self, i: usize) {
        let m = &mut self.members[i];
        let mut node = Node::new(m.name.clone(), m.timeouts);
        for r in m.records.clone() {
            node.restore(self.now, r);
        }
        node.set_peers(self.listed.iter().cloned());
        m.node = Some(node);
        if self.trace && m.crashed_at.is_some() {
            eprintln!("{:?} {} restarts", self.now - self.start, m.name);
        }
        m.crashed_at = None;
        m.restart_at = None;
        self.flush(i);
        let name = self.members[i].name.clone();
        for k in 0..self.requests.len() {
            let r = &mut self.requests[k];
            if r.requester != name || !r.again {
                continue;
            }
            r.again = false;
            let (id, leader, payload) = (r.id.clone(), r.leader.clone(), r.payload.clone());
            let yes = self.votes_yes(&name, &id);
            let now = self.now;
            let node = self.members[i].node.as_mut().unwrap();
            node.request(now, id, &leader, payload, yes);
            self.flush(i);
        }
    }

    /// Member `i` dies: its state machine and whatever it had not carried out yet are gone, its
    /// records stay. Its driver forgets the requests it was waiting on, or keeps them to ask
    /// again.
    fn crash(&mut self, i: usize) {
        let Some(node) = self.members[i].node.take() else {
            return;
        };
        if self.trace {
            eprintln!(
                "{:?} {} crashes",
                self.now - self.start,
                self.members[i].name
            );
        }
        self.crashes += 1;
        let m = &mut self.members[i];
        m.conflicts += node.conflicts;
        m.crashed_at = Some(self.now);
        m.restart_at = None;
        for r in self.requests.iter_mut() {
            if r.requester == m.name && !r.forgotten && m.outcome(&r.id).is_none() {
                if self.rng.gen_bool(0.5) {
                    r.forgotten = true;
                } else {
                    r.again = true;
                }
            }
        }
    }

    fn crash_name(&mut self, name: &str) {
        let i = self.idx(name);
        self.crash(i);
    }

    fn restart_name(&mut self, name: &str) {
        let i = self.idx(name);
        if self.members[i].node.is_none() {
            self.boot(i);
        }
    }

    /// Whether `who` votes yes on transaction `id`.
    fn votes_yes(&self, who: &str, id: &str) -> bool {
        self.refuser.get(id).map(String::as_str) != Some(who)
    }

    /// The coordinator new transactions go to: the highest rank on the list.
    fn coordinator(&self) -> Option<String> {
        self.listed.iter().max_by_key(|n| self.idx(n)).cloned()
    }

    /// Member `requester` asks `leader` for a new transaction; returns its id.
    fn request(&mut self, requester: &str, leader: &str, abandons: bool) -> String {
        let id = format!("t{}", self.next_tx);
        let payload = format!("#channel-{}", self.next_tx);
        self.next_tx += 1;
        self.requests.push(Request {
            id: id.clone(),
            requester: requester.to_owned(),
            leader: leader.to_owned(),
            at: self.now,
            abandons,
            abandoned_unprepared: false,
            forgotten: false,
            again: false,
            payload: payload.clone(),
        });
        let i = self.idx(requester);
        let yes = self.votes_yes(requester, &id);
        let now = self.now;
        self.members[i]
            .node
            .as_mut()
            .expect("a live requester")
            .request(now, id.clone(), leader, payload, yes);
        self.flush(i);
        id
    }

    /// Carries out member `i`'s actions in order: records are durable at once, sends go on the
    /// wire. In the fault phase it may die right after one of them, the rest lost with it.
    fn flush(&mut self, i: usize) {
        let me = self.members[i].name.clone();
        while let Some(action) = self.members[i].node.as_mut().and_then(Node::poll_action) {
            let die = self.faulty
                && match &action {
                    Action::Send {
                        msg: Msg::Prepare(tx),
                        ..
                    } if tx.leader == me => self.rng.gen_bool(self.faults.crash_after_prepare),
                    Action::Record(Record::Prepared(tx)) if tx.leader != me => {
                        self.rng.gen_bool(self.faults.crash_after_prepared)
                    }
                    Action::Send {
                        msg: Msg::Known { .. },
                        ..
                    } => self.rng.gen_bool(self.faults.crash_after_prepared),
                    Action::Record(Record::Committed(_) | Record::Aborted { .. }) => {
                        self.rng.gen_bool(self.faults.crash_after_outcome)
                    }
                    _ => false,
                };
            match action {
                Action::Send { to, msg } => {
                    assert_ne!(to, me, "{}: {me} sends to itself", self.at("send"));
                    match &msg {
                        Msg::Query { .. } => self.queries += 1,
                        Msg::Refused { .. } => self.refused += 1,
                        _ => {}
                    }
                    self.wire.send(self.now, &me, &to, msg);
                }
                Action::Record(record) => {
                    if self.trace {
                        eprintln!("{:?} {me} records {record:?}", self.now - self.start);
                    }
                    self.check_record(i, &record);
                    self.members[i].records.push(record);
                }
            }
            if die {
                self.crash(i);
                return;
            }
        }
        if let Some(node) = &self.members[i].node {
            assert_eq!(
                node.conflicts,
                0,
                "{}: {me} met a decision contrary to its own",
                self.at("conflicts")
            );
        }
    }

    fn deliver(&mut self, m: InFlight<Msg<Payload>>) {
        let i = self.idx(&m.to);
        if self.members[i].node.is_none() {
            return;
        }
        if self.trace {
            eprintln!(
                "{:?} {} -> {}: {:?}",
                self.now - self.start,
                m.from,
                m.to,
                m.msg
            );
        }
        let yes = self.votes_yes(&m.to, m.msg.tx_id());
        let now = self.now;
        let node = self.members[i].node.as_mut().unwrap();
        node.on_message(now, &m.from, m.msg, |_| yes);
        self.flush(i);
    }

    fn chance_per_step(&mut self, per_sec: f64) -> bool {
        per_sec > 0.0 && self.rng.gen_bool((per_sec * STEP.as_secs_f64()).min(1.0))
    }

    fn random_faults(&mut self) {
        let live = self.live();
        if live.len() > 1 && self.chance_per_step(self.faults.crashes_per_sec) {
            let i = live[self.rng.gen_range(0..live.len())];
            self.crash(i);
            if self.rng.gen_bool(0.85) {
                let down = Duration::from_millis(self.rng.gen_range(100..4000));
                self.members[i].restart_at = Some(self.now + down);
            }
        }
        // Partitions overlap, each with its own end: the wire heals, and those still on are
        // made again.
        let before = self.partitions.len();
        let now = self.now;
        self.partitions.retain(|(until, _)| *until > now);
        if self.partitions.len() < before {
            self.wire.heal();
            for (_, links) in &self.partitions {
                for (a, b) in links {
                    self.wire.cut(a, b);
                }
            }
        }
        if self.chance_per_step(self.faults.partitions_per_sec) {
            let names = self.names();
            let links: Vec<(String, String)> = match self.rng.gen_range(0..3) {
                0 => {
                    let (a, b) = split_in_two(&mut self.rng, &names);
                    a.iter()
                        .flat_map(|x| b.iter().map(move |y| (x.clone(), y.clone())))
                        .collect()
                }
                1 => {
                    let who = names[self.rng.gen_range(0..names.len())].clone();
                    names
                        .iter()
                        .filter(|n| **n != who)
                        .map(|n| (who.clone(), n.clone()))
                        .collect()
                }
                _ => {
                    let a = self.rng.gen_range(0..names.len());
                    let b = (a + self.rng.gen_range(1..names.len())) % names.len();
                    vec![(names[a].clone(), names[b].clone())]
                }
            };
            for (a, b) in &links {
                self.wire.cut(a, b);
            }
            let lasts = Duration::from_millis(self.rng.gen_range(100..4000));
            self.partitions.push((self.now + lasts, links));
        }
    }

    /// A random live member asks the coordinator (or, now and then, itself) for a transaction.
    fn random_requests(&mut self) {
        if !self.chance_per_step(self.faults.requests_per_sec) {
            return;
        }
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let requester = self.members[live[self.rng.gen_range(0..live.len())]]
            .name
            .clone();
        let leader = match self.coordinator() {
            Some(c) if !self.rng.gen_bool(0.15) => c,
            _ => requester.clone(),
        };
        if self.rng.gen_bool(self.faults.refusals) {
            let who = self.members[self.rng.gen_range(0..self.members.len())]
                .name
                .clone();
            self.refuser.insert(format!("t{}", self.next_tx), who);
        }
        let abandons = self.rng.gen_bool(0.5);
        self.request(&requester, &leader, abandons);
    }

    /// Requesters that give up do, once `ABANDON_AFTER` passed without an outcome (a no-op
    /// once they are prepared).
    fn abandon_overdue(&mut self) {
        for k in 0..self.requests.len() {
            let r = &self.requests[k];
            if !r.abandons || r.forgotten || self.now < r.at + ABANDON_AFTER {
                continue;
            }
            let i = self.idx(&r.requester);
            let id = r.id.clone();
            let Some(node) = self.members[i].node.as_mut() else {
                continue;
            };
            if node.outcome(&id).is_some() {
                continue;
            }
            let prepared = node.is_prepared(&id);
            node.abandon(&id);
            self.requests[k].abandons = false;
            self.requests[k].abandoned_unprepared = !prepared;
            self.flush(i);
            let m = &self.members[i];
            if prepared {
                assert!(
                    m.node.as_ref().is_some_and(|n| n.is_prepared(&id)),
                    "{}: {} dropped its prepare of {id} when it abandoned it",
                    self.at("abandon"),
                    m.name
                );
            } else {
                assert_eq!(
                    m.outcome(&id),
                    Some(false),
                    "{}: {} abandoned {id} without recording an abort",
                    self.at("abandon"),
                    m.name
                );
            }
        }
    }

    /// The fault phase: random faults and requests for `d`.
    fn chaos(&mut self, d: Duration) {
        self.faulty = true;
        self.run(d);
        self.faulty = false;
    }

    /// Ends the faults: the wire heals and behaves, every crashed member comes back. Then runs
    /// until nothing is due anywhere for `SETTLE`; returns how long that took.
    fn quiet(&mut self, what: &str) -> Duration {
        self.faulty = false;
        self.wire.heal();
        self.partitions.clear();
        self.wire.drop_rate = 0.0;
        self.wire.dup_rate = 0.0;
        self.wire.delay = (1, 20);
        for i in 0..self.members.len() {
            if self.members[i].node.is_none() {
                self.boot(i);
            }
        }
        let start = self.now;
        let mut still_since: Option<Instant> = None;
        while self.now < start + QUIET_LIMIT {
            self.step();
            let still = self
                .members
                .iter()
                .all(|m| m.node.as_ref().is_some_and(|n| n.poll_timeout().is_none()));
            match (still, still_since) {
                (false, _) => still_since = None,
                (true, None) => still_since = Some(self.now),
                (true, Some(t)) if self.now - t >= SETTLE => return self.now - start,
                _ => {}
            }
        }
        let pending: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                let n = m.node.as_ref().unwrap();
                format!(
                    "{}: {} undecided, next due {:?}",
                    m.name,
                    n.undecided(),
                    n.poll_timeout().map(|t| t - self.now)
                )
            })
            .collect();
        let requests: Vec<String> = self
            .requests
            .iter()
            .filter(|r| self.member(&r.requester).outcome(&r.id).is_none())
            .map(|r| {
                format!(
                    "{} by {} led by {} (forgotten {})",
                    r.id, r.requester, r.leader, r.forgotten
                )
            })
            .collect();
        panic!(
            "{}: still busy after {QUIET_LIMIT:?} of quiet: {pending:?}; requests without an \
             outcome at their requester: {requests:?}",
            self.at(what)
        );
    }

    // ---- checks ----

    /// The continuous checks, as member `i` stores `record`: the same transaction everywhere,
    /// one outcome everywhere (atomicity), a commit only once every participant is prepared
    /// (validity), an abandoned transaction never committed.
    fn check_record(&mut self, i: usize, record: &Record<Payload>) {
        let who = self.members[i].name.clone();
        let (id, commit) = match record {
            Record::Prepared(tx) => {
                self.check_same_tx(&who, tx);
                return;
            }
            Record::Committed(tx) => {
                self.check_same_tx(&who, tx);
                (tx.id.clone(), true)
            }
            Record::Aborted { tx } => (tx.clone(), false),
        };
        match self.outcomes.get(&id) {
            Some((first, by)) if *first != commit => panic!(
                "{}: {who} records {} {id}, which {by} recorded {}",
                self.at("atomicity"),
                word(commit),
                word(*first)
            ),
            Some(_) => {}
            None => {
                self.outcomes.insert(id.clone(), (commit, who.clone()));
            }
        }
        if commit {
            let tx = &self.txs[&id];
            for p in &tx.participants {
                assert!(
                    self.member(p).prepared(&id),
                    "{}: {who} commits {id} ({tx:?}) before {p} prepared",
                    self.at("validity")
                );
            }
            if let Some(r) = self.requests.iter().find(|r| r.id == id) {
                assert!(
                    !r.abandoned_unprepared,
                    "{}: {who} commits {id}, abandoned by {} before it prepared",
                    self.at("abandon"),
                    r.requester
                );
            }
            if let Some(no) = self.refuser.get(&id) {
                assert!(
                    !tx.participants.contains(no),
                    "{}: {who} commits {id}, on which participant {no} votes no",
                    self.at("validity")
                );
            }
        }
    }

    /// Every copy of a transaction, wherever recorded, is the one first recorded, and lists its
    /// leader and its requester among the participants.
    fn check_same_tx(&mut self, who: &str, tx: &Tx<Payload>) {
        match self.txs.get(&tx.id) {
            Some(first) => assert_eq!(
                first,
                tx,
                "{}: {who} holds another {}",
                self.at("one transaction"),
                tx.id
            ),
            None => {
                assert!(
                    tx.participants.contains(&tx.leader),
                    "{}: {tx:?} without its leader",
                    self.at("participants")
                );
                if let Some(r) = self.requests.iter().find(|r| r.id == tx.id) {
                    assert!(
                        tx.participants.contains(&r.requester) && tx.leader == r.leader,
                        "{}: {tx:?} requested by {} from {}",
                        self.at("participants"),
                        r.requester,
                        r.leader
                    );
                }
                self.txs.insert(tx.id.clone(), tx.clone());
            }
        }
    }

    /// Atomicity, over all records (crashed members' included): no transaction committed and
    /// aborted, at one member or two; no member ever counted a conflicting decision.
    fn check_atomicity(&self, what: &str) {
        let mut seen: BTreeMap<&str, (bool, &str)> = BTreeMap::new();
        for m in &self.members {
            for r in &m.records {
                let (id, commit) = match r {
                    Record::Prepared(_) => continue,
                    Record::Committed(tx) => (tx.id.as_str(), true),
                    Record::Aborted { tx } => (tx.as_str(), false),
                };
                if let Some((first, by)) = seen.insert(id, (commit, &m.name)) {
                    assert_eq!(
                        first,
                        commit,
                        "{}: {} {} {id}, {by} {}",
                        self.at(what),
                        m.name,
                        word(commit),
                        word(first)
                    );
                }
            }
            let conflicts = m.conflicts + m.node.as_ref().map_or(0, |n| n.conflicts);
            assert_eq!(conflicts, 0, "{}: conflicts at {}", self.at(what), m.name);
        }
    }

    /// Validity, over all records: a committed transaction was prepared by every participant.
    fn check_validity(&self, what: &str) {
        for m in &self.members {
            for r in &m.records {
                let Record::Committed(tx) = r else { continue };
                for p in &tx.participants {
                    assert!(
                        self.member(p).prepared(&tx.id),
                        "{}: {} committed {} but {p} never prepared it",
                        self.at(what),
                        m.name,
                        tx.id
                    );
                }
            }
        }
    }

    /// Termination: every member up, nothing undecided, nothing due; every `Prepared` in the
    /// records followed by an outcome.
    fn check_termination(&self, what: &str) {
        for m in &self.members {
            let node = m
                .node
                .as_ref()
                .unwrap_or_else(|| panic!("{}: {} is down", self.at(what), m.name));
            assert_eq!(
                node.undecided(),
                0,
                "{}: {} has undecided transactions",
                self.at(what),
                m.name
            );
            assert_eq!(
                node.poll_timeout(),
                None,
                "{}: {} still has something due",
                self.at(what),
                m.name
            );
            for (k, r) in m.records.iter().enumerate() {
                let Record::Prepared(tx) = r else { continue };
                let decided = m.records[k + 1..].iter().any(|later| match later {
                    Record::Committed(t) => t.id == tx.id,
                    Record::Aborted { tx: t } => *t == tx.id,
                    Record::Prepared(_) => false,
                });
                assert!(
                    decided,
                    "{}: {} prepared {} and never decided it",
                    self.at(what),
                    m.name,
                    tx.id
                );
                assert_eq!(
                    node.outcome(&tx.id),
                    m.outcome(&tx.id),
                    "{}: {} forgot its outcome of {}",
                    self.at(what),
                    m.name,
                    tx.id
                );
            }
        }
    }

    /// Every request its requester's driver still remembers is decided at the requester.
    fn check_requests(&self, what: &str) {
        for r in self.requests.iter().filter(|r| !r.forgotten) {
            let m = self.member(&r.requester);
            assert!(
                m.outcome(&r.id).is_some(),
                "{}: {} requested {} from {} and never learned its outcome",
                self.at(what),
                r.requester,
                r.id,
                r.leader
            );
        }
    }

    fn check_all(&self, what: &str) {
        self.check_atomicity(what);
        self.check_validity(what);
        self.check_termination(what);
        self.check_requests(what);
    }

    /// The outcome of `id` at each of `names`, from their records.
    fn outcomes_of(&self, id: &str, names: &[&str]) -> Vec<Option<bool>> {
        names.iter().map(|n| self.member(n).outcome(id)).collect()
    }

    fn all_decided(&self, id: &str, names: &[&str], commit: bool) -> bool {
        self.outcomes_of(id, names)
            .iter()
            .all(|o| *o == Some(commit))
    }

    fn add_to(&self, stats: &mut Stats, quiet: Duration) {
        stats.runs += 1;
        stats.requests += self.requests.len() as u64;
        for (commit, _) in self.outcomes.values() {
            if *commit {
                stats.committed += 1;
            } else {
                stats.aborted += 1;
            }
        }
        stats.abandoned += self
            .requests
            .iter()
            .filter(|r| r.abandoned_unprepared)
            .count() as u64;
        stats.forgotten += self.requests.iter().filter(|r| r.forgotten).count() as u64;
        stats.crashes += self.crashes;
        stats.queries += self.queries;
        stats.refused += self.refused;
        stats.slowest_quiet = stats.slowest_quiet.max(quiet);
    }
}

impl Drop for Sim {
    /// Any other panic in a run (an `expect`, an index in the state machine) names the seed too.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the run that failed: PALAVER_SEED={}", self.seed);
        }
    }
}

fn word(commit: bool) -> &'static str {
    if commit {
        "committed"
    } else {
        "aborted"
    }
}

/// Random runs: `count` seeds, each with 3 to 5 members, `traffic` of faults and requests,
/// then the quiet period and every check.
fn random_runs(what: &str, count: u64, traffic: Duration, faults: impl Fn(&mut StdRng) -> Faults) {
    let mut stats = Stats::default();
    for seed in seeds(count) {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(3..=5);
        let f = faults(&mut rng);
        let mut sim = Sim::new(seed, n, f);
        sim.chaos(traffic);
        let took = sim.quiet(what);
        sim.check_all(what);
        sim.add_to(&mut stats, took);
    }
    eprintln!("{what}: {stats:?}");
    assert!(stats.committed > 0, "{what}: nothing ever committed");
}

/// Timeouts of a run: the defaults, or any others, a vote timeout longer than the wait before
/// termination included, so that proposals and termination race in every order.
fn timeouts(rng: &mut StdRng) -> Timeouts {
    if rng.gen_bool(0.3) {
        return Timeouts::default();
    }
    let ms = |rng: &mut StdRng, lo, hi| Duration::from_millis(rng.gen_range(lo..hi));
    Timeouts {
        vote: ms(rng, 100, 3000),
        resend: ms(rng, 50, 500),
        terminate_after: ms(rng, 100, 5000),
    }
}

/// Drops, duplicates and delays (now and then long ones), and random timeouts, the same for
/// every member or each its own.
fn lossy(rng: &mut StdRng) -> Faults {
    Faults {
        timeouts: timeouts(rng),
        skewed: rng.gen_bool(0.5),
        drop_rate: rng.gen_range(0.0..0.3),
        dup_rate: rng.gen_range(0.0..0.1),
        max_delay: if rng.gen_bool(0.2) {
            rng.gen_range(200..1000)
        } else {
            rng.gen_range(5..200)
        },
        refusals: 0.1,
        requests_per_sec: 2.0,
        ..Faults::default()
    }
}

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
        if now >= self.next_list {
            self.next_list = now + LIST_EVERY;
            self.listed = self
                .members
                .iter()
                .filter(|m| match m.crashed_at {
                    None => m.node.is_some(),
                    Some(t) => now.duration_since(t) < LIST_LAG,
                })
                .map(|m| m.name.clone())
                .collect();
            for i in self.live() {
                let listed = self.listed.clone();
                self.members[i].node.as_mut().unwrap().set_peers(listed);
            }
        }
        for i in 0..self.members.len() {
            if self.members[i].node.is_none()
                && self.members[i].restart_at.is_some_and(|t| t <= now)
            {
                self.boot(i);
            }
        }
        if self.faulty {
            self.random_faults();
            self.random_requests();
        }
        self.abandon_overdue();
        for i in 0..self.members.len() {
            if let Some(node) = self.members[i].node.as_mut() {
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                    self.flush(i);
                }
            }
        }
    }
}

#[test]
fn random_drops_duplicates_and_delays() {
    random_runs("lossy", 500, Duration::from_secs(4), lossy);
}

#[test]
fn random_crashes_and_restarts() {
    random_runs("crashes", 500, Duration::from_secs(4), |rng| Faults {
        crashes_per_sec: 1.0,
        crash_after_prepare: 0.1,
        crash_after_prepared: 0.05,
        crash_after_outcome: 0.02,
        ..lossy(rng)
    });
}

#[test]
fn random_partitions() {
    random_runs("partitions", 500, Duration::from_secs(4), |rng| Faults {
        partitions_per_sec: 1.0,
        ..lossy(rng)
    });
}

#[test]
fn random_everything_at_once() {
    random_runs("everything", 500, Duration::from_secs(4), |rng| Faults {
        crashes_per_sec: 0.7,
        partitions_per_sec: 0.7,
        crash_after_prepare: 0.1,
        crash_after_prepared: 0.05,
        crash_after_outcome: 0.02,
        ..lossy(rng)
    });
}

// ---- named scenarios ----

/// Time for the members to decide without their leader: `terminate_after`, then a round of
/// queries (with a resend, should one be slow) and a little for the steps.
fn termination_bound(t: &Timeouts) -> Duration {
    t.terminate_after + t.resend + Duration::from_millis(200)
}

/// A quiet network with small random delays.
fn calm(seed: u64) -> Faults {
    let mut rng = StdRng::seed_from_u64(seed);
    Faults {
        max_delay: rng.gen_range(1..20),
        timeouts: Timeouts::default(),
        ..Faults::default()
    }
}

const ALL: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

#[test]
fn with_everyone_up_every_transaction_commits_everywhere() {
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 5, calm(seed));
        let mut ids = Vec::new();
        for k in 0..30 {
            let requester = ALL[sim.rng.gen_range(0..5)];
            // The coordinator leads most; now and then the requester leads its own.
            let leader = if k % 5 == 0 { requester } else { "s5" };
            ids.push(sim.request(requester, leader, false));
            let gap = Duration::from_millis(sim.rng.gen_range(0..100));
            sim.run(gap);
        }
        sim.quiet("all up");
        sim.check_all("all up");
        for id in &ids {
            assert!(
                sim.all_decided(id, &ALL, true),
                "{}: {id}: {:?}",
                sim.at("all up"),
                sim.outcomes_of(id, &ALL)
            );
        }
        assert_eq!(sim.queries, 0, "{}: nobody needed to ask", sim.at("all up"));
    }
}

#[test]
fn a_leader_killed_after_its_prepares_is_not_needed_to_commit() {
    let bound = termination_bound(&Timeouts::default());
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 5, calm(seed));
        let id = sim.request("s3", "s5", false);
        // The begin arrives, s5 records and sends its prepares within the step, and dies.
        sim.run_until(Duration::from_secs(1), |s| s.member("s5").prepared(&id))
            .expect("s5 prepares");
        sim.crash_name("s5");
        let rest = ["s1", "s2", "s3", "s4"];
        let took = sim.run_until(bound, |s| s.all_decided(&id, &rest, true));
        assert!(
            took.is_some(),
            "{}: without s5: {:?}",
            sim.at("leader killed"),
            sim.outcomes_of(&id, &rest)
        );
        assert!(!sim.up("s5"), "{}: s5 came back", sim.at("leader killed"));
        assert_eq!(
            sim.member("s5").outcome(&id),
            None,
            "{}",
            sim.at("leader killed")
        );

        // The next coordinator leads what comes next, without s5 once the list has dropped it.
        sim.run(LIST_LAG + LIST_EVERY);
        assert_eq!(
            sim.coordinator().as_deref(),
            Some("s4"),
            "{}",
            sim.at("leader killed")
        );
        let next = sim.request("s1", "s4", false);
        sim.run_until(Duration::from_secs(1), |s| {
            s.all_decided(&next, &rest, true)
        })
        .unwrap_or_else(|| panic!("{}: s4 leads {next}", sim.at("leader killed")));

        // Back, s5 finds the outcome through termination (it restarts fenced).
        sim.restart_name("s5");
        sim.run_until(bound, |s| s.all_decided(&id, &ALL, true))
            .unwrap_or_else(|| panic!("{}: s5 learns {id}", sim.at("leader killed")));
        sim.quiet("leader killed");
        sim.check_all("leader killed");
        assert_eq!(
            sim.member("s5").outcome(&next),
            None,
            "{}: s5 took no part",
            sim.at("leader killed")
        );
    }
}

#[test]
fn a_participant_killed_between_prepare_and_commit_learns_the_commit_on_restart() {
    let bound = termination_bound(&Timeouts::default());
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 5, calm(seed));
        let id = sim.request("s3", "s5", false);
        // s2 records its prepare and sends its vote within the step, and dies.
        sim.run_until(Duration::from_secs(1), |s| s.member("s2").prepared(&id))
            .expect("s2 prepares");
        sim.crash_name("s2");
        let others = ["s1", "s3", "s4", "s5"];
        sim.run_until(Duration::from_secs(1), |s| {
            s.all_decided(&id, &others, true)
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: without s2: {:?}",
                sim.at("participant killed"),
                sim.outcomes_of(&id, &others)
            )
        });
        assert_eq!(
            sim.queries,
            0,
            "{}: a plain commit",
            sim.at("participant killed")
        );
        sim.run(Duration::from_secs(2));
        assert_eq!(
            sim.member("s2").outcome(&id),
            None,
            "{}",
            sim.at("participant killed")
        );

        sim.restart_name("s2");
        assert!(
            sim.member("s2").node.as_ref().unwrap().is_prepared(&id),
            "{}: s2 comes back prepared",
            sim.at("participant killed")
        );
        sim.run_until(bound, |s| s.member("s2").outcome(&id) == Some(true))
            .unwrap_or_else(|| panic!("{}: s2 learns {id}", sim.at("participant killed")));
        sim.quiet("participant killed");
        sim.check_all("participant killed");
    }
}

#[test]
fn a_participant_that_never_answers_makes_the_leader_abort_after_the_vote_timeout() {
    let t = Timeouts::default();
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 5, calm(seed));
        sim.wire.isolate("s2");
        let id = sim.request("s3", "s5", false);
        let answering = ["s1", "s3", "s4", "s5"];
        let took = sim
            .run_until(t.vote + Duration::from_millis(500), |s| {
                s.all_decided(&id, &answering, false)
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: {:?}",
                    sim.at("silent participant"),
                    sim.outcomes_of(&id, &answering)
                )
            });
        assert!(
            took >= t.vote,
            "{}: aborted after {took:?}, before the vote timeout",
            sim.at("silent participant")
        );
        // Through the whole protocol and long after, s2 hears nothing and nothing commits.
        sim.run(t.terminate_after * 3);
        let s2_heard_nothing = |sim: &Sim| {
            assert!(
                sim.member("s2").records.is_empty(),
                "{}: s2 recorded something",
                sim.at("silent participant")
            )
        };
        s2_heard_nothing(&sim);
        sim.wire.heal();
        sim.quiet("silent participant");
        sim.check_all("silent participant");
        s2_heard_nothing(&sim);
        assert!(
            sim.outcomes.values().all(|(commit, _)| !commit),
            "{}: something committed",
            sim.at("silent participant")
        );
    }
}

#[test]
fn a_stale_leader_waking_up_after_the_others_terminated_agrees_with_them() {
    let bound = termination_bound(&Timeouts::default());
    for seed in seeds(20) {
        let mut sim = Sim::new(seed, 5, calm(seed));
        let id = sim.request("s3", "s5", false);
        let rest = ["s1", "s2", "s3", "s4"];
        // Its prepares arrived; cut off, it misses the last vote at least, and proposes an abort
        // nobody hears at the vote timeout.
        sim.run_until(Duration::from_secs(1), |s| {
            rest.iter().all(|n| s.member(n).prepared(&id))
        })
        .expect("everyone prepares");
        sim.wire.isolate("s5");
        sim.run_until(bound, |s| s.all_decided(&id, &rest, true))
            .unwrap_or_else(|| {
                panic!(
                    "{}: the others: {:?}",
                    sim.at("stale leader"),
                    sim.outcomes_of(&id, &rest)
                )
            });
        sim.run(Duration::from_secs(5));
        assert_eq!(
            sim.member("s5").outcome(&id),
            None,
            "{}: s5 decided while cut off",
            sim.at("stale leader")
        );

        sim.wire.heal();
        sim.quiet("stale leader");
        sim.check_all("stale leader");
        assert!(
            sim.all_decided(&id, &ALL, true),
            "{}: {:?}",
            sim.at("stale leader"),
            sim.outcomes_of(&id, &ALL)
        );
        assert!(
            sim.refused > 0,
            "{}: its proposal was refused",
            sim.at("stale leader")
        );
    }
}

/// A participant that answered a query while prepared (and has not asked yet itself), or that
/// restarted since, is fenced: it refuses the proposal to abort of a leader that lost its vote,
/// since the asker decided commit on its answer.
///
/// s4 leads, s1 requests; s3 prepares late (its link to s4 is cut at first) and its vote is lost
/// as s4 is cut off; s4 proposes an abort nobody hears. s1 and s2 ask first (s3 prepared later,
/// its own wait is not over), everyone but s4 answers prepared: commit. Then s3, cut from s1 and
/// s2 before their decision reaches it, is reachable by s4 only, whose abort comes again.
#[test]
fn a_participant_that_answered_a_query_refuses_the_leaders_late_abort() {
    let t = Timeouts::default();
    for seed in seeds(20) {
        for restart in [false, true] {
            let what = if restart {
                "answered, restarted, then a late abort"
            } else {
                "answered, then a late abort"
            };
            let mut sim = Sim::new(seed, 4, calm(seed));
            sim.wire.cut("s4", "s3");
            let id = sim.request("s1", "s4", false);
            sim.run_until(Duration::from_secs(1), |s| {
                s.member("s1").prepared(&id) && s.member("s2").prepared(&id)
            })
            .expect("s1 and s2 prepare");
            sim.run(Duration::from_millis(800));
            // s4 prepares s3 on its next resend; s3's vote is lost as s4 is cut off.
            sim.wire.heal();
            sim.run_until(t.resend + Duration::from_millis(100), |s| {
                s.member("s3").prepared(&id)
            })
            .expect("s3 prepares on a resend of the prepare");
            let s3_prepared = sim.now;
            for other in ["s1", "s2", "s3"] {
                sim.wire.cut("s4", other);
            }
            let one_decided = |s: &Sim| s.outcomes_of(&id, &["s1", "s2"]).contains(&Some(true));
            sim.run_until(t.terminate_after + Duration::from_secs(1), one_decided)
                .unwrap_or_else(|| panic!("{}: s1 or s2 decides", sim.at(what)));
            assert!(
                sim.now < s3_prepared + t.terminate_after,
                "{}: s3 asked already",
                sim.at(what)
            );
            // The decision does not reach s3; s4 reaches s3 only.
            sim.wire.heal();
            for (a, b) in [("s3", "s1"), ("s3", "s2"), ("s4", "s1"), ("s4", "s2")] {
                sim.wire.cut(a, b);
            }
            if restart {
                sim.crash_name("s3");
                sim.restart_name("s3");
            }
            let refused = sim.refused;
            sim.run_until(t.resend + Duration::from_millis(100), |s| {
                s.refused > refused
            })
            .unwrap_or_else(|| panic!("{}: s3 hears the abort", sim.at(what)));
            assert_eq!(sim.member("s3").outcome(&id), None, "{}", sim.at(what));
            assert_eq!(sim.member("s4").outcome(&id), None, "{}", sim.at(what));

            sim.wire.heal();
            sim.quiet(what);
            sim.check_all(what);
            assert!(
                sim.all_decided(&id, &["s1", "s2", "s3", "s4"], true),
                "{}: {:?}",
                sim.at(what),
                sim.outcomes_of(&id, &["s1", "s2", "s3", "s4"])
            );
        }
    }
}
