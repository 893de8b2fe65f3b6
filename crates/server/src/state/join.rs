//! `join` (ours): a person enters a room. Writes a `join` event, announced on the channel's
//! topic, and answers with the channel's newest posts (`limit`, by default 50, at most 500),
//! read from the store once the join is stored. Joining a room one is in already writes
//! nothing and answers the same way. A name with a password joins only with its session.

use palaver_proto::{EventKind, Name, RoomKind};

use super::{Decision, Outcome, Proofs, State, StoredRead};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    channel: Name,
    limit: usize,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.acting(&user, proofs, now)?;
    st.open_room(&channel)?;
    st.logged_in(&user)?;
    let read = StoredRead::Join {
        channel: channel.clone(),
        limit,
    };
    if st.rooms.is_member(&channel, &user) {
        return Ok(Outcome::Read(read));
    }
    Ok(Outcome::EventThenRead(
        EventKind::Room(RoomKind::Join { user, channel }),
        read,
    ))
}
