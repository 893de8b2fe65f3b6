//! `palaver client`: chat from a terminal, or from a script, one command per line.
//!
//! A receiver thread owns the subscription socket and prints what arrives; the main thread reads
//! commands and sends requests. When stdin is not a terminal, no prompts are printed, so the
//! client can be driven by a pipe.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use palaver_client::{ClientError, Connection, SharedClock, Subscriber};
use palaver_proto::{
    format_clock_time, printable, Conversation, EventKind, HistoryQuery, Name, Request,
};

use crate::show;

pub struct Options {
    pub broker: String,
    pub sub: String,
    pub user: Option<Name>,
}

const HELP: &str = "\
commands:
  /users                 who is registered
  /channels              which channels exist
  /create CHANNEL        create a channel and join it
  /join CHANNEL          follow a channel; plain lines then go there
  /leave [CHANNEL]       stop following a channel
  /post CHANNEL TEXT     post to a channel
  /msg USER TEXT         send a private message
    /history [CHANNEL|@USER] [N]
                         the last N (20) messages of a channel (default: the current
                         one) or of your conversation with a user
  /wait SECONDS          pause (scripts: let publications arrive)
  /help                  this text
  /quit                  leave
  TEXT                   post to the current channel";

enum Control {
    Subscribe(String),
    Unsubscribe(String),
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
    conn.login(&user)
        .with_context(|| format!("cannot log in as {user}"))?;
    let mut sub = Subscriber::open(&ctx, &opts.sub, clock.clone())?;
    // What arrives while cut off from the proxy is filled in from `history` on reconnecting.
    sub.repair_with(Connection::open(&ctx, &opts.broker, clock.clone())?)?;
    sub.subscribe(user.as_str())?;
    let (control, control_rx) = mpsc::channel();
    let receiver = {
        let screen = screen.clone();
        std::thread::spawn(move || receive(sub, &control_rx, &screen))
    };
    screen.say(&format!(
        "logged in as {user} (clock {}); /help lists the commands",
        clock.now()
    ));

    let mut session = Session {
        user,
        conn,
        control,
        current: None,
        screen,
    };
    for line in lines {
        let line = line?;
        if !session.command(line.trim()) {
            break;
        }
    }
    let _ = session.control.send(Control::Stop);
    let _ = receiver.join();
    Ok(())
}

fn receive(mut sub: Subscriber, control: &mpsc::Receiver<Control>, screen: &Screen) {
    loop {
        loop {
            match control.try_recv() {
                Ok(Control::Subscribe(t)) => drop(sub.subscribe(&t)),
                Ok(Control::Unsubscribe(t)) => drop(sub.unsubscribe(&t)),
                Ok(Control::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        match sub.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(r)) => screen.say(&show::line(&r)),
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
                self.conn.create_channel(&c).map_err(err)?;
                self.join(c.clone());
                Ok(format!("created #{c}; you are in it"))
            }),
            "join" => name(arg).map(|c| {
                self.join(c.clone());
                format!("following #{c}; plain lines go there")
            }),
            "leave" => {
                let target = if arg.is_empty() {
                    self.current
                        .clone()
                        .ok_or_else(|| "not in a channel".to_owned())
                } else {
                    name(arg)
                };
                target.map(|c| {
                    let _ = self.control.send(Control::Unsubscribe(c.to_string()));
                    if self.current.as_ref() == Some(&c) {
                        self.current = None;
                    }
                    format!("left #{c}")
                })
            }
            "post" => name(arg).and_then(|c| self.post(&c, text)),
            "msg" => name(arg).and_then(|dst| {
                if text.is_empty() {
                    return Err("usage: /msg USER TEXT".into());
                }
                self.conn.message(&self.user, &dst, text).map_err(err)?;
                Ok(format!("sent to {dst}"))
            }),
            "history" => self.history(arg, text),
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
        };
        let reply = self.conn.request(&Request::History(query)).map_err(err)?;
        let (events, more) = HistoryQuery::parse_reply(&reply).map_err(|e| e.to_string())?;
        let mut lines = Vec::with_capacity(events.len() + 1);
        for e in &events {
            let when = format_clock_time(e.timestamp);
            let p = |s: &str| printable(s).into_owned();
            lines.push(match &e.kind {
                EventKind::Post {
                    user,
                    channel,
                    message,
                } => format!(
                    "{when} #{} <{}> {}",
                    p(channel.as_str()),
                    p(user.as_str()),
                    p(message)
                ),
                EventKind::Direct { src, dst, message } => {
                    format!(
                        "{when} *{} → {}* {}",
                        p(src.as_str()),
                        p(dst.as_str()),
                        p(message)
                    )
                }
                EventKind::Login { .. } | EventKind::Channel { .. } => continue,
            });
        }
        lines.push(format!(
            "({} messages{})",
            events.len(),
            if more { "; older ones exist" } else { "" }
        ));
        Ok(lines.join("\n"))
    }

    fn join(&mut self, channel: Name) {
        let _ = self.control.send(Control::Subscribe(channel.to_string()));
        self.current = Some(channel);
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
