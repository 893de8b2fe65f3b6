use palaver_proto::Name;

/// One state change, as stored and (later) replicated.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The server that accepted the event first.
    pub origin: String,
    /// Position in the origin's sequence; `(origin, seq)` is the event's unique id.
    pub seq: u64,
    /// Lamport time at the origin; with `origin` it orders events the same way everywhere.
    pub lamport: u64,
    /// The origin's physical time when it accepted the event, seconds since the Unix epoch.
    pub timestamp: f64,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Login {
        user: Name,
    },
    Channel {
        channel: Name,
    },
    Post {
        user: Name,
        channel: Name,
        message: String,
    },
    Direct {
        src: Name,
        dst: Name,
        message: String,
    },
}

impl Event {
    /// The event's id as the protocol shows it: `origin:seq`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.origin, self.seq)
    }
}
