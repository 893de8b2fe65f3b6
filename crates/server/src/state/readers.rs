//! What people have read, in memory: each device's inbox cursor (per origin, the sequence
//! number up to which everything addressed to the person was taken), folded from `taken`
//! events by taking the larger per origin, so the order they arrive in does not matter and a
//! cursor never moves back (docs/replication.md, "Inbox cursors").

use std::collections::HashMap;

use palaver_core::inbox::merge;
use palaver_core::replication::VersionVector;
use palaver_proto::{Event, EventKind, Name};

/// The most devices one person's cursors are kept for: past it, a new device is refused.
pub(super) const MAX_DEVICES: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Readers {
    /// Per person, per device.
    cursors: HashMap<Name, HashMap<String, VersionVector>>,
}

impl Readers {
    pub(super) fn on_event(&mut self, e: &Event) {
        if let EventKind::Taken {
            user,
            device,
            cursor,
        } = &e.kind
        {
            let vv: VersionVector = cursor.iter().map(|(o, s)| (o.clone(), *s)).collect();
            let mine = self
                .cursors
                .entry(user.clone())
                .or_default()
                .entry(device.clone())
                .or_default();
            merge(mine, &vv);
        }
    }

    /// Where `user`'s `device` has taken its inbox up to (nothing yet: empty).
    pub(super) fn cursor(&self, user: &Name, device: &str) -> VersionVector {
        self.cursors
            .get(user)
            .and_then(|d| d.get(device))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `user` may have a cursor for `device`: one they have, or room for a new one.
    pub(super) fn has_room(&self, user: &Name, device: &str) -> bool {
        self.cursors
            .get(user)
            .is_none_or(|d| d.contains_key(device) || d.len() < MAX_DEVICES)
    }
}
