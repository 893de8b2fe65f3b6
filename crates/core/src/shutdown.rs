use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that asks a process's loops to finish. Cloning shares the flag; loops check it at
/// least every poll interval, so a stop takes effect within one interval.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
