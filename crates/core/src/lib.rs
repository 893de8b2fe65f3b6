//! Palaver's sans-IO core: the logic of clocks and coordination as plain state machines.
//!
//! ```text
//!   (now, input) ──▶ state machine ──▶ actions for the driver (send this, announce that)
//! ```
//!
//! Nothing here touches a socket, a thread, a database or the wall clock; drivers feed inputs
//! with the time and carry out what comes back. That keeps every algorithm testable on
//! simulated time, with dropped, delayed and reordered messages.

pub mod balance;
pub mod berkeley;
pub mod claims;
pub mod commit;
pub mod election;
pub mod guard;
pub mod inbox;
mod lamport;
mod log_gate;
mod member;
pub mod membership;
pub mod pending;
pub mod presence;
pub mod replication;
pub mod schedule;
mod shutdown;

pub use lamport::Lamport;
pub use log_gate::LogGate;
pub use member::Member;
pub use shutdown::Shutdown;
