//! `unregister` (ours): closes an account, given its `password`. Writes an `unregister` event.
//! The name is retired for good: no one logs in as it, registers it or writes to it again, so
//! nobody can take over the person's name or read their conversations. Their posts stay in
//! their channels, and their private messages stay readable by the other person in each
//! conversation (docs/accounts.md).

use palaver_proto::claim::Claim;
use palaver_proto::Name;

use super::{After, HashJob, Outcome, Pending, Proofs, State, Verdict, Verify};

pub(super) fn apply(st: &State, user: Name, proofs: &Proofs) -> Outcome {
    let Some(phc) = st.accounts.password(&user).map(str::to_owned) else {
        return Outcome::Refused(format!("`{user}` has no account to close"));
    };
    let Some(password) = &proofs.password else {
        return Outcome::Refused("`unregister` needs the account's `password`".into());
    };
    Outcome::Verify(Verify {
        pending: Pending::Unregister {
            user,
            was: phc.clone(),
        },
        job: HashJob::Check {
            phc,
            password: password.clone(),
        },
    })
}

/// The password `was` matched: the log of claims decides the closing, if `was` is still the
/// password in force then.
pub(super) fn verified(st: &State, user: Name, was: String, verdict: Verdict) -> Outcome {
    if !st.accounts.protected(&user) {
        return Outcome::Refused(format!("`{user}` has no account to close"));
    }
    if verdict.ok {
        Outcome::Claim(
            Claim::Retire {
                user: user.clone(),
                was: Some(was),
            },
            After::Unregister { user },
        )
    } else {
        Outcome::Refused(format!("wrong password for `{user}`"))
    }
}
