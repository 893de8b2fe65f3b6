use rmpv::Value;

use crate::{Map, Name, ProtoError};

mod declare;
mod kinds;

pub use kinds::{
    AccountKind, ClaimKind, EventKind, Family, MessageKind, Naming, Notice, ReaderKind, RoomKind,
    Step,
};

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

/// The longest password hash or session hash an event may carry, in bytes.
pub const MAX_HASH_BYTES: usize = 256;

impl EventKind {
    /// For a post or a private message, the two kinds people read: the service its
    /// publication names and the topic it goes to. `None` for every other family, which
    /// publishes no message and has no history.
    pub fn message_topic(&self) -> Option<(&'static str, &Name)> {
        match self {
            EventKind::Message(m) => Some(m.topic()),
            EventKind::Account(_)
            | EventKind::Room(_)
            | EventKind::Reader(_)
            | EventKind::Claim(_) => None,
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
        let strings = self.kind.strings();
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
        let kind = EventKind::decode(m.str("kind")?, &m)?;
        Ok(Event {
            origin,
            seq,
            lamport: m.counter("lamport")?,
            timestamp: m.timestamp().unwrap_or(0.0),
            kind,
            request: crate::request::request_id(&m, "request", crate::request::MAX_EVENT_REQUEST)?,
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
        for kind in crate::examples::kinds() {
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
            EventKind::Account(AccountKind::Login { user: name("ana") }),
            EventKind::Message(MessageKind::Post {
                // The longest names in bytes: 32 letters of four bytes each.
                user: name(&"𐀀".repeat(crate::MAX_NAME_LEN)),
                channel: name(&"𐀁".repeat(crate::MAX_NAME_LEN)),
                message: long.clone(),
            }),
            EventKind::Message(MessageKind::Direct {
                src: name("ana"),
                dst: name("bob"),
                message: long.clone(),
            }),
            EventKind::Account(AccountKind::Password {
                user: name(&"𐀀".repeat(crate::MAX_NAME_LEN)),
                hash: "h".repeat(MAX_HASH_BYTES),
                keep: Some("k".repeat(MAX_HASH_BYTES)),
            }),
            EventKind::Room(RoomKind::Prepare {
                tx: "t".repeat(crate::room::MAX_TX_BYTES),
                channel: name(&"𐀁".repeat(crate::MAX_NAME_LEN)),
                owner: name(&"𐀀".repeat(crate::MAX_NAME_LEN)),
                leader: name(&"𐀂".repeat(crate::MAX_NAME_LEN)),
                participants: (0..crate::room::MAX_PARTICIPANTS)
                    .map(|i| name(&format!("{}{i}", "𐀃".repeat(crate::MAX_NAME_LEN - 3))))
                    .collect(),
            }),
        ]
        .into_iter()
        .chain(crate::examples::kinds())
        {
            let e = Event {
                origin: "𐀂".repeat(crate::MAX_NAME_LEN),
                seq: crate::MAX_COUNTER,
                lamport: crate::MAX_COUNTER,
                timestamp: f64::MAX,
                kind,
                request: Some("r".repeat(crate::request::MAX_EVENT_REQUEST)),
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
            kind: EventKind::Account(AccountKind::Login { user: name("ana") }),
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
