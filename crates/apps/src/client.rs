//! `palaver client`: chat from a terminal, or from a script, one command per line.
//!
//! A receiver thread owns the subscription socket and prints what arrives; the main thread reads
//! commands and sends requests. When stdin is not a terminal, no prompts are printed, so the
//! client can be driven by a pipe.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use palaver_client::{say, About, ClientError, Connection, Heartbeat, SharedClock, Subscriber};
use palaver_proto::{printable, Conversation, HistoryQuery, Name, Request};

use crate::show;

pub struct Options {
    pub broker: String,
    pub sub: String,
    pub user: Option<Name>,
    /// The account's password, for a name that has one.
    pub password: Option<String>,
    /// This client's name among the person's devices (its inbox cursor is its own).
    pub device: String,
}

const HELP: &str = "\
commands:
  /users                 who is registered
  /channels              which channels exist
  /create CHANNEL        create a channel (yours: only you may delete it) and join it
  /join CHANNEL          join a channel: its last posts, then live ones; plain lines
                         then go there
  /leave [CHANNEL]       leave a channel (default: the current one)
  /members [CHANNEL]     who is in a channel, and its topic
  /topic [TEXT]          the current channel's topic; with TEXT, set it (you must be
                         in the channel); /topic - clears it
  /rooms                 the channels you are in
  /delete CHANNEL        delete a channel you created, on every server
  /post CHANNEL TEXT     post to a channel
  /msg USER TEXT         send a private message
    /history [CHANNEL|@USER] [N]
                         the last N (20) messages of a channel (default: the current
                         one) or of your conversation with a user
  /unread                how many messages wait after your read markers, per channel
                         and conversation
  /read ID               mark a channel or conversation read up to message ID
  /receipts ID           who has received and read your message ID, and when
  /receipts on|off       whether others learn when you have read their messages
  /online                who is online, and since when
  /register PASSWORD     give your name a password (an account only you can use)
  /login PASSWORD        log in to your account
  /logout                end this session
  /password OLD NEW      change your password (your other sessions end)
  /unregister PASSWORD   close your account for good (the name is retired)
  /wait SECONDS          pause (scripts: let publications arrive)
  /help                  this text
  /quit                  leave
  TEXT                   post to the current channel";

/// How many of a channel's posts `/join` shows.
const JOIN_HISTORY: usize = 20;

enum Control {
    Subscribe(String),
    Unsubscribe(String),
    /// A room was joined: its newest posts, to show before live ones.
    Joined(Name, Vec<palaver_proto::Event>),
    /// The session changed: private messages are opened with this token now.
    Token(Option<String>),
    Stop,
}

/// Output shared by the two threads, so that an incoming line does not cut into a prompt.
#[derive(Clone)]
struct Screen {
    interactive: bool,
    out: Arc<Mutex<std::io::Stdout>>,
}

impl Screen {
    fn say(&self, line: &str) {
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = out.lock();
        if self.interactive {
            let _ = write!(out, "\r\x1b[K{line}\n> ");
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

/// Runs the line client until `/quit` or the end of input.
///
/// # Errors
/// When the login fails or the sockets cannot be opened.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let screen = Screen {
        interactive,
        out: Arc::new(Mutex::new(std::io::stdout())),
    };
    let mut lines = std::io::stdin().lock().lines();
    let user = match &opts.user {
        Some(u) => u.clone(),
        None if interactive => loop {
            print!("your name: ");
            std::io::stdout().flush()?;
            let Some(line) = lines.next() else {
                return Ok(());
            };
            match Name::parse(line?.trim()) {
                Ok(name) => break name,
                Err(e) => println!("{e}"),
            }
        },
        None => bail!("--user is needed when stdin is not a terminal"),
    };

    let ctx = zmq::Context::new();
    let clock = SharedClock::new();
    let mut conn = Connection::open(&ctx, &opts.broker, clock.clone())?;
    match &opts.password {
        Some(pw) => conn
            .login_with_password(&user, pw)
            .map(drop)
            .with_context(|| format!("cannot log in as {user}"))?,
        None => conn
            .login(&user)
            .with_context(|| format!("cannot log in as {user}"))?,
    }
    let mut sub = Subscriber::open(&ctx, &opts.sub, clock.clone())?;
    // What arrives while cut off from the proxy is filled in from `history` on reconnecting;
    // the same connection, with the session, opens sealed private messages.
    let mut repair = Connection::open(&ctx, &opts.broker, clock.clone())?;
    repair.set_token(conn.token().map(str::to_owned));
    sub.repair_with(repair)?;
    sub.unseal_as(user.clone());
    sub.subscribe(user.as_str())?;
    let heartbeat = Heartbeat::start(
        &ctx,
        &opts.broker,
        clock.clone(),
        user.clone(),
        conn.token().map(str::to_owned),
    )?;
    let (control, control_rx) = mpsc::channel();
    // Ids shown live, so that what the inbox hands over again at the end is not shown twice.
    let shown: Arc<Mutex<HashSet<String>>> = Arc::default();
    let receiver = {
        let (screen, shown) = (screen.clone(), shown.clone());
        std::thread::spawn(move || receive(sub, &control_rx, &screen, &shown))
    };
    screen.say(&format!(
        "logged in as {user} (clock {}); /help lists the commands",
        clock.now()
    ));
    // What arrived while this device was away, once.
    let mut away = HashSet::new();
    let mut missed = Vec::new();
    match conn.catch_up(&user, &opts.device, &mut away, |e| {
        missed.push(show::event(e))
    }) {
        Ok(0) => {}
        Ok(n) => {
            screen.say(&format!("while you were away ({n}):"));
            for line in &missed {
                screen.say(&format!("{line}  (while away)"));
            }
        }
        Err(e) => screen.say(&format!("cannot read what arrived while away: {e}")),
    }
    // The rooms joined in earlier runs are followed again.
    let rooms = conn.joined(&user).unwrap_or_default();
    for room in &rooms {
        let _ = control.send(Control::Subscribe(room.clone()));
    }
    if !rooms.is_empty() {
        screen.say(&format!(
            "you are in {}",
            printable(
                &rooms
                    .iter()
                    .map(|r| format!("#{r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        ));
    }

    let mut session = Session {
        user,
        conn,
        control,
        current: None,
        screen,
        ctx,
        broker: opts.broker.clone(),
        heartbeat: Some(heartbeat),
    };
    for line in lines {
        let line = line?;
        if !session.command(line.trim()) {
            break;
        }
    }
    let _ = session.control.send(Control::Stop);
    let _ = receiver.join();
    // What this device took live is confirmed now, so the next run starts after it; anything
    // that did not show live (a gap) is shown before leaving.
    let mut seen = shown.lock().unwrap_or_else(|e| e.into_inner()).clone();
    seen.extend(away);
    let screen = session.screen.clone();
    if let Err(e) = session
        .conn
        .catch_up(&session.user, &opts.device, &mut seen, |e| {
            screen.say(&format!("{}  (missed)", show::event(e)))
        })
    {
        screen.say(&format!("cannot confirm what this device has taken: {e}"));
    }
    drop(session.heartbeat.take());
    Ok(())
}

fn receive(
    mut sub: Subscriber,
    control: &mpsc::Receiver<Control>,
    screen: &Screen,
    shown: &Mutex<HashSet<String>>,
) {
    loop {
        loop {
            match control.try_recv() {
                Ok(Control::Subscribe(t)) => drop(sub.subscribe(&t)),
                Ok(Control::Unsubscribe(t)) => drop(sub.unsubscribe(&t)),
                Ok(Control::Joined(c, posts)) => sub.joined(&c, &posts),
                Ok(Control::Token(t)) => sub.set_token(t),
                Ok(Control::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        match sub.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(r)) => {
                if let Ok(Some(id)) = r.publication.envelope.data.opt_str("id") {
                    shown
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.to_owned());
                }
                screen.say(&show::line(&r));
            }
            Ok(None) => {}
            Err(e) => {
                screen.say(&format!("subscription failed: {e}"));
                return;
            }
        }
    }
}

struct Session {
    user: Name,
    conn: Connection,
    control: mpsc::Sender<Control>,
    current: Option<Name>,
    screen: Screen,
    ctx: zmq::Context,
    broker: String,
    /// Presence: beats while the client runs, with the current session.
    heartbeat: Option<Heartbeat>,
}

impl Session {
    /// Carries out one line. Returns false to stop.
    fn command(&mut self, line: &str) -> bool {
        if line.is_empty() {
            if self.screen.interactive {
                self.screen.say("");
            }
            return true;
        }
        let (cmd, rest) = match line.strip_prefix('/') {
            Some(c) => c.split_once(' ').map_or((c, ""), |(a, b)| (a, b.trim())),
            None => ("say", line),
        };
        let (arg, text) = rest
            .split_once(' ')
            .map_or((rest, ""), |(a, b)| (a, b.trim()));
        let outcome: Result<String, String> = match cmd {
            "help" => Ok(HELP.to_owned()),
            "quit" | "exit" => return false,
            "users" => self
                .conn
                .users()
                .map(|u| format!("users: {}", printable(&u.join(", "))))
                .map_err(err),
            "channels" => self
                .conn
                .channels()
                .map(|c| format!("channels: {}", printable(&c.join(", "))))
                .map_err(err),
            "create" => name(arg).and_then(|c| {
                self.conn.create_room(&c, &self.user).map_err(err)?;
                self.join(c.clone())?;
                Ok(format!("created #{c}; it is yours, and you are in it"))
            }),
            "join" => name(arg).and_then(|c| {
                let (shown, about) = self.join(c.clone())?;
                Ok(format!(
                    "joined #{c}{}; plain lines go there\n{}",
                    match shown {
                        0 => String::new(),
                        n => format!(" (with its last {n} posts)"),
                    },
                    about_topic(&c, &about)
                ))
            }),
            "leave" => self.room_or_current(arg).and_then(|c| {
                self.conn.leave(&self.user, &c).map_err(err)?;
                let _ = self.control.send(Control::Unsubscribe(c.to_string()));
                if self.current.as_ref() == Some(&c) {
                    self.current = None;
                }
                Ok(format!("left #{c}"))
            }),
            "members" => self.room_or_current(arg).and_then(|c| {
                let (people, about) = self.conn.room(&c).map_err(err)?;
                Ok(format!(
                    "in #{c}: {}\n{}",
                    printable(&if people.is_empty() {
                        "nobody".to_owned()
                    } else {
                        people.join(", ")
                    }),
                    about_topic(&c, &about)
                ))
            }),
            "topic" => self.room_or_current("").and_then(|c| match rest {
                "" => {
                    let (_, about) = self.conn.room(&c).map_err(err)?;
                    Ok(about_topic(&c, &about))
                }
                "-" => {
                    self.conn.set_topic(&self.user, &c, None).map_err(err)?;
                    Ok(format!("cleared the topic of #{c}"))
                }
                topic => {
                    self.conn
                        .set_topic(&self.user, &c, Some(topic))
                        .map_err(err)?;
                    Ok(format!("set the topic of #{c}"))
                }
            }),
            "rooms" => self.conn.joined(&self.user).map_err(err).map(|rooms| {
                if rooms.is_empty() {
                    "you are in no channel".to_owned()
                } else {
                    format!("you are in: {}", printable(&rooms.join(", ")))
                }
            }),
            "delete" => name(arg).and_then(|c| {
                self.conn.delete(&self.user, &c).map_err(err)?;
                let _ = self.control.send(Control::Unsubscribe(c.to_string()));
                if self.current.as_ref() == Some(&c) {
                    self.current = None;
                }
                Ok(format!("deleted #{c} on every server"))
            }),
            "post" => name(arg).and_then(|c| self.post(&c, text)),
            "msg" => name(arg).and_then(|dst| {
                if text.is_empty() {
                    return Err("usage: /msg USER TEXT".into());
                }
                self.conn.message(&self.user, &dst, text).map_err(err)?;
                Ok(format!("sent to {dst}"))
            }),
            "history" => self.history(arg, text),
            "unread" => say::unread(&mut self.conn, &self.user).map_err(err),
            "read" => palaver_proto::EventRef::parse("id", arg)
                .map_err(|e| e.to_string())
                .and_then(|id| self.conn.read(&self.user, &id).map_err(err))
                .map(|at| format!("read up to {at}")),
            "receipts" => say::receipts(&mut self.conn, &self.user, arg).map_err(err),
            "online" => self.conn.online().map_err(err).map(|people| {
                let now = palaver_proto::now_secs();
                let list: Vec<String> = people
                    .iter()
                    .map(|(u, since)| format!("{} (for {})", printable(u), ago(now - since)))
                    .collect();
                if list.is_empty() {
                    "nobody is online".to_owned()
                } else {
                    format!("online: {}", list.join(", "))
                }
            }),
            "register" => {
                let pw = rest;
                match self.conn.register(&self.user, pw) {
                    Ok(()) => self.log_in(pw).map(|()| {
                        format!("{} is yours now: only your password opens it", self.user)
                    }),
                    Err(e) => Err(err(e)),
                }
            }
            "login" => self
                .log_in(rest)
                .map(|()| format!("logged in to your account {}", self.user)),
            "logout" => match self.conn.logout(&self.user) {
                Ok(()) => {
                    self.session_changed();
                    Ok("logged out; your session has ended on every server".to_owned())
                }
                Err(e) => Err(err(e)),
            },
            "password" => {
                if arg.is_empty() || text.is_empty() {
                    Err("usage: /password OLD NEW".into())
                } else {
                    self.conn
                        .change_password(&self.user, arg, text)
                        .map_err(err)
                        .map(|()| "password changed; your other sessions have ended".to_owned())
                }
            }
            "unregister" => match self.conn.unregister(&self.user, rest) {
                Ok(()) => {
                    self.session_changed();
                    Ok(format!("account {} closed; the name is retired", self.user))
                }
                Err(e) => Err(err(e)),
            },
            "wait" => match arg.parse::<f64>() {
                Ok(s) if (0.0..=3600.0).contains(&s) => {
                    std::thread::sleep(Duration::from_secs_f64(s));
                    return true;
                }
                _ => Err("usage: /wait SECONDS".into()),
            },
            "say" => match self.current.clone() {
                Some(c) => self.post(&c, line),
                None => Err("join a channel first (/join CHANNEL), or use /post or /msg".into()),
            },
            other => Err(format!("unknown command /{other}; /help lists them")),
        };
        let clock = self.conn.clock().now();
        match outcome {
            Ok(text) => self.screen.say(&format!("{text}  (clock {clock})")),
            Err(text) => self
                .screen
                .say(&format!("error: {}  (clock {clock})", printable(&text))),
        }
        true
    }

    fn history(&mut self, target: &str, count: &str) -> Result<String, String> {
        let limit: usize = if count.is_empty() {
            20
        } else {
            count
                .parse()
                .map_err(|_| "usage: /history [CHANNEL|@USER] [N]")?
        };
        let of = match target.strip_prefix('@') {
            Some(user) => Conversation::Direct(self.user.clone(), name(user)?),
            None if target.is_empty() => match &self.current {
                Some(c) => Conversation::Channel(c.clone()),
                None => return Err("join a channel first, or name one: /history CHANNEL".into()),
            },
            None => Conversation::Channel(name(target)?),
        };
        let query = HistoryQuery {
            of,
            limit: limit.clamp(1, palaver_proto::MAX_HISTORY),
            before: None,
            after: None,
            window: Default::default(),
        };
        let reply = self
            .conn
            .request(&Request::History { query })
            .map_err(err)?;
        let (events, more) = HistoryQuery::parse_reply(&reply).map_err(|e| e.to_string())?;
        let mut lines: Vec<String> = events
            .iter()
            .filter(|e| e.kind.message_topic().is_some())
            .map(show::event)
            .collect();
        lines.push(format!(
            "({} messages{})",
            events.len(),
            if more { "; older ones exist" } else { "" }
        ));
        Ok(lines.join("\n"))
    }

    /// Logs in to the account with `password`: the new session is used from now on.
    fn log_in(&mut self, password: &str) -> Result<(), String> {
        if password.is_empty() {
            return Err("usage: /login PASSWORD".into());
        }
        self.conn
            .login_with_password(&self.user, password)
            .map_err(err)?;
        self.session_changed();
        Ok(())
    }

    /// The session changed: the subscriber and the heartbeat take the new token.
    fn session_changed(&mut self) {
        let token = self.conn.token().map(str::to_owned);
        let _ = self.control.send(Control::Token(token.clone()));
        self.heartbeat = None;
        match Heartbeat::start(
            &self.ctx,
            &self.broker,
            self.conn.clock().clone(),
            self.user.clone(),
            token,
        ) {
            Ok(h) => self.heartbeat = Some(h),
            Err(e) => self.screen.say(&format!("presence is off: {e}")),
        }
    }

    /// Joins `channel`: subscribes first, then asks for its last posts, which the receiver
    /// shows before live ones (and nothing twice). Returns how many it shows.
    fn join(&mut self, channel: Name) -> Result<(usize, About), String> {
        let _ = self.control.send(Control::Subscribe(channel.to_string()));
        match self.conn.join(&self.user, &channel, JOIN_HISTORY) {
            Ok(joined) => {
                let n = joined.posts.len();
                let _ = self
                    .control
                    .send(Control::Joined(channel.clone(), joined.posts));
                self.current = Some(channel);
                Ok((n, joined.about))
            }
            Err(e) => {
                let _ = self.control.send(Control::Unsubscribe(channel.to_string()));
                let why = err(e);
                if why.contains("does not exist") {
                    Err(format!("{why}; /create {channel} makes it"))
                } else {
                    Err(why)
                }
            }
        }
    }

    /// The channel named, or the current one.
    fn room_or_current(&self, arg: &str) -> Result<Name, String> {
        if arg.is_empty() {
            self.current
                .clone()
                .ok_or_else(|| "not in a channel; name one".to_owned())
        } else {
            name(arg)
        }
    }

    fn post(&mut self, channel: &Name, text: &str) -> Result<String, String> {
        if text.is_empty() {
            return Err("usage: /post CHANNEL TEXT".into());
        }
        self.conn.publish(&self.user, channel, text).map_err(err)?;
        Ok(format!("posted to #{channel}"))
    }
}

fn name(s: &str) -> Result<Name, String> {
    Name::parse(s.trim_start_matches('#')).map_err(|e| e.to_string())
}

fn err(e: ClientError) -> String {
    e.to_string()
}

/// A span of seconds as people say it.
fn ago(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// A channel's topic, as the line client says it.
fn about_topic(channel: &Name, about: &About) -> String {
    match &about.topic {
        Some((topic, by)) => format!("topic of #{channel}: {} (set by {by})", printable(topic)),
        None => format!("#{channel} has no topic"),
    }
}
