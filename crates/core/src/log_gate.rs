use std::time::{Duration, Instant};

/// Lets a repeated log line through at most once per interval, and says how many were held
/// back since the last one: a failure that repeats thousands of times a second is logged
/// once a second with a count, instead of flooding the log.
#[derive(Debug, Clone)]
pub struct LogGate {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LogGate {
    pub fn new(every: Duration) -> LogGate {
        LogGate {
            every,
            last: None,
            held: 0,
        }
    }

    /// At most one line a second.
    pub fn every_second() -> LogGate {
        LogGate::new(Duration::from_secs(1))
    }

    /// Whether to log now: `Some(n)` with the number of lines held back since the last one
    /// logged, or `None` to stay quiet (the line is counted).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now < t + self.every) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut g = LogGate::every_second();
        assert_eq!(g.admit(t0), Some(0));
        for ms in 1..1000 {
            assert_eq!(g.admit(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(g.admit(t0 + Duration::from_secs(1)), Some(999));
        assert_eq!(g.admit(t0 + Duration::from_millis(1500)), None);
    }
}
