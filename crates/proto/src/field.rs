//! How one typed field is read from a MessagePack map, written back, and bounded in size: the
//! codecs from which every event kind's and every client service's encoding is derived (see
//! `event::kinds` and `request`). A declaration names a field, its type and, where the type
//! alone does not say how it is checked, its codec (`message: String as Text<MAX_TEXT_BYTES>`);
//! everything else follows from [`Plain`].

use rmpv::Value;

use crate::{EventRef, Map, Name, ProtoError, Secret};

/// Reads, writes and bounds a field of type `T` under its key.
pub trait Codec<T> {
    /// Adds the field to `out`, or nothing when it is absent (an optional field unset).
    fn put(value: &T, key: &'static str, out: &mut Vec<(Value, Value)>);
    /// Reads and validates the field.
    ///
    /// # Errors
    /// When it is missing (and required), mistyped or invalid; the error names `key`.
    fn get(m: &Map, key: &'static str) -> Result<T, ProtoError>;
    /// The bytes the field's strings take once encoded, beyond a fixed allowance per field
    /// (see `Event::size_bound`).
    fn size(value: &T) -> usize;
}

/// The codec a field's type implies: names, optional names, event ids, counters, flags,
/// cursors, places.
pub struct Plain;

fn entry(key: &'static str, v: impl Into<Value>) -> (Value, Value) {
    (Value::from(key), v.into())
}

impl Codec<Name> for Plain {
    fn put(value: &Name, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, value.as_str()));
    }
    fn get(m: &Map, key: &'static str) -> Result<Name, ProtoError> {
        m.name(key)
    }
    fn size(value: &Name) -> usize {
        value.as_str().len()
    }
}

/// Absent and nil both read as `None`.
impl Codec<Option<Name>> for Plain {
    fn put(value: &Option<Name>, key: &'static str, out: &mut Vec<(Value, Value)>) {
        if let Some(n) = value {
            out.push(entry(key, n.as_str()));
        }
    }
    fn get(m: &Map, key: &'static str) -> Result<Option<Name>, ProtoError> {
        match m.get(key) {
            None | Some(Value::Nil) => Ok(None),
            Some(_) => m.name(key).map(Some),
        }
    }
    fn size(value: &Option<Name>) -> usize {
        value.as_ref().map_or(0, |n| n.as_str().len())
    }
}

impl Codec<EventRef> for Plain {
    fn put(value: &EventRef, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, value.to_string()));
    }
    fn get(m: &Map, key: &'static str) -> Result<EventRef, ProtoError> {
        EventRef::parse(key, m.str(key)?)
    }
    fn size(value: &EventRef) -> usize {
        value.origin.len() + 20
    }
}

/// A Lamport time or a sequence number: 0 to [`crate::MAX_COUNTER`].
impl Codec<u64> for Plain {
    fn put(value: &u64, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, *value));
    }
    fn get(m: &Map, key: &'static str) -> Result<u64, ProtoError> {
        m.counter(key)
    }
    fn size(_: &u64) -> usize {
        0
    }
}

/// An optional counter: absent and nil both read as `None`.
impl Codec<Option<u64>> for Plain {
    fn put(value: &Option<u64>, key: &'static str, out: &mut Vec<(Value, Value)>) {
        if let Some(v) = value {
            out.push(entry(key, *v));
        }
    }
    fn get(m: &Map, key: &'static str) -> Result<Option<u64>, ProtoError> {
        m.opt_counter(key)
    }
    fn size(_: &Option<u64>) -> usize {
        0
    }
}

/// A required flag.
impl Codec<bool> for Plain {
    fn put(value: &bool, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, *value));
    }
    fn get(m: &Map, key: &'static str) -> Result<bool, ProtoError> {
        m.opt_bool(key)?.ok_or(ProtoError::Missing(key))
    }
    fn size(_: &bool) -> usize {
        0
    }
}

/// An optional flag: absent is `None`.
impl Codec<Option<bool>> for Plain {
    fn put(value: &Option<bool>, key: &'static str, out: &mut Vec<(Value, Value)>) {
        if let Some(b) = value {
            out.push(entry(key, *b));
        }
    }
    fn get(m: &Map, key: &'static str) -> Result<Option<bool>, ProtoError> {
        m.opt_bool(key)
    }
    fn size(_: &Option<bool>) -> usize {
        0
    }
}

/// A cursor or version vector: per origin, a count.
impl Codec<crate::peer::Vector> for Plain {
    fn put(value: &crate::peer::Vector, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push((Value::from(key), crate::peer::vector_value(value)));
    }
    fn get(m: &Map, key: &'static str) -> Result<crate::peer::Vector, ProtoError> {
        crate::peer::vector_field(m.get(key).ok_or(ProtoError::Missing(key))?, key)
    }
    /// Each entry: the origin, a string header of at most 5, a number of at most 9.
    fn size(value: &crate::peer::Vector) -> usize {
        value.keys().map(|o| o.len() + 14).sum()
    }
}

/// Where a read marker stands, under one of two keys: `channel` for a room, `with` for a
/// conversation (the declared key is not used).
impl Codec<crate::Place> for Plain {
    fn put(value: &crate::Place, _: &'static str, out: &mut Vec<(Value, Value)>) {
        match value {
            crate::Place::Channel(c) => out.push(entry("channel", c.as_str())),
            crate::Place::With(w) => out.push(entry("with", w.as_str())),
        }
    }
    fn get(m: &Map, _: &'static str) -> Result<crate::Place, ProtoError> {
        match m.opt_str("channel")? {
            Some(_) => Ok(crate::Place::Channel(m.name("channel")?)),
            None => Ok(crate::Place::With(m.name("with")?)),
        }
    }
    fn size(value: &crate::Place) -> usize {
        match value {
            crate::Place::Channel(n) | crate::Place::With(n) => n.as_str().len(),
        }
    }
}

/// A required, non-blank text of at most `MAX` bytes.
pub struct Text<const MAX: usize>;

impl<const MAX: usize> Codec<String> for Text<MAX> {
    fn put(value: &String, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, value.as_str()));
    }
    fn get(m: &Map, key: &'static str) -> Result<String, ProtoError> {
        m.text(key, MAX)
    }
    fn size(value: &String) -> usize {
        value.len()
    }
}

/// A list of 1 to `COUNT` non-blank texts of at most `MAX` bytes each.
pub struct Texts<const MAX: usize, const COUNT: usize>;

impl<const MAX: usize, const COUNT: usize> Codec<Vec<String>> for Texts<MAX, COUNT> {
    fn put(value: &Vec<String>, key: &'static str, out: &mut Vec<(Value, Value)>) {
        let list = value.iter().map(|t| Value::from(t.as_str())).collect();
        out.push((Value::from(key), Value::Array(list)));
    }
    fn get(m: &Map, key: &'static str) -> Result<Vec<String>, ProtoError> {
        let wrong = ProtoError::WrongType {
            field: key,
            expected: "a list of texts",
        };
        let items = match m.get(key) {
            None | Some(Value::Nil) => return Err(ProtoError::Missing(key)),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(wrong),
        };
        if items.is_empty() {
            return Err(ProtoError::Empty { field: key });
        }
        if items.len() > COUNT {
            return Err(ProtoError::TooMany {
                field: key,
                max: COUNT,
            });
        }
        items
            .iter()
            .map(|v| match v.as_str() {
                None => Err(wrong.clone()),
                Some(s) if s.trim().is_empty() => Err(ProtoError::Empty { field: key }),
                Some(s) if s.len() > MAX => Err(ProtoError::TextTooLong {
                    field: key,
                    max: MAX,
                }),
                Some(s) => Ok(s.to_owned()),
            })
            .collect()
    }
    /// Each text: its bytes and a string header of at most 5.
    fn size(value: &Vec<String>) -> usize {
        value.iter().map(|t| t.len() + 5).sum()
    }
}

/// An optional, non-blank text of at most `MAX` bytes.
pub struct OptText<const MAX: usize>;

impl<const MAX: usize> Codec<Option<String>> for OptText<MAX> {
    fn put(value: &Option<String>, key: &'static str, out: &mut Vec<(Value, Value)>) {
        if let Some(s) = value {
            out.push(entry(key, s.as_str()));
        }
    }
    fn get(m: &Map, key: &'static str) -> Result<Option<String>, ProtoError> {
        match m.opt_str(key)? {
            Some(_) => m.text(key, MAX).map(Some),
            None => Ok(None),
        }
    }
    fn size(value: &Option<String>) -> usize {
        value.as_ref().map_or(0, String::len)
    }
}

/// A client's device: at most [`crate::MAX_DEVICE_BYTES`], empty when absent.
pub struct Device;

impl Codec<String> for Device {
    fn put(value: &String, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, value.as_str()));
    }
    fn get(m: &Map, key: &'static str) -> Result<String, ProtoError> {
        match m.opt_str(key)? {
            None => Ok(String::new()),
            Some(s) if s.len() > crate::MAX_DEVICE_BYTES => Err(ProtoError::TextTooLong {
                field: key,
                max: crate::MAX_DEVICE_BYTES,
            }),
            Some(s) => Ok(s.to_owned()),
        }
    }
    fn size(value: &String) -> usize {
        value.len()
    }
}

/// A two-phase commit's transaction id (see [`crate::room`]).
pub struct TxId;

impl Codec<String> for TxId {
    fn put(value: &String, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, value.as_str()));
    }
    fn get(m: &Map, key: &'static str) -> Result<String, ProtoError> {
        crate::room::tx_id(m, key)
    }
    fn size(value: &String) -> usize {
        value.len()
    }
}

/// A transaction's participants: 1 to [`crate::room::MAX_PARTICIPANTS`] server names.
pub struct Participants;

impl Codec<Vec<Name>> for Participants {
    fn put(value: &Vec<Name>, key: &'static str, out: &mut Vec<(Value, Value)>) {
        let list = value.iter().map(|p| Value::from(p.as_str())).collect();
        out.push((Value::from(key), Value::Array(list)));
    }
    fn get(m: &Map, _: &'static str) -> Result<Vec<Name>, ProtoError> {
        crate::room::participants(m)
    }
    /// Each participant: its bytes and a string header of at most 5.
    fn size(value: &Vec<Name>) -> usize {
        value.iter().map(|p| p.as_str().len() + 5).sum()
    }
}

/// A required secret of at most `MAX` bytes (a new password), never empty.
pub struct Required<const MAX: usize>;

impl<const MAX: usize> Codec<Secret> for Required<MAX> {
    fn put(value: &Secret, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, value.expose()));
    }
    fn get(m: &Map, key: &'static str) -> Result<Secret, ProtoError> {
        crate::request::secret(m, key, MAX)?.ok_or(ProtoError::Missing(key))
    }
    fn size(value: &Secret) -> usize {
        value.expose().len()
    }
}

/// How many items a page holds, under `limit`: at least `LEAST`, at most
/// [`crate::MAX_HISTORY`] (larger is cut to it), [`crate::DEFAULT_HISTORY`] when absent.
pub struct Limit<const LEAST: u64>;

impl<const LEAST: u64> Codec<usize> for Limit<LEAST> {
    fn put(value: &usize, key: &'static str, out: &mut Vec<(Value, Value)>) {
        out.push(entry(key, u64::try_from(*value).unwrap_or(u64::MAX)));
    }
    fn get(m: &Map, _: &'static str) -> Result<usize, ProtoError> {
        crate::history::limit(m, LEAST)
    }
    fn size(_: &usize) -> usize {
        0
    }
}

/// A flag that is false when absent, and written only when true.
pub struct Flag;

impl Codec<bool> for Flag {
    fn put(value: &bool, key: &'static str, out: &mut Vec<(Value, Value)>) {
        if *value {
            out.push(entry(key, true));
        }
    }
    fn get(m: &Map, key: &'static str) -> Result<bool, ProtoError> {
        Ok(m.opt_bool(key)?.unwrap_or(false))
    }
    fn size(_: &bool) -> usize {
        0
    }
}

/// The codec a declaration names, or [`Plain`] when it names none.
#[doc(hidden)]
#[macro_export]
macro_rules! codec_of {
    () => {
        $crate::field::Plain
    };
    ($codec:ty) => {
        $codec
    };
}

/// A slot's claim in an event: a map, or absent for a no-op slot.
pub struct ClaimField;

impl Codec<Option<crate::claim::Claimed>> for ClaimField {
    fn put(
        value: &Option<crate::claim::Claimed>,
        key: &'static str,
        out: &mut Vec<(Value, Value)>,
    ) {
        if let Some(c) = value {
            out.push((Value::from(key), c.to_value()));
        }
    }
    fn get(m: &Map, key: &'static str) -> Result<Option<crate::claim::Claimed>, ProtoError> {
        match crate::claim::entry_from(m, key)? {
            palaver_core::claims::Entry::Claim(c) => Ok(Some(c)),
            palaver_core::claims::Entry::Noop => Ok(None),
        }
    }
    fn size(value: &Option<crate::claim::Claimed>) -> usize {
        value.as_ref().map_or(0, crate::claim::Claimed::size)
    }
}
