//! `publish` (standard): a post to a channel by someone who has logged in. Writes a `post`
//! event, published on the channel's topic once durable.

use palaver_proto::{EventKind, Name};

use super::{Outcome, State};

pub(super) fn apply(st: &State, user: Name, channel: Name, message: String) -> Outcome {
    if !st.channels.contains(&channel) {
        return Outcome::Refused(format!("channel `{channel}` does not exist"));
    }
    if !st.users.contains(&user) {
        return Outcome::Refused(format!("user `{user}` has not logged in"));
    }
    Outcome::Event(EventKind::Post {
        user,
        channel,
        message,
    })
}
