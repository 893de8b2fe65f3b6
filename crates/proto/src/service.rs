//! The one list of client services: each one's name, what it does to the server's state, and
//! whether a client may also ask a server's peer endpoint for it directly. Servers, clients
//! and the broker's neighbours all ask this list; nothing else names the services or decides
//! which of them write.

/// What a service does to a server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Answered from memory; changes nothing.
    Read,
    /// Makes an event: answered once it is on disk and the live peers have it. A retry with
    /// the same request id takes effect once.
    Write,
    /// Answered from the store after the batch it arrived in commits, so that it sees every
    /// write acknowledged before it.
    ReadStored,
}

/// One client service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub effect: Effect,
    /// Whether a client may send it straight to a server's peer endpoint (as well as through
    /// the broker).
    pub direct: bool,
}

/// Every client service.
pub const SERVICES: [Service; 24] = [
    Service {
        name: "login",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "users",
        effect: Effect::Read,
        direct: true,
    },
    Service {
        name: "channel",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "channels",
        effect: Effect::Read,
        direct: true,
    },
    Service {
        name: "publish",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "message",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "history",
        effect: Effect::ReadStored,
        direct: true,
    },
    Service {
        name: "register",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "logout",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "password",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "unregister",
        effect: Effect::Write,
        direct: true,
    },
    // Presence lives in memory and travels between servers on its own (not in the log).
    Service {
        name: "beat",
        effect: Effect::Read,
        direct: true,
    },
    Service {
        name: "unseal",
        effect: Effect::ReadStored,
        direct: true,
    },
    // A join writes, and its answer reads the channel's newest posts once the write is stored.
    Service {
        name: "join",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "leave",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "members",
        effect: Effect::Read,
        direct: true,
    },
    Service {
        name: "joined",
        effect: Effect::Read,
        direct: true,
    },
    // Answered once every server has agreed (two-phase commit), and the decision is on disk.
    Service {
        name: "delete",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "read",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "unread",
        effect: Effect::ReadStored,
        direct: true,
    },
    Service {
        name: "inbox",
        effect: Effect::ReadStored,
        direct: true,
    },
    Service {
        name: "taken",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "settings",
        effect: Effect::Write,
        direct: true,
    },
    Service {
        name: "receipts",
        effect: Effect::ReadStored,
        direct: true,
    },
];

/// The service called `name`, if there is one.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}
