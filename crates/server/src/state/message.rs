//! `message` (standard): a private message between two people who have logged in. Writes a
//! `message` event, published on the recipient's topic once durable.

use palaver_proto::{EventKind, Name};

use super::{Outcome, State};

pub(super) fn apply(st: &State, src: Name, dst: Name, message: String) -> Outcome {
    if !st.users.contains(&src) {
        return Outcome::Refused(format!("user `{src}` has not logged in"));
    }
    if !st.users.contains(&dst) {
        return Outcome::Refused(format!("user `{dst}` does not exist"));
    }
    Outcome::Event(EventKind::Direct { src, dst, message })
}
