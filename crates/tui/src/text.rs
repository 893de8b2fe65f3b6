//! Text as the terminal draws it: people's text made safe (nothing a terminal would act on
//! reaches it raw), measured in cells (wide characters take two, combining marks none), and
//! wrapped to a width without splitting a character cluster.

use std::borrow::Cow;

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// `text` with control characters (escape, newlines, bidi overrides…) shown as escapes, so that
/// a message can neither move the cursor nor change colours nor break the layout.
pub fn safe(text: &str) -> Cow<'_, str> {
    palaver_proto::printable(text)
}

/// How many cells `text` takes, cluster by cluster (as ratatui places them).
pub fn width(text: &str) -> usize {
    text.graphemes(true).map(UnicodeWidthStr::width).sum()
}

/// `text` cut into rows of at most `cols` cells: at spaces where it can (a word keeps its
/// punctuation), inside a word where a word is longer than a row, never inside a character
/// cluster. A cluster wider than `cols`
/// gets a row of its own. An empty text is one empty row.
pub fn wrap(text: &str, cols: usize) -> Vec<String> {
    let cols = cols.max(1);
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut used = 0;
    // Each chunk is a word with the spaces after it: punctuation stays with its word.
    for chunk in text.split_inclusive(' ') {
        let word = chunk.trim_end_matches(' ');
        let (w, full) = (width(word), width(chunk));
        if used + w <= cols {
            row.push_str(chunk);
            used += full;
            continue;
        }
        if w <= cols && used > 0 {
            // A space at the end of a row is dropped, not carried to the next.
            rows.push(std::mem::take(&mut row).trim_end_matches(' ').to_owned());
            row.push_str(chunk);
            used = full;
            continue;
        }
        // Longer than a row: cluster by cluster.
        for g in chunk.graphemes(true) {
            let gw = UnicodeWidthStr::width(g);
            if used + gw > cols && used > 0 {
                rows.push(std::mem::take(&mut row).trim_end_matches(' ').to_owned());
                used = 0;
                if g == " " {
                    continue;
                }
            }
            row.push_str(g);
            used += gw;
        }
    }
    rows.push(row.trim_end_matches(' ').to_owned());
    rows
}

/// `text` cut to at most `cols` cells, with `…` when it was longer.
pub fn fit(text: &str, cols: usize) -> String {
    if width(text) <= cols {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for g in text.graphemes(true) {
        let gw = UnicodeWidthStr::width(g);
        if used + gw + 1 > cols {
            break;
        }
        out.push_str(g);
        used += gw;
    }
    if cols > 0 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let s = safe("hi\x1b[2Jthere\r\nnext\u{202e}");
        assert!(
            !s.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{s:?}"
        );
    }

    #[test]
    fn widths_count_cells() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("日本"), 4);
        assert_eq!(width("e\u{301}"), 1, "a combining mark takes no cell");
        assert_eq!(width("🙂"), 2);
    }

    #[test]
    fn wrapping_keeps_every_row_within_the_width_and_loses_nothing() {
        let text = "the quick brown fox jumps over the lazy dog 日本語のテキスト e\u{301}e\u{301} 🙂🙂🙂 supercalifragilistic";
        for cols in 1..30 {
            let rows = wrap(text, cols);
            for r in &rows {
                assert!(
                    width(r) <= cols || r.graphemes(true).count() == 1,
                    "{cols}: {r:?}"
                );
            }
            let joined: String = rows.concat();
            let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            assert_eq!(squeeze(&joined), squeeze(text), "{cols}");
        }
        assert_eq!(wrap("", 10), vec![String::new()]);
        assert_eq!(wrap("hello world", 5), vec!["hello", "world"]);
        assert_eq!(wrap("by itself, so", 9), vec!["by", "itself,", "so"]);
    }

    #[test]
    fn fitting_cuts_with_an_ellipsis() {
        assert_eq!(fit("general", 10), "general");
        assert_eq!(fit("general-chat", 6), "gener…");
        assert_eq!(fit("日本語", 4), "日…");
    }
}
