//! The client core's requests, free of I/O: many in flight at once, each matched to its reply
//! by request id, sent again with the same id (and the same bytes) when its reply is late,
//! and given up after its last attempt. A blocking driver ([`crate::Connection`]), a terminal
//! UI or a WebSocket gateway feeds it frames and the time, and sends what it hands back.
//!
//! ```text
//!  start(now, envelope) ──▶ (token, frame to send)       request_id added when it has none
//!  on_frame(now, reply) ──▶ (token, reply)               matched by the request_id it echoes;
//!                                                         a reply without one (a server of
//!                                                         another implementation) takes the oldest;
//!                                                         a refusal that says `again` is sent
//!                                                         again shortly, while attempts remain
//!  on_timeout(now)      ──▶ Resend(frame) | GaveUp(token)
//! ```
//!
//! A reply that matches nothing in flight (the first attempt's, after the second's) is
//! dropped and counted: the request took effect once, whichever attempt got there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use palaver_proto::{Envelope, ProtoError, Reply, Status};

/// How long a request refused with `again` waits before it is sent again.
const AGAIN_AFTER: Duration = Duration::from_millis(250);

/// What the driver must do after a timeout.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// Send this frame again (the same bytes, so the same request id).
    Resend(Vec<u8>),
    /// Every attempt of this request went unanswered.
    GaveUp(u64),
}

struct Call {
    id: String,
    frame: Vec<u8>,
    deadline: Instant,
    attempt: u32,
}

/// Requests in flight.
pub struct Calls {
    timeout: Duration,
    attempts: u32,
    /// Request ids are `<prefix>-<n>`: the prefix is random per process, so ids never repeat
    /// across clients or restarts.
    prefix: String,
    next: u64,
    /// By token; tokens rise, so the first entry is the oldest request.
    in_flight: BTreeMap<u64, Call>,
    /// Tokens by request id, for matching answers.
    by_id: HashMap<String, u64>,
    /// Deadlines in order, so that what is due is found without a scan.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Replies that matched nothing.
    pub unmatched: u64,
}

impl Calls {
    /// Each attempt waits `timeout`; a request is sent at most `attempts` times.
    pub fn new(timeout: Duration, attempts: u32, prefix: &str) -> Calls {
        Calls {
            timeout,
            attempts: attempts.max(1),
            prefix: prefix.to_owned(),
            next: 1,
            in_flight: BTreeMap::new(),
            by_id: HashMap::new(),
            deadlines: BTreeSet::new(),
            unmatched: 0,
        }
    }

    /// Starts a request: its token, and the frame to send (kept, for sending again). A
    /// request without a `request_id` gets one.
    pub fn start(&mut self, now: Instant, env: Envelope) -> (u64, &[u8]) {
        let token = self.next;
        let (id, env) = match env.data.opt_str("request_id").ok().flatten() {
            Some(id) => (id.to_owned(), env),
            None => {
                let id = format!("{}-{token}", self.prefix);
                (id.clone(), env.with("request_id", id))
            }
        };
        self.by_id.insert(id.clone(), token);
        self.track(now, id, env.to_bytes())
    }

    /// Starts a request from a frame sent as it is (no request id can be added): its answer
    /// is the oldest answer without a request id.
    pub fn start_frame(&mut self, now: Instant, frame: Vec<u8>) -> u64 {
        self.track(now, String::new(), frame).0
    }

    /// Puts a new request in flight under the next token.
    fn track(&mut self, now: Instant, id: String, frame: Vec<u8>) -> (u64, &[u8]) {
        let token = self.next;
        self.next += 1;
        let deadline = now + self.timeout;
        self.deadlines.insert((deadline, token));
        let call = self.in_flight.entry(token).or_insert(Call {
            id,
            frame,
            deadline,
            attempt: 1,
        });
        (token, &call.frame)
    }

    /// How many times a request is sent at most.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A reply arrived: the token of the request it answers, with the reply. `None` when it
    /// answers nothing in flight (dropped and counted).
    ///
    /// # Errors
    /// The token of the oldest request and the decode error, when the frame is not a reply at
    /// all (that request is over: a server sent something it cannot have meant).
    pub fn on_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Option<(u64, Result<Envelope, ProtoError>)> {
        let reply = match Envelope::decode_reply(frame) {
            Ok(r) => r,
            Err(e) => {
                let (&token, _) = self.in_flight.iter().next()?;
                self.forget(token);
                return Some((token, Err(e)));
            }
        };
        let token = match reply.data.opt_str("request_id").ok().flatten() {
            Some(id) => self.by_id.get(id).copied(),
            // Answered in order, as a REP socket would: the oldest.
            None => self.in_flight.keys().next().copied(),
        };
        let Some(token) = token else {
            self.unmatched += 1;
            return None;
        };
        if self.again(now, token, &reply) {
            return None;
        }
        self.forget(token);
        Some((token, Ok(reply)))
    }

    /// Whether `reply` refuses `token` for now only (`again`), and it has an attempt left:
    /// then it is sent again, as it was, once [`AGAIN_AFTER`] has passed.
    fn again(&mut self, now: Instant, token: u64, reply: &Envelope) -> bool {
        let again = Reply::status(reply) == Status::Error
            && reply.data.opt_bool(palaver_proto::AGAIN).ok().flatten() == Some(true);
        let Some(call) = self.in_flight.get_mut(&token).filter(|_| again) else {
            return false;
        };
        if call.attempt >= self.attempts {
            return false;
        }
        // Counted as an attempt; due at once when the wait is over.
        self.deadlines.remove(&(call.deadline, token));
        call.deadline = now + AGAIN_AFTER;
        self.deadlines.insert((call.deadline, token));
        true
    }

    /// What is due at `now`: frames to send again, requests given up.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Due> {
        let mut due = Vec::new();
        while let Some(&(deadline, token)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(call) = self.in_flight.get_mut(&token) else {
                continue;
            };
            if call.attempt >= self.attempts {
                self.forget(token);
                due.push(Due::GaveUp(token));
            } else {
                call.attempt += 1;
                call.deadline = now + self.timeout;
                self.deadlines.insert((call.deadline, token));
                due.push(Due::Resend(call.frame.clone()));
            }
        }
        due
    }

    /// Takes `token` out of flight.
    fn forget(&mut self, token: u64) {
        if let Some(call) = self.in_flight.remove(&token) {
            self.by_id.remove(&call.id);
            self.deadlines.remove(&(call.deadline, token));
        }
    }

    /// The next deadline, if anything is in flight.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The request id given to `token`, while it is in flight.
    pub fn request_id(&self, token: u64) -> Option<&str> {
        self.in_flight.get(&token).map(|c| c.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn answer(id: Option<&str>, n: i64) -> Vec<u8> {
        let env = Envelope::new("users").with("n", n);
        match id {
            Some(id) => env.with("request_id", id),
            None => env,
        }
        .to_bytes()
    }

    #[test]
    fn replies_in_any_order_are_matched_by_request_id() {
        let t0 = Instant::now();
        let mut calls = Calls::new(ms(100), 3, "p");
        let (a, _) = calls.start(t0, Envelope::new("users"));
        let (b, _) = calls.start(t0, Envelope::new("channels"));
        let (c, _) = calls.start(t0, Envelope::new("users").with("request_id", "mine"));
        assert_eq!(calls.request_id(a), Some("p-1"));
        assert_eq!(calls.request_id(c), Some("mine"));
        // c, then a, then b.
        let (t, r) = calls.on_frame(t0, &answer(Some("mine"), 3)).unwrap();
        assert_eq!((t, r.unwrap().data.opt_counter("n").unwrap()), (c, Some(3)));
        assert_eq!(calls.on_frame(t0, &answer(Some("p-1"), 1)).unwrap().0, a);
        assert_eq!(calls.on_frame(t0, &answer(Some("p-2"), 2)).unwrap().0, b);
        assert_eq!(calls.in_flight(), 0);
        // A reply for nothing in flight is dropped and counted.
        assert!(calls.on_frame(t0, &answer(Some("p-1"), 1)).is_none());
        assert_eq!(calls.unmatched, 1);
    }

    #[test]
    fn a_late_request_is_sent_again_with_the_same_bytes_then_given_up() {
        let t0 = Instant::now();
        let mut calls = Calls::new(ms(100), 3, "p");
        let (token, frame) = calls.start(t0, Envelope::new("login").with("user", "ana"));
        let frame = frame.to_vec();
        assert_eq!(calls.deadline(), Some(t0 + ms(100)));
        assert!(calls.on_timeout(t0 + ms(99)).is_empty());
        assert_eq!(calls.on_timeout(t0 + ms(100)), [Due::Resend(frame.clone())]);
        assert_eq!(calls.on_timeout(t0 + ms(200)), [Due::Resend(frame)]);
        assert_eq!(calls.on_timeout(t0 + ms(300)), [Due::GaveUp(token)]);
        assert_eq!(calls.in_flight(), 0);
        assert_eq!(calls.deadline(), None);
    }

    #[test]
    fn the_first_attempts_late_reply_answers_and_the_second_is_dropped() {
        let t0 = Instant::now();
        let mut calls = Calls::new(ms(100), 3, "p");
        let (token, _) = calls.start(t0, Envelope::new("publish"));
        calls.on_timeout(t0 + ms(100));
        // Both attempts reached a server; both answer with the same request id.
        assert_eq!(
            calls.on_frame(t0, &answer(Some("p-1"), 1)).unwrap().0,
            token
        );
        assert!(calls.on_frame(t0, &answer(Some("p-1"), 1)).is_none());
        assert_eq!(calls.unmatched, 1);
    }

    #[test]
    fn replies_without_an_id_take_the_oldest_and_garbage_ends_it() {
        let t0 = Instant::now();
        let mut calls = Calls::new(ms(100), 1, "p");
        let (a, _) = calls.start(t0, Envelope::new("clock"));
        let (b, _) = calls.start(t0, Envelope::new("clock"));
        assert_eq!(calls.on_frame(t0, &answer(None, 0)).unwrap().0, a);
        let (t, r) = calls.on_frame(t0, b"\xc1").unwrap();
        assert_eq!(t, b);
        assert!(r.is_err());
        assert!(calls.on_frame(t0, &answer(None, 0)).is_none());
    }

    #[test]
    fn a_refusal_that_says_again_is_sent_again_shortly_while_attempts_remain() {
        let t0 = Instant::now();
        let mut calls = Calls::new(ms(1_000), 3, "p");
        let (token, frame) = calls.start(t0, Envelope::new("login").with("user", "ana"));
        let frame = frame.to_vec();
        let refusal = |again: bool| {
            let mut r = Reply::error("login", "cannot reach a majority of servers; try again")
                .with("request_id", "p-1");
            if again {
                r = r.with(palaver_proto::AGAIN, true);
            }
            r.to_bytes()
        };
        // Not handed back: sent again, with the same bytes, once the short wait is over.
        assert!(calls.on_frame(t0, &refusal(true)).is_none());
        assert_eq!(calls.unmatched, 0);
        assert_eq!(calls.deadline(), Some(t0 + AGAIN_AFTER));
        assert_eq!(
            calls.on_timeout(t0 + AGAIN_AFTER),
            [Due::Resend(frame.clone())]
        );
        // The last attempt's refusal is the answer.
        let t1 = t0 + AGAIN_AFTER;
        assert!(calls.on_frame(t1, &refusal(true)).is_none());
        assert_eq!(calls.on_timeout(t1 + AGAIN_AFTER), [Due::Resend(frame)]);
        let (t, r) = calls.on_frame(t1, &refusal(true)).unwrap();
        assert_eq!(t, token);
        assert_eq!(Reply::status(&r.unwrap()), Status::Error);
        // A refusal that does not say `again` is the answer at once.
        let (other, _) = calls.start(t0, Envelope::new("login").with("user", "bo"));
        let no = Reply::error("login", "wrong password").with("request_id", "p-2");
        assert_eq!(calls.on_frame(t0, &no.to_bytes()).unwrap().0, other);
    }
}
