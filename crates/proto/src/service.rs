//! What a client service is: its name, what it does to the server's state, whether a client
//! may also ask a server's peer endpoint for it directly, and who it acts as. Each service is
//! declared once, with its request, in `request.rs` (the `services!` macro below); servers,
//! clients, the peer endpoint and the web gateway all ask that one list, and nothing else
//! names the services or decides which of them write.

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

/// Who a request acts as, and how a front end that holds a person's session (the web
/// gateway) fills it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acts {
    /// Anyone may ask; nobody is named (`users`, `channels`, `members`).
    Anyone,
    /// The person the request names, who proves nothing yet (`login`, `register`).
    Named,
    /// The session's person, in this field.
    Person(&'static str),
    /// The session's person in `user`, and its device in `device` (`inbox`, `taken`).
    Device,
    /// `history`: a channel's is anyone's; a conversation is the person's own, in `user`.
    History,
    /// Sent by a front end on a person's behalf, never on a request of theirs (`beat`,
    /// `unseal`).
    FrontEnd,
}

/// What a service's success does to a session that a front end keeps for a person (the web
/// gateway; IRC will too): declared with the service, so a front end matches this, never
/// service names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Nothing.
    Keeps,
    /// Starts one for the person named (`login`): it carries the session's token and device.
    Starts,
    /// Ends it (`logout`, `unregister`).
    Ends,
    /// The session follows the channel in this field from now on (`join`).
    Follows(&'static str),
    /// It stops following the channel in this field (`leave`).
    Unfollows(&'static str),
}

/// One client service, as declared with its request in `request.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub effect: Effect,
    /// Whether a client may send it straight to a server's peer endpoint (as well as through
    /// the broker).
    pub direct: bool,
    /// Who it acts as.
    pub acts: Acts,
    /// What it does to a front end's session.
    pub session: Session,
}

pub use crate::request::SERVICES;

/// The service called `name`, if there is one.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

/// Whether service `name` starts a session (`login`): its answer carries what a new session
/// needs, and a retry of one that checks a password is never answered as a repeat.
pub fn starts_session(name: &str) -> bool {
    service(name).is_some_and(|s| s.session == Session::Starts)
}

/// Declares the client services: for each, its request (a variant of `Request` and its
/// fields, each with its codec as in `event_kinds!`), its name, its effect, whether a client
/// may send it to a server directly, who it acts as, and (when it does anything) what it does
/// to a front end's session. From it come `Request`, its parsing,
/// its name, its encoding and the one list `SERVICES`; nothing else names a service's fields.
/// A service's session effect: the one declared, or `Session::Keeps`.
#[macro_export]
#[doc(hidden)]
macro_rules! session_of {
    () => {
        $crate::Session::Keeps
    };
    ($session:expr) => {
        $session
    };
}

macro_rules! services {
    (
        $(
            $(#[$meta:meta])*
            $variant:ident = $name:literal ($effect:ident, direct: $direct:literal, acts: $acts:expr $(, session: $session:expr)?) {
                $( $(#[$field_meta:meta])* $field:ident : $ty:ty $(as $codec:ty)? ),* $(,)?
            }
        ),* $(,)?
    ) => {
        /// A client request, parsed and validated: holding one proves every field is
        /// well-formed.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $(
                $(#[$meta])*
                $variant { $( $(#[$field_meta])* $field: $ty, )* },
            )*
        }

        /// Every client service, in the order declared.
        pub const SERVICES: &[$crate::Service] = &[
            $(
                $crate::Service {
                    name: $name,
                    effect: $crate::Effect::$effect,
                    direct: $direct,
                    acts: $acts,
                    session: $crate::session_of!($($session)?),
                },
            )*
        ];

        impl Request {
            /// The service's declaration.
            pub fn declared(&self) -> $crate::Service {
                match self {
                    $(
                        Request::$variant { .. } => $crate::Service {
                            name: $name,
                            effect: $crate::Effect::$effect,
                            direct: $direct,
                            acts: $acts,
                            session: $crate::session_of!($($session)?),
                        },
                    )*
                }
            }

            /// Reads the request for service `name` from `d`.
            fn parse_data(name: &str, d: &$crate::Map) -> Result<Request, $crate::ProtoError> {
                Ok(match name {
                    $(
                        $name => Request::$variant {
                            $(
                                $field: <$crate::codec_of!($($codec)?) as $crate::field::Codec<$ty>>::get(
                                    d, stringify!($field),
                                )?,
                            )*
                        },
                    )*
                    other => return Err($crate::ProtoError::UnknownService(other.to_owned())),
                })
            }

            /// Adds the request's fields to `out`.
            fn put(&self, out: &mut Vec<(rmpv::Value, rmpv::Value)>) {
                match self {
                    $(
                        Request::$variant { $($field),* } => {
                            $(
                                <$crate::codec_of!($($codec)?) as $crate::field::Codec<$ty>>::put(
                                    $field, stringify!($field), out,
                                );
                            )*
                        }
                    )*
                }
            }
        }
    };
}

pub(crate) use services;
