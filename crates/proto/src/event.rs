use rmpv::Value;

use crate::{Map, Name, ProtoError, MAX_TEXT_BYTES};

/// Where a read marker stands: a room, or a private conversation with someone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    Channel(Name),
    With(Name),
}

/// One state change, as stored and replicated.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The server that accepted the event first.
    pub origin: String,
    /// Position in the origin's sequence; `(origin, seq)` is the event's unique id.
    pub seq: u64,
    /// Lamport time at the origin; with `origin` it orders events the same way everywhere.
    pub lamport: u64,
    /// The origin's physical time when it accepted the event, seconds since the Unix epoch.
    pub timestamp: f64,
    pub kind: EventKind,
    /// The client's request id, when it sent one: every server remembers it, so a request
    /// retried through another server takes effect once.
    pub request: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Login {
        user: Name,
    },
    /// A channel is created; `owner`, when the request named one (ours), may delete it.
    Channel {
        channel: Name,
        owner: Option<Name>,
    },
    Post {
        user: Name,
        channel: Name,
        message: String,
    },
    Direct {
        src: Name,
        dst: Name,
        message: String,
    },
    /// `user` has a password now: its argon2id hash, as a PHC string.
    Register {
        user: Name,
        hash: String,
    },
    /// `user` logged in with the password, opening the session whose token hashes to `session`
    /// (it also records the login, as `Login` does).
    Session {
        user: Name,
        session: String,
    },
    /// The session ended.
    Logout {
        user: Name,
        session: String,
    },
    /// A new password; every session opened before it ends, but `keep` (the one it came from).
    Password {
        user: Name,
        hash: String,
        keep: Option<String>,
    },
    /// The account is closed, and its name retired.
    Unregister {
        user: Name,
    },
    /// The session was in use at the event's time (sessions expire when idle).
    Touch {
        user: Name,
        session: String,
    },
    /// `user` is in `channel` from now on.
    Join {
        user: Name,
        channel: Name,
    },
    /// `user` is no longer in `channel`.
    Leave {
        user: Name,
        channel: Name,
    },
    /// The origin is prepared to delete `channel` in the two-phase commit `tx`, led by
    /// `leader` among `participants`: it takes no more posts or joins for the channel until
    /// `tx` is decided (docs/rooms.md).
    Prepare {
        tx: String,
        channel: Name,
        owner: Name,
        leader: Name,
        participants: Vec<Name>,
    },
    /// The origin aborted `tx`.
    Abort {
        tx: String,
    },
    /// The origin committed `tx`: `channel` is deleted, everywhere, for good.
    Delete {
        tx: String,
        channel: Name,
    },
    /// `user` has read `place` up to message `id`, whose Lamport time is `at`.
    Read {
        user: Name,
        place: Place,
        id: crate::EventRef,
        at: u64,
    },
    /// `user`'s `device` has taken its inbox up to `cursor` (per origin, a sequence number).
    Taken {
        user: Name,
        device: String,
        cursor: crate::peer::Vector,
    },
    /// `user`'s settings: whether others learn when they have read (`receipts`).
    Settings {
        user: Name,
        receipts: bool,
    },
}

/// The longest password hash or session hash an event may carry, in bytes.
pub const MAX_HASH_BYTES: usize = 256;

impl EventKind {
    /// The kind's name, as events carry it and the store keeps it.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Login { .. } => "login",
            EventKind::Channel { .. } => "channel",
            EventKind::Post { .. } => "post",
            EventKind::Direct { .. } => "message",
            EventKind::Register { .. } => "register",
            EventKind::Session { .. } => "session",
            EventKind::Logout { .. } => "logout",
            EventKind::Password { .. } => "password",
            EventKind::Unregister { .. } => "unregister",
            EventKind::Touch { .. } => "touch",
            EventKind::Join { .. } => "join",
            EventKind::Leave { .. } => "leave",
            EventKind::Prepare { .. } => "prepare",
            EventKind::Abort { .. } => "abort",
            EventKind::Delete { .. } => "delete",
            EventKind::Taken { .. } => "taken",
            EventKind::Read { .. } => "read",
            EventKind::Settings { .. } => "settings",
        }
    }

    /// For a post or a private message, the two kinds people read: the service its
    /// publication names and the topic it goes to. `None` for every other kind, which
    /// publishes nothing and has no history.
    pub fn message_topic(&self) -> Option<(&'static str, &Name)> {
        match self {
            EventKind::Post { channel, .. } => Some(("publish", channel)),
            EventKind::Direct { dst, .. } => Some(("message", dst)),
            EventKind::Login { .. }
            | EventKind::Channel { .. }
            | EventKind::Register { .. }
            | EventKind::Session { .. }
            | EventKind::Logout { .. }
            | EventKind::Password { .. }
            | EventKind::Unregister { .. }
            | EventKind::Touch { .. }
            | EventKind::Join { .. }
            | EventKind::Leave { .. }
            | EventKind::Prepare { .. }
            | EventKind::Abort { .. }
            | EventKind::Delete { .. }
            | EventKind::Taken { .. }
            | EventKind::Read { .. }
            | EventKind::Settings { .. } => None,
        }
    }

    /// Whether the event is about rooms: their creation, who is in them, and the two-phase
    /// commit that deletes them. Servers fold these in memory at start-up.
    pub fn is_room(&self) -> bool {
        match self {
            EventKind::Channel { .. }
            | EventKind::Join { .. }
            | EventKind::Leave { .. }
            | EventKind::Prepare { .. }
            | EventKind::Abort { .. }
            | EventKind::Delete { .. } => true,
            EventKind::Login { .. }
            | EventKind::Post { .. }
            | EventKind::Direct { .. }
            | EventKind::Register { .. }
            | EventKind::Session { .. }
            | EventKind::Logout { .. }
            | EventKind::Password { .. }
            | EventKind::Unregister { .. }
            | EventKind::Touch { .. }
            | EventKind::Taken { .. }
            | EventKind::Read { .. }
            | EventKind::Settings { .. } => false,
        }
    }

    /// The person an account event is about: the kinds that make up accounts and sessions.
    pub fn account(&self) -> Option<&Name> {
        match self {
            EventKind::Register { user, .. }
            | EventKind::Session { user, .. }
            | EventKind::Logout { user, .. }
            | EventKind::Password { user, .. }
            | EventKind::Unregister { user }
            | EventKind::Touch { user, .. } => Some(user),
            EventKind::Login { .. }
            | EventKind::Channel { .. }
            | EventKind::Post { .. }
            | EventKind::Direct { .. }
            | EventKind::Join { .. }
            | EventKind::Leave { .. }
            | EventKind::Prepare { .. }
            | EventKind::Abort { .. }
            | EventKind::Delete { .. }
            | EventKind::Taken { .. }
            | EventKind::Read { .. }
            | EventKind::Settings { .. } => None,
        }
    }

    /// The kind's own fields, as map entries: what the store keeps, what servers pass on, and
    /// (for posts and private messages) what publications and history show.
    pub(crate) fn fields(&self) -> Vec<(Value, Value)> {
        let field = |k: &str, v: &str| (Value::from(k), Value::from(v));
        match self {
            EventKind::Login { user } => vec![field("user", user.as_str())],
            EventKind::Channel { channel, owner } => {
                let mut f = vec![field("channel", channel.as_str())];
                if let Some(o) = owner {
                    f.push(field("owner", o.as_str()));
                }
                f
            }
            EventKind::Post {
                user,
                channel,
                message,
            } => vec![
                field("user", user.as_str()),
                field("channel", channel.as_str()),
                field("message", message),
            ],
            EventKind::Direct { src, dst, message } => vec![
                field("src", src.as_str()),
                field("dst", dst.as_str()),
                field("message", message),
            ],
            EventKind::Register { user, hash } => {
                vec![field("user", user.as_str()), field("hash", hash)]
            }
            EventKind::Session { user, session }
            | EventKind::Logout { user, session }
            | EventKind::Touch { user, session } => {
                vec![field("user", user.as_str()), field("session", session)]
            }
            EventKind::Password { user, hash, keep } => {
                let mut f = vec![field("user", user.as_str()), field("hash", hash)];
                if let Some(k) = keep {
                    f.push(field("keep", k));
                }
                f
            }
            EventKind::Unregister { user } => vec![field("user", user.as_str())],
            EventKind::Join { user, channel } | EventKind::Leave { user, channel } => vec![
                field("user", user.as_str()),
                field("channel", channel.as_str()),
            ],
            EventKind::Prepare {
                tx,
                channel,
                owner,
                leader,
                participants,
            } => vec![
                field("tx", tx),
                field("channel", channel.as_str()),
                field("owner", owner.as_str()),
                field("leader", leader.as_str()),
                (
                    Value::from("participants"),
                    Value::Array(
                        participants
                            .iter()
                            .map(|p| Value::from(p.as_str()))
                            .collect(),
                    ),
                ),
            ],
            EventKind::Abort { tx } => vec![field("tx", tx)],
            EventKind::Delete { tx, channel } => {
                vec![field("tx", tx), field("channel", channel.as_str())]
            }
            EventKind::Read {
                user,
                place,
                id,
                at,
            } => vec![
                field("user", user.as_str()),
                match place {
                    Place::Channel(c) => field("channel", c.as_str()),
                    Place::With(w) => field("with", w.as_str()),
                },
                field("id", &id.to_string()),
                (Value::from("at"), Value::from(*at)),
            ],
            EventKind::Taken {
                user,
                device,
                cursor,
            } => vec![
                field("user", user.as_str()),
                field("device", device),
                (Value::from("cursor"), crate::peer::vector_value(cursor)),
            ],
            EventKind::Settings { user, receipts } => vec![
                field("user", user.as_str()),
                (Value::from("receipts"), Value::from(*receipts)),
            ],
        }
    }
}

impl Event {
    /// The event's id as the protocol shows it: `origin:seq`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.origin, self.seq)
    }

    /// An upper bound of the bytes [`Event::to_value`] takes once encoded: the strings, plus a
    /// generous allowance for keys, headers and numbers (at most ten fields of at most 24 bytes
    /// each besides their strings).
    pub fn size_bound(&self) -> usize {
        let strings = match &self.kind {
            EventKind::Login { user } => user.as_str().len(),
            EventKind::Channel { channel, owner } => {
                channel.as_str().len() + owner.as_ref().map_or(0, |o| o.as_str().len())
            }
            EventKind::Post {
                user,
                channel,
                message,
            } => user.as_str().len() + channel.as_str().len() + message.len(),
            EventKind::Direct { src, dst, message } => {
                src.as_str().len() + dst.as_str().len() + message.len()
            }
            EventKind::Register { user, hash } => user.as_str().len() + hash.len(),
            EventKind::Session { user, session }
            | EventKind::Logout { user, session }
            | EventKind::Touch { user, session } => user.as_str().len() + session.len(),
            EventKind::Password { user, hash, keep } => {
                user.as_str().len() + hash.len() + keep.as_ref().map_or(0, String::len)
            }
            EventKind::Unregister { user } => user.as_str().len(),
            EventKind::Join { user, channel } | EventKind::Leave { user, channel } => {
                user.as_str().len() + channel.as_str().len()
            }
            EventKind::Prepare {
                tx,
                channel,
                owner,
                leader,
                participants,
            } => {
                // Each participant: its bytes and a string header of at most 5.
                tx.len()
                    + channel.as_str().len()
                    + owner.as_str().len()
                    + leader.as_str().len()
                    + participants
                        .iter()
                        .map(|p| p.as_str().len() + 5)
                        .sum::<usize>()
            }
            EventKind::Abort { tx } => tx.len(),
            EventKind::Delete { tx, channel } => tx.len() + channel.as_str().len(),
            EventKind::Read {
                user, place, id, ..
            } => {
                user.as_str().len()
                    + match place {
                        Place::Channel(n) | Place::With(n) => n.as_str().len(),
                    }
                    + id.origin.len()
                    + 20
            }
            // Each entry: the origin, a string header of at most 5, a number of at most 9.
            EventKind::Taken {
                user,
                device,
                cursor,
            } => {
                user.as_str().len()
                    + device.len()
                    + cursor.keys().map(|o| o.len() + 14).sum::<usize>()
            }
            EventKind::Settings { user, .. } => user.as_str().len(),
        };
        strings + self.origin.len() + self.request.as_ref().map_or(0, String::len) + 256
    }

    /// The map that carries the event between servers (see docs/replication.md).
    pub fn to_value(&self) -> Value {
        let mut m = vec![
            (Value::from("origin"), Value::from(self.origin.as_str())),
            (Value::from("seq"), Value::from(self.seq)),
            (Value::from("lamport"), Value::from(self.lamport)),
            (Value::from("timestamp"), Value::from(self.timestamp)),
            (Value::from("kind"), Value::from(self.kind.name())),
        ];
        if let Some(r) = &self.request {
            m.push((Value::from("request"), Value::from(r.as_str())));
        }
        m.extend(self.kind.fields());
        Value::Map(m)
    }

    /// The event's own fields, as the store keeps them: a MessagePack map of what its kind
    /// carries (everything but origin, seq, lamport, timestamp, kind and request, which have
    /// columns of their own). [`Event::from_stored`] reads it back.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        // Writing into a Vec cannot fail.
        rmpv::encode::write_value(&mut out, &Value::Map(self.kind.fields())).expect("write to Vec");
        out
    }

    /// Rebuilds an event from the parts the store keeps, validating every field as if it had
    /// arrived from the network.
    ///
    /// # Errors
    /// When the body is not a map, or a field is missing or invalid.
    pub fn from_stored(
        origin: &str,
        seq: u64,
        lamport: u64,
        timestamp: f64,
        kind: &str,
        request: Option<String>,
        body: &[u8],
    ) -> Result<Event, ProtoError> {
        let mut rd = body;
        let value = rmpv::decode::read_value_with_max_depth(&mut rd, 16)
            .map_err(|e| ProtoError::Malformed(e.to_string()))?;
        let Value::Map(mut m) = value else {
            return Err(ProtoError::NotAMap);
        };
        m.extend([
            (Value::from("origin"), Value::from(origin)),
            (Value::from("seq"), Value::from(seq)),
            (Value::from("lamport"), Value::from(lamport)),
            (Value::from("timestamp"), Value::from(timestamp)),
            (Value::from("kind"), Value::from(kind)),
        ]);
        if let Some(r) = request {
            m.push((Value::from("request"), Value::from(r)));
        }
        Event::from_value(Value::Map(m))
    }

    /// Reads an event sent by another server, validating every field.
    ///
    /// # Errors
    /// When a field is missing, mistyped or invalid, or the kind is unknown.
    pub fn from_value(v: Value) -> Result<Event, ProtoError> {
        let Value::Map(entries) = v else {
            return Err(ProtoError::WrongType {
                field: "events",
                expected: "a list of event maps",
            });
        };
        let m = Map(entries);
        let origin = m.name("origin")?.to_string();
        let seq = m.counter("seq")?;
        if seq == 0 {
            return Err(ProtoError::WrongType {
                field: "seq",
                expected: "a positive integer",
            });
        }
        let kind = match m.str("kind")? {
            "login" => EventKind::Login {
                user: m.name("user")?,
            },
            "channel" => EventKind::Channel {
                channel: m.name("channel")?,
                owner: match m.get("owner") {
                    None | Some(Value::Nil) => None,
                    Some(_) => Some(m.name("owner")?),
                },
            },
            "post" => EventKind::Post {
                user: m.name("user")?,
                channel: m.name("channel")?,
                message: m.text("message", MAX_TEXT_BYTES)?,
            },
            "message" => EventKind::Direct {
                src: m.name("src")?,
                dst: m.name("dst")?,
                message: m.text("message", MAX_TEXT_BYTES)?,
            },
            "register" => EventKind::Register {
                user: m.name("user")?,
                hash: m.text("hash", MAX_HASH_BYTES)?,
            },
            "session" => EventKind::Session {
                user: m.name("user")?,
                session: m.text("session", MAX_HASH_BYTES)?,
            },
            "logout" => EventKind::Logout {
                user: m.name("user")?,
                session: m.text("session", MAX_HASH_BYTES)?,
            },
            "password" => EventKind::Password {
                user: m.name("user")?,
                hash: m.text("hash", MAX_HASH_BYTES)?,
                keep: match m.opt_str("keep")? {
                    Some(_) => Some(m.text("keep", MAX_HASH_BYTES)?),
                    None => None,
                },
            },
            "unregister" => EventKind::Unregister {
                user: m.name("user")?,
            },
            "touch" => EventKind::Touch {
                user: m.name("user")?,
                session: m.text("session", MAX_HASH_BYTES)?,
            },
            "join" => EventKind::Join {
                user: m.name("user")?,
                channel: m.name("channel")?,
            },
            "leave" => EventKind::Leave {
                user: m.name("user")?,
                channel: m.name("channel")?,
            },
            "prepare" => EventKind::Prepare {
                tx: crate::room::tx_id(&m, "tx")?,
                channel: m.name("channel")?,
                owner: m.name("owner")?,
                leader: m.name("leader")?,
                participants: crate::room::participants(&m)?,
            },
            "abort" => EventKind::Abort {
                tx: crate::room::tx_id(&m, "tx")?,
            },
            "delete" => EventKind::Delete {
                tx: crate::room::tx_id(&m, "tx")?,
                channel: m.name("channel")?,
            },
            "read" => EventKind::Read {
                user: m.name("user")?,
                place: match m.opt_str("channel")? {
                    Some(_) => Place::Channel(m.name("channel")?),
                    None => Place::With(m.name("with")?),
                },
                id: crate::EventRef::parse("id", m.str("id")?)?,
                at: m.counter("at")?,
            },
            "taken" => EventKind::Taken {
                user: m.name("user")?,
                device: match m.opt_str("device")? {
                    Some(d) if d.len() <= crate::MAX_DEVICE_BYTES => d.to_owned(),
                    Some(_) => {
                        return Err(ProtoError::TextTooLong {
                            field: "device",
                            max: crate::MAX_DEVICE_BYTES,
                        })
                    }
                    None => String::new(),
                },
                cursor: crate::peer::vector_field(
                    m.get("cursor").ok_or(ProtoError::Missing("cursor"))?,
                    "cursor",
                )?,
            },
            "settings" => EventKind::Settings {
                user: m.name("user")?,
                receipts: m
                    .opt_bool("receipts")?
                    .ok_or(ProtoError::Missing("receipts"))?,
            },
            other => return Err(ProtoError::UnknownService(format!("event kind {other}"))),
        };
        Ok(Event {
            origin,
            seq,
            lamport: m.counter("lamport")?,
            timestamp: m.timestamp().unwrap_or(0.0),
            kind,
            request: crate::request::request_id(&m, "request")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in [
            EventKind::Login { user: name("ana") },
            EventKind::Channel {
                channel: name("general"),
                owner: None,
            },
            EventKind::Channel {
                channel: name("general"),
                owner: Some(name("ana")),
            },
            EventKind::Post {
                user: name("ana"),
                channel: name("general"),
                message: "hi".into(),
            },
            EventKind::Direct {
                src: name("ana"),
                dst: name("bob"),
                message: "psst".into(),
            },
            EventKind::Register {
                user: name("ana"),
                hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            },
            EventKind::Session {
                user: name("ana"),
                session: "ab".repeat(32),
            },
            EventKind::Logout {
                user: name("ana"),
                session: "ab".repeat(32),
            },
            EventKind::Password {
                user: name("ana"),
                hash: "h2".into(),
                keep: Some("cd".repeat(32)),
            },
            EventKind::Password {
                user: name("ana"),
                hash: "h3".into(),
                keep: None,
            },
            EventKind::Unregister { user: name("ana") },
            EventKind::Touch {
                user: name("ana"),
                session: "ab".repeat(32),
            },
            EventKind::Join {
                user: name("ana"),
                channel: name("general"),
            },
            EventKind::Leave {
                user: name("ana"),
                channel: name("general"),
            },
            EventKind::Prepare {
                tx: "s1-0123456789abcdef".into(),
                channel: name("general"),
                owner: name("ana"),
                leader: name("s2"),
                participants: vec![name("s1"), name("s2"), name("s3")],
            },
            EventKind::Abort {
                tx: "s1-0123456789abcdef".into(),
            },
            EventKind::Delete {
                tx: "s1-0123456789abcdef".into(),
                channel: name("general"),
            },
            EventKind::Taken {
                user: name("ana"),
                device: "phone".into(),
                cursor: [("s1".to_owned(), 9), ("s2".to_owned(), 4)].into(),
            },
            EventKind::Read {
                user: name("ana"),
                place: Place::With(name("bob")),
                id: crate::EventRef {
                    origin: "s2".into(),
                    seq: 7,
                },
                at: 30,
            },
            EventKind::Settings {
                user: name("ana"),
                receipts: false,
            },
            EventKind::Read {
                user: name("ana"),
                place: Place::Channel(name("den")),
                id: crate::EventRef {
                    origin: "s1".into(),
                    seq: 8,
                },
                at: 31,
            },
        ] {
            let e = Event {
                origin: "s1".into(),
                seq: 7,
                lamport: 9,
                timestamp: 12.5,
                kind,
                request: Some("r-1".into()),
            };
            assert_eq!(Event::from_value(e.to_value()).unwrap(), e);
            let back = Event::from_stored(
                &e.origin,
                e.seq,
                e.lamport,
                e.timestamp,
                e.kind.name(),
                e.request.clone(),
                &e.body(),
            );
            assert_eq!(back.unwrap(), e);
        }
    }

    #[test]
    fn the_size_bound_holds() {
        let long = "é".repeat(crate::MAX_TEXT_BYTES / 2);
        for kind in [
            EventKind::Login { user: name("ana") },
            EventKind::Post {
                // The longest names in bytes: 32 letters of four bytes each.
                user: name(&"𐀀".repeat(crate::MAX_NAME_LEN)),
                channel: name(&"𐀁".repeat(crate::MAX_NAME_LEN)),
                message: long.clone(),
            },
            EventKind::Direct {
                src: name("ana"),
                dst: name("bob"),
                message: long.clone(),
            },
            EventKind::Password {
                user: name(&"𐀀".repeat(crate::MAX_NAME_LEN)),
                hash: "h".repeat(MAX_HASH_BYTES),
                keep: Some("k".repeat(MAX_HASH_BYTES)),
            },
            EventKind::Prepare {
                tx: "t".repeat(crate::room::MAX_TX_BYTES),
                channel: name(&"𐀁".repeat(crate::MAX_NAME_LEN)),
                owner: name(&"𐀀".repeat(crate::MAX_NAME_LEN)),
                leader: name(&"𐀂".repeat(crate::MAX_NAME_LEN)),
                participants: (0..crate::room::MAX_PARTICIPANTS)
                    .map(|i| name(&format!("{}{i}", "𐀃".repeat(crate::MAX_NAME_LEN - 3))))
                    .collect(),
            },
        ] {
            let e = Event {
                origin: "𐀂".repeat(crate::MAX_NAME_LEN),
                seq: crate::MAX_COUNTER,
                lamport: crate::MAX_COUNTER,
                timestamp: f64::MAX,
                kind,
                request: Some("r".repeat(crate::request::MAX_REQUEST_ID)),
            };
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &e.to_value()).unwrap();
            assert!(
                bytes.len() <= e.size_bound(),
                "{} > {}",
                bytes.len(),
                e.size_bound()
            );
        }
    }

    #[test]
    fn bad_events_are_refused() {
        let good = Event {
            origin: "s1".into(),
            seq: 1,
            lamport: 1,
            timestamp: 1.0,
            kind: EventKind::Login { user: name("ana") },
            request: None,
        };
        let mut v = good.to_value();
        if let Value::Map(m) = &mut v {
            m.retain(|(k, _)| k.as_str() != Some("user"));
        }
        assert!(Event::from_value(v).is_err());
        assert!(Event::from_value(Value::from(3)).is_err());
        let mut zero = good.clone();
        zero.seq = 0;
        assert!(Event::from_value(zero.to_value()).is_err());
    }
}
