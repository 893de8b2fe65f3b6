/// A Lamport logical clock.
///
/// Call [`Lamport::tick`] before every send and stamp the message with what it returns; call
/// [`Lamport::observe`] with the counter of every message received. Then whatever a process had
/// seen when it sent a message has a smaller counter than the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lamport {
    counter: u64,
}

impl Lamport {
    /// A clock that resumes from `counter` (say, the largest value found on disk).
    pub fn starting_at(counter: u64) -> Lamport {
        Lamport { counter }
    }

    /// Advances the clock for a send (or a local event) and returns the new value.
    pub fn tick(&mut self) -> u64 {
        self.counter = self.counter.saturating_add(1);
        self.counter
    }

    /// Takes in the counter of a received message: the clock becomes the larger of the two.
    pub fn observe(&mut self, received: u64) {
        self.counter = self.counter.max(received);
    }

    /// The clock to stamp an answer with: a tick for an answer, the clock as it is for a
    /// refusal, which is no event and leaves every clock where it was.
    pub fn for_answer(&mut self, refused: bool) -> u64 {
        if refused {
            self.counter
        } else {
            self.tick()
        }
    }

    /// The current value, without advancing.
    pub fn now(&self) -> u64 {
        self.counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_sort_after_what_was_seen() {
        let mut a = Lamport::default();
        let mut b = Lamport::default();
        let m1 = a.tick();
        b.observe(m1);
        let m2 = b.tick();
        assert!(m2 > m1);
        a.observe(2);
        assert_eq!(a.now(), 2);
        a.observe(1);
        assert_eq!(a.now(), 2, "observing an older clock never goes back");
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let mut c = Lamport::starting_at(u64::MAX);
        assert_eq!(c.tick(), u64::MAX);
    }
}
