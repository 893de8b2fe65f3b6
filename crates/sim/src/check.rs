//! The guarantees, as invariants: some checked as the run goes (an answer that says it wrote
//! must find the write on its server's disk; what was acknowledged before a request exists
//! for whichever server answers it), the rest once everything has healed.

use std::collections::{BTreeMap, BTreeSet};

use palaver_proto::{Conversation, Event, EventKind, MessageKind, Naming, ReaderKind, Step};
use palaver_store::Store;

/// A write a client was told succeeded.
#[derive(Debug, Clone)]
pub struct Acked {
    pub request_id: String,
    /// The event's id, `origin:seq`, as the answer gave it.
    pub id: String,
    pub service: &'static str,
}

/// What one server holds once the run is over.
pub struct View {
    name: String,
    alive: bool,
    summary: (Vec<(String, u64)>, u64),
    hidden: Vec<(String, u64)>,
    /// Every event, by id.
    events: BTreeMap<String, Event>,
    /// Every conversation's visible history, in its order: the texts.
    histories: BTreeMap<String, Vec<String>>,
    /// The channels deleted, and this server's own prepared deletes it has not decided.
    deleted: BTreeSet<String>,
    undecided: BTreeSet<String>,
}

impl View {
    /// Reads what `store` holds.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn read(name: &str, store: &Store, alive: bool) -> anyhow::Result<View> {
        let summary = store.summary()?;
        let mut events = BTreeMap::new();
        let mut conversations = BTreeMap::new();
        for (origin, _) in &summary.0 {
            let mut after = 0;
            loop {
                let page = store.events_after(origin, after, 1000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in page {
                    match &e.kind {
                        EventKind::Message(MessageKind::Post { channel, .. }) => {
                            let of = Conversation::Channel(channel.clone());
                            conversations.insert(format!("{of:?}"), of);
                        }
                        EventKind::Message(MessageKind::Direct { src, dst, .. }) => {
                            let (a, b) = if src <= dst { (src, dst) } else { (dst, src) };
                            let of = Conversation::Direct(a.clone(), b.clone());
                            conversations.insert(format!("{of:?}"), of);
                        }
                        EventKind::Account(_)
                        | EventKind::Room(_)
                        | EventKind::Reader(_)
                        | EventKind::Claim(_) => {}
                    }
                    events.insert(e.id(), e);
                }
            }
        }
        let mut deleted = BTreeSet::new();
        for e in events.values() {
            let room = match &e.kind {
                EventKind::Room(room) => room,
                EventKind::Message(_)
                | EventKind::Account(_)
                | EventKind::Reader(_)
                | EventKind::Claim(_) => continue,
            };
            match room.naming() {
                Naming::Deletes(c) => {
                    deleted.insert(c.to_string());
                }
                Naming::Creates(_) | Naming::Nothing => {}
            }
        }
        let undecided = undecided(name, events.values());
        let mut histories = BTreeMap::new();
        for (key, of) in conversations {
            let texts = store
                .whole_history(&of)?
                .into_iter()
                .filter_map(|e| match e.kind {
                    EventKind::Message(
                        MessageKind::Post { message, .. } | MessageKind::Direct { message, .. },
                    ) => Some(message),
                    EventKind::Account(_)
                    | EventKind::Room(_)
                    | EventKind::Reader(_)
                    | EventKind::Claim(_) => None,
                })
                .collect();
            histories.insert(key, texts);
        }
        Ok(View {
            name: name.to_owned(),
            alive,
            hidden: store.hidden()?,
            summary,
            events,
            histories,
            deleted,
            undecided,
        })
    }
}

impl View {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The channels deleted here.
    pub fn deleted(&self) -> &BTreeSet<String> {
        &self.deleted
    }

    /// The inbox cursor of `user`'s `device` that this server holds: its `taken` events merged
    /// (per origin, the larger).
    pub fn cursor(&self, user: &str, device: &str) -> BTreeMap<String, u64> {
        let mut cursor = BTreeMap::new();
        for e in self.events.values() {
            let c = match &e.kind {
                EventKind::Reader(ReaderKind::Taken {
                    user: u,
                    device: d,
                    cursor: c,
                }) if u.as_str() == user && d == device => c,
                EventKind::Reader(
                    ReaderKind::Taken { .. }
                    | ReaderKind::Read { .. }
                    | ReaderKind::Settings { .. },
                )
                | EventKind::Message(_)
                | EventKind::Account(_)
                | EventKind::Room(_)
                | EventKind::Claim(_) => continue,
            };
            for (origin, n) in c {
                let e: &mut u64 = cursor.entry(origin.clone()).or_default();
                *e = (*e).max(*n);
            }
        }
        cursor
    }

    /// Whether event `id` (`origin:seq`) is hidden here (a request's repeat).
    pub fn hides(&self, id: &str) -> bool {
        self.hidden.iter().any(|(o, n)| format!("{o}:{n}") == id)
    }
}

/// The two-phase deletes server `name` prepared (by `events`) and has not decided.
pub fn undecided<'a>(name: &str, events: impl Iterator<Item = &'a Event>) -> BTreeSet<String> {
    let (mut prepared, mut decided) = (BTreeSet::new(), BTreeSet::new());
    for e in events.filter(|e| e.origin == name) {
        let room = match &e.kind {
            EventKind::Room(room) => room,
            EventKind::Message(_)
            | EventKind::Account(_)
            | EventKind::Reader(_)
            | EventKind::Claim(_) => continue,
        };
        match room.step() {
            Some(Step::Prepared { tx, .. }) => prepared.insert(tx.to_owned()),
            Some(Step::Decided { tx, .. }) => decided.insert(tx.to_owned()),
            None => false,
        };
    }
    prepared.difference(&decided).cloned().collect()
}

#[derive(Debug, Default)]
pub struct Checks {
    pub violations: Vec<String>,
    pub acked: Vec<Acked>,
    /// Channels whose delete was acknowledged.
    pub deleted: BTreeSet<String>,
    /// Channels whose creation was acknowledged, and names whose login was.
    pub channels: BTreeSet<String>,
    pub people: BTreeSet<String>,
    /// Lines posted in one request (`posts`), acknowledged: per channel, in the order sent.
    pub pasted: Vec<(String, Vec<String>)>,
    /// Per name, the request whose creation of it (a channel) or registration was
    /// acknowledged: a second request told the same is a claim given twice.
    pub claimed_by: BTreeMap<String, String>,
}

impl Checks {
    /// A claim is decided once: every decision of a slot, on every server, names the same
    /// claim (two leaders may each store one).
    fn one_log_of_claims(&mut self, views: &[View]) {
        let mut decided: BTreeMap<u64, (String, String)> = BTreeMap::new();
        for v in views {
            for (id, e) in &v.events {
                let (slot, claim) = match &e.kind {
                    EventKind::Claim(palaver_proto::ClaimKind::Decided { slot, claim }) => {
                        (slot, claim)
                    }
                    EventKind::Claim(
                        palaver_proto::ClaimKind::Promise { .. }
                        | palaver_proto::ClaimKind::Vote { .. },
                    )
                    | EventKind::Message(_)
                    | EventKind::Account(_)
                    | EventKind::Room(_)
                    | EventKind::Reader(_) => continue,
                };
                let value = format!("{claim:?}");
                match decided.get(slot) {
                    Some((first, was)) if *was != value => {
                        let why = format!(
                            "a claim decided once: slot {slot} is {was} by {first} but {value} by {id}"
                        );
                        self.violation(why);
                    }
                    Some(_) => {}
                    None => {
                        decided.insert(*slot, (id.clone(), value));
                    }
                }
            }
        }
    }

    /// One request's posts stand in its channel's history in the order sent, on every server:
    /// all of them, or none when the channel was deleted since (every acknowledged event is
    /// held, by the check above, deleted or not).
    fn pasted_in_order(&mut self, views: &[View]) {
        let pasted = std::mem::take(&mut self.pasted);
        for v in views {
            for (channel, lines) in &pasted {
                let of = Conversation::Channel(
                    palaver_proto::Name::parse(channel).expect("a channel the simulation named"),
                );
                let history = v
                    .histories
                    .get(&format!("{of:?}"))
                    .map_or(&[][..], Vec::as_slice);
                let at: Vec<Option<usize>> = lines
                    .iter()
                    .map(|l| history.iter().position(|t| t == l))
                    .collect();
                let shown: Vec<usize> = at.iter().flatten().copied().collect();
                let whole = shown.len() == lines.len() || shown.is_empty();
                if !whole || shown.windows(2).any(|w| w[0] >= w[1]) {
                    self.violation(format!(
                        "posts in order: {} shows {lines:?} of `{channel}` at {at:?}",
                        v.name
                    ));
                }
            }
        }
        self.pasted = pasted;
    }

    pub fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }

    /// Once healed: every server up, holding the same events, every acknowledged write on
    /// every server, one order of every conversation everywhere, and no message twice.
    pub fn at_the_end(&mut self, views: &[View]) {
        for v in views.iter().filter(|v| !v.alive) {
            self.violation(format!("{} is not running at the end", v.name));
        }
        let first = &views[0];
        for v in &views[1..] {
            if v.summary != first.summary {
                // The first event that differs, when both hold it.
                let differs = first
                    .events
                    .iter()
                    .find(|(id, e)| v.events.get(*id).is_some_and(|o| o != *e))
                    .map(|(id, e)| {
                        format!(
                            "; {id} is {e:?} on {} but {:?} on {}",
                            first.name,
                            v.events.get(id),
                            v.name
                        )
                    })
                    .unwrap_or_default();
                self.violation(format!(
                    "convergence: {} holds {:?} (digest {:016x}) but {} holds {:?} (digest {:016x}){differs}",
                    first.name, first.summary.0, first.summary.1, v.name, v.summary.0, v.summary.1
                ));
            }
            if v.hidden != first.hidden {
                self.violation(format!(
                    "one answer: {} hides {:?} but {} hides {:?}",
                    first.name, first.hidden, v.name, v.hidden
                ));
            }
            if v.histories != first.histories {
                let differ: Vec<&String> = first
                    .histories
                    .iter()
                    .filter(|(k, h)| v.histories.get(*k) != Some(*h))
                    .map(|(k, _)| k)
                    .collect();
                let shown = |view: &View| -> Vec<String> {
                    differ
                        .iter()
                        .map(|k| format!("{k}: {:?}", view.histories.get(*k)))
                        .collect()
                };
                self.violation(format!(
                    "one order: {} and {} show {differ:?} differently: {:?} against {:?}",
                    first.name,
                    v.name,
                    shown(first),
                    shown(v)
                ));
            }
        }
        self.one_log_of_claims(views);
        let acked = std::mem::take(&mut self.acked);
        for a in &acked {
            for v in views {
                if !v.events.contains_key(&a.id) {
                    self.violation(format!(
                        "acknowledged write lost: `{}` {} ({}) is not on {}",
                        a.service, a.id, a.request_id, v.name
                    ));
                }
            }
        }
        self.acked = acked;
        for v in views {
            // Two-phase deletes: atomic (an acknowledged delete holds everywhere; every server
            // deletes the same channels, by the convergence above) and never blocked for good
            // (every server has decided each delete it prepared).
            for c in self
                .deleted
                .difference(&v.deleted)
                .cloned()
                .collect::<Vec<_>>()
            {
                self.violation(format!(
                    "two-phase delete: the delete of `{c}` was acknowledged, but {} keeps it",
                    v.name
                ));
            }
            if !v.undecided.is_empty() {
                self.violation(format!(
                    "two-phase delete: {} never decided its prepared {:?}",
                    v.name, v.undecided
                ));
            }
        }
        self.pasted_in_order(views);
        for v in views {
            for (of, texts) in &v.histories {
                let mut seen = BTreeSet::new();
                for t in texts {
                    if !seen.insert(t) {
                        self.violation(format!(
                            "no duplicates: {} shows `{t}` twice in {of}",
                            v.name
                        ));
                    }
                }
            }
        }
    }
}
