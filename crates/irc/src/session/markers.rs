//! Read markers (IRCv3 `draft/read-marker`) over Palaver's: `MARKREAD` moves the person's
//! marker to the newest message at or before a time, and every client of theirs (IRC or web)
//! learns where it stands. Palaver's markers name a message; IRC's are times, so a marker is
//! shown as its message's time (`unread`'s `marker_at`).

use serde_json::{json, Value as Json};

use super::history::parse_iso;
use super::{iso_time, str_of, Cap, Out, Pending, Session};
use crate::line::Message;

impl Session {
    /// `MARKREAD <target> [timestamp=…]`.
    pub(super) fn markread(&mut self, m: &Message, out: &mut Vec<Out>) {
        let Some(target) = m.param(0).map(str::to_owned) else {
            out.push(self.standard(
                "FAIL",
                "MARKREAD",
                "NEED_MORE_PARAMS",
                &[],
                "Missing parameters",
            ));
            return;
        };
        if !self.history_target(&target) {
            out.push(self.standard(
                "FAIL",
                "MARKREAD",
                "INVALID_PARAMS",
                &[&target],
                "Not a room or a person's nick",
            ));
            return;
        }
        let Some(at) = m.param(1) else {
            out.push(self.ask_markers(vec![target]));
            return;
        };
        let Some(ms) = at.strip_prefix("timestamp=").and_then(parse_iso) else {
            out.push(self.standard(
                "FAIL",
                "MARKREAD",
                "INVALID_PARAMS",
                &[&target, at],
                "Expected timestamp=YYYY-MM-DDThh:mm:ss.sssZ",
            ));
            return;
        };
        // The newest message at or before that time (as IRC shows times, to the millisecond).
        let mut data = match target.strip_prefix('#') {
            Some(room) => json!({"channel": room}),
            None => json!({"with": target}),
        };
        data["until"] = json!((ms + 1) as f64 / 1000.0);
        data["limit"] = json!(1);
        out.push(self.request("history", data, Pending::MarkFind { target }));
    }

    /// Asks where the person's markers stand, to tell this client about `targets`.
    pub(super) fn ask_markers(&mut self, targets: Vec<String>) -> Out {
        let pending = Pending::Markers {
            targets,
            names: false,
        };
        self.request("unread", json!({}), pending)
    }

    /// The message a `MARKREAD` names, found: the marker moves to it.
    pub(super) fn mark_found(
        &mut self,
        target: String,
        ok: bool,
        why: &str,
        data: &Json,
        out: &mut Vec<Out>,
    ) {
        if !ok {
            out.push(self.standard("FAIL", "MARKREAD", "INVALID_PARAMS", &[&target], why));
            return;
        }
        let id = data
            .get("messages")
            .and_then(Json::as_array)
            .and_then(|m| m.last())
            .and_then(|m| str_of(m, "id"));
        match id {
            Some(id) => {
                let data = json!({"id": id});
                out.push(self.request("read", data, Pending::MarkMoved { target }));
            }
            // Nothing that early: the marker stays where it is.
            None => out.push(self.ask_markers(vec![target])),
        }
    }

    /// `unread` answered: each target's marker, as the time of the message it stands at.
    pub(super) fn markers(
        &mut self,
        targets: &[String],
        ok: bool,
        why: &str,
        data: &Json,
        out: &mut Vec<Out>,
    ) {
        if !ok {
            tracing::debug!(why, "read markers could not be read");
            return;
        }
        for target in targets {
            let (list, key, name) = match target.strip_prefix('#') {
                Some(room) => ("channels", "channel", room),
                None => ("conversations", "with", target.as_str()),
            };
            let at = data
                .get(list)
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .find(|e| str_of(e, key) == Some(name))
                .and_then(|e| e.get("marker_at"))
                .and_then(Json::as_f64);
            let shown = match at {
                Some(t) => format!("timestamp={}", iso_time(t)),
                None => "*".to_owned(),
            };
            out.push(Out::Line(
                Message::new("MARKREAD", &[target, &shown])
                    .from(&self.server)
                    .line(),
            ));
        }
    }

    /// A `read` publication on the person's own topic: a marker moved, here or elsewhere.
    pub(super) fn marker_moved(&mut self, data: &Json, out: &mut Vec<Out>) {
        if !self.caps.contains(&Cap::ReadMarker) || str_of(data, "user") != Some(self.me()) {
            return;
        }
        let target = match (str_of(data, "channel"), str_of(data, "with")) {
            (Some(room), _) => format!("#{room}"),
            (None, Some(with)) => with.to_owned(),
            (None, None) => return,
        };
        out.push(self.ask_markers(vec![target]));
    }
}
