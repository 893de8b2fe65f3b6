//! `joined` (ours): the rooms a person is in, under `channels`. Reads memory; writes nothing.

use std::collections::BTreeSet;

use palaver_proto::Name;

use super::{list, Outcome, State};

pub(super) fn apply(st: &State, user: Name) -> Outcome {
    let rooms: BTreeSet<Name> = st.rooms.joined(&user).cloned().collect();
    Outcome::Reply(list("joined", &rooms, &["channels"]).with("user", user.as_str()))
}
