//! `unread` (ours): per room a person is in, and per conversation they have, how many messages
//! lie after their read marker. Counted in the store after the batch's commit (the reactor
//! does it, with [`State::unread_places`]). A name with a password asks only with its session.

use palaver_proto::Name;

use super::{Decision, Outcome, Proofs, State, StoredRead};

pub(super) fn apply(st: &mut State, user: Name, proofs: &Proofs, now: f64) -> Decision {
    st.person(&user, proofs, now)?;
    Ok(Outcome::Read(StoredRead::Unread { user }))
}
