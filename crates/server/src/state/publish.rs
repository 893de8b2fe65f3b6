//! `publish` (standard): a post to a channel by someone who has logged in. Writes a `post`
//! event, published on the channel's topic once durable. A name with a password posts only
//! with its session's `token`. A channel that is deleted, or being deleted, takes no posts.

use palaver_proto::{EventKind, MessageKind, Name};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    channel: Name,
    message: String,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    may_post(st, &user, &channel, proofs, now)?;
    Ok(Outcome::Event(EventKind::Message(MessageKind::Post {
        user,
        channel,
        message,
    })))
}

/// Whether `user` may post to `channel` now: what `publish` and `posts` ask first.
pub(super) fn may_post(
    st: &mut State,
    user: &Name,
    channel: &Name,
    proofs: &Proofs,
    now: f64,
) -> Result<(), String> {
    st.acting(user, proofs, now)?;
    st.open_room(channel)?;
    st.logged_in(user)
}
