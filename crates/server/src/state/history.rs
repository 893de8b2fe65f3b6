//! `history` (ours): a conversation's messages, a page at a time. Read from the store after
//! the batch it arrived in commits, so that it sees every write acknowledged before it (the
//! reactor does the reading; `HistoryQuery` is the query and the answer's shape). A private
//! conversation of a name with a password is read only with that name's session.

use palaver_proto::{Conversation, HistoryQuery};

use super::{Decision, Outcome, Proofs, State, StoredRead};

pub(super) fn apply(st: &mut State, query: HistoryQuery, proofs: &Proofs, now: f64) -> Decision {
    match &query.of {
        Conversation::Direct(user, _) => {
            st.acting(&user.clone(), proofs, now)?;
        }
        // A deleted channel's history is gone.
        Conversation::Channel(channel) => st.existing_room(channel)?,
    }
    Ok(Outcome::Read(StoredRead::History(query)))
}
