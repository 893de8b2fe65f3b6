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
pub mod demo;
pub mod keys;
pub mod layout;
pub mod net;
pub mod text;
pub mod view;

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;

use app::{App, Effect, Net};

/// Runs the chat screen on the terminal until the person quits: `effects` carries out what
/// the state asks for; `news` brings what the network side learns.
///
/// # Errors
/// When the terminal cannot be set up or drawn on.
pub fn run_terminal(
    app: &mut App,
    mut effects: impl FnMut(Vec<Effect>),
    news: &mpsc::Receiver<Net>,
) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    execute!(std::io::stdout(), EnableMouseCapture)?;
    let result = (|| -> anyhow::Result<()> {
        loop {
            let size = terminal.size()?;
            app.size = (size.width, size.height);
            app.now = palaver_proto::now_secs();
            terminal.draw(|f| view::draw(f, app))?;
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
            }
            while let Ok(n) = news.try_recv() {
                effects(app.net(n));
            }
        }
    })();
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

/// `palaver chat --demo`: the screen on made-up data, with no cluster.
///
/// # Errors
/// When the terminal cannot be set up or drawn on.
pub fn demo() -> anyhow::Result<()> {
    let (w, h) = ratatui::crossterm::terminal::size().unwrap_or((100, 30));
    let mut app = demo::app((w, h));
    let (_tx, news) = mpsc::channel();
    let mut said = Vec::new();
    run_terminal(
        &mut app,
        |effects| {
            for e in effects {
                if let Effect::Post { text, .. } | Effect::Message { text, .. } = e {
                    said.push(text);
                }
            }
        },
        &news,
    )
}

/// `palaver chat`: logs in, then runs the screen with the network side on a thread of its own.
///
/// # Errors
/// When the login fails, or the terminal cannot be set up or drawn on.
pub fn run(opts: net::Options) -> anyhow::Result<()> {
    let me = opts.user.to_string();
    let session = net::Session::connect(opts)?;
    let (news_tx, news) = mpsc::channel();
    let (effects, worker) = session.spawn(news_tx);
    let mut app = App::new(&me);
    let result = run_terminal(
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
