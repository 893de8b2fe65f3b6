//! What the broker and the servers say to each other on the broker's server side: one frame
//! per message, a MessagePack array, the client's request carried as raw bytes (never decoded
//! or re-encoded by the broker).
//!
//! ```text
//!  server ──["ready", name, window]──▶ broker    every 250 ms: alive, and takes `window` at once
//!  broker ──["request", token, body]──▶ server   a client's request (bytes as the client sent them)
//!  server ──["reply", token, body]────▶ broker   its answer; the broker knows the way back
//!  server ──["leave"]─────────────────▶ broker   out of the rotation now (its requests go elsewhere)
//! ```
//!
//! One frame, not the client's routing frames plus the body: on this CurveZMQ-sealed side every
//! frame is sealed on its own, so one frame a message costs a third of three. The token is the
//! broker's name for the request; a server takes [`request_id`] of it as the request's id when
//! the client gave none, so that a request the broker sends to a second server (the first went
//! silent) takes effect once.

use rmp::decode;
use rmp::encode;

use crate::{ProtoError, MAX_SOCKET_BYTES};

/// The longest server name a `ready` may carry.
const MAX_READY_NAME: usize = 64;

/// A message from a server to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToBroker<'a> {
    /// Alive, named `name`, taking up to `window` requests at once. Sent on joining and as
    /// the heartbeat.
    Ready { name: &'a str, window: u32 },
    /// The answer to the request the broker named `token`.
    Reply { token: u64, body: &'a [u8] },
    /// Out of the rotation from now on.
    Leave,
}

/// A message from the broker to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToServer<'a> {
    /// A client's request, named `token`.
    Request { token: u64, body: &'a [u8] },
}

/// The request id a server gives a request that the broker named `token` and whose client
/// gave none. Clients' own ids never start with `~` in practice; a collision would only make
/// a request count as a retry of another.
pub fn request_id(token: u64) -> String {
    format!("~{token:016x}")
}

fn bad(what: impl Into<String>) -> ProtoError {
    ProtoError::Malformed(what.into())
}

fn array(rd: &mut &[u8]) -> Result<u32, ProtoError> {
    decode::read_array_len(rd).map_err(|e| bad(e.to_string()))
}

fn string<'a>(rd: &mut &'a [u8]) -> Result<&'a str, ProtoError> {
    let len = decode::read_str_len(rd).map_err(|e| bad(e.to_string()))? as usize;
    let bytes = take(rd, len)?;
    std::str::from_utf8(bytes).map_err(|_| bad("a string that is not UTF-8"))
}

fn bin<'a>(rd: &mut &'a [u8]) -> Result<&'a [u8], ProtoError> {
    let len = decode::read_bin_len(rd).map_err(|e| bad(e.to_string()))? as usize;
    take(rd, len)
}

fn uint(rd: &mut &[u8]) -> Result<u64, ProtoError> {
    decode::read_int(rd).map_err(|e| bad(e.to_string()))
}

fn take<'a>(rd: &mut &'a [u8], len: usize) -> Result<&'a [u8], ProtoError> {
    if rd.len() < len {
        return Err(bad("a frame that ends early"));
    }
    let (head, rest) = rd.split_at(len);
    *rd = rest;
    Ok(head)
}

/// The largest frame on the broker's server side: an answer may be far larger than a request
/// (the longest `history` page is about 8 MiB).
pub const MAX_WORK_BYTES: usize = 2 * MAX_SOCKET_BYTES as usize;

fn check(frame: &[u8]) -> Result<(), ProtoError> {
    if frame.len() > MAX_WORK_BYTES {
        return Err(ProtoError::TooLarge {
            size: frame.len(),
            max: MAX_WORK_BYTES,
        });
    }
    Ok(())
}

fn end(rd: &[u8]) -> Result<(), ProtoError> {
    if rd.is_empty() {
        Ok(())
    } else {
        Err(ProtoError::Trailing)
    }
}

fn with_body(kind: &str, token: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 24);
    // Writing into a Vec cannot fail.
    encode::write_array_len(&mut out, 3).expect("write to Vec");
    encode::write_str(&mut out, kind).expect("write to Vec");
    encode::write_uint(&mut out, token).expect("write to Vec");
    encode::write_bin(&mut out, body).expect("write to Vec");
    out
}

impl<'a> ToBroker<'a> {
    /// The frame that carries it.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToBroker::Ready { name, window } => {
                let mut out = Vec::with_capacity(32);
                encode::write_array_len(&mut out, 3).expect("write to Vec");
                encode::write_str(&mut out, "ready").expect("write to Vec");
                encode::write_str(&mut out, name).expect("write to Vec");
                encode::write_uint(&mut out, u64::from(*window)).expect("write to Vec");
                out
            }
            ToBroker::Reply { token, body } => with_body("reply", *token, body),
            ToBroker::Leave => {
                let mut out = Vec::with_capacity(8);
                encode::write_array_len(&mut out, 1).expect("write to Vec");
                encode::write_str(&mut out, "leave").expect("write to Vec");
                out
            }
        }
    }

    /// Reads a frame, borrowing the body from it.
    ///
    /// # Errors
    /// When the frame is too large, malformed, or not one of the messages above.
    pub fn decode(frame: &'a [u8]) -> Result<ToBroker<'a>, ProtoError> {
        check(frame)?;
        let mut rd = frame;
        let len = array(&mut rd)?;
        let msg = match (string(&mut rd)?, len) {
            ("ready", 3) => {
                let name = string(&mut rd)?;
                if name.len() > MAX_READY_NAME {
                    return Err(ProtoError::TextTooLong {
                        field: "name",
                        max: MAX_READY_NAME,
                    });
                }
                let window =
                    u32::try_from(uint(&mut rd)?).map_err(|_| bad("a window too large"))?;
                ToBroker::Ready { name, window }
            }
            ("reply", 3) => ToBroker::Reply {
                token: uint(&mut rd)?,
                body: bin(&mut rd)?,
            },
            ("leave", 1) => ToBroker::Leave,
            (other, n) => {
                return Err(ProtoError::UnknownService(format!(
                    "broker message {other} of {n} items"
                )))
            }
        };
        end(rd)?;
        Ok(msg)
    }
}

impl<'a> ToServer<'a> {
    /// The frame that carries it.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToServer::Request { token, body } => with_body("request", *token, body),
        }
    }

    /// Reads a frame, borrowing the body from it.
    ///
    /// # Errors
    /// When the frame is too large, malformed, or not a request.
    pub fn decode(frame: &'a [u8]) -> Result<ToServer<'a>, ProtoError> {
        check(frame)?;
        let mut rd = frame;
        let len = array(&mut rd)?;
        let msg = match (string(&mut rd)?, len) {
            ("request", 3) => ToServer::Request {
                token: uint(&mut rd)?,
                body: bin(&mut rd)?,
            },
            (other, n) => {
                return Err(ProtoError::UnknownService(format!(
                    "broker message {other} of {n} items"
                )))
            }
        };
        end(rd)?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let body = b"\x82\xa7service\xa5login".to_vec();
        for m in [
            ToBroker::Ready {
                name: "s1",
                window: 1000,
            },
            ToBroker::Reply {
                token: u64::MAX,
                body: &body,
            },
            ToBroker::Leave,
        ] {
            assert_eq!(ToBroker::decode(&m.encode()).unwrap(), m);
        }
        let r = ToServer::Request {
            token: 7,
            body: &body,
        };
        assert_eq!(ToServer::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn bad_frames_are_refused() {
        let reply = ToBroker::Reply {
            token: 1,
            body: b"abc",
        }
        .encode();
        for frame in [
            &b""[..],
            b"\x90",
            b"\xc1",
            &reply[..reply.len() - 1],
            b"\x91\xa5hello",
            // A request where a reply belongs, and the other way round.
            &ToServer::Request {
                token: 1,
                body: b"",
            }
            .encode(),
        ] {
            assert!(ToBroker::decode(frame).is_err(), "{frame:?}");
        }
        let mut trailing = reply.clone();
        trailing.push(0);
        assert_eq!(ToBroker::decode(&trailing), Err(ProtoError::Trailing));
        assert!(ToServer::decode(&reply).is_err());
        let long = ToBroker::Ready {
            name: &"x".repeat(65),
            window: 1,
        }
        .encode();
        assert!(ToBroker::decode(&long).is_err());
    }

    #[test]
    fn request_ids_are_distinct_and_short() {
        assert_ne!(request_id(1), request_id(2));
        assert!(request_id(u64::MAX).len() <= 17);
    }
}
