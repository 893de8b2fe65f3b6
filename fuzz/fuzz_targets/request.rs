//! The client request path: whatever bytes a client sends, the decoders return a value or an
//! error and never panic, and what they accept survives being encoded and decoded again.
//!
//! ```text
//!   bytes ─▶ Envelope::decode ─▶ Request::parse / HistoryQuery::parse
//!   bytes ─▶ Envelope::sniff_service, Envelope::peek(_, "origin")
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_proto::{Conversation, Envelope, HistoryQuery, Request, RequestMeta};
use rmpv::Value;

fuzz_target!(|bytes: &[u8]| {
    let sniffed = Envelope::sniff_service(bytes);
    let peeked = Envelope::peek(bytes, "origin");
    let Ok(env) = Envelope::decode(bytes) else {
        return;
    };
    // The shortcuts agree with the full decoder whenever it accepts the frame.
    assert_eq!(sniffed.as_deref(), Some(env.service.as_str()));
    if let Some((service, origin)) = peeked {
        assert_eq!(service, env.service);
        assert_eq!(env.data.get("origin").and_then(Value::as_str), Some(origin));
    }
    check_canonical(&env);
    if let Ok((req, meta)) = Request::parse(&env) {
        check_request(&req, &meta);
    }
    if let Ok(query) = HistoryQuery::parse(&env) {
        check_history(&query);
    }
});

/// Encoding is stable (encode, decode, encode gives the same bytes) and `peek` finds `origin`
/// in the layout `to_bytes` writes exactly when the model below says it should.
fn check_canonical(env: &Envelope) {
    let bytes = env.to_bytes();
    let again = Envelope::decode(&bytes).expect("an encoded envelope decodes");
    assert_eq!(again.to_bytes(), bytes);
    assert_eq!(Envelope::peek(&bytes, "origin"), peek_model(env));
}

/// What `peek(to_bytes(env), "origin")` must return: the first `origin`'s string when every
/// key up to it is a valid string and every value before it a scalar; otherwise nothing.
fn peek_model(env: &Envelope) -> Option<(&str, &str)> {
    for (key, value) in &env.data.0 {
        let key = key.as_str()?;
        if key == "origin" {
            return Some((env.service.as_str(), value.as_str()?));
        }
        match value {
            Value::Nil
            | Value::Boolean(_)
            | Value::Integer(_)
            | Value::F32(_)
            | Value::F64(_)
            | Value::String(_)
            | Value::Binary(_) => {}
            Value::Array(_) | Value::Map(_) | Value::Ext(..) => return None,
        }
    }
    None
}

/// A parsed request, sent again with the same metadata, parses to itself.
fn check_request(req: &Request, meta: &RequestMeta) {
    let mut env = req.to_envelope().with("clock", meta.clock);
    if let Some(ts) = meta.timestamp {
        env = env.with("timestamp", ts);
    }
    if let Some(id) = &meta.request_id {
        env = env.with("request_id", id.as_str());
    }
    if let Some(token) = &meta.token {
        env = env.with("token", token.expose());
    }
    if let Some(password) = &meta.password {
        env = env.with("password", password.expose());
    }
    let env = Envelope::decode(&env.to_bytes()).expect("an encoded request decodes");
    let (req2, meta2) = Request::parse(&env).expect("an encoded request parses");
    assert_eq!(&req2, req);
    assert_eq!(&meta2, meta);
}

/// A parsed history query, written out field by field, parses to itself.
fn check_history(q: &HistoryQuery) {
    let limit = u64::try_from(q.limit).expect("a limit is at most MAX_HISTORY");
    let mut env = Envelope::new("history").with("limit", limit);
    env = match &q.of {
        Conversation::Channel(c) => env.with("channel", c.as_str()),
        Conversation::Direct(user, with) => {
            env.with("user", user.as_str()).with("with", with.as_str())
        }
    };
    if let Some(c) = &q.before {
        env = env.with("before", c.to_string());
    }
    if let Some(c) = &q.after {
        env = env.with("after", c.to_string());
    }
    if let Some(ms) = q.window.since {
        env = env.with("since", ms as f64 / 1e3);
    }
    if let Some(ms) = q.window.until {
        env = env.with("until", ms as f64 / 1e3);
    }
    if q.window.latest {
        env = env.with("latest", true);
    }
    let env = Envelope::decode(&env.to_bytes()).expect("an encoded query decodes");
    assert_eq!(
        &HistoryQuery::parse(&env).expect("an encoded query parses"),
        q
    );
}
