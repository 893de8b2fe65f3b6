//! Pacing, IRC's "fakelag": a connection's requests to the cluster go out no faster than the
//! gateway's request rate allows, the rest held back in order until they may, instead of
//! going out at once and being refused by the gateway core. A client that pastes or scripts a
//! burst is slowed down, as an IRC server slows it, and loses nothing.
//!
//! The bucket is the gateway core's (`palaver_web::Rate`, full at first) less one token. The
//! core sees each request a little after it left here; that lag varies, and a core whose
//! bucket was full while it waited wastes the refill, so with the same bucket it could find
//! one token short where this one found one. The token held back covers a lag that varies by
//! up to a token's time (50 ms at 20 a second), so the core refuses nothing that pacing let
//! through.

use std::collections::VecDeque;
use std::time::Instant;

use palaver_web::gateway::Bucket;
use palaver_web::Rate;

/// Requests waiting for their turn, and the tokens to send them with.
#[derive(Debug)]
pub struct Pacer {
    /// The core's rate, less one token of its burst.
    rate: Rate,
    bucket: Bucket,
    held: VecDeque<String>,
}

impl Pacer {
    /// A pacer, with a full bucket, for a gateway core that allows `rate`.
    pub fn new(rate: Rate, now: Instant) -> Pacer {
        let rate = Rate {
            per_second: rate.per_second,
            burst: (rate.burst - 1.0).max(1.0),
        };
        Pacer {
            rate,
            bucket: Bucket::full(rate, now),
            held: VecDeque::new(),
        }
    }

    /// Adds `request` behind those held.
    pub fn push(&mut self, request: String) {
        self.held.push_back(request);
    }

    /// The requests that may go at `now`, in the order they came.
    pub fn ready(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while !self.held.is_empty() && self.bucket.take(now, self.rate) {
            out.extend(self.held.pop_front());
        }
        out
    }

    /// When the next held request may go, if one is held.
    pub fn next_at(&self) -> Option<Instant> {
        (!self.held.is_empty()).then(|| self.bucket.ready_at(self.rate))
    }

    /// How many requests are held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const RATE: Rate = Rate {
        per_second: 20.0,
        burst: 40.0,
    };

    fn requests(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}")).collect()
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_at_the_rate_in_order() {
        let t0 = Instant::now();
        let mut p = Pacer::new(RATE, t0);
        for r in requests(50) {
            p.push(r);
        }
        // The core allows 40 at once; one is kept in hand.
        assert_eq!(p.ready(t0), requests(39));
        assert_eq!(p.held(), 11);
        // One token comes back every 50 ms.
        let next = p.next_at().expect("some are held");
        assert_eq!(next - t0, Duration::from_millis(50));
        assert!(p.ready(next - Duration::from_millis(1)).is_empty());
        assert_eq!(p.ready(next), ["r39"]);
        assert_eq!(
            p.ready(t0 + Duration::from_millis(260)),
            ["r40", "r41", "r42", "r43"]
        );
        // Nothing lost or repeated: the rest go once time allows.
        let rest = p.ready(t0 + Duration::from_secs(10));
        assert_eq!(rest, ["r44", "r45", "r46", "r47", "r48", "r49"]);
        assert_eq!(p.next_at(), None);
    }

    #[test]
    fn the_bucket_refills_no_further_than_its_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(RATE, t0);
        for r in requests(39) {
            p.push(r);
        }
        assert_eq!(p.ready(t0).len(), 39);
        for r in requests(100) {
            p.push(r);
        }
        // An hour idle fills the bucket to 39, not 72,000.
        assert_eq!(p.ready(t0 + Duration::from_secs(3600)).len(), 39);
        assert_eq!(p.held(), 61);
    }

    #[test]
    fn what_the_pacer_lets_through_the_gateway_core_takes_whatever_the_lag() {
        // Regression: with the core's own bucket, a request that reached the core with less
        // lag than the one before it (the core's bucket had been full, and wasted the refill
        // while that one was on its way) was refused.
        let t0 = Instant::now();
        let mut pacer = Pacer::new(RATE, t0);
        // The core's own bucket.
        let mut core = Bucket::full(RATE, t0);
        let mut seen = t0;
        let mut sent = 0;
        for step in 0..5000u64 {
            let now = t0 + Duration::from_millis(step * 3);
            for r in requests(usize::try_from(step % 7).unwrap()) {
                pacer.push(r);
            }
            for _ in pacer.ready(now) {
                // The core sees it 0 to 40 ms later, in the order sent.
                let lag = Duration::from_millis((step * 7919) % 41);
                seen = seen.max(now + lag);
                assert!(core.take(seen, RATE), "refused at step {step}");
                sent += 1;
            }
        }
        assert!(sent > 200, "{sent}");
    }
}
