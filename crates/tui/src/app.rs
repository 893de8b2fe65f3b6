//! The whole state of the chat screen, and what changes it: keys and mouse from the person,
//! [`Net`] news from the network side. Nothing here touches a socket or the terminal: each
//! change returns the [`Effect`]s the network side carries out, and the view draws the state
//! as it stands (`view.rs`). The tests drive it with made-up input.
//!
//! ```text
//!  keys, mouse ──▶ App::key / App::click ──▶ Vec<Effect> ──▶ network thread
//!  network thread ──▶ Net ──▶ App::net ──▶ Vec<Effect>
//!  App ──▶ view::draw ──▶ terminal
//! ```

use std::collections::{BTreeMap, HashMap};

use palaver_proto::{Event, EventKind, EventRef, MessageKind, Name, Place};
use ratatui_textarea::TextArea;

use crate::buffer::{Buffer, Entry, Message, Position, Receipt};
use crate::keys::Action;
use crate::layout;

/// The state of the link to the cluster, as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connecting,
    Online,
    /// Requests are failing or the subscription was cut; retrying since `since`.
    Reconnecting {
        since: f64,
    },
}

/// The status bar's facts about the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The server that answered the last request.
    pub server: Option<String>,
    pub coordinator: Option<String>,
    /// This client's Lamport clock.
    pub clock: u64,
    /// How long the last request took, in milliseconds.
    pub latency_ms: Option<f64>,
    pub link: Link,
}

/// What covers the chat view, if anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    Help,
    /// The channel browser: every channel, filtered as the person types.
    Browser {
        channels: Vec<String>,
        filter: String,
        selected: usize,
    },
}

/// What the network side is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Post {
        channel: Name,
        text: String,
    },
    Message {
        to: Name,
        text: String,
    },
    /// Move the read marker up to `id`.
    Read {
        id: EventRef,
    },
    /// The page of `place`'s history before `before` (or the newest, without one).
    History {
        place: Place,
        before: Option<Position>,
    },
    Join(Name),
    Leave(Name),
    Create(Name),
    Delete(Name),
    Members(Name),
    /// Every channel, for the browser.
    Channels,
    /// Any other slash command, run as the line client runs it; its answer comes back as
    /// [`Net::Info`] or [`Net::Error`].
    Command(String),
    Quit,
}

/// What the network side tells the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Net {
    /// Logged in: the rooms joined, the people written with, and each one's unread count and
    /// marker.
    Ready {
        places: Vec<(Place, u64, Option<Position>)>,
    },
    /// A page of history (`older`: asked for by scrolling back).
    History {
        place: Place,
        events: Vec<Event>,
        more: bool,
    },
    /// A post or private message, live or from the inbox (`away`: arrived while away).
    Message {
        event: Event,
        away: bool,
    },
    /// The text of a sealed private message, opened.
    Opened {
        id: String,
        text: String,
    },
    /// A notice for one place (joins, leaves, a delete) or for everyone (`None`: presence,
    /// coordinator changes).
    Notice {
        place: Option<Place>,
        position: Position,
        at: f64,
        text: String,
    },
    /// `reader` took or read your private messages up to `upto`.
    Receipt {
        reader: String,
        upto: String,
        state: Receipt,
    },
    /// Your read marker in `place` moved to message `upto` (here or on another device).
    Marker {
        place: Place,
        upto: String,
    },
    Members {
        channel: Name,
        people: Vec<String>,
        /// The room's topic, if it has one.
        topic: Option<String>,
    },
    /// Someone joined or left `channel`, or set its topic: its member list (and topic) is read
    /// again if it is shown.
    MembersChanged(Name),
    /// Who is online, and since when.
    Online(Vec<(String, f64)>),
    Presence {
        user: String,
        online: bool,
        at: f64,
    },
    Channels(Vec<String>),
    Joined(Name),
    Left(Name),
    /// The last request: which server answered, how long it took, and the clock after it.
    Answered {
        server: Option<String>,
        latency_ms: f64,
        clock: u64,
    },
    Coordinator(String),
    Link(Link),
    Info(String),
    Error(String),
}

pub struct App {
    pub me: String,
    pub buffers: Vec<Buffer>,
    /// The buffer shown; `None`: the log of the session.
    pub current: Option<usize>,
    /// What the session itself said (connection changes, answers to commands).
    pub log: Vec<(f64, String)>,
    pub status: Status,
    pub overlay: Overlay,
    pub input: TextArea<'static>,
    /// People online, and since when.
    pub online: BTreeMap<String, f64>,
    /// Members of each room, as last listed.
    pub members: HashMap<Name, Vec<String>>,
    /// Each room's topic, as last read.
    pub topics: HashMap<Name, String>,
    /// Ring the bell on a private message or a mention.
    pub bell_on: bool,
    /// A bell is due (the run loop rings it and clears this).
    pub bell: bool,
    /// The terminal's size, for paging and clicks.
    pub size: (u16, u16),
    /// The clock shown in times; set by the run loop (tests fix it).
    pub now: f64,
    pub quit: bool,
}

/// How many rows a page scroll moves, at least.
const MIN_PAGE: usize = 3;

impl App {
    pub fn new(me: &str) -> App {
        App {
            me: me.to_owned(),
            buffers: Vec::new(),
            current: None,
            log: Vec::new(),
            status: Status {
                server: None,
                coordinator: None,
                clock: 0,
                latency_ms: None,
                link: Link::Connecting,
            },
            overlay: Overlay::None,
            input: input_line(),
            online: BTreeMap::new(),
            members: HashMap::new(),
            topics: HashMap::new(),
            bell_on: true,
            bell: false,
            size: (80, 24),
            now: 0.0,
            quit: false,
        }
    }

    /// The buffer shown, if any.
    pub fn shown(&self) -> Option<&Buffer> {
        self.current.map(|i| &self.buffers[i])
    }

    /// Whether the buffer shown is a room.
    pub fn in_room(&self) -> bool {
        matches!(self.shown().map(|b| &b.place), Some(Place::Channel(_)))
    }

    /// The buffers in sidebar order: most recent activity first (ties by title).
    pub fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.buffers.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&self.buffers[a], &self.buffers[b]);
            y.activity
                .total_cmp(&x.activity)
                .then_with(|| x.title().cmp(&y.title()))
        });
        order
    }

    fn find(&self, place: &Place) -> Option<usize> {
        self.buffers.iter().position(|b| b.place == *place)
    }

    /// The buffer of `place`, made when missing.
    fn buffer(&mut self, place: &Place) -> usize {
        match self.find(place) {
            Some(i) => i,
            None => {
                self.buffers.push(Buffer::new(place.clone()));
                self.buffers.len() - 1
            }
        }
    }

    /// Shows `place`'s buffer; its history is asked for when it holds nothing yet.
    pub fn open(&mut self, place: &Place) -> Vec<Effect> {
        let i = self.buffer(place);
        self.current = Some(i);
        let b = &mut self.buffers[i];
        b.open();
        let mut out = Vec::new();
        if b.entries().is_empty() && !b.loading {
            b.loading = true;
            out.push(Effect::History {
                place: place.clone(),
                before: None,
            });
        }
        if let Place::Channel(c) = place {
            out.push(Effect::Members(c.clone()));
        }
        out.extend(self.read_if_seen());
        out
    }

    /// Says `text` in the session's log and, when a buffer is shown, in it.
    pub fn say(&mut self, text: &str) {
        self.log.push((self.now, text.to_owned()));
        let position = (self.status.clock, "~".to_owned());
        let (at, text) = (self.now, text.to_owned());
        if let Some(i) = self.current {
            self.buffers[i].add(Entry::Notice { position, at, text });
        }
    }

    /// A key or mouse action.
    pub fn act(&mut self, action: Action) -> Vec<Effect> {
        if let Overlay::Browser { .. } = self.overlay {
            return self.browse(action);
        }
        match action {
            Action::Quit => {
                self.quit = true;
                vec![Effect::Quit]
            }
            Action::Help => {
                self.overlay = match self.overlay {
                    Overlay::Help => Overlay::None,
                    _ => Overlay::Help,
                };
                Vec::new()
            }
            Action::Close => {
                self.overlay = Overlay::None;
                Vec::new()
            }
            Action::Browse => self.open_browser(),
            Action::Goto(n) => match self.order().get(n) {
                Some(&i) => {
                    let place = self.buffers[i].place.clone();
                    self.open(&place)
                }
                None => Vec::new(),
            },
            Action::Next | Action::Previous => {
                let order = self.order();
                if order.is_empty() {
                    return Vec::new();
                }
                let at = self
                    .current
                    .and_then(|c| order.iter().position(|&i| i == c));
                let n = order.len();
                let to = match (action, at) {
                    (Action::Next, Some(a)) => (a + 1) % n,
                    (Action::Previous, Some(a)) => (a + n - 1) % n,
                    (Action::Previous, None) => n - 1,
                    _ => 0,
                };
                let place = self.buffers[order[to]].place.clone();
                self.open(&place)
            }
            Action::PageUp => self.scroll_up(self.page()),
            Action::PageDown => self.scroll_down(self.page()),
            Action::WheelUp => self.scroll_up(3),
            Action::WheelDown => self.scroll_down(3),
            Action::Click { column, row } => self.click(column, row),
            Action::Submit => {
                let line = self.input.lines().join("\n");
                self.input = input_line();
                self.submit(line.trim())
            }
            Action::Edit(key) => {
                self.input.input(key);
                Vec::new()
            }
            Action::ToggleBell => {
                self.bell_on = !self.bell_on;
                let said = if self.bell_on {
                    "the bell rings on private messages and mentions"
                } else {
                    "the bell is off"
                };
                self.say(said);
                Vec::new()
            }
        }
    }

    /// The rows one page scroll moves: the chat view's height, less two for context.
    fn page(&self) -> usize {
        let areas = layout::areas(self.size, self.in_room());
        (areas.chat.height as usize).saturating_sub(2).max(MIN_PAGE)
    }

    fn scroll_up(&mut self, rows: usize) -> Vec<Effect> {
        let Some(i) = self.current else {
            return Vec::new();
        };
        let chat = layout::areas(self.size, self.in_room()).chat;
        let total = layout::rows(&self.me, &self.buffers[i], chat.width).len();
        let height = chat.height as usize;
        let b = &mut self.buffers[i];
        let top = total.saturating_sub(height);
        b.scroll = (b.scroll + rows).min(top);
        // At the top: older history, once.
        if b.scroll == top && b.more_before && !b.loading {
            b.loading = true;
            return vec![Effect::History {
                place: b.place.clone(),
                before: b.first_position().cloned(),
            }];
        }
        Vec::new()
    }

    fn scroll_down(&mut self, rows: usize) -> Vec<Effect> {
        let Some(i) = self.current else {
            return Vec::new();
        };
        let b = &mut self.buffers[i];
        b.scroll = b.scroll.saturating_sub(rows);
        self.read_if_seen()
    }

    fn click(&mut self, column: u16, row: u16) -> Vec<Effect> {
        let areas = layout::areas(self.size, self.in_room());
        let Some(side) = areas.sidebar else {
            return Vec::new();
        };
        let inside = column >= side.x
            && column < side.x + side.width
            && row > side.y
            && row < side.y + side.height;
        if !inside {
            return Vec::new();
        }
        // The first row inside the border is the first buffer.
        let n = (row - side.y - 1) as usize;
        self.act(Action::Goto(n))
    }

    /// Enter: a slash command, or text for the buffer shown.
    fn submit(&mut self, line: &str) -> Vec<Effect> {
        if line.is_empty() {
            return Vec::new();
        }
        let Some(cmd) = line.strip_prefix('/') else {
            return match self.shown().map(|b| b.place.clone()) {
                Some(Place::Channel(channel)) => vec![Effect::Post {
                    channel,
                    text: line.to_owned(),
                }],
                Some(Place::With(to)) => vec![Effect::Message {
                    to,
                    text: line.to_owned(),
                }],
                None => {
                    self.say("open a room or a conversation first: /join ROOM, /msg NAME");
                    Vec::new()
                }
            };
        };
        let (verb, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let rest = rest.trim();
        let named = |app: &mut App, what: &str| -> Option<Name> {
            let arg = rest.split_whitespace().next().unwrap_or("");
            let arg = arg.strip_prefix('#').unwrap_or(arg);
            match Name::parse(arg) {
                Ok(n) => Some(n),
                Err(e) => {
                    app.say(&format!("/{verb} {what}: {e}"));
                    None
                }
            }
        };
        let current_room = |app: &App| match app.shown().map(|b| &b.place) {
            Some(Place::Channel(c)) => Some(c.clone()),
            _ => None,
        };
        match verb {
            "quit" | "exit" => self.act(Action::Quit),
            "help" => self.act(Action::Help),
            "channels" | "list" => self.act(Action::Browse),
            "bell" => self.act(Action::ToggleBell),
            "join" => named(self, "ROOM").map_or_else(Vec::new, |c| vec![Effect::Join(c)]),
            "create" => named(self, "ROOM").map_or_else(Vec::new, |c| vec![Effect::Create(c)]),
            "delete" => named(self, "ROOM").map_or_else(Vec::new, |c| vec![Effect::Delete(c)]),
            "leave" if rest.is_empty() => current_room(self).map_or_else(
                || {
                    self.say("/leave ROOM, or open the room to leave");
                    Vec::new()
                },
                |c| vec![Effect::Leave(c)],
            ),
            "leave" => named(self, "ROOM").map_or_else(Vec::new, |c| vec![Effect::Leave(c)]),
            "msg" | "query" => {
                let Some(to) = named(self, "NAME") else {
                    return Vec::new();
                };
                let text = rest.split_once(' ').map_or("", |(_, t)| t.trim());
                let mut out = self.open(&Place::With(to.clone()));
                if !text.is_empty() {
                    out.push(Effect::Message {
                        to,
                        text: text.to_owned(),
                    });
                }
                out
            }
            "members" => match rest {
                "" => current_room(self).map_or_else(Vec::new, |c| vec![Effect::Members(c)]),
                _ => named(self, "ROOM").map_or_else(Vec::new, |c| vec![Effect::Members(c)]),
            },
            _ => vec![Effect::Command(line.to_owned())],
        }
    }

    fn open_browser(&mut self) -> Vec<Effect> {
        self.overlay = Overlay::Browser {
            channels: Vec::new(),
            filter: String::new(),
            selected: 0,
        };
        vec![Effect::Channels]
    }

    /// Keys while the channel browser is open: type to filter, arrows to choose, Enter to
    /// join, Esc to close.
    fn browse(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Quit => return self.act_quit(),
            Action::Close | Action::Browse => {
                self.overlay = Overlay::None;
                return Vec::new();
            }
            _ => {}
        }
        let Overlay::Browser {
            channels,
            filter,
            selected,
        } = &mut self.overlay
        else {
            return Vec::new();
        };
        let shown: Vec<String> = browser_matches(channels, filter);
        match action {
            Action::Previous | Action::WheelUp => *selected = selected.saturating_sub(1),
            Action::Next | Action::WheelDown => {
                *selected = (*selected + 1).min(shown.len().saturating_sub(1));
            }
            Action::Submit => {
                let pick = shown.get(*selected).cloned();
                self.overlay = Overlay::None;
                if let Some(Ok(c)) = pick.map(|p| Name::parse(&p)) {
                    return vec![Effect::Join(c)];
                }
            }
            Action::Edit(key) => {
                use ratatui_textarea::{Input, Key};
                let input: Input = key;
                match input.key {
                    Key::Char(ch) if !input.ctrl && !input.alt => {
                        filter.push(ch);
                        *selected = 0;
                    }
                    Key::Backspace => {
                        filter.pop();
                        *selected = 0;
                    }
                    Key::Up => *selected = selected.saturating_sub(1),
                    Key::Down => *selected = (*selected + 1).min(shown.len().saturating_sub(1)),
                    _ => {}
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn act_quit(&mut self) -> Vec<Effect> {
        self.quit = true;
        vec![Effect::Quit]
    }

    /// When the buffer shown is followed to its end, its marker moves to the newest message
    /// (read as you read).
    fn read_if_seen(&mut self) -> Vec<Effect> {
        let Some(i) = self.current else {
            return Vec::new();
        };
        let me = self.me.clone();
        let b = &mut self.buffers[i];
        if b.scroll != 0 {
            return Vec::new();
        }
        let Some(last) = b.last_message() else {
            return Vec::new();
        };
        if b.marker.as_ref().is_some_and(|m| *m >= last.position) {
            return Vec::new();
        }
        let (position, id) = (last.position.clone(), last.id.clone());
        b.mark(position, &me);
        match EventRef::parse("id", &id) {
            Ok(id) => vec![Effect::Read { id }],
            Err(_) => Vec::new(),
        }
    }

    /// News from the network side.
    pub fn net(&mut self, news: Net) -> Vec<Effect> {
        match news {
            Net::Ready { places } => {
                for (place, unread, marker) in places {
                    let i = self.buffer(&place);
                    let b = &mut self.buffers[i];
                    b.unread = unread;
                    b.marker = marker;
                }
                self.status.link = Link::Online;
                // The busiest place is opened first.
                if self.current.is_none() {
                    if let Some(&first) = self.order().first() {
                        let place = self.buffers[first].place.clone();
                        return self.open(&place);
                    }
                }
                Vec::new()
            }
            Net::History {
                place,
                events,
                more,
            } => {
                let i = self.buffer(&place);
                let me = self.me.clone();
                let b = &mut self.buffers[i];
                b.loading = false;
                b.more_before = more;
                for e in &events {
                    if let Some(m) = message_of(e, &me) {
                        b.add(Entry::Message(m));
                    }
                }
                self.read_if_seen()
            }
            Net::Message { event, away } => self.message(&event, away),
            Net::Opened { id, text } => {
                for b in &mut self.buffers {
                    if let Some(m) = b.message_mut(&id) {
                        m.text = text.clone();
                        m.sealed = false;
                    }
                }
                Vec::new()
            }
            Net::Notice {
                place,
                position,
                at,
                text,
            } => {
                match place {
                    Some(p) => {
                        let i = self.buffer(&p);
                        self.buffers[i].add(Entry::Notice { position, at, text });
                    }
                    None => {
                        self.log.push((at, text.clone()));
                        if let Some(i) = self.current {
                            self.buffers[i].add(Entry::Notice { position, at, text });
                        }
                    }
                }
                Vec::new()
            }
            Net::Receipt {
                reader,
                upto,
                state,
            } => {
                if let Ok(reader) = Name::parse(&reader) {
                    if let Some(i) = self.find(&Place::With(reader)) {
                        let me = self.me.clone();
                        self.buffers[i].receipt(&upto, state, &me);
                    }
                }
                Vec::new()
            }
            Net::Marker { place, upto } => {
                let me = self.me.clone();
                if let Some(i) = self.find(&place) {
                    let b = &mut self.buffers[i];
                    if let Some(position) = b.message_mut(&upto).map(|m| m.position.clone()) {
                        b.mark(position, &me);
                    }
                }
                Vec::new()
            }
            Net::Members {
                channel,
                people,
                topic,
            } => {
                match topic {
                    Some(t) => self.topics.insert(channel.clone(), t),
                    None => self.topics.remove(&channel),
                };
                self.members.insert(channel, people);
                Vec::new()
            }
            Net::MembersChanged(channel) => {
                let place = Place::Channel(channel.clone());
                if self.shown().is_some_and(|b| b.place == place) {
                    vec![Effect::Members(channel)]
                } else {
                    // Read again when it is opened.
                    self.members.remove(&channel);
                    Vec::new()
                }
            }
            Net::Online(people) => {
                self.online = people.into_iter().collect();
                Vec::new()
            }
            Net::Presence { user, online, at } => {
                if online {
                    self.online.insert(user, at);
                } else {
                    self.online.remove(&user);
                }
                Vec::new()
            }
            Net::Channels(mut list) => {
                list.sort();
                if let Overlay::Browser { channels, .. } = &mut self.overlay {
                    *channels = list;
                }
                Vec::new()
            }
            Net::Joined(channel) => {
                let out = self.open(&Place::Channel(channel.clone()));
                self.say(&format!("you joined #{channel}"));
                out
            }
            Net::Left(channel) => {
                if let Some(i) = self.find(&Place::Channel(channel.clone())) {
                    self.buffers.remove(i);
                    self.current = match self.current {
                        Some(c) if c == i => None,
                        Some(c) if c > i => Some(c - 1),
                        other => other,
                    };
                }
                self.say(&format!("you left #{channel}"));
                Vec::new()
            }
            Net::Answered {
                server,
                latency_ms,
                clock,
            } => {
                if server.is_some() {
                    self.status.server = server;
                }
                self.status.latency_ms = Some(latency_ms);
                self.status.clock = self.status.clock.max(clock);
                if self.status.link != Link::Online {
                    self.status.link = Link::Online;
                    self.say("connected again");
                }
                Vec::new()
            }
            Net::Coordinator(c) => {
                if self.status.coordinator.as_ref() != Some(&c) {
                    if self.status.coordinator.is_some() {
                        let text = format!("{c} coordinates the cluster now");
                        self.say(&text);
                    }
                    self.status.coordinator = Some(c);
                }
                Vec::new()
            }
            Net::Link(link) => {
                if let (Link::Reconnecting { .. }, Link::Online) = (&link, &self.status.link) {
                    self.say("the cluster does not answer; reconnecting…");
                }
                self.status.link = link;
                Vec::new()
            }
            Net::Info(text) => {
                self.say(&text);
                Vec::new()
            }
            Net::Error(text) => {
                self.say(&format!("error: {text}"));
                Vec::new()
            }
        }
    }

    /// A post or private message arrived.
    fn message(&mut self, e: &Event, away: bool) -> Vec<Effect> {
        let Some(mut m) = message_of(e, &self.me) else {
            return Vec::new();
        };
        if away {
            m.text = format!("{} (while away)", m.text);
        }
        let Some(place) = place_of(e, &self.me) else {
            return Vec::new();
        };
        let i = self.buffer(&place);
        let mine = m.from == self.me;
        let mention = !mine && (matches!(place, Place::With(_)) || mentions(&m.text, &self.me));
        let shown = self.current == Some(i);
        let b = &mut self.buffers[i];
        if !b.add(Entry::Message(m)) {
            return Vec::new();
        }
        let following = shown && b.scroll == 0;
        if !mine && !following {
            b.unread += 1;
            b.highlight |= mention;
        }
        if mention && self.bell_on && !shown {
            self.bell = true;
        }
        if shown {
            self.read_if_seen()
        } else {
            Vec::new()
        }
    }
}

/// The input line: one row, no border of its own.
fn input_line() -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_cursor_line_style(ratatui::style::Style::default());
    t.set_placeholder_text("type a message, or /help");
    t
}

/// The channels the browser shows for `filter`.
pub fn browser_matches(channels: &[String], filter: &str) -> Vec<String> {
    let f = filter.to_lowercase();
    channels
        .iter()
        .filter(|c| c.to_lowercase().contains(&f))
        .cloned()
        .collect()
}

/// Whether `text` names `me` as a word (a mention).
fn mentions(text: &str, me: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .any(|w| w == me)
}

/// Where a post or private message belongs, seen by `me`.
pub fn place_of(e: &Event, me: &str) -> Option<Place> {
    match &e.kind {
        EventKind::Message(MessageKind::Post { channel, .. }) => {
            Some(Place::Channel(channel.clone()))
        }
        EventKind::Message(MessageKind::Direct { src, dst, .. }) => {
            Some(Place::With(if src.as_str() == me {
                dst.clone()
            } else {
                src.clone()
            }))
        }
        _ => None,
    }
}

/// A post or private message as the buffer keeps it.
pub fn message_of(e: &Event, me: &str) -> Option<Message> {
    let (from, text) = match &e.kind {
        EventKind::Message(MessageKind::Post { user, message, .. }) => (user, message),
        EventKind::Message(MessageKind::Direct { src, message, .. }) => (src, message),
        _ => return None,
    };
    let mine = from.as_str() == me;
    Some(Message {
        id: e.id(),
        position: (e.lamport, e.origin.clone()),
        from: from.to_string(),
        text: text.clone(),
        at: e.timestamp,
        receipt: (mine && matches!(e.kind, EventKind::Message(MessageKind::Direct { .. })))
            .then_some(Receipt::Sent),
        sealed: false,
    })
}
