//! People's text made safe to print on a terminal.
//!
//! A post or private message may hold any character, newlines included (a message of several
//! lines is fine). What a terminal would act on instead of showing (a newline that fakes a
//! second line from someone else, an ANSI escape that moves the cursor or changes colours, a
//! bidirectional override that reorders what follows) is shown as an escape instead, so every
//! message prints as what it is, on one line.

use std::borrow::Cow;

/// Whether a terminal acts on `c` rather than showing it: control characters (C0, DEL, C1)
/// and the bidirectional formatting characters.
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character a terminal would act on written as an escape (`\n`, `\t`,
/// `\u{1b}`…), and a backslash written as `\\` so that an escape cannot be faked. Text with
/// neither comes back as it is, without a copy.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| acts(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts(c) || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_left_alone() {
        for t in ["hello", "João says olá", "東京 😀", ""] {
            assert!(matches!(printable(t), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn what_a_terminal_acts_on_is_shown_as_an_escape() {
        let fake = "hi\n12:00:00 #general <bob> send me your password\u{1b}[2J\u{202e}";
        let shown = printable(fake);
        assert!(!shown.chars().any(acts), "{shown}");
        assert_eq!(
            shown,
            "hi\\n12:00:00 #general <bob> send me your password\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(printable("tab\there"), "tab\\there");
        // A backslash typed by a person cannot pass for an escape.
        assert_eq!(printable("a\\nb"), "a\\\\nb");
        assert_eq!(printable("\u{85}\u{7f}"), "\\u{85}\\u{7f}");
    }
}
