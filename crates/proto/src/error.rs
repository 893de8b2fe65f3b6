use crate::name::NameError;

/// Everything that can be wrong with a message that arrived from the network.
///
/// The `Display` text is what the peer sees as `description`, so it says what was wrong with
/// the request, never anything about the server's internals.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {size} bytes is larger than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("not valid MessagePack: {0}")]
    Malformed(String),
    #[error("trailing bytes after the MessagePack map")]
    Trailing,
    #[error("this request is JSON; Palaver expects MessagePack: one map {{\"service\": <name>, \"data\": {{...}}}} encoded as MessagePack")]
    Json,
    #[error("message must be a MessagePack map")]
    NotAMap,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}`: {source}")]
    InvalidName {
        field: &'static str,
        source: NameError,
    },
    #[error("field `{field}` must be a whole number from 0 to {max}")]
    OutOfRange { field: &'static str, max: u64 },
    #[error("field `{field}` is longer than {max} bytes")]
    TextTooLong { field: &'static str, max: usize },
    #[error("field `{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("field `{field}` holds more than {max} items")]
    TooMany { field: &'static str, max: usize },
    #[error("unknown service `{0}`")]
    UnknownService(String),
}
