//! The client core's subscriptions, free of I/O: a publication seen twice is shown once, and
//! after the subscriber reconnects, each channel it follows is filled in through `history`
//! from the last post it saw.
//!
//! ```text
//!  admit(topic, id, cursor) ──▶ show it? (no for an id already seen on that topic)
//!  repairs()                ──▶ [(channel, cursor)]: ask `history` after each cursor
//!  admit each message of the answers: what the subscriber missed shows, in order, once
//! ```
//!
//! Private messages are not repaired: `history` reads one conversation at a time, and a
//! person's topic gathers all of theirs.

use std::collections::{HashMap, HashSet, VecDeque};

use palaver_proto::{Conversation, Cursor, HistoryQuery, Name, Request, MAX_HISTORY};

/// How many ids each topic remembers to drop repeats.
pub const REMEMBERED: usize = 4096;

#[derive(Default)]
struct Topic {
    /// The newest position seen, in the one order every server shows.
    last: Option<Cursor>,
    seen: HashSet<String>,
    order: VecDeque<String>,
    /// The proxy's number on the last publication of this topic (see [`Feed::sequence`]).
    seq: Option<u64>,
    /// The positions of the last posts seen, in the order they arrived: publications from
    /// different servers arrive out of order, so a gap is repaired from the oldest of these.
    recent: VecDeque<Cursor>,
}

/// Positions kept per topic to repair a gap from.
const RECENT: usize = 64;

/// What a publication's number says about the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// The next one, or the first seen on the topic.
    Next,
    /// This many publications of the topic never arrived: the proxy dropped them for a
    /// subscriber that fell too far behind.
    Gap(u64),
    /// The numbers started again: the proxy restarted (the reconnect repairs the topic).
    Restarted,
}

/// What a subscriber has seen, per topic.
pub struct Feed {
    topics: HashMap<String, Topic>,
    remembered: usize,
    /// Repeats dropped.
    pub repeats: u64,
    /// Publications the proxy numbered that never arrived.
    pub missed: u64,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed::new(REMEMBERED)
    }
}

/// Where a publication or a history message sits: its id (`origin:seq`) and its cursor.
pub fn position(data: &palaver_proto::Map) -> (Option<String>, Option<Cursor>) {
    let id = data.opt_str("id").ok().flatten().map(str::to_owned);
    let cursor = match (&id, data.opt_str("cursor").ok().flatten()) {
        (_, Some(c)) => c.split_once(':').and_then(|(l, o)| {
            Some(Cursor {
                lamport: l.parse().ok()?,
                origin: o.to_owned(),
            })
        }),
        (Some(id), None) => id.split_once(':').and_then(|(origin, _)| {
            let lamport = data.opt_counter("clock").ok().flatten()?;
            Some(Cursor {
                lamport,
                origin: origin.to_owned(),
            })
        }),
        (None, None) => None,
    };
    (id, cursor)
}

/// After a reconnect, the channels are filled in at once and once more this much later, for
/// the posts made while the renewed subscription was still on its way to the proxy.
pub const SECOND_REPAIR: std::time::Duration = std::time::Duration::from_secs(1);

impl Feed {
    /// Remembers the last `remembered` ids of each topic.
    pub fn new(remembered: usize) -> Feed {
        Feed {
            topics: HashMap::new(),
            remembered: remembered.max(1),
            repeats: 0,
            missed: 0,
        }
    }

    /// Takes in the proxy's number `seq` on a publication of `topic` (before the publication
    /// is admitted): whether some were skipped.
    pub fn sequence(&mut self, topic: &str, seq: u64) -> Sequence {
        let t = self.topics.entry(topic.to_owned()).or_default();
        let before = t.seq.replace(seq);
        match before {
            None => Sequence::Next,
            Some(last) if seq == last.saturating_add(1) => Sequence::Next,
            Some(last) if seq > last => {
                let gap = seq - last - 1;
                self.missed += gap;
                Sequence::Gap(gap)
            }
            Some(_) => Sequence::Restarted,
        }
    }

    /// Where to read `topic`'s history from after a gap: after the oldest of the last posts
    /// seen there (what went missing may sort before the newest seen); `None` when none was.
    pub fn gap_repair(&self, topic: &str) -> Option<Cursor> {
        self.topics.get(topic)?.recent.iter().min().cloned()
    }

    /// Whether to show a publication on `topic` with this `id` and `cursor`: not when the id
    /// was seen on the topic already. One without an id is always shown.
    pub fn admit(&mut self, topic: &str, id: Option<&str>, cursor: Option<Cursor>) -> bool {
        let t = self.topics.entry(topic.to_owned()).or_default();
        if let Some(id) = id {
            if t.seen.contains(id) {
                self.repeats += 1;
                return false;
            }
            t.seen.insert(id.to_owned());
            t.order.push_back(id.to_owned());
            if t.order.len() > self.remembered {
                if let Some(old) = t.order.pop_front() {
                    t.seen.remove(&old);
                }
            }
        }
        if let Some(c) = cursor {
            if t.recent.len() == RECENT {
                t.recent.pop_front();
            }
            t.recent.push_back(c.clone());
            if t.last.as_ref().is_none_or(|l| c > *l) {
                t.last = Some(c);
            }
        }
        true
    }

    /// After a reconnect: for each channel seen so far, the cursor to ask `history` after.
    /// `is_channel` tells channels from people (a person's topic is not repaired).
    pub fn repairs(&self, is_channel: impl Fn(&str) -> bool) -> Vec<(Name, Cursor)> {
        let mut out: Vec<(Name, Cursor)> = self
            .topics
            .iter()
            .filter(|(topic, _)| is_channel(topic))
            .filter_map(|(topic, t)| Some((Name::parse(topic).ok()?, t.last.clone()?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The `history` request that repairs `channel` after `after` (from its newest posts,
    /// without it: a room just joined that had none).
    pub fn repair_request(channel: &Name, after: Option<Cursor>) -> Request {
        Request::History {
            query: HistoryQuery {
                of: Conversation::Channel(channel.clone()),
                limit: MAX_HISTORY,
                before: None,
                after,
                window: Default::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_proto::Envelope;

    fn cur(l: u64, o: &str) -> Option<Cursor> {
        Some(Cursor {
            lamport: l,
            origin: o.into(),
        })
    }

    #[test]
    fn a_repeat_is_dropped_once_seen_on_its_topic() {
        let mut f = Feed::default();
        assert!(f.admit("general", Some("s1:1"), cur(5, "s1")));
        assert!(!f.admit("general", Some("s1:1"), cur(5, "s1")));
        // The same id on another topic is another delivery (a post and a message never share
        // ids, but a feed does not rely on it).
        assert!(f.admit("ana", Some("s1:1"), None));
        // Without an id nothing can be told apart: shown.
        assert!(f.admit("general", None, None));
        assert!(f.admit("general", None, None));
        assert_eq!(f.repeats, 1);
    }

    #[test]
    fn only_the_last_ids_are_remembered() {
        let mut f = Feed::new(2);
        for id in ["a:1", "a:2", "a:3"] {
            assert!(f.admit("t", Some(id), None));
        }
        assert!(!f.admit("t", Some("a:3"), None));
        // Forgotten: shown again.
        assert!(f.admit("t", Some("a:1"), None));
    }

    #[test]
    fn repairs_start_after_the_newest_post_of_each_channel() {
        let mut f = Feed::default();
        f.admit("general", Some("s1:1"), cur(5, "s1"));
        f.admit("general", Some("s2:1"), cur(9, "s2"));
        // Out of order: the newest stays.
        f.admit("general", Some("s3:1"), cur(7, "s3"));
        f.admit("random", Some("s1:2"), cur(3, "s1"));
        f.admit("ana", Some("s1:3"), cur(11, "s1"));
        let repairs = f.repairs(|t| t != "ana");
        let want = vec![
            (Name::parse("general").unwrap(), cur(9, "s2").unwrap()),
            (Name::parse("random").unwrap(), cur(3, "s1").unwrap()),
        ];
        assert_eq!(repairs, want);
        let req = Feed::repair_request(&repairs[0].0, Some(repairs[0].1.clone())).to_envelope();
        assert_eq!(req.data.opt_str("after").unwrap(), Some("9:s2"));
    }

    #[test]
    fn a_skipped_number_is_a_gap_repaired_from_before_it() {
        let mut f = Feed::default();
        assert_eq!(f.sequence("general", 41), Sequence::Next, "the first seen");
        f.admit("general", Some("s1:1"), cur(9, "s1"));
        assert_eq!(f.sequence("general", 42), Sequence::Next);
        // Out of order across servers: the repair starts before the older one.
        f.admit("general", Some("s2:1"), cur(7, "s2"));
        assert_eq!(f.sequence("general", 45), Sequence::Gap(2));
        assert_eq!(f.gap_repair("general"), cur(7, "s2"));
        assert_eq!(f.missed, 2);
        // Another topic counts on its own.
        assert_eq!(f.sequence("random", 9), Sequence::Next);
        assert_eq!(f.sequence("random", 10), Sequence::Next);
        assert_eq!(f.gap_repair("random"), None);
        // Numbers that go back: the proxy started again, nothing counted.
        assert_eq!(f.sequence("general", 1), Sequence::Restarted);
        assert_eq!(f.sequence("general", 2), Sequence::Next);
        assert_eq!(f.missed, 2);
    }

    #[test]
    fn positions_come_from_publications_and_history_messages() {
        let publication = Envelope::new("publish")
            .with("id", "s2:17")
            .with("clock", 96);
        assert_eq!(
            position(&publication.data),
            (Some("s2:17".into()), cur(96, "s2"))
        );
        let message = Envelope::new("history")
            .with("id", "s2:17")
            .with("cursor", "96:s2")
            .with("clock", 96);
        assert_eq!(
            position(&message.data),
            (Some("s2:17".into()), cur(96, "s2"))
        );
        assert_eq!(position(&Envelope::new("x").data), (None, None));
    }
}
