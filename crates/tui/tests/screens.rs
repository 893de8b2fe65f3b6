//! Every screen, drawn into ratatui's `TestBackend` and compared with its snapshot
//! (`tests/snapshots/`; `cargo insta review` after an intended change).

use palaver_proto::{Name, Place};
use palaver_tui::app::{App, Net, Overlay};
use palaver_tui::demo;
use palaver_tui::keys::Action;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn screen(app: &App) -> String {
    let (w, h) = app.size;
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
    t.draw(|f| palaver_tui::view::draw(f, app)).expect("drawn");
    t.backend().to_string()
}

fn place(s: &str) -> Place {
    match s.strip_prefix('#') {
        Some(c) => Place::Channel(Name::parse(c).unwrap()),
        None => Place::With(Name::parse(s).unwrap()),
    }
}

#[test]
fn a_room_with_the_sidebar_members_and_the_new_messages_line() {
    let app = demo::app((110, 30));
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn a_narrow_terminal_hides_the_sidebar_and_wraps_long_messages() {
    let app = demo::app((50, 24));
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn a_conversation_shows_the_receipts_of_your_own_messages() {
    let mut app = demo::app((90, 20));
    app.open(&place("bob"));
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn the_help_screen_lists_keys_and_commands() {
    let mut app = demo::app((100, 36));
    app.act(Action::Help);
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn the_channel_browser_filters_as_you_type() {
    let mut app = demo::app((100, 30));
    app.act(Action::Browse);
    app.net(Net::Channels(
        ["den", "general", "release", "random", "rust"]
            .map(String::from)
            .to_vec(),
    ));
    app.act(Action::Edit(ratatui_textarea::Input {
        key: ratatui_textarea::Key::Char('r'),
        ..Default::default()
    }));
    app.act(Action::Next);
    assert!(matches!(&app.overlay, Overlay::Browser { selected: 1, .. }));
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn the_session_log_and_a_reconnecting_status_bar() {
    let mut app = App::new("ana");
    app.size = (80, 12);
    app.now = demo::NOON;
    app.net(Net::Info("logged in as ana".into()));
    app.net(Net::Link(palaver_tui::app::Link::Online));
    app.net(Net::Link(palaver_tui::app::Link::Reconnecting {
        since: demo::NOON,
    }));
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn scrolled_back_the_view_says_how_much_lies_below() {
    let mut app = demo::app((70, 14));
    app.act(Action::PageUp);
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn the_connect_screen_hides_the_password() {
    use palaver_tui::connect::{Details, Form};
    let mut form = Form::new(&Details {
        user: "ana".into(),
        password: String::new(),
        broker: "tcp://127.0.0.1:5555".into(),
        sub: "tcp://127.0.0.1:5558".into(),
    });
    for ch in "hunter2".chars() {
        form.key(ratatui_textarea::Input {
            key: ratatui_textarea::Key::Char(ch),
            ..Default::default()
        });
    }
    let mut t = Terminal::new(TestBackend::new(70, 15)).expect("a test terminal");
    t.draw(|f| form.draw(f)).expect("drawn");
    let shown = t.backend().to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    insta::assert_snapshot!(shown);
}
