//! The connect screen: name, password (never shown) and broker address. The name and the
//! addresses are remembered between runs (never the password), in
//! `$XDG_CONFIG_HOME/palaver/chat.json` (or `~/.config/palaver/chat.json`).

use std::path::PathBuf;

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use ratatui_textarea::{Input, Key, TextArea};

use crate::text::safe;

/// What the form asks for, filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    pub user: String,
    /// Empty: a name without a password.
    pub password: String,
    pub broker: String,
    pub sub: String,
}

/// What a key did to the form.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Still filling it in.
    Editing,
    Connect(Details),
    Quit,
}

pub struct Form {
    fields: [TextArea<'static>; 3],
    focus: usize,
    /// The subscriber endpoint, carried along (remembered, not asked for).
    sub: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

const LABELS: [&str; 3] = ["name", "password", "broker"];

impl Form {
    /// A form filled in with what is remembered, or with `defaults`.
    pub fn new(defaults: &Details) -> Form {
        let field = |text: &str| {
            let mut t = TextArea::new(vec![text.to_owned()]);
            t.set_cursor_line_style(Style::default());
            t.move_cursor(ratatui_textarea::CursorMove::End);
            t
        };
        let mut password = field(&defaults.password);
        password.set_mask_char('•');
        Form {
            fields: [field(&defaults.user), password, field(&defaults.broker)],
            focus: usize::from(!defaults.user.is_empty()),
            sub: defaults.sub.clone(),
            error: None,
        }
    }

    fn value(&self, i: usize) -> String {
        self.fields[i].lines().join("").trim().to_owned()
    }

    /// A key: Tab and the arrows move between fields, Enter connects (or moves on from an
    /// empty name), Esc or Ctrl+C quits; anything else edits the field.
    pub fn key(&mut self, input: Input) -> Outcome {
        match input.key {
            Key::Esc => Outcome::Quit,
            Key::Char('c') if input.ctrl => Outcome::Quit,
            Key::Tab | Key::Down => {
                self.focus = (self.focus + 1) % 3;
                Outcome::Editing
            }
            Key::Up => {
                self.focus = (self.focus + 2) % 3;
                Outcome::Editing
            }
            Key::Enter => {
                let user = self.value(0);
                if user.is_empty() {
                    self.focus = 0;
                    self.error = Some("a name, please".to_owned());
                    return Outcome::Editing;
                }
                Outcome::Connect(Details {
                    user,
                    password: self.fields[1].lines().join(""),
                    broker: self.value(2),
                    sub: self.sub.clone(),
                })
            }
            _ => {
                self.fields[self.focus].input(input);
                Outcome::Editing
            }
        }
    }

    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        let w = 56.min(area.width);
        let h = 11.min(area.height);
        let box_ = Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        );
        frame.render_widget(
            Block::default()
                .borders(Borders::ALL)
                .title(" palaver · connect "),
            box_,
        );
        for (i, label) in LABELS.iter().enumerate() {
            let y = box_.y + 2 + i as u16 * 2;
            if y >= box_.y + box_.height.saturating_sub(1) {
                break;
            }
            let style = if i == self.focus {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default().fg(Color::DarkGray)
            };
            frame.render_widget(
                Paragraph::new(Line::styled(format!("{label:>9} "), style)),
                Rect::new(box_.x + 1, y, 10, 1),
            );
            let field = Rect::new(box_.x + 11, y, box_.width.saturating_sub(13), 1);
            let mut t = self.fields[i].clone();
            if i != self.focus {
                t.set_cursor_style(Style::default());
            }
            frame.render_widget(&t, field);
        }
        let hint = match &self.error {
            Some(e) => Line::styled(safe(e).into_owned(), Style::default().fg(Color::Red)),
            None => Line::styled(
                "Tab: next field · Enter: connect · Esc: leave",
                Style::default().fg(Color::DarkGray),
            ),
        };
        let y = box_.y + box_.height.saturating_sub(2);
        frame.render_widget(
            Paragraph::new(hint),
            Rect::new(box_.x + 2, y, box_.width.saturating_sub(4), 1),
        );
    }
}

/// Where the name and addresses are remembered.
pub fn remembered_at() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("palaver").join("chat.json"))
}

/// `defaults` with what was remembered in the file at `path` over it (the password never is).
pub fn recall(path: &std::path::Path, defaults: &Details) -> Details {
    let mut d = defaults.clone();
    let Ok(text) = std::fs::read_to_string(path) else {
        return d;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return d;
    };
    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if d.user.is_empty() {
        d.user = get("user").unwrap_or_default();
    }
    d.broker = get("broker").unwrap_or(d.broker);
    d.sub = get("sub").unwrap_or(d.sub);
    d
}

/// Remembers the name and addresses of a session that connected.
///
/// # Errors
/// When the file cannot be written.
pub fn remember(path: &std::path::Path, d: &Details) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let v = serde_json::json!({"user": d.user, "broker": d.broker, "sub": d.sub});
    std::fs::write(path, format!("{v:#}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> Details {
        Details {
            user: String::new(),
            password: String::new(),
            broker: "tcp://127.0.0.1:5555".into(),
            sub: "tcp://127.0.0.1:5558".into(),
        }
    }

    fn typed(f: &mut Form, text: &str) {
        for ch in text.chars() {
            f.key(Input {
                key: Key::Char(ch),
                ..Default::default()
            });
        }
    }

    fn key(k: Key) -> Input {
        Input {
            key: k,
            ..Default::default()
        }
    }

    #[test]
    fn the_form_asks_for_a_name_then_connects_with_what_was_typed() {
        let mut f = Form::new(&details());
        assert_eq!(f.key(key(Key::Enter)), Outcome::Editing, "no name yet");
        assert!(f.error.is_some());
        typed(&mut f, "ana");
        f.key(key(Key::Tab));
        typed(&mut f, "correct horse");
        match f.key(key(Key::Enter)) {
            Outcome::Connect(d) => {
                assert_eq!(d.user, "ana");
                assert_eq!(d.password, "correct horse");
                assert_eq!(d.broker, "tcp://127.0.0.1:5555");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.key(key(Key::Esc)), Outcome::Quit);
    }

    #[test]
    fn the_name_and_addresses_are_remembered_but_never_the_password() {
        let dir = std::env::temp_dir().join(format!("palaver-chat-{}", std::process::id()));
        let path = dir.join("chat.json");
        let mut d = details();
        d.user = "ana".into();
        d.password = "secret".into();
        d.broker = "tcp://10.0.0.2:5555".into();
        remember(&path, &d).unwrap();
        let saved = std::fs::read_to_string(&path).unwrap();
        assert!(!saved.contains("secret"), "{saved}");
        let back = recall(&path, &details());
        assert_eq!(back.user, "ana");
        assert_eq!(back.broker, "tcp://10.0.0.2:5555");
        assert_eq!(back.password, "");
        // A garbled file is ignored.
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(recall(&path, &details()), details());
        let _ = std::fs::remove_dir_all(dir);
    }
}
