//! Reads of the store that answer requests after their batch commits (so that they see every
//! write acknowledged before them): a `history` page, an `unseal`, a `join`'s posts, an inbox
//! page, unread counts, receipts; and the "delivered" receipts a stored `taken` publishes.

use std::collections::BTreeMap;

use palaver_proto::{
    Envelope, Event, EventKind, EventRef, HistoryQuery, MessageKind, Name, Place, ReaderKind, Reply,
};

use super::Engine;
use crate::state::{receipt, StoredRead};

impl Engine {
    /// Answers a read of the store (with what `reply` says already), made after `event` (the
    /// request's own, if it made one) was stored; and what it publishes.
    pub(super) fn read_stored(
        &self,
        read: &StoredRead,
        reply: Envelope,
        event: Option<&Event>,
    ) -> (Envelope, Vec<(String, Envelope)>) {
        match read {
            StoredRead::Delivered { user, from, to } => {
                let told = event.map_or_else(Vec::new, |e| self.delivered(user, from, to, e));
                (reply, told)
            }
            StoredRead::Receipts { user, id } => (self.receipts(user, id), Vec::new()),
            other => (self.answer(other, reply), Vec::new()),
        }
    }

    fn answer(&self, read: &StoredRead, reply: Envelope) -> Envelope {
        match read {
            StoredRead::Delivered { .. } | StoredRead::Receipts { .. } => reply,
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
                    window: Default::default(),
                };
                let page = if *limit == 0 {
                    Ok((Vec::new(), false))
                } else {
                    self.store.history(&q)
                };
                match page {
                    Ok((events, more)) => {
                        let reply = reply.with("channel", channel.as_str());
                        let reply = self.state.describe_room(channel, reply);
                        with_messages(reply, &events, more)
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
                    palaver_proto::EventKind::Message(MessageKind::Direct {
                        src,
                        dst,
                        message,
                    }) if src == user || dst == user => Reply::ok("unseal")
                        .with("src", src.as_str())
                        .with("dst", dst.as_str())
                        .with("message", message.as_str())
                        .with("id", e.id())
                        .with("sent", e.timestamp)
                        .with("lamport", e.lamport),
                    // The same answer whether it does not exist or is someone else's.
                    palaver_proto::EventKind::Message(_)
                    | palaver_proto::EventKind::Account(_)
                    | palaver_proto::EventKind::Room(_)
                    | palaver_proto::EventKind::Reader(_)
                    | palaver_proto::EventKind::Claim(_) => {
                        Reply::error("unseal", &format!("`{user}` has no private message {id}"))
                    }
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

    /// "Delivered" receipts for what `user`'s `taken` event `e` took (its cursor moved from
    /// `from` to `to`): to each sender, one receipt up to the latest of their messages it took.
    fn delivered(
        &self,
        user: &Name,
        from: &BTreeMap<String, u64>,
        to: &BTreeMap<String, u64>,
        e: &Event,
    ) -> Vec<(String, Envelope)> {
        let took = match self.store.taken_between(user, from, to, DELIVERED_SCAN) {
            Ok(took) => took,
            Err(err) => {
                tracing::error!(error = %err, "cannot find what a cursor took; no delivered receipts");
                return Vec::new();
            }
        };
        // Newest first: the first of each sender is the one to name.
        let mut latest: BTreeMap<&Name, EventRef> = BTreeMap::new();
        for m in &took {
            if let EventKind::Message(MessageKind::Direct { src, .. }) = &m.kind {
                latest.entry(src).or_insert_with(|| EventRef {
                    origin: m.origin.clone(),
                    seq: m.seq,
                });
            }
        }
        latest
            .into_iter()
            .map(|(sender, upto)| {
                let env = receipt(user, sender, &upto, "delivered", e.timestamp)
                    .with("timestamp", e.timestamp)
                    .with("clock", e.lamport)
                    .with("id", e.id());
                (sender.to_string(), env)
            })
            .collect()
    }

    /// The `receipts` answer for `user`'s own message `id`.
    fn receipts(&self, user: &Name, id: &EventRef) -> Envelope {
        let none = || {
            Reply::error(
                "receipts",
                &format!("`{user}` has no message {id} of their own"),
            )
        };
        let failed = |err: palaver_store::StoreError| {
            tracing::error!(error = %err, "cannot read receipts");
            Reply::error("receipts", "the server could not read its receipts")
        };
        let m = match self.store.event(&id.origin, id.seq) {
            Ok(Some(m)) => m,
            Ok(None) => return none(),
            Err(err) => return failed(err),
        };
        // The same answer whether it does not exist or is someone else's.
        let Some(audience) = self.state.audience(user, &m) else {
            return none();
        };
        let mut readers = Vec::new();
        for (reader, tells) in &audience.readers {
            let (delivered, read) = match self.receipt_of(reader, &audience.place, &m) {
                Ok(found) => found,
                Err(err) => return failed(err),
            };
            let mut entry = vec![(
                rmpv::Value::from("user"),
                rmpv::Value::from(reader.as_str()),
            )];
            if let Some(at) = delivered.filter(|_| audience.delivered) {
                entry.push(("delivered".into(), at.into()));
            }
            if let Some(at) = read.filter(|_| *tells) {
                entry.push(("read".into(), at.into()));
            }
            readers.push(rmpv::Value::Map(entry));
        }
        Reply::ok("receipts")
            .with("id", m.id())
            .with("readers", readers)
    }

    /// When `reader` first took message `m` (a `taken` whose cursor covers it) and first read
    /// it (a `read` in `place` at it or after it): each is later than `m` in the total order,
    /// so only what follows it is looked at, and at most [`RECEIPT_SCAN`] events.
    fn receipt_of(
        &self,
        reader: &Name,
        place: &Place,
        m: &Event,
    ) -> Result<(Option<f64>, Option<f64>), palaver_store::StoreError> {
        let (mut delivered, mut read) = (None, None);
        let mut after = (m.lamport, String::new(), 0);
        let mut seen = 0;
        while seen < RECEIPT_SCAN && (delivered.is_none() || read.is_none()) {
            let page = self
                .store
                .reader_events_after(reader, (after.0, &after.1, after.2), 500)?;
            let Some(last) = page.last() else { break };
            after = (last.lamport, last.origin.clone(), last.seq);
            seen += page.len();
            for e in &page {
                match &e.kind {
                    EventKind::Reader(ReaderKind::Taken { cursor, .. })
                        if delivered.is_none()
                            && cursor.get(&m.origin).is_some_and(|s| *s >= m.seq) =>
                    {
                        delivered = Some(e.timestamp);
                    }
                    EventKind::Reader(ReaderKind::Read {
                        place: p, at, id, ..
                    }) if read.is_none()
                        && p == place
                        && (*at, id.origin.as_str()) >= (m.lamport, m.origin.as_str()) =>
                    {
                        read = Some(e.timestamp);
                    }
                    EventKind::Reader(
                        ReaderKind::Taken { .. }
                        | ReaderKind::Read { .. }
                        | ReaderKind::Settings { .. },
                    )
                    | EventKind::Message(_)
                    | EventKind::Account(_)
                    | EventKind::Room(_)
                    | EventKind::Claim(_) => {}
                }
            }
            if page.len() < 500 {
                break;
            }
        }
        Ok((delivered, read))
    }

    /// Per room and per conversation of `user`'s, how many messages from others lie after
    /// their marker.
    fn unread(
        &self,
        user: &palaver_proto::Name,
    ) -> Result<(Vec<rmpv::Value>, Vec<rmpv::Value>), palaver_store::StoreError> {
        use palaver_proto::{Conversation, Place};
        use rmpv::Value;
        let entry = |key: &str,
                     of: &Conversation,
                     marker: Option<&(u64, String)>|
         -> Result<Value, palaver_store::StoreError> {
            let name = match of {
                Conversation::Channel(c) => c,
                Conversation::Direct(_, with) => with,
            };
            let after = marker.map(|(at, o)| (*at, o.as_str()));
            let n = self.store.count_after(of, after, user)?;
            let (last, marked) = self.store.times(of, after)?;
            let mut m = vec![
                (Value::from(key), Value::from(name.as_str())),
                (Value::from("unread"), Value::from(n)),
            ];
            if let Some((at, origin)) = marker {
                m.push((Value::from("marker"), Value::from(format!("{at}:{origin}"))));
            }
            if let Some(t) = marked {
                m.push((Value::from("marker_at"), Value::from(t)));
            }
            if let Some(t) = last {
                m.push((Value::from("last_at"), Value::from(t)));
            }
            Ok(Value::Map(m))
        };
        let mut rooms = Vec::new();
        for (place, marker) in self.state.unread_places(user) {
            let Place::Channel(c) = place else { continue };
            rooms.push(entry(
                "channel",
                &Conversation::Channel(c),
                marker.as_ref(),
            )?);
        }
        let mut people = Vec::new();
        for with in self.store.partners(user)? {
            let marker = self.state.marker_with(user, &with);
            let of = Conversation::Direct(user.clone(), with);
            people.push(entry("with", &of, marker.as_ref())?);
        }
        Ok((rooms, people))
    }
}

/// The most private messages one `taken` looks at for "delivered" receipts (the newest).
const DELIVERED_SCAN: usize = 1000;

/// The most events about reading `receipts` looks at per reader.
const RECEIPT_SCAN: usize = 5000;

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
