//! The server-to-server protocol, typed: every message a server's peer endpoint takes, and
//! every answer it gives.
//!
//! ```text
//!  Link (correlation id `cid`) ──PeerRequest──▶ peer endpoint ──PeerReply (same cid)──▶ Link
//!  one way (no answer):          Ack, Replica ──▶ peer endpoint
//! ```
//!
//! `clock` and `election` are the standard's; the rest are ours. Each request parses from an
//! envelope into a value that holds only valid fields, and encodes back to one; each answer
//! likewise, read by the service name it repeats. A peer endpoint is reached only by the
//! cluster's own processes (docs/architecture.md), but everything is validated all the same.

use std::collections::BTreeMap;

use rmpv::Value;

use crate::{Envelope, Event, Map, Name, ProtoError, Reply, Status};

/// Per origin, how many of its events a server holds.
pub type Vector = BTreeMap<String, u64>;

/// Who a server says it is, so that a peer that has not heard of it from the reference yet
/// can answer and reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Introduction {
    pub name: Name,
    pub rank: Option<u64>,
    /// Its peer endpoint.
    pub addr: Option<String>,
}

/// A request to a server's peer endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerRequest {
    /// The server's corrected clock (Berkeley), and whom it takes for coordinator (the ping of
    /// failure detection). Standard. With `set` (the standard's `time`), the clock is first
    /// shifted to show that time (as another implementation's coordinator may ask).
    Clock {
        from: Option<Introduction>,
        set: Option<f64>,
    },
    /// The bully algorithm's election message, from a lower rank. Standard.
    Election { from: Option<Introduction> },
    /// `coordinator` has won an election.
    Coordinator {
        coordinator: Name,
        rank: Option<u64>,
    },
    /// Shift the clock by `delta` seconds (Berkeley's correction).
    Adjust { delta: f64 },
    /// Start a Berkeley round (sent to the coordinator).
    Sync,
    /// What the server says about itself, for operators.
    Status,
    /// A digest of everything the server holds.
    Digest,
    /// The server's version vector; the asker's own, when given, also acknowledges what it
    /// holds of the answerer's events.
    Vector {
        from: Option<Introduction>,
        vector: Option<Vector>,
    },
    /// `origin`'s events after `after`.
    Fetch {
        origin: Name,
        after: u64,
        limit: Option<u64>,
    },
    /// One way: `from` holds `origin`'s events up to `seq`.
    Ack { from: Name, origin: Name, seq: u64 },
    /// One way: a batch of the sender's own events, in sequence.
    Replica { origin: Name, events: Vec<Event> },
    /// One way: clients' presence beats the sender took (presence is not in the log).
    Beats { beats: Vec<Beat> },
    /// One way: a message of the two-phase commit that deletes a channel, from server `from`
    /// (docs/rooms.md).
    TwoPc {
        from: Name,
        msg: palaver_core::commit::Msg<crate::room::Room>,
    },
    /// One way: a message of the majority that decides claims (names, passwords), from
    /// server `from` (`palaver_core::claims`).
    Claims {
        from: Name,
        msg: palaver_core::claims::Msg<crate::claim::Claimed>,
    },
}

/// One client's beat, as servers pass it on to each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    pub user: Name,
    pub device: String,
    /// When the server that took it received it (its Berkeley-corrected clock).
    pub at: f64,
    /// The client said it is closing.
    pub leaving: bool,
}

/// The most beats one `beats` message carries.
pub const MAX_BEATS: usize = 10_000;

fn beats(d: &Map) -> Result<Vec<Beat>, ProtoError> {
    let wrong = ProtoError::WrongType {
        field: "beats",
        expected: "a list of at most 10000 maps of user, device, at and leaving",
    };
    let Some(Value::Array(items)) = d.get("beats") else {
        return Err(wrong);
    };
    if items.len() > MAX_BEATS {
        return Err(wrong);
    }
    items
        .iter()
        .map(|item| {
            let Value::Map(entries) = item else {
                return Err(wrong.clone());
            };
            let m = Map(entries.clone());
            let device = m.opt_str("device")?.unwrap_or("");
            if device.len() > crate::MAX_DEVICE_BYTES {
                return Err(wrong.clone());
            }
            let at = m
                .opt_f64("at")?
                .filter(|t| t.is_finite())
                .ok_or(wrong.clone())?;
            Ok(Beat {
                user: m.name("user")?,
                device: device.to_owned(),
                at,
                leaving: m.opt_bool("leaving")?.unwrap_or(false),
            })
        })
        .collect()
}

/// The most seconds an `adjust` may shift a clock by: a year.
pub const MAX_ADJUST: f64 = 86_400.0 * 365.0;

impl PeerRequest {
    /// Every service a peer endpoint takes.
    pub const SERVICES: [&'static str; 14] = [
        "clock",
        "election",
        "coordinator",
        "adjust",
        "sync",
        "status",
        "digest",
        "vector",
        "fetch",
        "ack",
        "replica",
        "beats",
        "twopc",
        "claims",
    ];

    pub fn service(&self) -> &'static str {
        match self {
            PeerRequest::Clock { .. } => "clock",
            PeerRequest::Election { .. } => "election",
            PeerRequest::Coordinator { .. } => "coordinator",
            PeerRequest::Adjust { .. } => "adjust",
            PeerRequest::Sync => "sync",
            PeerRequest::Status => "status",
            PeerRequest::Digest => "digest",
            PeerRequest::Vector { .. } => "vector",
            PeerRequest::Fetch { .. } => "fetch",
            PeerRequest::Ack { .. } => "ack",
            PeerRequest::Replica { .. } => "replica",
            PeerRequest::Beats { .. } => "beats",
            PeerRequest::TwoPc { .. } => "twopc",
            PeerRequest::Claims { .. } => "claims",
        }
    }

    /// Whether the request is never answered when well-formed.
    pub fn is_one_way(&self) -> bool {
        matches!(
            self,
            PeerRequest::Ack { .. }
                | PeerRequest::Replica { .. }
                | PeerRequest::Beats { .. }
                | PeerRequest::TwoPc { .. }
                | PeerRequest::Claims { .. }
        )
    }

    /// Parses a decoded envelope, taking its data (a replica batch's events are moved, not
    /// copied).
    ///
    /// # Errors
    /// When the service is not a peer service, or a field is missing or invalid.
    pub fn parse(env: Envelope) -> Result<PeerRequest, ProtoError> {
        let Envelope { service, mut data } = env;
        let d = &data;
        Ok(match service.as_str() {
            "clock" => PeerRequest::Clock {
                from: introduction(d)?,
                set: match d.opt_f64("time")? {
                    Some(t) if !t.is_finite() => {
                        return Err(ProtoError::WrongType {
                            field: "time",
                            expected: "a finite number of seconds since the Unix epoch",
                        })
                    }
                    t => t,
                },
            },
            "election" => PeerRequest::Election {
                from: introduction(d)?,
            },
            "coordinator" => PeerRequest::Coordinator {
                coordinator: d.name("coordinator")?,
                rank: d.opt_counter("rank")?,
            },
            "adjust" => {
                let delta = d.opt_f64("delta")?.ok_or(ProtoError::Missing("delta"))?;
                if !delta.is_finite() || delta.abs() > MAX_ADJUST {
                    return Err(ProtoError::WrongType {
                        field: "delta",
                        expected: "a finite number of seconds, at most a year",
                    });
                }
                PeerRequest::Adjust { delta }
            }
            "sync" => PeerRequest::Sync,
            "status" => PeerRequest::Status,
            "digest" => PeerRequest::Digest,
            "vector" => PeerRequest::Vector {
                from: introduction(d)?,
                vector: match d.get("vector") {
                    None | Some(Value::Nil) => None,
                    Some(v) => Some(vector(v)?),
                },
            },
            "fetch" => PeerRequest::Fetch {
                origin: d.name("origin")?,
                after: d.counter("after")?,
                limit: d.opt_counter("limit")?,
            },
            "ack" => PeerRequest::Ack {
                from: d.name("user")?,
                origin: d.name("origin")?,
                seq: d.counter("seq")?,
            },
            "replica" => {
                let origin = d.name("origin")?;
                let events = events(&mut data)?;
                if events.iter().any(|e| e.origin != origin.as_str()) {
                    return Err(ProtoError::WrongType {
                        field: "events",
                        expected: "events of the batch's origin only",
                    });
                }
                PeerRequest::Replica { origin, events }
            }
            "beats" => PeerRequest::Beats { beats: beats(d)? },
            "twopc" => PeerRequest::TwoPc {
                from: d.name("from")?,
                msg: crate::room::parse_msg(d)?,
            },
            "claims" => PeerRequest::Claims {
                from: d.name("from")?,
                msg: crate::claim::parse_msg(d)?,
            },
            other => return Err(ProtoError::UnknownService(other.to_owned())),
        })
    }

    /// The envelope that carries the request (without timestamp, clock and correlation id).
    pub fn to_envelope(&self) -> Envelope {
        let env = Envelope::new(self.service());
        match self {
            PeerRequest::Clock { from, set } => {
                let env = introduce(env, from);
                match set {
                    Some(t) => env.with("time", *t),
                    None => env,
                }
            }
            PeerRequest::Election { from } => introduce(env, from),
            PeerRequest::Coordinator { coordinator, rank } => {
                let env = env.with("coordinator", coordinator.as_str());
                match rank {
                    Some(r) => env.with("rank", *r),
                    None => env,
                }
            }
            PeerRequest::Adjust { delta } => env.with("delta", *delta),
            PeerRequest::Sync | PeerRequest::Status | PeerRequest::Digest => env,
            PeerRequest::Vector { from, vector } => {
                let env = introduce(env, from);
                match vector {
                    Some(v) => env.with("vector", vector_value(v)),
                    None => env,
                }
            }
            PeerRequest::Fetch {
                origin,
                after,
                limit,
            } => {
                let env = env.with("origin", origin.as_str()).with("after", *after);
                match limit {
                    Some(l) => env.with("limit", *l),
                    None => env,
                }
            }
            PeerRequest::Ack { from, origin, seq } => env
                .with("user", from.as_str())
                .with("origin", origin.as_str())
                .with("seq", *seq),
            PeerRequest::Replica { origin, events } => env.with("origin", origin.as_str()).with(
                "events",
                events.iter().map(Event::to_value).collect::<Vec<_>>(),
            ),
            PeerRequest::Beats { beats } => env.with(
                "beats",
                beats
                    .iter()
                    .map(|b| {
                        Value::Map(vec![
                            ("user".into(), b.user.as_str().into()),
                            ("device".into(), b.device.as_str().into()),
                            ("at".into(), b.at.into()),
                            ("leaving".into(), b.leaving.into()),
                        ])
                    })
                    .collect::<Vec<_>>(),
            ),
            PeerRequest::TwoPc { from, msg } => {
                crate::room::fill_msg(env.with("from", from.as_str()), msg)
            }
            PeerRequest::Claims { from, msg } => {
                crate::claim::fill_msg(env.with("from", from.as_str()), msg)
            }
        }
    }
}

/// Whom an answering server takes for coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The answer does not say (a server of another implementation).
    Unsaid,
    /// Nobody yet.
    Nobody,
    /// This one, with its rank when given.
    Named(Name, Option<u64>),
}

/// A server's status, for operators.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub name: Name,
    pub addr: String,
    pub rank: Option<u64>,
    pub coordinator: Option<Name>,
    pub time: f64,
    pub offset: f64,
    pub skew: f64,
    pub peers: Vec<String>,
    /// Live peers whose last request went unanswered (a partition, a cut link).
    pub unreachable: Vec<String>,
    pub electing: bool,
    pub rounds: u64,
    pub users: u64,
    pub channels: u64,
}

/// A server's answer on its peer endpoint, read by the service it repeats.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerReply {
    /// `status: erro`, with the reason.
    Refused {
        service: String,
        reason: String,
    },
    Clock {
        time: f64,
        coordinator: Claim,
    },
    /// `election: OK`: a higher rank takes the election over.
    Election,
    /// Done, nothing to say (`coordinator`, `sync`).
    Done {
        service: String,
    },
    Adjusted {
        time: f64,
        offset: f64,
    },
    Status(Box<StatusReport>),
    Digest {
        name: Name,
        events: u64,
        vector: Vector,
        digest: String,
    },
    Vector {
        vector: Vector,
    },
    Fetched {
        origin: Name,
        events: Vec<Event>,
        more: bool,
    },
}

impl PeerReply {
    /// Parses an answer, taking its data.
    ///
    /// # Errors
    /// When a field the answer's service needs is missing or invalid.
    pub fn parse(env: Envelope) -> Result<PeerReply, ProtoError> {
        if Reply::status(&env) == Status::Error {
            return Ok(PeerReply::Refused {
                reason: Reply::error_text(&env).unwrap_or_default(),
                service: env.service,
            });
        }
        let Envelope { service, mut data } = env;
        let d = &data;
        Ok(match service.as_str() {
            "clock" => PeerReply::Clock {
                time: d.opt_f64("time")?.ok_or(ProtoError::Missing("time"))?,
                coordinator: match d.get("coordinator") {
                    None => Claim::Unsaid,
                    Some(Value::Nil) => Claim::Nobody,
                    Some(_) => {
                        Claim::Named(d.name("coordinator")?, d.opt_counter("coordinator_rank")?)
                    }
                },
            },
            "election" => match d.opt_str("election")? {
                Some("OK") => PeerReply::Election,
                _ => {
                    return Err(ProtoError::WrongType {
                        field: "election",
                        expected: "\"OK\"",
                    })
                }
            },
            "adjust" => PeerReply::Adjusted {
                time: d.opt_f64("time")?.ok_or(ProtoError::Missing("time"))?,
                offset: d.opt_f64("offset")?.ok_or(ProtoError::Missing("offset"))?,
            },
            "status" => PeerReply::Status(Box::new(StatusReport {
                name: d.name("name")?,
                addr: d.str("addr")?.to_owned(),
                rank: d.opt_counter("rank")?,
                coordinator: match d.opt_str("coordinator")? {
                    Some(_) => Some(d.name("coordinator")?),
                    None => None,
                },
                time: d.opt_f64("time")?.ok_or(ProtoError::Missing("time"))?,
                offset: d.opt_f64("offset")?.unwrap_or(0.0),
                skew: d.opt_f64("skew")?.unwrap_or(0.0),
                peers: match d.get("peers") {
                    None | Some(Value::Nil) => Vec::new(),
                    Some(_) => d.str_list("peers")?,
                },
                unreachable: match d.get("unreachable") {
                    None | Some(Value::Nil) => Vec::new(),
                    Some(_) => d.str_list("unreachable")?,
                },
                electing: matches!(d.get("electing"), Some(Value::Boolean(true))),
                rounds: d.opt_counter("rounds")?.unwrap_or(0),
                users: d.opt_counter("users")?.unwrap_or(0),
                channels: d.opt_counter("channels")?.unwrap_or(0),
            })),
            "digest" => PeerReply::Digest {
                name: d.name("name")?,
                events: d.counter("events")?,
                vector: vector(d.get("vector").ok_or(ProtoError::Missing("vector"))?)?,
                digest: d.str("digest")?.to_owned(),
            },
            "vector" => PeerReply::Vector {
                vector: vector(d.get("vector").ok_or(ProtoError::Missing("vector"))?)?,
            },
            "fetch" => {
                let origin = d.name("origin")?;
                let more = matches!(d.get("more"), Some(Value::Boolean(true)));
                let events = events(&mut data)?;
                if events.iter().any(|e| e.origin != origin.as_str()) {
                    return Err(ProtoError::WrongType {
                        field: "events",
                        expected: "events of the origin asked for",
                    });
                }
                PeerReply::Fetched {
                    origin,
                    events,
                    more,
                }
            }
            _ => PeerReply::Done { service },
        })
    }

    /// The envelope that carries the answer (without timestamp, clock and correlation id).
    pub fn to_envelope(&self) -> Envelope {
        match self {
            PeerReply::Refused { service, reason } => Reply::error(service, reason),
            PeerReply::Clock { time, coordinator } => {
                let env = Reply::ok("clock").with("time", *time);
                match coordinator {
                    Claim::Unsaid => env,
                    Claim::Nobody => env.with("coordinator", Value::Nil),
                    Claim::Named(name, rank) => {
                        let env = env.with("coordinator", name.as_str());
                        match rank {
                            Some(r) => env.with("coordinator_rank", *r),
                            None => env,
                        }
                    }
                }
            }
            PeerReply::Election => Reply::ok("election").with("election", "OK"),
            PeerReply::Done { service } => Reply::ok(service),
            PeerReply::Adjusted { time, offset } => Reply::ok("adjust")
                .with("time", *time)
                .with("offset", *offset),
            PeerReply::Status(s) => {
                let peers: Vec<Value> = s.peers.iter().map(|p| Value::from(p.as_str())).collect();
                let unreachable: Vec<Value> = s
                    .unreachable
                    .iter()
                    .map(|p| Value::from(p.as_str()))
                    .collect();
                let mut env = Reply::ok("status")
                    .with("name", s.name.as_str())
                    .with("addr", s.addr.as_str())
                    .with("time", s.time)
                    .with("offset", s.offset)
                    .with("skew", s.skew)
                    .with("peers", peers)
                    .with("unreachable", unreachable)
                    .with("electing", s.electing)
                    .with("rounds", s.rounds)
                    .with("users", s.users)
                    .with("channels", s.channels);
                if let Some(rank) = s.rank {
                    env = env.with("rank", rank);
                }
                if let Some(c) = &s.coordinator {
                    env = env.with("coordinator", c.as_str());
                }
                env
            }
            PeerReply::Digest {
                name,
                events,
                vector,
                digest,
            } => Reply::ok("digest")
                .with("name", name.as_str())
                .with("events", *events)
                .with("vector", vector_value(vector))
                .with("digest", digest.as_str()),
            PeerReply::Vector { vector } => {
                Reply::ok("vector").with("vector", vector_value(vector))
            }
            PeerReply::Fetched {
                origin,
                events,
                more,
            } => Reply::ok("fetch")
                .with("origin", origin.as_str())
                .with(
                    "events",
                    events.iter().map(Event::to_value).collect::<Vec<_>>(),
                )
                .with("more", *more),
        }
    }
}

fn introduction(d: &Map) -> Result<Option<Introduction>, ProtoError> {
    let Some(_) = d.opt_str("user")? else {
        return Ok(None);
    };
    Ok(Some(Introduction {
        name: d.name("user")?,
        rank: d.opt_counter("rank")?,
        addr: d.opt_str("addr")?.map(str::to_owned),
    }))
}

fn introduce(env: Envelope, from: &Option<Introduction>) -> Envelope {
    let Some(i) = from else { return env };
    let mut env = env.with("user", i.name.as_str());
    if let Some(rank) = i.rank {
        env = env.with("rank", rank);
    }
    if let Some(addr) = &i.addr {
        env = env.with("addr", addr.as_str());
    }
    env
}

/// A version vector: a map of origin names to counts, each at most 2^53−1.
fn vector(v: &Value) -> Result<Vector, ProtoError> {
    vector_field(v, "vector")
}

/// The most origins a vector names.
pub const MAX_ORIGINS: usize = 256;

/// A version vector in field `field`: a map of at most [`MAX_ORIGINS`] origin names to counts.
pub(crate) fn vector_field(v: &Value, field: &'static str) -> Result<Vector, ProtoError> {
    let wrong = ProtoError::WrongType {
        field,
        expected: "a map of at most 256 origin names to counts",
    };
    let Value::Map(entries) = v else {
        return Err(wrong);
    };
    if entries.len() > MAX_ORIGINS {
        return Err(wrong);
    }
    entries
        .iter()
        .map(|(k, n)| {
            let origin = k.as_str().and_then(|o| Name::parse(o).ok());
            let count = n.as_u64().filter(|n| *n <= crate::MAX_COUNTER);
            match (origin, count) {
                (Some(o), Some(n)) => Ok((o.to_string(), n)),
                _ => Err(wrong.clone()),
            }
        })
        .collect()
}

/// A version vector as it travels (a map of origin names to counts).
pub fn vector_to_value(v: &Vector) -> Value {
    vector_value(v)
}

pub(crate) fn vector_value(v: &Vector) -> Value {
    Value::Map(
        v.iter()
            .map(|(o, n)| (Value::from(o.as_str()), Value::from(*n)))
            .collect(),
    )
}

/// Takes the events out of a batch or a page, validating each.
fn events(data: &mut Map) -> Result<Vec<Event>, ProtoError> {
    match data.take("events") {
        Some(Value::Array(items)) => items.into_iter().map(Event::from_value).collect(),
        None => Err(ProtoError::Missing("events")),
        Some(_) => Err(ProtoError::WrongType {
            field: "events",
            expected: "a list of events",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountKind, EventKind};

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn through_the_wire(env: Envelope) -> Envelope {
        Envelope::decode(&env.to_bytes()).unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let me = Some(Introduction {
            name: name("s3"),
            rank: Some(3),
            addr: Some("tcp://127.0.0.1:5568".into()),
        });
        let event = Event {
            origin: "s1".into(),
            seq: 4,
            lamport: 9,
            timestamp: 1.5,
            kind: EventKind::Account(AccountKind::Login { user: name("ana") }),
            request: None,
        };
        let all = [
            PeerRequest::Clock {
                from: me.clone(),
                set: None,
            },
            PeerRequest::Clock {
                from: None,
                set: Some(1_700_000_000.5),
            },
            PeerRequest::Election { from: me.clone() },
            PeerRequest::Coordinator {
                coordinator: name("s3"),
                rank: Some(3),
            },
            PeerRequest::Adjust { delta: -0.25 },
            PeerRequest::Sync,
            PeerRequest::Status,
            PeerRequest::Digest,
            PeerRequest::Vector {
                from: me.clone(),
                vector: Some([("s1".to_owned(), 40)].into()),
            },
            PeerRequest::Fetch {
                origin: name("s1"),
                after: 40,
                limit: Some(2000),
            },
            PeerRequest::Ack {
                from: name("s2"),
                origin: name("s1"),
                seq: 44,
            },
            PeerRequest::Replica {
                origin: name("s1"),
                events: vec![event],
            },
            PeerRequest::Beats {
                beats: vec![Beat {
                    user: name("ana"),
                    device: "phone".into(),
                    at: 1_700_000_000.25,
                    leaving: false,
                }],
            },
        ];
        let tx = palaver_core::commit::Tx {
            id: "s1-00ff".to_owned(),
            leader: "s2".to_owned(),
            participants: vec!["s1".to_owned(), "s2".to_owned()],
            payload: crate::room::Room {
                channel: name("general"),
                owner: name("ana"),
            },
        };
        use palaver_core::commit::{Known, Msg};
        let steps = [
            Msg::Begin(tx.clone()),
            Msg::Prepare(tx.clone()),
            Msg::Vote {
                tx: tx.id.clone(),
                yes: true,
            },
            Msg::Propose {
                tx: tx.clone(),
                commit: false,
            },
            Msg::Accepted { tx: tx.id.clone() },
            Msg::Refused { tx: tx.id.clone() },
            Msg::Query { tx: tx.id.clone() },
            Msg::Known {
                tx: tx.id.clone(),
                state: Known::Committed,
            },
            Msg::Decided {
                tx: tx.clone(),
                commit: true,
            },
        ];
        let all =
            all.into_iter()
                .chain(steps.into_iter().map(|msg| PeerRequest::TwoPc {
                    from: name("s1"),
                    msg,
                }))
                .chain(crate::examples::claim_messages().into_iter().map(|msg| {
                    PeerRequest::Claims {
                        from: name("s2"),
                        msg,
                    }
                }));
        for req in all {
            assert!(PeerRequest::SERVICES.contains(&req.service()));
            let back = PeerRequest::parse(through_the_wire(req.to_envelope())).unwrap();
            assert_eq!(back, req);
        }
    }

    #[test]
    fn every_reply_round_trips() {
        let all = [
            PeerReply::Refused {
                service: "fetch".into(),
                reason: "no".into(),
            },
            PeerReply::Clock {
                time: 12.5,
                coordinator: Claim::Named(name("s3"), Some(3)),
            },
            PeerReply::Clock {
                time: 12.5,
                coordinator: Claim::Nobody,
            },
            PeerReply::Clock {
                time: 12.5,
                coordinator: Claim::Unsaid,
            },
            PeerReply::Election,
            PeerReply::Done {
                service: "sync".into(),
            },
            PeerReply::Adjusted {
                time: 3.0,
                offset: -1.0,
            },
            PeerReply::Status(Box::new(StatusReport {
                name: name("s1"),
                addr: "tcp://h:1".into(),
                rank: Some(1),
                coordinator: Some(name("s3")),
                time: 5.0,
                offset: 0.5,
                skew: 0.0,
                peers: vec!["s2".into(), "s3".into()],
                unreachable: vec!["s3".into()],
                electing: false,
                rounds: 4,
                users: 2,
                channels: 1,
            })),
            PeerReply::Digest {
                name: name("s1"),
                events: 44,
                vector: [("s1".to_owned(), 44)].into(),
                digest: "00ff".into(),
            },
            PeerReply::Vector {
                vector: [("s1".to_owned(), 44), ("s2".to_owned(), 7)].into(),
            },
            PeerReply::Fetched {
                origin: name("s1"),
                events: Vec::new(),
                more: true,
            },
        ];
        for reply in all {
            let back = PeerReply::parse(through_the_wire(reply.to_envelope())).unwrap();
            assert_eq!(back, reply);
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            (Envelope::new("fetch").with("origin", "s1"), "after"),
            (
                Envelope::new("fetch")
                    .with("origin", "s1")
                    .with("after", u64::MAX),
                "after",
            ),
            (Envelope::new("adjust").with("delta", 1e300), "delta"),
            (Envelope::new("vector").with("vector", 3), "vector"),
            (
                Envelope::new("vector").with(
                    "vector",
                    Value::Map(vec![(Value::from("bad name!"), Value::from(1))]),
                ),
                "vector",
            ),
            (Envelope::new("ack").with("user", "s2"), "origin"),
            (
                Envelope::new("replica")
                    .with("origin", "s1")
                    .with("events", 5),
                "events",
            ),
            (Envelope::new("dance"), "dance"),
        ];
        for (env, want) in cases {
            let err = PeerRequest::parse(env).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
        // A batch may carry only its sender's own events.
        let foreign = Event {
            origin: "s2".into(),
            seq: 1,
            lamport: 1,
            timestamp: 1.0,
            kind: EventKind::Account(AccountKind::Login { user: name("ana") }),
            request: None,
        };
        let env = Envelope::new("replica")
            .with("origin", "s1")
            .with("events", vec![foreign.to_value()]);
        assert!(PeerRequest::parse(env).is_err());
    }
}
