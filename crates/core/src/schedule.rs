//! When a server does its periodic duties: heartbeats and peer lists with the reference, and
//! Berkeley rounds (started by the coordinator, or asked of it by the others).
//!
//! ```text
//!  (now, inputs: ranked?, coordinator?, client requests, round started)
//!        ──▶ Schedule ──▶ duties: Heartbeat | AskRank | ListPeers | StartRound | AskSync
//!                        poll_timeout(): when to call handle_timeout next
//! ```
//!
//! The standard synchronises clocks every ten client requests; a quiet cluster does so at least
//! every few seconds, and rounds never start closer together than a minimum gap however busy
//! the cluster is.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The timings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often a server tells the reference it lives (the reference drops it after 3 s).
    pub heartbeat_every: Duration,
    /// How often a server asks the reference who is alive.
    pub list_every: Duration,
    /// A round every this many client requests (the standard's ten).
    pub sync_every_requests: u64,
    /// …and at least this often when the cluster is quiet.
    pub sync_quiet: Duration,
    /// Rounds (and requests for one) never closer together than this.
    pub sync_min_gap: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat_every: Duration::from_secs(1),
            list_every: Duration::from_secs(1),
            sync_every_requests: 10,
            sync_quiet: Duration::from_secs(3),
            sync_min_gap: Duration::from_millis(250),
        }
    }
}

/// What is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Ask the reference for a rank (this server has none yet).
    AskRank,
    /// Tell the reference this server lives.
    Heartbeat,
    /// Ask the reference who is alive.
    ListPeers,
    /// Start a Berkeley round (this server coordinates). The next is due a gap or a quiet
    /// interval after this one, whether or not it could start (one may still be running).
    StartRound,
    /// Ask the coordinator to start a round.
    AskSync,
}

/// One server's periodic duties.
#[derive(Debug)]
pub struct Schedule {
    timing: Timing,
    ranked: bool,
    coordinator: bool,
    next_heartbeat: Instant,
    next_list: Instant,
    last_round: Option<Instant>,
    last_sync_ask: Option<Instant>,
    requests: u64,
    duties: VecDeque<Duty>,
}

impl Schedule {
    /// Starts at `now`, with a rank request due at once.
    pub fn new(now: Instant, timing: Timing) -> Schedule {
        Schedule {
            timing,
            ranked: false,
            coordinator: false,
            next_heartbeat: now + timing.heartbeat_every,
            next_list: now,
            last_round: None,
            last_sync_ask: None,
            requests: 0,
            duties: VecDeque::from([Duty::AskRank]),
        }
    }

    /// The reference gave this server a rank (or forgot it: `false`). A new rank lists the
    /// peers at once.
    pub fn set_ranked(&mut self, now: Instant, ranked: bool) {
        if ranked && !self.ranked {
            self.next_list = now;
        }
        self.ranked = ranked;
    }

    /// Whether this server coordinates. A server that becomes coordinator starts a round at
    /// once.
    pub fn set_coordinator(&mut self, coordinator: bool) {
        if coordinator && !self.coordinator {
            self.last_round = None;
        }
        self.coordinator = coordinator;
    }

    /// `n` client requests were taken.
    pub fn on_client_requests(&mut self, now: Instant, n: u64) {
        self.requests += n;
        if self.requests < self.timing.sync_every_requests {
            return;
        }
        self.requests = 0;
        if self.coordinator {
            self.round_due(now);
        } else if self
            .last_sync_ask
            .is_none_or(|t| now >= t + self.timing.sync_min_gap)
        {
            self.last_sync_ask = Some(now);
            self.duties.push_back(Duty::AskSync);
        }
    }

    /// Another server asked for a round.
    pub fn on_sync_asked(&mut self, now: Instant) {
        if self.coordinator {
            self.round_due(now);
        }
    }

    fn round_due(&mut self, now: Instant) {
        let gap_passed = self
            .last_round
            .is_none_or(|t| now >= t + self.timing.sync_min_gap);
        if gap_passed {
            self.last_round = Some(now);
            self.duties.push_back(Duty::StartRound);
        }
    }

    /// When [`Schedule::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self.next_heartbeat;
        if self.ranked {
            at = at.min(self.next_list);
        }
        if self.coordinator {
            let round = self
                .last_round
                .map_or(self.next_heartbeat.min(self.next_list), |t| {
                    t + self.timing.sync_quiet
                });
            at = at.min(round);
        }
        at
    }

    /// Moves time to `now`: queues what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.timing.heartbeat_every;
            self.duties.push_back(if self.ranked {
                Duty::Heartbeat
            } else {
                Duty::AskRank
            });
        }
        if self.ranked && now >= self.next_list {
            self.next_list = now + self.timing.list_every;
            self.duties.push_back(Duty::ListPeers);
        }
        if self.coordinator
            && self
                .last_round
                .is_none_or(|t| now >= t + self.timing.sync_quiet)
        {
            self.round_due(now);
        }
    }

    /// The next duty, if any.
    pub fn poll_duty(&mut self) -> Option<Duty> {
        self.duties.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn duties(s: &mut Schedule) -> Vec<Duty> {
        std::iter::from_fn(|| s.poll_duty()).collect()
    }

    /// Runs the schedule from `t0` to `t0 + upto` on its own timeouts, collecting duties.
    fn run(s: &mut Schedule, t0: Instant, upto: Duration) -> Vec<(u128, Duty)> {
        let mut out = Vec::new();
        let mut now = t0;
        while now <= t0 + upto {
            s.handle_timeout(now);
            out.extend(duties(s).into_iter().map(|d| ((now - t0).as_millis(), d)));
            now = s.poll_timeout().max(now + ms(1));
        }
        out
    }

    #[test]
    fn an_unranked_server_asks_for_a_rank_every_heartbeat_then_beats_and_lists() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Timing::default());
        assert_eq!(duties(&mut s), [Duty::AskRank]);
        let early = run(&mut s, t0, ms(2_500));
        assert_eq!(early, [(1000, Duty::AskRank), (2000, Duty::AskRank)]);
        let t1 = t0 + ms(2_600);
        s.set_ranked(t1, true);
        s.handle_timeout(t1);
        assert_eq!(
            duties(&mut s),
            [Duty::ListPeers],
            "a new rank lists at once"
        );
        let later = run(&mut s, t1, ms(1_500));
        assert!(later.contains(&(400, Duty::Heartbeat)), "{later:?}");
        assert!(later.contains(&(1000, Duty::ListPeers)), "{later:?}");
        s.set_ranked(t1, false);
        s.handle_timeout(t1 + ms(2_400));
        assert_eq!(duties(&mut s), [Duty::AskRank], "forgotten: ask again");
    }

    #[test]
    fn a_coordinator_syncs_at_once_then_when_quiet_and_every_ten_requests() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Timing::default());
        s.set_ranked(t0, true);
        duties(&mut s);
        s.set_coordinator(true);
        s.handle_timeout(t0);
        let first = duties(&mut s);
        assert!(first.contains(&Duty::StartRound), "{first:?}");
        // Quiet: the next round three seconds later.
        let quiet: Vec<u128> = run(&mut s, t0 + ms(1), ms(3_500))
            .into_iter()
            .filter(|(_, d)| *d == Duty::StartRound)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(quiet, [2999], "3 s after the first (the run began 1 ms in)");
        // Busy: every ten requests, but never closer than the gap.
        let t1 = t0 + ms(10_000);
        s.handle_timeout(t1);
        assert_eq!(duties(&mut s).last(), Some(&Duty::StartRound));
        s.on_client_requests(t1 + ms(10), 10);
        assert!(
            duties(&mut s).is_empty(),
            "within the gap of the last round"
        );
        s.on_client_requests(t1 + ms(300), 9);
        assert!(duties(&mut s).is_empty(), "nine are not ten");
        s.on_client_requests(t1 + ms(301), 1);
        assert_eq!(duties(&mut s), [Duty::StartRound]);
        s.on_client_requests(t1 + ms(302), 10);
        assert!(duties(&mut s).is_empty(), "the round just asked for counts");
    }

    #[test]
    fn others_ask_the_coordinator_at_most_once_per_gap() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Timing::default());
        duties(&mut s);
        s.on_client_requests(t0, 10);
        assert_eq!(duties(&mut s), [Duty::AskSync]);
        s.on_client_requests(t0 + ms(100), 25);
        assert!(duties(&mut s).is_empty());
        s.on_client_requests(t0 + ms(260), 10);
        assert_eq!(duties(&mut s), [Duty::AskSync]);
        // A coordinator asked for a round starts one, not an ask of its own.
        s.set_coordinator(true);
        s.on_sync_asked(t0 + ms(300));
        assert_eq!(duties(&mut s), [Duty::StartRound]);
    }
}
