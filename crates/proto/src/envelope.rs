use rmpv::Value;

use crate::{Name, ProtoError, MAX_COUNTER, MAX_FRAME_BYTES};

/// The `service` of a MessagePack map that names it first, as every Palaver process writes
/// it, read without decoding the rest: a replica batch of thousands of events was decoded
/// whole to learn its service, then again to read it. `None` when the map does not start so
/// (the caller then decodes it all).
fn leading_service(bytes: &[u8]) -> Option<String> {
    let mut rd = bytes;
    if rmp::decode::read_map_len(&mut rd).ok()? == 0 {
        return None;
    }
    let mut key = [0u8; 7];
    if rmp::decode::read_str(&mut rd, &mut key).ok()? != "service" {
        return None;
    }
    let mut service = [0u8; 64];
    rmp::decode::read_str(&mut rd, &mut service)
        .ok()
        .map(str::to_owned)
}

/// `bytes` as a JSON object, if that is what they are.
fn json_object(bytes: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let start = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *start != b'{' {
        return None;
    }
    match serde_json::from_slice(bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A timestamp written as text: a number, or an ISO 8601 date and time.
fn parse_timestamp(text: &str) -> Option<f64> {
    use time::format_description::well_known::Iso8601;
    use time::{OffsetDateTime, PrimitiveDateTime};
    let text = text.trim();
    if let Ok(f) = text.parse::<f64>() {
        return f.is_finite().then_some(f);
    }
    let at = OffsetDateTime::parse(text, &Iso8601::DEFAULT)
        .or_else(|_| PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|p| p.assume_utc()))
        .ok()?;
    Some(at.unix_timestamp_nanos() as f64 / 1e9)
}

/// [`MAX_COUNTER`] as a float (2^53−1 is exactly representable).
const MAX_COUNTER_F64: f64 = 9_007_199_254_740_991.0;

/// How deeply nested a message may be; real messages are two levels deep.
const MAX_DEPTH: usize = 16;

/// One protocol message: `{"service": <name>, "data": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub service: String,
    pub data: Map,
}

impl Envelope {
    pub fn new(service: impl Into<String>) -> Envelope {
        Envelope {
            service: service.into(),
            data: Map::default(),
        }
    }

    /// Adds a field to `data` (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Envelope {
        self.data.set(key, value);
        self
    }

    /// Sets the fields that every message carries: the sender's physical time and its Lamport
    /// counter at sending.
    pub fn stamp(&mut self, timestamp: f64, clock: u64) {
        self.data.set("timestamp", timestamp);
        self.data.set("clock", clock);
    }

    /// Decodes one frame.
    ///
    /// # Errors
    /// When the frame is too large, is not one MessagePack map, lacks a string `service`, or has
    /// a `data` that is not a map. A missing `data` is read as an empty map, since services
    /// without arguments need none.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, ProtoError> {
        Envelope::decode_at_most(bytes, MAX_FRAME_BYTES)
    }

    /// Decodes an answer, which may be larger than any request: up to
    /// [`crate::MAX_SOCKET_BYTES`] (the longest `history` page is about 8 MiB).
    ///
    /// # Errors
    /// As [`Envelope::decode`].
    pub fn decode_reply(bytes: &[u8]) -> Result<Envelope, ProtoError> {
        Envelope::decode_at_most(bytes, crate::MAX_SOCKET_BYTES as usize)
    }

    fn decode_at_most(bytes: &[u8], max: usize) -> Result<Envelope, ProtoError> {
        if bytes.len() > max {
            return Err(ProtoError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        let mut rd = bytes;
        let decoded = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
            .map_err(|e| ProtoError::Malformed(e.to_string()));
        let value = match decoded {
            Ok(v) if rd.is_empty() => v,
            // Only what fails as MessagePack is looked at as JSON (`{` reads as the integer 123).
            _ if json_object(bytes).is_some() => return Err(ProtoError::Json),
            Ok(_) => return Err(ProtoError::Trailing),
            Err(e) => return Err(e),
        };
        let Value::Map(entries) = value else {
            return Err(ProtoError::NotAMap);
        };
        let mut top = Map(entries);
        let service = top.str("service")?.to_owned();
        // Take `data` out rather than copy it: replica batches carry thousands of values.
        let data = match top.take("data") {
            None | Some(Value::Nil) => Map::default(),
            Some(Value::Map(m)) => Map(m),
            Some(_) => {
                return Err(ProtoError::WrongType {
                    field: "data",
                    expected: "a map",
                })
            }
        };
        Ok(Envelope { service, data })
    }

    /// Reads just the `service` of a frame that failed to decode fully, so that an error reply
    /// can repeat it. Returns `None` when even that cannot be found.
    pub fn sniff_service(bytes: &[u8]) -> Option<String> {
        if bytes.len() > MAX_FRAME_BYTES {
            return None;
        }
        if let Some(service) = leading_service(bytes) {
            return Some(service);
        }
        let mut rd = bytes;
        match rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH) {
            Ok(Value::Map(entries)) => Map(entries).get("service")?.as_str().map(str::to_owned),
            _ => json_object(bytes)?
                .get("service")?
                .as_str()
                .map(str::to_owned),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        // Written piece by piece rather than as one Value, which would copy `data` (a replica
        // batch holds thousands of values). Writing into a Vec cannot fail.
        let len = u32::try_from(self.data.0.len()).expect("fewer than 2^32 fields");
        rmp::encode::write_map_len(&mut out, 2).expect("write to Vec");
        rmp::encode::write_str(&mut out, "service").expect("write to Vec");
        rmp::encode::write_str(&mut out, &self.service).expect("write to Vec");
        rmp::encode::write_str(&mut out, "data").expect("write to Vec");
        rmp::encode::write_map_len(&mut out, len).expect("write to Vec");
        for (k, v) in &self.data.0 {
            rmpv::encode::write_value(&mut out, k).expect("write to Vec");
            rmpv::encode::write_value(&mut out, v).expect("write to Vec");
        }
        out
    }

    /// Reads `service` and the string field `data.<field>` from the front of a frame without
    /// decoding the rest: enough to pass over a large message that is not for this reader.
    /// `None` when the frame is not laid out as [`Envelope::to_bytes`] writes it with the field
    /// before any list or map in `data`; decode such a frame in full.
    pub fn peek<'a>(bytes: &'a [u8], field: &str) -> Option<(&'a str, &'a str)> {
        use rmp::decode::{read_map_len, read_str_from_slice};
        let mut rd = bytes;
        // `service` and `data` first; what follows them (the proxy's `seq`) is not read.
        if read_map_len(&mut rd).ok()? < 2 {
            return None;
        }
        let ("service", rd) = read_str_from_slice(rd).ok()? else {
            return None;
        };
        let (service, rd) = read_str_from_slice(rd).ok()?;
        let ("data", mut rd) = read_str_from_slice(rd).ok()? else {
            return None;
        };
        for _ in 0..read_map_len(&mut rd).ok()? {
            let (key, rest) = read_str_from_slice(rd).ok()?;
            if key == field {
                return Some((service, read_str_from_slice(rest).ok()?.0));
            }
            rd = skip_scalar(rest)?;
        }
        None
    }

    /// The sender's Lamport counter, if the message carries a well-formed one.
    pub fn clock(&self) -> Option<u64> {
        self.data.clock().ok().flatten()
    }
}

/// MessagePack to JSON, for display: binary becomes a list of bytes, other map keys strings.
fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => i
            .as_u64()
            .map(J::from)
            .or_else(|| i.as_i64().map(J::from))
            .unwrap_or(J::Null),
        Value::F32(f) => J::from(f64::from(*f)),
        Value::F64(f) => J::from(*f),
        Value::String(s) => J::String(
            s.as_str()
                .map_or_else(|| "<invalid utf-8>".into(), str::to_owned),
        ),
        Value::Binary(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        Value::Array(items) => J::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| k.to_string(), str::to_owned),
                        value_to_json(v),
                    )
                })
                .collect(),
        ),
        Value::Ext(_, _) => J::Null,
    }
}

/// JSON to MessagePack, refusing what nests deeper than [`MAX_DEPTH`].
fn json_to_value(v: &serde_json::Value, depth: usize) -> Result<Value, ProtoError> {
    use serde_json::Value as J;
    if depth >= MAX_DEPTH {
        return Err(ProtoError::Malformed(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (None, Some(i), _) => Value::from(i),
            (None, None, f) => Value::F64(f.unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| json_to_value(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(m) => Value::Map(
            m.iter()
                .map(|(k, x)| Ok((Value::from(k.as_str()), json_to_value(x, depth + 1)?)))
                .collect::<Result<_, ProtoError>>()?,
        ),
    })
}

/// Skips one MessagePack value that is not a list, a map or an extension.
fn skip_scalar(rd: &[u8]) -> Option<&[u8]> {
    use rmp::Marker;
    let (&first, rest) = rd.split_first()?;
    let be = |n: usize| -> Option<usize> {
        let b = rest.get(..n)?;
        Some(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    let (header, body) = match Marker::from_u8(first) {
        Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
            (0, 0)
        }
        Marker::U8 | Marker::I8 => (0, 1),
        Marker::U16 | Marker::I16 => (0, 2),
        Marker::U32 | Marker::I32 | Marker::F32 => (0, 4),
        Marker::U64 | Marker::I64 | Marker::F64 => (0, 8),
        Marker::FixStr(n) => (0, usize::from(n)),
        Marker::Str8 | Marker::Bin8 => (1, be(1)?),
        Marker::Str16 | Marker::Bin16 => (2, be(2)?),
        Marker::Str32 | Marker::Bin32 => (4, be(4)?),
        _ => return None,
    };
    rest.get(header + body..)
}

/// A MessagePack map with string keys, as found in `data`. Lookups ignore non-string keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map(pub Vec<(Value, Value)>);

impl Map {
    /// The map as JSON, for display and for JSON front ends: binary becomes a list of bytes,
    /// non-string keys their MessagePack text.
    pub fn to_json(&self) -> serde_json::Value {
        value_to_json(&Value::Map(self.0.clone()))
    }

    /// A JSON object as a map, for JSON front ends (the web gateway): whole numbers become
    /// integers, other numbers floats.
    ///
    /// # Errors
    /// When it nests deeper than a frame may (16 levels).
    pub fn from_json(
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Map, ProtoError> {
        let entries = object
            .iter()
            .map(|(k, v)| Ok((Value::from(k.as_str()), json_to_value(v, 1)?)))
            .collect::<Result<_, ProtoError>>()?;
        Ok(Map(entries))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Removes `key` and returns its value.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k.as_str() == Some(key))?;
        Some(self.0.swap_remove(at).1)
    }

    /// Sets `key`, replacing an earlier value.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            Some(slot) => slot.1 = value,
            None => self.0.push((Value::from(key), value)),
        }
    }

    /// A required string field.
    ///
    /// # Errors
    /// When the field is missing or not a string.
    pub fn str(&self, field: &'static str) -> Result<&str, ProtoError> {
        match self.get(field) {
            None | Some(Value::Nil) => Err(ProtoError::Missing(field)),
            Some(v) => v.as_str().ok_or(ProtoError::WrongType {
                field,
                expected: "a string",
            }),
        }
    }

    /// An optional string field: absent or nil is `None`, another type is an error.
    ///
    /// # Errors
    /// When the field is present but not a string.
    pub fn opt_str(&self, field: &'static str) -> Result<Option<&str>, ProtoError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or(ProtoError::WrongType {
                field,
                expected: "a string",
            }),
        }
    }

    /// A required field holding a valid [`Name`].
    ///
    /// # Errors
    /// When the field is missing, not a string, or not a valid name.
    pub fn name(&self, field: &'static str) -> Result<Name, ProtoError> {
        Name::parse(self.str(field)?).map_err(|source| ProtoError::InvalidName { field, source })
    }

    /// A required, non-empty text field of at most `max` bytes.
    ///
    /// # Errors
    /// When the field is missing, not a string, empty or too long.
    pub fn text(&self, field: &'static str, max: usize) -> Result<String, ProtoError> {
        let s = self.str(field)?;
        if s.trim().is_empty() {
            return Err(ProtoError::Empty { field });
        }
        if s.len() > max {
            return Err(ProtoError::TextTooLong { field, max });
        }
        Ok(s.to_owned())
    }

    /// A list of strings, as in the `users` and `channels` replies.
    ///
    /// # Errors
    /// When the field is missing or not a list of strings.
    pub fn str_list(&self, field: &'static str) -> Result<Vec<String>, ProtoError> {
        let wrong = ProtoError::WrongType {
            field,
            expected: "a list of strings",
        };
        match self.get(field) {
            None | Some(Value::Nil) => Err(ProtoError::Missing(field)),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(wrong.clone()))
                .collect(),
            Some(_) => Err(wrong),
        }
    }

    /// `timestamp`, in seconds since the Unix epoch, as far as it can be read. Never an error:
    /// the standard lets clients send it as they like, and nothing depends on it. Read are an
    /// integer, a float, a numeric string and an ISO 8601 date and time (UTC unless it says
    /// otherwise); anything else (a time of day such as `"13:31:41"`, which names no day, a
    /// boolean, nonsense) is read as absent.
    pub fn timestamp(&self) -> Option<f64> {
        match self.get("timestamp")? {
            Value::String(s) => parse_timestamp(s.as_str()?),
            v => v.as_f64().filter(|f| f.is_finite()),
        }
    }

    /// `clock`, the sender's Lamport counter: a whole number from 0 to [`MAX_COUNTER`] (an
    /// integral float is accepted too); absent is `None`.
    ///
    /// # Errors
    /// When the field is present but is not such a number: negative, fractional, NaN, or above
    /// 2^53−1, which a JavaScript client could no longer represent exactly.
    pub fn clock(&self) -> Result<Option<u64>, ProtoError> {
        self.opt_counter("clock")
    }

    /// A required counter field (a sequence number, a Lamport time): see [`Map::opt_counter`].
    ///
    /// # Errors
    /// When the field is missing or out of range.
    pub fn counter(&self, field: &'static str) -> Result<u64, ProtoError> {
        self.opt_counter(field)?.ok_or(ProtoError::Missing(field))
    }

    /// An optional counter field: a whole number from 0 to [`MAX_COUNTER`], given as an
    /// integer or as an integral float; absent or nil is `None`. Every clock, sequence number
    /// and Lamport time that arrives from the network is read through this, so none can
    /// saturate a clock or turn negative in the store.
    ///
    /// # Errors
    /// When the field is present but is not such a number.
    pub fn opt_counter(&self, field: &'static str) -> Result<Option<u64>, ProtoError> {
        let wrong = ProtoError::OutOfRange {
            field,
            max: MAX_COUNTER,
        };
        match self.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::F32(_) | Value::F64(_)) => {
                let f = self.get(field).and_then(Value::as_f64).unwrap_or(f64::NAN);
                // MAX_COUNTER is exactly representable as an f64, so the comparison is exact.
                if (0.0..=MAX_COUNTER_F64).contains(&f) && f.fract() == 0.0 {
                    // In range and whole: the conversion is exact.
                    Ok(Some(f as u64))
                } else {
                    Err(wrong)
                }
            }
            Some(v) => match v.as_u64() {
                Some(n) if n <= MAX_COUNTER => Ok(Some(n)),
                _ => Err(wrong),
            },
        }
    }

    /// A list of maps (absent is empty), as in `users`' `online`.
    ///
    /// # Errors
    /// When the field is present but not a list of maps.
    pub fn maps(&self, field: &'static str) -> Result<Vec<Map>, ProtoError> {
        let wrong = ProtoError::WrongType {
            field,
            expected: "a list of maps",
        };
        match self.get(field) {
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Map(m) => Ok(Map(m.clone())),
                    _ => Err(wrong.clone()),
                })
                .collect(),
            Some(_) => Err(wrong),
        }
    }

    /// An optional boolean field: absent or nil is `None`.
    ///
    /// # Errors
    /// When the field is present but not a boolean.
    pub fn opt_bool(&self, field: &'static str) -> Result<Option<bool>, ProtoError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or(ProtoError::WrongType {
                field,
                expected: "true or false",
            }),
        }
    }

    /// A numeric field as `f64` (integers accepted); absent is `None`.
    ///
    /// # Errors
    /// When the field is present but not a number.
    pub fn opt_f64(&self, field: &'static str) -> Result<Option<f64>, ProtoError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or(ProtoError::WrongType {
                field,
                expected: "a number",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn peek_reads_the_service_and_a_field_before_any_list() {
        let replica = Envelope::new("replica")
            .with("origin", "s1")
            .with("events", vec![Value::from(1), Value::from(2)])
            .to_bytes();
        assert_eq!(Envelope::peek(&replica, "origin"), Some(("replica", "s1")));
        let ack = Envelope::new("ack")
            .with("user", "s2")
            .with("flag", true)
            .with("seq", 70_000)
            .with("ts", 1.5)
            .with("origin", "s1")
            .to_bytes();
        assert_eq!(Envelope::peek(&ack, "origin"), Some(("ack", "s1")));
        // Behind a list, or absent: decode in full.
        assert_eq!(Envelope::peek(&replica, "clock"), None);
        assert_eq!(Envelope::peek(&ack, "missing"), None);
        assert_eq!(Envelope::peek(&ack[..ack.len() - 3], "origin"), None);
        assert_eq!(Envelope::peek(b"\x92\x01", "origin"), None);
    }

    #[test]
    fn round_trips() {
        let mut env = Envelope::new("login").with("user", "ana");
        env.stamp(1.5, 7);
        let back = Envelope::decode(&env.to_bytes()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.clock(), Some(7));
        assert_eq!(back.data.timestamp(), Some(1.5));
    }

    #[test]
    fn refuses_what_is_not_an_envelope() {
        assert!(Envelope::decode(&[0xc1]).is_err());
        assert!(matches!(
            Envelope::decode(&[]),
            Err(ProtoError::Malformed(_))
        ));
        assert_eq!(
            Envelope::decode(&encode(&Value::from(3))),
            Err(ProtoError::NotAMap)
        );
        let no_service = Value::Map(vec![(Value::from("data"), Value::Map(vec![]))]);
        assert_eq!(
            Envelope::decode(&encode(&no_service)),
            Err(ProtoError::Missing("service"))
        );
        let bad_data = Value::Map(vec![
            (Value::from("service"), Value::from("users")),
            (Value::from("data"), Value::from(1)),
        ]);
        assert!(matches!(
            Envelope::decode(&encode(&bad_data)),
            Err(ProtoError::WrongType { field: "data", .. })
        ));
        let mut bytes = Envelope::new("users").to_bytes();
        bytes.push(0);
        assert_eq!(Envelope::decode(&bytes), Err(ProtoError::Trailing));
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&big),
            Err(ProtoError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frames_never_panic() {
        let bytes = Envelope::new("publish")
            .with("user", "ana")
            .with("channel", "general")
            .with("message", "hello there")
            .to_bytes();
        for cut in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn the_service_is_read_wherever_it_stands() {
        let ours = Envelope::new("replica").with("events", vec![Value::from(1); 1000]);
        assert_eq!(
            Envelope::sniff_service(&ours.to_bytes()).as_deref(),
            Some("replica")
        );
        // Written by another program: `data` first, or a name longer than the fast path reads.
        let long = "x".repeat(100);
        for (map, service) in [
            (
                Value::Map(vec![
                    (Value::from("data"), Value::Map(vec![])),
                    (Value::from("service"), Value::from("users")),
                ]),
                "users",
            ),
            (
                Value::Map(vec![(Value::from("service"), Value::from(long.as_str()))]),
                long.as_str(),
            ),
        ] {
            assert_eq!(
                Envelope::sniff_service(&encode(&map)).as_deref(),
                Some(service)
            );
        }
        let not_text = Value::Map(vec![(Value::from("service"), Value::from(3))]);
        assert_eq!(Envelope::sniff_service(&encode(&not_text)), None);
    }

    #[test]
    fn json_is_told_apart() {
        let json = br#"{"service": "login", "data": {"user": "ana"}}"#;
        assert_eq!(Envelope::decode(json), Err(ProtoError::Json));
        assert_eq!(Envelope::sniff_service(json).as_deref(), Some("login"));
        assert!(ProtoError::Json.to_string().contains("MessagePack"));
        // Not JSON: the MessagePack error stands.
        assert_eq!(Envelope::decode(b"{nope"), Err(ProtoError::Trailing));
    }

    #[test]
    fn timestamps_are_read_as_far_as_they_can_be() {
        for (v, want) in [
            (Value::from(10), Some(10.0)),
            (Value::from(10.25), Some(10.25)),
            (Value::from("10.5"), Some(10.5)),
            (Value::from("2026-12-01T13:31:41Z"), Some(1_796_131_901.0)),
            (Value::from("2026-12-01T13:31:41.5Z"), Some(1_796_131_901.5)),
            (
                Value::from("2026-12-01T14:31:41+01:00"),
                Some(1_796_131_901.0),
            ),
            (Value::from("2026-12-01T13:31:41"), Some(1_796_131_901.0)),
            // Read as absent, never refused.
            (Value::from("13:31:41"), None),
            (Value::from("soon"), None),
            (Value::from(true), None),
            (Value::from(f64::NAN), None),
            (Value::Array(vec![]), None),
            (Value::Nil, None),
        ] {
            let env = Envelope::new("users").with("timestamp", v.clone());
            assert_eq!(env.data.timestamp(), want, "{v:?}");
        }
        let env = Envelope::new("users").with("clock", -3);
        assert!(env.data.clock().is_err());
        let env = Envelope::new("users").with("clock", 4.0);
        assert_eq!(env.data.clock().unwrap(), Some(4));
    }

    #[test]
    fn clocks_past_2_pow_53_or_not_whole_are_refused() {
        let max = MAX_COUNTER;
        for ok in [Value::from(0), Value::from(max), Value::from(max as f64)] {
            let env = Envelope::new("users").with("clock", ok.clone());
            assert!(env.data.clock().is_ok(), "{ok:?}");
        }
        for bad in [
            Value::from(u64::MAX),
            Value::from(1u64 << 63),
            Value::from(1u64 << 53),
            Value::from(-1),
            Value::from(1e300),
            Value::from(f64::NAN),
            Value::from(f64::INFINITY),
            Value::from(2.5),
            Value::from((1u64 << 53) as f64),
        ] {
            let env = Envelope::new("users").with("clock", bad.clone());
            let err = env.data.clock().unwrap_err();
            assert!(
                err.to_string().contains("9007199254740991"),
                "{bad:?}: {err}"
            );
        }
    }
}
