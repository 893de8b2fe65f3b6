//! `read` (ours): a person has read their room or conversation up to a message. The message is
//! looked up in the store first (the reactor does it), then [`State::marked`] decides: it must
//! be a post of a room the person is in, or a private message to or from them. A marker never
//! moves back: a message before the stored marker is answered with the stored one, and writes
//! nothing. A new marker is a `read` event, told to the person's other clients on their own
//! topic and, in a conversation, to the other person as a receipt. A name with a password moves
//! its markers only with its session.

use palaver_proto::{Event, EventKind, EventRef, MessageKind, Name, Place, ReaderKind, Reply};

use super::{Decision, Outcome, Proofs, State};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    id: EventRef,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.person(&user, proofs, now)?;
    Ok(Outcome::Lookup { user, id })
}

/// The message looked up: where the marker goes, if anywhere.
pub(super) fn found(st: &State, user: Name, id: &EventRef, found: Option<&Event>) -> Outcome {
    let nothing = || Outcome::Refused(format!("there is no message {id}"));
    let Some(e) = found else {
        return nothing();
    };
    let place = match &e.kind {
        EventKind::Message(MessageKind::Post { channel, .. }) => {
            if let Err(why) = st.existing_room(channel) {
                return Outcome::Refused(why);
            }
            if !st.rooms.is_member(channel, &user) {
                return Outcome::Refused(format!("`{user}` is not in `{channel}`"));
            }
            Place::Channel(channel.clone())
        }
        EventKind::Message(MessageKind::Direct { src, dst, .. }) if *src == user => {
            Place::With(dst.clone())
        }
        EventKind::Message(MessageKind::Direct { src, dst, .. }) if *dst == user => {
            Place::With(src.clone())
        }
        EventKind::Message(MessageKind::Direct { .. }) => {
            return Outcome::Refused(format!("message {id} is not in a conversation of `{user}`"))
        }
        EventKind::Account(_) | EventKind::Room(_) | EventKind::Reader(_) | EventKind::Claim(_) => {
            return nothing()
        }
    };
    if let Some(m) = st.readers.marker(&user, &place) {
        if (e.lamport, e.origin.as_str()) <= (m.at, m.id.origin.as_str()) {
            // Never back: the stored marker stands.
            return Outcome::Reply(
                Reply::ok("read")
                    .with("upto", m.id.to_string())
                    .with("moved", false),
            );
        }
    }
    Outcome::Event(EventKind::Reader(ReaderKind::Read {
        user,
        place,
        id: id.clone(),
        at: e.lamport,
    }))
}
