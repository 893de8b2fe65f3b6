//! `delete` (ours): a channel's owner deletes it on every server, as one decision (a two-phase
//! commit, which the reactor runs: docs/rooms.md). Checked here first: only the owner may
//! delete, and only a channel that exists, is not deleted, and is not being deleted. A name
//! with a password deletes only with its session. A channel created without an owner cannot
//! be deleted.

use palaver_proto::room::Room;
use palaver_proto::Name;

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    channel: Name,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.acting(&user, proofs, now)?;
    st.open_room(&channel)?;
    let owner = Room {
        channel: channel.clone(),
        owner: user,
    };
    st.may_delete(&owner)?;
    Ok(Outcome::Delete(owner))
}
