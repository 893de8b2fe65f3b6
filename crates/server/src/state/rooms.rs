//! Rooms in memory: who owns each channel, who is in it, which channels are deleted, and which
//! this server has stopped while their delete is decided. Folded from the room events
//! (`channel`, `join`, `leave`, `prepare`, `abort`, `delete`) with rules that give the same
//! result in any order, so every server that holds the same events agrees (docs/rooms.md):
//!
//! - the owner is the one the log of claims decided with the channel; for a channel created
//!   before claims, the one named by its first creation in the total order;
//! - whether someone is in a room is what their latest `join` or `leave` in the total order
//!   says (concurrent joins and leaves through different servers end the same everywhere);
//! - a `delete` from any server deletes the channel for good;
//! - a channel is stopped here while this server's own `prepare` for it has no `abort` or
//!   `delete` of its own yet.

use std::collections::{BTreeMap, BTreeSet};

use palaver_proto::{Envelope, Event, EventKind, Name, RoomKind};

/// Where an event stands in the total order.
type Stamp = (u64, String);

#[derive(Debug, Default)]
pub(super) struct Rooms {
    /// This server's name: its own `prepare`s stop channels.
    origin: String,
    /// Each channel's first creation, and the owner it names.
    owners: BTreeMap<Name, (Stamp, Option<Name>)>,
    /// Each channel's owner as the log of claims decided it, which overrides `owners`.
    claimed: BTreeMap<Name, Option<Name>>,
    /// Per channel, per person: the latest join or leave (true: in the room).
    members: BTreeMap<Name, BTreeMap<Name, (Stamp, bool)>>,
    /// Per person, the rooms they are in (kept with `members`).
    joined: BTreeMap<Name, BTreeSet<Name>>,
    deleted: BTreeSet<Name>,
    /// Each channel's latest topic (none: cleared), and who set it.
    topics: BTreeMap<Name, (Stamp, Option<String>, Name)>,
    /// This server's prepared deletes not yet decided here: transaction → channel.
    stopped: BTreeMap<String, Name>,
}

impl Rooms {
    pub(super) fn new(origin: &str) -> Rooms {
        Rooms {
            origin: origin.to_owned(),
            ..Rooms::default()
        }
    }

    /// The log of claims decided that `channel` is a channel, owned by `owner`.
    pub(super) fn claimed(&mut self, channel: &Name, owner: Option<&Name>) {
        self.claimed.insert(channel.clone(), owner.cloned());
    }

    pub(super) fn on_event(&mut self, e: &Event) {
        let stamp = || (e.lamport, e.origin.clone());
        let kind = match &e.kind {
            EventKind::Room(kind) => kind,
            EventKind::Message(_)
            | EventKind::Account(_)
            | EventKind::Reader(_)
            | EventKind::Claim(_) => return,
        };
        match kind {
            RoomKind::Channel { channel, owner } => {
                let earlier = self
                    .owners
                    .get(channel)
                    .is_none_or(|(first, _)| stamp() < *first);
                if earlier {
                    self.owners
                        .insert(channel.clone(), (stamp(), owner.clone()));
                }
            }
            RoomKind::Join { user, channel } => self.membership(user, channel, stamp(), true),
            RoomKind::Leave { user, channel } => self.membership(user, channel, stamp(), false),
            RoomKind::Prepare { tx, channel, .. } if e.origin == self.origin => {
                self.stopped.insert(tx.clone(), channel.clone());
            }
            RoomKind::Abort { tx } if e.origin == self.origin => {
                self.stopped.remove(tx);
            }
            RoomKind::Delete { tx, channel } => {
                if e.origin == self.origin {
                    self.stopped.remove(tx);
                }
                self.deleted.insert(channel.clone());
            }
            RoomKind::Topic {
                user,
                channel,
                topic,
            } => {
                let later = self
                    .topics
                    .get(channel)
                    .is_none_or(|(latest, _, _)| stamp() > *latest);
                if later {
                    self.topics
                        .insert(channel.clone(), (stamp(), topic.clone(), user.clone()));
                }
            }
            // Another server's prepare or abort stops nothing here.
            RoomKind::Prepare { .. } | RoomKind::Abort { .. } => {}
        }
    }

    fn membership(&mut self, user: &Name, channel: &Name, stamp: Stamp, joined: bool) {
        let people = self.members.entry(channel.clone()).or_default();
        if people.get(user).is_some_and(|(latest, _)| *latest > stamp) {
            return;
        }
        people.insert(user.clone(), (stamp, joined));
        let rooms = self.joined.entry(user.clone()).or_default();
        if joined {
            rooms.insert(channel.clone());
        } else {
            rooms.remove(channel);
        }
    }

    /// Who may delete `channel`: the person its first creation named, if it named one.
    pub(super) fn owner(&self, channel: &Name) -> Option<&Name> {
        if let Some(owner) = self.claimed.get(channel) {
            return owner.as_ref();
        }
        self.owners.get(channel).and_then(|(_, o)| o.as_ref())
    }

    pub(super) fn is_deleted(&self, channel: &Name) -> bool {
        self.deleted.contains(channel)
    }

    /// Whether this server takes no posts or joins for `channel` while its delete is decided.
    pub(super) fn is_stopped(&self, channel: &Name) -> bool {
        self.stopped.values().any(|c| c == channel)
    }

    pub(super) fn is_member(&self, channel: &Name, user: &Name) -> bool {
        self.joined.get(user).is_some_and(|r| r.contains(channel))
    }

    /// The people in `channel`.
    pub(super) fn members(&self, channel: &Name) -> impl Iterator<Item = &Name> {
        self.members
            .get(channel)
            .into_iter()
            .flatten()
            .filter(|(_, (_, joined))| *joined)
            .map(|(user, _)| user)
    }

    /// What `join` and `members` say about `channel` besides its people: its owner and its
    /// topic (and who set it), when it has them.
    pub(super) fn describe(&self, channel: &Name, mut reply: Envelope) -> Envelope {
        if let Some(owner) = self.owner(channel) {
            reply = reply.with("owner", owner.as_str());
        }
        if let Some((_, Some(topic), by)) = self.topics.get(channel) {
            reply = reply
                .with("topic", topic.as_str())
                .with("topic_by", by.as_str());
        }
        reply
    }

    /// The rooms `user` is in, deleted ones left out.
    pub(super) fn joined(&self, user: &Name) -> impl Iterator<Item = &Name> {
        self.joined
            .get(user)
            .into_iter()
            .flatten()
            .filter(|c| !self.deleted.contains(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{event, name};

    fn join(origin: &str, seq: u64, lamport: u64, joined: bool) -> Event {
        let (user, channel) = (name("ana"), name("general"));
        let kind = if joined {
            EventKind::Room(RoomKind::Join { user, channel })
        } else {
            EventKind::Room(RoomKind::Leave { user, channel })
        };
        event(origin, seq, lamport, kind)
    }

    /// Every order of the same events gives the same rooms.
    #[test]
    fn membership_and_ownership_do_not_depend_on_the_order_events_arrive_in() {
        let events = [
            event(
                "s2",
                1,
                4,
                EventKind::Room(RoomKind::Channel {
                    channel: name("general"),
                    owner: Some(name("bob")),
                }),
            ),
            event(
                "s1",
                1,
                4,
                EventKind::Room(RoomKind::Channel {
                    channel: name("general"),
                    owner: Some(name("ana")),
                }),
            ),
            join("s1", 2, 5, true),
            join("s2", 2, 7, false),
            join("s3", 1, 7, true),
        ];
        let mut orders = vec![events.to_vec()];
        let mut rev = events.to_vec();
        rev.reverse();
        orders.push(rev);
        orders.push(vec![
            events[4].clone(),
            events[2].clone(),
            events[0].clone(),
            events[3].clone(),
            events[1].clone(),
        ]);
        for order in orders {
            let mut r = Rooms::new("s9");
            for e in &order {
                r.on_event(e);
            }
            // (4, s1) sorts before (4, s2): ana created it first.
            assert_eq!(r.owner(&name("general")), Some(&name("ana")));
            // (7, s3) is the latest: ana's join wins over the leave at (7, s2).
            assert!(r.is_member(&name("general"), &name("ana")));
            assert_eq!(r.members(&name("general")).count(), 1);
        }
    }

    #[test]
    fn only_own_prepares_stop_a_channel_until_decided_here() {
        let general = name("general");
        let prepare = |origin: &str| {
            event(
                origin,
                1,
                3,
                EventKind::Room(RoomKind::Prepare {
                    tx: "t1".into(),
                    channel: general.clone(),
                    owner: name("ana"),
                    leader: name("s1"),
                    participants: vec![name("s1"), name("s2")],
                }),
            )
        };
        let mut r = Rooms::new("s1");
        r.on_event(&prepare("s2"));
        assert!(!r.is_stopped(&general));
        r.on_event(&prepare("s1"));
        assert!(r.is_stopped(&general));
        r.on_event(&event(
            "s1",
            2,
            4,
            EventKind::Room(RoomKind::Abort { tx: "t1".into() }),
        ));
        assert!(!r.is_stopped(&general));
        assert!(!r.is_deleted(&general));
        r.on_event(&event(
            "s2",
            2,
            5,
            EventKind::Room(RoomKind::Delete {
                tx: "t2".into(),
                channel: general.clone(),
            }),
        ));
        assert!(r.is_deleted(&general));
    }

    /// Two topics set at once on two servers: the later in the total order holds, whichever
    /// arrives last.
    #[test]
    fn the_latest_topic_in_the_total_order_holds_in_any_order() {
        let topic = |origin: &str, lamport: u64, text: Option<&str>| {
            event(
                origin,
                1,
                lamport,
                EventKind::Room(RoomKind::Topic {
                    user: name("ana"),
                    channel: name("general"),
                    topic: text.map(str::to_owned),
                }),
            )
        };
        let (a, b, c) = (
            topic("s1", 5, Some("one")),
            topic("s2", 5, Some("two")),
            topic("s1", 4, None),
        );
        for order in [[&a, &b, &c], [&c, &b, &a], [&b, &c, &a]] {
            let mut r = Rooms::new("s9");
            for e in order {
                r.on_event(e);
            }
            let said = r.describe(&name("general"), Envelope::new("members"));
            // (5, s2) sorts after (5, s1) and (4, s1).
            assert_eq!(said.data.str("topic").unwrap(), "two");
        }
    }
}
