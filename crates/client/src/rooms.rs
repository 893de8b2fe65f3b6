//! Rooms through the client core: channels with an owner, joining (with the channel's newest
//! posts and its topic), leaving, who is in a room, its topic, the rooms one is in, and
//! deleting a room one owns.
//!
//! ```text
//!  Subscriber::subscribe(channel) ─▶ Connection::join ─▶ posts ─▶ Subscriber::joined(posts)
//!      live posts from here on            newest N          shown first; the seam is checked
//!                                                           again a moment later (history)
//! ```

use palaver_proto::{Event, HistoryQuery, Name, Request};

use crate::{ClientError, Connection};

/// What `join` answers: the channel's newest posts, oldest first, whether older ones exist,
/// and what the room says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub posts: Vec<Event>,
    pub more: bool,
    pub about: About,
}

/// What a room says of itself (in the answers to `join` and `members`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct About {
    /// Who created it (and alone may delete it), if anyone.
    pub owner: Option<String>,
    /// Its topic, and who set it.
    pub topic: Option<(String, String)>,
}

impl About {
    fn of(reply: &palaver_proto::Envelope) -> About {
        let text = |key| reply.data.opt_str(key).ok().flatten().map(str::to_owned);
        About {
            owner: text("owner"),
            topic: text("topic").map(|t| (t, text("topic_by").unwrap_or_default())),
        }
    }
}

impl Connection {
    /// Creates a channel owned by `owner` (who alone may delete it).
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when the name is taken.
    pub fn create_room(&mut self, channel: &Name, owner: &Name) -> Result<(), ClientError> {
        self.request(&Request::Channel {
            channel: channel.clone(),
            user: Some(owner.clone()),
        })
        .map(drop)
    }

    /// `user` joins `channel`; returns its newest `limit` posts. Subscribe to the channel
    /// first, and hand the posts to [`crate::Subscriber::joined`], so that nothing falls
    /// between the two.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when the channel does not exist or is deleted.
    pub fn join(
        &mut self,
        user: &Name,
        channel: &Name,
        limit: usize,
    ) -> Result<Joined, ClientError> {
        let reply = self.request(&Request::Join {
            user: user.clone(),
            channel: channel.clone(),
            limit,
        })?;
        let (posts, more) = HistoryQuery::parse_reply(&reply)?;
        let about = About::of(&reply);
        Ok(Joined { posts, more, about })
    }

    /// `user` leaves `channel`.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when `user` is not in it.
    pub fn leave(&mut self, user: &Name, channel: &Name) -> Result<(), ClientError> {
        self.request(&Request::Leave {
            user: user.clone(),
            channel: channel.clone(),
        })
        .map(drop)
    }

    /// Who is in `channel`.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn members(&mut self, channel: &Name) -> Result<Vec<String>, ClientError> {
        let reply = self.request(&Request::Members {
            channel: channel.clone(),
        })?;
        Ok(reply.data.str_list("members")?)
    }

    /// Who is in `channel`, and what it says of itself.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn room(&mut self, channel: &Name) -> Result<(Vec<String>, About), ClientError> {
        let reply = self.request(&Request::Members {
            channel: channel.clone(),
        })?;
        Ok((reply.data.str_list("members")?, About::of(&reply)))
    }

    /// `user` sets `channel`'s topic (`None`: clears it); they must be in the room.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when `user` is not in the room, or the topic is too
    /// long or holds control characters.
    pub fn set_topic(
        &mut self,
        user: &Name,
        channel: &Name,
        topic: Option<&str>,
    ) -> Result<(), ClientError> {
        self.request(&Request::Topic {
            user: user.clone(),
            channel: channel.clone(),
            topic: topic.map(str::to_owned),
        })
        .map(drop)
    }

    /// The rooms `user` is in.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub fn joined(&mut self, user: &Name) -> Result<Vec<String>, ClientError> {
        let reply = self.request(&Request::Joined { user: user.clone() })?;
        Ok(reply.data.str_list("channels")?)
    }

    /// Deletes `channel`, which `user` owns, on every server.
    ///
    /// # Errors
    /// As [`Connection::request`]; refused when it is not `user`'s, is already deleted, or the
    /// servers could not agree in time.
    pub fn delete(&mut self, user: &Name, channel: &Name) -> Result<(), ClientError> {
        self.request(&Request::Delete {
            user: user.clone(),
            channel: channel.clone(),
        })
        .map(drop)
    }
}
