//! `receipts` (ours): for one of a person's own messages, who it was for and, for each of
//! them, when they took it (private messages: the first `taken` of any of their devices that
//! covers it) and when they read it (the first `read` that moved their marker to it or past
//! it), unless they have turned read receipts off. Read from the store after the batch's
//! commit (the reactor does it, with [`State::audience`]). A name with a password asks
//! only with its session.

use palaver_proto::{Event, EventKind, EventRef, MessageKind, Name, Place};

use super::{Decision, Outcome, Proofs, State, StoredRead};

pub(super) fn apply(
    st: &mut State,
    user: Name,
    id: EventRef,
    proofs: &Proofs,
    now: f64,
) -> Decision {
    st.person(&user, proofs, now)?;
    Ok(Outcome::Read(StoredRead::Receipts { user, id }))
}

/// The most people one `receipts` answer lists (the first, by name, of a larger room).
pub const MAX_READERS: usize = 200;

/// Whom a message was for, as `receipts` reports on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Audience {
    /// Where the readers' markers for it are: the room, or the conversation with the sender.
    pub place: Place,
    /// Whether taking it counts (private messages: the inbox hands them over one by one).
    pub delivered: bool,
    /// Each reader, and whether they send read receipts.
    pub readers: Vec<(Name, bool)>,
}

impl State {
    /// Whom `user`'s message `e` was for; `None` when `e` is not a post or private message of
    /// `user`'s.
    pub fn audience(&self, user: &Name, e: &Event) -> Option<Audience> {
        let with_setting = |n: &Name| (n.clone(), self.readers.sends_receipts(n));
        match &e.kind {
            EventKind::Message(MessageKind::Direct { src, dst, .. }) if src == user => {
                Some(Audience {
                    place: Place::With(src.clone()),
                    delivered: true,
                    readers: (dst != user)
                        .then(|| with_setting(dst))
                        .into_iter()
                        .collect(),
                })
            }
            EventKind::Message(MessageKind::Post {
                user: author,
                channel,
                ..
            }) if author == user => Some(Audience {
                place: Place::Channel(channel.clone()),
                delivered: false,
                readers: self
                    .rooms
                    .members(channel)
                    .filter(|m| *m != user)
                    .take(MAX_READERS)
                    .map(with_setting)
                    .collect(),
            }),
            // Someone else's message, or no message at all.
            EventKind::Message(MessageKind::Direct { .. } | MessageKind::Post { .. })
            | EventKind::Account(_)
            | EventKind::Room(_)
            | EventKind::Reader(_)
            | EventKind::Claim(_) => None,
        }
    }
}
