//! Shared fixtures: an example of every event kind, and a small history of two servers that
//! holds every kind. The proto tests, the store's conformance suite and the fuzz seeds all
//! start from here, and a test holds them to the declared kinds, so a new kind cannot be left
//! out of any of them.

use crate::claim::{Claim, Claimed};
use crate::{
    AccountKind, ClaimKind, Event, EventKind, EventRef, Family, MessageKind, Name, Place,
    ReaderKind, Request, RoomKind, Secret,
};

fn name(s: &str) -> Name {
    // Every name here is a literal that passes validation.
    Name::parse(s).expect("a valid example name")
}

fn id(origin: &str, seq: u64) -> EventRef {
    EventRef {
        origin: origin.into(),
        seq,
    }
}

/// A session hash, as servers keep them (64 hex digits).
fn session(c: char) -> String {
    c.to_string().repeat(64)
}

/// Every client request, at least one of each service in the order declared, with optional
/// fields both set and unset.
pub fn requests() -> Vec<Request> {
    vec![
        Request::Login { user: name("ana") },
        Request::Users {},
        Request::Channel {
            channel: name("general"),
            user: None,
        },
        Request::Channel {
            channel: name("general"),
            user: Some(name("ana")),
        },
        Request::Channels {},
        Request::Publish {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        },
        Request::Posts {
            user: name("ana"),
            channel: name("general"),
            messages: vec!["first line".into(), "second line".into()],
        },
        Request::Message {
            src: name("ana"),
            dst: name("bob"),
            message: "psst".into(),
        },
        Request::History {
            query: crate::HistoryQuery {
                of: crate::Conversation::Direct(name("ana"), name("bob")),
                limit: 7,
                before: Some(crate::Cursor {
                    lamport: 9,
                    origin: "s2".into(),
                }),
                after: None,
                window: Default::default(),
            },
        },
        Request::History {
            query: crate::HistoryQuery {
                of: crate::Conversation::Channel(name("general")),
                limit: crate::DEFAULT_HISTORY,
                before: None,
                after: Some(crate::Cursor {
                    lamport: 3,
                    origin: "s1".into(),
                }),
                window: Default::default(),
            },
        },
        Request::Register { user: name("ana") },
        Request::Logout { user: name("ana") },
        Request::Password {
            user: name("ana"),
            new: Secret::new("new secret"),
        },
        Request::Unregister { user: name("ana") },
        Request::Beat {
            user: name("ana"),
            device: "laptop".into(),
            leaving: true,
        },
        Request::Unseal {
            user: name("ana"),
            id: EventRef {
                origin: "s2".into(),
                seq: 9,
            },
        },
        Request::Join {
            user: name("ana"),
            channel: name("general"),
            limit: 20,
        },
        Request::Leave {
            user: name("ana"),
            channel: name("general"),
        },
        Request::Members {
            channel: name("general"),
        },
        Request::Joined { user: name("ana") },
        Request::Delete {
            user: name("ana"),
            channel: name("general"),
        },
        Request::Read {
            user: name("ana"),
            id: EventRef {
                origin: "s1".into(),
                seq: 4,
            },
        },
        Request::Unread { user: name("ana") },
        Request::Inbox {
            user: name("ana"),
            device: "phone".into(),
            limit: 100,
        },
        Request::Taken {
            user: name("ana"),
            device: "phone".into(),
            cursor: [("s1".to_owned(), 40), ("s2".to_owned(), 3)].into(),
        },
        Request::Settings {
            user: name("ana"),
            receipts: Some(false),
        },
        Request::Settings {
            user: name("ana"),
            receipts: None,
        },
        Request::Receipts {
            user: name("ana"),
            id: EventRef {
                origin: "s2".into(),
                seq: 9,
            },
        },
        Request::Topic {
            user: name("ana"),
            channel: name("general"),
            topic: Some("plans for the week".into()),
        },
        Request::Topic {
            user: name("ana"),
            channel: name("general"),
            topic: None,
        },
    ]
}

/// At least one example of every kind, with its optional fields both set and unset.
pub fn kinds() -> Vec<EventKind> {
    history()
        .into_iter()
        .map(|e| e.kind)
        .chain(variants())
        .collect()
}

/// The forms of kinds that [`history`] does not show: optional fields the other way.
fn variants() -> Vec<EventKind> {
    vec![
        AccountKind::Password {
            user: name("ana"),
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaDM".into(),
            keep: None,
        }
        .into(),
        RoomKind::Channel {
            channel: name("hall"),
            owner: None,
        }
        .into(),
        ReaderKind::Taken {
            user: name("bob"),
            device: String::new(),
            cursor: crate::peer::Vector::new(),
        }
        .into(),
        ClaimKind::Vote {
            slot: 3,
            round: 2,
            leader: name("s1"),
            claim: None,
        }
        .into(),
    ]
    .into_iter()
    .chain(claims().into_iter().map(|c| {
        ClaimKind::Decided {
            slot: 9,
            claim: Some(c),
        }
        .into()
    }))
    .collect()
}

fn claimed(claim: Claim, server: &str, request: Option<&str>) -> Claimed {
    Claimed {
        claim,
        server: name(server),
        request: request.map(str::to_owned),
    }
}

/// Every form of claim, with its optional fields both set and unset.
pub fn claims() -> Vec<Claimed> {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    vec![
        claimed(Claim::Person { name: name("dee") }, "s1", Some("r-1")),
        claimed(
            Claim::Channel {
                name: name("den"),
                owner: Some(name("dee")),
            },
            "s2",
            None,
        ),
        claimed(
            Claim::Channel {
                name: name("hall"),
                owner: None,
            },
            "s3",
            Some("r-2"),
        ),
        claimed(
            Claim::Password {
                user: name("dee"),
                hash: hash.into(),
                was: None,
                keep: None,
            },
            "s1",
            None,
        ),
        claimed(
            Claim::Password {
                user: name("dee"),
                hash: format!("{hash}2"),
                was: Some(hash.into()),
                keep: Some("5e5510a".into()),
            },
            "s1",
            Some("r-3"),
        ),
        claimed(
            Claim::Retire {
                user: name("dee"),
                was: Some(format!("{hash}2")),
            },
            "s2",
            None,
        ),
        claimed(
            Claim::Retire {
                user: name("eve"),
                was: None,
            },
            "s2",
            None,
        ),
        claimed(
            Claim::Session {
                user: name("dee"),
                session: "5e5510a".into(),
                was: hash.into(),
                at_ms: 1_733_000_000_500,
            },
            "s3",
            Some("r-4"),
        ),
    ]
}

/// Every step of the messages that decide claims.
pub fn claim_messages() -> Vec<palaver_core::claims::Msg<Claimed>> {
    use palaver_core::claims::{Ballot, Entry, Msg, Outcome};
    let b = |round: u64, node: &str| Ballot {
        round,
        node: node.into(),
    };
    let all = claims();
    let one = || Entry::Claim(all[1].clone());
    vec![
        Msg::Prepare {
            ballot: b(3, "s2"),
            from: 4,
        },
        Msg::Promise {
            ballot: b(3, "s2"),
            accepted: vec![(4, b(2, "s1"), one()), (5, b(2, "s1"), Entry::Noop)],
            decided: vec![(6, Entry::Claim(all[0].clone())), (7, Entry::Noop)],
        },
        Msg::Promise {
            ballot: b(3, "s2"),
            accepted: Vec::new(),
            decided: Vec::new(),
        },
        Msg::Accept {
            ballot: b(3, "s2"),
            slot: 8,
            entry: one(),
        },
        Msg::Accept {
            ballot: b(3, "s2"),
            slot: 9,
            entry: Entry::Noop,
        },
        Msg::Accepted {
            ballot: b(3, "s2"),
            slot: 8,
        },
        Msg::Nack {
            ballot: b(3, "s2"),
            promised: b(4, "s3"),
            applied: 7,
        },
        Msg::Forward {
            id: 12,
            value: all[2].clone(),
        },
        Msg::Outcome {
            id: 12,
            outcome: Outcome::Decided { slot: 8 },
        },
        Msg::Outcome {
            id: 13,
            outcome: Outcome::NoMajority,
        },
        Msg::Outcome {
            id: 14,
            outcome: Outcome::Unknown,
        },
        Msg::Decided {
            slot: 8,
            entry: one(),
        },
        Msg::Catchup { from: 2 },
        Msg::Log {
            entries: all
                .iter()
                .enumerate()
                .map(|(i, c)| (i as u64 + 1, Entry::Claim(c.clone())))
                .chain([(99, Entry::Noop)])
                .collect(),
        },
    ]
}

/// Two servers' events, interleaved in Lamport time, holding every kind. Each family's
/// events come in a block of their own, in the order the store's schema learned them
/// (messages and logins first, then accounts, rooms, and readers), so a store of an earlier
/// schema can hold a prefix of them.
pub fn history() -> Vec<Event> {
    let mut events = Vec::new();
    let mut lamport = 0;
    let mut seqs = std::collections::BTreeMap::<&str, u64>::new();
    let mut add = |origin: &'static str, kind: EventKind| {
        lamport += 1;
        let seq = seqs.entry(origin).or_insert(0);
        *seq += 1;
        events.push(Event {
            origin: origin.into(),
            seq: *seq,
            lamport,
            timestamp: 1_767_270_000.0 + lamport as f64,
            kind,
            request: seq.is_multiple_of(2).then(|| format!("req-{origin}-{seq}")),
        });
    };
    let post = |user: &str, text: &str| MessageKind::Post {
        user: name(user),
        channel: name("general"),
        message: text.into(),
    };
    let direct = |src: &str, dst: &str, text: &str| MessageKind::Direct {
        src: name(src),
        dst: name(dst),
        message: text.into(),
    };
    // Logins, the first channel, posts and private messages (schema 4 had these alone).
    add("s1", AccountKind::Login { user: name("ana") }.into());
    add(
        "s1",
        RoomKind::Channel {
            channel: name("general"),
            owner: None,
        }
        .into(),
    );
    add("s2", AccountKind::Login { user: name("bob") }.into());
    add("s1", post("ana", "one").into());
    add("s2", post("bob", "two").into());
    add("s2", direct("bob", "ana", "psst").into());
    add("s1", post("ana", "three").into());
    add("s1", direct("ana", "bob", "hi bob").into());
    add("s1", AccountKind::Login { user: name("ana") }.into());
    // Accounts.
    let bob = || name("bob");
    add(
        "s2",
        AccountKind::Register {
            user: bob(),
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        }
        .into(),
    );
    add(
        "s2",
        AccountKind::Session {
            user: bob(),
            session: session('a'),
            slot: Some(1),
        }
        .into(),
    );
    add(
        "s2",
        AccountKind::Touch {
            user: bob(),
            session: session('a'),
        }
        .into(),
    );
    add(
        "s2",
        AccountKind::Password {
            user: bob(),
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaDI".into(),
            keep: Some(session('a')),
        }
        .into(),
    );
    add(
        "s2",
        AccountKind::Logout {
            user: bob(),
            session: session('a'),
        }
        .into(),
    );
    add("s2", AccountKind::Login { user: name("cid") }.into());
    add("s2", AccountKind::Unregister { user: name("cid") }.into());
    // Rooms: one owned, joined and left, and a delete aborted once, then committed.
    let den = || name("den");
    add(
        "s1",
        RoomKind::Channel {
            channel: den(),
            owner: Some(name("ana")),
        }
        .into(),
    );
    add(
        "s1",
        RoomKind::Join {
            user: name("ana"),
            channel: den(),
        }
        .into(),
    );
    add(
        "s2",
        RoomKind::Join {
            user: bob(),
            channel: den(),
        }
        .into(),
    );
    add(
        "s2",
        RoomKind::Leave {
            user: bob(),
            channel: den(),
        }
        .into(),
    );
    add(
        "s2",
        RoomKind::Topic {
            user: bob(),
            channel: den(),
            topic: Some("quiet, please".into()),
        }
        .into(),
    );
    let prepare = |tx: &str| RoomKind::Prepare {
        tx: tx.into(),
        channel: den(),
        owner: name("ana"),
        leader: name("s1"),
        participants: vec![name("s1"), name("s2")],
    };
    add("s1", prepare("s1-0001").into());
    add(
        "s1",
        RoomKind::Abort {
            tx: "s1-0001".into(),
        }
        .into(),
    );
    add("s1", prepare("s1-0002").into());
    add(
        "s1",
        RoomKind::Delete {
            tx: "s1-0002".into(),
            channel: den(),
        }
        .into(),
    );
    // Readers.
    add(
        "s1",
        ReaderKind::Read {
            user: name("ana"),
            place: Place::With(bob()),
            id: id("s2", 3),
            at: 6,
        }
        .into(),
    );
    add(
        "s1",
        ReaderKind::Read {
            user: name("ana"),
            place: Place::Channel(name("general")),
            id: id("s2", 2),
            at: 5,
        }
        .into(),
    );
    add(
        "s1",
        ReaderKind::Taken {
            user: name("ana"),
            device: "phone".into(),
            cursor: [("s1".to_owned(), 5), ("s2".to_owned(), 3)].into(),
        }
        .into(),
    );
    add(
        "s2",
        ReaderKind::Settings {
            user: bob(),
            receipts: false,
        }
        .into(),
    );
    // Claims: a promise, the acceptances of a slot, its decision, and a no-op slot.
    add(
        "s2",
        ClaimKind::Promise {
            round: 1,
            leader: name("s2"),
        }
        .into(),
    );
    let cy = claimed(Claim::Person { name: name("cy") }, "s1", Some("req-cy"));
    for origin in ["s1", "s2"] {
        add(
            origin,
            ClaimKind::Vote {
                slot: 1,
                round: 1,
                leader: name("s2"),
                claim: Some(cy.clone()),
            }
            .into(),
        );
    }
    add(
        "s2",
        ClaimKind::Decided {
            slot: 1,
            claim: Some(cy),
        }
        .into(),
    );
    add(
        "s2",
        ClaimKind::Decided {
            slot: 2,
            claim: None,
        }
        .into(),
    );
    events
}

/// The events of [`history`] that a store of schema `version` could hold: every family it
/// had a table for (see the store's migrations), as the prefix of the history they make.
pub fn held_by_schema(version: u32) -> Vec<Event> {
    let held = |e: &Event| match version {
        0..=4 => ["login", "channel", "post", "message"].contains(&e.kind.name()),
        5..=6 => e.kind.family() <= Family::Account || e.kind.name() == "channel",
        7 => e.kind.family() <= Family::Room,
        8..=9 => e.kind.family() <= Family::Reader,
        _ => true,
    };
    history().into_iter().take_while(held).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_example_and_the_history_holds_every_kind() {
        let named = |events: &mut dyn Iterator<Item = EventKind>| {
            let mut names: Vec<&str> = events.map(|k| k.name()).collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        let mut declared = EventKind::NAMES.to_vec();
        declared.sort_unstable();
        assert_eq!(named(&mut kinds().into_iter()), declared);
        assert_eq!(named(&mut history().into_iter().map(|e| e.kind)), declared);
    }

    #[test]
    fn older_schemas_hold_a_prefix_of_families() {
        let names =
            |v: u32| -> Vec<&str> { held_by_schema(v).iter().map(|e| e.kind.name()).collect() };
        assert_eq!(held_by_schema(4).len(), 9);
        assert!(names(4)
            .iter()
            .all(|k| ["login", "channel", "post", "message"].contains(k)));
        assert!(names(6).contains(&"unregister") && !names(6).contains(&"join"));
        assert!(names(7).contains(&"delete") && !names(7).contains(&"read"));
        assert!(names(9).contains(&"settings") && !names(9).contains(&"promise"));
        assert_eq!(held_by_schema(10), history());
    }
}
