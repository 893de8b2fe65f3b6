//! Reads of the store that answer requests after their batch commits (so that they see every
//! write acknowledged before them): a `history` page, an `unseal`, a `join`'s posts.

use palaver_proto::{Envelope, HistoryQuery, Reply};

use super::Reactor;
use crate::state::StoredRead;

impl Reactor {
    /// Answers a read of the store: a `history` page, an `unseal`, or a `join`'s posts (with
    /// what `reply` says already).
    pub(super) fn read_stored(&self, read: &StoredRead, reply: Envelope) -> Envelope {
        match read {
            StoredRead::Unread { user } => match self.unread(user) {
                Ok((rooms, people)) => reply.with("channels", rooms).with("conversations", people),
                Err(e) => {
                    tracing::error!(error = %e, "cannot count unread messages");
                    Reply::error("unread", "the server could not count unread messages")
                }
            },
            StoredRead::Inbox {
                user,
                channels,
                cursor,
                limit,
            } => match self.store.inbox(user, channels, cursor, *limit) {
                Ok(inbox) => with_messages(reply, &inbox.events, inbox.more).with(
                    "cursor",
                    palaver_proto::peer::vector_to_value(&inbox.cursor),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read an inbox");
                    Reply::error("inbox", "the server could not read the inbox")
                }
            },
            StoredRead::Join { channel, limit } => {
                let q = HistoryQuery {
                    of: palaver_proto::Conversation::Channel(channel.clone()),
                    limit: *limit,
                    before: None,
                    after: None,
                };
                let page = if *limit == 0 {
                    Ok((Vec::new(), false))
                } else {
                    self.store.history(&q)
                };
                match page {
                    Ok((events, more)) => {
                        with_messages(reply.with("channel", channel.as_str()), &events, more)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read history");
                        Reply::error("join", "the server could not read the channel's posts")
                    }
                }
            }
            StoredRead::History(q) => match self.store.history(q) {
                Ok((events, more)) => HistoryQuery::reply(&events, more),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read history");
                    Reply::error("history", "the server could not read its history")
                }
            },
            StoredRead::Unseal { user, id } => match self.store.event(&id.origin, id.seq) {
                Ok(Some(e)) => match &e.kind {
                    palaver_proto::EventKind::Direct { src, dst, message }
                        if src == user || dst == user =>
                    {
                        Reply::ok("unseal")
                            .with("src", src.as_str())
                            .with("dst", dst.as_str())
                            .with("message", message.as_str())
                            .with("id", e.id())
                            .with("sent", e.timestamp)
                            .with("lamport", e.lamport)
                    }
                    // The same answer whether it does not exist or is someone else's.
                    _ => Reply::error("unseal", &format!("`{user}` has no private message {id}")),
                },
                Ok(None) => {
                    Reply::error("unseal", &format!("`{user}` has no private message {id}"))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a private message");
                    Reply::error("unseal", "the server could not read its messages")
                }
            },
        }
    }

    /// Per room and per conversation of `user`'s, how many messages lie after their marker.
    fn unread(
        &self,
        user: &palaver_proto::Name,
    ) -> Result<(Vec<rmpv::Value>, Vec<rmpv::Value>), palaver_store::StoreError> {
        use palaver_proto::{Conversation, Place};
        use rmpv::Value;
        let entry = |key: &str, name: &str, n: u64, upto: Option<&(u64, String)>| {
            let mut m = vec![
                (Value::from(key), Value::from(name)),
                (Value::from("unread"), Value::from(n)),
            ];
            if let Some((at, origin)) = upto {
                m.push((Value::from("marker"), Value::from(format!("{at}:{origin}"))));
            }
            Value::Map(m)
        };
        let mut rooms = Vec::new();
        for (place, marker) in self.state.unread_places(user) {
            let Place::Channel(c) = place else { continue };
            let after = marker.as_ref().map(|(at, o)| (*at, o.as_str()));
            let n = self
                .store
                .count_after(&Conversation::Channel(c.clone()), after)?;
            rooms.push(entry("channel", c.as_str(), n, marker.as_ref()));
        }
        let mut people = Vec::new();
        for with in self.store.partners(user)? {
            let marker = self.state.marker_with(user, &with);
            let after = marker.as_ref().map(|(at, o)| (*at, o.as_str()));
            let of = Conversation::Direct(user.clone(), with.clone());
            let n = self.store.count_after(&of, after)?;
            people.push(entry("with", with.as_str(), n, marker.as_ref()));
        }
        Ok((rooms, people))
    }
}

/// `reply` with `events` as `history` shows them (`messages`, and `more`).
fn with_messages(reply: Envelope, events: &[palaver_proto::Event], more: bool) -> Envelope {
    let mut env = reply;
    for (k, v) in HistoryQuery::reply(events, more).data.0 {
        if let Some(k) = k.as_str() {
            env.data.set(k, v);
        }
    }
    env
}
