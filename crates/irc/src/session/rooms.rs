//! Who is in each room, as a gateway's sessions learn it from NAMES, joins and parts, for
//! `away-notify`: one copy per room for the whole gateway. A copy per connection would hold,
//! for a room of 1,000 people each connected to the gateway, a million names.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The rooms some session of the gateway is in, and their members. Cloning shares them.
#[derive(Clone, Default)]
pub struct Rooms(Arc<Mutex<HashMap<String, Room>>>);

#[derive(Default)]
struct Room {
    members: HashSet<String>,
    /// Sessions in the room: the room is forgotten when the last one leaves.
    sessions: usize,
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        // A session that panicked mid-update leaves sets that are at worst stale.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session is now in `room`.
    pub(super) fn enter(&self, room: &str) {
        self.lock().entry(room.to_owned()).or_default().sessions += 1;
    }

    /// A session is no longer in `room`.
    pub(super) fn leave(&self, room: &str) {
        let mut rooms = self.lock();
        if let Some(r) = rooms.get_mut(room) {
            r.sessions = r.sessions.saturating_sub(1);
            if r.sessions == 0 {
                rooms.remove(room);
            }
        }
    }

    /// `room`'s members, as the cluster just listed them.
    pub(super) fn listed(&self, room: &str, members: Vec<String>) {
        if let Some(r) = self.lock().get_mut(room) {
            r.members = members.into_iter().collect();
        }
    }

    /// `user` joined (`true`) or left `room`.
    pub(super) fn moved(&self, room: &str, user: &str, joined: bool) {
        if let Some(r) = self.lock().get_mut(room) {
            if joined {
                r.members.insert(user.to_owned());
            } else {
                r.members.remove(user);
            }
        }
    }

    /// Whether `user` is in one of `rooms`.
    pub(super) fn shares<'a>(
        &self,
        mut rooms: impl Iterator<Item = &'a String>,
        user: &str,
    ) -> bool {
        let known = self.lock();
        rooms.any(|r| known.get(r).is_some_and(|r| r.members.contains(user)))
    }

    /// How many rooms are known (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}
