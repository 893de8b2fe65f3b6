//! `message` (standard): a private message between two people who have logged in. Writes a
//! `message` event, published on the recipient's topic once durable. A name with a password
//! sends only with its session's `token`; a message to or from such a name is published sealed
//! (a notice without the text, which the recipient fetches with `unseal`).

use palaver_proto::{EventKind, MessageKind, Name};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    src: Name,
    dst: Name,
    message: String,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.person(&src, proofs, now)?;
    if st.accounts.closed(&dst) {
        return Err(format!("`{dst}` has closed their account"));
    }
    if !st.names.is_user(&dst) {
        return Err(format!("user `{dst}` does not exist"));
    }
    Ok(Outcome::Event(EventKind::Message(MessageKind::Direct {
        src,
        dst,
        message,
    })))
}
