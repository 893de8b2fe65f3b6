//! The broker's policy: which server takes a request, when a server counts as gone, and what
//! happens to the requests it held. The broker around it only moves frames.
//!
//! ```text
//!  server: beat(window) every 250 ms ──▶ live; silent for `silence` (or leave) ──▶ gone:
//!          its requests go back to the front of the queue, for another server
//!  client: submit(request) ──▶ queue ──▶ dispatch: the live server with the fewest requests
//!          in flight (and room in its window), round robin among equals
//!  server: reply(token) ──▶ the request, once; a late or second reply ──▶ nothing (dropped)
//! ```
//!
//! Every request is known by a token that the broker gives it; servers carry it in their reply
//! and take it as the request's id when the client gave none, so a request sent again to a
//! second server takes effect once. A client that sends a request again (same connection, same
//! request id) while the first copy is still held, waiting or at a server, is answered by the
//! first copy: the copy is dropped, so no second server makes a second event of it while the
//! first one's is on its way. The queue is bounded in requests and in bytes; a request
//! that finds it full is refused at once, and one that waits longer than `queue_deadline` for
//! any server is given back to be answered with an error.
//!
//! The same machine, like the rest of this crate, is tested on simulated time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How the broker balances.
#[derive(Debug, Clone)]
pub struct Config {
    /// A server unheard of for this long is gone.
    pub silence: Duration,
    /// Requests waiting for a server, at most.
    pub max_queued: usize,
    /// Bytes held (waiting and in flight), at most.
    pub max_bytes: usize,
    /// How long a request may wait for a server before it is refused.
    pub queue_deadline: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            silence: Duration::from_millis(900),
            max_queued: 10_000,
            max_bytes: 256 << 20,
            queue_deadline: Duration::from_secs(10),
        }
    }
}

/// What changed among the servers, for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<S> {
    /// A server beat for the first time (or again, after it was gone).
    Joined(S),
    /// A server went silent or left; `requeued` of its requests go to the others.
    Lost { server: S, requeued: usize },
}

/// Counters for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent again because their server went away.
    pub resent: u64,
    /// Replies that answered nothing (late, repeated, or from the wrong server): dropped.
    pub late: u64,
    /// Requests refused because the queue was full.
    pub busy: u64,
    /// Requests that waited for a server past the deadline.
    pub expired: u64,
    /// Copies of a request still held (a client's retry), left for the first copy to answer.
    pub repeats: u64,
}

/// What became of a client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// It waits for a server under this token.
    Queued(u64),
    /// The same client sent it before and the first copy is still held: that one's answer
    /// answers both.
    Repeat,
}

struct Server<S> {
    id: S,
    window: usize,
    in_flight: usize,
    heard: Instant,
}

struct Entry<R> {
    request: R,
    bytes: usize,
    /// The server holding it, or `None` while it waits in the queue.
    server: Option<usize>,
    /// When it joined the queue (again).
    queued: Instant,
    /// Its client's key (see [`Balancer::submit_keyed`]).
    key: Option<Vec<u8>>,
}

/// The broker's state: servers, the queue, and the requests in flight.
pub struct Balancer<S, R> {
    config: Config,
    /// Server slots; a gone server's slot is reused.
    servers: Vec<Option<Server<S>>>,
    next_token: u64,
    entries: BTreeMap<u64, Entry<R>>,
    /// The tokens of held requests that came with a key.
    keys: HashMap<Vec<u8>, u64>,
    queue: VecDeque<u64>,
    bytes: usize,
    /// Where the round robin starts next.
    turn: usize,
    changes: Vec<Change<S>>,
    counts: Counts,
}

impl<S: Clone + PartialEq, R> Balancer<S, R> {
    /// A balancer whose tokens start at `first_token` (a random number, so that a restarted
    /// broker's tokens do not repeat the last one's).
    pub fn new(config: Config, first_token: u64) -> Balancer<S, R> {
        Balancer {
            config,
            servers: Vec::new(),
            next_token: first_token,
            entries: BTreeMap::new(),
            keys: HashMap::new(),
            queue: VecDeque::new(),
            bytes: 0,
            turn: 0,
            changes: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn slot(&self, id: &S) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| &s.id == id))
    }

    /// A server beat (or announced itself): it is live, and takes up to `window` requests at
    /// once.
    pub fn on_beat(&mut self, now: Instant, id: S, window: usize) {
        if let Some(i) = self.slot(&id) {
            if let Some(s) = self.servers[i].as_mut() {
                s.heard = now;
                s.window = window;
            }
            return;
        }
        self.changes.push(Change::Joined(id.clone()));
        let server = Server {
            id,
            window,
            in_flight: 0,
            heard: now,
        };
        match self.servers.iter().position(Option::is_none) {
            Some(i) => self.servers[i] = Some(server),
            None => self.servers.push(Some(server)),
        }
    }

    /// A server said it leaves (or could not be reached): its requests go to the others.
    pub fn on_leave(&mut self, now: Instant, id: &S) {
        if let Some(i) = self.slot(id) {
            self.lose(now, i);
        }
    }

    fn lose(&mut self, now: Instant, slot: usize) {
        let Some(server) = self.servers[slot].take() else {
            return;
        };
        // Its requests, oldest first, go ahead of everything that waits.
        let mine: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.server == Some(slot))
            .map(|(t, _)| *t)
            .collect();
        for t in mine.iter().rev() {
            if let Some(e) = self.entries.get_mut(t) {
                e.server = None;
                e.queued = now;
            }
            self.queue.push_front(*t);
        }
        self.counts.resent += mine.len() as u64;
        self.changes.push(Change::Lost {
            server: server.id,
            requeued: mine.len(),
        });
    }

    /// A client's request, of `bytes` bytes: its token.
    ///
    /// # Errors
    /// The request back, when the queue is full (in requests or in bytes): answer it as busy.
    pub fn submit(&mut self, now: Instant, request: R, bytes: usize) -> Result<u64, R> {
        self.enqueue(now, request, bytes, None)
    }

    /// A client's request that names itself by `key` (its client's connection and the
    /// request id the client gave it): while a request with the same key is held, this one is
    /// a [`Submitted::Repeat`] and is dropped, and the held one's answer answers the client.
    ///
    /// # Errors
    /// As [`Balancer::submit`].
    pub fn submit_keyed(
        &mut self,
        now: Instant,
        request: R,
        bytes: usize,
        key: Vec<u8>,
    ) -> Result<Submitted, R> {
        if self.keys.contains_key(&key) {
            self.counts.repeats += 1;
            return Ok(Submitted::Repeat);
        }
        self.enqueue(now, request, bytes, Some(key))
            .map(Submitted::Queued)
    }

    fn enqueue(
        &mut self,
        now: Instant,
        request: R,
        bytes: usize,
        key: Option<Vec<u8>>,
    ) -> Result<u64, R> {
        if self.queue.len() >= self.config.max_queued
            || self.bytes.saturating_add(bytes) > self.config.max_bytes
        {
            self.counts.busy += 1;
            return Err(request);
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.bytes += bytes;
        if let Some(k) = &key {
            self.keys.insert(k.clone(), token);
        }
        self.entries.insert(
            token,
            Entry {
                request,
                bytes,
                server: None,
                queued: now,
                key,
            },
        );
        self.queue.push_back(token);
        Ok(token)
    }

    /// Forgets a held request: answered, or given back.
    fn remove(&mut self, token: u64) -> Option<Entry<R>> {
        let e = self.entries.remove(&token)?;
        self.bytes -= e.bytes;
        if let Some(k) = &e.key {
            self.keys.remove(k);
        }
        Some(e)
    }

    /// A server answered `token`: the request, if that server held it. A reply to a request
    /// that was sent elsewhere since (the server had gone silent), or answered already, gives
    /// nothing: drop it.
    pub fn on_reply(&mut self, now: Instant, id: &S, token: u64) -> Option<R> {
        let slot = self.slot(id);
        if let Some(s) = slot.and_then(|i| self.servers[i].as_mut()) {
            s.heard = now;
        }
        match self.entries.get(&token) {
            Some(e) if e.server.is_some() && e.server == slot => {}
            _ => {
                self.counts.late += 1;
                return None;
            }
        }
        let e = self.remove(token)?;
        if let Some(s) = slot.and_then(|i| self.servers[i].as_mut()) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        Some(e.request)
    }

    /// Anything heard from a server counts as a beat (without changing its window).
    pub fn on_heard(&mut self, now: Instant, id: &S) {
        if let Some(s) = self.slot(id).and_then(|i| self.servers[i].as_mut()) {
            s.heard = now;
        }
    }

    /// Loses the servers that have been silent too long, and gives back the requests that
    /// waited past the deadline (answer each with an error).
    pub fn tick(&mut self, now: Instant) -> Vec<R> {
        for i in 0..self.servers.len() {
            let silent = self.servers[i]
                .as_ref()
                .is_some_and(|s| now.saturating_duration_since(s.heard) >= self.config.silence);
            if silent {
                self.lose(now, i);
            }
        }
        let mut expired = Vec::new();
        while let Some(t) = self.queue.front().copied() {
            let waited_long = self.entries.get(&t).is_none_or(|e| {
                now.saturating_duration_since(e.queued) >= self.config.queue_deadline
            });
            if !waited_long {
                break;
            }
            self.queue.pop_front();
            if let Some(e) = self.remove(t) {
                self.counts.expired += 1;
                expired.push(e.request);
            }
        }
        expired
    }

    /// The next request to send, and where: the live server with the fewest requests in
    /// flight and room in its window (round robin among equals). `None` when nothing waits or
    /// no server has room.
    pub fn dispatch(&mut self) -> Option<(S, u64, &R)> {
        let token = *self.queue.front()?;
        let n = self.servers.len();
        let mut best: Option<(usize, usize)> = None;
        for k in 0..n {
            let i = (self.turn + k) % n;
            if let Some(s) = &self.servers[i] {
                if s.in_flight < s.window && best.is_none_or(|(_, f)| s.in_flight < f) {
                    best = Some((i, s.in_flight));
                }
            }
        }
        let (slot, _) = best?;
        self.queue.pop_front();
        self.turn = (slot + 1) % n;
        let server = self.servers[slot].as_mut()?;
        server.in_flight += 1;
        let id = server.id.clone();
        let entry = self.entries.get_mut(&token)?;
        entry.server = Some(slot);
        Some((id, token, &entry.request))
    }

    /// When [`Balancer::tick`] has something to do next, if anything.
    pub fn deadline(&self) -> Option<Instant> {
        let silence = self
            .servers
            .iter()
            .flatten()
            .map(|s| s.heard + self.config.silence);
        let queued = self
            .queue
            .front()
            .and_then(|t| self.entries.get(t))
            .map(|e| e.queued + self.config.queue_deadline);
        silence.chain(queued).min()
    }

    /// What changed among the servers since the last call.
    pub fn take_changes(&mut self) -> Vec<Change<S>> {
        std::mem::take(&mut self.changes)
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Live servers.
    pub fn live(&self) -> usize {
        self.servers.iter().flatten().count()
    }

    /// Requests waiting for a server.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Requests sent to a server and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.entries.len() - self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = Balancer<&'static str, u32>;

    fn balancer() -> (B, Instant) {
        (Balancer::new(Config::default(), 100), Instant::now())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Dispatches everything it can: (server, token, request).
    fn sends(b: &mut B) -> Vec<(&'static str, u64, u32)> {
        let mut out = Vec::new();
        while let Some((s, t, r)) = b.dispatch() {
            out.push((s, t, *r));
        }
        out
    }

    #[test]
    fn requests_spread_over_live_servers_in_turn() {
        let (mut b, t0) = balancer();
        b.on_beat(t0, "s1", 10);
        b.on_beat(t0, "s2", 10);
        for r in 0..4 {
            b.submit(t0, r, 1).unwrap();
        }
        let s = sends(&mut b);
        let servers: Vec<_> = s.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(servers, ["s1", "s2", "s1", "s2"]);
        // Tokens are given in order from the first one.
        assert_eq!(
            s.iter().map(|x| x.1).collect::<Vec<_>>(),
            [100, 101, 102, 103]
        );
        assert_eq!(b.in_flight(), 4);
    }

    #[test]
    fn the_least_loaded_server_goes_first_and_windows_hold() {
        let (mut b, t0) = balancer();
        b.on_beat(t0, "s1", 2);
        for r in 0..2 {
            b.submit(t0, r, 1).unwrap();
        }
        sends(&mut b);
        b.on_beat(t0, "s2", 2);
        for r in 2..6 {
            b.submit(t0, r, 1).unwrap();
        }
        // s1 is full: s2 takes two, and the rest wait.
        let s = sends(&mut b);
        assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), ["s2", "s2"]);
        assert_eq!(b.queued(), 2);
        // An answer frees room on s1.
        assert_eq!(b.on_reply(t0, &"s1", 100), Some(0));
        assert_eq!(sends(&mut b), [("s1", 104, 4)]);
    }

    #[test]
    fn a_silent_server_is_lost_and_its_requests_go_elsewhere_once() {
        let (mut b, t0) = balancer();
        b.on_beat(t0, "s1", 10);
        b.on_beat(t0, "s2", 10);
        b.take_changes();
        for r in 0..4 {
            b.submit(t0, r, 1).unwrap();
        }
        sends(&mut b);
        // s2 keeps beating, s1 goes silent.
        let mut now = t0;
        for _ in 0..3 {
            now += ms(250);
            b.on_beat(now, "s2", 10);
            assert!(b.tick(now).is_empty());
        }
        assert_eq!(b.live(), 2, "750 ms of silence is not yet gone");
        now += ms(200);
        b.on_beat(now, "s2", 10);
        b.tick(now);
        assert_eq!(b.live(), 1);
        assert_eq!(
            b.take_changes(),
            [Change::Lost {
                server: "s1",
                requeued: 2
            }]
        );
        // Its two requests go to s2 with the same tokens, oldest first.
        assert_eq!(sends(&mut b), [("s2", 100, 0), ("s2", 102, 2)]);
        assert_eq!(b.counts().resent, 2);
        // s1 wakes and answers late: dropped. s2's answer counts, once.
        assert_eq!(b.on_reply(now, &"s1", 100), None);
        assert_eq!(b.on_reply(now, &"s2", 100), Some(0));
        assert_eq!(b.on_reply(now, &"s2", 100), None);
        assert_eq!(b.counts().late, 2);
        // s1 beats again: back in the rotation.
        b.on_beat(now, "s1", 10);
        assert_eq!(b.take_changes(), [Change::Joined("s1")]);
        b.submit(now, 9, 1).unwrap();
        assert_eq!(sends(&mut b)[0].0, "s1");
    }

    #[test]
    fn a_server_that_leaves_gives_back_its_requests_at_once() {
        let (mut b, t0) = balancer();
        b.on_beat(t0, "s1", 10);
        b.submit(t0, 7, 1).unwrap();
        sends(&mut b);
        b.on_leave(t0, &"s1");
        assert_eq!(b.queued(), 1);
        assert_eq!(b.dispatch().map(|x| x.1), None, "nobody to take it");
        b.on_beat(t0, "s2", 10);
        assert_eq!(sends(&mut b), [("s2", 100, 7)]);
    }

    #[test]
    fn the_queue_is_bounded_in_requests_and_bytes() {
        let config = Config {
            max_queued: 3,
            max_bytes: 100,
            ..Config::default()
        };
        let t0 = Instant::now();
        let mut b: B = Balancer::new(config, 0);
        for r in 0..3 {
            b.submit(t0, r, 10).unwrap();
        }
        assert_eq!(b.submit(t0, 3, 10), Err(3));
        b.on_beat(t0, "s1", 10);
        sends(&mut b);
        // In flight still counts against the bytes.
        assert_eq!(b.submit(t0, 4, 71), Err(4));
        assert!(b.submit(t0, 5, 70).is_ok());
        assert_eq!(b.counts().busy, 2);
        // Answers give the bytes back.
        for t in 0..3 {
            b.on_reply(t0, &"s1", t).unwrap();
        }
        assert!(b.submit(t0, 6, 30).is_ok());
    }

    #[test]
    fn requests_that_wait_past_the_deadline_are_given_back() {
        let (mut b, t0) = balancer();
        b.submit(t0, 1, 1).unwrap();
        b.submit(t0 + ms(5_000), 2, 1).unwrap();
        assert_eq!(b.deadline(), Some(t0 + ms(10_000)));
        assert_eq!(b.tick(t0 + ms(9_999)), Vec::<u32>::new());
        assert_eq!(b.tick(t0 + ms(10_000)), [1]);
        assert_eq!(b.queued(), 1);
        assert_eq!(b.counts().expired, 1);
        // A requeued request's wait starts again when its server is lost.
        b.on_beat(t0 + ms(10_000), "s1", 10);
        sends(&mut b);
        let lost = t0 + ms(10_000) + ms(900);
        b.tick(lost);
        assert_eq!(b.queued(), 1);
        assert_eq!(b.tick(lost + ms(9_000)), Vec::<u32>::new());
        assert_eq!(b.tick(lost + ms(10_000)), [2]);
    }

    /// Under overload a client's retry (same request id, 2.5 s on) went to a second server
    /// while the first copy still waited: two events, and every reader got the post twice.
    #[test]
    fn a_clients_retry_of_a_request_still_held_is_answered_by_the_first_copy() {
        let (mut b, t0) = balancer();
        let key = |client: &str, id: &str| format!("{client}/{id}").into_bytes();
        assert_eq!(
            b.submit_keyed(t0, 1, 1, key("c1", "r1")),
            Ok(Submitted::Queued(100))
        );
        // Waiting in the queue: the copy is dropped.
        assert_eq!(
            b.submit_keyed(t0, 2, 1, key("c1", "r1")),
            Ok(Submitted::Repeat)
        );
        // Another client's request with the same id is its own.
        assert_eq!(
            b.submit_keyed(t0, 3, 1, key("c2", "r1")),
            Ok(Submitted::Queued(101))
        );
        b.on_beat(t0, "s1", 10);
        b.on_beat(t0, "s2", 10);
        assert_eq!(sends(&mut b), [("s1", 100, 1), ("s2", 101, 3)]);
        // At a server: still dropped, and nothing more is sent.
        assert_eq!(
            b.submit_keyed(t0, 4, 1, key("c1", "r1")),
            Ok(Submitted::Repeat)
        );
        assert_eq!(sends(&mut b), []);
        assert_eq!(b.counts().repeats, 2);
        // The server holding it goes silent: the first copy goes elsewhere, and a retry
        // meanwhile is still the same request.
        b.on_leave(t0, &"s1");
        assert_eq!(
            b.submit_keyed(t0, 5, 1, key("c1", "r1")),
            Ok(Submitted::Repeat)
        );
        assert_eq!(sends(&mut b), [("s2", 100, 1)]);
        // Answered: a later copy is a new request (the servers know the id and answer it
        // without a second event).
        assert_eq!(b.on_reply(t0, &"s2", 100), Some(1));
        assert_eq!(b.on_reply(t0, &"s2", 101), Some(3));
        assert_eq!(
            b.submit_keyed(t0, 6, 1, key("c1", "r1")),
            Ok(Submitted::Queued(102))
        );
        // Given back unanswered: forgotten too.
        assert_eq!(b.tick(t0 + ms(10_000)), [6]);
        assert_eq!(
            b.submit_keyed(t0 + ms(10_000), 7, 1, key("c1", "r1")),
            Ok(Submitted::Queued(103))
        );
    }

    #[test]
    fn the_deadline_follows_the_quietest_server() {
        let (mut b, t0) = balancer();
        assert_eq!(b.deadline(), None);
        b.on_beat(t0, "s1", 1);
        b.on_beat(t0 + ms(100), "s2", 1);
        assert_eq!(b.deadline(), Some(t0 + ms(900)));
        b.on_heard(t0 + ms(300), &"s1");
        assert_eq!(b.deadline(), Some(t0 + ms(1_000)));
    }
}
