//! `unseal` (ours): the text of one private message, by id, for its sender or recipient
//! (with the session's `token` for a name with a password). Read from the store after the
//! batch it arrived in commits; the reactor checks that the message is the person's.

use palaver_proto::{EventRef, Name};

use super::{Decision, Outcome, Proofs, State, StoredRead};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    id: EventRef,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.acting(&user, proofs, now)?;
    Ok(Outcome::Read(StoredRead::Unseal { user, id }))
}
