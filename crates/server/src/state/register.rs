//! `register` (ours): gives a name a password, so that only its sessions may use it. The
//! password is hashed on the hasher thread; then a `register` event carries the hash. A name
//! that has been used without a password can be registered by whoever comes first (until then,
//! anyone could use it anyway); a name with a password, a retired one, or a channel's cannot.

use palaver_auth::password;
use palaver_proto::claim::Claim;
use palaver_proto::Name;

use super::{After, HashJob, Outcome, Pending, Proofs, State, Verdict, Verify};

/// Why `user` cannot be registered now, if it cannot.
fn taken(st: &State, user: &Name) -> Option<String> {
    if st.names.is_channel(user) {
        Some(format!("`{user}` is a channel, not a user"))
    } else if st.accounts.closed(user) {
        Some(format!(
            "`{user}` was closed and cannot be registered again"
        ))
    } else if st.accounts.protected(user) {
        Some(format!("`{user}` is already registered"))
    } else {
        None
    }
}

pub(super) fn apply(st: &State, user: Name, proofs: &Proofs) -> Outcome {
    let Some(pw) = &proofs.password else {
        return Outcome::Refused("`register` needs a `password`".into());
    };
    if let Some(why) = taken(st, &user) {
        return Outcome::Refused(why);
    }
    if let Err(why) = password::check(pw.expose()) {
        return Outcome::Refused(why);
    }
    Outcome::Verify(Verify {
        pending: Pending::Register { user },
        job: HashJob::Make {
            password: pw.clone(),
        },
    })
}

/// The password is hashed: unless someone registered the name meanwhile, the log of claims
/// decides the account (the first registration decided wins, everywhere).
pub(super) fn verified(st: &State, user: Name, verdict: Verdict) -> Outcome {
    if let Some(why) = taken(st, &user) {
        return Outcome::Refused(why);
    }
    match verdict.hash {
        Some(hash) => Outcome::Claim(
            Claim::Password {
                user: user.clone(),
                hash: hash.clone(),
                was: None,
                keep: None,
            },
            After::Register { user, hash },
        ),
        None => Outcome::Refused("the password could not be hashed".into()),
    }
}
