//! `login` (standard, with our additions): records a person's login, registering the name on
//! first use. A name is a user's or a channel's, never both.
//!
//! For a name with a password (ours), the login needs the `password`, checked on the hasher
//! thread, and opens a session (a `session` event; the answer carries its token); or a valid
//! `token`, which records a login in that session. Without either it is refused: nobody else
//! can log in as an account.

use palaver_proto::{AccountKind, EventKind, Name};

use super::{HashJob, Outcome, Pending, Proofs, State, Verdict, Verify};

pub(super) fn apply(st: &mut State, user: Name, proofs: &Proofs, now: f64) -> Outcome {
    if st.channels.contains(&user) {
        return Outcome::Refused(format!("`{user}` is a channel, not a user"));
    }
    let Some(phc) = st.accounts.password(&user).map(str::to_owned) else {
        if st.accounts.closed(&user) {
            return Outcome::Refused(format!("`{user}` has closed their account"));
        }
        if proofs.password.is_some() {
            return Outcome::Refused(format!("`{user}` has no password; `register` gives it one"));
        }
        st.users.insert(user.clone());
        return Outcome::Event(EventKind::Account(AccountKind::Login { user }));
    };
    if let Some(password) = &proofs.password {
        return Outcome::Verify(Verify {
            pending: Pending::Login { user },
            job: HashJob::Check {
                phc,
                password: password.clone(),
            },
        });
    }
    match st.acting(&user, proofs, now) {
        Ok(_) => Outcome::Event(EventKind::Account(AccountKind::Login { user })),
        Err(why) => Outcome::Refused(why),
    }
}

/// The password was checked: a match opens a session. Returns the outcome and the token.
pub(super) fn verified(st: &mut State, user: Name, verdict: Verdict) -> (Outcome, Option<String>) {
    match verdict.token {
        Some(token) if verdict.ok && st.accounts.protected(&user) => {
            let session = palaver_auth::token::token_hash(&token);
            (
                Outcome::Event(EventKind::Account(AccountKind::Session { user, session })),
                Some(token),
            )
        }
        _ if st.accounts.closed(&user) => (
            Outcome::Refused(format!("`{user}` has closed their account")),
            None,
        ),
        _ => (
            Outcome::Refused(format!("wrong password for `{user}`")),
            None,
        ),
    }
}

/// A `login` event from any server: the name is a user's, unless this server knew it as a
/// channel first (see docs/replication.md).
pub(super) fn on_event(st: &mut State, user: &Name) {
    if !st.channels.contains(user) {
        st.users.insert(user.clone());
    }
}
