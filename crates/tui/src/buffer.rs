//! One room or conversation as the screen shows it: its messages and notices in the cluster's
//! total order (Lamport time, then origin), each once; where the person's read marker stands
//! and where the "new messages" line goes; how many are unread; the receipt state of the
//! person's own private messages; and how far the view is scrolled back.

use std::collections::HashSet;

use palaver_proto::Place;

/// Where an entry sorts: Lamport time, then origin (the order every server shows).
pub type Position = (u64, String);

/// What became of one of your own private messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Receipt {
    /// A server has stored it (every server will).
    Sent,
    /// One of the recipient's clients has taken it.
    Delivered,
    /// The recipient's read marker has passed it.
    Read,
}

/// A post or private message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub position: Position,
    pub from: String,
    pub text: String,
    /// When the accepting server stored it (its synchronised clock), in seconds.
    pub at: f64,
    /// For your own private messages: how far it got.
    pub receipt: Option<Receipt>,
    /// Sealed and not opened yet (a private message of an account whose text is fetched).
    pub sealed: bool,
}

/// A line of the view.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Message(Message),
    /// Something that happened: a join, a leave, someone coming online, a new coordinator.
    Notice {
        position: Position,
        at: f64,
        text: String,
    },
}

impl Entry {
    pub fn position(&self) -> &Position {
        match self {
            Entry::Message(m) => &m.position,
            Entry::Notice { position, .. } => position,
        }
    }
}

/// The most entries a buffer keeps in memory; older ones are read again from history.
pub const MAX_ENTRIES: usize = 5000;

#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    pub place: Place,
    /// In the total order.
    entries: Vec<Entry>,
    ids: HashSet<String>,
    /// Messages after the read marker, as the servers count them (then kept up to date).
    pub unread: u64,
    /// The message the person's read marker stands at.
    pub marker: Option<Position>,
    /// Where the "new messages" line goes: the marker when the buffer was opened.
    pub new_line: Option<Position>,
    /// The time of the newest message, for sorting the sidebar.
    pub activity: f64,
    /// Rows scrolled back from the newest (0: following live messages).
    pub scroll: usize,
    /// Older history exists beyond the first entry.
    pub more_before: bool,
    /// A page of older history has been asked for and not yet arrived.
    pub loading: bool,
    /// Someone mentioned you or wrote to you here since you last looked.
    pub highlight: bool,
}

impl Buffer {
    pub fn new(place: Place) -> Buffer {
        Buffer {
            place,
            entries: Vec::new(),
            ids: HashSet::new(),
            unread: 0,
            marker: None,
            new_line: None,
            activity: 0.0,
            scroll: 0,
            more_before: true,
            loading: false,
            highlight: false,
        }
    }

    /// The name the sidebar shows: `#room` or the other person's name.
    pub fn title(&self) -> String {
        match &self.place {
            Place::Channel(c) => format!("#{c}"),
            Place::With(w) => w.to_string(),
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The newest message, if any.
    pub fn last_message(&self) -> Option<&Message> {
        self.entries.iter().rev().find_map(|e| match e {
            Entry::Message(m) => Some(m),
            Entry::Notice { .. } => None,
        })
    }

    /// The oldest entry's position: where older history is read from.
    pub fn first_position(&self) -> Option<&Position> {
        self.entries.first().map(Entry::position)
    }

    /// Adds `entry` in its place in the total order, unless its id is here already. Returns
    /// whether it was new.
    pub fn add(&mut self, entry: Entry) -> bool {
        if let Entry::Message(m) = &entry {
            if !self.ids.insert(m.id.clone()) {
                return false;
            }
            self.activity = self.activity.max(m.at);
        }
        let at = self
            .entries
            .partition_point(|e| e.position() <= entry.position());
        self.entries.insert(at, entry);
        if self.entries.len() > MAX_ENTRIES {
            // The oldest go; they can be read again.
            let gone = self.entries.len() - MAX_ENTRIES;
            for e in self.entries.drain(..gone) {
                if let Entry::Message(m) = e {
                    self.ids.remove(&m.id);
                }
            }
            self.more_before = true;
        }
        true
    }

    /// A message with `id`, if this buffer holds it.
    pub fn message_mut(&mut self, id: &str) -> Option<&mut Message> {
        self.entries.iter_mut().find_map(|e| match e {
            Entry::Message(m) if m.id == id => Some(m),
            _ => None,
        })
    }

    /// Moves the read marker to `to` (never back); the unread count follows what this buffer
    /// holds after it.
    pub fn mark(&mut self, to: Position, me: &str) {
        if self.marker.as_ref().is_some_and(|m| *m >= to) {
            return;
        }
        self.unread = self
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::Message(m) if m.position > to && m.from != me))
            .count() as u64;
        self.marker = Some(to);
    }

    /// Your own messages up to `upto` (an id in this buffer) reached `state`; a receipt never
    /// goes back. Returns whether anything changed.
    pub fn receipt(&mut self, upto: &str, state: Receipt, me: &str) -> bool {
        let Some(limit) = self.entries.iter().find_map(|e| match e {
            Entry::Message(m) if m.id == upto => Some(m.position.clone()),
            _ => None,
        }) else {
            return false;
        };
        let mut changed = false;
        for e in &mut self.entries {
            if let Entry::Message(m) = e {
                if m.from == me && m.position <= limit && m.receipt.is_some_and(|r| r < state) {
                    m.receipt = Some(state);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Opening the buffer: the "new messages" line goes at the marker as it stands now.
    pub fn open(&mut self) {
        self.new_line = self.marker.clone();
        self.highlight = false;
    }

    /// Whether the "new messages" line goes just before entry `i`: the first message after
    /// the line's position, when there is one.
    pub fn new_line_before(&self, i: usize, me: &str) -> bool {
        let Some(line) = &self.new_line else {
            return false;
        };
        let first = self
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Message(m) if m.position > *line && m.from != me));
        first == Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_proto::Name;

    fn msg(id: &str, lamport: u64, from: &str) -> Entry {
        Entry::Message(Message {
            id: id.into(),
            position: (lamport, id.split(':').next().unwrap().into()),
            from: from.into(),
            text: format!("text {id}"),
            at: lamport as f64,
            receipt: (from == "me").then_some(Receipt::Sent),
            sealed: false,
        })
    }

    fn room() -> Buffer {
        Buffer::new(Place::Channel(Name::parse("den").unwrap()))
    }

    fn ids(b: &Buffer) -> Vec<String> {
        b.entries()
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.id.clone()),
                Entry::Notice { .. } => None,
            })
            .collect()
    }

    #[test]
    fn messages_sort_in_the_total_order_and_show_once() {
        let mut b = room();
        assert!(b.add(msg("s2:1", 5, "ana")));
        assert!(b.add(msg("s1:1", 3, "bob")));
        assert!(b.add(msg("s1:2", 5, "bob")));
        assert!(!b.add(msg("s2:1", 5, "ana")), "a repeat is dropped");
        assert_eq!(ids(&b), ["s1:1", "s1:2", "s2:1"]);
        assert_eq!(b.title(), "#den");
        assert_eq!(b.activity, 5.0);
    }

    #[test]
    fn the_marker_never_moves_back_and_counts_what_follows() {
        let mut b = room();
        for (i, l) in [1, 2, 3, 4].iter().enumerate() {
            b.add(msg(&format!("s1:{}", i + 1), *l, "ana"));
        }
        b.add(msg("s1:9", 5, "me"));
        b.mark((2, "s1".into()), "me");
        assert_eq!(b.unread, 2, "two of ana's after it; my own does not count");
        b.mark((1, "s1".into()), "me");
        assert_eq!(b.marker, Some((2, "s1".into())));
        b.mark((4, "s1".into()), "me");
        assert_eq!(b.unread, 0);
    }

    #[test]
    fn the_new_messages_line_stays_where_the_marker_was_on_opening() {
        let mut b = room();
        for (i, l) in [1, 2, 3].iter().enumerate() {
            b.add(msg(&format!("s1:{}", i + 1), *l, "ana"));
        }
        b.mark((1, "s1".into()), "me");
        b.open();
        b.mark((3, "s1".into()), "me");
        assert!(b.new_line_before(1, "me"));
        assert!(!b.new_line_before(0, "me") && !b.new_line_before(2, "me"));
        // Opened again with everything read: no line.
        b.open();
        assert!((0..3).all(|i| !b.new_line_before(i, "me")));
    }

    #[test]
    fn receipts_rise_up_to_the_message_named_and_never_fall() {
        let mut b = Buffer::new(Place::With(Name::parse("ana").unwrap()));
        b.add(msg("s1:1", 1, "me"));
        b.add(msg("s1:2", 2, "ana"));
        b.add(msg("s1:3", 3, "me"));
        b.add(msg("s1:4", 4, "me"));
        assert!(b.receipt("s1:3", Receipt::Read, "me"));
        assert!(b.receipt("s1:4", Receipt::Delivered, "me"));
        assert!(!b.receipt("s1:3", Receipt::Delivered, "me"), "never back");
        assert!(!b.receipt("s9:9", Receipt::Read, "me"), "unknown id");
        let states: Vec<_> = b
            .entries()
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.receipt),
                Entry::Notice { .. } => None,
            })
            .collect();
        assert_eq!(
            states,
            [
                Some(Receipt::Read),
                None,
                Some(Receipt::Read),
                Some(Receipt::Delivered)
            ]
        );
    }

    #[test]
    fn a_full_buffer_lets_the_oldest_go_and_can_read_them_again() {
        let mut b = room();
        for i in 0..MAX_ENTRIES + 10 {
            b.add(msg(&format!("s1:{i}"), i as u64 + 1, "ana"));
        }
        assert_eq!(b.entries().len(), MAX_ENTRIES);
        assert!(b.more_before);
        assert!(
            b.add(msg("s1:0", 1, "ana")),
            "an id that left can come back"
        );
    }
}
