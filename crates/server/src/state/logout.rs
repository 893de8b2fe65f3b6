//! `logout` (ours): ends the session whose token the request carries. Writes a `logout`
//! event: once answered, every live server refuses the token.

use palaver_proto::{AccountKind, EventKind, Name};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(st: &mut State, user: Name, proofs: &Proofs, now: f64) -> Decision {
    if !st.accounts.protected(&user) && !st.accounts.closed(&user) {
        return Err(format!("`{user}` has no password, so no session to end"));
    }
    match st.acting(&user, proofs, now)? {
        Some(session) => Ok(Outcome::Event(EventKind::Account(AccountKind::Logout {
            user,
            session,
        }))),
        None => Err(format!("`{user}` has no session to end")),
    }
}
