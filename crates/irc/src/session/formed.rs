//! What a text from the gateway core becomes, made once for every connection it goes to: its
//! JSON read once, and a post's lines formed once for each set of capabilities that shapes
//! them. A room of a hundred people costs one parse and a few formattings per post, not a
//! hundred of each; each connection only decides whether the post is for it.

use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;

use super::{Cap, Session};

/// The capabilities that change how a post's lines look, one bit each.
const SHAPERS: [Cap; 3] = [Cap::ServerTime, Cap::MessageTags, Cap::AccountTag];
/// How many ways a post's lines can look.
const SHAPES: usize = 1 << SHAPERS.len();

/// The memo a text from the gateway core carries to every connection given it.
#[derive(Default)]
pub struct Formed {
    read: OnceLock<Option<Read>>,
    lines: [OnceLock<Arc<str>>; SHAPES],
}

/// A text from the gateway core, read: an answer (`re`) or a publication (`topic`).
pub(super) struct Read {
    pub(super) topic: Option<String>,
    pub(super) service: String,
    pub(super) re: Option<u64>,
    pub(super) data: Json,
    /// A post's or private message's fields, for the connections that decide on them.
    pub(super) said: Option<Said>,
}

/// Who said what to whom: a post to a room (`publish`) or a private message (`message`).
pub(super) struct Said {
    pub(super) from: String,
    /// The room, or the person written to.
    pub(super) to: String,
    pub(super) text: String,
    pub(super) id: Option<String>,
}

impl Said {
    /// A post's (`user`, `channel`) or a private message's (`src`, `dst`) fields, whichever
    /// `data` holds; the caller knows from the service which it expects.
    fn read(data: &Json) -> Option<Said> {
        let text = |key: &str| data.get(key).and_then(Json::as_str).map(str::to_owned);
        Some(Said {
            from: text("user").or_else(|| text("src"))?,
            to: text("channel").or_else(|| text("dst"))?,
            text: text("message")?,
            id: text("id"),
        })
    }
}

impl Formed {
    /// `text` read, once for all who share this memo; `None` if it is not a JSON object.
    pub(super) fn read(&self, text: &str) -> Option<&Read> {
        self.read
            .get_or_init(|| {
                let Ok(Json::Object(mut msg)) = serde_json::from_str::<Json>(text) else {
                    return None;
                };
                let text_of = |v: Option<Json>| match v {
                    Some(Json::String(s)) => Some(s),
                    _ => None,
                };
                let service = text_of(msg.remove("service")).unwrap_or_default();
                let data = msg.remove("data").unwrap_or(Json::Null);
                Some(Read {
                    topic: text_of(msg.remove("topic")),
                    re: msg.get("re").and_then(Json::as_u64),
                    said: Said::read(&data),
                    service,
                    data,
                })
            })
            .as_ref()
    }

    /// The lines of this text's post in `shape`, each ended with CR LF: made by `make` the
    /// first time they are asked for in that shape.
    pub(super) fn lines(&self, shape: usize, make: impl FnOnce() -> String) -> Arc<str> {
        self.lines[shape % SHAPES]
            .get_or_init(|| make().into())
            .clone()
    }
}

impl Session {
    /// Which way this connection's post lines look, from its capabilities.
    pub(super) fn shape(&self) -> usize {
        SHAPERS
            .iter()
            .enumerate()
            .filter(|(_, c)| self.caps.contains(c))
            .map(|(i, _)| 1 << i)
            .sum()
    }
}
