//! What people have read, in memory: each device's inbox cursor (per origin, the sequence
//! number up to which everything addressed to the person was taken), folded from `taken`
//! events by taking the larger per origin (docs/replication.md, "Inbox cursors"); and each
//! person's read marker per room and conversation, folded from `read` events by taking the
//! later message in the total order; and each person's settings, folded from `settings`
//! events by taking the latest in the total order. Either way the order events arrive in does
//! not matter, and nothing moves back.

use std::collections::HashMap;

use palaver_core::inbox::merge;
use palaver_core::replication::VersionVector;
use palaver_proto::{Event, EventKind, EventRef, Name, Place, ReaderKind};

/// The most devices one person's cursors are kept for: past it, a new device is refused.
pub(super) const MAX_DEVICES: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Readers {
    /// Per person, per device.
    cursors: HashMap<Name, HashMap<String, VersionVector>>,
    /// Per person and place: the message read up to, and where it sorts.
    markers: HashMap<(Name, Place), Marker>,
    /// Per person: whether they send read receipts, and where the setting sorts.
    receipts: HashMap<Name, ((u64, String), bool)>,
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
        let kind = match &e.kind {
            EventKind::Reader(kind) => kind,
            EventKind::Message(_)
            | EventKind::Account(_)
            | EventKind::Room(_)
            | EventKind::Claim(_) => return,
        };
        let at = (e.lamport, e.origin.clone());
        match kind {
            ReaderKind::Settings { user, receipts } => {
                let stored = self
                    .receipts
                    .entry(user.clone())
                    .or_insert((at.clone(), *receipts));
                if stored.0 < at {
                    *stored = (at, *receipts);
                }
            }
            ReaderKind::Read {
                user,
                place,
                id,
                at,
            } => {
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
            ReaderKind::Taken {
                user,
                device,
                cursor,
            } => {
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
    }

    /// Where `user`'s `device` has taken its inbox up to (nothing yet: empty).
    pub(super) fn cursor(&self, user: &Name, device: &str) -> VersionVector {
        self.cursors
            .get(user)
            .and_then(|d| d.get(device))
            .cloned()
            .unwrap_or_default()
    }

    /// How far any of `user`'s devices has taken the inbox: per origin, the furthest.
    pub(super) fn furthest(&self, user: &Name) -> VersionVector {
        let mut all = VersionVector::default();
        for c in self.cursors.get(user).into_iter().flat_map(HashMap::values) {
            merge(&mut all, c);
        }
        all
    }

    /// Where `user` has read `place` up to.
    pub(super) fn marker(&self, user: &Name, place: &Place) -> Option<&Marker> {
        self.markers.get(&(user.clone(), place.clone()))
    }

    /// Whether `user` lets others learn when they have read (the default, until they say no).
    pub(super) fn sends_receipts(&self, user: &Name) -> bool {
        self.receipts.get(user).is_none_or(|(_, on)| *on)
    }

    /// Whether `user` may have a cursor for `device`: one they have, or room for a new one.
    pub(super) fn has_room(&self, user: &Name, device: &str) -> bool {
        self.cursors
            .get(user)
            .is_none_or(|d| d.contains_key(device) || d.len() < MAX_DEVICES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{event, name};

    #[test]
    fn the_latest_setting_stands_whatever_order_they_arrive_in() {
        let bob = name("bob");
        let setting = |origin: &str, lamport: u64, receipts: bool| {
            event(
                origin,
                lamport,
                lamport,
                EventKind::Reader(ReaderKind::Settings {
                    user: bob.clone(),
                    receipts,
                }),
            )
        };
        // Concurrent at Lamport 5: the later origin wins; Lamport 7 wins over both.
        let all = [
            setting("s1", 5, false),
            setting("s2", 5, true),
            setting("s1", 7, false),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let mut r = Readers::default();
            assert!(r.sends_receipts(&bob), "on until said otherwise");
            for i in order {
                r.on_event(&all[i]);
            }
            assert!(!r.sends_receipts(&bob), "order {order:?}");
        }
        let mut r = Readers::default();
        r.on_event(&all[1]);
        r.on_event(&all[0]);
        assert!(r.sends_receipts(&bob), "s2 sorts after s1 at the same time");
    }

    #[test]
    fn the_furthest_cursor_is_each_origins_furthest_over_devices() {
        let bob = name("bob");
        let taken = |device: &str, cursor: &[(&str, u64)]| {
            event(
                "s1",
                1,
                1,
                EventKind::Reader(ReaderKind::Taken {
                    user: bob.clone(),
                    device: device.into(),
                    cursor: cursor.iter().map(|(o, s)| ((*o).to_owned(), *s)).collect(),
                }),
            )
        };
        let mut r = Readers::default();
        r.on_event(&taken("phone", &[("s1", 5), ("s2", 1)]));
        r.on_event(&taken("laptop", &[("s1", 3), ("s2", 4), ("s3", 2)]));
        let far = r.furthest(&bob);
        assert_eq!((far.get("s1"), far.get("s2"), far.get("s3")), (5, 4, 2));
        assert_eq!(r.cursor(&bob, "phone").get("s2"), 1);
        assert!(r.furthest(&name("cy")).iter().next().is_none());
    }
}
