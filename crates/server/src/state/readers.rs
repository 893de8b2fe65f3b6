//! What people have read, in memory: each device's inbox cursor (per origin, the sequence
//! number up to which everything addressed to the person was taken), folded from `taken`
//! events by taking the larger per origin (docs/replication.md, "Inbox cursors"); and each
//! person's read marker per room and conversation, folded from `read` events by taking the
//! later message in the total order. Either way the order events arrive in does not matter,
//! and nothing moves back.

use std::collections::HashMap;

use palaver_core::inbox::merge;
use palaver_core::replication::VersionVector;
use palaver_proto::{Event, EventKind, EventRef, Name, Place};

/// The most devices one person's cursors are kept for: past it, a new device is refused.
pub(super) const MAX_DEVICES: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Readers {
    /// Per person, per device.
    cursors: HashMap<Name, HashMap<String, VersionVector>>,
    /// Per person and place: the message read up to, and where it sorts.
    markers: HashMap<(Name, Place), Marker>,
}

/// A read marker: the message, and its position in the total order (Lamport time, origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Marker {
    pub at: u64,
    pub id: EventRef,
}

impl Marker {
    fn position(&self) -> (u64, &str) {
        (self.at, &self.id.origin)
    }
}

impl Readers {
    pub(super) fn on_event(&mut self, e: &Event) {
        if let EventKind::Read {
            user,
            place,
            id,
            at,
        } = &e.kind
        {
            let new = Marker {
                at: *at,
                id: id.clone(),
            };
            let key = (user.clone(), place.clone());
            if self
                .markers
                .get(&key)
                .is_none_or(|m| m.position() < new.position())
            {
                self.markers.insert(key, new);
            }
        }
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

    /// Where `user` has read `place` up to.
    pub(super) fn marker(&self, user: &Name, place: &Place) -> Option<&Marker> {
        self.markers.get(&(user.clone(), place.clone()))
    }

    /// Whether `user` may have a cursor for `device`: one they have, or room for a new one.
    pub(super) fn has_room(&self, user: &Name, device: &str) -> bool {
        self.cursors
            .get(user)
            .is_none_or(|d| d.contains_key(device) || d.len() < MAX_DEVICES)
    }
}
