//! `topic` (ours): someone in a room sets its topic, or clears it. Writes a `topic` event,
//! announced on the channel's topic; `join` and `members` show the topic (`Rooms::describe`).
//! The latest `topic` in the total order holds, so servers that took two at once agree.

use palaver_proto::{EventKind, Name, RoomKind};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    channel: Name,
    topic: Option<String>,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.acting(&user, proofs, now)?;
    st.open_room(&channel)?;
    if !st.rooms.is_member(&channel, &user) {
        return Err(format!("join `{channel}` to set its topic"));
    }
    Ok(Outcome::Event(EventKind::Room(RoomKind::Topic {
        user,
        channel,
        topic,
    })))
}
