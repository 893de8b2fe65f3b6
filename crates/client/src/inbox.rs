//! The inbox through the client core: what arrived for a person while a device was away,
//! exactly once and in order as they see it.
//!
//! ```text
//!  inbox(device) ──▶ page: events after the device's cursor, the cursor once taken, more?
//!  hand the events out (drop any id seen already) ──▶ taken(device, cursor) ──▶ next page
//! ```
//!
//! Delivery is at least once on the wire (a confirmation lost means the page comes again);
//! repeats are dropped by event id, so the person sees each message once.

use std::collections::HashSet;

use palaver_proto::peer::Vector;
use palaver_proto::{Event, HistoryQuery, Name, Request};

use crate::{ClientError, Connection};

/// One page of an inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxPage {
    /// Oldest first, in the cluster's total order.
    pub events: Vec<Event>,
    /// The device's cursor once these are taken: what [`Connection::taken`] confirms.
    pub cursor: Vector,
    pub more: bool,
}

/// What one person has done with a message that was for them (see `receipts`).
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub user: String,
    /// When one of their devices took it from the inbox (private messages only).
    pub delivered: Option<f64>,
    /// When their read marker reached it; never shown for people who turned receipts off.
    pub read: Option<f64>,
}

impl InboxPage {
    /// Reads an `inbox` answer.
    ///
    /// # Errors
    /// When its messages cannot be read.
    pub fn parse(reply: &palaver_proto::Envelope) -> Result<InboxPage, palaver_proto::ProtoError> {
        let (events, more) = HistoryQuery::parse_reply(reply)?;
        let cursor = reply
            .data
            .get("cursor")
            .and_then(|v| v.as_map())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(InboxPage {
            events,
            cursor,
            more,
        })
    }
}

impl Connection {
    /// The next page of `user`'s inbox for `device` (at most `limit` events).
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn inbox(
        &mut self,
        user: &Name,
        device: &str,
        limit: usize,
    ) -> Result<InboxPage, ClientError> {
        let reply = self.request(&Request::Inbox {
            user: user.clone(),
            device: device.to_owned(),
            limit,
        })?;
        Ok(InboxPage::parse(&reply)?)
    }

    /// Confirms that `device` has taken `user`'s inbox up to `cursor`.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn taken(&mut self, user: &Name, device: &str, cursor: &Vector) -> Result<(), ClientError> {
        self.request(&Request::Taken {
            user: user.clone(),
            device: device.to_owned(),
            cursor: cursor.clone(),
        })
        .map(drop)
    }

    /// Moves `user`'s read marker in the room or conversation of message `id` up to it (a
    /// marker never moves back). Returns the message the marker stands at.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when the message does not exist or is not in a
    /// room or conversation of `user`'s.
    pub fn read(
        &mut self,
        user: &Name,
        id: &palaver_proto::EventRef,
    ) -> Result<String, ClientError> {
        let reply = self.request(&Request::Read {
            user: user.clone(),
            id: id.clone(),
        })?;
        // A marker that stays where it stood says where (`upto`); a moved one stands at `id`.
        Ok(reply
            .data
            .opt_str("upto")?
            .map_or_else(|| id.to_string(), str::to_owned))
    }

    /// How many messages lie after `user`'s markers: `(room or person, count)` for each room
    /// they are in (`#` before a room's name) and each person they have written with.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn unread(&mut self, user: &Name) -> Result<Vec<(String, u64)>, ClientError> {
        let reply = self.request(&Request::Unread { user: user.clone() })?;
        let mut out = Vec::new();
        for m in reply.data.maps("channels")? {
            out.push((format!("#{}", m.str("channel")?), m.counter("unread")?));
        }
        for m in reply.data.maps("conversations")? {
            out.push((m.str("with")?.to_owned(), m.counter("unread")?));
        }
        Ok(out)
    }

    /// `user`'s settings, changing `receipts` (whether others learn when `user` has read their
    /// messages) when given. Returns whether `user` sends read receipts.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn settings(&mut self, user: &Name, receipts: Option<bool>) -> Result<bool, ClientError> {
        let reply = self.request(&Request::Settings {
            user: user.clone(),
            receipts,
        })?;
        // A change is answered with the event's id; what stands is what was asked.
        Ok(reply
            .data
            .opt_bool("receipts")?
            .or(receipts)
            .unwrap_or(true))
    }

    /// Who `user`'s own message `id` was for, and when each took it and read it.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when `id` is not a message of `user`'s.
    pub fn receipts(
        &mut self,
        user: &Name,
        id: &palaver_proto::EventRef,
    ) -> Result<Vec<Receipt>, ClientError> {
        let reply = self.request(&Request::Receipts {
            user: user.clone(),
            id: id.clone(),
        })?;
        let mut out = Vec::new();
        for m in reply.data.maps("readers")? {
            out.push(Receipt {
                user: m.str("user")?.to_owned(),
                delivered: m.opt_f64("delivered")?,
                read: m.opt_f64("read")?,
            });
        }
        Ok(out)
    }

    /// Takes everything waiting in `user`'s inbox for `device`, page by page: each event not
    /// in `seen` goes to `take` (and into `seen`), then the page is confirmed. Returns how
    /// many were handed out.
    ///
    /// # Errors
    /// As [`Connection::request`]; what was confirmed before the error stays taken.
    pub fn catch_up(
        &mut self,
        user: &Name,
        device: &str,
        seen: &mut HashSet<String>,
        mut take: impl FnMut(&Event),
    ) -> Result<usize, ClientError> {
        let mut n = 0;
        loop {
            let page = self.inbox(user, device, palaver_proto::MAX_HISTORY)?;
            for e in &page.events {
                if seen.insert(e.id()) {
                    take(e);
                    n += 1;
                }
            }
            self.taken(user, device, &page.cursor)?;
            if !page.more {
                return Ok(n);
            }
        }
    }
}
