//! `users` (standard): every registered name. Reads memory; writes nothing. We add `online`:
//! who has a client beating, and since when (`[{user, since}]`).

use rmpv::Value;

use super::{list, Outcome, State};

pub(super) fn apply(st: &State) -> Outcome {
    let online: Vec<Value> = st
        .presence
        .online()
        .iter()
        .map(|(user, since)| {
            Value::Map(vec![
                ("user".into(), user.as_str().into()),
                ("since".into(), (*since).into()),
            ])
        })
        .collect();
    Outcome::Reply(list("users", st.names.users(), &["users"]).with("online", online))
}
