use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A Lamport clock shared by a process's sockets and threads.
#[derive(Debug, Clone, Default)]
pub struct SharedClock(Arc<AtomicU64>);

impl SharedClock {
    pub fn new() -> SharedClock {
        SharedClock::default()
    }

    /// Advances for a send and returns the value to stamp on the message.
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst).saturating_add(1)
    }

    /// Takes in the counter of a received message.
    pub fn observe(&self, received: u64) {
        self.0.fetch_max(received, Ordering::SeqCst);
    }

    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_back() {
        let c = SharedClock::new();
        assert_eq!(c.tick(), 1);
        c.observe(10);
        c.observe(3);
        assert_eq!(c.now(), 10);
        assert_eq!(c.tick(), 11);
    }
}
