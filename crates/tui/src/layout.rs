//! Where each part of the screen goes for a terminal size, and the rows a buffer takes at a
//! width: shared by the view, which draws them, and the state, which pages and takes clicks
//! by them.
//!
//! ```text
//! ┌ rooms ─────┐ #den · 3 members                        ┌ members ──┐
//! │ #den     2 │ 12:01 ana: hello                          │ ● ana     │
//! │ bob        │ ──────────── new messages ──────────────  │   bob     │
//! │            │ 12:02 bob: hi                             │           │
//! └────────────┘ ───────────────────────────────────────── └───────────┘
//!                > input line
//!  s2 answered · coordinator s3 · clock 120 · 3 ms · online
//! ```

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::buffer::{Buffer, Entry, Message, Receipt};
use crate::text::{safe, width, wrap};

/// Narrower than this, the sidebar is hidden.
pub const SIDEBAR_FROM: u16 = 60;
/// Narrower than this, the member list is hidden.
pub const MEMBERS_FROM: u16 = 100;
const SIDEBAR_WIDTH: u16 = 22;
const MEMBERS_WIDTH: u16 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub sidebar: Option<Rect>,
    /// The line above the chat: the place's name.
    pub title: Rect,
    pub chat: Rect,
    pub members: Option<Rect>,
    /// The input line, with the rule above it.
    pub input: Rect,
    pub status: Rect,
}

/// The parts of a terminal of `size` (columns, rows); `in_room` when a room is shown (it
/// gets a member list).
pub fn areas(size: (u16, u16), in_room: bool) -> Areas {
    let (w, h) = (size.0.max(1), size.1.max(4));
    let status = Rect::new(0, h - 1, w, 1);
    let input = Rect::new(0, h - 3, w, 2);
    let body_h = h - 3;
    let sidebar = (w >= SIDEBAR_FROM).then(|| Rect::new(0, 0, SIDEBAR_WIDTH, body_h));
    let members = (w >= MEMBERS_FROM && in_room)
        .then(|| Rect::new(w - MEMBERS_WIDTH, 0, MEMBERS_WIDTH, body_h));
    let left = sidebar.map_or(0, |s| s.width + 1);
    let right = members.map_or(w, |m| m.x.saturating_sub(1));
    let chat_w = right.saturating_sub(left).max(1);
    let title = Rect::new(left, 0, chat_w, 1);
    let chat = Rect::new(left, 1, chat_w, body_h.saturating_sub(1));
    Areas {
        sidebar,
        title,
        chat,
        members,
        input,
        status,
    }
}

/// A stable colour for a name: the same person has the same colour everywhere, every run.
pub fn colour(name: &str) -> Color {
    const PALETTE: [Color; 10] = [
        Color::Cyan,
        Color::Green,
        Color::Yellow,
        Color::Magenta,
        Color::LightBlue,
        Color::LightGreen,
        Color::LightMagenta,
        Color::LightCyan,
        Color::LightYellow,
        Color::LightRed,
    ];
    // FNV-1a: the std hasher is seeded per process, and a colour must not change between runs.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    PALETTE[(h % PALETTE.len() as u64) as usize]
}

/// `secs` as the chat shows times: `HH:MM`.
pub fn hhmm(secs: f64) -> String {
    palaver_proto::format_clock_time(secs)[..5].to_owned()
}

/// The rows `b` takes at `cols` columns as `me` sees them, oldest first: messages wrapped
/// under their header, notices, and the "new messages" line.
pub fn rows(me: &str, b: &Buffer, cols: u16) -> Vec<Line<'static>> {
    let cols = cols as usize;
    let mut out = Vec::new();
    if b.more_before {
        out.push(Line::styled(
            if b.loading {
                "… loading older messages"
            } else {
                "↑ older messages: PageUp"
            },
            Style::default().fg(Color::DarkGray),
        ));
    }
    for (i, e) in b.entries().iter().enumerate() {
        if b.new_line_before(i, me) {
            let label = " new messages ";
            let side = cols.saturating_sub(width(label)) / 2;
            let rule = format!(
                "{}{label}{}",
                "─".repeat(side),
                "─".repeat(cols.saturating_sub(side + width(label)))
            );
            out.push(Line::styled(rule, Style::default().fg(Color::Red)));
        }
        match e {
            Entry::Message(m) => message_rows(me, m, cols, &mut out),
            Entry::Notice { at, text, .. } => {
                let head = format!("{} -- ", hhmm(*at));
                let style = Style::default().fg(Color::DarkGray);
                for (k, row) in wrap(&safe(text), cols.saturating_sub(width(&head)))
                    .into_iter()
                    .enumerate()
                {
                    let lead = if k == 0 {
                        head.clone()
                    } else {
                        " ".repeat(width(&head))
                    };
                    out.push(Line::styled(format!("{lead}{row}"), style));
                }
            }
        }
    }
    out
}

fn message_rows(me: &str, m: &Message, cols: usize, out: &mut Vec<Line<'static>>) {
    let time = format!("{} ", hhmm(m.at));
    let name = safe(&m.from).into_owned();
    let head = width(&time) + width(&name) + 2;
    let body: String = if m.sealed {
        "(a private message; opening…)".to_owned()
    } else {
        safe(&m.text).into_owned()
    };
    let text_cols = cols.saturating_sub(head).max(8);
    let mut rows = wrap(&body, text_cols);
    let mark = m.receipt.map(|r| match r {
        Receipt::Sent => (" ✓ sent", Color::DarkGray),
        Receipt::Delivered => (" ✓✓ delivered", Color::DarkGray),
        Receipt::Read => (" ✓✓ read", Color::LightBlue),
    });
    let last = rows.len() - 1;
    let mentioned = m.from != me && m.text.contains(me);
    let text_style = if mentioned {
        Style::default().add_modifier(Modifier::BOLD)
    } else if m.sealed {
        Style::default().add_modifier(Modifier::ITALIC)
    } else {
        Style::default()
    };
    let mut mark_row = None;
    if let Some((text, colour)) = mark {
        if width(&rows[last]) + width(text) > text_cols {
            rows.push(String::new());
        }
        mark_row = Some((
            rows.len() - 1,
            Span::styled(text, Style::default().fg(colour)),
        ));
    }
    for (k, row) in rows.into_iter().enumerate() {
        let mut spans = if k == 0 {
            vec![
                Span::styled(time.clone(), Style::default().fg(Color::DarkGray)),
                Span::styled(
                    name.clone(),
                    Style::default()
                        .fg(colour(&m.from))
                        .add_modifier(Modifier::BOLD),
                ),
                Span::raw(": "),
            ]
        } else {
            vec![Span::raw(" ".repeat(head))]
        };
        spans.push(Span::styled(row, text_style));
        if let Some((at, span)) = &mark_row {
            if *at == k {
                spans.push(span.clone());
            }
        }
        out.push(Line::from(spans));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_colour() {
        assert_eq!(colour("ana"), colour("ana"));
        let distinct: std::collections::HashSet<_> = ["ana", "bob", "cy", "dee", "eve", "fay"]
            .iter()
            .map(|n| colour(n))
            .collect();
        assert!(distinct.len() >= 3, "names spread over the palette");
    }

    #[test]
    fn narrow_terminals_hide_the_sidebar_and_the_members() {
        let wide = areas((120, 30), false);
        assert!(wide.sidebar.is_some());
        assert!(wide.members.is_none(), "no room is shown");
        assert!(areas((120, 30), true).members.is_some());
        let narrow = areas((40, 20), true);
        assert!(narrow.members.is_none());
        assert!(narrow.sidebar.is_none());
        assert_eq!(narrow.chat.width, 40);
        assert_eq!(narrow.status.y, 19);
    }
}
