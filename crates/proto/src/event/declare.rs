//! The macro that turns the list of event kinds (`kinds.rs`) into types and their codec.
//!
//! From one declaration per family and per kind it derives: an enum per family, the top
//! [`super::EventKind`] that holds one family, [`super::Family`], each kind's name, its map
//! entries (what the store keeps and servers pass on), its reading and validation, and the
//! bound on its encoded size. Nothing else names a kind's fields or its string, so a new kind
//! is one declaration, and every `match` over a family is checked by the compiler.

/// Declares the families of event kinds and the kinds in each:
///
/// ```text
/// Family(FamilyKind) {
///     Variant = "name" { field: Type, other: String as Text<MAX> },
/// }
/// ```
///
/// A field's codec is [`crate::field::Plain`] unless an `as` names another.
macro_rules! event_kinds {
    (
        $(
            $(#[$fmeta:meta])*
            $family:ident($fty:ident) {
                $(
                    $(#[$vmeta:meta])*
                    $variant:ident = $name:literal {
                        $( $(#[$field_meta:meta])* $field:ident : $ty:ty $(as $codec:ty)? ),* $(,)?
                    }
                ),* $(,)?
            }
        )*
    ) => {
        /// What happened: one kind of one family. Each family's code (its fold in the
        /// server's memory, its projections in the store) matches its own kinds exhaustively.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventKind {
            $( $(#[$fmeta])* $family($fty), )*
        }

        /// The families of event kinds, for code that routes an event without reading it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Family {
            $( $(#[$fmeta])* $family, )*
        }

        impl Family {
            /// Every family.
            pub const ALL: &'static [Family] = &[$(Family::$family),*];

            /// The names of the family's kinds.
            pub fn kinds(self) -> &'static [&'static str] {
                match self {
                    $( Family::$family => $fty::NAMES, )*
                }
            }

            /// The family of the kind called `name`, if there is such a kind.
            pub fn of(name: &str) -> Option<Family> {
                Family::ALL.iter().copied().find(|f| f.kinds().contains(&name))
            }
        }

        impl EventKind {
            /// The name of every kind, as events carry it and the store keeps it.
            pub const NAMES: &'static [&'static str] = &[$($($name,)*)*];

            /// The kind's name, as events carry it and the store keeps it.
            pub fn name(&self) -> &'static str {
                match self {
                    $( EventKind::$family(k) => k.name(), )*
                }
            }

            /// The kind's family.
            pub fn family(&self) -> Family {
                match self {
                    $( EventKind::$family(_) => Family::$family, )*
                }
            }

            /// The kind's own fields, as map entries: what the store keeps, what servers pass
            /// on, and (for posts and private messages) what publications and history show.
            pub(crate) fn fields(&self) -> Vec<(rmpv::Value, rmpv::Value)> {
                let mut out = Vec::with_capacity(4);
                match self {
                    $( EventKind::$family(k) => k.put(&mut out), )*
                }
                out
            }

            /// The bytes of the kind's strings once encoded (see `Event::size_bound`).
            pub(crate) fn strings(&self) -> usize {
                match self {
                    $( EventKind::$family(k) => k.strings(), )*
                }
            }

            /// Reads the kind called `name` from the event's map, validating every field.
            pub(crate) fn decode(name: &str, m: &$crate::Map) -> Result<EventKind, $crate::ProtoError> {
                $(
                    if let Some(kind) = $fty::decode(name, m) {
                        return kind.map(EventKind::$family);
                    }
                )*
                Err($crate::ProtoError::UnknownService(format!("event kind {name}")))
            }
        }

        $(
            $(#[$fmeta])*
            #[derive(Debug, Clone, PartialEq)]
            pub enum $fty {
                $(
                    $(#[$vmeta])*
                    $variant { $( $(#[$field_meta])* $field: $ty, )* },
                )*
            }

            impl $fty {
                /// The names of this family's kinds.
                pub const NAMES: &'static [&'static str] = &[$($name),*];

                /// The kind's name.
                pub fn name(&self) -> &'static str {
                    match self {
                        $( $fty::$variant { .. } => $name, )*
                    }
                }

                fn put(&self, out: &mut Vec<(rmpv::Value, rmpv::Value)>) {
                    match self {
                        $(
                            $fty::$variant { $($field),* } => {
                                $(
                                    <$crate::codec_of!($($codec)?) as $crate::field::Codec<$ty>>::put(
                                        $field, stringify!($field), out,
                                    );
                                )*
                            }
                        )*
                    }
                }

                fn strings(&self) -> usize {
                    match self {
                        $(
                            $fty::$variant { $($field),* } => 0 $(
                                + <$crate::codec_of!($($codec)?) as $crate::field::Codec<$ty>>::size($field)
                            )*,
                        )*
                    }
                }

                /// The kind called `name` of this family, read from `m`; `None` when the
                /// family has no such kind.
                fn decode(name: &str, m: &$crate::Map) -> Option<Result<$fty, $crate::ProtoError>> {
                    let read: fn(&$crate::Map) -> Result<$fty, $crate::ProtoError> = match name {
                        $(
                            $name => |m: &$crate::Map| -> Result<$fty, $crate::ProtoError> {
                                Ok($fty::$variant {
                                    $(
                                        $field: <$crate::codec_of!($($codec)?) as $crate::field::Codec<$ty>>::get(
                                            m, stringify!($field),
                                        )?,
                                    )*
                                })
                            },
                        )*
                        _ => return None,
                    };
                    Some(read(m))
                }
            }

            impl From<$fty> for EventKind {
                fn from(kind: $fty) -> EventKind {
                    EventKind::$family(kind)
                }
            }
        )*
    };
}

pub(crate) use event_kinds;
