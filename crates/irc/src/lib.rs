//! `palaver irc`: a front door for IRC clients onto the same rooms, conversations and history.
//!
//! ```text
//!  IRC client ──TCP──▶ one task each (tokio): lines in, limits (connections per address,
//!                      line length, flood), one bounded queue out
//!                        │ session::Session: IRC ⇄ the web gateway's JSON requests
//!                        ▼
//!                      hub thread (palaver_web::hub): the gateway core on one DEALER ──▶ broker
//!                                                                    and one SUB  ◀── proxy
//! ```
//!
//! The gateway core is the web gateway's: the same sessions, rate limits, subscriptions, gap
//! repair and sealed-message opening serve browsers and IRC clients alike. docs/irc.md says
//! what is supported and how Palaver's concepts appear on IRC.

pub mod line;
pub mod session;

#[cfg(feature = "front-door")]
mod door;
#[cfg(feature = "front-door")]
mod listen;
#[cfg(feature = "front-door")]
mod pace;

#[cfg(feature = "front-door")]
pub use door::{run, Options, Tls};
