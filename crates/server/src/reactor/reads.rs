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
            StoredRead::Inbox {
                user,
                channels,
                cursor,
                limit,
            } => match self.store.inbox(user, channels, cursor, *limit) {
                Ok(inbox) => {
                    let page = HistoryQuery::reply(&inbox.events, inbox.more);
                    let next = inbox.cursor;
                    let mut env = reply;
                    for (k, v) in page.data.0 {
                        if let Some(k) = k.as_str() {
                            env.data.set(k, v);
                        }
                    }
                    env.with("cursor", palaver_proto::peer::vector_to_value(&next))
                }
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
                        let page = HistoryQuery::reply(&events, more);
                        let mut env = reply.with("channel", channel.as_str());
                        for (k, v) in page.data.0 {
                            if let Some(k) = k.as_str() {
                                env.data.set(k, v);
                            }
                        }
                        env
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
}
