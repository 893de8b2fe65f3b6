//! `inbox` (ours): what one device of a person has not taken yet of everything addressed to
//! them: their private messages (sent and received, so every device shows whole
//! conversations) and the posts of the rooms they are in, after the device's cursor, in the
//! total order, a page at a time. Read from the store after the batch's commit; the answer's
//! `cursor` is what `taken` confirms. A name with a password reads its inbox only with its
//! session.

use palaver_proto::Name;

use super::{Decision, Outcome, Proofs, State, StoredRead};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    device: String,
    limit: usize,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.person(&user, proofs, now)?;
    let channels = st.rooms.joined(&user).cloned().collect();
    let cursor = st.readers.cursor(&user, &device);
    Ok(Outcome::Read(StoredRead::Inbox {
        user,
        channels,
        cursor: cursor.iter().map(|(o, s)| (o.to_owned(), s)).collect(),
        limit,
    }))
}
