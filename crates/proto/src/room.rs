//! Rooms on the wire: what the two-phase delete of a channel decides about, and how its
//! messages travel between servers (docs/rooms.md).
//!
//! ```text
//!  palaver_core::commit::Msg<Room> ──to_envelope──▶ {service: "twopc", data: {from, step, tx, …}}
//!                                  ◀────parse─────
//! ```

use palaver_core::commit::{Known, Msg, Tx};
use rmpv::Value;

use crate::{Envelope, Map, Name, ProtoError};

/// The longest transaction id, in bytes.
pub const MAX_TX_BYTES: usize = 64;
/// The most servers one transaction names.
pub const MAX_PARTICIPANTS: usize = 64;

/// What a delete decides about: the channel, and the owner who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub channel: Name,
    pub owner: Name,
}

/// A transaction id: 1 to [`MAX_TX_BYTES`] ASCII letters, digits, `-` and `_`.
pub(crate) fn tx_id(m: &Map, field: &'static str) -> Result<String, ProtoError> {
    let s = m.str(field)?;
    if s.is_empty()
        || s.len() > MAX_TX_BYTES
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ProtoError::WrongType {
            field,
            expected: "a transaction id: 1 to 64 ASCII letters, digits, - and _",
        });
    }
    Ok(s.to_owned())
}

/// A transaction's participants: 1 to [`MAX_PARTICIPANTS`] server names.
pub(crate) fn participants(m: &Map) -> Result<Vec<Name>, ProtoError> {
    let list = m.str_list("participants")?;
    if list.is_empty() || list.len() > MAX_PARTICIPANTS {
        return Err(ProtoError::WrongType {
            field: "participants",
            expected: "a list of 1 to 64 server names",
        });
    }
    list.iter()
        .map(|p| {
            Name::parse(p).map_err(|source| ProtoError::InvalidName {
                field: "participants",
                source,
            })
        })
        .collect()
}

fn tx(m: &Map) -> Result<Tx<Room>, ProtoError> {
    Ok(Tx {
        id: tx_id(m, "tx")?,
        leader: m.name("leader")?.to_string(),
        participants: participants(m)?.iter().map(Name::to_string).collect(),
        payload: Room {
            channel: m.name("channel")?,
            owner: m.name("owner")?,
        },
    })
}

fn with_tx(env: Envelope, tx: &Tx<Room>) -> Envelope {
    env.with("tx", tx.id.as_str())
        .with("leader", tx.leader.as_str())
        .with(
            "participants",
            tx.participants
                .iter()
                .map(|p| Value::from(p.as_str()))
                .collect::<Vec<_>>(),
        )
        .with("channel", tx.payload.channel.as_str())
        .with("owner", tx.payload.owner.as_str())
}

fn flag(m: &Map, field: &'static str) -> Result<bool, ProtoError> {
    m.opt_bool(field)?.ok_or(ProtoError::Missing(field))
}

/// Reads a `twopc` message's step and fields.
pub(crate) fn parse_msg(m: &Map) -> Result<Msg<Room>, ProtoError> {
    Ok(match m.str("step")? {
        "begin" => Msg::Begin(tx(m)?),
        "prepare" => Msg::Prepare(tx(m)?),
        "vote" => Msg::Vote {
            tx: tx_id(m, "tx")?,
            yes: flag(m, "yes")?,
        },
        "propose" => Msg::Propose {
            tx: tx(m)?,
            commit: flag(m, "commit")?,
        },
        "accepted" => Msg::Accepted {
            tx: tx_id(m, "tx")?,
        },
        "refused" => Msg::Refused {
            tx: tx_id(m, "tx")?,
        },
        "query" => Msg::Query {
            tx: tx_id(m, "tx")?,
        },
        "known" => Msg::Known {
            tx: tx_id(m, "tx")?,
            state: match m.str("state")? {
                "prepared" => Known::Prepared,
                "committed" => Known::Committed,
                "aborted" => Known::Aborted,
                _ => {
                    return Err(ProtoError::WrongType {
                        field: "state",
                        expected: "prepared, committed or aborted",
                    })
                }
            },
        },
        "decided" => Msg::Decided {
            tx: tx(m)?,
            commit: flag(m, "commit")?,
        },
        _ => {
            return Err(ProtoError::WrongType {
                field: "step",
                expected:
                    "begin, prepare, vote, propose, accepted, refused, query, known or decided",
            })
        }
    })
}

/// Adds a `twopc` message's step and fields to `env`.
pub(crate) fn fill_msg(env: Envelope, msg: &Msg<Room>) -> Envelope {
    match msg {
        Msg::Begin(tx) => with_tx(env.with("step", "begin"), tx),
        Msg::Prepare(tx) => with_tx(env.with("step", "prepare"), tx),
        Msg::Vote { tx, yes } => env
            .with("step", "vote")
            .with("tx", tx.as_str())
            .with("yes", *yes),
        Msg::Propose { tx, commit } => {
            with_tx(env.with("step", "propose"), tx).with("commit", *commit)
        }
        Msg::Accepted { tx } => env.with("step", "accepted").with("tx", tx.as_str()),
        Msg::Refused { tx } => env.with("step", "refused").with("tx", tx.as_str()),
        Msg::Query { tx } => env.with("step", "query").with("tx", tx.as_str()),
        Msg::Known { tx, state } => env.with("step", "known").with("tx", tx.as_str()).with(
            "state",
            match state {
                Known::Prepared => "prepared",
                Known::Committed => "committed",
                Known::Aborted => "aborted",
            },
        ),
        Msg::Decided { tx, commit } => {
            with_tx(env.with("step", "decided"), tx).with("commit", *commit)
        }
    }
}
