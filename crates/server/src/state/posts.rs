//! `posts` (ours): several posts to a channel by one person, in the order given, made by one
//! server in one turn, so that no server takes a pasted line before the one above it. Each is
//! a `post` event of its own, published as `publish` publishes one; each carries a request id
//! of its own (`palaver_proto::post_request`), so a retry makes only those not held yet.

use palaver_proto::{EventKind, MessageKind, Name};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    channel: Name,
    messages: Vec<String>,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    super::publish::may_post(st, &user, &channel, proofs, now)?;
    let posts = messages
        .into_iter()
        .map(|message| {
            EventKind::Message(MessageKind::Post {
                user: user.clone(),
                channel: channel.clone(),
                message,
            })
        })
        .collect();
    Ok(Outcome::Events(posts))
}
