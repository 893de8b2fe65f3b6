//! `channel` (standard): creates a channel. Writes a `channel` event; publishes nothing. A
//! name is a user's or a channel's, never both.

use palaver_proto::{EventKind, Name};

use super::{Outcome, State};

pub(super) fn apply(st: &mut State, channel: Name) -> Outcome {
    if st.channels.contains(&channel) {
        return Outcome::Refused(format!("channel `{channel}` already exists"));
    }
    if st.users.contains(&channel) {
        return Outcome::Refused(format!("`{channel}` is a user's name"));
    }
    st.channels.insert(channel.clone());
    Outcome::Event(EventKind::Channel { channel })
}

/// A `channel` event from any server: the name is a channel's, unless this server knew it as
/// a user first.
pub(super) fn on_event(st: &mut State, channel: &Name) {
    if !st.users.contains(channel) {
        st.channels.insert(channel.clone());
    }
}
