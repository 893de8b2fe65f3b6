//! IRC messages: one line each, parsed into tags, source, command and parameters, and written
//! back, with the limits of the ircdocs "Modern IRC" document and the IRCv3 message-tags
//! specification.
//!
//! ```text
//!  @time=2026-12-07T12:00:00.000Z;msgid=s1:4 :ana!ana@palaver PRIVMSG #den :hello there
//!  └── tags (≤ 8,191 bytes) ──────────────┘ └ source ─────┘ └ cmd ─┘ └ params, last ──┘
//!                                           └──────── the rest: ≤ 512 bytes with CRLF ────┘
//! ```

use std::fmt::Write as _;

/// The longest line without its tags, CRLF included.
pub const MAX_LINE: usize = 512;
/// The longest tag section a client may send, `@` and the space after it included.
pub const MAX_CLIENT_TAGS: usize = 4096;
/// The longest tag section a server may send (IRCv3 message-tags), `@` and space included.
pub const MAX_TAGS: usize = 8191;
/// What no part of a line may hold: it would end the line, or break it (RFC 1459 2.3.1).
const UNWRITABLE: [char; 3] = ['\r', '\n', '\0'];
/// The most parameters a message has.
const MAX_PARAMS: usize = 15;

/// One IRC message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// IRCv3 tags, in order, their values unescaped (`None`: a tag without a value).
    pub tags: Vec<(String, Option<String>)>,
    pub source: Option<String>,
    /// Upper-cased for commands; numerics as given.
    pub command: String,
    pub params: Vec<String>,
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Nothing but spaces: ignored, as servers do.
    Empty,
    /// Over [`MAX_LINE`] bytes without tags, or [`MAX_CLIENT_TAGS`] of tags.
    TooLong,
    /// Not UTF-8.
    NotUtf8,
    /// No command, or a malformed part.
    Malformed(&'static str),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Empty => f.write_str("empty line"),
            LineError::TooLong => f.write_str("line too long"),
            LineError::NotUtf8 => f.write_str("the line is not UTF-8; Palaver speaks UTF-8 only"),
            LineError::Malformed(why) => f.write_str(why),
        }
    }
}

impl Message {
    /// A message from `source` (or the server, when it is `None`).
    pub fn new(command: &str, params: &[&str]) -> Message {
        Message {
            tags: Vec::new(),
            source: None,
            command: command.to_owned(),
            params: params.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[must_use]
    pub fn from(mut self, source: &str) -> Message {
        self.source = Some(source.to_owned());
        self
    }

    #[must_use]
    pub fn tag(mut self, key: &str, value: Option<&str>) -> Message {
        self.tags.push((key.to_owned(), value.map(str::to_owned)));
        self
    }

    /// A tag's value (`Some(None)`: present without one).
    pub fn tag_value(&self, key: &str) -> Option<Option<&str>> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// The `i`th parameter, if there is one.
    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }

    /// Parses one line, without its CR LF.
    ///
    /// # Errors
    /// When the line is empty, too long, not UTF-8, or has no command.
    pub fn parse(line: &[u8]) -> Result<Message, LineError> {
        let line = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
        // A line ends at CR LF and holds neither anywhere else, nor NUL (RFC 1459 2.3.1): one
        // let through would be echoed (a QUIT's reason in its ERROR) as a broken line or as
        // a second line of the server's making.
        if line.contains(UNWRITABLE) {
            return Err(LineError::Malformed("a CR, LF or NUL inside the line"));
        }
        let mut rest = line.trim_start_matches(' ');
        let mut msg = Message::default();
        if let Some(tagged) = rest.strip_prefix('@') {
            let (tags, after) = tagged
                .split_once(' ')
                .ok_or(LineError::Malformed("tags and nothing else"))?;
            if tags.len() + 2 > MAX_CLIENT_TAGS {
                return Err(LineError::TooLong);
            }
            for tag in tags.split(';').filter(|t| !t.is_empty()) {
                let (key, value) = match tag.split_once('=') {
                    Some((k, v)) => (k, Some(unescape(v))),
                    None => (tag, None),
                };
                // A tag without a name carries nothing a reader could ask for.
                if !key.is_empty() {
                    msg.tags
                        .push((key.to_owned(), value.filter(|v| !v.is_empty())));
                }
            }
            rest = after.trim_start_matches(' ');
        }
        // The 512 bytes count the line's CR LF.
        if rest.len() + 2 > MAX_LINE {
            return Err(LineError::TooLong);
        }
        if rest.is_empty() {
            return Err(if msg.tags.is_empty() {
                LineError::Empty
            } else {
                LineError::Malformed("tags and nothing else")
            });
        }
        if let Some(sourced) = rest.strip_prefix(':') {
            let (source, after) = sourced
                .split_once(' ')
                .ok_or(LineError::Malformed("a source and no command"))?;
            if source.is_empty() {
                return Err(LineError::Malformed("an empty source"));
            }
            msg.source = Some(source.to_owned());
            rest = after.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LineError::Malformed("no command"));
        }
        msg.command = command.to_ascii_uppercase();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                msg.params.push(trailing.to_owned());
                break;
            }
            if msg.params.len() == MAX_PARAMS - 1 {
                // The 15th parameter takes the rest, spaces and all.
                msg.params.push(rest.to_owned());
                break;
            }
            let (p, after) = rest.split_once(' ').unwrap_or((rest, ""));
            msg.params.push(p.to_owned());
            rest = after;
        }
        Ok(msg)
    }

    /// The line, without CR LF. The last parameter is written as a trailing one whenever it
    /// needs to be (empty, with a space, or starting with `:`), and always for texts. A line
    /// that would be over [`MAX_LINE`] without its tags has its longest parameters shortened
    /// until it fits: a reply that repeats what a client sent (an unknown command or `CAP`
    /// subcommand of 500 bytes) must still be a line a client can read.
    pub fn line(&self) -> String {
        let over = self.untagged_len().saturating_sub(MAX_LINE - 2);
        let n = self.params.len();
        let mut middle = self.params[..n.saturating_sub(1)].iter();
        let unwritable = self.params.last().is_some_and(|p| p.contains(UNWRITABLE))
            || self
                .source
                .as_deref()
                .is_some_and(|s| !writable_word(s, true))
            || !writable_word(&self.command, true)
            || middle.any(|w| !writable_word(w, false));
        if over == 0 && !unwritable {
            return self.write();
        }
        let mut fitted = self.clone();
        if unwritable {
            // What came from elsewhere (a name, a reason) is shown, never obeyed: it can end
            // neither the line nor the word it stands for.
            let last = fitted.params.pop();
            for w in fitted.source.iter_mut().chain([&mut fitted.command]) {
                if !writable_word(w, true) {
                    *w = as_word(w, true);
                }
            }
            for w in &mut fitted.params {
                if !writable_word(w, false) {
                    *w = as_word(w, false);
                }
            }
            fitted
                .params
                .extend(last.map(|p| p.replace(UNWRITABLE, "\u{FFFD}")));
        }
        let over = fitted.untagged_len().saturating_sub(MAX_LINE - 2);
        fitted.shorten(over);
        fitted.write()
    }

    /// Bytes of the line without its tags and CR LF, as [`Message::write`] makes it.
    fn untagged_len(&self) -> usize {
        let source = self.source.as_ref().map_or(0, |s| s.len() + 2);
        let params: usize = self.params.iter().map(|p| p.len() + 1).sum();
        let colon = usize::from(self.params.last().is_some_and(|p| self.trailing(p)));
        source + self.command.len() + params + colon
    }

    /// Whether `last`, the last parameter, is written as a trailing one (after `:`).
    fn trailing(&self, last: &str) -> bool {
        last.is_empty() || last.contains(' ') || last.starts_with(':') || self.params.len() > 1
    }

    /// Cuts `over` bytes from the longest parameters, on character boundaries, leaving each
    /// at least one character.
    fn shorten(&mut self, mut over: usize) {
        while over > 0 {
            let Some(longest) = self
                .params
                .iter_mut()
                .max_by_key(|p| p.len())
                .filter(|p| p.chars().nth(1).is_some())
            else {
                return;
            };
            let mut keep = longest.len().saturating_sub(over).max(1);
            while !longest.is_char_boundary(keep) {
                keep -= 1;
            }
            if keep == 0 {
                keep = longest.chars().next().map_or(0, char::len_utf8);
            }
            over = over.saturating_sub(longest.len() - keep);
            longest.truncate(keep);
        }
    }

    fn write(&self) -> String {
        let mut out = String::with_capacity(64);
        if !self.tags.is_empty() {
            out.push('@');
            for (i, (k, v)) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(';');
                }
                out.push_str(k);
                if let Some(v) = v {
                    out.push('=');
                    escape_into(&mut out, v);
                }
            }
            out.push(' ');
        }
        if let Some(s) = &self.source {
            let _ = write!(out, ":{s} ");
        }
        out.push_str(&self.command);
        let n = self.params.len();
        for (i, p) in self.params.iter().enumerate() {
            out.push(' ');
            if i + 1 == n && self.trailing(p) {
                out.push(':');
            }
            out.push_str(p);
        }
        out
    }
}

/// Whether `w` can stand as a source or a command (`colon`: it may start with `:`), or as a
/// parameter before the last: not empty, no space, nothing [`UNWRITABLE`].
fn writable_word(w: &str, colon: bool) -> bool {
    !w.is_empty() && (colon || !w.starts_with(':')) && !w.contains(' ') && !w.contains(UNWRITABLE)
}

/// `w` made into a word that stands where it is put, what could not be shown made visible.
fn as_word(w: &str, colon: bool) -> String {
    if w.is_empty() {
        return "*".to_owned();
    }
    let mut out: String = w
        .chars()
        .map(|c| {
            if c == ' ' || UNWRITABLE.contains(&c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    if !colon && out.starts_with(':') {
        out.replace_range(..1, "\u{FFFD}");
    }
    out
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Cuts `text` into pieces of at most `max` bytes, on character boundaries (a long post
/// becomes several lines).
pub fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer the last space in the piece, when there is one in its second half.
        if let Some(space) = rest[..cut].rfind(' ').filter(|&s| s > cut / 2) {
            cut = space + 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_line_parses_into_its_parts_and_back() {
        let line = "@time=2026-12-07T12:00:00.000Z;msgid=s1:4;+draft/x :ana!ana@palaver PRIVMSG #den :hello there";
        let m = Message::parse(line.as_bytes()).unwrap();
        assert_eq!(m.tag_value("msgid"), Some(Some("s1:4")));
        assert_eq!(m.tag_value("+draft/x"), Some(None));
        assert_eq!(m.source.as_deref(), Some("ana!ana@palaver"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#den", "hello there"]);
        assert_eq!(m.line(), line);
        // A tag without a name is dropped (found by the property test below).
        let m = Message::parse(b"@c;=\\ C").unwrap();
        assert_eq!(m.tags, [("c".to_owned(), None)]);
    }

    #[test]
    fn commands_are_upper_cased_and_middle_spaces_collapse() {
        let m = Message::parse(b"nick   ana").unwrap();
        assert_eq!(
            (m.command.as_str(), m.params.as_slice()),
            ("NICK", &["ana".to_owned()][..])
        );
        let m = Message::parse(b"USER ana 0 * :Ana Lima").unwrap();
        assert_eq!(m.params, ["ana", "0", "*", "Ana Lima"]);
        let m = Message::parse(b"PRIVMSG #den ::-)").unwrap();
        assert_eq!(m.params, ["#den", ":-)"]);
        let m = Message::parse(b"PRIVMSG #den :").unwrap();
        assert_eq!(m.params, ["#den", ""]);
    }

    #[test]
    fn tag_values_are_escaped_both_ways() {
        let m = Message::new("TAGMSG", &["#den"]).tag("+x", Some("a b;c\\d"));
        assert_eq!(m.line(), "@+x=a\\sb\\:c\\\\d TAGMSG #den");
        let back = Message::parse(m.line().as_bytes()).unwrap();
        assert_eq!(back.tag_value("+x"), Some(Some("a b;c\\d")));
    }

    #[test]
    fn a_reply_that_would_be_over_the_limit_is_shortened_to_fit() {
        // Found by fuzzing: `CAP <500 bytes>` was answered with a 410 over 512 bytes.
        let long = "é".repeat(300);
        let m = Message::new("410", &["ana", &long, "Invalid CAP command"]).from("irc.test");
        let line = m.line();
        assert!(line.len() <= MAX_LINE - 2, "{}", line.len());
        let back = Message::parse(line.as_bytes()).expect("a line a client can read");
        assert_eq!(back.params[0], "ana");
        assert!(long.starts_with(&back.params[1]) && !back.params[1].is_empty());
        assert_eq!(back.params[2], "Invalid CAP command");
        // Found by fuzzing: a refusal's text with NULs (or a line break) was written as it
        // came; it is shown, with each made visible, and cannot end the line.
        let m = Message::new("433", &["*", "ana", "taken\r\nQUIT :x\0"]).from("irc.test");
        assert_eq!(
            m.line(),
            ":irc.test 433 * ana :taken\u{FFFD}\u{FFFD}QUIT :x\u{FFFD}"
        );
        // Found by fuzzing: a name with a space (from what the cluster answered) made the
        // source two words, and the line had no command.
        let m = Message::new("PRIVMSG", &["#den", "hello"]).from("an a!an a@palaver");
        let back = Message::parse(m.line().as_bytes()).expect("one line");
        assert_eq!(back.command, "PRIVMSG");
        assert_eq!(back.params, ["#den", "hello"]);
        let m = Message::new("353", &["ana", "", ":x y", "ana bob"]);
        let back = Message::parse(m.line().as_bytes()).expect("one line");
        assert_eq!(back.params.len(), 4);
        assert_eq!(back.params[3], "ana bob");
        // Lines within the limit are left alone.
        let short = Message::new("PRIVMSG", &["#den", "hello"]);
        assert_eq!(short.line(), "PRIVMSG #den :hello");
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert_eq!(Message::parse(b"   "), Err(LineError::Empty));
        assert_eq!(Message::parse(b"PRIVMSG \xff\xfe"), Err(LineError::NotUtf8));
        assert_eq!(
            Message::parse(b":ana"),
            Err(LineError::Malformed("a source and no command"))
        );
        assert_eq!(
            Message::parse(b"@a=b"),
            Err(LineError::Malformed("tags and nothing else"))
        );
        assert_eq!(
            Message::parse(b"PRIV-MSG x"),
            Err(LineError::Malformed("no command"))
        );
        // Found by fuzzing: a QUIT's NUL came back in the server's ERROR line.
        for bad in [&b"QUIT :r\0\0"[..], b"PRIVMSG #den :a\rQUIT", b"PING a\nb"] {
            assert_eq!(
                Message::parse(bad),
                Err(LineError::Malformed("a CR, LF or NUL inside the line"))
            );
        }
        let long = format!("PRIVMSG #den :{}", "x".repeat(500));
        assert_eq!(Message::parse(long.as_bytes()), Err(LineError::TooLong));
        // Tags have their own budget.
        let tagged = format!("@+x={} PING a", "y".repeat(3000));
        assert!(Message::parse(tagged.as_bytes()).is_ok());
        let tagged = format!("@+x={} PING a", "y".repeat(5000));
        assert_eq!(Message::parse(tagged.as_bytes()), Err(LineError::TooLong));
    }

    #[test]
    fn the_fifteenth_parameter_takes_the_rest() {
        let many: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let m = Message::parse(format!("CMD {}", many.join(" ")).as_bytes()).unwrap();
        assert_eq!(m.params.len(), 15);
        assert_eq!(m.params[14], "14 15 16 17 18 19");
    }

    /// Any bytes at all: an error or a message, never a panic; and a message written back
    /// parses to itself.
    #[test]
    fn random_lines_never_panic_and_what_parses_writes_back_the_same() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = std::env::var("PALAVER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let alphabet = b"@:; =\\#!abcAB01 \xff\xc3\xa9\x01\r";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let line: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if let Ok(m) = Message::parse(&line) {
                let again = Message::parse(m.line().as_bytes());
                assert_eq!(
                    again.as_ref(),
                    Ok(&m),
                    "seed {seed}: {line:?} wrote {:?}",
                    m.line()
                );
            }
        }
    }

    #[test]
    fn long_texts_are_cut_on_characters_and_preferably_spaces() {
        assert_eq!(pieces("", 10), [""]);
        assert_eq!(pieces("short", 10), ["short"]);
        assert_eq!(pieces("hello big world", 10), ["hello big ", "world"]);
        let accents = "ééééé"; // two bytes each
        assert_eq!(pieces(accents, 3), ["é", "é", "é", "é", "é"]);
        assert_eq!(pieces("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    }
}
