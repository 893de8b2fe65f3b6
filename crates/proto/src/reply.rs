use rmpv::Value;

use crate::{Envelope, ProtoError, ERRO, OK, SUCESSO};

/// Outcome of a request, spelled as the standard spells it per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Error,
}

/// A reply to a request: an envelope that repeats the request's service.
pub struct Reply;

impl Reply {
    /// The success word for `service`: `sucesso` for `login` and `channel`, `OK` elsewhere.
    pub fn success_word(service: &str) -> &'static str {
        match service {
            "login" | "channel" => SUCESSO,
            _ => OK,
        }
    }

    /// A successful reply with no other fields.
    pub fn ok(service: &str) -> Envelope {
        Envelope::new(service).with("status", Reply::success_word(service))
    }

    /// An error reply. The text goes in `description`; `publish` and `message` replies also carry
    /// it in `message`, where the standard puts it for those services.
    pub fn error(service: &str, description: &str) -> Envelope {
        let env = Envelope::new(service)
            .with("status", ERRO)
            .with("description", description);
        match service {
            "publish" | "message" => env.with("message", description),
            _ => env,
        }
    }

    /// An error reply for a frame that could not be parsed.
    pub fn rejection(service: Option<&str>, err: &ProtoError) -> Envelope {
        Reply::error(service.unwrap_or("error"), &err.to_string())
    }

    /// Reads the status of a reply; a reply without a status (like `users`) counts as success.
    pub fn status(env: &Envelope) -> Status {
        match env.data.get("status").and_then(Value::as_str) {
            Some(ERRO) => Status::Error,
            _ => Status::Success,
        }
    }

    /// The error text of a failed reply.
    pub fn error_text(env: &Envelope) -> Option<String> {
        env.data
            .opt_str("description")
            .ok()
            .flatten()
            .or_else(|| env.data.opt_str("message").ok().flatten())
            .map(str::to_owned)
    }
}

/// A publication: a topic frame and an envelope frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub topic: String,
    pub envelope: Envelope,
}

impl Publication {
    /// What an event publishes once durable, stamped with the event's time, Lamport time and
    /// id: a post on its channel's topic, a private message on its recipient's. Logins and
    /// channel creations publish nothing.
    pub fn of_event(event: &crate::Event) -> Option<Publication> {
        let (service, topic) = event.kind.message_topic()?;
        let mut env = Envelope::new(service);
        env.data.0.extend(event.kind.fields());
        Some(Publication::stamped(topic, env, event))
    }

    /// What a private message publishes when it must not cross the open subscriber port (to
    /// or from a password account): a notice on the recipient's topic with the sender, the
    /// recipient, the id and the times, but not the text, which the recipient's client asks
    /// for with `unseal`. `None` for any other event.
    pub fn sealed(event: &crate::Event) -> Option<Publication> {
        let crate::EventKind::Message(crate::MessageKind::Direct { src, dst, .. }) = &event.kind
        else {
            return None;
        };
        let env = Envelope::new("sealed")
            .with("src", src.as_str())
            .with("dst", dst.as_str());
        Some(Publication::stamped(dst, env, event))
    }

    /// What a room event announces on its channel's topic (ours): `join` and `leave` with the
    /// person, and `delete`. A delete notice's `id` is its transaction's, the same from every
    /// server that records the delete, so a client shows it once. `None` for every other event.
    pub fn notice(event: &crate::Event) -> Option<Publication> {
        use crate::EventKind;
        let room = match &event.kind {
            EventKind::Room(room) => room,
            EventKind::Message(_)
            | EventKind::Account(_)
            | EventKind::Reader(_)
            | EventKind::Claim(_) => return None,
        };
        let notice = room.notice()?;
        let mut env = Envelope::new(notice.service).with("channel", notice.channel.as_str());
        for (key, value) in notice.fields {
            env.data.set(key, value);
        }
        let mut p = Publication::stamped(notice.channel, env, event);
        if let Some(id) = notice.id {
            p.envelope.data.set("id", id);
        }
        Some(p)
    }

    /// `env` on `topic`, stamped with `event`'s time, Lamport time and id.
    fn stamped(topic: &crate::Name, env: Envelope, event: &crate::Event) -> Publication {
        Publication {
            topic: topic.to_string(),
            envelope: env
                .with("timestamp", event.timestamp)
                .with("clock", event.lamport)
                .with("id", event.id()),
        }
    }

    /// The two frames as they go on the wire.
    pub fn to_frames(&self) -> [Vec<u8>; 2] {
        [self.topic.as_bytes().to_vec(), self.envelope.to_bytes()]
    }

    /// Decodes a received publication.
    ///
    /// # Errors
    /// When there are not exactly two frames, the topic is not UTF-8, or the body does not
    /// decode.
    pub fn from_frames(frames: &[Vec<u8>]) -> Result<Publication, ProtoError> {
        let [topic, body] = frames else {
            return Err(ProtoError::Malformed(format!(
                "a publication has 2 frames, not {}",
                frames.len()
            )));
        };
        let topic = std::str::from_utf8(topic)
            .map_err(|_| ProtoError::Malformed("topic is not UTF-8".into()))?
            .to_owned();
        Ok(Publication {
            topic,
            envelope: Envelope::decode(body)?,
        })
    }
}

/// The key each publication carries its topic's sequence number under, beside `service` and
/// `data`.
pub const SEQ_KEY: &str = "seq";

/// A refusal with `"again": true` (ours) may be sent again as it was, with the same request
/// id, in a moment: the cluster could not decide it yet (a claim that found no majority, or
/// was left in doubt). The client core does so by itself while it has attempts left.
pub const AGAIN: &str = "again";

/// `body` (a MessagePack map) with one more entry, [`SEQ_KEY`]: `seq`. Per topic, the proxy
/// numbers publications 1, 2, 3… from its start, so a subscriber that sees a number skipped
/// knows it missed something there; numbers that go back mean the proxy started again. `None`
/// when `body` is not a map, or already has 65,535 entries.
pub fn stamp(body: &[u8], seq: u64) -> Option<Vec<u8>> {
    let (len, entries) = top_map(body)?;
    let len = u16::try_from(len + 1).ok()?;
    let mut out = Vec::with_capacity(body.len() + 16);
    rmp::encode::write_map_len(&mut out, u32::from(len)).ok()?;
    out.extend_from_slice(entries);
    rmp::encode::write_str(&mut out, SEQ_KEY).ok()?;
    rmp::encode::write_uint(&mut out, seq).ok()?;
    Some(out)
}

/// A top-level map's length and the bytes of its entries.
fn top_map(body: &[u8]) -> Option<(usize, &[u8])> {
    let mut entries = body;
    let len = rmp::decode::read_map_len(&mut entries).ok()?;
    Some((usize::try_from(len).ok()?, entries))
}

/// The sequence number the proxy stamped on a publication's `body` ([`stamp`]): read from the
/// last entry of a top-level map of three or more, without decoding the rest.
pub fn stamped_seq(body: &[u8]) -> Option<u64> {
    let (entries, _) = top_map(body)?;
    if entries < 3 {
        return None;
    }
    // The number is the last thing in the frame, in one of MessagePack's unsigned forms,
    // right after the key.
    let key: &[u8] = &[0xa3, b's', b'e', b'q'];
    for width in [1usize, 2, 3, 5, 9] {
        let Some(at) = body.len().checked_sub(width) else {
            continue;
        };
        if at < key.len() || &body[at - key.len()..at] != key {
            continue;
        }
        let mut rd = &body[at..];
        if let Ok(n) = rmp::decode::read_int::<u64, _>(&mut rd) {
            if rd.is_empty() {
                return Some(n);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_follow_the_standard() {
        assert_eq!(Reply::ok("login").data.str("status").unwrap(), "sucesso");
        assert_eq!(Reply::ok("channel").data.str("status").unwrap(), "sucesso");
        assert_eq!(Reply::ok("publish").data.str("status").unwrap(), "OK");
        let err = Reply::error("message", "no such user");
        assert_eq!(Reply::status(&err), Status::Error);
        assert_eq!(err.data.str("message").unwrap(), "no such user");
        assert_eq!(Reply::error_text(&err).as_deref(), Some("no such user"));
    }

    #[test]
    fn publications_round_trip() {
        let p = Publication {
            topic: "general".into(),
            envelope: Envelope::new("publish").with("message", "hi"),
        };
        let frames = p.to_frames().to_vec();
        assert_eq!(Publication::from_frames(&frames).unwrap(), p);
        assert!(Publication::from_frames(&frames[..1]).is_err());
    }
    #[test]
    fn a_stamped_publication_keeps_every_field_and_gains_its_number() {
        let body = Envelope::new("publish")
            .with("user", "ana")
            .with("channel", "general")
            .with("message", "hi")
            .to_bytes();
        let stamped = stamp(&body, 7).unwrap();
        let v = rmpv::decode::read_value(&mut &stamped[..]).unwrap();
        let map = v.as_map().unwrap();
        assert_eq!(map.len(), 3);
        let get = |k: &str| {
            map.iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|e| &e.1)
        };
        assert_eq!(get("seq").and_then(rmpv::Value::as_u64), Some(7));
        assert_eq!(
            get("service").and_then(rmpv::Value::as_str),
            Some("publish")
        );
        assert_eq!(stamped_seq(&stamped), Some(7));
        assert_eq!(
            stamped_seq(&body),
            None,
            "a publication the proxy did not number"
        );
        for n in [0, 200, 70_000, 5_000_000_000, u64::MAX] {
            assert_eq!(stamped_seq(&stamp(&body, n).unwrap()), Some(n));
        }
        let env = Envelope::decode(&stamped).unwrap();
        assert_eq!(env.data.str("message").unwrap(), "hi");
        // Envelope::peek, which subscribers use to read in place, still finds the text.
        assert_eq!(Envelope::peek(&stamped, "message").unwrap().1, "hi");
        // Maps past 15 entries take the longer header; what is not a map is left alone.
        let mut wide = vec![0x8f];
        for i in 0..15u8 {
            rmp::encode::write_str(&mut wide, &format!("k{i}")).unwrap();
            rmp::encode::write_uint(&mut wide, u64::from(i)).unwrap();
        }
        let v = rmpv::decode::read_value(&mut &stamp(&wide, u64::MAX).unwrap()[..]).unwrap();
        assert_eq!(v.as_map().unwrap().len(), 16);
        assert_eq!(stamp(&[0x92, 0x01, 0x02], 1), None);
        assert_eq!(stamp(&[], 1), None);
        assert_eq!(stamp(&[0xde, 0xff, 0xff], 1), None);
    }
}
