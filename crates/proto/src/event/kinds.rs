//! Every kind of event, declared once, by family. The types, names, codec and size bound are
//! derived from this list (see `declare.rs`); a field's codec is [`Plain`](crate::field::Plain)
//! unless it says otherwise.

use crate::claim::Claimed;
use crate::field::{ClaimField, Device, OptText, Participants, Text, TxId};
use crate::peer::Vector;
use crate::request::MAX_TOPIC_BYTES;
use crate::{EventRef, Name, MAX_TEXT_BYTES};

use super::declare::event_kinds;
use super::{Place, MAX_HASH_BYTES};

event_kinds! {
    /// What people read: posts and private messages. They publish, have history, and merge
    /// on every side of a partition.
    Message(MessageKind) {
        Post = "post" {
            user: Name,
            channel: Name,
            message: String as Text<MAX_TEXT_BYTES>,
        },
        Direct = "message" {
            src: Name,
            dst: Name,
            message: String as Text<MAX_TEXT_BYTES>,
        },
    }

    /// Who a name belongs to: logins, passwords, sessions. Servers fold them in memory at
    /// start-up (sessions and passwords from `account_events`, names from `users`).
    Account(AccountKind) {
        /// A login of `user`, registering the name on first use.
        Login = "login" { user: Name },
        /// `user` has a password now: its argon2id hash, as a PHC string.
        Register = "register" {
            user: Name,
            hash: String as Text<MAX_HASH_BYTES>,
        },
        /// `user` logged in with the password, opening the session whose token hashes to
        /// `session` (it also records the login, as `Login` does). `slot`: the slot of the
        /// log of claims that opened it (none in data written before claims).
        Session = "session" {
            user: Name,
            session: String as Text<MAX_HASH_BYTES>,
            slot: Option<u64>,
        },
        /// The session ended.
        Logout = "logout" {
            user: Name,
            session: String as Text<MAX_HASH_BYTES>,
        },
        /// A new password; every session opened before it ends, but `keep` (the one it came
        /// from).
        Password = "password" {
            user: Name,
            hash: String as Text<MAX_HASH_BYTES>,
            keep: Option<String> as OptText<MAX_HASH_BYTES>,
        },
        /// The account is closed, and its name retired.
        Unregister = "unregister" { user: Name },
        /// The session was in use at the event's time (sessions expire when idle).
        Touch = "touch" {
            user: Name,
            session: String as Text<MAX_HASH_BYTES>,
        },
    }

    /// Rooms: their creation, who is in them, and the two-phase commit that deletes them.
    /// Servers fold them in memory at start-up (`room_events`).
    Room(RoomKind) {
        /// A channel is created; `owner`, when the request named one (ours), may delete it.
        Channel = "channel" {
            channel: Name,
            owner: Option<Name>,
        },
        /// `user` is in `channel` from now on.
        Join = "join" { user: Name, channel: Name },
        /// `user` is no longer in `channel`.
        Leave = "leave" { user: Name, channel: Name },
        /// The origin is prepared to delete `channel` in the two-phase commit `tx`, led by
        /// `leader` among `participants`: it takes no more posts or joins for the channel
        /// until `tx` is decided (docs/rooms.md).
        Prepare = "prepare" {
            tx: String as TxId,
            channel: Name,
            owner: Name,
            leader: Name,
            participants: Vec<Name> as Participants,
        },
        /// The origin aborted `tx`.
        Abort = "abort" { tx: String as TxId },
        /// The origin committed `tx`: `channel` is deleted, everywhere, for good.
        Delete = "delete" {
            tx: String as TxId,
            channel: Name,
        },
        /// `user` set `channel`'s topic (none: cleared). The latest in the total order holds.
        Topic = "topic" {
            user: Name,
            channel: Name,
            topic: Option<String> as OptText<MAX_TOPIC_BYTES>,
        },
    }

    /// What people have read and taken, and how they want it told. Servers fold them in
    /// memory at start-up (`reader_events`).
    Reader(ReaderKind) {
        /// `user` has read `place` up to message `id`, whose Lamport time is `at`.
        Read = "read" {
            user: Name,
            place: Place,
            id: EventRef,
            at: u64,
        },
        /// `user`'s `device` has taken its inbox up to `cursor` (per origin, a sequence
        /// number).
        Taken = "taken" {
            user: Name,
            device: String as Device,
            cursor: Vector,
        },
        /// `user`'s settings: whether others learn when they have read (`receipts`).
        Settings = "settings" { user: Name, receipts: bool },
    }

    /// Claims: what makes a name someone's, decided once for the whole cluster by a majority
    /// (`palaver_core::claims`). A server's promises and acceptances are its own records
    /// (kept so that they survive a crash); a decision is the leader's record of a slot of
    /// the log of claims, which every server applies in slot order.
    Claim(ClaimKind) {
        /// The origin takes nothing below ballot (`round`, `leader`) from now on.
        Promise = "promise" { round: u64, leader: Name },
        /// The origin accepted `claim` (none: a no-op) for `slot` under ballot (`round`,
        /// `leader`).
        Vote = "vote" {
            slot: u64,
            round: u64,
            leader: Name,
            claim: Option<Claimed> as ClaimField,
        },
        /// A majority accepted `claim` (none: a no-op) for `slot`.
        Decided = "decided" {
            slot: u64,
            claim: Option<Claimed> as ClaimField,
        },
    }
}

/// What a room event does to the store's lists of channel names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming<'a> {
    /// The channel's name is taken (by its first creation).
    Creates(&'a Name),
    /// The channel is deleted for good (its posts go with it).
    Deletes(&'a Name),
    Nothing,
}

/// What a room event tells the room's subscribers: published on `channel`'s topic, the
/// notice's fields, and the id it carries instead of the event's, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice<'a> {
    pub channel: &'a Name,
    pub service: &'static str,
    pub fields: Vec<(&'static str, rmpv::Value)>,
    pub id: Option<&'a str>,
}

/// A step of a two-phase delete that a room event records (docs/rooms.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// The origin prepared transaction `tx`.
    Prepared {
        tx: &'a str,
        channel: &'a Name,
        owner: &'a Name,
        leader: &'a Name,
        participants: &'a [Name],
    },
    /// The origin decided `tx`: committed (the channel is deleted) or aborted.
    Decided { tx: &'a str, commit: bool },
}

impl RoomKind {
    /// The step of a two-phase delete it records, if it is one (`engine::deletes`).
    pub fn step(&self) -> Option<Step<'_>> {
        match self {
            RoomKind::Prepare {
                tx,
                channel,
                owner,
                leader,
                participants,
            } => Some(Step::Prepared {
                tx,
                channel,
                owner,
                leader,
                participants,
            }),
            RoomKind::Delete { tx, .. } => Some(Step::Decided { tx, commit: true }),
            RoomKind::Abort { tx } => Some(Step::Decided { tx, commit: false }),
            RoomKind::Channel { .. }
            | RoomKind::Join { .. }
            | RoomKind::Leave { .. }
            | RoomKind::Topic { .. } => None,
        }
    }

    /// What the event does to the store's channel names (`store::project`).
    pub fn naming(&self) -> Naming<'_> {
        match self {
            RoomKind::Channel { channel, .. } => Naming::Creates(channel),
            RoomKind::Delete { channel, .. } => Naming::Deletes(channel),
            RoomKind::Join { .. }
            | RoomKind::Leave { .. }
            | RoomKind::Prepare { .. }
            | RoomKind::Abort { .. }
            | RoomKind::Topic { .. } => Naming::Nothing,
        }
    }

    /// What the room's subscribers are told of it (`Publication::notice`), if anything.
    pub fn notice(&self) -> Option<Notice<'_>> {
        let who = |user: &Name| vec![("user", rmpv::Value::from(user.as_str()))];
        Some(match self {
            RoomKind::Join { user, channel } | RoomKind::Leave { user, channel } => Notice {
                channel,
                service: self.name(),
                fields: who(user),
                id: None,
            },
            RoomKind::Topic {
                user,
                channel,
                topic,
            } => Notice {
                channel,
                service: "topic",
                fields: match topic {
                    Some(t) => [who(user), vec![("topic", rmpv::Value::from(t.as_str()))]].concat(),
                    None => who(user),
                },
                id: None,
            },
            RoomKind::Delete { tx, channel } => Notice {
                channel,
                service: "delete",
                fields: Vec::new(),
                id: Some(tx),
            },
            RoomKind::Channel { .. } | RoomKind::Prepare { .. } | RoomKind::Abort { .. } => {
                return None
            }
        })
    }
}

impl MessageKind {
    /// The service its publication names and the topic it goes to.
    pub fn topic(&self) -> (&'static str, &Name) {
        match self {
            MessageKind::Post { channel, .. } => ("publish", channel),
            MessageKind::Direct { dst, .. } => ("message", dst),
        }
    }
}
