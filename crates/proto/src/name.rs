use std::fmt;

/// The longest user or channel name, in bytes (names are ASCII, so also in characters).
pub const MAX_NAME_LEN: usize = 32;

/// Topics that carry the system's own traffic; nobody may take them as a name.
pub const RESERVED_NAMES: [&str; 2] = [crate::TOPIC_SERVERS, "replica"];

/// A user, channel or server name. Users and channels share one namespace because both are
/// publication topics.
///
/// A name is 1 to 32 ASCII characters: letters, digits, `_`, `-` and `.`, starting with a letter
/// or a digit. Names are case-sensitive, like ZeroMQ topics; the reserved names are refused in
/// any case. Holding a `Name` proves all of this.
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
    #[error("name may hold only letters, digits, '_', '-' and '.' (found {0:?})")]
    BadChar(char),
    #[error("name `{0}` is reserved")]
    Reserved(String),
}

impl Name {
    /// Checks `s` against the naming rules.
    ///
    /// # Errors
    /// Returns the first rule that `s` breaks.
    pub fn parse(s: &str) -> Result<Name, NameError> {
        let first = s.chars().next().ok_or(NameError::Empty)?;
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !first.is_ascii_alphanumeric() {
            return Err(NameError::BadStart);
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(NameError::BadChar(bad));
        }
        if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(s)) {
            return Err(NameError::Reserved(s.to_owned()));
        }
        Ok(Name(s.to_owned()))
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
    fn refuses_bad_names() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse(&"a".repeat(33)), Err(NameError::TooLong));
        assert_eq!(Name::parse("-x"), Err(NameError::BadStart));
        assert_eq!(Name::parse("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(Name::parse("ação"), Err(NameError::BadChar('ç')));
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
