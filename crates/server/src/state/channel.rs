//! `channel` (standard): creates a channel. Writes a `channel` event; publishes nothing. A
//! name is a user's or a channel's, never both, and a deleted channel's name is not used again.
//!
//! With `user` (ours), that person owns the channel: only they may `delete` it. A name with a
//! password names itself owner only with its session's `token`.

use palaver_proto::{EventKind, Name, RoomKind};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    channel: Name,
    owner: Option<Name>,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    if st.rooms.is_deleted(&channel) {
        return Err(format!(
            "channel `{channel}` was deleted; its name is not used again"
        ));
    }
    if st.channels.contains(&channel) {
        return Err(format!("channel `{channel}` already exists"));
    }
    if st.users.contains(&channel) {
        return Err(format!("`{channel}` is a user's name"));
    }
    if let Some(user) = &owner {
        st.person(user, proofs, now)?;
    }
    st.channels.insert(channel.clone());
    Ok(Outcome::Event(EventKind::Room(RoomKind::Channel {
        channel,
        owner,
    })))
}

/// A `channel` event from any server: the name is a channel's, unless this server knew it as
/// a user first.
pub(super) fn on_event(st: &mut State, channel: &Name) {
    if !st.users.contains(channel) {
        st.channels.insert(channel.clone());
    }
}
