//! `leave` (ours): a person leaves a room they are in. Writes a `leave` event, announced on the
//! channel's topic. A name with a password leaves only with its session.

use palaver_proto::{EventKind, Name, RoomKind};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    channel: Name,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.acting(&user, proofs, now)?;
    st.existing_room(&channel)?;
    if !st.rooms.is_member(&channel, &user) {
        return Err(format!("`{user}` is not in `{channel}`"));
    }
    Ok(Outcome::Event(EventKind::Room(RoomKind::Leave {
        user,
        channel,
    })))
}
