//! Drawing the chat screen from the state as it stands (see `layout.rs` for where each part
//! goes). Nothing here changes the state.

use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::app::{browser_matches, App, Link, Overlay};
use crate::keys::BINDINGS;
use crate::layout::{self, areas, colour, hhmm};
use crate::text::{fit, safe, width, wrap};
use palaver_proto::Place;

/// The slash commands, as the help screen lists them.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/join ROOM", "join a room: its last posts, then live ones"),
    (
        "/create ROOM",
        "create a room (yours to delete) and join it",
    ),
    ("/leave [ROOM]", "leave a room (default: the one shown)"),
    ("/msg NAME [TEXT]", "open a conversation (and send TEXT)"),
    (
        "/members, /topic [TEXT]",
        "who is in the room; its topic (- clears it)",
    ),
    ("/delete ROOM", "delete a room you created, on every server"),
    ("/unread", "what waits after your read markers"),
    (
        "/receipts ID | on | off",
        "who read your message; your own receipts",
    ),
    ("/online, /users", "who is online; who is registered"),
    (
        "/post ROOM TEXT, /rooms",
        "post without opening; the rooms you are in",
    ),
    (
        "/register PW, /login PW",
        "your account; /logout ends the session",
    ),
    (
        "/password OLD NEW",
        "change it; /unregister PW closes it for good",
    ),
    ("/bell", "the bell on private messages and mentions"),
    ("/quit", "leave"),
];

pub fn draw(frame: &mut Frame, app: &App) {
    let size = frame.area();
    let a = areas((size.width, size.height), app.in_room());
    if let Some(side) = a.sidebar {
        sidebar(frame, app, side);
    }
    title(frame, app, a.title);
    chat(frame, app, a.chat);
    if let Some(m) = a.members {
        members(frame, app, m);
    }
    input(frame, app, a.input);
    status(frame, app, a.status);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help(frame, size),
        Overlay::Browser {
            channels,
            filter,
            selected,
        } => browser(frame, size, channels, filter, *selected),
    }
}

fn sidebar(frame: &mut Frame, app: &App, area: Rect) {
    let inner_w = area.width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    for (n, &i) in app.order().iter().enumerate() {
        let b = &app.buffers[i];
        let key = if n < 9 {
            format!("{} ", n + 1)
        } else {
            "  ".to_owned()
        };
        let count = if b.unread > 0 {
            format!(" {}", b.unread)
        } else {
            String::new()
        };
        let room = inner_w.saturating_sub(width(&key) + width(&count));
        let name = fit(&safe(&b.title()), room);
        let pad = " ".repeat(room.saturating_sub(width(&name)));
        let mut style = Style::default();
        if b.unread > 0 {
            style = style.add_modifier(Modifier::BOLD);
        }
        if app.current == Some(i) {
            style = style.add_modifier(Modifier::REVERSED);
        }
        let count_style = if b.highlight {
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Cyan)
        };
        lines.push(Line::from(vec![
            Span::styled(key, Style::default().fg(Color::DarkGray)),
            Span::styled(format!("{name}{pad}"), style),
            Span::styled(count, count_style),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            "/join a room",
            Style::default().fg(Color::DarkGray),
        ));
    }
    let block = Block::default().borders(Borders::ALL).title(" rooms ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn title(frame: &mut Frame, app: &App, area: Rect) {
    let line = match app.shown() {
        None => Line::styled(
            " palaver · what the session said",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Some(b) => {
            let extra = match &b.place {
                Place::Channel(c) => {
                    let people = match app.members.get(c) {
                        Some(m) => format!(" · {} members", m.len()),
                        None => String::new(),
                    };
                    match app.topics.get(c) {
                        Some(t) => format!("{people} · {}", safe(t)),
                        None => people,
                    }
                }
                Place::With(w) => match app.online.get(w.as_str()) {
                    Some(_) => " · online".to_owned(),
                    None => " · offline".to_owned(),
                },
            };
            Line::from(vec![
                Span::styled(
                    format!(" {}", safe(&b.title())),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::styled(extra, Style::default().fg(Color::DarkGray)),
            ])
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn chat(frame: &mut Frame, app: &App, area: Rect) {
    let rows: Vec<Line> = match app.shown() {
        Some(b) => {
            let all = layout::rows(&app.me, b, area.width);
            let h = area.height as usize;
            let end = all.len().saturating_sub(b.scroll);
            let start = end.saturating_sub(h);
            all[start..end].to_vec()
        }
        None => {
            let mut out = Vec::new();
            for (at, text) in &app.log {
                for row in wrap(
                    &format!("{} -- {}", hhmm(*at), safe(text)),
                    area.width as usize,
                ) {
                    out.push(Line::styled(row, Style::default().fg(Color::DarkGray)));
                }
            }
            let h = area.height as usize;
            let start = out.len().saturating_sub(h);
            out.split_off(start)
        }
    };
    // The newest row sits at the bottom, as in every chat.
    let top = (area.height as usize).saturating_sub(rows.len()) as u16;
    let place = Rect::new(area.x, area.y + top, area.width, area.height - top);
    frame.render_widget(Paragraph::new(rows), place);
    if let Some(b) = app.shown() {
        if b.scroll > 0 {
            let note = format!(" ↓ {} rows below: PageDown ", b.scroll);
            let w = (width(&note) as u16).min(area.width);
            let r = Rect::new(area.x + area.width - w, area.y + area.height - 1, w, 1);
            frame.render_widget(
                Paragraph::new(note).style(Style::default().fg(Color::Black).bg(Color::Yellow)),
                r,
            );
        }
    }
}

fn members(frame: &mut Frame, app: &App, area: Rect) {
    let Some(Place::Channel(c)) = app.shown().map(|b| &b.place) else {
        return;
    };
    let people = app.members.get(c).cloned().unwrap_or_default();
    let inner = area.width.saturating_sub(4) as usize;
    let mut online: Vec<&String> = people
        .iter()
        .filter(|p| app.online.contains_key(*p))
        .collect();
    let mut offline: Vec<&String> = people
        .iter()
        .filter(|p| !app.online.contains_key(*p))
        .collect();
    online.sort();
    offline.sort();
    let mut lines = Vec::new();
    for p in online {
        lines.push(Line::from(vec![
            Span::styled("● ", Style::default().fg(Color::Green)),
            Span::styled(fit(&safe(p), inner), Style::default().fg(colour(p))),
        ]));
    }
    for p in offline {
        lines.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(fit(&safe(p), inner), Style::default().fg(Color::DarkGray)),
        ]));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" members {} ", people.len()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn input(frame: &mut Frame, app: &App, area: Rect) {
    let rule = Rect::new(area.x, area.y, area.width, 1);
    frame.render_widget(
        Block::default()
            .borders(Borders::TOP)
            .border_style(Style::default().fg(Color::DarkGray)),
        rule,
    );
    let prompt = Rect::new(area.x, area.y + 1, 2.min(area.width), 1);
    frame.render_widget(Paragraph::new("> "), prompt);
    let line = Rect::new(area.x + 2, area.y + 1, area.width.saturating_sub(2), 1);
    frame.render_widget(&app.input, line);
}

fn status(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.status;
    let dim = Style::default().fg(Color::DarkGray);
    let (link, link_style) = match &s.link {
        Link::Connecting => ("connecting…".to_owned(), Style::default().fg(Color::Yellow)),
        Link::Online => ("online".to_owned(), Style::default().fg(Color::Green)),
        Link::Reconnecting { since } => (
            format!("reconnecting since {}", hhmm(*since)),
            Style::default().fg(Color::Black).bg(Color::Yellow),
        ),
    };
    // Narrow terminals get the short labels.
    let (by, coord) = if area.width >= 80 {
        ("answered by ", "coordinator ")
    } else {
        ("", "coord. ")
    };
    let mut spans = vec![
        Span::raw(" "),
        Span::styled(link, link_style),
        Span::styled(" · ", dim),
        Span::raw(format!("{by}{}", s.server.as_deref().unwrap_or("—"))),
        Span::styled(" · ", dim),
        Span::raw(format!(
            "{coord}{}",
            s.coordinator.as_deref().unwrap_or("—")
        )),
        Span::styled(" · ", dim),
        Span::raw(format!("clock {}", s.clock)),
    ];
    if let Some(ms) = s.latency_ms {
        spans.push(Span::styled(" · ", dim));
        spans.push(Span::raw(format!("{ms:.1} ms")));
    }
    if !app.bell_on {
        spans.push(Span::styled(" · bell off", dim));
    }
    let used: usize = spans.iter().map(|s| width(&s.content)).sum();
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::default().bg(Color::Indexed(236))),
        area,
    );
    let hint = " F1 help ";
    let w = width(hint) as u16;
    if area.width as usize > used + w as usize {
        let r = Rect::new(area.x + area.width - w, area.y, w, 1);
        frame.render_widget(
            Paragraph::new(hint)
                .style(Style::default().fg(Color::DarkGray).bg(Color::Indexed(236))),
            r,
        );
    }
}

/// A box of `w` × `h` in the middle of `area` (as much as fits).
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn help(frame: &mut Frame, area: Rect) {
    let mut lines = vec![Line::styled(
        "keys",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    let key_w = BINDINGS
        .iter()
        .chain(COMMANDS)
        .map(|(k, _)| width(k))
        .max()
        .unwrap_or(0)
        + 2;
    let row = |k: &str, v: &str| {
        let pad = " ".repeat(key_w.saturating_sub(width(k)));
        Line::from(vec![
            Span::styled(format!("  {k}{pad}"), Style::default().fg(Color::Cyan)),
            Span::raw(v.to_owned()),
        ])
    };
    lines.extend(BINDINGS.iter().map(|(k, v)| row(k, v)));
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "commands",
        Style::default().add_modifier(Modifier::BOLD),
    ));
    lines.extend(COMMANDS.iter().map(|(k, v)| row(k, v)));
    let box_ = centred(area, 80, lines.len() as u16 + 2);
    frame.render_widget(Clear, box_);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" help · Esc closes ")
                .title_alignment(Alignment::Center),
        ),
        box_,
    );
}

fn browser(frame: &mut Frame, area: Rect, channels: &[String], filter: &str, selected: usize) {
    let shown = browser_matches(channels, filter);
    let box_ = centred(area, 44, 16);
    let inner = box_.height.saturating_sub(4) as usize;
    let mut lines = vec![
        Line::from(vec![
            Span::styled("find: ", Style::default().fg(Color::DarkGray)),
            Span::raw(safe(filter).into_owned()),
            Span::styled("▏", Style::default().fg(Color::DarkGray)),
        ]),
        Line::raw(""),
    ];
    if channels.is_empty() {
        lines.push(Line::styled(
            "loading…",
            Style::default().fg(Color::DarkGray),
        ));
    } else if shown.is_empty() {
        lines.push(Line::styled(
            "no channel matches",
            Style::default().fg(Color::DarkGray),
        ));
    }
    // The window of the list that holds the selection.
    let start = selected.saturating_sub(inner.saturating_sub(1));
    for (i, c) in shown.iter().enumerate().skip(start).take(inner) {
        let style = if i == selected {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        lines.push(Line::styled(format!("#{}", safe(c)), style));
    }
    frame.render_widget(Clear, box_);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" channels · Enter joins · Esc closes ")
                .title_alignment(Alignment::Center),
        ),
        box_,
    );
}
