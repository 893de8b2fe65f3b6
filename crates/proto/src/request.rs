use crate::{service, Effect, Envelope, HistoryQuery, Name, ProtoError};

/// The longest text of a post or private message, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// A client request, parsed and validated: holding one proves every field is well-formed.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Records a login of `user` (registering the name on first use).
    Login { user: Name },
    /// Lists registered users.
    Users,
    /// Creates a channel; `user`, when given (ours), owns it: only they may delete it.
    Channel { channel: Name, user: Option<Name> },
    /// Lists channels.
    Channels,
    /// Posts `message` to `channel` as `user`.
    Publish {
        user: Name,
        channel: Name,
        message: String,
    },
    /// Sends a private message.
    Message {
        src: Name,
        dst: Name,
        message: String,
    },
    /// A conversation's messages, a page at a time (our addition).
    History(HistoryQuery),
    /// Gives `user` a password (in the request's `password`), making the name an account that
    /// only its sessions may use (ours).
    Register { user: Name },
    /// Ends the session whose `token` the request carries (ours).
    Logout { user: Name },
    /// Changes an account's password from the request's `password` to `new`, ending every
    /// other session (ours).
    Password { user: Name, new: Secret },
    /// Closes an account, proven by the request's `password` (ours).
    Unregister { user: Name },
    /// A client is alive: `user` is online from `device` (ours).
    Beat {
        user: Name,
        /// Which of the person's clients beats; each is online on its own.
        device: String,
        /// The client is closing: offline at once, not after the timeout.
        leaving: bool,
    },
    /// The text of a private message whose publication was sealed (ours).
    Unseal { user: Name, id: EventRef },
    /// `user` joins `channel`, and gets its newest `limit` posts (ours).
    Join {
        user: Name,
        channel: Name,
        limit: usize,
    },
    /// `user` leaves `channel` (ours).
    Leave { user: Name, channel: Name },
    /// Who is in `channel` (ours).
    Members { channel: Name },
    /// The channels `user` is in (ours).
    Joined { user: Name },
    /// `channel`'s owner deletes it, on every server at once (ours).
    Delete { user: Name, channel: Name },
    /// What `user`'s `device` has not taken yet of everything addressed to them: private
    /// messages and the posts of their rooms, after the device's cursor (ours).
    Inbox {
        user: Name,
        device: String,
        limit: usize,
    },
    /// `user` has read up to message `id` in its channel or conversation (ours).
    Read { user: Name, id: EventRef },
    /// How many messages lie after `user`'s read marker, per room and conversation (ours).
    Unread { user: Name },
    /// `user`'s `device` has taken its inbox up to `cursor` (ours).
    Taken {
        user: Name,
        device: String,
        cursor: crate::peer::Vector,
    },
    /// `user`'s settings, changing those given (ours): `receipts`, whether others learn when
    /// `user` has read their messages.
    Settings { user: Name, receipts: Option<bool> },
    /// Who has taken and read message `id`, one of `user`'s own (ours).
    Receipts { user: Name, id: EventRef },
}

/// A secret a request carries (a password): never shown by `Debug`, so never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// An event's id, `origin:seq`, as publications and replies show it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventRef {
    pub origin: String,
    pub seq: u64,
}

impl EventRef {
    /// Reads `origin:seq`.
    ///
    /// # Errors
    /// When it is not a server name, a colon and a positive number.
    pub fn parse(field: &'static str, s: &str) -> Result<EventRef, ProtoError> {
        let wrong = ProtoError::WrongType {
            field,
            expected: "an event id such as `s1:42`",
        };
        let (origin, seq) = s.rsplit_once(':').ok_or(wrong.clone())?;
        let seq = seq
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=crate::MAX_COUNTER).contains(n))
            .ok_or(wrong.clone())?;
        let origin = Name::parse(origin).map_err(|_| wrong)?.to_string();
        Ok(EventRef { origin, seq })
    }
}

impl std::fmt::Display for EventRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.origin, self.seq)
    }
}

/// The longest session token a request may carry, in bytes (ours are 64).
pub const MAX_TOKEN_BYTES: usize = 128;
/// The longest device name a `beat` may carry, in bytes.
pub const MAX_DEVICE_BYTES: usize = 64;
/// The longest password a request may carry, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What every request carries besides its arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestMeta {
    /// The sender's physical time at sending, if it said.
    pub timestamp: Option<f64>,
    /// The sender's Lamport counter (0 when a client sends none).
    pub clock: u64,
    /// A client's id for this request (our addition), the same on every retry: a write with an
    /// id already seen is not done again.
    pub request_id: Option<String>,
    /// A session token from `login` (ours): proves that the request comes from the person it
    /// names, on any service. Needed for names that have a password.
    pub token: Option<Secret>,
    /// A password (ours): for `login` and `register`, and the current one for `password` and
    /// `unregister`.
    pub password: Option<Secret>,
}

/// An optional secret field of at most `max` bytes.
pub(crate) fn secret(
    m: &crate::Map,
    field: &'static str,
    max: usize,
) -> Result<Option<Secret>, ProtoError> {
    match m.opt_str(field)? {
        None => Ok(None),
        Some("") => Err(ProtoError::Empty { field }),
        Some(s) if s.len() > max => Err(ProtoError::TextTooLong { field, max }),
        Some(s) => Ok(Some(Secret::new(s))),
    }
}

/// A client's `device`: at most [`MAX_DEVICE_BYTES`], empty when absent.
fn device(d: &crate::Map) -> Result<String, ProtoError> {
    match d.opt_str("device")? {
        None => Ok(String::new()),
        Some(s) if s.len() > MAX_DEVICE_BYTES => Err(ProtoError::TextTooLong {
            field: "device",
            max: MAX_DEVICE_BYTES,
        }),
        Some(s) => Ok(s.to_owned()),
    }
}

/// The longest request id, in bytes.
pub const MAX_REQUEST_ID: usize = 64;

/// The `request_id` a message carries, if it is a well-formed one: what an answer repeats.
pub fn request_id_of(m: &crate::Map) -> Option<String> {
    request_id(m, "request_id").ok().flatten()
}

/// An optional request id field: a non-empty string of at most [`MAX_REQUEST_ID`] bytes.
pub(crate) fn request_id(
    m: &crate::Map,
    field: &'static str,
) -> Result<Option<String>, ProtoError> {
    match m.opt_str(field)? {
        None => Ok(None),
        Some("") => Err(ProtoError::Empty { field }),
        Some(s) if s.len() > MAX_REQUEST_ID => Err(ProtoError::TextTooLong {
            field,
            max: MAX_REQUEST_ID,
        }),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

impl Request {
    /// Parses a decoded envelope into a typed request.
    ///
    /// # Errors
    /// When the service is unknown, or a field is missing, mistyped or invalid.
    pub fn parse(env: &Envelope) -> Result<(Request, RequestMeta), ProtoError> {
        let d = &env.data;
        let meta = RequestMeta {
            timestamp: d.timestamp(),
            clock: d.clock()?.unwrap_or(0),
            request_id: request_id(d, "request_id")?,
            token: secret(d, "token", MAX_TOKEN_BYTES)?,
            password: secret(d, "password", MAX_PASSWORD_BYTES)?,
        };
        let req = match env.service.as_str() {
            "login" => Request::Login {
                user: d.name("user")?,
            },
            "users" => Request::Users,
            "channel" => Request::Channel {
                channel: d.name("channel")?,
                user: match d.get("user") {
                    None | Some(rmpv::Value::Nil) => None,
                    Some(_) => Some(d.name("user")?),
                },
            },
            "channels" => Request::Channels,
            "publish" => Request::Publish {
                user: d.name("user")?,
                channel: d.name("channel")?,
                message: d.text("message", MAX_TEXT_BYTES)?,
            },
            "message" => Request::Message {
                src: d.name("src")?,
                dst: d.name("dst")?,
                message: d.text("message", MAX_TEXT_BYTES)?,
            },
            "history" => Request::History(HistoryQuery::parse(env)?),
            "register" => Request::Register {
                user: d.name("user")?,
            },
            "logout" => Request::Logout {
                user: d.name("user")?,
            },
            "password" => Request::Password {
                user: d.name("user")?,
                new: secret(d, "new", MAX_PASSWORD_BYTES)?.ok_or(ProtoError::Missing("new"))?,
            },
            "unregister" => Request::Unregister {
                user: d.name("user")?,
            },
            "beat" => Request::Beat {
                user: d.name("user")?,
                device: device(d)?,
                leaving: d.opt_bool("leaving")?.unwrap_or(false),
            },
            "unseal" => Request::Unseal {
                user: d.name("user")?,
                id: EventRef::parse("id", d.str("id")?)?,
            },
            "join" => Request::Join {
                user: d.name("user")?,
                channel: d.name("channel")?,
                limit: crate::history::limit(d, 0)?,
            },
            "leave" => Request::Leave {
                user: d.name("user")?,
                channel: d.name("channel")?,
            },
            "members" => Request::Members {
                channel: d.name("channel")?,
            },
            "joined" => Request::Joined {
                user: d.name("user")?,
            },
            "delete" => Request::Delete {
                user: d.name("user")?,
                channel: d.name("channel")?,
            },
            "read" => Request::Read {
                user: d.name("user")?,
                id: EventRef::parse("id", d.str("id")?)?,
            },
            "unread" => Request::Unread {
                user: d.name("user")?,
            },
            "inbox" => Request::Inbox {
                user: d.name("user")?,
                device: device(d)?,
                limit: crate::history::limit(d, 1)?,
            },
            "taken" => Request::Taken {
                user: d.name("user")?,
                device: device(d)?,
                cursor: crate::peer::vector_field(
                    d.get("cursor").ok_or(ProtoError::Missing("cursor"))?,
                    "cursor",
                )?,
            },
            "settings" => Request::Settings {
                user: d.name("user")?,
                receipts: d.opt_bool("receipts")?,
            },
            "receipts" => Request::Receipts {
                user: d.name("user")?,
                id: EventRef::parse("id", d.str("id")?)?,
            },
            other => return Err(ProtoError::UnknownService(other.to_owned())),
        };
        Ok((req, meta))
    }

    /// The service name, as the reply repeats it.
    pub fn service(&self) -> &'static str {
        match self {
            Request::Login { .. } => "login",
            Request::Users => "users",
            Request::Channel { .. } => "channel",
            Request::Channels => "channels",
            Request::Publish { .. } => "publish",
            Request::Message { .. } => "message",
            Request::History(_) => "history",
            Request::Register { .. } => "register",
            Request::Logout { .. } => "logout",
            Request::Password { .. } => "password",
            Request::Unregister { .. } => "unregister",
            Request::Beat { .. } => "beat",
            Request::Unseal { .. } => "unseal",
            Request::Join { .. } => "join",
            Request::Leave { .. } => "leave",
            Request::Members { .. } => "members",
            Request::Joined { .. } => "joined",
            Request::Delete { .. } => "delete",
            Request::Read { .. } => "read",
            Request::Unread { .. } => "unread",
            Request::Inbox { .. } => "inbox",
            Request::Taken { .. } => "taken",
            Request::Settings { .. } => "settings",
            Request::Receipts { .. } => "receipts",
        }
    }

    /// What the request does to a server's state, from the one list of services.
    pub fn effect(&self) -> Effect {
        service(self.service()).map_or(Effect::Read, |s| s.effect)
    }

    /// Whether it makes an event (and so carries a request id, and is answered once durable).
    pub fn writes(&self) -> bool {
        self.effect() == Effect::Write
    }

    /// The envelope a client sends for this request (without timestamp and clock).
    pub fn to_envelope(&self) -> Envelope {
        let env = Envelope::new(self.service());
        match self {
            Request::Login { user } => env.with("user", user.as_str()),
            Request::Users | Request::Channels => env,
            Request::Channel { channel, user } => {
                let env = env.with("channel", channel.as_str());
                match user {
                    Some(u) => env.with("user", u.as_str()),
                    None => env,
                }
            }
            Request::Publish {
                user,
                channel,
                message,
            } => env
                .with("user", user.as_str())
                .with("channel", channel.as_str())
                .with("message", message.as_str()),
            Request::Message { src, dst, message } => env
                .with("src", src.as_str())
                .with("dst", dst.as_str())
                .with("message", message.as_str()),
            Request::History(q) => q.fill(env),
            Request::Register { user }
            | Request::Logout { user }
            | Request::Unregister { user } => env.with("user", user.as_str()),
            Request::Password { user, new } => {
                env.with("user", user.as_str()).with("new", new.expose())
            }
            Request::Beat {
                user,
                device,
                leaving,
            } => {
                let env = env
                    .with("user", user.as_str())
                    .with("device", device.as_str());
                if *leaving {
                    env.with("leaving", true)
                } else {
                    env
                }
            }
            Request::Unseal { user, id } => {
                env.with("user", user.as_str()).with("id", id.to_string())
            }
            Request::Join {
                user,
                channel,
                limit,
            } => env
                .with("user", user.as_str())
                .with("channel", channel.as_str())
                .with("limit", u64::try_from(*limit).unwrap_or(u64::MAX)),
            Request::Leave { user, channel } | Request::Delete { user, channel } => env
                .with("user", user.as_str())
                .with("channel", channel.as_str()),
            Request::Members { channel } => env.with("channel", channel.as_str()),
            Request::Joined { user } | Request::Unread { user } => env.with("user", user.as_str()),
            Request::Read { user, id } | Request::Receipts { user, id } => {
                env.with("user", user.as_str()).with("id", id.to_string())
            }
            Request::Settings { user, receipts } => {
                let env = env.with("user", user.as_str());
                match receipts {
                    Some(r) => env.with("receipts", *r),
                    None => env,
                }
            }
            Request::Inbox {
                user,
                device,
                limit,
            } => env
                .with("user", user.as_str())
                .with("device", device.as_str())
                .with("limit", u64::try_from(*limit).unwrap_or(u64::MAX)),
            Request::Taken {
                user,
                device,
                cursor,
            } => env
                .with("user", user.as_str())
                .with("device", device.as_str())
                .with("cursor", crate::peer::vector_value(cursor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let all = [
            Request::Login { user: name("ana") },
            Request::Users,
            Request::Channel {
                channel: name("general"),
                user: None,
            },
            Request::Channel {
                channel: name("general"),
                user: Some(name("ana")),
            },
            Request::Channels,
            Request::Publish {
                user: name("ana"),
                channel: name("general"),
                message: "hi".into(),
            },
            Request::Message {
                src: name("ana"),
                dst: name("bob"),
                message: "psst".into(),
            },
            Request::History(HistoryQuery {
                of: crate::Conversation::Direct(name("ana"), name("bob")),
                limit: 7,
                before: Some(crate::Cursor {
                    lamport: 9,
                    origin: "s2".into(),
                }),
                after: None,
            }),
            Request::History(HistoryQuery {
                of: crate::Conversation::Channel(name("general")),
                limit: crate::DEFAULT_HISTORY,
                before: None,
                after: Some(crate::Cursor {
                    lamport: 3,
                    origin: "s1".into(),
                }),
            }),
            Request::Register { user: name("ana") },
            Request::Logout { user: name("ana") },
            Request::Password {
                user: name("ana"),
                new: Secret::new("new secret"),
            },
            Request::Unregister { user: name("ana") },
            Request::Beat {
                user: name("ana"),
                device: "laptop".into(),
                leaving: true,
            },
            Request::Unseal {
                user: name("ana"),
                id: EventRef {
                    origin: "s2".into(),
                    seq: 9,
                },
            },
            Request::Join {
                user: name("ana"),
                channel: name("general"),
                limit: 20,
            },
            Request::Leave {
                user: name("ana"),
                channel: name("general"),
            },
            Request::Members {
                channel: name("general"),
            },
            Request::Joined { user: name("ana") },
            Request::Delete {
                user: name("ana"),
                channel: name("general"),
            },
            Request::Read {
                user: name("ana"),
                id: EventRef {
                    origin: "s1".into(),
                    seq: 4,
                },
            },
            Request::Unread { user: name("ana") },
            Request::Inbox {
                user: name("ana"),
                device: "phone".into(),
                limit: 100,
            },
            Request::Taken {
                user: name("ana"),
                device: "phone".into(),
                cursor: [("s1".to_owned(), 40), ("s2".to_owned(), 3)].into(),
            },
            Request::Settings {
                user: name("ana"),
                receipts: Some(false),
            },
            Request::Settings {
                user: name("ana"),
                receipts: None,
            },
            Request::Receipts {
                user: name("ana"),
                id: EventRef {
                    origin: "s2".into(),
                    seq: 9,
                },
            },
        ];
        // The list of services and the typed requests name the same services.
        let mut named: Vec<&str> = all.iter().map(Request::service).collect();
        named.dedup();
        let listed: Vec<&str> = crate::SERVICES.iter().map(|s| s.name).collect();
        assert_eq!(named, listed);
        for req in all {
            let mut env = req.to_envelope();
            env.stamp(12.0, 3);
            let env = Envelope::decode(&env.to_bytes()).unwrap();
            let (back, meta) = Request::parse(&env).unwrap();
            assert_eq!(back, req);
            assert_eq!(
                meta,
                RequestMeta {
                    timestamp: Some(12.0),
                    clock: 3,
                    ..RequestMeta::default()
                }
            );
        }
    }

    #[test]
    fn says_what_is_wrong() {
        let cases: Vec<(Envelope, &str)> = vec![
            (Envelope::new("login"), "missing field `user`"),
            (
                Envelope::new("login").with("user", 5),
                "field `user` must be a string",
            ),
            (
                Envelope::new("login").with("user", "servers"),
                "field `user`: name `servers` is reserved",
            ),
            (
                Envelope::new("channel").with("channel", "a b"),
                "field `channel`: name may hold only",
            ),
            (
                Envelope::new("publish")
                    .with("user", "ana")
                    .with("channel", "c")
                    .with("message", ""),
                "field `message` must not be empty",
            ),
            (
                Envelope::new("message")
                    .with("src", "ana")
                    .with("dst", "bob")
                    .with("message", "x".repeat(MAX_TEXT_BYTES + 1)),
                "longer than",
            ),
            (Envelope::new("dance"), "unknown service `dance`"),
            (
                Envelope::new("users").with("clock", "x"),
                "field `clock` must be",
            ),
        ];
        for (env, want) in cases {
            let err = Request::parse(&env).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        // A timestamp is never a reason to refuse: what cannot be read is absent.
        for t in [
            Value::Array(vec![]),
            Value::from("13:31:41"),
            Value::from(true),
        ] {
            let env = Envelope::new("users").with("timestamp", t);
            assert_eq!(Request::parse(&env).unwrap().1.timestamp, None);
        }
    }
}
