//! Limits on password work, so that a flood of logins cannot take a server down and a
//! password cannot be guessed at speed.
//!
//! ```text
//!  login / register / password / unregister ──▶ Backoff::check(name) ──▶ Budget::take ──▶ argon2
//!                                                     ▲                                   │
//!                                                     └──── failed(name) / succeeded ◀────┘
//! ```
//!
//! - [`Budget`]: a token bucket of argon2 hashes per second for the whole server. A request
//!   that finds it empty is refused at once (no work done), saying when to try again.
//! - [`Backoff`]: per name, the first [`FREE_FAILURES`] wrong passwords cost nothing; after
//!   that, each one locks the name for twice as long as the one before (1 s, 2 s, 4 s… up to
//!   [`MAX_LOCK`]), during which attempts are refused without hashing. A right password clears
//!   it; a name left alone for [`FORGET_AFTER`] starts afresh.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A token bucket: at most `rate` a second on average, `burst` at once.
#[derive(Debug, Clone)]
pub struct Budget {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    pub fn new(rate_per_sec: f64, burst: u32) -> Budget {
        let burst = f64::from(burst.max(1));
        Budget {
            rate: rate_per_sec.max(0.001),
            burst,
            tokens: burst,
            at: None,
        }
    }

    /// Takes one unit, or says how long until one is free.
    ///
    /// # Errors
    /// When the bucket is empty: the wait until it holds one again.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Wrong passwords a name may have before it is slowed down.
pub const FREE_FAILURES: u32 = 3;
/// The longest a name is locked after a wrong password.
pub const MAX_LOCK: Duration = Duration::from_secs(300);
/// A name with no wrong password for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// The most names remembered; past it, the longest-quiet are forgotten first.
pub const MAX_NAMES: usize = 100_000;

#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    until: Instant,
    last: Instant,
}

/// Wrong passwords per name, and the lock they earn.
#[derive(Debug, Clone)]
pub struct Backoff<K> {
    names: HashMap<K, Failures>,
}

impl<K> Default for Backoff<K> {
    fn default() -> Self {
        Backoff {
            names: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    /// Whether `name` may try a password now.
    ///
    /// # Errors
    /// While it is locked: how long the lock still lasts.
    pub fn check(&self, name: &K, now: Instant) -> Result<(), Duration> {
        match self.names.get(name) {
            Some(f) if f.count > FREE_FAILURES && now < f.until => Err(f.until - now),
            _ => Ok(()),
        }
    }

    /// A wrong password for `name`.
    pub fn failed(&mut self, name: &K, now: Instant) {
        if self.names.len() >= MAX_NAMES && !self.names.contains_key(name) {
            self.forget(now);
        }
        let f = self.names.entry(name.clone()).or_insert(Failures {
            count: 0,
            until: now,
            last: now,
        });
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count > FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES - 1).min(16);
            f.until = now + Duration::from_secs(1 << doublings).min(MAX_LOCK);
        }
    }

    /// A right password for `name`: its failures are forgotten.
    pub fn succeeded(&mut self, name: &K) {
        self.names.remove(name);
    }

    /// Drops the names quiet for [`FORGET_AFTER`]; if that is not enough, the quietest half.
    fn forget(&mut self, now: Instant) {
        self.names
            .retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
        if self.names.len() >= MAX_NAMES {
            let mut lasts: Vec<Instant> = self.names.values().map(|f| f.last).collect();
            lasts.sort_unstable();
            let cut = lasts[lasts.len() / 2];
            self.names.retain(|_, f| f.last > cut);
        }
    }

    /// Names remembered (for tests and status).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(2.0, 3);
        assert!((0..3).all(|_| b.take(t0).is_ok()), "the burst at once");
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take(t0 + Duration::from_millis(499)).is_err());
        assert!(b.take(t0 + Duration::from_millis(1000)).is_ok());
        // Never more than the burst, however long it waited.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.take(later).is_ok()).count(), 3);
    }

    #[test]
    fn wrong_passwords_lock_a_name_for_longer_and_longer() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..FREE_FAILURES {
            assert!(b.check(&"ana", t0).is_ok());
            b.failed(&"ana", t0);
        }
        assert!(b.check(&"ana", t0).is_ok(), "the first three are free");
        let mut locks = Vec::new();
        let mut now = t0;
        for _ in 0..12 {
            b.failed(&"ana", now);
            let lock = b.check(&"ana", now).unwrap_err();
            locks.push(lock.as_secs());
            now += lock;
            assert!(b.check(&"ana", now).is_ok(), "free once the lock ends");
        }
        assert_eq!(locks, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert!(b.check(&"bob", now).is_ok(), "other names are not touched");
        b.succeeded(&"ana");
        b.failed(&"ana", now);
        assert!(
            b.check(&"ana", now).is_ok(),
            "a right password starts afresh"
        );
        assert!(b.check(&"ana", now + FORGET_AFTER).is_ok());
    }

    #[test]
    fn the_names_remembered_are_bounded() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for i in 0..(MAX_NAMES + 10) {
            b.failed(&i, t0 + Duration::from_millis(i as u64));
        }
        assert!(b.len() <= MAX_NAMES);
        assert!(b.check(&(MAX_NAMES + 9), t0).is_ok());
    }
}
