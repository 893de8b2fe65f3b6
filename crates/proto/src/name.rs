use std::fmt;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// The longest user or channel name, in characters (Unicode scalar values, after NFC).
pub const MAX_NAME_LEN: usize = 32;

/// The longest name in bytes: [`MAX_NAME_LEN`] characters of up to four bytes each.
pub const MAX_NAME_BYTES: usize = 4 * MAX_NAME_LEN;

/// Topics that carry the system's own traffic; nobody may take them as a name.
pub const RESERVED_NAMES: [&str; 3] = [crate::TOPIC_SERVERS, crate::TOPIC_PRESENCE, "replica"];

/// A user, channel or server name. Users and channels share one namespace because both are
/// publication topics.
///
/// The rule, checked on the name in Unicode normalisation form C (NFC), which is the form kept
/// and compared (so `João` typed with a combining tilde is the same name as with `ã`):
/// - 1 to 32 characters;
/// - each a letter or a digit of any script, a combining mark (after the first), `_`, `-` or
///   `.`: so no spaces, commas, `#`, `:`, `@`, symbols, emoji or control characters, which keeps
///   every name a safe topic, a safe IRC nickname or channel after a `#`, and a safe thing to
///   print;
/// - starting with a letter or a digit;
/// - case-sensitive, like ZeroMQ topics; the reserved names are refused in any case.
///
/// Holding a `Name` proves all of this.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("name must start with a letter or a digit")]
    BadStart,
    #[error("name may hold only letters, digits, '_', '-' and '.' (found {})", .0.escape_default())]
    BadChar(char),
    #[error("name `{0}` is reserved")]
    Reserved(String),
}

impl Name {
    /// Checks `s` against the naming rules, and keeps it in NFC.
    ///
    /// # Errors
    /// Returns the first rule that `s` breaks.
    pub fn parse(s: &str) -> Result<Name, NameError> {
        // Normalising can lengthen a string a little; a name this long cannot pass anyway.
        if s.len() > 4 * MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        let s: String = match is_nfc_quick(s.chars()) {
            IsNormalized::Yes => s.to_owned(),
            _ => s.nfc().collect(),
        };
        let first = s.chars().next().ok_or(NameError::Empty)?;
        if s.chars().count() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !first.is_alphanumeric() {
            return Err(NameError::BadStart);
        }
        if let Some(bad) = s.chars().find(|c| {
            !(c.is_alphanumeric() || is_combining_mark(*c) || matches!(c, '_' | '-' | '.'))
        }) {
            return Err(NameError::BadChar(bad));
        }
        if RESERVED_NAMES.iter().any(|r| *r == s.to_lowercase()) {
            return Err(NameError::Reserved(s));
        }
        Ok(Name(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "ana",
            "Bob",
            "general",
            "dev-ops",
            "x.y_z",
            "9lives",
            &"a".repeat(32),
        ] {
            assert_eq!(Name::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn letters_of_any_script_compared_in_nfc() {
        for ok in [
            "João",
            "Zoë",
            "Σωκράτης",
            "東京",
            "नमस्ते",
            "ana_٣",
            &"é".repeat(32),
        ] {
            assert_eq!(Name::parse(ok).unwrap().as_str(), ok);
        }
        // A combining tilde is composed: one name, however it was typed.
        let decomposed = Name::parse("Joa\u{303}o").unwrap();
        assert_eq!(decomposed, Name::parse("João").unwrap());
        assert_eq!(decomposed.as_str().chars().count(), 4);
        assert!(matches!(
            Name::parse("SERVERS"),
            Err(NameError::Reserved(_))
        ));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse(&"a".repeat(33)), Err(NameError::TooLong));
        assert_eq!(Name::parse("-x"), Err(NameError::BadStart));
        assert_eq!(Name::parse("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(
            Name::parse("a\u{1b}[31m"),
            Err(NameError::BadChar('\u{1b}'))
        );
        assert_eq!(Name::parse("a\nb"), Err(NameError::BadChar('\n')));
        assert_eq!(Name::parse("a,b"), Err(NameError::BadChar(',')));
        assert_eq!(Name::parse("#chan"), Err(NameError::BadStart));
        assert_eq!(
            Name::parse("a\u{202e}b"),
            Err(NameError::BadChar('\u{202e}'))
        );
        assert_eq!(Name::parse("ana😀"), Err(NameError::BadChar('😀')));
        assert_eq!(Name::parse("\u{301}a"), Err(NameError::BadStart));
        assert_eq!(Name::parse(&"é".repeat(33)), Err(NameError::TooLong));
        assert!(NameError::BadChar('\u{7}').to_string().contains("\\u{7}"));
        assert_eq!(Name::parse("a:b"), Err(NameError::BadChar(':')));
        assert!(matches!(
            Name::parse("servers"),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            Name::parse("REPLICA"),
            Err(NameError::Reserved(_))
        ));
    }
}
