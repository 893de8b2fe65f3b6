//! `users` (standard): every registered name. Reads memory; writes nothing.

use super::{list, Outcome, State};

pub(super) fn apply(st: &State) -> Outcome {
    Outcome::Reply(list("users", &st.users, &["users"]))
}
