//! Inbox cursors on a simulated cluster: three servers, each accepting events with its own
//! Lamport clock and sequence numbers, copying prefixes of one another's logs while partitions
//! come and go; Bob's devices read pages of what is addressed to him from whichever server they
//! reach, and confirm the pages' cursors over a lossy, delaying network, the servers passing the
//! confirmations on lazily.
//!
//! ```text
//!  device ──read──▶ server: page(its cursor for the device, what it holds, Bob's events, limit)
//!     ◀──events, next──┘
//!     └──confirm next (lost? late?)──▶ that server ──cursors, lazily──▶ the other servers
//! ```
//!
//! The invariants, checked as the run goes and at its end: no event is delivered to a device
//! twice (the client drops repeats by id, and a server never hands out an event its cursor for
//! the device covers); no cursor, on a device or a server, ever covers an event the device was
//! not handed, so nothing is skipped, and once the cluster heals and a device reads until a
//! page is empty it holds everything addressed to Bob; a page hands events out in the
//! cluster's total order (Lamport time, then origin). The named scenario is the one cursors
//! exist for: a server cut off accepts an event for Bob with a Lamport time below everything
//! he takes meanwhile elsewhere, and after the heal his next read delivers it, once.
//!
//! A failing case prints its seed; `PALAVER_SEED=<seed> cargo test -p palaver-core --test
//! inbox` replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use palaver_core::inbox::{merge, page, Page, Position};
use palaver_core::replication::VersionVector;
use palaver_core::Lamport;
use rand::seq::SliceRandom;
use rand::Rng;
use sim::{seeds, split_in_two, InFlight, Steps, Wire};

mod sim;

const STEP: Duration = Duration::from_millis(5);
const SERVERS: [&str; 3] = ["s1", "s2", "s3"];
/// The largest page a device asks for.
const MAX_LIMIT: usize = 20;

/// An event's id: its origin and sequence number.
type Id = (String, u64);

fn id(p: &Position) -> Id {
    (p.origin.clone(), p.seq)
}

#[derive(Debug, Clone)]
enum Msg {
    /// A device confirms, to the server it read from, the cursor of the page it took.
    Confirm { device: String, next: VersionVector },
    /// A server passes on the cursors it knows, per device.
    Cursors(BTreeMap<String, VersionVector>),
}

#[derive(Debug, Clone)]
struct Event {
    pos: Position,
    to_bob: bool,
}

struct Server {
    name: String,
    lamport: Lamport,
    /// Per origin, a prefix of that origin's log (this server's own under its own name).
    logs: BTreeMap<String, Vec<Event>>,
    /// Per device of Bob, the merge of the confirmations this server has.
    cursors: BTreeMap<String, VersionVector>,
}

impl Server {
    fn held(&self) -> VersionVector {
        self.logs
            .iter()
            .map(|(o, log)| (o.clone(), log.len() as u64))
            .collect()
    }

    fn held_of(&self, origin: &str) -> usize {
        self.logs.get(origin).map_or(0, Vec::len)
    }

    /// What this server holds addressed to Bob, in no particular order.
    fn candidates(&self) -> Vec<Position> {
        self.logs
            .values()
            .flatten()
            .filter(|e| e.to_bob)
            .map(|e| e.pos.clone())
            .collect()
    }

    fn cursor(&self, device: &str) -> VersionVector {
        self.cursors.get(device).cloned().unwrap_or_default()
    }
}

struct Device {
    name: String,
    /// Ids in the order they reached the person: the first time each was handed out.
    delivered: Vec<Id>,
    seen: BTreeSet<Id>,
    /// How many times each id was handed out, repeats (dropped by the client) included.
    handed: BTreeMap<Id, u32>,
    /// The merge of the `next` of every page taken.
    cursor: VersionVector,
    /// The highest Lamport time delivered so far.
    top_lamport: u64,
}

/// What the runs went through, to show that the hard cases did happen.
#[derive(Debug, Default)]
struct Stats {
    reads: u64,
    /// Pages cut by their limit.
    cut_pages: u64,
    /// Events handed out again (a confirmation lost, late, or not yet passed on).
    repeats: u64,
    /// Pages whose confirmation was never sent.
    unconfirmed: u64,
    /// Events delivered with a Lamport time below one the device had taken already: a
    /// single-time cursor would have skipped them.
    late: u64,
    /// Messages lost to partitions.
    cut_drops: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.reads += other.reads;
        self.cut_pages += other.cut_pages;
        self.repeats += other.repeats;
        self.unconfirmed += other.unconfirmed;
        self.late += other.late;
        self.cut_drops += other.cut_drops;
    }
}

struct Sim {
    seed: u64,
    now: Instant,
    servers: Vec<Server>,
    devices: Vec<Device>,
    wire: Wire<Msg>,
    /// Probability that a device confirms a page it took (the wire may lose it still).
    confirm_rate: f64,
    /// Probability that the server reading a page accepts an event between reading what it
    /// holds and reading the candidates.
    commit_meanwhile: f64,
    stats: Stats,
}

impl Sim {
    fn new(seed: u64, devices: usize) -> Sim {
        let servers = SERVERS
            .iter()
            .map(|&name| Server {
                name: name.to_owned(),
                lamport: Lamport::default(),
                logs: BTreeMap::new(),
                cursors: BTreeMap::new(),
            })
            .collect();
        let devices = (1..=devices)
            .map(|k| Device {
                name: format!("d{k}"),
                delivered: Vec::new(),
                seen: BTreeSet::new(),
                handed: BTreeMap::new(),
                cursor: VersionVector::new(),
                top_lamport: 0,
            })
            .collect();
        let mut wire = Wire::new(seed);
        wire.delay = (1, 50);
        Sim {
            seed,
            now: Instant::now(),
            servers,
            devices,
            wire,
            confirm_rate: 1.0,
            commit_meanwhile: 0.0,
            stats: Stats::default(),
        }
    }

    /// The prefix of every failure message: what was checked, and how to replay it.
    fn at(&self, what: &str) -> String {
        format!("{what}: PALAVER_SEED={}", self.seed)
    }

    /// Every endpoint on the wire: the servers, then the devices.
    fn names(&self) -> Vec<String> {
        let servers = self.servers.iter().map(|s| s.name.clone());
        servers
            .chain(self.devices.iter().map(|d| d.name.clone()))
            .collect()
    }

    fn server(&self, name: &str) -> usize {
        self.servers.iter().position(|s| s.name == name).unwrap()
    }

    fn device(&self, name: &str) -> usize {
        self.devices.iter().position(|d| d.name == name).unwrap()
    }

    /// Every event ever accepted, from each origin's own log.
    fn all_events(&self) -> impl Iterator<Item = &Event> {
        self.servers
            .iter()
            .filter_map(|s| s.logs.get(&s.name))
            .flatten()
    }

    fn addressed_to_bob(&self) -> Vec<Id> {
        self.all_events()
            .filter(|e| e.to_bob)
            .map(|e| id(&e.pos))
            .collect()
    }

    // ---- the cluster ----

    /// Server `i` accepts an event: its clock ticks past everything it holds.
    fn accept(&mut self, i: usize, to_bob: bool) -> Position {
        let s = &mut self.servers[i];
        let lamport = s.lamport.tick();
        let name = s.name.clone();
        let log = s.logs.entry(name.clone()).or_default();
        let pos = Position {
            lamport,
            origin: name,
            seq: log.len() as u64 + 1,
        };
        log.push(Event {
            pos: pos.clone(),
            to_bob,
        });
        pos
    }

    /// Server `to` takes `origin`'s events from server `from` up to `upto`, after what it
    /// holds: a prefix, never a gap. Nothing moves if they cannot reach each other.
    fn copy(&mut self, from: usize, to: usize, origin: &str, upto: usize) {
        if from == to
            || !self
                .wire
                .reachable(&self.servers[from].name, &self.servers[to].name)
        {
            return;
        }
        let have = self.servers[to].held_of(origin);
        let upto = upto.min(self.servers[from].held_of(origin));
        if upto <= have {
            return;
        }
        let events = self.servers[from].logs[origin][have..upto].to_vec();
        let to = &mut self.servers[to];
        for e in &events {
            to.lamport.observe(e.pos.lamport);
        }
        to.logs.entry(origin.to_owned()).or_default().extend(events);
        self.check_prefixes("after a copy");
    }

    /// A random prefix of a random origin, between two random servers.
    fn replicate_some(&mut self) {
        let from = self.wire.rng.gen_range(0..self.servers.len());
        let to = self.wire.rng.gen_range(0..self.servers.len());
        let origin = SERVERS[self.wire.rng.gen_range(0..SERVERS.len())];
        let (have, there) = (
            self.servers[to].held_of(origin),
            self.servers[from].held_of(origin),
        );
        if there > have {
            let upto = self.wire.rng.gen_range(have + 1..=there);
            self.copy(from, to, origin, upto);
        }
    }

    /// Every server takes everything every other server it reaches holds, until none has more.
    fn replicate_all(&mut self) {
        loop {
            let before: u64 = self.servers.iter().map(|s| s.held().total()).sum();
            for from in 0..self.servers.len() {
                for to in 0..self.servers.len() {
                    for origin in SERVERS {
                        self.copy(from, to, origin, usize::MAX);
                    }
                }
            }
            if self.servers.iter().map(|s| s.held().total()).sum::<u64>() == before {
                return;
            }
        }
    }

    /// Server `from` passes the cursors it knows on to `to`.
    fn gossip(&mut self, from: usize, to: usize) {
        if from != to {
            let msg = Msg::Cursors(self.servers[from].cursors.clone());
            let (a, b) = (
                self.servers[from].name.clone(),
                self.servers[to].name.clone(),
            );
            self.wire.send(self.now, &a, &b, msg);
        }
    }

    fn gossip_all(&mut self) {
        for from in 0..self.servers.len() {
            for to in 0..self.servers.len() {
                self.gossip(from, to);
            }
        }
    }

    // ---- Bob's devices ----

    /// Device `d` reads a page of at most `limit` from server `s`, and confirms it (or not).
    /// Returns the page, or `None` if the device cannot reach the server.
    fn read(&mut self, d: usize, s: usize, limit: usize) -> Option<Page> {
        let (dev, srv) = (self.devices[d].name.clone(), self.servers[s].name.clone());
        if !self.wire.reachable(&dev, &srv) {
            return None;
        }
        let cursor = self.servers[s].cursor(&dev);
        let held = self.servers[s].held();
        // As a store does: the held vector is read first, and a commit may land before the
        // candidates are; those past `held` must be neither handed out nor counted as taken.
        if self.wire.rng.gen_bool(self.commit_meanwhile) {
            let to_bob = self.wire.rng.gen_bool(0.5);
            self.accept(s, to_bob);
        }
        // In any order, some twice (a message to oneself is found from both sides).
        let mut candidates = self.servers[s].candidates();
        for k in 0..candidates.len() {
            if self.wire.rng.gen_bool(0.05) {
                candidates.push(candidates[k].clone());
            }
        }
        candidates.shuffle(&mut self.wire.rng);
        let p = page(&cursor, &held, candidates.clone(), limit);
        self.stats.reads += 1;
        self.stats.cut_pages += u64::from(p.more);
        self.check_page(&srv, &dev, &cursor, &held, &candidates, limit, &p);
        self.take(d, &p);
        if self.wire.rng.gen_bool(self.confirm_rate) {
            let msg = Msg::Confirm {
                device: dev.clone(),
                next: p.next.clone(),
            };
            self.wire.send(self.now, &dev, &srv, msg);
        } else {
            self.stats.unconfirmed += 1;
        }
        Some(p)
    }

    /// The client side: what was handed out is delivered to the person the first time only.
    fn take(&mut self, d: usize, p: &Page) {
        let dev = &mut self.devices[d];
        for e in &p.events {
            let i = id(e);
            *dev.handed.entry(i.clone()).or_default() += 1;
            if dev.seen.insert(i.clone()) {
                dev.delivered.push(i);
                if e.lamport < dev.top_lamport {
                    self.stats.late += 1;
                }
                dev.top_lamport = dev.top_lamport.max(e.lamport);
            } else {
                self.stats.repeats += 1;
            }
        }
        merge(&mut dev.cursor, &p.next);
        let (name, cursor) = (dev.name.clone(), dev.cursor.clone());
        self.check_exactly_once(d, "after a read");
        self.check_covers_only_delivered(&name, &cursor, &format!("{name}'s own cursor"));
    }

    /// Device `d` reads from random servers, random limits, until a page comes back empty.
    fn read_until_empty(&mut self, d: usize, what: &str) {
        for _ in 0..10_000 {
            let s = self.wire.rng.gen_range(0..self.servers.len());
            let limit = self.wire.rng.gen_range(1..=MAX_LIMIT);
            let p = self.read(d, s, limit);
            self.run(Duration::from_millis(60));
            if p.is_some_and(|p| p.events.is_empty()) {
                return;
            }
        }
        let name = &self.devices[d].name;
        panic!("{}: {name} never read an empty page", self.at(what));
    }

    // ---- time ----

    fn deliver(&mut self, m: InFlight<Msg>) {
        let s = self.server(&m.to);
        let changed: Vec<String> = match m.msg {
            Msg::Confirm { device, next } => {
                merge(
                    self.servers[s].cursors.entry(device.clone()).or_default(),
                    &next,
                );
                vec![device]
            }
            Msg::Cursors(theirs) => {
                for (device, c) in &theirs {
                    merge(
                        self.servers[s].cursors.entry(device.clone()).or_default(),
                        c,
                    );
                }
                theirs.into_keys().collect()
            }
        };
        for device in changed {
            let cursor = self.servers[s].cursor(&device);
            let what = format!("{}'s cursor for {device}", m.to);
            self.check_covers_only_delivered(&device, &cursor, &what);
        }
    }

    /// One step of everything at random: partitions made and healed, events accepted, prefixes
    /// copied, cursors passed on, devices reading with random limits.
    fn chaos_step(&mut self) {
        let n = self.servers.len();
        let roll: f64 = self.wire.rng.gen();
        if roll < 0.02 {
            match self.wire.rng.gen_range(0..4) {
                0 | 1 => self.wire.heal(),
                2 => {
                    let names = self.names();
                    let (a, b) = split_in_two(&mut self.wire.rng, &names);
                    self.wire.partition_names(&[a, b]);
                }
                _ => {
                    let who = SERVERS[self.wire.rng.gen_range(0..SERVERS.len())];
                    self.wire.isolate(who);
                }
            }
        } else if roll < 0.22 {
            let s = self.wire.rng.gen_range(0..n);
            let to_bob = self.wire.rng.gen_bool(0.3);
            self.accept(s, to_bob);
        } else if roll < 0.52 {
            self.replicate_some();
        } else if roll < 0.60 {
            let (from, to) = (self.wire.rng.gen_range(0..n), self.wire.rng.gen_range(0..n));
            self.gossip(from, to);
        } else if roll < 0.80 {
            let d = self.wire.rng.gen_range(0..self.devices.len());
            let s = self.wire.rng.gen_range(0..n);
            let limit = self.wire.rng.gen_range(1..=MAX_LIMIT);
            self.read(d, s, limit);
        }
        self.step();
    }

    // ---- invariants ----

    /// Every server holds, of each origin, a prefix of that origin's log: the model's premise.
    fn check_prefixes(&self, what: &str) {
        for s in &self.servers {
            for (origin, log) in &s.logs {
                let own = &self.servers[self.server(origin)].logs[origin];
                for (k, e) in log.iter().enumerate() {
                    assert_eq!(e.pos.seq, k as u64 + 1, "{}: gap", self.at(what));
                    assert_eq!(
                        e.pos,
                        own[k].pos,
                        "{}: {} holds another {origin}",
                        self.at(what),
                        s.name
                    );
                }
            }
        }
    }

    /// A page from `server`, read with its cursor `cursor` for `device`: every event handed out
    /// is addressed to Bob, held by the server, and not covered by the cursor (a server never
    /// hands out again what a confirmation it has covers); the events follow the total order
    /// (Lamport time, then origin), each once; the cursor never moves back, and a page that is
    /// not cut takes everything the server holds.
    #[allow(clippy::too_many_arguments)]
    fn check_page(
        &self,
        server: &str,
        device: &str,
        cursor: &VersionVector,
        held: &VersionVector,
        candidates: &[Position],
        limit: usize,
        p: &Page,
    ) {
        let what = format!("{device} reading from {server} with cursor {cursor:?}");
        let at = self.at(&what);
        assert!(p.events.len() <= limit, "{at}: page past its limit");
        for e in &p.events {
            assert!(
                candidates.contains(e),
                "{at}: {e:?} is not Bob's, or not held"
            );
            assert!(
                e.seq <= held.get(&e.origin),
                "{at}: {e:?} handed out past what the server held when the read began"
            );
            assert!(
                e.seq > cursor.get(&e.origin),
                "{at}: {e:?} handed out again though the server's cursor covers it"
            );
        }
        for w in p.events.windows(2) {
            assert!(
                (w[0].lamport, &w[0].origin) < (w[1].lamport, &w[1].origin),
                "{at}: out of order: {:?} before {:?}",
                w[0],
                w[1]
            );
        }
        assert!(p.next.covers(cursor), "{at}: the cursor moved back");
        if !p.more {
            assert!(
                p.next.covers(held),
                "{at}: a page with nothing more does not take all that is held"
            );
        }
    }

    /// Nothing skipped: every event addressed to Bob that `cursor` covers was handed to
    /// `device`. A cursor that covers one it was not handed would never hand it out.
    fn check_covers_only_delivered(&self, device: &str, cursor: &VersionVector, what: &str) {
        let seen = &self.devices[self.device(device)].seen;
        for e in self.all_events() {
            if e.to_bob && e.pos.seq <= cursor.get(&e.pos.origin) {
                assert!(
                    seen.contains(&id(&e.pos)),
                    "{}: {cursor:?} covers {:?}, never handed to {device}: skipped",
                    self.at(what),
                    e.pos
                );
            }
        }
    }

    /// Exactly once: the person sees each event once on a device.
    fn check_exactly_once(&self, d: usize, what: &str) {
        let dev = &self.devices[d];
        let distinct: BTreeSet<&Id> = dev.delivered.iter().collect();
        assert_eq!(
            distinct.len(),
            dev.delivered.len(),
            "{}: {} was shown an event twice",
            self.at(what),
            dev.name
        );
    }

    /// Nothing skipped, in the end: every event addressed to Bob reached every device.
    fn check_all_delivered(&self, what: &str) {
        let all = self.addressed_to_bob();
        for (d, dev) in self.devices.iter().enumerate() {
            self.check_exactly_once(d, what);
            let missing: Vec<&Id> = all.iter().filter(|i| !dev.seen.contains(*i)).collect();
            assert!(
                missing.is_empty(),
                "{}: {} never got {missing:?}",
                self.at(what),
                dev.name
            );
            assert_eq!(
                dev.delivered.len(),
                all.len(),
                "{}: {} got events not addressed to Bob",
                self.at(what),
                dev.name
            );
        }
    }

    /// Stops accepting, heals, replicates everything (events and cursors), and reads on every
    /// device until a page is empty; then everything addressed to Bob has reached every device.
    fn settle(&mut self, what: &str) {
        self.commit_meanwhile = 0.0;
        self.wire.heal();
        self.replicate_all();
        self.check_prefixes(what);
        for s in &self.servers {
            assert_eq!(s.held(), self.servers[0].held(), "{}", self.at(what));
        }
        self.gossip_all();
        self.run(Duration::from_millis(200));
        for d in 0..self.devices.len() {
            self.read_until_empty(d, what);
        }
        self.check_all_delivered(what);
    }
}

impl Steps for Sim {
    fn now(&self) -> Instant {
        self.now
    }

    fn step(&mut self) {
        self.now += STEP;
        for m in self.wire.due(self.now) {
            self.deliver(m);
        }
    }
}

/// The issue's case. s3 is cut from everyone (Bob's devices too) and accepts an event for Bob,
/// its clock far behind; meanwhile Bob takes everything else through s1 and s2, his cursors
/// moving past it in Lamport time. After the heal and the catch-up, his next read, on each
/// device and from any server, hands out that event alone, and no read hands it out again.

#[test]
fn a_late_event_from_a_cut_off_server_is_delivered_exactly_once() {
    for seed in seeds(50) {
        let mut sim = Sim::new(seed, 2);
        let what = "a late event from a cut-off server";
        // Some history on every server, replicated, and taken by both devices.
        for _ in 0..sim.wire.rng.gen_range(5..15) {
            let s = sim.wire.rng.gen_range(0..3);
            let to_bob = sim.wire.rng.gen_bool(0.5);
            sim.accept(s, to_bob);
        }
        sim.accept(2, true);
        sim.replicate_all();
        sim.gossip_all();
        sim.run(Duration::from_millis(100));
        for d in 0..2 {
            sim.read_until_empty(d, "before the cut");
        }
        assert!(
            sim.devices[0].cursor.get("s3") > 0,
            "{}: Bob's cursor has an entry for s3 already",
            sim.at(what)
        );

        // s3, cut off, accepts a few events, one of them for Bob.
        sim.wire.isolate("s3");
        let others = sim.wire.rng.gen_range(0..4);
        let late_at = sim.wire.rng.gen_range(0..=others);
        let mut late = None;
        for k in 0..=others {
            let pos = sim.accept(2, k == late_at);
            if k == late_at {
                late = Some(pos);
            }
        }
        let late = late.unwrap();

        // Meanwhile Bob takes everything else through s1 and s2.
        for _ in 0..sim.wire.rng.gen_range(20..60) {
            let s = sim.wire.rng.gen_range(0..2);
            let to_bob = sim.wire.rng.gen_bool(0.4);
            sim.accept(s, to_bob);
            if sim.wire.rng.gen_bool(0.5) {
                sim.replicate_some();
            }
            if sim.wire.rng.gen_bool(0.4) {
                let (d, s) = (sim.wire.rng.gen_range(0..2), sim.wire.rng.gen_range(0..2));
                let limit = sim.wire.rng.gen_range(1..=MAX_LIMIT);
                sim.read(d, s, limit);
            }
            sim.run(Duration::from_millis(20));
        }
        sim.accept(0, true);
        sim.replicate_all();
        sim.gossip_all();
        sim.run(Duration::from_millis(100));
        for d in 0..2 {
            sim.read_until_empty(d, "while s3 is cut off");
            assert!(
                sim.devices[d].top_lamport > late.lamport,
                "{}: d{} took events after the late one in Lamport time",
                sim.at(what),
                d + 1
            );
            assert!(
                !sim.devices[d].seen.contains(&id(&late)),
                "{}: the late event got out of s3",
                sim.at(what)
            );
        }

        // The heal: s3's events reach the others, the cursors reach s3.
        sim.wire.heal();
        sim.replicate_all();
        sim.gossip_all();
        sim.run(Duration::from_millis(100));
        for d in 0..2 {
            let s = sim.wire.rng.gen_range(0..3);
            let limit = sim.wire.rng.gen_range(1..=MAX_LIMIT);
            let p = sim.read(d, s, limit).unwrap();
            assert_eq!(
                p.events,
                std::slice::from_ref(&late),
                "{}: d{}'s next read, from {}",
                sim.at(what),
                d + 1,
                SERVERS[s]
            );
            sim.run(Duration::from_millis(100));
            sim.gossip_all();
            sim.run(Duration::from_millis(100));
            for (s, name) in SERVERS.iter().enumerate() {
                let p = sim.read(d, s, MAX_LIMIT).unwrap();
                assert!(
                    p.events.is_empty(),
                    "{}: d{} read {:?} again from {name}",
                    sim.at(what),
                    d + 1,
                    p.events,
                );
            }
            assert_eq!(
                sim.devices[d].handed.get(&id(&late)),
                Some(&1),
                "{}: d{} was handed the late event once",
                sim.at(what),
                d + 1
            );
        }
        sim.settle(what);
    }
}

/// Partitions coming and going, events accepted everywhere, prefixes copied at random, reads
/// with random limits from any server a device reaches, confirmations unsent, lost, late.
#[test]
fn cursors_never_skip_and_never_repeat_under_partitions_and_lost_confirmations() {
    let seeds = seeds(300);
    let full = seeds.len() > 1;
    let mut total = Stats::default();
    for seed in seeds {
        let mut sim = Sim::new(seed, 1 + (seed % 2) as usize);
        sim.confirm_rate = 0.8;
        sim.commit_meanwhile = 0.1;
        sim.wire.drop_rate = 0.15;
        sim.wire.dup_rate = 0.05;
        for _ in 0..600 {
            sim.chaos_step();
        }
        sim.settle("after the chaos");
        sim.stats.cut_drops = sim.wire.cut_drops;
        total.add(&sim.stats);
    }
    eprintln!("{total:?}");
    if full {
        // The runs went through what the invariants are about.
        assert!(total.late > 0, "no event arrived late: {total:?}");
        assert!(total.repeats > 0, "no event handed out twice: {total:?}");
        assert!(total.cut_pages > 0, "no page was cut: {total:?}");
        assert!(
            total.cut_drops > 0,
            "no partition stopped anything: {total:?}"
        );
    }
}
