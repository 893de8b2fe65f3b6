//! Replication bookkeeping, without I/O: which events a server holds, what it lacks and from
//! whom to fetch it, and when a write it accepted has reached the other live servers.
//!
//! ```text
//!  own batch ──▶ sent to every peer while it commits (on_own_sent) ──▶ peers take it, ack
//!       └─ replies wait for the commit (on_own_commit) and every live, trusted peer's ack (or
//!          a deadline: the peer is then "suspect", not waited for, until it catches up)
//!  every second: ask a peer for its version vector ──▶ fetch, page by page, what it has more of
//! ```
//!
//! Every origin numbers its events 1, 2, 3… A server takes an origin's events only in that
//! order, so what it holds of an origin is always a prefix, and its version vector (origin →
//! highest seq held) says exactly what it has. An event that arrives after a gap is not taken;
//! the gap is fetched instead (again, when a fetch in flight ends short of it). So no event is
//! applied twice and none is skipped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Per origin, how many of its events (1..=n) a server holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionVector(BTreeMap<String, u64>);

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    pub fn get(&self, origin: &str) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }

    pub fn set(&mut self, origin: &str, seq: u64) {
        self.0.insert(origin.to_owned(), seq);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(o, s)| (o.as_str(), *s))
    }

    /// Total number of events held.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Whether this holds everything `other` holds.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other.iter().all(|(o, s)| self.get(o) >= s)
    }
}

impl FromIterator<(String, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (String, u64)>>(iter: I) -> VersionVector {
        VersionVector(iter.into_iter().collect())
    }
}

/// Timing and sizes.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How long a write waits for the peers' acks before the silent ones become suspect.
    pub ack_timeout: Duration,
    /// How often to compare version vectors with a peer.
    pub sync_every: Duration,
    /// Events per fetched page.
    pub page: usize,
    /// How long a fetch may go unanswered before it is asked again.
    pub fetch_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ack_timeout: Duration::from_millis(500),
            sync_every: Duration::from_millis(1000),
            page: 2000,
            fetch_timeout: Duration::from_secs(2),
        }
    }
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask `peer` for its version vector; call [`Replication::on_vector`] with it.
    AskVector { peer: String },
    /// Ask `peer` for `origin`'s events after `after`, at most `limit`; call
    /// [`Replication::on_fetched`] with the answer.
    Fetch {
        peer: String,
        origin: String,
        after: u64,
        limit: usize,
    },
    /// Tell `peer` that this server holds its events up to `seq`.
    Ack { peer: String, seq: u64 },
    /// This server's own writes up to `seq` have reached every live peer that is trusted (or
    /// waited long enough): answer them.
    Release { upto: u64 },
}

#[derive(Debug, Clone)]
struct PeerView {
    /// Highest of our own events it confirmed.
    acked: u64,
    /// Not waited for: it missed an ack deadline, or just joined; see [`Replication::on_ack`].
    suspect: bool,
    /// What it must ack to be trusted again.
    mark: u64,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    seq: u64,
    deadline: Instant,
}

/// One server's replication state.
#[derive(Debug)]
pub struct Replication {
    me: String,
    cfg: Config,
    vv: VersionVector,
    peers: BTreeMap<String, PeerView>,
    waiting: VecDeque<Waiting>,
    released: u64,
    /// This server's own events sent to the peers, up to here: they may be on a peer before
    /// they are on this server's disk (batches go out while they commit), and are never taken
    /// back from a peer as if this server had lost them.
    issued: u64,
    /// Origins being fetched, from whom, and until when the fetch may take.
    fetching: BTreeMap<String, (String, Instant)>,
    /// Per origin, the highest sequence number seen offered and not taken (it came after a
    /// gap), and who offered it: what a fetch must reach before the gap counts as closed.
    beyond: BTreeMap<String, (u64, String)>,
    next_sync: Option<Instant>,
    sync_turn: usize,
    /// Peers whose vectors must be matched before this server counts as caught up, with the
    /// vector each last sent.
    startup: Option<BTreeMap<String, Option<VersionVector>>>,
    actions: VecDeque<Action>,
}

impl Replication {
    /// Starts from what the store holds.
    pub fn new(me: &str, vv: VersionVector, cfg: Config) -> Replication {
        let released = vv.get(me);
        Replication {
            me: me.to_owned(),
            cfg,
            vv,
            peers: BTreeMap::new(),
            waiting: VecDeque::new(),
            released,
            issued: released,
            fetching: BTreeMap::new(),
            beyond: BTreeMap::new(),
            next_sync: None,
            sync_turn: 0,
            startup: None,
            actions: VecDeque::new(),
        }
    }

    pub fn vector(&self) -> &VersionVector {
        &self.vv
    }

    /// Whether this server has matched every peer it found at start-up (a lone server has).
    ///
    /// A peer is matched by a vector exchange in which this server already held everything the
    /// peer had: the request carried our vector, so by then the peer trusts us too (see
    /// [`Replication::on_ack`]) and waits for us before answering its own writes.
    pub fn caught_up(&self) -> bool {
        self.startup.as_ref().is_some_and(BTreeMap::is_empty)
    }

    /// Every live peer, trusted or not.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// Peers that are waited for.
    pub fn trusted(&self) -> impl Iterator<Item = &str> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.suspect)
            .map(|(n, _)| n.as_str())
    }

    /// The live peers, from the reference. The first call also decides whom to catch up with.
    pub fn set_peers(&mut self, now: Instant, live: impl IntoIterator<Item = String>) {
        let live: BTreeSet<String> = live.into_iter().filter(|n| *n != self.me).collect();
        self.peers.retain(|n, _| live.contains(n));
        for name in &live {
            if self.startup.is_some() && !self.peers.contains_key(name) {
                // A newcomer: compare at once, so it is trusted (waited for) soon.
                self.actions
                    .push_back(Action::AskVector { peer: name.clone() });
            }
            let mark = self.vv.get(&self.me);
            self.peers.entry(name.clone()).or_insert(PeerView {
                acked: 0,
                suspect: true,
                mark,
            });
        }
        if self.startup.is_none() {
            for name in &live {
                self.actions
                    .push_back(Action::AskVector { peer: name.clone() });
            }
            self.startup = Some(live.iter().map(|n| (n.clone(), None)).collect());
        } else if let Some(s) = self.startup.as_mut() {
            s.retain(|n, _| live.contains(n));
        }
        self.fetching.retain(|_, (peer, _)| live.contains(peer));
        self.next_sync.get_or_insert(now + self.cfg.sync_every);
        self.release(now);
    }

    // ---- own writes ----

    /// This server sent its own events up to `seq` to the peers (before or while committing
    /// them).
    pub fn on_own_sent(&mut self, seq: u64) {
        self.issued = self.issued.max(seq);
    }

    /// How far this server holds `origin`'s events, counting its own events sent but still
    /// being committed.
    fn held(&self, origin: &str) -> u64 {
        let stored = self.vv.get(origin);
        if origin == self.me {
            stored.max(self.issued)
        } else {
            stored
        }
    }

    /// This server committed its own events up to `seq` (publish them on `replica` now).
    pub fn on_own_commit(&mut self, now: Instant, seq: u64) {
        self.vv.set(&self.me.clone(), seq);
        self.waiting.push_back(Waiting {
            seq,
            deadline: now + self.cfg.ack_timeout,
        });
        self.release(now);
    }

    /// `peer` holds our events up to `seq`.
    ///
    /// A suspect peer is trusted again once it holds everything this server held when the peer
    /// fell from trust (or joined): it has caught up with what it missed and is acking again.
    /// Asking for the very latest write instead would, under a steady stream of writes, leave
    /// a healthy peer suspect for as long as the stream lasts, since an ack always trails.
    pub fn on_ack(&mut self, now: Instant, peer: &str, seq: u64) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.acked = p.acked.max(seq);
            if p.suspect && p.acked >= p.mark {
                p.suspect = false;
            }
        }
        self.release(now);
    }

    fn release(&mut self, now: Instant) {
        let mut upto = None;
        while let Some(w) = self.waiting.front().copied() {
            let all_acked = self.peers.values().all(|p| p.suspect || p.acked >= w.seq);
            if !all_acked && now < w.deadline {
                break;
            }
            if !all_acked {
                let mine = self.vv.get(&self.me);
                for p in self
                    .peers
                    .values_mut()
                    .filter(|p| !p.suspect && p.acked < w.seq)
                {
                    p.suspect = true;
                    p.mark = mine;
                }
            }
            self.waiting.pop_front();
            upto = Some(w.seq);
        }
        if let Some(upto) = upto {
            self.released = self.released.max(upto);
            self.actions.push_back(Action::Release { upto });
        }
    }

    // ---- others' events ----

    /// Events of `origin` arrived (published or fetched), with these sequence numbers in the
    /// order given. Returns, for each, whether to store it: only the next one in line is taken.
    /// A gap starts a fetch from `from`.
    pub fn offer(&mut self, now: Instant, from: &str, origin: &str, seqs: &[u64]) -> Vec<bool> {
        // Our own events come back only from a fetch after we lost them (say, a new disk, or a
        // crash between sending a batch and committing it): they are taken like anyone's, in
        // order, so the server recovers its own history; never those it still has in hand.
        let base = self.held(origin);
        let mut next = base + 1;
        let mut gap = false;
        let take = seqs
            .iter()
            .map(|&s| {
                if s == next {
                    next += 1;
                    true
                } else {
                    gap |= s > next;
                    false
                }
            })
            .collect();
        if next - 1 > base {
            self.vv.set(origin, next - 1);
            if origin == self.me {
                self.issued = next - 1;
            }
        }
        if gap && from != self.me {
            // Remember how far the refused events reach, so that a fetch already in flight
            // (answered before its peer had them) does not leave the gap open until the next
            // batch or comparison.
            if let Some(&top) = seqs.iter().max() {
                let slot = self
                    .beyond
                    .entry(origin.to_owned())
                    .or_insert((0, String::new()));
                if top > slot.0 {
                    *slot = (top, from.to_owned());
                }
            }
            if !self.fetching_now(now, origin) {
                self.fetch(now, from, origin);
            }
        }
        if self
            .beyond
            .get(origin)
            .is_some_and(|(top, _)| self.held(origin) >= *top)
        {
            self.beyond.remove(origin);
        }
        take
    }

    /// The events taken by [`Replication::offer`] are durable: acknowledge them to their origins.
    pub fn on_stored(&mut self, origins: impl IntoIterator<Item = String>) {
        for origin in origins {
            if origin != self.me && self.peers.contains_key(&origin) {
                let seq = self.vv.get(&origin);
                self.actions.push_back(Action::Ack { peer: origin, seq });
            }
        }
    }

    /// `peer`'s version vector.
    pub fn on_vector(&mut self, now: Instant, peer: &str, theirs: &VersionVector) {
        for (origin, seq) in theirs.iter() {
            if seq > self.held(origin) && !self.fetching_now(now, origin) {
                self.fetch(now, peer, origin);
            }
        }
        // What we hold of our own events, the peer acknowledges by having it.
        let mine = theirs.get(&self.me);
        self.on_ack(now, peer, mine);
        self.check_startup(peer, theirs);
    }

    /// A fetch from `peer` answered: the events taken (see [`Replication::offer`]) are being
    /// stored; `more` says whether the peer has more after them.
    pub fn on_fetched(&mut self, now: Instant, peer: &str, origin: &str, more: bool) {
        self.fetching.remove(origin);
        if more {
            self.fetch(now, peer, origin);
            return;
        }
        if let Some((top, from)) = self.beyond.get(origin).cloned() {
            if self.held(origin) < top {
                // The peer answered before it had what was refused: ask the one that offered it.
                let from = if self.peers.contains_key(&from) {
                    from
                } else {
                    peer.to_owned()
                };
                self.fetch(now, &from, origin);
                return;
            }
            self.beyond.remove(origin);
        }
        if self.fetching.is_empty() {
            // Holding all that start-up peers had: compare with them at once rather than at
            // the next periodic exchange, so a restarted server takes clients sooner.
            let ready: Vec<String> = self
                .startup
                .iter()
                .flatten()
                .filter(|(p, seen)| {
                    self.peers.contains_key(*p) && seen.as_ref().is_some_and(|v| self.vv.covers(v))
                })
                .map(|(p, _)| p.clone())
                .collect();
            self.actions
                .extend(ready.into_iter().map(|peer| Action::AskVector { peer }));
        }
    }

    /// A fetch failed (timed out, refused): forget it, so the next comparison asks again.
    pub fn on_fetch_failed(&mut self, origin: &str) {
        self.fetching.remove(origin);
    }

    /// Whether a fetch of `origin` is in flight and not yet overdue at `now` (an overdue one
    /// is asked again at once, not only after the next `handle_timeout`).
    fn fetching_now(&self, now: Instant, origin: &str) -> bool {
        self.fetching
            .get(origin)
            .is_some_and(|(_, until)| *until > now)
    }

    fn fetch(&mut self, now: Instant, peer: &str, origin: &str) {
        self.fetching.insert(
            origin.to_owned(),
            (peer.to_owned(), now + self.cfg.fetch_timeout),
        );
        self.actions.push_back(Action::Fetch {
            peer: peer.to_owned(),
            origin: origin.to_owned(),
            after: self.held(origin),
            limit: self.cfg.page,
        });
    }

    /// A start-up peer is matched once we hold all it held when it last told us.
    fn check_startup(&mut self, peer: &str, theirs: &VersionVector) {
        let covered = self.vv.covers(theirs);
        if let Some(s) = self.startup.as_mut() {
            if covered {
                s.remove(peer);
            } else if let Some(slot) = s.get_mut(peer) {
                *slot = Some(theirs.clone());
            }
        }
    }

    // ---- time ----

    /// When [`Replication::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let fetch = self.fetching.values().map(|(_, t)| *t).min();
        [
            self.waiting.front().map(|w| w.deadline),
            self.next_sync,
            fetch,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Moves time forward: ack deadlines, periodic comparisons, stuck fetches.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.release(now);
        self.fetching.retain(|_, (_, t)| *t > now);
        if self.next_sync.is_some_and(|t| now >= t) {
            self.next_sync = Some(now + self.cfg.sync_every);
            let pending: Vec<String> = self
                .startup
                .iter()
                .flatten()
                .map(|(p, _)| p)
                .filter(|p| self.peers.contains_key(*p))
                .cloned()
                .collect();
            if !pending.is_empty() {
                // Until caught up with everyone found at start-up, ask them all each time.
                self.actions
                    .extend(pending.into_iter().map(|peer| Action::AskVector { peer }));
            } else if !self.peers.is_empty() {
                let peer = self
                    .peers
                    .keys()
                    .nth(self.sync_turn % self.peers.len())
                    .cloned();
                self.sync_turn += 1;
                self.actions
                    .extend(peer.map(|peer| Action::AskVector { peer }));
            }
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found on the simulated network: a batch refused (after a gap) while a fetch of its
    /// origin was in flight stayed missing until the next batch or comparison (up to a
    /// second), past the origin's ack deadline, when the fetch's answer came from before the
    /// peer had it.
    #[test]
    fn a_gap_refused_during_a_fetch_is_fetched_when_that_fetch_ends_short_of_it() {
        let t0 = Instant::now();
        let mut r = Replication::new("s3", VersionVector::new(), Config::default());
        r.set_peers(t0, ["s1".to_owned(), "s2".to_owned()]);
        while r.poll_action().is_some() {}
        assert_eq!(r.offer(t0, "s1", "s1", &[2]), [false]);
        assert!(matches!(
            r.poll_action(),
            Some(Action::Fetch { after: 0, .. })
        ));
        assert_eq!(r.offer(t0, "s1", "s1", &[1]), [true]);
        assert_eq!(
            r.offer(t0, "s1", "s1", &[3]),
            [false],
            "a gap: 2 is missing"
        );
        assert_eq!(r.poll_action(), None, "a fetch is in flight already");
        // The fetch's answer carries 1 and 2 (1 already held), and nothing more.
        assert_eq!(r.offer(t0, "s1", "s1", &[1, 2]), [false, true]);
        r.on_fetched(t0, "s1", "s1", false);
        assert_eq!(
            r.poll_action(),
            Some(Action::Fetch {
                peer: "s1".into(),
                origin: "s1".into(),
                after: 2,
                limit: Config::default().page,
            }),
            "3 is fetched at once"
        );
        assert_eq!(r.offer(t0, "s1", "s1", &[3]), [true]);
        r.on_fetched(t0, "s1", "s1", false);
        assert_eq!(r.vector().get("s1"), 3);
        assert_eq!(
            r.poll_action(),
            None,
            "the gap is closed: nothing more to fetch"
        );
    }

    /// Found under load: batches go to the peers while the origin commits them, so a peer's
    /// vector could show the origin's own events before its disk did; it fetched them back,
    /// stored them, and its own commit of the same events then failed (a UNIQUE conflict).
    #[test]
    fn own_events_sent_but_not_yet_committed_are_never_taken_back_from_a_peer() {
        let t0 = Instant::now();
        let held: VersionVector = [("s1".to_owned(), 10)].into_iter().collect();
        let mut r = Replication::new("s1", held, Config::default());
        r.set_peers(t0, ["s2".to_owned()]);
        while r.poll_action().is_some() {}
        r.on_own_sent(12);
        let theirs: VersionVector = [("s1".to_owned(), 12)].into_iter().collect();
        r.on_vector(t0, "s2", &theirs);
        assert!(
            !std::iter::from_fn(|| r.poll_action()).any(|a| matches!(a, Action::Fetch { .. })),
            "nothing to fetch: 11 and 12 are being committed here"
        );
        assert_eq!(r.offer(t0, "s2", "s1", &[11, 12]), [false, false]);
        // After a crash, a new instance starts from the disk, and takes them back.
        let mut again = Replication::new(
            "s1",
            [("s1".to_owned(), 10)].into_iter().collect(),
            Config::default(),
        );
        again.set_peers(t0, ["s2".to_owned()]);
        while again.poll_action().is_some() {}
        again.on_vector(t0, "s2", &theirs);
        assert!(matches!(
            again.poll_action(),
            Some(Action::Fetch { after: 10, .. })
        ));
        assert_eq!(again.offer(t0, "s2", "s1", &[11, 12]), [true, true]);
        assert_eq!(again.vector().get("s1"), 12);
    }
}
