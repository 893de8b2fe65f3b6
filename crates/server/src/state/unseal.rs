//! `unseal` (ours): the text of one private message, by id, for its sender or recipient
//! (with the session's `token` for a name with a password). Read from the store after the
//! batch it arrived in commits; the reactor checks that the message is the person's.

use palaver_proto::{EventRef, Name};

use super::{Outcome, Proofs, State, StoredRead};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    id: EventRef,
    proofs: &Proofs,
    now: f64,
) -> Outcome {
    if let Err(why) = st.acting(&user, proofs, now) {
        return Outcome::Refused(why);
    }
    Outcome::Read(StoredRead::Unseal { user, id })
}
