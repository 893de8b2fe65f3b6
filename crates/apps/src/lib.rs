//! Palaver's front ends, each a `run` function that the `palaver` binary calls with parsed
//! flags: the line client, the bot, the listener, the benchmark, the admin tool, the health
//! check and the local cluster runner.

pub mod admin;
pub mod bench;
pub mod bot;
pub mod client;
pub mod listen;
pub mod ping;
mod show;
pub mod up;
