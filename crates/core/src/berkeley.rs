//! Berkeley clock synchronisation, without I/O.
//!
//! The coordinator asks every member for its clock. From each answer it estimates that
//! member's offset, allowing for the round trip: the answer was read, on average, half a round
//! trip before it arrived. It averages the offsets (its own, zero, included) while leaving out
//! outliers, and sends each member the correction that brings it to the average. The
//! coordinator corrects itself too.
//!
//! ```text
//!  sent ──────▶ member reads its clock: remote ──────▶ received        (coordinator's clock)
//!  offset ≈ remote + (received − sent) / 2 − received
//! ```
//!
//! With asymmetric delays the estimate is off by at most half the round trip, so after a round
//! two members' clocks differ by at most half the sum of their round trips. Answers slower than
//! [`Settings::max_rtt`] are not used at all.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::Member;

/// One member's answer, every time in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub member: Member,
    /// The coordinator's clock when it asked.
    pub sent: f64,
    /// The coordinator's clock when the answer arrived.
    pub received: f64,
    /// The member's clock, as it answered.
    pub remote: f64,
}

impl Sample {
    pub fn rtt(&self) -> f64 {
        self.received - self.sent
    }

    /// How far ahead of the coordinator the member's clock is estimated to be.
    pub fn offset(&self) -> f64 {
        self.remote + self.rtt() / 2.0 - self.received
    }
}

/// How a round judges its samples.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Answers whose round trip took longer (seconds) are too uncertain to use.
    pub max_rtt: f64,
    /// An offset further from the median than this many median absolute deviations is an
    /// outlier: it is corrected, but it does not move the average.
    pub outlier_mads: f64,
    /// …but never call anything within this many seconds of the median an outlier.
    pub outlier_floor: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_rtt: 0.25,
            outlier_mads: 3.0,
            outlier_floor: 0.05,
        }
    }
}

/// What a round decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Corrections {
    /// Seconds the coordinator adds to its own clock.
    pub own: f64,
    /// Seconds each member adds to its clock.
    pub members: Vec<(Member, f64)>,
    /// Members whose offsets were left out of the average as outliers.
    pub outliers: Vec<Member>,
    /// Members whose answers were too slow to use (they get no correction).
    pub too_slow: Vec<Member>,
}

/// Computes the corrections of one round from its samples.
pub fn corrections(samples: &[Sample], settings: &Settings) -> Corrections {
    let (usable, slow): (Vec<&Sample>, Vec<&Sample>) = samples
        .iter()
        .partition(|s| s.rtt() >= 0.0 && s.rtt() <= settings.max_rtt);
    // The coordinator's own offset is zero by definition.
    let mut offsets: Vec<f64> = usable.iter().map(|s| s.offset()).chain([0.0]).collect();
    offsets.sort_by(f64::total_cmp);
    let mid = median(&offsets);
    let mut deviations: Vec<f64> = offsets.iter().map(|o| (o - mid).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let limit = (settings.outlier_mads * median(&deviations)).max(settings.outlier_floor);
    let kept: Vec<f64> = offsets
        .iter()
        .copied()
        .filter(|o| (o - mid).abs() <= limit)
        .collect();
    let average = kept.iter().sum::<f64>() / kept.len() as f64;
    Corrections {
        own: average,
        members: usable
            .iter()
            .map(|s| (s.member.clone(), average - s.offset()))
            .collect(),
        outliers: usable
            .iter()
            .filter(|s| (s.offset() - mid).abs() > limit)
            .map(|s| s.member.clone())
            .collect(),
        too_slow: slow.iter().map(|s| s.member.clone()).collect(),
    }
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One round in progress at the coordinator: who has answered, and until when to wait.
#[derive(Debug)]
pub struct Round {
    deadline: Instant,
    waiting: BTreeSet<Member>,
    samples: Vec<Sample>,
}

impl Round {
    /// Starts a round that asks `members` and waits for them until `now + timeout`.
    pub fn new(
        now: Instant,
        members: impl IntoIterator<Item = Member>,
        timeout: Duration,
    ) -> Round {
        Round {
            deadline: now + timeout,
            waiting: members.into_iter().collect(),
            samples: Vec::new(),
        }
    }

    /// Records an answer; answers from members not asked, or twice, are ignored.
    pub fn on_sample(&mut self, sample: Sample) {
        if self.waiting.remove(&sample.member) {
            self.samples.push(sample);
        }
    }

    /// Whether every member answered or the time is up.
    pub fn is_done(&self, now: Instant) -> bool {
        self.waiting.is_empty() || now >= self.deadline
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The corrections, from the answers that came in.
    pub fn finish(self, settings: &Settings) -> Corrections {
        corrections(&self.samples, settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A member whose clock is `offset` ahead of the coordinator's, asked at coordinator time
    /// `t`, the request taking `there` and the answer `back` seconds.
    fn sample(name: &str, t: f64, offset: f64, there: f64, back: f64) -> Sample {
        Sample {
            member: Member::new(name, 1),
            sent: t,
            remote: t + there + offset,
            received: t + there + back,
        }
    }

    #[test]
    fn offsets_of_five_seconds_with_asymmetric_delays_are_corrected_within_half_a_round_trip() {
        let seed: u64 = rand::thread_rng().gen();
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..500 {
            let n = rng.gen_range(1..8);
            let truth: Vec<f64> = (0..n).map(|_| rng.gen_range(-5.0..5.0)).collect();
            let samples: Vec<Sample> = truth
                .iter()
                .enumerate()
                .map(|(i, &off)| {
                    sample(
                        &format!("m{i}"),
                        1000.0,
                        off,
                        rng.gen_range(0.0..0.05),
                        rng.gen_range(0.0..0.05),
                    )
                })
                .collect();
            let c = corrections(&samples, &Settings::default());
            assert_eq!(c.members.len(), n, "seed {seed}");
            // Each member's clock after correction, relative to the coordinator's before.
            let after: Vec<(f64, f64)> = samples
                .iter()
                .zip(&truth)
                .zip(&c.members)
                .map(|((s, off), (_, corr))| (off + corr, s.rtt()))
                .chain([(c.own, 0.0)])
                .collect();
            for (a, rtt_a) in &after {
                for (b, rtt_b) in &after {
                    let bound = (rtt_a + rtt_b) / 2.0 + 1e-9;
                    assert!(
                        (a - b).abs() <= bound,
                        "seed {seed}: {a} vs {b}, bound {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_outlier_is_corrected_but_does_not_drag_the_others() {
        let samples = vec![
            sample("a", 10.0, 0.010, 0.001, 0.001),
            sample("b", 10.0, -0.020, 0.001, 0.001),
            sample("c", 10.0, 0.005, 0.001, 0.001),
            sample("d", 10.0, 0.015, 0.001, 0.001),
            sample("far", 10.0, 60.0, 0.001, 0.001),
        ];
        let c = corrections(&samples, &Settings::default());
        assert_eq!(c.outliers, vec![Member::new("far", 1)]);
        assert!(
            c.own.abs() < 0.02,
            "the average stays with the crowd: {}",
            c.own
        );
        let far = c.members.iter().find(|(m, _)| m.name == "far").unwrap().1;
        assert!(
            (60.0 + far - c.own).abs() < 0.01,
            "the outlier is brought to the others"
        );
    }

    #[test]
    fn slow_answers_are_not_used() {
        let samples = vec![
            sample("a", 0.0, 1.0, 0.001, 0.001),
            sample("slow", 0.0, 3.0, 0.2, 0.2),
        ];
        let c = corrections(&samples, &Settings::default());
        assert_eq!(c.too_slow, vec![Member::new("slow", 1)]);
        assert_eq!(c.members.len(), 1);
        assert!((c.own - 0.5).abs() < 0.01);
    }

    #[test]
    fn a_round_waits_for_everyone_or_its_deadline() {
        let now = Instant::now();
        let mut round = Round::new(
            now,
            [Member::new("m0", 1), Member::new("m1", 1)],
            Duration::from_millis(100),
        );
        round.on_sample(sample("m0", 0.0, 1.0, 0.001, 0.001));
        round.on_sample(sample("m0", 0.0, 9.0, 0.001, 0.001));
        round.on_sample(sample("stranger", 0.0, 9.0, 0.001, 0.001));
        assert!(!round.is_done(now));
        assert!(round.is_done(now + Duration::from_millis(100)));
        let c = round.finish(&Settings::default());
        assert_eq!(c.members.len(), 1, "one answer, counted once");
    }
}
