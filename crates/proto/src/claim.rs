//! Claims on the wire: what makes a name someone's, decided once for the whole cluster by a
//! majority (`palaver_core::claims`), and how the deciding messages travel between servers.
//!
//! ```text
//!  Claimed ──to_value──▶ {what: "person"|"channel"|"password"|"retire", …, server, request}
//!  palaver_core::claims::Msg<Claimed> ──fill_msg──▶ {service: "claims", data: {from, step, …}}
//!                                     ◀──parse_msg──
//! ```

use palaver_core::claims::{Ballot, Entry, Msg, Outcome};
use rmpv::Value;

use crate::MAX_HASH_BYTES;
use crate::{Envelope, Map, Name, ProtoError};

/// The most slots one `promise` or `log` message carries (more wait for the next).
pub const MAX_SLOTS: usize = palaver_core::claims::MAX_CATCHUP;

/// What a claim makes of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// `name` becomes a person's (the first login of a new name).
    Person { name: Name },
    /// `name` becomes a channel, owned by `owner` when the request named one.
    Channel { name: Name, owner: Option<Name> },
    /// `user`'s password becomes `hash` (argon2id, PHC), if it still is `was` (none: the name
    /// has no password yet, and this registers it): a change made against a password that
    /// another change replaced meanwhile takes no effect. A change ends every session of the
    /// account but `keep` (the SHA-256 of the token it came with).
    Password {
        user: Name,
        hash: String,
        was: Option<String>,
        keep: Option<String>,
    },
    /// `user`'s account is closed and the name retired, if its password still is `was`.
    Retire { user: Name, was: Option<String> },
    /// A session (the SHA-256 of its token) opens on `user`'s account, if its password still
    /// is `was` (the one the login was checked against), at `at_ms` (the proposing server's
    /// time in milliseconds since the Unix epoch, from which the session's idle time counts).
    Session {
        user: Name,
        session: String,
        was: String,
        at_ms: u64,
    },
}

/// A claim as proposed: with the server that took the request and the request's id, so
/// that a request retried anywhere takes effect once, and its server answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub claim: Claim,
    pub server: Name,
    pub request: Option<String>,
}

impl Claimed {
    /// As a map (the value of an event's `claim` field, or of a message's).
    pub fn to_value(&self) -> Value {
        let mut m: Vec<(Value, Value)> = Vec::new();
        let mut put = |k: &str, v: Value| m.push((Value::from(k), v));
        match &self.claim {
            Claim::Person { name } => {
                put("what", "person".into());
                put("name", name.as_str().into());
            }
            Claim::Channel { name, owner } => {
                put("what", "channel".into());
                put("name", name.as_str().into());
                if let Some(o) = owner {
                    put("owner", o.as_str().into());
                }
            }
            Claim::Password {
                user,
                hash,
                was,
                keep,
            } => {
                put("what", "password".into());
                put("user", user.as_str().into());
                put("hash", hash.as_str().into());
                if let Some(w) = was {
                    put("was", w.as_str().into());
                }
                if let Some(k) = keep {
                    put("keep", k.as_str().into());
                }
            }
            Claim::Retire { user, was } => {
                put("what", "retire".into());
                put("user", user.as_str().into());
                if let Some(w) = was {
                    put("was", w.as_str().into());
                }
            }
            Claim::Session {
                user,
                session,
                was,
                at_ms,
            } => {
                put("what", "session".into());
                put("user", user.as_str().into());
                put("session", session.as_str().into());
                put("was", was.as_str().into());
                put("at_ms", (*at_ms).into());
            }
        }
        put("server", self.server.as_str().into());
        if let Some(r) = &self.request {
            put("request", r.as_str().into());
        }
        Value::Map(m)
    }

    /// Reads a claim from its map.
    ///
    /// # Errors
    /// When a field is missing, mistyped or invalid.
    pub fn from_map(m: &Map) -> Result<Claimed, ProtoError> {
        let hash = |field: &'static str| m.text(field, MAX_HASH_BYTES);
        let opt_hash = |field: &'static str| -> Result<Option<String>, ProtoError> {
            match m.get(field) {
                None | Some(Value::Nil) => Ok(None),
                Some(_) => hash(field).map(Some),
            }
        };
        let claim = match m.str("what")? {
            "person" => Claim::Person {
                name: m.name("name")?,
            },
            "channel" => Claim::Channel {
                name: m.name("name")?,
                owner: match m.opt_str("owner")? {
                    Some(_) => Some(m.name("owner")?),
                    None => None,
                },
            },
            "password" => Claim::Password {
                user: m.name("user")?,
                hash: hash("hash")?,
                was: opt_hash("was")?,
                keep: opt_hash("keep")?,
            },
            "retire" => Claim::Retire {
                user: m.name("user")?,
                was: opt_hash("was")?,
            },
            "session" => Claim::Session {
                user: m.name("user")?,
                session: hash("session")?,
                was: hash("was")?,
                at_ms: m.counter("at_ms")?,
            },
            _ => {
                return Err(ProtoError::WrongType {
                    field: "what",
                    expected: "person, channel, password, retire or session",
                })
            }
        };
        Ok(Claimed {
            claim,
            server: m.name("server")?,
            request: crate::request::request_id(m, "request", crate::request::MAX_REQUEST_ID)?,
        })
    }

    /// The bytes its strings take once encoded.
    pub fn size(&self) -> usize {
        let strings = match &self.claim {
            Claim::Person { name } => name.as_str().len(),
            Claim::Channel { name, owner } => {
                name.as_str().len() + owner.as_ref().map_or(0, |o| o.as_str().len())
            }
            Claim::Password {
                user,
                hash,
                was,
                keep,
            } => {
                user.as_str().len()
                    + hash.len()
                    + was.as_ref().map_or(0, String::len)
                    + keep.as_ref().map_or(0, String::len)
            }
            Claim::Session {
                user, session, was, ..
            } => user.as_str().len() + session.len() + was.len() + 9,
            Claim::Retire { user, was } => {
                user.as_str().len() + was.as_ref().map_or(0, String::len)
            }
        };
        // Keys and headers: at most 7 entries of short keys.
        strings + self.server.as_str().len() + self.request.as_ref().map_or(0, String::len) + 7 * 16
    }
}

/// A slot's value in a map field: a claim, or nothing (a no-op slot).
pub(crate) fn entry_from(m: &Map, field: &'static str) -> Result<Entry<Claimed>, ProtoError> {
    match m.get(field) {
        None | Some(Value::Nil) => Ok(Entry::Noop),
        Some(Value::Map(inner)) => Ok(Entry::Claim(Claimed::from_map(&Map(inner.clone()))?)),
        Some(_) => Err(ProtoError::WrongType {
            field,
            expected: "a claim (a map)",
        }),
    }
}

pub(crate) fn entry_value(e: &Entry<Claimed>) -> Value {
    match e {
        Entry::Claim(c) => c.to_value(),
        Entry::Noop => Value::Nil,
    }
}

fn ballot(m: &Map, round: &'static str, leader: &'static str) -> Result<Ballot, ProtoError> {
    Ok(Ballot {
        round: m.counter(round)?,
        node: m.name(leader)?.to_string(),
    })
}

fn slot(m: &Map) -> Result<u64, ProtoError> {
    m.counter("slot")
}

/// A slot in a list: its number, the ballot it was accepted under (in a promise), its value.
type Slot = (u64, Option<Ballot>, Entry<Claimed>);

/// A list of slots: each a map with `slot`, maybe a ballot, and `claim`.
fn slots(m: &Map, field: &'static str, with_ballot: bool) -> Result<Vec<Slot>, ProtoError> {
    let items = match m.get(field) {
        None | Some(Value::Nil) => return Ok(Vec::new()),
        Some(_) => m.maps(field)?,
    };
    if items.len() > MAX_SLOTS {
        return Err(ProtoError::WrongType {
            field,
            expected: "at most 1,000 slots",
        });
    }
    items
        .iter()
        .map(|i| {
            let b = if with_ballot {
                Some(ballot(i, "round", "leader")?)
            } else {
                None
            };
            Ok((slot(i)?, b, entry_from(i, "claim")?))
        })
        .collect()
}

fn slots_value(items: impl Iterator<Item = (u64, Option<Ballot>, Value)>) -> Value {
    Value::Array(
        items
            .map(|(slot, b, claim)| {
                let mut m = vec![(Value::from("slot"), Value::from(slot))];
                if let Some(b) = b {
                    m.push((Value::from("round"), Value::from(b.round)));
                    m.push((Value::from("leader"), Value::from(b.node.as_str())));
                }
                m.push((Value::from("claim"), claim));
                Value::Map(m)
            })
            .collect(),
    )
}

/// Reads a `claims` message's step and fields.
pub(crate) fn parse_msg(m: &Map) -> Result<Msg<Claimed>, ProtoError> {
    Ok(match m.str("step")? {
        "prepare" => Msg::Prepare {
            ballot: ballot(m, "round", "leader")?,
            from: m.counter("from_slot")?,
        },
        "promise" => Msg::Promise {
            ballot: ballot(m, "round", "leader")?,
            accepted: slots(m, "accepted", true)?
                .into_iter()
                .map(|(s, b, e)| (s, b.unwrap_or_default(), e))
                .collect(),
            decided: slots(m, "decided", false)?
                .into_iter()
                .map(|(s, _, e)| (s, e))
                .collect(),
        },
        "accept" => Msg::Accept {
            ballot: ballot(m, "round", "leader")?,
            slot: slot(m)?,
            entry: entry_from(m, "claim")?,
        },
        "accepted" => Msg::Accepted {
            ballot: ballot(m, "round", "leader")?,
            slot: slot(m)?,
        },
        "nack" => Msg::Nack {
            ballot: ballot(m, "round", "leader")?,
            promised: ballot(m, "promised_round", "promised_leader")?,
            applied: m.counter("applied")?,
        },
        "decided" => Msg::Decided {
            slot: slot(m)?,
            entry: entry_from(m, "claim")?,
        },
        "forward" => Msg::Forward {
            id: m.counter("id")?,
            value: match entry_from(m, "claim")? {
                Entry::Claim(c) => c,
                Entry::Noop => return Err(ProtoError::Missing("claim")),
            },
        },
        "outcome" => Msg::Outcome {
            id: m.counter("id")?,
            outcome: match m.str("outcome")? {
                "decided" => Outcome::Decided { slot: slot(m)? },
                "no-majority" => Outcome::NoMajority,
                "unknown" => Outcome::Unknown,
                _ => {
                    return Err(ProtoError::WrongType {
                        field: "outcome",
                        expected: "decided, no-majority or unknown",
                    })
                }
            },
        },
        "catchup" => Msg::Catchup {
            from: m.counter("from_slot")?,
        },
        "log" => Msg::Log {
            entries: slots(m, "entries", false)?
                .into_iter()
                .map(|(s, _, e)| (s, e))
                .collect(),
        },
        _ => {
            return Err(ProtoError::WrongType {
                field: "step",
                expected: "prepare, promise, accept, accepted, nack, forward, outcome, decided, \
                           catchup or log",
            })
        }
    })
}

fn with_ballot(env: Envelope, b: &Ballot) -> Envelope {
    env.with("round", b.round).with("leader", b.node.as_str())
}

/// Adds a `claims` message's step and fields to `env`.
pub(crate) fn fill_msg(env: Envelope, msg: &Msg<Claimed>) -> Envelope {
    match msg {
        Msg::Prepare { ballot, from } => {
            with_ballot(env.with("step", "prepare"), ballot).with("from_slot", *from)
        }
        Msg::Promise {
            ballot,
            accepted,
            decided,
        } => with_ballot(env.with("step", "promise"), ballot)
            .with(
                "accepted",
                slots_value(
                    accepted
                        .iter()
                        .map(|(s, b, e)| (*s, Some(b.clone()), entry_value(e))),
                ),
            )
            .with(
                "decided",
                slots_value(decided.iter().map(|(s, e)| (*s, None, entry_value(e)))),
            ),
        Msg::Accept {
            ballot,
            slot,
            entry,
        } => with_ballot(env.with("step", "accept"), ballot)
            .with("slot", *slot)
            .with("claim", entry_value(entry)),
        Msg::Accepted { ballot, slot } => {
            with_ballot(env.with("step", "accepted"), ballot).with("slot", *slot)
        }
        Msg::Nack {
            ballot,
            promised,
            applied,
        } => with_ballot(env.with("step", "nack"), ballot)
            .with("promised_round", promised.round)
            .with("promised_leader", promised.node.as_str())
            .with("applied", *applied),
        Msg::Decided { slot, entry } => env
            .with("step", "decided")
            .with("slot", *slot)
            .with("claim", entry_value(entry)),
        Msg::Forward { id, value } => env
            .with("step", "forward")
            .with("id", *id)
            .with("claim", value.to_value()),
        Msg::Outcome { id, outcome } => {
            let env = env.with("step", "outcome").with("id", *id);
            match outcome {
                Outcome::Decided { slot } => env.with("outcome", "decided").with("slot", *slot),
                Outcome::NoMajority => env.with("outcome", "no-majority"),
                Outcome::Unknown => env.with("outcome", "unknown"),
            }
        }
        Msg::Catchup { from } => env.with("step", "catchup").with("from_slot", *from),
        Msg::Log { entries } => env.with("step", "log").with(
            "entries",
            slots_value(entries.iter().map(|(s, e)| (*s, None, entry_value(e)))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> Map {
        Map(pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect())
    }

    #[test]
    fn every_claim_round_trips() {
        for c in crate::examples::claims() {
            let Value::Map(m) = c.to_value() else {
                panic!("a claim is a map")
            };
            assert_eq!(Claimed::from_map(&Map(m)).unwrap(), c);
        }
    }

    #[test]
    fn a_bad_claim_says_what_is_wrong() {
        let server = ("server", Value::from("s1"));
        let cases = [
            (map(&[("what", "king".into()), server.clone()]), "what"),
            (map(&[("what", "person".into()), server.clone()]), "name"),
            (
                map(&[
                    ("what", "person".into()),
                    ("name", "servers".into()),
                    server.clone(),
                ]),
                "reserved",
            ),
            (
                map(&[
                    ("what", "password".into()),
                    ("user", "ana".into()),
                    ("hash", "h".repeat(MAX_HASH_BYTES + 1).into()),
                    server.clone(),
                ]),
                "hash",
            ),
            (
                map(&[("what", "person".into()), ("name", "ana".into())]),
                "server",
            ),
        ];
        for (m, says) in cases {
            let e = Claimed::from_map(&m).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let slots = Value::Array(vec![Value::Map(Vec::new()); MAX_SLOTS + 1]);
        let m = map(&[("step", "log".into()), ("entries", slots)]);
        assert!(parse_msg(&m).unwrap_err().to_string().contains("entries"));
    }
}
