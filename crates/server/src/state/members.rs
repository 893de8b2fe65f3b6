//! `members` (ours): who is in a room, under `members`. Reads memory; writes nothing.

use std::collections::BTreeSet;

use palaver_proto::Name;

use super::{list, Decision, Outcome, State};

pub(super) fn apply(st: &State, channel: Name) -> Decision {
    st.existing_room(&channel)?;
    // Closed accounts are no longer anyone's: they leave every room.
    let members: BTreeSet<Name> = st
        .rooms
        .members(&channel)
        .filter(|u| st.names.is_user(u))
        .cloned()
        .collect();
    let reply = list("members", &members, &["members"]).with("channel", channel.as_str());
    Ok(Outcome::Reply(st.rooms.describe(&channel, reply)))
}
