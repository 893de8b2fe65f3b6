//! The IRC front door's protocol, free of I/O: whatever lines a client sends and whatever the
//! gateway core answers, a session never panics, and nothing it writes to the client can
//! carry a line break, a NUL or a line over IRC's limits (a text from the cluster must never
//! become a second command on the client's side).
//!
//! ```text
//!   input, split at '\n' ─▶ a client line ──Message::parse──▶ Session::on_line
//!                         ─▶ '>' + JSON: the answer to the oldest request still unanswered
//!                         ─▶ '<' + JSON: a text from the gateway core as it is (a publication)
//! ```

#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use palaver_irc::line::{Message, MAX_CLIENT_TAGS, MAX_LINE};
use palaver_irc::session::{Out, Session};
use serde_json::{json, Value as Json};

/// Requests a session may make before the target stops answering them in turn.
const MAX_ASKED: usize = 4096;

fuzz_target!(|bytes: &[u8]| {
    let mut session = Session::new("irc.fuzz");
    let mut asked: VecDeque<Json> = VecDeque::new();
    for chunk in bytes.split(|&b| b == b'\n') {
        let out = match chunk.split_first() {
            Some((b'>', data)) => {
                let Some(req) = asked.pop_front() else {
                    continue;
                };
                let data = serde_json::from_slice::<Json>(data).unwrap_or_else(|_| {
                    json!({"status": "erro", "description": String::from_utf8_lossy(data)})
                });
                let text = json!({"re": req["re"], "service": req["service"], "data": data});
                session.on_gateway(&text.to_string())
            }
            Some((b'<', text)) => match std::str::from_utf8(text) {
                Ok(text) => session.on_gateway(text),
                Err(_) => continue,
            },
            _ => match Message::parse(chunk.strip_suffix(b"\r").unwrap_or(chunk)) {
                Ok(m) => {
                    check_round_trip(&m);
                    session.on_line(&m)
                }
                Err(_) => continue,
            },
        };
        for o in out {
            match o {
                Out::Line(l) => check_line(&l),
                Out::Lines(ls) => {
                    let body = ls.strip_suffix("\r\n").expect("shared lines end with CR LF");
                    body.split("\r\n").for_each(check_line);
                }
                Out::Gateway(text) => {
                    let req: Json = serde_json::from_str(&text).expect("requests are JSON");
                    assert!(req["re"].is_u64() && req["service"].is_string(), "{text}");
                    if asked.len() < MAX_ASKED {
                        asked.push_back(req);
                    }
                }
                Out::Close => return,
            }
        }
    }
});

/// A line for the client: one line, within what a client reads.
fn check_line(l: &str) {
    assert!(
        !l.contains(['\r', '\n', '\0']),
        "a line break or NUL in {l:?}"
    );
    assert!(l.len() <= MAX_CLIENT_TAGS + MAX_LINE, "{} bytes", l.len());
    if let Err(e) = Message::parse(l.as_bytes()) {
        panic!("what the session writes does not parse as IRC ({e}): {l:?}");
    }
}

/// A client line the parser took, written out again, reads back the same, unless writing it
/// had to shorten it to the limit (a last parameter without its `:` can stand at the limit
/// as read, and be one byte over it as written).
fn check_round_trip(m: &Message) {
    let line = m.line();
    let again = Message::parse(line.as_bytes()).expect("a written line parses");
    if &again != m {
        let untagged = match line.strip_prefix('@') {
            Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
            None => &line,
        };
        // A character is at most 4 bytes: what was cut stops within 4 of the limit.
        assert!(untagged.len() + 4 >= MAX_LINE - 2, "{m:?} written as {line:?}");
    }
}
