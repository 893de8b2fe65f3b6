//! Requests in flight, matched to their replies by correlation id, each with its own deadline.
//!
//! ```text
//!  send:    insert(now, what) ──▶ cid (carried in the request, echoed in the reply)
//!  reply:   on_reply(cid)     ──▶ Matched(what) | Unknown (late, or never asked: drop it)
//!  time:    expire(now)       ──▶ the requests whose deadline passed
//! ```
//!
//! Replies may come in any order (a peer answers a fetch at once and a prepare after an
//! fsync): each is matched by its id, never by arrival order. A reply without an id (a peer of
//! another implementation, answering in order like a REP socket) takes the oldest request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A request in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight<K> {
    pub what: K,
    pub sent: Instant,
    pub deadline: Instant,
}

/// What a reply turned out to answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Matched<K> {
    /// The request it answers, now no longer in flight.
    Request(InFlight<K>),
    /// Nothing in flight: a reply that came after its request timed out, a repeat, or one
    /// that answers nothing this side sent. Drop it (and count it).
    Unknown,
}

/// The requests in flight to one peer.
#[derive(Debug, Clone)]
pub struct Pending<K> {
    timeout: Duration,
    next_cid: u64,
    /// By id: ids rise with every send, so the first entry is the oldest request.
    waiting: BTreeMap<u64, InFlight<K>>,
}

impl<K> Pending<K> {
    /// Requests time out `timeout` after they are sent.
    pub fn new(timeout: Duration) -> Pending<K> {
        Pending {
            timeout,
            next_cid: 1,
            waiting: BTreeMap::new(),
        }
    }

    /// A request sent at `now`; returns the id to carry in it.
    pub fn insert(&mut self, now: Instant, what: K) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 1;
        self.waiting.insert(
            cid,
            InFlight {
                what,
                sent: now,
                deadline: now + self.timeout,
            },
        );
        cid
    }

    /// Takes back the request just inserted, which could not be sent after all.
    pub fn cancel(&mut self, cid: u64) -> Option<K> {
        self.waiting.remove(&cid).map(|f| f.what)
    }

    /// A reply arrived carrying `cid` (or none).
    pub fn on_reply(&mut self, cid: Option<u64>) -> Matched<K> {
        let found = match cid {
            Some(cid) => self.waiting.remove(&cid),
            None => self.waiting.pop_first().map(|(_, f)| f),
        };
        found.map_or(Matched::Unknown, Matched::Request)
    }

    /// Removes and returns the requests whose deadline is at or before `now`, oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<InFlight<K>> {
        let overdue: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(cid, _)| *cid)
            .collect();
        overdue
            .into_iter()
            .filter_map(|cid| self.waiting.remove(&cid))
            .collect()
    }

    /// The earliest deadline of a request in flight.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting.values().map(|f| f.deadline).min()
    }

    /// How many requests in flight satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&K) -> bool) -> usize {
        self.waiting.values().filter(|f| pred(&f.what)).count()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Forgets every request in flight (say, the connection was replaced), returning them.
    pub fn drain(&mut self) -> Vec<InFlight<K>> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn late_and_out_of_order_replies_each_find_their_own_request() {
        let t0 = Instant::now();
        let mut p = Pending::new(ms(500));
        let fetch = p.insert(t0, "fetch");
        let prepare = p.insert(t0 + ms(1), "prepare");
        let ping = p.insert(t0 + ms(2), "ping");
        // The ping is answered first, then the fetch; the prepare waits for an fsync.
        assert!(matches!(p.on_reply(Some(ping)), Matched::Request(f) if f.what == "ping"));
        assert!(matches!(p.on_reply(Some(fetch)), Matched::Request(f) if f.what == "fetch"));
        assert_eq!(p.deadline(), Some(t0 + ms(501)));
        // A repeat of a reply already taken, and an id never sent, match nothing.
        assert_eq!(p.on_reply(Some(ping)), Matched::Unknown);
        assert_eq!(p.on_reply(Some(999)), Matched::Unknown);
        // The prepare's reply comes late, after its deadline: it timed out, and the late reply
        // is unknown rather than taken for another request.
        let late = p.insert(t0 + ms(400), "ping again");
        let expired = p.expire(t0 + ms(501));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].what, "prepare");
        assert_eq!(p.on_reply(Some(prepare)), Matched::Unknown);
        assert!(matches!(p.on_reply(Some(late)), Matched::Request(f) if f.what == "ping again"));
        assert!(p.is_empty());
    }

    #[test]
    fn a_reply_without_an_id_takes_the_oldest_request() {
        let t0 = Instant::now();
        let mut p = Pending::new(ms(100));
        p.insert(t0, 1);
        p.insert(t0, 2);
        assert!(matches!(p.on_reply(None), Matched::Request(f) if f.what == 1));
        assert!(matches!(p.on_reply(None), Matched::Request(f) if f.what == 2));
        assert_eq!(p.on_reply(None), Matched::Unknown);
    }

    #[test]
    fn each_request_has_its_own_deadline() {
        let t0 = Instant::now();
        let mut p = Pending::new(ms(100));
        p.insert(t0, "a");
        let b = p.insert(t0 + ms(50), "b");
        assert!(p.expire(t0 + ms(99)).is_empty());
        assert_eq!(p.expire(t0 + ms(100)).len(), 1);
        assert_eq!(p.deadline(), Some(t0 + ms(150)));
        assert_eq!(p.count(|k| *k == "b"), 1);
        assert_eq!(p.cancel(b), Some("b"));
        assert!(p.is_empty() && p.deadline().is_none());
    }
}
