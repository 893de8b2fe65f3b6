//! `CHATHISTORY` (IRCv3 `draft/chathistory`) over Palaver's `history`: each subcommand is one
//! page of a conversation's history between bounds (a message, by its `msgid`, or a time),
//! taken from the oldest or the newest end; `AROUND` is two pages, and `TARGETS` is read from
//! `unread`, which says when each conversation last had a message.
//!
//! An IRC `msgid` is the Palaver id and the message's Lamport time, `<origin>:<seq>@<lamport>`,
//! so that the place of a message in the one order can be read back from it alone (a client
//! keeps it across reconnects).

use std::cmp::Ordering;

use serde_json::{json, Value as Json};

use super::{str_of, Out, Pending, Session};
use crate::line::Message;

/// The most messages one `CHATHISTORY` answers with (`history`'s page).
pub(super) const MAX_CHATHISTORY: u64 = 500;

/// A `CHATHISTORY` subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    Before,
    After,
    Latest,
    Around,
    Between,
    Targets,
}

impl Sub {
    const ALL: [Sub; 6] = [
        Sub::Before,
        Sub::After,
        Sub::Latest,
        Sub::Around,
        Sub::Between,
        Sub::Targets,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Sub::Before => "BEFORE",
            Sub::After => "AFTER",
            Sub::Latest => "LATEST",
            Sub::Around => "AROUND",
            Sub::Between => "BETWEEN",
            Sub::Targets => "TARGETS",
        }
    }

    fn parse(name: &str) -> Option<Sub> {
        Sub::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// A message reference: `*`, `timestamp=` (milliseconds since the epoch) or `msgid=` (the
/// cursor it stands for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ref {
    Star,
    Time(u64),
    Id { lamport: u64, origin: String },
}

impl Ref {
    pub(super) fn parse(s: &str) -> Option<Ref> {
        if s == "*" {
            return Some(Ref::Star);
        }
        if let Some(t) = s.strip_prefix("timestamp=") {
            return parse_iso(t).map(Ref::Time);
        }
        let (lamport, origin) = cursor_of(s.strip_prefix("msgid=")?)?;
        Some(Ref::Id { lamport, origin })
    }

    /// Which of two references comes first, when that can be told from them alone.
    fn order(&self, other: &Ref) -> Option<Ordering> {
        match (self, other) {
            (Ref::Time(a), Ref::Time(b)) => Some(a.cmp(b)),
            (
                Ref::Id { lamport, origin },
                Ref::Id {
                    lamport: l,
                    origin: o,
                },
            ) => Some((lamport, origin).cmp(&(l, o))),
            _ => None,
        }
    }
}

/// The IRC `msgid` of a message as history, answers and publications show it: its id and its
/// Lamport time (a `cursor`'s first part, or a publication's `clock`).
pub(super) fn msgid(data: &Json) -> Option<String> {
    let id = str_of(data, "id")?;
    let lamport = match str_of(data, "cursor") {
        Some(c) => c.split_once(':')?.0.parse::<u64>().ok()?,
        None => data.get("clock")?.as_u64()?,
    };
    Some(format!("{id}@{lamport}"))
}

/// The cursor (`lamport`, origin) an IRC msgid stands for.
fn cursor_of(msgid: &str) -> Option<(u64, String)> {
    let (id, lamport) = msgid.rsplit_once('@')?;
    let (origin, seq) = id.rsplit_once(':')?;
    seq.parse::<u64>().ok()?;
    let lamport = lamport.parse::<u64>().ok()?;
    (!origin.is_empty()).then(|| (lamport, origin.to_owned()))
}

/// `YYYY-MM-DDThh:mm:ss[.sss]Z` as milliseconds since the epoch.
pub(super) fn parse_iso(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // A civil date to days (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// A page's bounds, as `history` takes them (times in milliseconds).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Bounds {
    after: Option<String>,
    before: Option<String>,
    since: Option<u64>,
    until: Option<u64>,
    latest: bool,
}

impl Bounds {
    /// Only what comes after `r` (not `r` itself: a time is compared as IRC shows it, to the
    /// millisecond, so what is shown at that time is not after it).
    fn above(mut self, r: &Ref) -> Bounds {
        match r {
            Ref::Star => {}
            Ref::Time(ms) => self.since = Some(ms + 1),
            Ref::Id { lamport, origin } => self.after = Some(format!("{lamport}:{origin}")),
        }
        self
    }

    /// Only what comes before `r`.
    fn below(mut self, r: &Ref) -> Bounds {
        match r {
            Ref::Star => {}
            Ref::Time(ms) => self.until = Some(*ms),
            Ref::Id { lamport, origin } => self.before = Some(format!("{lamport}:{origin}")),
        }
        self
    }

    fn latest(mut self) -> Bounds {
        self.latest = true;
        self
    }

    /// The `history` request's data for `target` (`#room` or a nick).
    fn data(&self, target: &str, limit: u64) -> Json {
        let mut d = match target.strip_prefix('#') {
            Some(room) => json!({"channel": room}),
            None => json!({"with": target}),
        };
        d["limit"] = json!(limit);
        for (key, v) in [("after", &self.after), ("before", &self.before)] {
            if let Some(c) = v {
                d[key] = json!(c);
            }
        }
        for (key, v) in [("since", self.since), ("until", self.until)] {
            if let Some(ms) = v {
                d[key] = json!(ms as f64 / 1000.0);
            }
        }
        if self.latest {
            d["latest"] = json!(true);
        }
        d
    }
}

/// Where a `CHATHISTORY` stands while its pages are read.
#[derive(Debug)]
pub(super) enum Step {
    /// One page answers it.
    Page,
    /// `AROUND`'s first page: the `take` messages before the reference (shown when `keep`);
    /// `rest` more follow from it.
    Before { take: u64, keep: bool, rest: u64 },
    /// `AROUND`'s second page, after `first`.
    After { first: Vec<Json> },
}

impl Session {
    pub(super) fn fail(&self, code: &str, context: &[&str], text: &str) -> Out {
        self.standard("FAIL", "CHATHISTORY", code, context, text)
    }

    /// `CHATHISTORY <subcommand> …`.
    pub(super) fn chathistory(&mut self, m: &Message, out: &mut Vec<Out>) {
        let given = m.param(0).unwrap_or("").to_ascii_uppercase();
        let Some(sub) = Sub::parse(&given) else {
            out.push(self.fail("INVALID_PARAMS", &[&given], "Unknown subcommand"));
            return;
        };
        let args = &m.params[1.min(m.params.len())..];
        // Parameters after the subcommand: two references and a limit for BETWEEN (after its
        // target) and TARGETS (which has none); one and a limit for the others.
        let needs = if sub == Sub::Between { 4 } else { 3 };
        let name = sub.name();
        if args.len() < needs {
            out.push(self.fail("NEED_MORE_PARAMS", &[name], "Missing parameters"));
            return;
        }
        let Some(limit) = args[needs - 1]
            .parse::<u64>()
            .ok()
            .map(|l| l.clamp(1, MAX_CHATHISTORY))
        else {
            out.push(self.fail("INVALID_PARAMS", &[name, &args[needs - 1]], "Invalid limit"));
            return;
        };
        let refs: Vec<Option<Ref>> = args[if sub == Sub::Targets { 0 } else { 1 }..needs - 1]
            .iter()
            .map(|r| Ref::parse(r))
            .collect();
        let Some(refs) = refs.into_iter().collect::<Option<Vec<Ref>>>() else {
            out.push(self.fail("INVALID_PARAMS", &[name], "Invalid message reference"));
            return;
        };
        let target = args[0].clone();
        if sub != Sub::Targets {
            if !self.history_target(&target) {
                out.push(self.fail(
                    "INVALID_TARGET",
                    &[name, &target],
                    "Not a room or a person's nick",
                ));
                return;
            }
            if matches!(refs[0], Ref::Star) && sub != Sub::Latest {
                out.push(self.fail("INVALID_PARAMS", &[name], "`*` is only for LATEST"));
                return;
            }
        }
        let (bounds, step) = match sub {
            Sub::Targets => {
                let (Ref::Time(a), Ref::Time(b)) = (&refs[0], &refs[1]) else {
                    out.push(self.fail("INVALID_PARAMS", &[name], "TARGETS takes two timestamps"));
                    return;
                };
                let (from, to) = ((*a).min(*b), (*a).max(*b));
                let pending = Pending::Targets { from, to, limit };
                out.push(self.request("unread", json!({}), pending));
                return;
            }
            Sub::Before => (Bounds::default().below(&refs[0]), Step::Page),
            Sub::After => (Bounds::default().above(&refs[0]), Step::Page),
            Sub::Latest if refs[0] == Ref::Star => (Bounds::default(), Step::Page),
            Sub::Latest => (Bounds::default().above(&refs[0]).latest(), Step::Page),
            Sub::Between => {
                let (a, b) = (&refs[0], &refs[1]);
                if matches!(b, Ref::Star) {
                    out.push(self.fail("INVALID_PARAMS", &[name], "`*` is only for LATEST"));
                    return;
                }
                // From the first reference towards the second: forward when it comes first,
                // or when that cannot be told (a time and a msgid).
                match a.order(b) {
                    Some(Ordering::Greater) => {
                        (Bounds::default().below(a).above(b).latest(), Step::Page)
                    }
                    _ => (Bounds::default().above(a).below(b), Step::Page),
                }
            }
            Sub::Around => {
                // Half before the reference (with it, for a time), the rest from it.
                // With a limit of 1 the page before is read only to find where the rest
                // starts.
                let r = &refs[0];
                let before = match r {
                    Ref::Time(ms) => Bounds {
                        until: Some(ms + 1),
                        ..Bounds::default()
                    },
                    _ => Bounds::default().below(r),
                };
                let half = limit / 2;
                let step = Step::Before {
                    take: half.max(1),
                    keep: half > 0,
                    rest: limit - half,
                };
                (before.latest(), step)
            }
        };
        let per_page = match &step {
            Step::Before { take, .. } => *take,
            Step::Page | Step::After { .. } => limit,
        };
        let data = bounds.data(&target, per_page);
        let pending = Pending::History { sub, target, step };
        out.push(self.request("history", data, pending));
    }

    /// Whether `target` names a room or a nick.
    pub(super) fn history_target(&self, target: &str) -> bool {
        let name = target.strip_prefix('#').unwrap_or(target);
        !name.is_empty()
            && !name.starts_with('#')
            && !name.contains(['!', '@', ',', '*', '?', ' ', ':'])
    }

    /// A `history` page for a `CHATHISTORY` answered.
    pub(super) fn history_page(
        &mut self,
        (sub, target, step): (Sub, String, Step),
        ok: bool,
        why: &str,
        data: &Json,
        out: &mut Vec<Out>,
    ) {
        if !ok {
            // The servers refuse a room that does not exist and a conversation that is not
            // the person's; "could not" is their own failure.
            let code = if why.contains("could not") {
                "MESSAGE_ERROR"
            } else {
                "INVALID_TARGET"
            };
            out.push(self.fail(code, &[sub.name(), &target], why));
            return;
        }
        let page: Vec<Json> = data
            .get("messages")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        match step {
            Step::Page => self.history_batch(&target, &page, out),
            Step::After { mut first } => {
                first.extend(page);
                self.history_batch(&target, &first, out);
            }
            Step::Before { keep, rest, .. } => {
                // The rest starts just after the last message before the reference, or at
                // the beginning when there is none.
                let from = match page.last().and_then(|m| str_of(m, "cursor")) {
                    Some(last) => Bounds {
                        after: Some(last.to_owned()),
                        ..Bounds::default()
                    },
                    None => Bounds {
                        since: Some(0),
                        ..Bounds::default()
                    },
                };
                let data = from.data(&target, rest);
                let first = if keep { page } else { Vec::new() };
                let step = Step::After { first };
                let pending = Pending::History { sub, target, step };
                out.push(self.request("history", data, pending));
            }
        }
    }

    /// A `chathistory` batch of `messages` for `target` (a batch only for clients that asked
    /// for batches).
    fn history_batch(&mut self, target: &str, messages: &[Json], out: &mut Vec<Out>) {
        let batch = self.open_batch(&["chathistory", target], out);
        for m in messages {
            let (from, to, text) = match (str_of(m, "channel"), str_of(m, "user")) {
                (Some(channel), Some(user)) => (user, format!("#{channel}"), str_of(m, "message")),
                _ => match (str_of(m, "src"), str_of(m, "dst")) {
                    (Some(src), Some(dst)) => (src, dst.to_owned(), str_of(m, "message")),
                    _ => continue,
                },
            };
            let Some(text) = text else { continue };
            for line in self.text_messages("PRIVMSG", from, &to, text, m) {
                out.push(self.in_batch(line, batch.as_deref()));
            }
        }
        self.close_batch(batch, out);
    }

    /// `unread` answered for `CHATHISTORY TARGETS`: the rooms and people with a message in
    /// the window, by their newest message, oldest first.
    pub(super) fn targets(
        &mut self,
        from: u64,
        to: u64,
        limit: u64,
        data: &Json,
        out: &mut Vec<Out>,
    ) {
        let mut found: Vec<(u64, String)> = Vec::new();
        for (list, key, prefix) in [("channels", "channel", "#"), ("conversations", "with", "")] {
            for entry in data
                .get(list)
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(name), Some(last)) = (
                    str_of(entry, key),
                    entry.get("last_at").and_then(Json::as_f64),
                ) else {
                    continue;
                };
                let ms = (last * 1000.0).floor().max(0.0) as u64;
                if (from..=to).contains(&ms) {
                    found.push((ms, format!("{prefix}{name}")));
                }
            }
        }
        found.sort();
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let batch = self.open_batch(&["draft/chathistory-targets"], out);
        for (ms, target) in found {
            let time = super::iso_time(ms as f64 / 1000.0);
            let line = Message::new("CHATHISTORY", &["TARGETS", &target, &time]).from(&self.server);
            out.push(self.in_batch(line, batch.as_deref()));
        }
        self.close_batch(batch, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_as_iso_writes_them() {
        for ms in [
            0_u64,
            1,
            999,
            86_399_999,
            951_782_400_000,
            1_795_379_524_530,
            4_102_444_800_000,
        ] {
            let iso = super::super::iso_time(ms as f64 / 1000.0);
            assert_eq!(parse_iso(&iso), Some(ms), "{iso}");
        }
        assert_eq!(parse_iso("2026-12-07T10:00:00Z"), Some(1_796_637_600_000));
        assert_eq!(parse_iso("2026-12-07T10:00:00.5Z"), Some(1_796_637_600_500));
        for bad in [
            "",
            "2026-12-07",
            "2026-13-07T10:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T10:00:00",
            "x-y-zTa:b:cZ",
            "2026-12-07T10:00:00.Z",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_msgid_names_its_place_in_the_order() {
        let id = msgid(&json!({"id": "s1:4", "clock": 16})).unwrap();
        assert_eq!(id, "s1:4@16");
        assert_eq!(
            msgid(&json!({"id": "s2:9", "cursor": "40:s2", "clock": 99})).unwrap(),
            "s2:9@40"
        );
        assert_eq!(
            Ref::parse(&format!("msgid={id}")),
            Some(Ref::Id {
                lamport: 16,
                origin: "s1".into()
            })
        );
        for bad in [
            "msgid=",
            "msgid=s1:4",
            "msgid=s1@16",
            "msgid=:4@16",
            "msgid=s1:x@16",
            "foo=1",
            "timestamp=nope",
        ] {
            assert_eq!(Ref::parse(bad), None, "{bad}");
        }
        assert_eq!(Ref::parse("*"), Some(Ref::Star));
    }
}
