use crate::field::{Device, Flag, Limit, OptText, Required, Text, Texts};
use crate::service::services;
use crate::{Acts, Effect, Envelope, HistoryQuery, Name, ProtoError, Session};

/// The longest text of a post or private message, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// The most posts one `posts` request makes.
pub const MAX_POSTS: usize = 256;
/// The longest topic of a room, in bytes (what IRC networks commonly allow).
pub const MAX_TOPIC_BYTES: usize = 390;

services! {
    /// Records a login of `user` (registering the name on first use).
    Login = "login" (Write, direct: true, acts: Acts::Named, session: Session::Starts) { user: Name },
    /// Lists registered users.
    Users = "users" (Read, direct: true, acts: Acts::Anyone) {},
    /// Creates a channel; `user`, when given (ours), owns it: only they may delete it.
    Channel = "channel" (Write, direct: true, acts: Acts::Person("user")) {
        channel: Name,
        user: Option<Name>,
    },
    /// Lists channels.
    Channels = "channels" (Read, direct: true, acts: Acts::Anyone) {},
    /// Posts `message` to `channel` as `user`.
    Publish = "publish" (Write, direct: true, acts: Acts::Person("user")) {
        user: Name,
        channel: Name,
        message: String as Text<MAX_TEXT_BYTES>,
    },
    /// Posts each of `messages` to `channel` as `user`, one after another, in the order given
    /// (ours): a front end sends what a person pasted in one request, and no server can take
    /// its lines out of order. Each is a post of its own, as if published.
    Posts = "posts" (Write, direct: true, acts: Acts::Person("user")) {
        user: Name,
        channel: Name,
        messages: Vec<String> as Texts<MAX_TEXT_BYTES, MAX_POSTS>,
    },
    /// Sends a private message.
    Message = "message" (Write, direct: true, acts: Acts::Person("src")) {
        src: Name,
        dst: Name,
        message: String as Text<MAX_TEXT_BYTES>,
    },
    /// A conversation's messages, a page at a time (our addition).
    History = "history" (ReadStored, direct: true, acts: Acts::History) {
        query: HistoryQuery,
    },
    /// Gives `user` a password (in the request's `password`), making the name an account that
    /// only its sessions may use (ours).
    Register = "register" (Write, direct: true, acts: Acts::Named) { user: Name },
    /// Ends the session whose `token` the request carries (ours).
    Logout = "logout" (Write, direct: true, acts: Acts::Person("user"), session: Session::Ends) { user: Name },
    /// Changes an account's password from the request's `password` to `new`, ending every
    /// other session (ours).
    Password = "password" (Write, direct: true, acts: Acts::Person("user")) {
        user: Name,
        new: Secret as Required<MAX_PASSWORD_BYTES>,
    },
    /// Closes an account, proven by the request's `password` (ours).
    Unregister = "unregister" (Write, direct: true, acts: Acts::Person("user"), session: Session::Ends) { user: Name },
    /// A client is alive: `user` is online from `device` (ours). Presence lives in memory and
    /// travels between servers on its own (not in the log).
    Beat = "beat" (Read, direct: true, acts: Acts::FrontEnd) {
        user: Name,
        /// Which of the person's clients beats; each is online on its own.
        device: String as Device,
        /// The client is closing: offline at once, not after the timeout.
        leaving: bool as Flag,
    },
    /// The text of a private message whose publication was sealed (ours).
    Unseal = "unseal" (ReadStored, direct: true, acts: Acts::FrontEnd) {
        user: Name,
        id: EventRef,
    },
    /// `user` joins `channel`, and gets its newest `limit` posts (ours): a write whose answer
    /// reads the channel's newest posts once the write is stored.
    Join = "join" (Write, direct: true, acts: Acts::Person("user"), session: Session::Follows("channel")) {
        user: Name,
        channel: Name,
        limit: usize as Limit<0>,
    },
    /// `user` leaves `channel` (ours).
    Leave = "leave" (Write, direct: true, acts: Acts::Person("user"), session: Session::Unfollows("channel")) {
        user: Name,
        channel: Name,
    },
    /// Who is in `channel` (ours).
    Members = "members" (Read, direct: true, acts: Acts::Anyone) { channel: Name },
    /// The channels `user` is in (ours).
    Joined = "joined" (Read, direct: true, acts: Acts::Person("user")) { user: Name },
    /// `channel`'s owner deletes it, on every server at once (ours): answered once every
    /// server has agreed (two-phase commit), and the decision is on disk.
    Delete = "delete" (Write, direct: true, acts: Acts::Person("user")) {
        user: Name,
        channel: Name,
    },
    /// `user` has read up to message `id` in its channel or conversation (ours).
    Read = "read" (Write, direct: true, acts: Acts::Person("user")) { user: Name, id: EventRef },
    /// How many messages lie after `user`'s read marker, per room and conversation (ours).
    Unread = "unread" (ReadStored, direct: true, acts: Acts::Person("user")) { user: Name },
    /// What `user`'s `device` has not taken yet of everything addressed to them: private
    /// messages and the posts of their rooms, after the device's cursor (ours).
    Inbox = "inbox" (ReadStored, direct: true, acts: Acts::Device) {
        user: Name,
        device: String as Device,
        limit: usize as Limit<1>,
    },
    /// `user`'s `device` has taken its inbox up to `cursor` (ours).
    Taken = "taken" (Write, direct: true, acts: Acts::Device) {
        user: Name,
        device: String as Device,
        cursor: crate::peer::Vector,
    },
    /// `user`'s settings, changing those given (ours): `receipts`, whether others learn when
    /// `user` has read their messages.
    Settings = "settings" (Write, direct: true, acts: Acts::Person("user")) {
        user: Name,
        receipts: Option<bool>,
    },
    /// Who has taken and read message `id`, one of `user`'s own (ours).
    Receipts = "receipts" (ReadStored, direct: true, acts: Acts::Person("user")) {
        user: Name,
        id: EventRef,
    },
    /// `user`, who is in `channel`, sets its topic; without `topic`, clears it (ours). Shown
    /// by `join` and `members`, and published to the room.
    Topic = "topic" (Write, direct: true, acts: Acts::Person("user")) {
        user: Name,
        channel: Name,
        topic: Option<String> as OptText<MAX_TOPIC_BYTES>,
    },
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

/// The longest request id, in bytes.
pub const MAX_REQUEST_ID: usize = 64;
/// The longest request id an event carries: a client's, or one of the posts a `posts` request
/// makes (see [`post_request`]).
pub const MAX_EVENT_REQUEST: usize = MAX_REQUEST_ID + 4;

/// The request id that the `i`th of the `n` posts made by a `posts` request with id `request`
/// carries: the last carries the request's own (holding it means holding them all, as each
/// origin's events are taken in in order), each other one its own, so that a retry that
/// reaches a server holding only some of them makes the others alone.
pub fn post_request(request: &str, i: usize, n: usize) -> String {
    if i + 1 == n {
        request.to_owned()
    } else {
        format!("{request}#{i}")
    }
}

/// The `request_id` a message carries, if it is a well-formed one: what an answer repeats.
pub fn request_id_of(m: &crate::Map) -> Option<String> {
    request_id(m, "request_id", MAX_REQUEST_ID).ok().flatten()
}

/// An optional request id field: a non-empty string of at most `max` bytes.
pub(crate) fn request_id(
    m: &crate::Map,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, ProtoError> {
    match m.opt_str(field)? {
        None => Ok(None),
        Some("") => Err(ProtoError::Empty { field }),
        Some(s) if s.len() > max => Err(ProtoError::TextTooLong { field, max }),
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
            request_id: request_id(d, "request_id", MAX_REQUEST_ID)?,
            token: secret(d, "token", MAX_TOKEN_BYTES)?,
            password: secret(d, "password", MAX_PASSWORD_BYTES)?,
        };
        let req = Request::parse_data(&env.service, d)?;
        Ok((req, meta))
    }

    /// The service name, as the reply repeats it.
    pub fn service(&self) -> &'static str {
        self.declared().name
    }

    /// What the request does to a server's state, from its declaration.
    pub fn effect(&self) -> Effect {
        self.declared().effect
    }

    /// Whether it makes an event (and so carries a request id, and is answered once durable).
    pub fn writes(&self) -> bool {
        self.effect() == Effect::Write
    }

    /// The envelope a client sends for this request (without timestamp and clock).
    pub fn to_envelope(&self) -> Envelope {
        let mut env = Envelope::new(self.service());
        self.put(&mut env.data.0);
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    #[test]
    fn every_request_round_trips() {
        let all = crate::examples::requests();
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

    /// The fields a declaration names (whom it acts as, the channel a session follows) are
    /// fields of its request, and only a service that names a person starts a session.
    #[test]
    fn declared_fields_are_the_requests_own() {
        let all = crate::examples::requests();
        let mut present = std::collections::BTreeSet::new();
        for req in &all {
            for (k, _) in &req.to_envelope().data.0 {
                if let Some(k) = k.as_str() {
                    present.insert((req.service(), k.to_owned()));
                }
            }
        }
        for s in crate::SERVICES {
            let mut named = Vec::new();
            if let Acts::Person(f) = s.acts {
                named.push(f);
            }
            match s.session {
                Session::Follows(f) | Session::Unfollows(f) => named.push(f),
                Session::Starts => assert_eq!(s.acts, Acts::Named, "{}", s.name),
                Session::Keeps | Session::Ends => {}
            }
            for f in named {
                assert!(
                    present.contains(&(s.name, f.to_owned())),
                    "`{}` declares field `{f}`, which no example of its request holds",
                    s.name
                );
            }
        }
    }

    fn posts(messages: Value) -> Envelope {
        Envelope::new("posts")
            .with("user", "ana")
            .with("channel", "c")
            .with("messages", messages)
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
            (
                posts(Value::from("one line")),
                "field `messages` must be a list of texts",
            ),
            (
                posts(Value::Array(vec![])),
                "field `messages` must not be empty",
            ),
            (
                posts(Value::Array(vec![Value::from("ok"), Value::from(5)])),
                "field `messages` must be a list of texts",
            ),
            (
                posts(Value::Array(vec![Value::from("ok"), Value::from(" ")])),
                "field `messages` must not be empty",
            ),
            (
                posts(Value::Array(vec![Value::from(
                    "x".repeat(MAX_TEXT_BYTES + 1),
                )])),
                "longer than",
            ),
            (
                posts(Value::Array(vec![Value::from("x"); MAX_POSTS + 1])),
                "holds more than 256 items",
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
