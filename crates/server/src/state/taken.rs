//! `taken` (ours): a person's device confirms it has taken its inbox up to `cursor`; the next
//! `inbox` of that device starts after it. Writes a `taken` event, unless the cursor moves
//! nothing forward. A cursor never moves back (per origin, the larger is kept), and one that
//! names events this server does not hold is refused: it cannot come from an `inbox` answer.
//! A name with a password confirms only with its session. Once the event is stored, the
//! senders of the private messages it took first of the person's devices get a "delivered"
//! receipt (the reactor finds them).

use palaver_core::inbox::merge;
use palaver_core::replication::VersionVector;
use palaver_proto::peer::Vector;
use palaver_proto::{EventKind, Name, ReaderKind, Reply};

use super::{Decision, Outcome, Proofs, State, StoredRead};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    device: String,
    cursor: Vector,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.person(&user, proofs, now)?;
    for (origin, seq) in &cursor {
        let held = st.held.get(origin).copied().unwrap_or(0);
        if *seq > held {
            return Err(format!(
                "the cursor is ahead of what the servers hold ({origin} up to {held}, not {seq}); \
                 confirm only what `inbox` answered"
            ));
        }
    }
    if !st.readers.has_room(&user, &device) {
        return Err(format!(
            "`{user}` has cursors for {} devices already; use one of them",
            super::readers::MAX_DEVICES
        ));
    }
    let before = st.readers.cursor(&user, &device);
    let mut after = before.clone();
    let given: VersionVector = cursor.iter().map(|(o, s)| (o.clone(), *s)).collect();
    merge(&mut after, &given);
    let merged: Vector = after.iter().map(|(o, s)| (o.to_owned(), s)).collect();
    if after == before {
        // Nothing new: said as done, stored as nothing.
        return Ok(Outcome::Reply(
            Reply::ok("taken").with("cursor", palaver_proto::peer::vector_to_value(&merged)),
        ));
    }
    // Told once: what another device of theirs took before was told then.
    let told = st.readers.furthest(&user);
    let delivered = StoredRead::Delivered {
        user: user.clone(),
        from: told.iter().map(|(o, s)| (o.to_owned(), s)).collect(),
        to: merged.clone(),
    };
    Ok(Outcome::EventThenRead(
        EventKind::Reader(ReaderKind::Taken {
            user,
            device,
            cursor: merged,
        }),
        delivered,
    ))
}
