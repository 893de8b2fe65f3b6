//! `login` (standard): records a person's login, registering the name on first use. Writes a
//! `login` event; publishes nothing. A name is a user's or a channel's, never both.

use palaver_proto::{EventKind, Name};

use super::{Outcome, State};

pub(super) fn apply(st: &mut State, user: Name) -> Outcome {
    if st.channels.contains(&user) {
        return Outcome::Refused(format!("`{user}` is a channel, not a user"));
    }
    st.users.insert(user.clone());
    Outcome::Event(EventKind::Login { user })
}

/// A `login` event from any server: the name is a user's, unless this server knew it as a
/// channel first (see docs/replication.md).
pub(super) fn on_event(st: &mut State, user: &Name) {
    if !st.channels.contains(user) {
        st.users.insert(user.clone());
    }
}
