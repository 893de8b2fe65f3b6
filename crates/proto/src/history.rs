use std::fmt;

use rmpv::Value;

use crate::{Envelope, Event, EventKind, MessageKind, Name, ProtoError};

/// The most messages one `history` reply carries.
pub const MAX_HISTORY: usize = 500;
/// How many messages `history` returns when the request does not say.
pub const DEFAULT_HISTORY: usize = 50;

/// Whose messages: a channel's posts, or the private messages between two users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    Channel(Name),
    Direct(Name, Name),
}

/// A position in the one order every server shows: Lamport time, then origin. Written
/// `"<lamport>:<origin>"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub lamport: u64,
    pub origin: String,
}

impl Cursor {
    pub fn of(e: &Event) -> Cursor {
        Cursor {
            lamport: e.lamport,
            origin: e.origin.clone(),
        }
    }

    fn parse(field: &'static str, s: &str) -> Result<Cursor, ProtoError> {
        let wrong = ProtoError::WrongType {
            field,
            expected: "a cursor from an earlier history reply",
        };
        let (lamport, origin) = s.split_once(':').ok_or(wrong.clone())?;
        let lamport = lamport
            .parse::<u64>()
            .ok()
            .filter(|l| *l <= crate::MAX_COUNTER)
            .ok_or(wrong.clone())?;
        let origin = Name::parse(origin).map_err(|_| wrong)?.to_string();
        Ok(Cursor { lamport, origin })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.lamport, self.origin)
    }
}

/// A `history` request (our addition): a conversation's messages, the newest `limit`, or the
/// `limit` just before or just after a cursor, within a window of time if asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub of: Conversation,
    pub limit: usize,
    pub before: Option<Cursor>,
    pub after: Option<Cursor>,
    pub window: Window,
}

/// A `history` request's bounds in time (the servers' clock, in milliseconds since the epoch:
/// a time given in seconds is read to the nearest millisecond, so that it writes back the
/// same), and which end of what lies within its bounds a page is taken from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Only messages stamped at or after this (`since`).
    pub since: Option<u64>,
    /// Only messages stamped before this (`until`).
    pub until: Option<u64>,
    /// The newest `limit` within the bounds, even when `after` or `since` is given
    /// (`latest`).
    pub latest: bool,
}

impl Window {
    /// Whether a page is taken from the oldest end of its bounds: paging forward.
    pub fn forward(&self, after: Option<&Cursor>) -> bool {
        !self.latest && (after.is_some() || self.since.is_some())
    }

    fn read(d: &crate::Map) -> Result<Window, ProtoError> {
        let time = |field: &'static str| -> Result<Option<u64>, ProtoError> {
            match d.get(field) {
                None | Some(Value::Nil) => Ok(None),
                Some(v) => v
                    .as_f64()
                    // Up to 10^12 s (the year 33658): every millisecond to then is exact as a
                    // float of seconds, and reads back as itself.
                    .filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e12)
                    .map(|t| Some((t * 1e3).round() as u64))
                    .ok_or(ProtoError::WrongType {
                        field,
                        expected: "a time in seconds since the Unix epoch",
                    }),
            }
        };
        let latest = match d.get("latest") {
            None | Some(Value::Nil) => false,
            Some(Value::Boolean(b)) => *b,
            Some(_) => {
                return Err(ProtoError::WrongType {
                    field: "latest",
                    expected: "true or false",
                })
            }
        };
        Ok(Window {
            since: time("since")?,
            until: time("until")?,
            latest,
        })
    }

    fn put(&self, out: &mut Vec<(Value, Value)>) {
        let secs = |ms: u64| Value::from(ms as f64 / 1e3);
        if let Some(t) = self.since {
            out.push((Value::from("since"), secs(t)));
        }
        if let Some(t) = self.until {
            out.push((Value::from("until"), secs(t)));
        }
        if self.latest {
            out.push((Value::from("latest"), Value::from(true)));
        }
    }
}

/// A request's `limit`: [`DEFAULT_HISTORY`] when absent, at most [`MAX_HISTORY`] (a larger
/// one is cut down), at least `least`.
pub(crate) fn limit(d: &crate::Map, least: u64) -> Result<usize, ProtoError> {
    match d.get("limit") {
        None | Some(Value::Nil) => Ok(DEFAULT_HISTORY),
        Some(v) => match v.as_u64() {
            Some(n) if n >= least => {
                Ok(usize::try_from(n).map_or(MAX_HISTORY, |n| n.min(MAX_HISTORY)))
            }
            _ => Err(ProtoError::WrongType {
                field: "limit",
                expected: if least > 0 {
                    "a positive integer"
                } else {
                    "a non-negative integer"
                },
            }),
        },
    }
}

impl HistoryQuery {
    /// Reads a `history` request.
    ///
    /// # Errors
    /// When neither `channel` nor `user` and `with` are given, a name, cursor or time is
    /// invalid, or the limit is not a positive number.
    pub fn parse(env: &Envelope) -> Result<HistoryQuery, ProtoError> {
        HistoryQuery::read(&env.data)
    }

    /// Reads a `history` request's fields from its `data`.
    ///
    /// # Errors
    /// As [`HistoryQuery::parse`].
    fn read(d: &crate::Map) -> Result<HistoryQuery, ProtoError> {
        let of = match d.opt_str("channel")? {
            Some(_) => Conversation::Channel(d.name("channel")?),
            None => Conversation::Direct(d.name("user")?, d.name("with")?),
        };
        let limit = limit(d, 1)?;
        let before = d
            .opt_str("before")?
            .map(|s| Cursor::parse("before", s))
            .transpose()?;
        let after = d
            .opt_str("after")?
            .map(|s| Cursor::parse("after", s))
            .transpose()?;
        Ok(HistoryQuery {
            of,
            limit,
            before,
            after,
            window: Window::read(d)?,
        })
    }

    /// The reply: `messages` oldest first, each with its `cursor`, and `more` when further
    /// messages lie beyond them (older ones, or newer ones when paging with `after`).
    pub fn reply(events: &[Event], more: bool) -> Envelope {
        let messages: Vec<Value> = events.iter().map(message).collect();
        crate::Reply::ok("history")
            .with("messages", messages)
            .with("more", more)
    }
}

impl HistoryQuery {
    /// Reads a `history` answer back into events (oldest first) and whether more lie beyond:
    /// the inverse of [`HistoryQuery::reply`].
    ///
    /// # Errors
    /// When `messages` is not a list of well-formed messages.
    pub fn parse_reply(env: &Envelope) -> Result<(Vec<Event>, bool), ProtoError> {
        let wrong = ProtoError::WrongType {
            field: "messages",
            expected: "a list of history messages",
        };
        let Some(Value::Array(items)) = env.data.get("messages") else {
            return Err(wrong);
        };
        let events = items
            .iter()
            .map(|item| match item {
                Value::Map(m) => message_event(&crate::Map(m.clone())),
                _ => Err(wrong.clone()),
            })
            .collect::<Result<Vec<Event>, ProtoError>>()?;
        let more = matches!(env.data.get("more"), Some(Value::Boolean(true)));
        Ok((events, more))
    }
}

/// A post or private message as history and publications show it (`id`, `clock`,
/// `timestamp`, and `user`/`channel` or `src`/`dst`, with `message`), as an event.
///
/// # Errors
/// When a field is missing or malformed.
pub fn message_event(m: &crate::Map) -> Result<Event, ProtoError> {
    let id = m.str("id")?;
    let (origin, seq) = id
        .rsplit_once(':')
        .and_then(|(o, s)| Some((Name::parse(o).ok()?, s.parse::<u64>().ok()?)))
        .ok_or(ProtoError::WrongType {
            field: "id",
            expected: "an event id, origin:seq",
        })?;
    let kind = match m.opt_str("channel")? {
        Some(_) => EventKind::Message(MessageKind::Post {
            user: m.name("user")?,
            channel: m.name("channel")?,
            message: m.str("message")?.to_owned(),
        }),
        None => EventKind::Message(MessageKind::Direct {
            src: m.name("src")?,
            dst: m.name("dst")?,
            message: m.str("message")?.to_owned(),
        }),
    };
    Ok(Event {
        origin: origin.to_string(),
        seq,
        lamport: m.counter("clock")?,
        timestamp: m.timestamp().unwrap_or(0.0),
        kind,
        request: None,
    })
}

fn message(e: &Event) -> Value {
    let mut m = vec![
        (Value::from("id"), Value::from(e.id())),
        (
            Value::from("cursor"),
            Value::from(Cursor::of(e).to_string()),
        ),
        (Value::from("timestamp"), Value::from(e.timestamp)),
        (Value::from("clock"), Value::from(e.lamport)),
    ];
    // History holds only posts and private messages.
    if e.kind.message_topic().is_some() {
        m.extend(e.kind.fields());
    }
    Value::Map(m)
}

/// A `history` request's query: its fields sit in the request's `data` itself (the declared
/// key is not used).
impl crate::field::Codec<HistoryQuery> for crate::field::Plain {
    fn put(q: &HistoryQuery, _: &'static str, out: &mut Vec<(Value, Value)>) {
        let mut add = |k: &str, v: Value| out.push((Value::from(k), v));
        match &q.of {
            Conversation::Channel(c) => add("channel", c.as_str().into()),
            Conversation::Direct(a, b) => {
                add("user", a.as_str().into());
                add("with", b.as_str().into());
            }
        }
        add("limit", Value::from(q.limit as u64));
        if let Some(c) = &q.before {
            add("before", c.to_string().into());
        }
        if let Some(c) = &q.after {
            add("after", c.to_string().into());
        }
        q.window.put(out);
    }
    fn get(m: &crate::Map, _: &'static str) -> Result<HistoryQuery, ProtoError> {
        HistoryQuery::read(m)
    }
    fn size(_: &HistoryQuery) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_reads_back_into_its_events() {
        let n = |s: &str| Name::parse(s).unwrap();
        let events = vec![
            Event {
                origin: "s1".into(),
                seq: 4,
                lamport: 9,
                timestamp: 12.5,
                kind: EventKind::Message(MessageKind::Post {
                    user: n("ana"),
                    channel: n("general"),
                    message: "hi".into(),
                }),
                request: None,
            },
            Event {
                origin: "s2".into(),
                seq: 1,
                lamport: 11,
                timestamp: 13.0,
                kind: EventKind::Message(MessageKind::Direct {
                    src: n("bob"),
                    dst: n("ana"),
                    message: "psst".into(),
                }),
                request: None,
            },
        ];
        let env = Envelope::decode(&HistoryQuery::reply(&events, true).to_bytes()).unwrap();
        assert_eq!(HistoryQuery::parse_reply(&env).unwrap(), (events, true));
        assert!(HistoryQuery::parse_reply(&Envelope::new("history")).is_err());
    }

    #[test]
    fn parses_channels_conversations_and_cursors() {
        let q = HistoryQuery::parse(&Envelope::new("history").with("channel", "general")).unwrap();
        assert_eq!(q.of, Conversation::Channel(Name::parse("general").unwrap()));
        assert_eq!(
            (q.limit, q.before.clone(), q.after.clone()),
            (DEFAULT_HISTORY, None, None)
        );
        let q = HistoryQuery::parse(
            &Envelope::new("history")
                .with("user", "ana")
                .with("with", "bob")
                .with("limit", 9999)
                .with("before", "42:s2"),
        )
        .unwrap();
        assert_eq!(q.limit, MAX_HISTORY);
        assert_eq!(
            q.before,
            Some(Cursor {
                lamport: 42,
                origin: "s2".into()
            })
        );
        for bad in [
            Envelope::new("history"),
            Envelope::new("history")
                .with("channel", "general")
                .with("limit", 0),
            Envelope::new("history")
                .with("channel", "general")
                .with("before", "x"),
            Envelope::new("history")
                .with("channel", "general")
                .with("since", "yesterday"),
            Envelope::new("history")
                .with("channel", "general")
                .with("until", -1.0),
            Envelope::new("history")
                .with("channel", "general")
                .with("until", f64::NAN),
            Envelope::new("history")
                .with("channel", "general")
                .with("latest", 1),
        ] {
            assert!(HistoryQuery::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_range_and_a_window_read_back_as_written() {
        let q = HistoryQuery::parse(
            &Envelope::new("history")
                .with("channel", "general")
                .with("after", "1:s1")
                .with("before", "9:s2")
                .with("since", 1795379524.5)
                .with("until", 1795379600_u64)
                .with("latest", true),
        )
        .unwrap();
        let window = Window {
            since: Some(1_795_379_524_500),
            until: Some(1_795_379_600_000),
            latest: true,
        };
        assert_eq!(q.window, window);
        assert!(!window.forward(q.after.as_ref()));
        assert!(Window::default().forward(q.after.as_ref()));
        assert!(!Window::default().forward(None));
        let mut fields = Vec::new();
        <crate::field::Plain as crate::field::Codec<HistoryQuery>>::put(&q, "", &mut fields);
        let again = HistoryQuery::read(&crate::Map(fields)).unwrap();
        assert_eq!(again, q);
    }
}
