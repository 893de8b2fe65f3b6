//! `palaver chat`: a full-screen chat client on the client core.
//!
//! ```text
//!  terminal ──keys, mouse──▶ keys::action ──▶ App ──Effect──▶ net thread (client core:
//!      ▲                                       ▲               requests, subscriber, inbox)
//!      └────────── view::draw ◀────────────────┴────── Net ◀──────┘
//! ```
//!
//! The state (`app.rs`, `buffer.rs`) is plain data changed by keys and by news from the
//! network thread, so it is tested without a terminal or a cluster; the view draws it
//! (`view.rs`, `layout.rs`), tested as snapshots of ratatui's `TestBackend`. The network thread
//! (`net.rs`) owns every socket, so the input stays responsive however slow the cluster is.

pub mod app;
pub mod buffer;
pub mod connect;
pub mod demo;
pub mod keys;
pub mod layout;
pub mod net;
pub mod text;
pub mod view;

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;

use app::{App, Effect, Net};

/// Runs `body` with the terminal in full-screen mode (raw, alternate screen, mouse), and puts
/// it back however `body` ends.
fn full_screen<T>(
    body: impl FnOnce(&mut ratatui::DefaultTerminal) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut terminal = ratatui::init();
    let _ = execute!(std::io::stdout(), EnableMouseCapture);
    let result = body(&mut terminal);
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

/// Runs the chat screen until the person quits: `effects` carries out what the state asks
/// for; `news` brings what the network side learns.
///
/// # Errors
/// When the terminal cannot be drawn on.
fn chat_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    mut effects: impl FnMut(Vec<Effect>),
    news: &mpsc::Receiver<Net>,
) -> anyhow::Result<()> {
    // Drawn when something changed, and once a second for the times shown.
    let mut drawn: Option<Instant> = None;
    let mut changed = true;
    loop {
        if changed || drawn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let size = terminal.size()?;
            app.size = (size.width, size.height);
            app.now = palaver_proto::now_secs();
            terminal.draw(|f| view::draw(f, app))?;
            drawn = Some(Instant::now());
        }
        changed = false;
        if std::mem::take(&mut app.bell) {
            let mut out = std::io::stdout();
            let _ = out.write_all(b"\x07");
            let _ = out.flush();
        }
        if app.quit {
            return Ok(());
        }
        // Keys first, then whatever the network side said meanwhile.
        if event::poll(Duration::from_millis(50))? {
            let ev = event::read()?;
            if let Event::Resize(w, h) = ev {
                app.size = (w, h);
            }
            let empty = app.input.is_empty();
            if let Some(action) = keys::action(&ev, empty) {
                effects(app.act(action));
            }
            changed = true;
        }
        while let Ok(n) = news.try_recv() {
            effects(app.net(n));
            changed = true;
        }
    }
}

/// `palaver chat --demo`: the screen on made-up data, with no cluster.
///
/// # Errors
/// When the terminal cannot be set up or drawn on.
pub fn demo() -> anyhow::Result<()> {
    let (w, h) = ratatui::crossterm::terminal::size().unwrap_or((100, 30));
    let mut app = demo::app((w, h));
    let (_tx, news) = mpsc::channel();
    full_screen(|t| chat_loop(t, &mut app, drop, &news))
}

/// How `palaver chat` starts: with a name, it logs in at once; without one, the connect
/// screen asks (with the name and addresses of the last session filled in).
pub struct Start {
    pub user: Option<palaver_proto::Name>,
    pub password: Option<String>,
    pub broker: String,
    pub sub: String,
    pub device: String,
}

/// `palaver chat`: logs in (through the connect screen when no name is given), then runs the
/// screen with the network side on a thread of its own.
///
/// # Errors
/// When the login fails (with a name given), or the terminal cannot be set up or drawn on.
pub fn run(start: Start) -> anyhow::Result<()> {
    let options = |user, password, broker, sub| net::Options {
        broker,
        sub,
        user,
        password,
        device: start.device.clone(),
    };
    if let Some(user) = start.user.clone() {
        let session = net::Session::connect(options(
            user.clone(),
            start.password.clone(),
            start.broker.clone(),
            start.sub.clone(),
        ))?;
        return full_screen(|t| chat(t, session, user.as_str()));
    }
    let saved = connect::remembered_at();
    let defaults = connect::Details {
        user: String::new(),
        password: start.password.clone().unwrap_or_default(),
        broker: start.broker.clone(),
        sub: start.sub.clone(),
    };
    let defaults = match &saved {
        Some(p) => connect::recall(p, &defaults),
        None => defaults,
    };
    full_screen(|t| {
        let mut form = connect::Form::new(&defaults);
        loop {
            t.draw(|f| form.draw(f))?;
            if !event::poll(Duration::from_millis(200))? {
                continue;
            }
            let Event::Key(key) = event::read()? else {
                continue;
            };
            let d = match form.key(ratatui_textarea::Input::from(key)) {
                connect::Outcome::Editing => continue,
                connect::Outcome::Quit => return Ok(()),
                connect::Outcome::Connect(d) => d,
            };
            let user = match palaver_proto::Name::parse(&d.user) {
                Ok(u) => u,
                Err(e) => {
                    form.error = Some(e.to_string());
                    continue;
                }
            };
            form.error = Some("connecting…".to_owned());
            t.draw(|f| form.draw(f))?;
            let password = Some(d.password.clone()).filter(|p| !p.is_empty());
            match net::Session::connect(options(
                user.clone(),
                password,
                d.broker.clone(),
                d.sub.clone(),
            )) {
                Ok(session) => {
                    if let Some(p) = &saved {
                        let _ = connect::remember(p, &d);
                    }
                    return chat(t, session, user.as_str());
                }
                Err(e) => form.error = Some(format!("{e:#}")),
            }
        }
    })
}

/// The chat screen for a connected session, until the person quits.
fn chat(
    terminal: &mut ratatui::DefaultTerminal,
    session: net::Session,
    me: &str,
) -> anyhow::Result<()> {
    let (news_tx, news) = mpsc::channel();
    let (effects, worker) = session.spawn(news_tx);
    let mut app = App::new(me);
    let result = chat_loop(
        terminal,
        &mut app,
        |fx| {
            for e in fx {
                let _ = effects.send(e);
            }
        },
        &news,
    );
    // The network side confirms what this device took, then stops.
    let _ = effects.send(Effect::Quit);
    let _ = worker.join();
    result
}
