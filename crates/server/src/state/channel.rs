//! `channel` (standard): creates a channel. Writes a `channel` event; publishes nothing. A
//! name is a user's or a channel's, never both, and a deleted channel's name is not used again.
//!
//! With `user` (ours), that person owns the channel: only they may `delete` it. A name with a
//! password names itself owner only with its session's `token`.
//!
//! The name and its owner are a claim: the log of claims decides them (a majority of the
//! servers) before the `channel` event is written and answered.

use palaver_proto::claim::Claim;
use palaver_proto::Name;

use super::{After, Decision, Outcome, Proofs, State};

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
    if st.names.is_channel(&channel) {
        return Err(format!("channel `{channel}` already exists"));
    }
    if st.names.is_user(&channel) || st.accounts.closed(&channel) {
        return Err(format!("`{channel}` is a user's name"));
    }
    if let Some(user) = &owner {
        st.person(user, proofs, now)?;
    }
    Ok(Outcome::Claim(
        Claim::Channel {
            name: channel.clone(),
            owner: owner.clone(),
        },
        After::Channel { channel, owner },
    ))
}
