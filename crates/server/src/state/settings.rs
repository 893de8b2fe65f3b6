//! `settings` (ours): a person's settings, and changes to them. `receipts` says whether others
//! learn when the person has read their messages (on by default): off, a `read` publishes no
//! receipt and `receipts` shows no read time of theirs. A change is a `settings` event, the
//! latest in the total order standing; asking without a change, or for what already stands,
//! writes nothing. A name with a password sees and changes its settings only with its session.

use palaver_proto::{EventKind, Name, ReaderKind, Reply};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    receipts: Option<bool>,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.person(&user, proofs, now)?;
    let current = st.readers.sends_receipts(&user);
    match receipts {
        Some(wanted) if wanted != current => {
            Ok(Outcome::Event(EventKind::Reader(ReaderKind::Settings {
                user,
                receipts: wanted,
            })))
        }
        _ => Ok(Outcome::Reply(
            Reply::ok("settings").with("receipts", current),
        )),
    }
}
