//! `channels` (standard): every channel, under `channels` and (as the standard's first
//! clients read it) under `users` too; deleted ones are left out. Reads memory; writes nothing.

use std::collections::BTreeSet;

use palaver_proto::Name;

use super::{list, Outcome, State};

pub(super) fn apply(st: &State) -> Outcome {
    let live: BTreeSet<Name> = st.live_channels().cloned().collect();
    Outcome::Reply(list("channels", &live, &["users", "channels"]))
}
