//! The chat screen's state, driven by made-up keys and news: unread counts, reading as you
//! read, scrollback paging into older history, what Enter sends, the bell, the sidebar.

use palaver_proto::{Event, EventKind, MessageKind, Name, Place};
use palaver_tui::app::{App, Effect, Net};
use palaver_tui::demo;
use palaver_tui::keys::Action;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn post(seq: u64, user: &str, channel: &str, text: &str) -> Event {
    Event {
        origin: "s1".into(),
        seq,
        lamport: 100 + seq,
        timestamp: demo::NOON + seq as f64,
        kind: EventKind::Message(MessageKind::Post {
            user: name(user),
            channel: name(channel),
            message: text.into(),
        }),
        request: None,
    }
}

fn direct(seq: u64, src: &str, dst: &str) -> Event {
    Event {
        origin: "s2".into(),
        seq,
        lamport: 100 + seq,
        timestamp: demo::NOON + seq as f64,
        kind: EventKind::Message(MessageKind::Direct {
            src: name(src),
            dst: name(dst),
            message: "psst".into(),
        }),
        request: None,
    }
}

fn typed(app: &mut App, text: &str) -> Vec<Effect> {
    for ch in text.chars() {
        app.act(Action::Edit(ratatui_textarea::Input {
            key: ratatui_textarea::Key::Char(ch),
            ..Default::default()
        }));
    }
    app.act(Action::Submit)
}

fn unread(app: &App, title: &str) -> u64 {
    app.buffers
        .iter()
        .find(|b| b.title() == title)
        .unwrap()
        .unread
}

#[test]
fn messages_elsewhere_count_as_unread_and_the_shown_room_is_read_as_it_arrives() {
    let mut app = demo::app((100, 30));
    let before = unread(&app, "#general");
    assert!(app
        .net(Net::Message {
            event: post(50, "eve", "general", "news"),
            away: false
        })
        .is_empty());
    assert_eq!(unread(&app, "#general"), before + 1);
    // The same message again (from the inbox, say): counted once.
    app.net(Net::Message {
        event: post(50, "eve", "general", "news"),
        away: true,
    });
    assert_eq!(unread(&app, "#general"), before + 1);
    // In the room shown, followed to its end: the marker moves to it at once.
    let fx = app.net(Net::Message {
        event: post(51, "bob", "den", "hi"),
        away: false,
    });
    assert!(
        matches!(&fx[..], [Effect::Read { id }] if id.to_string() == "s1:51"),
        "{fx:?}"
    );
    assert_eq!(unread(&app, "#den"), 0);
    // Opening general reads it too.
    let fx = app.open(&Place::Channel(name("general")));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Read { .. })),
        "{fx:?}"
    );
    assert_eq!(unread(&app, "#general"), 0);
}

#[test]
fn scrolled_back_nothing_is_marked_read_and_the_top_asks_for_older_history_once() {
    let mut app = demo::app((60, 12));
    app.buffers.iter_mut().for_each(|b| b.more_before = true);
    let mut asked = Vec::new();
    for _ in 0..20 {
        asked.extend(app.act(Action::PageUp));
    }
    let history: Vec<_> = asked
        .iter()
        .filter(|e| matches!(e, Effect::History { .. }))
        .collect();
    assert_eq!(history.len(), 1, "{asked:?}");
    match history[0] {
        Effect::History { place, before } => {
            assert_eq!(*place, Place::Channel(name("den")));
            assert_eq!(before.as_ref(), app.shown().unwrap().first_position());
        }
        _ => unreachable!(),
    }
    // A new message while scrolled back counts as unread, and is not marked read.
    let fx = app.net(Net::Message {
        event: post(60, "bob", "den", "below"),
        away: false,
    });
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(unread(&app, "#den"), 1);
    // The older page arrives; back at the bottom, the marker moves.
    app.net(Net::History {
        place: Place::Channel(name("den")),
        events: vec![post(0, "cy", "den", "very old")],
        more: false,
    });
    assert!(!app.shown().unwrap().loading);
    let mut down = Vec::new();
    for _ in 0..30 {
        down.extend(app.act(Action::PageDown));
    }
    assert!(
        down.iter().any(|e| matches!(e, Effect::Read { .. })),
        "{down:?}"
    );
}

#[test]
fn enter_posts_to_the_room_shown_or_runs_a_command() {
    let mut app = demo::app((100, 30));
    assert_eq!(
        typed(&mut app, "hello"),
        vec![Effect::Post {
            channel: name("den"),
            text: "hello".into()
        }]
    );
    assert_eq!(
        typed(&mut app, "/join #rust"),
        vec![Effect::Join(name("rust"))]
    );
    assert_eq!(typed(&mut app, "/leave"), vec![Effect::Leave(name("den"))]);
    let fx = typed(&mut app, "/msg cy are you there?");
    assert!(
        fx.contains(&Effect::Message {
            to: name("cy"),
            text: "are you there?".into()
        }),
        "{fx:?}"
    );
    assert_eq!(app.shown().unwrap().place, Place::With(name("cy")));
    assert_eq!(
        typed(&mut app, "/unread"),
        vec![Effect::Command("/unread".into())]
    );
    assert!(
        typed(&mut app, "/join no!pe").is_empty(),
        "a bad name is refused here"
    );
    assert!(app.input.is_empty(), "the line is cleared after sending");
    assert_eq!(typed(&mut app, "/quit"), vec![Effect::Quit]);
    assert!(app.quit);
}

#[test]
fn the_bell_rings_for_a_private_message_elsewhere_unless_turned_off() {
    let mut app = demo::app((100, 30));
    app.net(Net::Message {
        event: direct(70, "eve", "ana"),
        away: false,
    });
    assert!(std::mem::take(&mut app.bell));
    assert!(app
        .buffers
        .iter()
        .any(|b| b.title() == "eve" && b.highlight));
    app.act(Action::ToggleBell);
    app.net(Net::Message {
        event: direct(71, "eve", "ana"),
        away: false,
    });
    assert!(!app.bell);
}

#[test]
fn alt_numbers_ctrl_n_and_clicks_follow_the_sidebar_order() {
    let mut app = demo::app((100, 30));
    let titles = |app: &App| {
        app.order()
            .iter()
            .map(|&i| app.buffers[i].title())
            .collect::<Vec<_>>()
    };
    let order = titles(&app);
    app.act(Action::Goto(1));
    assert_eq!(app.shown().unwrap().title(), order[1]);
    app.act(Action::Next);
    assert_eq!(app.shown().unwrap().title(), order[2]);
    app.act(Action::Next);
    assert_eq!(app.shown().unwrap().title(), order[0], "wraps around");
    app.act(Action::Previous);
    assert_eq!(app.shown().unwrap().title(), order[2]);
    // The first row inside the sidebar's border is the first place.
    app.act(Action::Click { column: 3, row: 1 });
    assert_eq!(app.shown().unwrap().title(), order[0]);
    // A click outside the sidebar changes nothing.
    app.act(Action::Click { column: 50, row: 1 });
    assert_eq!(app.shown().unwrap().title(), order[0]);
}

#[test]
fn receipts_and_a_marker_moved_on_another_device_reach_the_buffers() {
    let mut app = demo::app((100, 30));
    app.net(Net::Receipt {
        reader: "bob".into(),
        upto: "s2:10".into(),
        state: palaver_tui::buffer::Receipt::Read,
    });
    let bob = app.buffers.iter().find(|b| b.title() == "bob").unwrap();
    let states: Vec<_> = bob
        .entries()
        .iter()
        .filter_map(|e| match e {
            palaver_tui::buffer::Entry::Message(m) if m.from == "ana" => m.receipt,
            _ => None,
        })
        .collect();
    assert!(
        states
            .iter()
            .all(|s| *s == palaver_tui::buffer::Receipt::Read),
        "{states:?}"
    );
    // general has 2 unread; another device of ana's read it all.
    app.net(Net::Marker {
        place: Place::Channel(name("general")),
        upto: "s1:12".into(),
    });
    assert_eq!(unread(&app, "#general"), 0);
}

#[test]
fn someone_joining_the_room_shown_reads_its_members_again() {
    let mut app = demo::app((100, 30));
    assert_eq!(
        app.net(Net::MembersChanged(name("den"))),
        vec![Effect::Members(name("den"))]
    );
    // Not shown: forgotten, read again on opening.
    assert!(app.net(Net::MembersChanged(name("general"))).is_empty());
    let fx = app.open(&Place::Channel(name("general")));
    assert!(fx.contains(&Effect::Members(name("general"))), "{fx:?}");
}
