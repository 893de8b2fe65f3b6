//! `channels` (standard): every channel, under `channels` and (as the standard's first
//! clients read it) under `users` too. Reads memory; writes nothing.

use super::{list, Outcome, State};

pub(super) fn apply(st: &State) -> Outcome {
    Outcome::Reply(list("channels", &st.channels, &["users", "channels"]))
}
