//! `login` (standard, with our additions): records a person's login, registering the name on
//! first use. A name is a user's or a channel's, never both.
//!
//! For a name with a password (ours), the login needs the `password`, checked on the hasher
//! thread, and opens a session (a `session` event; the answer carries its token); or a valid
//! `token`, which records a login in that session. Without either it is refused: nobody else
//! can log in as an account.
//!
//! A brand-new name, and every session, is a claim: the log of claims decides it (a majority
//! of the servers) before the login is written and answered. A login of a name already used,
//! without a password, is written at once, on any side of a partition.

use palaver_proto::claim::Claim;
use palaver_proto::{AccountKind, EventKind, Name};

use super::{After, HashJob, Outcome, Pending, Proofs, State, Verdict, Verify};

pub(super) fn apply(st: &mut State, user: Name, proofs: &Proofs, now: f64) -> Outcome {
    if st.names.is_channel(&user) {
        return Outcome::Refused(format!("`{user}` is a channel, not a user"));
    }
    let Some(phc) = st.accounts.password(&user).map(str::to_owned) else {
        if st.accounts.closed(&user) {
            return Outcome::Refused(format!("`{user}` has closed their account"));
        }
        if proofs.password.is_some() {
            return Outcome::Refused(format!("`{user}` has no password; `register` gives it one"));
        }
        if !st.names.is_user(&user) {
            return Outcome::Claim(Claim::Person { name: user.clone() }, After::Login { user });
        }
        return Outcome::Event(EventKind::Account(AccountKind::Login { user }));
    };
    if let Some(password) = &proofs.password {
        return Outcome::Verify(Verify {
            pending: Pending::Login {
                user,
                was: phc.clone(),
            },
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

/// The password `was` was checked: a match opens a session, once the log of claims decides
/// that `was` is still the password in force.
pub(super) fn verified(
    st: &mut State,
    user: Name,
    was: String,
    verdict: Verdict,
    now: f64,
) -> Outcome {
    match verdict.token {
        Some(token) if verdict.ok && st.accounts.protected(&user) => {
            let session = palaver_auth::token::token_hash(&token);
            Outcome::Claim(
                Claim::Session {
                    user: user.clone(),
                    session: session.clone(),
                    was,
                    at_ms: millis(now),
                },
                After::Session {
                    user,
                    session,
                    token,
                },
            )
        }
        _ if st.accounts.closed(&user) => {
            Outcome::Refused(format!("`{user}` has closed their account"))
        }
        _ => Outcome::Refused(format!("wrong password for `{user}`")),
    }
}

/// A time in seconds as whole milliseconds (a time before the epoch, or absurd, as 0).
fn millis(t: f64) -> u64 {
    if t.is_finite() && t > 0.0 {
        (t * 1000.0).min(palaver_proto::MAX_COUNTER as f64) as u64
    } else {
        0
    }
}
