//! Palaver's sans-IO core: the logic of clocks and coordination as plain state machines.
//!
//! Nothing here touches a socket, a thread, a database or the wall clock; drivers feed inputs
//! (with the time, where it matters) and carry out what comes back. That keeps every algorithm
//! testable on simulated time.

mod lamport;
mod shutdown;

pub use lamport::Lamport;
pub use shutdown::Shutdown;
