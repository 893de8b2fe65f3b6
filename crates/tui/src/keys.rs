//! Key bindings: what each key and mouse action does, in one table that the help screen shows
//! and the README repeats.

use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui_textarea::Input;

/// What a key or mouse action asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Quit,
    Help,
    /// Close what covers the chat view.
    Close,
    /// The channel browser.
    Browse,
    /// The n-th place of the sidebar (from 0).
    Goto(usize),
    Next,
    Previous,
    PageUp,
    PageDown,
    WheelUp,
    WheelDown,
    Click {
        column: u16,
        row: u16,
    },
    /// Enter: send the input line.
    Submit,
    ToggleBell,
    /// Anything else goes to the input line.
    Edit(Input),
}

/// The bindings, as the help screen lists them.
pub const BINDINGS: &[(&str, &str)] = &[
    ("Enter", "send the line (a message, or a /command)"),
    ("Alt+1…9", "go to the n-th room or conversation"),
    ("Ctrl+N / Ctrl+P", "next / previous room or conversation"),
    (
        "PageUp / PageDown",
        "scroll back (older history loads) / forward",
    ),
    (
        "mouse wheel",
        "scroll; click a name in the sidebar to open it",
    ),
    ("F2 or /channels", "browse channels and join one"),
    ("F1 or ? (empty line)", "this help"),
    (
        "Ctrl+G or /bell",
        "bell on private messages and mentions: on / off",
    ),
    ("Esc", "close help or the browser"),
    ("Ctrl+C or /quit", "leave"),
];

/// What `event` asks for; `input_empty` says whether the input line is empty (then `?` is
/// help rather than a character).
pub fn action(event: &Event, input_empty: bool) -> Option<Action> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => Some(key_action(*key, input_empty)),
        Event::Mouse(m) => mouse_action(*m),
        _ => None,
    }
}

fn key_action(key: KeyEvent, input_empty: bool) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    match key.code {
        KeyCode::Char('c') | KeyCode::Char('q') if ctrl => Action::Quit,
        KeyCode::Char('n') if ctrl => Action::Next,
        KeyCode::Char('p') if ctrl => Action::Previous,
        KeyCode::Char('g') if ctrl => Action::ToggleBell,
        KeyCode::Char(d @ '1'..='9') if alt => Action::Goto(d as usize - '1' as usize),
        KeyCode::Char('?') if input_empty && !alt && !ctrl => Action::Help,
        KeyCode::F(1) => Action::Help,
        KeyCode::F(2) => Action::Browse,
        KeyCode::Esc => Action::Close,
        KeyCode::Enter => Action::Submit,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        _ => Action::Edit(Input::from(key)),
    }
}

fn mouse_action(m: MouseEvent) -> Option<Action> {
    match m.kind {
        MouseEventKind::ScrollUp => Some(Action::WheelUp),
        MouseEventKind::ScrollDown => Some(Action::WheelDown),
        MouseEventKind::Down(MouseButton::Left) => Some(Action::Click {
            column: m.column,
            row: m.row,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn each_binding_does_what_the_help_says() {
        let none = KeyModifiers::NONE;
        let cases = [
            (key(KeyCode::Char('c'), KeyModifiers::CONTROL), Action::Quit),
            (key(KeyCode::Char('n'), KeyModifiers::CONTROL), Action::Next),
            (
                key(KeyCode::Char('p'), KeyModifiers::CONTROL),
                Action::Previous,
            ),
            (
                key(KeyCode::Char('g'), KeyModifiers::CONTROL),
                Action::ToggleBell,
            ),
            (key(KeyCode::Char('1'), KeyModifiers::ALT), Action::Goto(0)),
            (key(KeyCode::Char('9'), KeyModifiers::ALT), Action::Goto(8)),
            (key(KeyCode::F(1), none), Action::Help),
            (key(KeyCode::F(2), none), Action::Browse),
            (key(KeyCode::Esc, none), Action::Close),
            (key(KeyCode::Enter, none), Action::Submit),
            (key(KeyCode::PageUp, none), Action::PageUp),
            (key(KeyCode::PageDown, none), Action::PageDown),
        ];
        for (event, want) in cases {
            assert_eq!(action(&event, true), Some(want), "{event:?}");
        }
    }

    #[test]
    fn a_question_mark_is_help_only_on_an_empty_line() {
        let q = key(KeyCode::Char('?'), KeyModifiers::NONE);
        assert_eq!(action(&q, true), Some(Action::Help));
        assert!(matches!(action(&q, false), Some(Action::Edit(_))));
        let a = key(KeyCode::Char('a'), KeyModifiers::NONE);
        assert!(matches!(action(&a, true), Some(Action::Edit(_))));
    }

    #[test]
    fn the_mouse_scrolls_and_clicks() {
        let m = |kind| {
            Event::Mouse(MouseEvent {
                kind,
                column: 3,
                row: 4,
                modifiers: KeyModifiers::NONE,
            })
        };
        assert_eq!(
            action(&m(MouseEventKind::ScrollUp), true),
            Some(Action::WheelUp)
        );
        assert_eq!(
            action(&m(MouseEventKind::ScrollDown), true),
            Some(Action::WheelDown)
        );
        assert_eq!(
            action(&m(MouseEventKind::Down(MouseButton::Left)), true),
            Some(Action::Click { column: 3, row: 4 })
        );
        assert_eq!(action(&m(MouseEventKind::Moved), true), None);
    }
}
