//! The most recent client request ids and the event each made: how a retried write is
//! recognised. A server consults this for every write and updates it for every event, its own
//! and its peers', so it is kept lean: a request id is held as a 128-bit fingerprint (SipHash
//! with keys secret to this process, so nobody can make two ids collide on purpose, and an
//! accidental collision among 100,000 ids has odds of about 10⁻²⁹), and an event's origin as
//! an index into the few origins there are, so that remembering allocates nothing.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use palaver_store::{Event, RequestEvent};

pub(crate) struct Recent {
    keys: (RandomState, RandomState),
    made: HashMap<u128, Made, Prehashed>,
    /// The origins seen, indexed by `Made::origin`.
    origins: Vec<String>,
    /// Oldest first.
    order: VecDeque<u128>,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            keys: (RandomState::new(), RandomState::new()),
            made: HashMap::with_capacity_and_hasher(capacity + 1, Prehashed),
            origins: Vec::new(),
            order: VecDeque::with_capacity(capacity + 1),
            capacity,
        }
    }

    fn fingerprint(&self, request: &str) -> u128 {
        (u128::from(self.keys.0.hash_one(request)) << 64)
            | u128::from(self.keys.1.hash_one(request))
    }

    fn made(&mut self, origin: &str, seq: u64, lamport: u64) -> Made {
        let origin = match self.origins.iter().position(|o| o == origin) {
            Some(i) => i,
            None => {
                self.origins.push(origin.to_owned());
                self.origins.len() - 1
            }
        };
        Made {
            origin,
            seq,
            lamport,
        }
    }

    pub fn get(&self, request: &str) -> Option<RequestEvent> {
        let m = self.made.get(&self.fingerprint(request))?;
        Some(RequestEvent {
            origin: self.origins[m.origin].clone(),
            seq: m.seq,
            lamport: m.lamport,
        })
    }

    /// Whether `request` is known to have made exactly `e`.
    pub fn made_by(&self, request: &str, e: &Event) -> bool {
        self.made.get(&self.fingerprint(request)).is_some_and(|m| {
            self.origins[m.origin] == e.origin && m.seq == e.seq && m.lamport == e.lamport
        })
    }

    /// Records which event `request` made, forgetting the oldest beyond the capacity.
    pub fn remember(&mut self, request: &str, made: &RequestEvent) {
        self.insert(request, &made.origin, made.seq, made.lamport);
    }

    /// Records that `request` made `e`, as [`Recent::remember`].
    pub fn remember_event(&mut self, request: &str, e: &Event) {
        self.insert(request, &e.origin, e.seq, e.lamport);
    }

    fn insert(&mut self, request: &str, origin: &str, seq: u64, lamport: u64) {
        let key = self.fingerprint(request);
        let made = self.made(origin, seq, lamport);
        if self.made.insert(key, made).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.made.remove(&old);
            }
        }
    }

    /// Says that `request` made `made` after all, keeping its place in the order.
    pub fn replace(&mut self, request: &str, made: &RequestEvent) {
        let key = self.fingerprint(request);
        let made = self.made(&made.origin, made.seq, made.lamport);
        if let Some(slot) = self.made.get_mut(&key) {
            *slot = made;
        }
    }

    pub fn clear(&mut self) {
        self.made.clear();
        self.order.clear();
    }
}

/// An event, its origin as an index into `Recent::origins`.
struct Made {
    origin: usize,
    seq: u64,
    lamport: u64,
}

/// The keys are fingerprints already: hashing them again would only cost time.
#[derive(Clone, Copy, Default)]
struct Prehashed;

impl BuildHasher for Prehashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed here (see `write_u128`); anything else still spreads.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(seq: u64) -> RequestEvent {
        RequestEvent {
            origin: "s1".into(),
            seq,
            lamport: seq,
        }
    }

    #[test]
    fn remembers_the_latest_and_forgets_the_oldest() {
        let mut r = Recent::new(3);
        for i in 1..=4 {
            r.remember(&format!("req-{i}"), &made(i));
        }
        assert!(r.get("req-1").is_none());
        assert_eq!(r.get("req-2"), Some(made(2)));
        let event = |seq| Event {
            origin: "s1".into(),
            seq,
            lamport: seq,
            timestamp: 0.0,
            kind: palaver_store::EventKind::Account(palaver_store::AccountKind::Login {
                user: palaver_proto::Name::parse("ana").unwrap(),
            }),
            request: None,
        };
        assert!(r.made_by("req-2", &event(2)) && !r.made_by("req-2", &event(3)));
        assert_eq!(r.get("req-4"), Some(made(4)));
        r.replace("req-2", &made(9));
        assert_eq!(r.get("req-2"), Some(made(9)));
        // Remembering again keeps the first place in the order.
        r.remember("req-2", &made(2));
        r.remember("req-5", &made(5));
        assert!(r.get("req-2").is_none());
        assert!(r.get("req-3").is_some());
        r.clear();
        assert!(r.get("req-5").is_none());
    }
}
