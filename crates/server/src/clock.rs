/// The server's physical clock: the machine's clock (read by the driver, and handed in with
/// every input), a deliberate skew (for demonstrations and tests) and the correction that
/// Berkeley synchronisation has applied. Every timestamp the server emits reads this clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhysicalClock {
    /// Seconds added on purpose (`--clock-skew-ms`), never changed by synchronisation.
    skew: f64,
    /// Seconds of correction applied so far.
    offset: f64,
}

impl PhysicalClock {
    pub fn with_skew(skew_secs: f64) -> PhysicalClock {
        PhysicalClock {
            skew: skew_secs,
            offset: 0.0,
        }
    }

    /// The corrected time, seconds since the Unix epoch, when the machine's clock reads
    /// `machine`.
    pub fn at(&self, machine: f64) -> f64 {
        machine + self.skew + self.offset
    }

    /// Shifts the clock by `delta` seconds (a Berkeley correction or an operator's shift). The
    /// clock steps; it does not slew.
    pub fn adjust(&mut self, delta: f64) {
        if delta.is_finite() {
            self.offset += delta;
        }
    }

    pub fn skew(&self) -> f64 {
        self.skew
    }

    pub fn offset(&self) -> f64 {
        self.offset
    }
}
