//! `password` (ours): changes an account's password, given the current one in `password` and
//! the new one in `new`. Writes a `password` event, which ends every session but the one the
//! request came with (if it carried a valid `token`).

use palaver_auth::password;
use palaver_proto::claim::Claim;
use palaver_proto::{Name, Secret};

use super::{After, HashJob, Outcome, Pending, Proofs, State, Verdict, Verify};

pub(super) fn apply(st: &mut State, user: Name, new: Secret, proofs: &Proofs, now: f64) -> Outcome {
    let Some(phc) = st.accounts.password(&user).map(str::to_owned) else {
        return Outcome::Refused(format!("`{user}` has no password; `register` gives it one"));
    };
    let Some(current) = &proofs.password else {
        return Outcome::Refused(
            "`password` needs the current `password` and the `new` one".into(),
        );
    };
    if let Err(why) = password::check(new.expose()) {
        return Outcome::Refused(why);
    }
    // The session the change comes from stays open; a token that is not valid keeps nothing.
    let keep = match proofs.token {
        Some(_) => st.acting(&user, proofs, now).ok().flatten(),
        None => None,
    };
    Outcome::Verify(Verify {
        pending: Pending::Password {
            user,
            keep,
            was: phc.clone(),
        },
        job: HashJob::Change {
            phc,
            password: current.clone(),
            new,
        },
    })
}

/// The current password `was` matched: the log of claims decides the change, if `was` is
/// still the password in force then.
pub(super) fn verified(
    st: &State,
    user: Name,
    keep: Option<String>,
    was: String,
    verdict: Verdict,
) -> Outcome {
    if !st.accounts.protected(&user) {
        return Outcome::Refused(format!("`{user}` has no password"));
    }
    match verdict.hash {
        Some(hash) if verdict.ok => Outcome::Claim(
            Claim::Password {
                user: user.clone(),
                hash: hash.clone(),
                was: Some(was),
                keep: keep.clone(),
            },
            After::Password { user, hash, keep },
        ),
        _ => Outcome::Refused(format!("wrong password for `{user}`")),
    }
}
