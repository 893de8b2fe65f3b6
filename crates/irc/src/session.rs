//! One IRC connection, free of I/O: IRC lines in, the web gateway's JSON requests out, and
//! the gateway's answers and publications turned back into IRC lines. The gateway core
//! (`palaver_web::gateway`) keeps the person's session, rate, subscriptions and gap repair;
//! this only speaks IRC.
//!
//! ```text
//!  client line ──on_line()──▶ registration (CAP, SASL PLAIN, PASS/NICK/USER) · commands
//!                               │ Out::Gateway({"re": n, "service": …, "data": …})
//!                               ▼
//!  gateway JSON ──on_gateway()──▶ an answer (by `re`) or a publication ──▶ Out::Line(…)
//! ```
//!
//! Palaver's names are IRC's: a person's name is their nick, and a room `den` is `#den`. A nick
//! is an account: it cannot change after registration.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use serde_json::{json, Value as Json};

use crate::line::{pieces, Message};
pub use formed::Formed;
use formed::Read;

/// The host part of every person's mask.
const HOST: &str = "palaver";
/// The capabilities offered, in `CAP LS` order.
const CAPS: [Cap; 14] = [
    Cap::Sasl,
    Cap::ServerTime,
    Cap::MessageTags,
    Cap::EchoMessage,
    Cap::Batch,
    Cap::LabeledResponse,
    Cap::ChatHistory,
    Cap::StandardReplies,
    Cap::ReadMarker,
    Cap::AccountTag,
    Cap::AccountNotify,
    Cap::ExtendedJoin,
    Cap::AwayNotify,
    Cap::NoImplicitNames,
];
/// Posts a JOIN plays back.
const JOIN_HISTORY: u64 = 20;
/// Bytes of text per PRIVMSG line, so that the whole line stays under 512 with any source.
const TEXT_PER_LINE: usize = 350;
/// Own posts remembered until their publication arrives.
const OWN_REMEMBERED: usize = 256;
/// Messages per page of the inbox read at registration.
const INBOX_PAGE: u64 = 100;
/// The most bytes of text that lines pasted to a room send in one request.
const PASTE_BYTES: usize = 256 * 1024;
/// Commands kept waiting for the ones before them: the driver reads no more lines while this
/// many wait ([`Session::saturated`]).
const MAX_WAITING: usize = 256;
/// Pages of the inbox read at most per connection.
const INBOX_PAGES: u64 = 10;
/// Ids of messages shown while the inbox is played back, remembered so that one both in the
/// inbox and published meanwhile is shown once.
const SHOWN_REMEMBERED: usize = 2048;
/// The longest SASL payload (decoded `authzid \0 authcid \0 password`).
const MAX_SASL: usize = 1024;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// A line for the IRC client (without CR LF).
    Line(String),
    /// Lines for the IRC client, each ended with CR LF, shared with every other connection
    /// given the same post in the same shape.
    Lines(std::sync::Arc<str>),
    /// A request text for the gateway core.
    Gateway(String),
    /// Close the connection once the lines before this are written.
    Close,
}

/// IRCv3 capabilities Palaver has the substance for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cap {
    Sasl,
    ServerTime,
    MessageTags,
    EchoMessage,
    Batch,
    LabeledResponse,
    ChatHistory,
    StandardReplies,
    ReadMarker,
    AccountTag,
    AccountNotify,
    ExtendedJoin,
    AwayNotify,
    NoImplicitNames,
}

impl Cap {
    fn name(self) -> &'static str {
        match self {
            Cap::Sasl => "sasl",
            Cap::ServerTime => "server-time",
            Cap::MessageTags => "message-tags",
            Cap::EchoMessage => "echo-message",
            Cap::Batch => "batch",
            Cap::LabeledResponse => "labeled-response",
            Cap::ChatHistory => "draft/chathistory",
            Cap::StandardReplies => "standard-replies",
            Cap::ReadMarker => "draft/read-marker",
            Cap::AccountTag => "account-tag",
            Cap::AccountNotify => "account-notify",
            Cap::ExtendedJoin => "extended-join",
            Cap::AwayNotify => "away-notify",
            Cap::NoImplicitNames => "no-implicit-names",
        }
    }

    fn parse(name: &str) -> Option<Cap> {
        CAPS.into_iter().find(|c| c.name() == name)
    }
}

/// What an answer from the gateway is for.
#[derive(Debug)]
enum Pending {
    /// A login for registration, by PASS/NICK or by SASL.
    Login {
        sasl: bool,
    },
    /// The rooms the person is in, to join on the client at registration.
    Rooms,
    Join {
        channel: String,
        created: bool,
    },
    Create {
        channel: String,
    },
    Part {
        channel: String,
    },
    /// A private message, a post, or posts pasted to one room (one `posts` request); each
    /// line is `echoed` once its own publication arrived before the answer (and was not
    /// shown).
    Say {
        target: String,
        lines: Vec<Said>,
        notice: bool,
    },
    Names {
        channel: String,
    },
    List,
    ShowTopic {
        channel: String,
    },
    SetTopic {
        channel: String,
    },
    Who {
        channel: String,
    },
    Whois {
        nick: String,
    },
    Lusers,
    /// A page of what arrived while this device was away.
    Inbox,
    /// Where the person's markers stand, for `targets`; then their names, when `names`.
    Markers {
        targets: Vec<String>,
        names: bool,
    },
    /// The message a MARKREAD's time names.
    MarkFind {
        target: String,
    },
    /// The marker moved (or not: it never moves back).
    MarkMoved {
        target: String,
    },
    /// The page taken; another follows when there is `more`.
    Taken {
        more: bool,
    },
    /// A page of history for `CHATHISTORY`.
    History {
        sub: history::Sub,
        target: String,
        step: history::Step,
    },
    /// The conversations with messages between two times (milliseconds), for
    /// `CHATHISTORY TARGETS`.
    Targets {
        from: u64,
        to: u64,
        limit: u64,
    },
}

/// A line of text said, waiting for its answer.
#[derive(Debug)]
struct Said {
    text: String,
    echoed: bool,
}

impl Said {
    fn new(text: String) -> Said {
        Said {
            text,
            echoed: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Sasl {
    /// `AUTHENTICATE PLAIN` taken: the payload comes next, in pieces of 400.
    Plain(String),
}

/// One connection's state.
pub struct Session {
    server: String,
    nick: Option<String>,
    user: Option<String>,
    pass: Option<String>,
    /// CAP LS or REQ seen, END not yet: registration waits.
    negotiating: bool,
    caps: BTreeSet<Cap>,
    sasl: Option<Sasl>,
    /// The account the session is logged in as (after SASL or registration).
    account: Option<String>,
    /// A login is on its way: registration waits for it.
    logging_in: bool,
    /// The welcome was sent.
    registered: bool,
    channels: BTreeSet<String>,
    away: bool,
    next_re: u64,
    /// Requests in flight, with the label of the command they are for, and whether later
    /// commands wait for them.
    pending: HashMap<u64, (Pending, Option<u64>, bool)>,
    /// Ids of this connection's own posts whose publication has not arrived yet.
    own: std::collections::VecDeque<String>,
    /// Ids of this connection's own posts to its rooms, answered, whose publications the
    /// commands after them wait for (see [`Session::awaits_echoes`]).
    echoes: std::collections::HashSet<String>,
    /// Ids of the messages shown while the inbox is played back (`None` once it is done:
    /// nothing is looked up or kept for a message after that).
    shown: Option<std::collections::HashSet<String>>,
    /// Pages of the inbox taken by this connection.
    inbox_pages: u64,
    /// Commands that wait for the registration, or a JOIN or PART, before them to be done.
    waiting: std::collections::VecDeque<Message>,
    /// Requests in flight for a JOIN or PART (or what their answers asked next).
    ordering: usize,
    /// What is being handled is a JOIN's or PART's: requests made now are counted.
    in_order: bool,
    /// The members of the gateway's rooms, as NAMES and joins and parts tell them (shared by
    /// every session of the gateway).
    rooms: Rooms,
    /// The label of what is being handled (requests made now are for it).
    ctx: Option<u64>,
    labels: HashMap<u64, labels::Label>,
    next_label: u64,
    next_batch: u64,
}

impl Session {
    /// A new connection to the gateway called `server`, on its own.
    pub fn new(server: &str) -> Session {
        Session::sharing(server, Rooms::default())
    }

    /// A new connection to the gateway called `server`, sharing what the gateway knows of
    /// its rooms' members with its other connections.
    pub fn sharing(server: &str, rooms: Rooms) -> Session {
        Session {
            server: server.to_owned(),
            nick: None,
            user: None,
            pass: None,
            negotiating: false,
            caps: BTreeSet::new(),
            sasl: None,
            account: None,
            logging_in: false,
            registered: false,
            channels: BTreeSet::new(),
            away: false,
            next_re: 1,
            pending: HashMap::new(),
            own: std::collections::VecDeque::new(),
            echoes: std::collections::HashSet::new(),
            shown: Some(std::collections::HashSet::new()),
            inbox_pages: 0,
            waiting: std::collections::VecDeque::new(),
            ordering: 0,
            in_order: false,
            rooms,
            ctx: None,
            labels: HashMap::new(),
            next_label: 0,
            next_batch: 0,
        }
    }

    /// The nick, once registered.
    pub fn nick(&self) -> Option<&str> {
        self.registered.then_some(self.nick.as_deref()).flatten()
    }

    fn me(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    /// The client is now in `room`; `false` if it was already.
    fn enter(&mut self, room: &str) -> bool {
        let new = self.channels.insert(room.to_owned());
        if new {
            self.rooms.enter(room);
        }
        new
    }

    /// The client is no longer in `room`; `false` if it was not.
    fn leave_room(&mut self, room: &str) -> bool {
        let was = self.channels.remove(room);
        if was {
            self.rooms.leave(room);
        }
        was
    }

    /// The device this connection is, for its inbox cursor: `irc-` and the USER name, so that
    /// each of a person's IRC clients (given different user names) takes what it missed.
    fn device(&self) -> String {
        let user: String = self
            .user
            .as_deref()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(32)
            .collect();
        if user.is_empty() {
            "irc".to_owned()
        } else {
            format!("irc-{user}")
        }
    }

    /// A standard reply (IRCv3 `standard-replies`): `FAIL`, `WARN` or `NOTE`.
    fn standard(&self, kind: &str, command: &str, code: &str, context: &[&str], text: &str) -> Out {
        let mut params = vec![command, code];
        params.extend_from_slice(context);
        params.push(text);
        Out::Line(Message::new(kind, &params).from(&self.server).line())
    }

    /// A NOTICE from the gateway to this client.
    fn notice(&self, text: &str) -> Out {
        Out::Line(
            Message::new("NOTICE", &[self.me(), text])
                .from(&self.server)
                .line(),
        )
    }

    /// Whether the message with this id was shown already while the inbox is played back;
    /// remembers it if not.
    fn seen(&mut self, data: &Json) -> bool {
        self.seen_id(str_of(data, "id"))
    }

    /// As [`Session::seen`], by the message's id.
    fn seen_id(&mut self, id: Option<&str>) -> bool {
        let (Some(shown), Some(id)) = (self.shown.as_mut(), id) else {
            return false;
        };
        if shown.contains(id) {
            return true;
        }
        if shown.len() < SHOWN_REMEMBERED {
            shown.insert(id.to_owned());
        }
        false
    }

    /// A message from the inbox: a post of a room the client is in, or a private message to
    /// or from the person, unless it was shown already.
    fn missed(&mut self, m: &Json, out: &mut Vec<Out>) {
        let me = self.me().to_owned();
        let (from, to) = match (str_of(m, "channel"), str_of(m, "user")) {
            (Some(channel), Some(user)) if self.channels.contains(channel) => {
                (user.to_owned(), format!("#{channel}"))
            }
            (Some(_), _) => return,
            _ => match (str_of(m, "src"), str_of(m, "dst")) {
                (Some(src), Some(dst)) if src == me => (me.clone(), dst.to_owned()),
                (Some(src), Some(_)) => (src.to_owned(), me.clone()),
                _ => return,
            },
        };
        let Some(text) = str_of(m, "message") else {
            return;
        };
        if self.seen(m) {
            return;
        }
        self.text_lines("PRIVMSG", &from, &to, text, m, out);
    }

    fn mask(nick: &str) -> String {
        format!("{nick}!{nick}@{HOST}")
    }

    /// A numeric reply to this client.
    fn numeric(&self, code: &str, params: &[&str]) -> Out {
        let mut all = vec![self.me()];
        all.extend_from_slice(params);
        Out::Line(Message::new(code, &all).from(&self.server).line())
    }

    fn line(&self, m: Message) -> Out {
        Out::Line(m.line())
    }

    /// `m` as this connection's own (JOIN, PART…), from its mask.
    fn mine(&self, m: Message) -> Out {
        Out::Line(m.from(&Self::mask(self.me())).line())
    }

    /// Asks for a room's members, for NAMES.
    fn ask_names(&mut self, channel: &str) -> Out {
        let pending = Pending::Names {
            channel: channel.to_owned(),
        };
        self.request("members", json!({"channel": channel}), pending)
    }

    fn request(&mut self, service: &str, data: Json, pending: Pending) -> Out {
        let re = self.next_re;
        self.next_re += 1;
        if let Some(label) = self.ctx.and_then(|l| self.labels.get_mut(&l)) {
            label.outstanding += 1;
        }
        if self.in_order {
            self.ordering += 1;
        }
        self.pending.insert(re, (pending, self.ctx, self.in_order));
        Out::Gateway(json!({"re": re, "service": service, "data": data}).to_string())
    }

    /// A line the client sent, parsed.
    ///
    /// Commands run in the order they are sent, as on a server that does each at once: one
    /// sent on the heels of NICK and USER waits for the login's answer, and one sent after a
    /// JOIN, PART, PRIVMSG, NOTICE or TOPIC waits until it is done (so that `JOIN #new` then
    /// `PRIVMSG #new` posts to the room the JOIN made, and pasted lines are posted in the
    /// order they were pasted, whichever server takes each). The driver stops reading while
    /// the session is [`saturated`](Session::saturated); a command that comes anyway is
    /// refused rather than run out of order.
    pub fn on_line(&mut self, m: &Message) -> Vec<Out> {
        let waits = !matches!(
            m.command.as_str(),
            "CAP" | "AUTHENTICATE" | "PASS" | "NICK" | "USER" | "PING" | "PONG" | "QUIT"
        ) && (self.ordering > 0
            || (!self.registered && self.nick.is_some() && self.user.is_some()));
        if waits {
            if self.saturated() {
                let text = "Too many commands are waiting for the ones before them";
                let code = "TEMPORARILY_UNAVAILABLE";
                return vec![self.standard("FAIL", &m.command, code, &[], text)];
            }
            self.waiting.push_back(m.clone());
            return Vec::new();
        }
        let mut out = self.run(m);
        self.run_waiting(&mut out);
        out
    }

    /// Whether so many commands wait for the ones before them that the client must be read
    /// no further until some are done.
    pub fn saturated(&self) -> bool {
        self.waiting.len() >= MAX_WAITING
    }

    /// Runs one command, under its label if it has one.
    fn run(&mut self, m: &Message) -> Vec<Out> {
        let ordered = self.registered
            && matches!(
                m.command.as_str(),
                "JOIN" | "PART" | "PRIVMSG" | "NOTICE" | "TOPIC"
            );
        self.in_order = ordered;
        let out = match self.begin_label(m) {
            None => self.command(m),
            Some(label) => {
                let outer = self.ctx.replace(label);
                let out = self.command(m);
                self.ctx = outer;
                self.hold(label, out)
            }
        };
        self.in_order = false;
        out
    }

    /// Runs the commands that waited, once nothing before them is left to finish: lines
    /// pasted to one room, one behind another, go as one request.
    fn run_waiting(&mut self, out: &mut Vec<Out>) {
        while self.registered && self.ordering == 0 {
            let Some(m) = self.waiting.pop_front() else {
                return;
            };
            let Some((notice, target, text)) = self.paste_line(&m) else {
                out.extend(self.run(&m));
                continue;
            };
            let mut texts = vec![text];
            let mut bytes = texts[0].len();
            while texts.len() < palaver_proto::MAX_POSTS && bytes < PASTE_BYTES {
                let next = self.waiting.front().and_then(|n| self.paste_line(n));
                match next {
                    Some((n, t, text)) if n == notice && t == target => {
                        bytes += text.len();
                        texts.push(text);
                        self.waiting.pop_front();
                    }
                    _ => break,
                }
            }
            if texts.len() == 1 {
                out.extend(self.run(&m));
            } else {
                out.extend(self.say_pasted(notice, target, texts));
            }
        }
    }

    /// A line that may be posted with the ones beside it: a PRIVMSG or NOTICE to one room,
    /// with a text to store and no label (whose answer is its own). Whether it is a NOTICE,
    /// the room and the text.
    fn paste_line<'a>(&self, m: &'a Message) -> Option<(bool, &'a str, String)> {
        let notice = match m.command.as_str() {
            "PRIVMSG" => false,
            "NOTICE" => true,
            _ => return None,
        };
        let (target, text) = (m.param(0)?, m.param(1)?);
        let single_room = target.starts_with('#') && !target.contains(',') && target.len() > 1;
        if !single_room || text.is_empty() || m.tag_value("label").is_some() {
            return None;
        }
        Some((notice, target, self.kept(text)?))
    }

    fn command(&mut self, m: &Message) -> Vec<Out> {
        let mut out = Vec::new();
        match m.command.as_str() {
            "CAP" => self.cap(m, &mut out),
            "AUTHENTICATE" => self.authenticate(m, &mut out),
            "PASS" => match (self.registered, m.param(0)) {
                (true, _) => out.push(self.numeric("462", &["You may not reregister"])),
                (false, None) => out.push(self.numeric("461", &["PASS", "Not enough parameters"])),
                (false, Some(p)) => self.pass = Some(p.to_owned()),
            },
            "NICK" => self.nick_command(m, &mut out),
            "USER" => match (self.registered, m.params.len()) {
                (true, _) => out.push(self.numeric("462", &["You may not reregister"])),
                (false, 0..=3) => out.push(self.numeric("461", &["USER", "Not enough parameters"])),
                (false, _) => {
                    self.user = m.param(0).map(str::to_owned);
                    self.try_register(&mut out);
                }
            },
            "PING" => match m.param(0) {
                Some(token) => out.push(
                    self.line(Message::new("PONG", &[&self.server, token]).from(&self.server)),
                ),
                None => out.push(self.numeric("409", &["No origin specified"])),
            },
            "PONG" => {}
            "QUIT" => {
                let why = m.param(0).unwrap_or("Client quit");
                out.push(self.line(Message::new("ERROR", &[&format!("Closing link: {why}")])));
                out.push(Out::Close);
            }
            _ if !self.registered => out.push(self.numeric("451", &["You have not registered"])),
            "JOIN" => self.join(m, &mut out),
            "PART" => self.part(m, &mut out),
            "PRIVMSG" | "NOTICE" => self.say(m, &mut out),
            "NAMES" => match m.param(0) {
                Some(list) => {
                    for chan in list.split(',') {
                        self.ask_room(
                            chan,
                            "members",
                            |channel| Pending::Names { channel },
                            &mut out,
                        );
                    }
                }
                None => out.push(self.numeric("366", &["*", "End of /NAMES list"])),
            },
            "TOPIC" => self.topic(m, &mut out),
            "LIST" => {
                let p = self.request("channels", json!({}), Pending::List);
                out.push(p);
            }
            "WHO" => match m.param(0) {
                Some(target) if target.starts_with('#') => {
                    self.ask_room(
                        target,
                        "members",
                        |channel| Pending::Who { channel },
                        &mut out,
                    );
                }
                Some(nick) => {
                    let nick = nick.to_owned();
                    out.push(self.request("users", json!({}), Pending::Whois { nick }));
                }
                None => out.push(self.numeric("315", &["*", "End of WHO list"])),
            },
            "WHOIS" => match m.params.last() {
                Some(nick) => {
                    let nick = nick.clone();
                    out.push(self.request("users", json!({}), Pending::Whois { nick }));
                }
                None => out.push(self.numeric("431", &["No nickname given"])),
            },
            "AWAY" => {
                self.away = m.param(0).is_some_and(|t| !t.is_empty());
                out.push(if self.away {
                    self.numeric("306", &["You have been marked as being away"])
                } else {
                    self.numeric("305", &["You are no longer marked as being away"])
                });
            }
            "MOTD" => self.motd(&mut out),
            "LUSERS" => {
                let p = self.request("users", json!({}), Pending::Lusers);
                out.push(p);
            }
            "MODE" => self.mode(m, &mut out),
            "CHATHISTORY" => self.chathistory(m, &mut out),
            "MARKREAD" => self.markread(m, &mut out),
            other => out.push(self.numeric("421", &[other, "Unknown command"])),
        }
        out
    }

    fn cap(&mut self, m: &Message, out: &mut Vec<Out>) {
        let me = self.me().to_owned();
        let reply = |params: &[&str]| {
            let mut all = vec![me.as_str()];
            all.extend_from_slice(params);
            Out::Line(Message::new("CAP", &all).from(&self.server).line())
        };
        match m.param(0).map(str::to_ascii_uppercase).as_deref() {
            Some("LS") => {
                if !self.registered {
                    self.negotiating = true;
                }
                let v302 = m.param(1).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0) >= 302;
                let list: Vec<String> = CAPS
                    .iter()
                    .map(|c| match c {
                        Cap::Sasl if v302 => "sasl=PLAIN".to_owned(),
                        c => c.name().to_owned(),
                    })
                    .collect();
                out.push(reply(&["LS", &list.join(" ")]));
            }
            Some("LIST") => {
                let list: Vec<&str> = self.caps.iter().map(|c| c.name()).collect();
                out.push(reply(&["LIST", &list.join(" ")]));
            }
            Some("REQ") => {
                if !self.registered {
                    self.negotiating = true;
                }
                let asked = m.param(1).unwrap_or("");
                let mut add = Vec::new();
                let mut remove = Vec::new();
                let mut ok = true;
                for name in asked.split_whitespace() {
                    let (off, name) = match name.strip_prefix('-') {
                        Some(n) => (true, n),
                        None => (false, name),
                    };
                    match Cap::parse(name) {
                        Some(c) if off => remove.push(c),
                        Some(c) => add.push(c),
                        None => ok = false,
                    }
                }
                if ok {
                    self.caps.extend(add);
                    for c in remove {
                        self.caps.remove(&c);
                    }
                    out.push(reply(&["ACK", asked]));
                } else {
                    out.push(reply(&["NAK", asked]));
                }
            }
            Some("END") => {
                self.negotiating = false;
                self.try_register(out);
            }
            _ => out.push(self.numeric("410", &[m.param(0).unwrap_or(""), "Invalid CAP command"])),
        }
    }

    fn authenticate(&mut self, m: &Message, out: &mut Vec<Out>) {
        if self.registered || self.account.is_some() {
            out.push(self.numeric("907", &["You have already authenticated using SASL"]));
            return;
        }
        let Some(arg) = m.param(0) else {
            out.push(self.numeric("461", &["AUTHENTICATE", "Not enough parameters"]));
            return;
        };
        if arg == "*" {
            self.sasl = None;
            out.push(self.numeric("906", &["SASL authentication aborted"]));
            return;
        }
        match self.sasl.take() {
            None if arg.eq_ignore_ascii_case("PLAIN") => {
                self.sasl = Some(Sasl::Plain(String::new()));
                out.push(Out::Line(Message::new("AUTHENTICATE", &["+"]).line()));
            }
            None => {
                out.push(self.numeric("908", &["PLAIN", "are available SASL mechanisms"]));
                out.push(self.numeric("904", &["SASL authentication failed"]));
            }
            Some(Sasl::Plain(mut got)) => {
                if arg != "+" {
                    got.push_str(arg);
                }
                if arg.len() == 400 && got.len() < MAX_SASL * 2 {
                    // More pieces follow.
                    self.sasl = Some(Sasl::Plain(got));
                    return;
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(got.as_bytes())
                    .ok()
                    .filter(|d| d.len() <= MAX_SASL)
                    .and_then(|d| String::from_utf8(d).ok());
                let Some(plain) = decoded else {
                    out.push(self.numeric(
                        "904",
                        &["SASL authentication failed: not base64 of UTF-8 text"],
                    ));
                    return;
                };
                let mut parts = plain.split('\0');
                let (Some(_authzid), Some(user), Some(password), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    out.push(self.numeric(
                        "904",
                        &["SASL authentication failed: expected authzid, authcid and password"],
                    ));
                    return;
                };
                self.logging_in = true;
                let login = json!({"user": user, "password": password, "device": self.device()});
                out.push(self.request("login", login, Pending::Login { sasl: true }));
            }
        }
    }

    fn nick_command(&mut self, m: &Message, out: &mut Vec<Out>) {
        let Some(nick) = m.param(0).filter(|n| !n.is_empty()) else {
            out.push(self.numeric("431", &["No nickname given"]));
            return;
        };
        if self.registered {
            if Some(nick) != self.nick.as_deref() {
                out.push(self.numeric(
                    "432",
                    &[
                        nick,
                        "On Palaver your nick is your account: reconnect to use another",
                    ],
                ));
            }
            return;
        }
        if nick.starts_with('#')
            || nick.starts_with(':')
            || nick.contains(['!', '@', ',', '*', '?'])
        {
            out.push(self.numeric("432", &[nick, "Erroneous nickname"]));
            return;
        }
        self.nick = Some(nick.to_owned());
        self.try_register(out);
    }

    /// Registers once NICK and USER are in, CAP negotiation is over and no login is on its
    /// way: with the SASL account, or by logging in as the nick (with PASS, if given).
    fn try_register(&mut self, out: &mut Vec<Out>) {
        if self.registered || self.negotiating || self.logging_in {
            return;
        }
        let (Some(nick), Some(_)) = (self.nick.clone(), &self.user) else {
            return;
        };
        if let Some(account) = self.account.clone() {
            if account != nick {
                out.push(Out::Line(
                    Message::new("NICK", &[&account])
                        .from(&Self::mask(&nick))
                        .line(),
                ));
                self.nick = Some(account);
            }
            self.welcome(out);
            return;
        }
        self.logging_in = true;
        let mut login = json!({"user": nick, "device": self.device()});
        if let Some(p) = &self.pass {
            login["password"] = json!(p);
        }
        out.push(self.request("login", login, Pending::Login { sasl: false }));
    }

    fn welcome(&mut self, out: &mut Vec<Out>) {
        self.registered = true;
        let nick = self.me().to_owned();
        let version = concat!("palaver-", env!("CARGO_PKG_VERSION"));
        out.push(self.numeric(
            "001",
            &[&format!("Welcome to Palaver, {}", Self::mask(&nick))],
        ));
        out.push(self.numeric(
            "002",
            &[&format!(
                "Your host is {}, running version {version}",
                self.server
            )],
        ));
        out.push(self.numeric(
            "003",
            &["This server keeps every room on every one of its servers"],
        ));
        out.push(self.numeric("004", &[&self.server.clone(), version, "i", "nt"]));
        out.push(self.numeric(
            "005",
            &[
                "CASEMAPPING=ascii",
                "CHANTYPES=#",
                "CHANMODES=,,,nt",
                "PREFIX=(o)@",
                "NICKLEN=64",
                "CHANNELLEN=64",
                "TOPICLEN=512",
                "NETWORK=Palaver",
                "UTF8ONLY",
                "are supported by this server",
            ],
        ));
        let most = format!("CHATHISTORY={}", history::MAX_CHATHISTORY);
        out.push(self.numeric(
            "005",
            &[
                &most,
                "MSGREFTYPES=msgid,timestamp",
                "are supported by this server",
            ],
        ));
        self.motd(out);
        // The rooms the person is in already join on the client too.
        let rooms = self.request("joined", json!({}), Pending::Rooms);
        out.push(rooms);
    }

    fn motd(&self, out: &mut Vec<Out>) {
        out.push(self.numeric("375", &[&format!("- {} Message of the day -", self.server)]));
        for l in [
            "- Palaver: rooms, private messages and history, kept on every server.",
            "- Your nick is your Palaver account. JOIN #room creates a room you own.",
            "- Names are Unicode, compared in NFC; rooms are #name.",
        ] {
            out.push(self.numeric("372", &[l]));
        }
        out.push(self.numeric("376", &["End of /MOTD command"]));
    }

    fn mode(&self, m: &Message, out: &mut Vec<Out>) {
        match m.param(0) {
            Some(t) if t.starts_with('#') && m.params.len() == 1 => {
                out.push(self.numeric("324", &[t, "+nt"]));
            }
            // A list asked for (clients ask for the ban list on joining): Palaver keeps none.
            Some(t) if t.starts_with('#') && m.params.len() == 2 => {
                let end = match m.params[1].trim_start_matches('+') {
                    "b" => Some(("368", "End of channel ban list")),
                    "e" => Some(("349", "End of channel exception list")),
                    "I" => Some(("347", "End of channel invite list")),
                    _ => None,
                };
                match end {
                    Some((code, text)) => out.push(self.numeric(code, &[t, text])),
                    None => {
                        out.push(self.numeric("482", &[t, "Room modes are not changed over IRC"]));
                    }
                }
            }
            Some(t) if t.starts_with('#') => {
                out.push(self.numeric("482", &[t, "Room modes are not changed over IRC"]));
            }
            Some(t) if t == self.me() => out.push(self.numeric("221", &["+i"])),
            Some(t) => out.push(self.numeric("502", &[t, "Can't change mode for other users"])),
            None => out.push(self.numeric("461", &["MODE", "Not enough parameters"])),
        }
    }

    /// A room's name without its `#`, or the numeric that says why it is not one.
    fn room<'a>(&self, target: &'a str) -> Result<&'a str, Out> {
        match target.strip_prefix('#') {
            Some(name) if !name.is_empty() => Ok(name),
            _ => Err(self.numeric("403", &[target, "No such channel"])),
        }
    }

    fn ask_room(
        &mut self,
        target: &str,
        service: &str,
        pending: impl FnOnce(String) -> Pending,
        out: &mut Vec<Out>,
    ) {
        match self.room(target) {
            Ok(name) => {
                let p = pending(name.to_owned());
                out.push(self.request(service, json!({"channel": name}), p));
            }
            Err(e) => out.push(e),
        }
    }

    fn join(&mut self, m: &Message, out: &mut Vec<Out>) {
        let Some(list) = m.param(0) else {
            out.push(self.numeric("461", &["JOIN", "Not enough parameters"]));
            return;
        };
        if list == "0" {
            for channel in std::mem::take(&mut self.channels) {
                let data = json!({"channel": channel});
                out.push(self.request("leave", data, Pending::Part { channel }));
            }
            return;
        }
        for target in list.split(',') {
            match self.room(target) {
                Ok(name) if self.channels.contains(name) => {}
                Ok(name) => {
                    let data = json!({"channel": name, "limit": JOIN_HISTORY});
                    let channel = name.to_owned();
                    out.push(self.request(
                        "join",
                        data,
                        Pending::Join {
                            channel,
                            created: false,
                        },
                    ));
                }
                Err(e) => out.push(e),
            }
        }
    }

    fn part(&mut self, m: &Message, out: &mut Vec<Out>) {
        let Some(list) = m.param(0) else {
            out.push(self.numeric("461", &["PART", "Not enough parameters"]));
            return;
        };
        for target in list.split(',') {
            match self.room(target) {
                Ok(name) if !self.channels.contains(name) => {
                    out.push(self.numeric("442", &[target, "You're not on that channel"]));
                }
                Ok(name) => {
                    let channel = name.to_owned();
                    let data = json!({"channel": name});
                    out.push(self.request("leave", data, Pending::Part { channel }));
                }
                Err(e) => out.push(e),
            }
        }
    }

    fn say(&mut self, m: &Message, out: &mut Vec<Out>) {
        let notice = m.command == "NOTICE";
        let (Some(targets), Some(text)) = (m.param(0), m.param(1)) else {
            if !notice {
                out.push(self.numeric(
                    if m.params.is_empty() { "411" } else { "412" },
                    &[if m.params.is_empty() {
                        "No recipient given (PRIVMSG)"
                    } else {
                        "No text to send"
                    }],
                ));
            }
            return;
        };
        if text.is_empty() {
            if !notice {
                out.push(self.numeric("412", &["No text to send"]));
            }
            return;
        }
        let Some(text) = self.kept(text) else {
            return; // a CTCP other than ACTION: not stored
        };
        for target in targets.split(',') {
            let (service, data) = match target.strip_prefix('#') {
                Some(room) => ("publish", json!({"channel": room, "message": text})),
                None => ("message", json!({"dst": target, "message": text})),
            };
            let pending = Pending::Say {
                target: target.to_owned(),
                lines: vec![Said::new(text.clone())],
                notice,
            };
            out.push(self.request(service, data, pending));
        }
    }

    /// The text a PRIVMSG or NOTICE stores: a CTCP ACTION as a person would type it; nothing
    /// for any other CTCP.
    fn kept(&self, text: &str) -> Option<String> {
        match text.strip_prefix("\u{1}ACTION ") {
            Some(action) => Some(format!(
                "* {} {}",
                self.me(),
                action.trim_end_matches('\u{1}')
            )),
            None if text.starts_with('\u{1}') => None,
            None => Some(text.to_owned()),
        }
    }

    /// Lines pasted to one room, waiting one behind another: posted in one `posts` request,
    /// so that they go to one server at once and stand in the room in the order sent.
    fn say_pasted(&mut self, notice: bool, target: &str, texts: Vec<String>) -> Vec<Out> {
        let room = target.trim_start_matches('#');
        let data = json!({"channel": room, "messages": texts});
        let pending = Pending::Say {
            target: target.to_owned(),
            lines: texts.into_iter().map(Said::new).collect(),
            notice,
        };
        self.in_order = true;
        let out = vec![self.request("posts", data, pending)];
        self.in_order = false;
        out
    }

    fn topic(&mut self, m: &Message, out: &mut Vec<Out>) {
        let Some(target) = m.param(0) else {
            out.push(self.numeric("461", &["TOPIC", "Not enough parameters"]));
            return;
        };
        match m.param(1) {
            None => self.ask_room(
                target,
                "members",
                |channel| Pending::ShowTopic { channel },
                out,
            ),
            Some(text) => match self.room(target) {
                Ok(name) => {
                    let data = json!({"channel": name, "topic": text});
                    let channel = name.to_owned();
                    out.push(self.request("topic", data, Pending::SetTopic { channel }));
                }
                Err(e) => out.push(e),
            },
        }
    }

    /// A text from the gateway: an answer to one of this session's requests, or a
    /// publication for it.
    pub fn on_gateway(&mut self, text: &str) -> Vec<Out> {
        let mut out = Vec::new();
        self.on_shared(text, &Formed::default(), &mut out);
        out
    }

    /// As [`Session::on_gateway`], for a text that other connections are given too: what
    /// they would all make of it alike is made once, in `formed`. What comes of it is added
    /// to `outs`.
    pub fn on_shared(&mut self, text: &str, formed: &Formed, outs: &mut Vec<Out>) {
        let Some(read) = formed.read(text) else {
            return;
        };
        if read.topic.is_some() {
            self.publication(read, formed, outs);
            return;
        }
        outs.extend(self.answered(read));
    }

    /// What an answer to one of this connection's requests brings.
    fn answered(&mut self, read: &Read) -> Vec<Out> {
        let mut out = Vec::new();
        let data = &read.data;
        let Some((pending, label, ordered)) = read.re.and_then(|re| self.pending.remove(&re))
        else {
            // A refusal with no `re`: the gateway could not read what it was sent.
            if let Some(why) = str_of(data, "description") {
                out.push(self.notice(&format!("gateway: {why}")));
            }
            return out;
        };
        let ok = matches!(str_of(data, "status"), Some("OK" | "sucesso"))
            || (data.get("status").is_none() && data.get("description").is_none());
        let why = str_of(data, "description").unwrap_or("refused").to_owned();
        // What the answer asks next is part of the same command.
        self.in_order = ordered;
        self.ctx = label;
        self.answer(pending, ok, &why, data, &mut out);
        self.ctx = None;
        self.in_order = false;
        if ordered {
            self.ordering = self.ordering.saturating_sub(1);
        }
        if let Some(label) = label {
            if let Some(held) = self.labels.get_mut(&label) {
                held.outstanding = held.outstanding.saturating_sub(1);
            }
            out = self.hold(label, out);
        }
        self.run_waiting(&mut out);
        out
    }

    fn answer(&mut self, pending: Pending, ok: bool, why: &str, data: &Json, out: &mut Vec<Out>) {
        match pending {
            Pending::Login { sasl } => {
                self.logging_in = false;
                if ok {
                    let account = str_of(data, "user")
                        .or(self.nick.as_deref())
                        .unwrap_or("*")
                        .to_owned();
                    self.account = Some(account.clone());
                    if sasl {
                        let mask = Self::mask(self.nick.as_deref().unwrap_or(&account));
                        out.push(self.numeric(
                            "900",
                            &[
                                &mask,
                                &account,
                                &format!("You are now logged in as {account}"),
                            ],
                        ));
                        out.push(self.numeric("903", &["SASL authentication successful"]));
                    }
                    self.try_register(out);
                } else if sasl {
                    out.push(self.numeric("904", &[&format!("SASL authentication failed: {why}")]));
                } else if self.pass.is_some() {
                    out.push(self.numeric("464", &[&format!("Password incorrect: {why}")]));
                } else {
                    // Most often a name with a password: another nick, or SASL/PASS.
                    let nick = self.nick.take().unwrap_or_default();
                    out.push(self.numeric("433", &[&nick, &format!("Nickname is unavailable: {why}; log in with SASL or PASS, or choose another")]));
                }
            }
            Pending::Rooms => {
                let mut joined = Vec::new();
                for room in strings(data, "channels") {
                    if self.enter(&room) {
                        let me = self.me().to_owned();
                        out.push(self.join_line(&me, &room));
                        joined.push(room);
                    }
                }
                self.after_join(joined, out);
                // Then what arrived while this device was away, in the rooms just joined.
                out.push(self.request("inbox", json!({"limit": INBOX_PAGE}), Pending::Inbox));
            }
            Pending::Inbox => {
                if !ok {
                    tracing::warn!(why, "an IRC client's inbox could not be read");
                    out.push(self.notice(&format!(
                        "What arrived while you were away cannot be read now: {why}"
                    )));
                    self.shown = None;
                    return;
                }
                let page = data.get("messages").and_then(Json::as_array);
                for m in page.into_iter().flatten() {
                    self.missed(m, out);
                }
                let cursor = data
                    .get("cursor")
                    .filter(|_| page.is_some_and(|p| !p.is_empty()));
                match cursor {
                    Some(cursor) => {
                        let more = data.get("more").and_then(Json::as_bool) == Some(true);
                        let taken = json!({"cursor": cursor});
                        out.push(self.request("taken", taken, Pending::Taken { more }));
                    }
                    None => self.shown = None,
                }
            }
            Pending::Markers { targets, names } => {
                self.markers(&targets, ok, why, data, out);
                if names {
                    for target in targets {
                        let room = target.trim_start_matches('#').to_owned();
                        out.push(self.ask_names(&room));
                    }
                }
            }
            Pending::MarkFind { target } => self.mark_found(target, ok, why, data, out),
            Pending::MarkMoved { target } => {
                if ok {
                    out.push(self.ask_markers(vec![target]));
                } else {
                    out.push(self.standard("FAIL", "MARKREAD", "INVALID_PARAMS", &[&target], why));
                }
            }
            Pending::Taken { more } => {
                self.inbox_pages += 1;
                if !ok || !more || self.inbox_pages >= INBOX_PAGES {
                    // Played back: nothing more comes from the inbox on this connection.
                    self.shown = None;
                }
                if !ok {
                    tracing::warn!(why, "an IRC client's inbox could not be confirmed");
                } else if more && self.inbox_pages >= INBOX_PAGES {
                    // More than a client's queue should take at once: the rest waits for the
                    // next connection, and history has it meanwhile.
                    out.push(self.notice(&format!(
                        "More arrived while you were away than is shown at once ({}): it comes \
                         when you reconnect, and CHATHISTORY or the web client has it now",
                        INBOX_PAGES * INBOX_PAGE
                    )));
                } else if more {
                    out.push(self.request("inbox", json!({"limit": INBOX_PAGE}), Pending::Inbox));
                }
            }
            Pending::Join { channel, created } => {
                if ok {
                    self.joined(&channel, data, out);
                } else if !created && why.contains("does not exist") {
                    let data = json!({"channel": channel});
                    out.push(self.request("channel", data, Pending::Create { channel }));
                } else {
                    out.push(self.numeric("403", &[&format!("#{channel}"), why]));
                }
            }
            Pending::Create { channel } => {
                // Created, or created by someone else meanwhile: join it either way.
                if ok || why.contains("exists") {
                    let data = json!({"channel": channel, "limit": JOIN_HISTORY});
                    out.push(self.request(
                        "join",
                        data,
                        Pending::Join {
                            channel,
                            created: true,
                        },
                    ));
                } else {
                    out.push(self.numeric("403", &[&format!("#{channel}"), why]));
                }
            }
            Pending::Part { channel } => {
                if ok {
                    self.leave_room(&channel);
                    out.push(self.mine(Message::new("PART", &[&format!("#{channel}")])));
                } else {
                    out.push(self.numeric("442", &[&format!("#{channel}"), why]));
                }
            }
            Pending::Say {
                target,
                lines,
                notice,
            } => self.said(&target, lines, notice, (ok, why), data, out),
            Pending::Names { channel } => {
                if ok {
                    self.names(&channel, data, out);
                } else {
                    out.push(self.numeric("403", &[&format!("#{channel}"), why]));
                }
            }
            Pending::List => {
                out.push(self.numeric("321", &["Channel", "Users  Name"]));
                for room in strings(data, "channels") {
                    out.push(self.numeric("322", &[&format!("#{room}"), "0", ""]));
                }
                out.push(self.numeric("323", &["End of /LIST"]));
            }
            Pending::ShowTopic { channel } => {
                if ok {
                    self.show_topic(&channel, data, true, out);
                } else {
                    out.push(self.numeric("403", &[&format!("#{channel}"), why]));
                }
            }
            Pending::SetTopic { channel } => {
                if !ok {
                    out.push(self.numeric("482", &[&format!("#{channel}"), why]));
                }
                // Done: the topic's publication shows it to everyone in the room, this
                // client included.
            }
            Pending::Who { channel } => {
                if ok {
                    let chan = format!("#{channel}");
                    for member in strings(data, "members") {
                        out.push(self.numeric(
                            "352",
                            &[
                                &chan,
                                &member,
                                HOST,
                                &self.server.clone(),
                                &member,
                                "H",
                                &format!("0 {member}"),
                            ],
                        ));
                    }
                }
                out.push(self.numeric("315", &[&format!("#{channel}"), "End of WHO list"]));
            }
            Pending::Whois { nick } => {
                let known = strings(data, "users").iter().any(|u| u == &nick);
                if known {
                    out.push(self.numeric("311", &[&nick, &nick, HOST, "*", &nick]));
                    out.push(self.numeric("312", &[&nick, &self.server.clone(), "Palaver"]));
                } else {
                    out.push(self.numeric("401", &[&nick, "No such nick"]));
                }
                out.push(self.numeric("318", &[&nick, "End of /WHOIS list"]));
            }
            Pending::History { sub, target, step } => {
                self.history_page((sub, target, step), ok, why, data, out);
            }
            Pending::Targets { from, to, limit } => {
                if ok {
                    self.targets(from, to, limit, data, out);
                } else {
                    out.push(self.fail("MESSAGE_ERROR", &["TARGETS"], why));
                }
            }
            Pending::Lusers => {
                let n = strings(data, "users").len();
                out.push(self.numeric(
                    "251",
                    &[&format!("There are {n} users and 0 invisible on 1 servers")],
                ));
            }
        }
    }

    /// The answer to what was said: each line's own publication, still to come, is known by
    /// its id then (`posts` answers with every line's id and cursor, in `ids` and `cursors`);
    /// echo-message shows each.
    fn said(
        &mut self,
        target: &str,
        lines: Vec<Said>,
        notice: bool,
        (ok, why): (bool, &str),
        data: &Json,
        out: &mut Vec<Out>,
    ) {
        if !ok {
            if !notice {
                let code = if target.starts_with('#') {
                    "404"
                } else {
                    "401"
                };
                for _ in &lines {
                    out.push(self.numeric(code, &[target, why]));
                }
            }
            return;
        }
        let each = |one: &str, all: &str| -> Vec<Option<String>> {
            match data.get(all).and_then(Json::as_array) {
                Some(all) => all.iter().map(|i| i.as_str().map(str::to_owned)).collect(),
                None => vec![str_of(data, one).map(str::to_owned)],
            }
        };
        let (ids, cursors) = (each("id", "ids"), each("cursor", "cursors"));
        let me = self.me().to_owned();
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let in_room = self.channels.contains(target.trim_start_matches('#'));
        let waited = !self.echoes.is_empty();
        for (i, said) in lines.into_iter().enumerate() {
            let id = ids.get(i).cloned().flatten();
            if let (false, true, Some(id)) = (said.echoed, target.starts_with('#'), &id) {
                self.own.push_back(id.clone());
                if self.own.len() > OWN_REMEMBERED {
                    self.own.pop_front();
                }
                if in_room {
                    self.echoes.insert(id.clone());
                }
            }
            if self.caps.contains(&Cap::EchoMessage) {
                // What the line's tags are made of: the answer's time and clock, and this
                // post's own id and place (a copy of the whole answer, with every post's ids,
                // per line made a paste of 200 lines cost 80,000 allocations).
                let mut tags = serde_json::Map::new();
                for key in ["timestamp", "clock"] {
                    if let Some(v) = data.get(key) {
                        tags.insert(key.into(), v.clone());
                    }
                }
                let cursor = cursors.get(i).cloned().flatten();
                for (key, value) in [("id", id), ("cursor", cursor)] {
                    if let Some(v) = value {
                        tags.insert(key.into(), Json::from(v));
                    }
                }
                self.text_lines(command, &me, target, &said.text, &Json::Object(tags), out);
            }
        }
        if !waited && !self.echoes.is_empty() {
            // The next command waits until these posts come back from the cluster: posted
            // before they reached the proxy, by another server, it could reach the room first.
            self.ordering += 1;
        }
    }

    /// Whether the commands that wait do so for publications of this connection's own posts
    /// (a post the next server takes could otherwise reach the room before them). The driver
    /// stops waiting ([`Session::echoes_late`]) when nothing comes for a while.
    pub fn awaits_echoes(&self) -> bool {
        !self.echoes.is_empty()
    }

    /// The publications of its own posts did not all come (the gateway does not follow the
    /// room, or one was lost and is filled in later): the waiting commands run.
    pub fn echoes_late(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        if !self.echoes.is_empty() {
            self.echoes.clear();
            self.ordering = self.ordering.saturating_sub(1);
            self.run_waiting(&mut out);
        }
        out
    }

    /// The publication of own post `id` came back.
    fn echo_seen(&mut self, id: &str, out: &mut Vec<Out>) {
        if self.echoes.remove(id) && self.echoes.is_empty() {
            self.ordering = self.ordering.saturating_sub(1);
            self.run_waiting(out);
        }
    }

    /// A join answered: JOIN, the topic, the recent posts, and the names.
    fn joined(&mut self, channel: &str, data: &Json, out: &mut Vec<Out>) {
        self.enter(channel);
        let chan = format!("#{channel}");
        let me = self.me().to_owned();
        out.push(self.join_line(&me, channel));
        self.show_topic(channel, data, false, out);
        if let Some(posts) = data.get("messages").and_then(Json::as_array) {
            for p in posts {
                if let (Some(user), Some(text)) = (str_of(p, "user"), str_of(p, "message")) {
                    self.text_lines("PRIVMSG", user, &chan, text, p, out);
                }
            }
        }
        self.after_join(vec![channel.to_owned()], out);
    }

    /// Rooms just joined on the client: their read markers (for clients that asked), then
    /// their names (unless the client asked for none).
    fn after_join(&mut self, rooms: Vec<String>, out: &mut Vec<Out>) {
        if rooms.is_empty() {
            return;
        }
        let names = !self.caps.contains(&Cap::NoImplicitNames);
        if self.caps.contains(&Cap::ReadMarker) {
            let targets = rooms.iter().map(|r| format!("#{r}")).collect();
            let pending = Pending::Markers { targets, names };
            out.push(self.request("unread", json!({}), pending));
        } else if names {
            for room in rooms {
                out.push(self.ask_names(&room));
            }
        }
    }

    /// `nick` joining `room`, with their account and name for clients that asked
    /// (`extended-join`: on Palaver a nick is its account).
    fn join_line(&self, nick: &str, room: &str) -> Out {
        let chan = format!("#{room}");
        let m = if self.caps.contains(&Cap::ExtendedJoin) {
            Message::new("JOIN", &[&chan, nick, nick])
        } else {
            Message::new("JOIN", &[&chan])
        };
        self.line(m.from(&Self::mask(nick)))
    }

    /// Someone online or offline: `AWAY` to clients that asked (`away-notify`), for the people
    /// in their rooms.
    fn presence(&mut self, data: &Json, out: &mut Vec<Out>) {
        let (Some(user), Some(online)) = (
            str_of(data, "user"),
            data.get("online").and_then(Json::as_bool),
        ) else {
            return;
        };
        if !self.caps.contains(&Cap::AwayNotify)
            || user == self.me()
            || !self.rooms.shares(self.channels.iter(), user)
        {
            return;
        }
        let away = if online {
            Message::new("AWAY", &[])
        } else {
            Message::new("AWAY", &["Offline"])
        };
        out.push(self.line(away.from(&Self::mask(user))));
    }

    fn show_topic(&self, channel: &str, data: &Json, always: bool, out: &mut Vec<Out>) {
        let chan = format!("#{channel}");
        match str_of(data, "topic").filter(|t| !t.is_empty()) {
            Some(topic) => {
                out.push(self.numeric("332", &[&chan, topic]));
                if let Some(by) = str_of(data, "topic_by") {
                    out.push(self.numeric("333", &[&chan, by, "0"]));
                }
            }
            None if always => out.push(self.numeric("331", &[&chan, "No topic is set"])),
            None => {}
        }
    }

    fn names(&mut self, channel: &str, data: &Json, out: &mut Vec<Out>) {
        if self.channels.contains(channel) {
            self.rooms.listed(channel, strings(data, "members"));
        }
        let chan = format!("#{channel}");
        let owner = str_of(data, "owner");
        let mut line = String::new();
        for member in strings(data, "members") {
            let name = if Some(member.as_str()) == owner {
                format!("@{member}")
            } else {
                member
            };
            if line.len() + name.len() > 400 {
                out.push(self.numeric("353", &["=", &chan, &line]));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&name);
        }
        if !line.is_empty() {
            out.push(self.numeric("353", &["=", &chan, &line]));
        }
        out.push(self.numeric("366", &[&chan, "End of /NAMES list"]));
    }

    /// PRIVMSG (or NOTICE) lines for one post or private message, cut to fit, with its time
    /// and id as tags for the clients that asked for them.
    fn text_lines(
        &self,
        command: &str,
        from: &str,
        target: &str,
        text: &str,
        data: &Json,
        out: &mut Vec<Out>,
    ) {
        for m in self.text_messages(command, from, target, text, data) {
            out.push(self.line(m));
        }
    }

    /// As [`Session::text_lines`], the messages before they are written.
    fn text_messages(
        &self,
        command: &str,
        from: &str,
        target: &str,
        text: &str,
        data: &Json,
    ) -> Vec<Message> {
        let mut out = Vec::new();
        for piece in pieces(text, TEXT_PER_LINE) {
            let mut m = Message::new(command, &[target, piece]).from(&Self::mask(from));
            if self.caps.contains(&Cap::ServerTime) {
                if let Some(ts) = data.get("timestamp").and_then(Json::as_f64) {
                    m = m.tag("time", Some(&iso_time(ts)));
                }
            }
            if self.caps.contains(&Cap::MessageTags) {
                if let Some(id) = history::msgid(data) {
                    m = m.tag("msgid", Some(&id));
                }
            }
            if self.caps.contains(&Cap::AccountTag) {
                m = m.tag("account", Some(from));
            }
            out.push(m);
        }
        out
    }

    /// Lines of a post to `room`, or of a private message to this connection's person,
    /// shared with every connection given it in the same shape ([`Formed::lines`]).
    fn shared_lines(
        &self,
        from: &str,
        room: Option<&str>,
        text: &str,
        data: &Json,
        formed: &Formed,
    ) -> Out {
        Out::Lines(formed.lines(self.shape(), || {
            let target = match room {
                Some(room) => format!("#{room}"),
                None => self.me().to_owned(),
            };
            let mut lines = String::new();
            for m in self.text_messages("PRIVMSG", from, &target, text, data) {
                lines.push_str(&m.line());
                lines.push_str("\r\n");
            }
            lines
        }))
    }

    /// A publication: what it shows this connection, if anything. Posts and private messages
    /// are the busy case, read once for every connection ([`Formed`]).
    fn publication(&mut self, read: &Read, formed: &Formed, out: &mut Vec<Out>) {
        if !self.registered {
            return;
        }
        let (topic, data) = (read.topic.as_deref().unwrap_or(""), &read.data);
        match read.service.as_str() {
            "publish" => {
                let Some(said) = &read.said else {
                    return;
                };
                let channel = said.to.as_str();
                if topic != channel || !self.channels.contains(channel) {
                    return;
                }
                // This connection's own post is echoed by its answer (echo-message), not by
                // its publication; the person's posts from elsewhere show like anyone's.
                if said.from == self.me()
                    && self.is_own(said.id.as_deref(), &format!("#{channel}"), &said.text)
                {
                    if let Some(id) = &said.id {
                        self.echo_seen(id, out);
                    }
                    return;
                }
                if self.seen_id(said.id.as_deref()) {
                    return;
                }
                out.push(self.shared_lines(&said.from, Some(channel), &said.text, data, formed));
            }
            "message" => {
                let Some(said) = &read.said else {
                    return;
                };
                if said.from != self.me()
                    && said.to == self.me()
                    && !self.seen_id(said.id.as_deref())
                {
                    out.push(self.shared_lines(&said.from, None, &said.text, data, formed));
                }
            }
            "join" | "leave" => {
                let (Some(user), Some(channel)) = (str_of(data, "user"), str_of(data, "channel"))
                else {
                    return;
                };
                let joined = read.service == "join";
                if user != self.me() && self.channels.contains(channel) {
                    self.rooms.moved(channel, user, joined);
                    if joined {
                        out.push(self.join_line(user, channel));
                    } else {
                        let part = Message::new("PART", &[&format!("#{channel}")]);
                        out.push(self.line(part.from(&Self::mask(user))));
                    }
                }
            }
            "topic" => {
                let (Some(user), Some(channel)) = (str_of(data, "user"), str_of(data, "channel"))
                else {
                    return;
                };
                if self.channels.contains(channel) {
                    let text = str_of(data, "topic").unwrap_or("");
                    out.push(
                        self.line(
                            Message::new("TOPIC", &[&format!("#{channel}"), text])
                                .from(&Self::mask(user)),
                        ),
                    );
                }
            }
            "delete" => {
                if let Some(channel) = str_of(data, "channel").map(str::to_owned) {
                    if self.leave_room(&channel) {
                        let part =
                            Message::new("PART", &[&format!("#{channel}"), "the room was deleted"]);
                        out.push(self.mine(part));
                    }
                }
            }
            // The gateway's greeting, elections, receipts and sealed notices (the gateway hands those on opened, as `message`): nothing an IRC client
            // shows yet.
            "read" => self.marker_moved(data, out),
            "presence" => self.presence(data, out),
            "hello" | "election" | "receipt" | "sealed" => {}
            // A service the cluster does not publish today: a newer cluster's, shown once it
            // has a line of its own here.
            other => tracing::debug!(service = other, topic, "a publication IRC does not show"),
        }
    }
}

impl Session {
    /// Whether a publication of the person's is this connection's own: a post whose answer
    /// named its id, or one still waiting for its answer with the same target and text.
    fn is_own(&mut self, id: Option<&str>, target: &str, text: &str) -> bool {
        if let Some(id) = id {
            if let Some(i) = self.own.iter().position(|o| o == id) {
                self.own.remove(i);
                return true;
            }
        }
        for (p, _, _) in self.pending.values_mut() {
            if let Pending::Say {
                target: t, lines, ..
            } = p
            {
                if t != target {
                    continue;
                }
                if let Some(said) = lines.iter_mut().find(|l| !l.echoed && l.text == text) {
                    said.echoed = true;
                    return true;
                }
            }
        }
        false
    }
}

fn str_of<'a>(data: &'a Json, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Json::as_str)
}

fn strings(data: &Json, key: &str) -> Vec<String> {
    data.get(key)
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds since the epoch as IRCv3 `server-time`: `YYYY-MM-DDThh:mm:ss.sssZ`.
pub fn iso_time(secs: f64) -> String {
    // Down to the millisecond, never up: a message shown at T was stamped within [T, T+1 ms),
    // which is how history's bounds read a time back.
    let ms = (secs * 1000.0).floor().max(0.0) as u64;
    let (days, rem) = (ms / 86_400_000, ms % 86_400_000);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

impl Drop for Session {
    /// The connection's rooms lose a session: the gateway forgets a room nobody is in.
    fn drop(&mut self) {
        for room in &self.channels {
            self.rooms.leave(room);
        }
    }
}

mod formed;
mod history;
mod labels;
mod markers;
mod rooms;

pub use rooms::Rooms;

#[cfg(test)]
mod tests;
