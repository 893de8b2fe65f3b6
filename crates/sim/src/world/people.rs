//! The simulation's people: clients that send their requests through the client core's
//! requests in flight (`palaver_client::calls`: a request id each, sent again with the same
//! bytes when late, answers matched by request id, given up after the last attempt), and
//! check what they are answered as they go.
//!
//! ```text
//!  next request ──Calls::start──▶ frame ──▶ broker ──▶ a server ──▶ answer ──Calls::on_frame──▶
//!  late?  ──Calls::on_timeout──▶ the same frame again, or given up
//!  inbox page ──▶ hand out (each id once) ──▶ taken(cursor) ──▶ confirmed
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use palaver_client::calls::{Calls, Due as CallDue};
use palaver_proto::{Envelope, EventKind, MessageKind, Reply, Status};
use rand::Rng;

use super::{Due, World, CLIENT_ATTEMPTS, CLIENT_TIMEOUT, FAULTS_FOR};
use crate::check::Acked;

/// A cursor: per origin, the sequence number taken up to.
pub type Cursor = BTreeMap<String, u64>;

/// The device every simulated person reads its inbox with.
pub const DEVICE: &str = "phone";

/// What a client asks for, with what its success changes on the client's side.
#[derive(Debug, Clone)]
enum Ask {
    Login,
    /// Creating this channel.
    Channel(String),
    Publish,
    /// Several posts in one request, in this order, to this channel.
    Posts(String, Vec<String>),
    /// A private message to this person.
    Message(String),
    /// Giving the name this password.
    Register(String),
    /// Changing the password to this one.
    Password(String),
    /// Deleting this channel (the client's own).
    Delete(String),
    /// The next page of its inbox.
    Inbox,
    /// Confirming that its device has taken the inbox up to this cursor.
    Taken(Cursor),
}

impl Ask {
    fn service(&self) -> &'static str {
        match self {
            Ask::Login => "login",
            Ask::Channel(_) => "channel",
            Ask::Publish => "publish",
            Ask::Posts(..) => "posts",
            Ask::Message(_) => "message",
            Ask::Register(_) => "register",
            Ask::Password(_) => "password",
            Ask::Delete(_) => "delete",
            Ask::Inbox => "inbox",
            Ask::Taken(_) => "taken",
        }
    }
}

/// A client's request in flight.
struct Asking {
    /// Its token in the client core's requests in flight, and its request id.
    token: u64,
    request_id: String,
    ask: Ask,
    /// Whether the request named an owner (a channel created with one).
    owned: bool,
    /// When it was first sent.
    first: u64,
    /// A name the request needs to exist (a post's channel, a message's recipient).
    needs: Option<String>,
}

pub(super) struct Client {
    pub(super) name: String,
    ops: u32,
    /// The client core's requests in flight (one at a time here).
    calls: Calls,
    asking: Option<Asking>,
    logged_in: bool,
    /// The password its name has, once registered, and the session's token, once it has one.
    pub(super) password: Option<String>,
    token: Option<String>,
    /// The channels it created, which it alone may delete.
    owns: Vec<String>,
    /// Its inbox: the cursor the cluster confirmed, a page's cursor still to confirm, and how
    /// often each event id was handed out.
    pub(super) confirmed: Cursor,
    to_confirm: Option<Cursor>,
    pub(super) handed: BTreeMap<String, u32>,
    /// A password change or registration of its was left in doubt (given up, or not
    /// confirmed in time): the password in force is not known to it.
    pub(super) unsure: bool,
}

impl Client {
    pub(super) fn new(c: usize, ops: u32) -> Client {
        let name = format!("p{c}");
        Client {
            calls: Calls::new(
                Duration::from_millis(CLIENT_TIMEOUT),
                CLIENT_ATTEMPTS,
                &name,
            ),
            name,
            ops,
            asking: None,
            logged_in: false,
            unsure: false,
            password: None,
            token: None,
            owns: Vec::new(),
            confirmed: Cursor::new(),
            to_confirm: None,
            handed: BTreeMap::new(),
        }
    }

    /// Whether it has nothing more to ask.
    pub(super) fn done(&self) -> bool {
        self.asking.is_none() && self.ops == 0
    }
}

/// Whether `cursor` covers event `id` (`origin:seq`).
pub fn covers(cursor: &Cursor, id: &str) -> bool {
    id.rsplit_once(':')
        .and_then(|(origin, seq)| Some((origin, seq.parse::<u64>().ok()?)))
        .is_some_and(|(origin, seq)| cursor.get(origin).is_some_and(|n| *n >= seq))
}

impl World {
    /// Client `c`'s turn: what is late is sent again (or given up), or the next request goes.
    pub(super) fn client_step(&mut self, c: usize) {
        if self.clients[c].asking.is_some() {
            let at = self.instant();
            for due in self.clients[c].calls.on_timeout(at) {
                match due {
                    CallDue::Resend(frame) => self.submit(c, frame),
                    CallDue::GaveUp(_) => {
                        // Given up: the request may or may not have taken effect.
                        if let Some(a) = self.clients[c].asking.take() {
                            if matches!(a.ask, Ask::Register(_) | Ask::Password(_)) {
                                self.clients[c].unsure = true;
                            }
                        }
                        self.at(10, Due::Client { client: c });
                        return;
                    }
                }
            }
            if let Some(deadline) = self.clients[c].calls.deadline() {
                let wait = deadline.saturating_duration_since(at).as_millis() as u64;
                self.at(wait.max(1), Due::Client { client: c });
            }
            return;
        }
        if self.now >= FAULTS_FOR || self.clients[c].ops == 0 {
            self.clients[c].ops = 0;
            return;
        }
        let (ask, env, needs) = self.next_request(c);
        self.clients[c].ops -= 1;
        let owned =
            matches!(ask, Ask::Channel(_)) && matches!(env.data.opt_str("user"), Ok(Some(_)));
        let mut env = env;
        env.stamp(1.0, 0);
        let at = self.instant();
        let client = &mut self.clients[c];
        let (token, frame) = client.calls.start(at, env);
        let frame = frame.to_vec();
        let request_id = client
            .calls
            .request_id(token)
            .unwrap_or_default()
            .to_owned();
        client.asking = Some(Asking {
            token,
            request_id,
            ask,
            owned,
            first: self.now,
            needs,
        });
        self.submit(c, frame);
        self.at(CLIENT_TIMEOUT, Due::Client { client: c });
    }

    /// What client `c` asks next: it logs in first; then creates a channel, posts to one
    /// that exists, writes to someone logged in, or reads its inbox (and confirms a page).
    fn next_request(&mut self, c: usize) -> (Ask, Envelope, Option<String>) {
        let me = self.clients[c].name.clone();
        if !self.clients[c].logged_in {
            return (
                Ask::Login,
                Envelope::new("login").with("user", me.as_str()),
                None,
            );
        }
        let client = &self.clients[c];
        if let (Some(pw), None) = (&client.password, &client.token) {
            // A password account logs in with its password for a session.
            let env = Envelope::new("login")
                .with("user", me.as_str())
                .with("password", pw.as_str());
            return (Ask::Login, env, None);
        }
        if let Some(cursor) = client.to_confirm.clone() {
            let value = rmpv::Value::Map(
                cursor
                    .iter()
                    .map(|(o, n)| (o.as_str().into(), (*n).into()))
                    .collect(),
            );
            let env = Envelope::new("taken")
                .with("user", me.as_str())
                .with("device", DEVICE)
                .with("cursor", value);
            return (Ask::Taken(cursor), self.with_token(c, env), None);
        }
        if self.rng.gen_range(0..8) == 0 {
            let env = Envelope::new("inbox")
                .with("user", me.as_str())
                .with("device", DEVICE)
                .with("limit", self.rng.gen_range(1..6));
            return (Ask::Inbox, self.with_token(c, env), None);
        }
        let people: Vec<String> = self
            .clients
            .iter()
            .filter(|o| o.name != me && self.created.contains_key(&o.name))
            .map(|o| o.name.clone())
            .collect();
        if self.rng.gen_range(0..12) == 0 {
            let client = &self.clients[c];
            let next = format!("password-{me}-{}", client.ops);
            return match (&client.password, &client.token) {
                (None, _) => (
                    Ask::Register(next.clone()),
                    Envelope::new("register")
                        .with("user", me.as_str())
                        .with("password", next.as_str()),
                    None,
                ),
                (Some(pw), Some(token)) => (
                    Ask::Password(next.clone()),
                    Envelope::new("password")
                        .with("user", me.as_str())
                        .with("password", pw.as_str())
                        .with("new", next.as_str())
                        .with("token", token.as_str()),
                    None,
                ),
                (Some(_), None) => unreachable!("logged in with the password above"),
            };
        }
        let roll = self.rng.gen_range(0..10);
        if roll < 2 || self.channels.is_empty() {
            let channel = format!("c{}", self.rng.gen_range(0..6));
            let env = Envelope::new("channel").with("channel", channel.as_str());
            // Half the channels have an owner, who may delete them.
            let env = if self.rng.gen_bool(0.5) {
                self.with_token(c, env.with("user", me.as_str()))
            } else {
                env
            };
            return (Ask::Channel(channel), env, None);
        }
        if !self.clients[c].owns.is_empty() && self.rng.gen_range(0..8) == 0 {
            let owns = &self.clients[c].owns;
            let channel = owns[self.rng.gen_range(0..owns.len())].clone();
            let env = Envelope::new("delete")
                .with("user", me.as_str())
                .with("channel", channel.as_str());
            return (Ask::Delete(channel), self.with_token(c, env), None);
        }
        let text = format!("{me} says {}", self.clients[c].ops);
        if roll < 7 || people.is_empty() {
            let channel = self.channels[self.rng.gen_range(0..self.channels.len())].clone();
            if self.rng.gen_range(0..3) == 0 {
                // Lines pasted at once: one request, taken in the order given.
                let lines: Vec<String> = (0..self.rng.gen_range(2..5))
                    .map(|i| format!("{text}.{i}"))
                    .collect();
                let list = lines
                    .iter()
                    .map(|l| rmpv::Value::from(l.as_str()))
                    .collect();
                let env = Envelope::new("posts")
                    .with("user", me.as_str())
                    .with("channel", channel.as_str())
                    .with("messages", rmpv::Value::Array(list));
                let env = self.with_token(c, env);
                return (Ask::Posts(channel.clone(), lines), env, Some(channel));
            }
            let env = Envelope::new("publish")
                .with("user", me.as_str())
                .with("channel", channel.as_str())
                .with("message", text.as_str());
            return (Ask::Publish, self.with_token(c, env), Some(channel));
        }
        let to = people[self.rng.gen_range(0..people.len())].clone();
        let env = Envelope::new("message")
            .with("src", me.as_str())
            .with("dst", to.as_str())
            .with("message", text.as_str());
        (Ask::Message(to.clone()), self.with_token(c, env), Some(to))
    }

    /// Clients may post to `channel` from now on.
    fn worth_posting(&mut self, channel: &str) {
        if !self.channels.iter().any(|x| x == channel) {
            self.channels.push(channel.to_owned());
        }
    }

    /// `env` with the client's session token, when it has one.
    fn with_token(&self, c: usize, env: Envelope) -> Envelope {
        match &self.clients[c].token {
            Some(t) => env.with("token", t.as_str()),
            None => env,
        }
    }

    /// An answer reached client `c` (from the broker): matched by the client core to the
    /// request it answers; a late answer to an earlier request is dropped there.
    pub(super) fn client_answer(&mut self, c: usize, reply: Envelope) {
        let at = self.instant();
        let matched = self.clients[c].calls.on_frame(at, &reply.to_bytes());
        let token = self.clients[c].asking.as_ref().map(|a| a.token);
        let reply = match matched {
            Some((t, Ok(reply))) if Some(t) == token => reply,
            Some((t, Err(e))) if Some(t) == token => {
                self.checks.violation(format!(
                    "{} could not read an answer: {e}",
                    self.clients[c].name
                ));
                return;
            }
            _ => {
                let id = reply
                    .data
                    .opt_str("request_id")
                    .ok()
                    .flatten()
                    .unwrap_or("");
                if reply.data.opt_bool(palaver_proto::AGAIN).ok().flatten() == Some(true) {
                    // Sent again by the client core in a moment: woken for it.
                    self.log(|| format!("{} sends {id} again shortly", self.clients[c].name));
                    if let Some(deadline) = self.clients[c].calls.deadline() {
                        let wait = deadline.saturating_duration_since(at).as_millis() as u64;
                        self.at(wait.max(1), Due::Client { client: c });
                    }
                    return;
                }
                self.log(|| format!("{} drops a late answer to {id}", self.clients[c].name));
                return;
            }
        };
        let Some(a) = self.clients[c].asking.take() else {
            return;
        };
        let ok = Reply::status(&reply) != Status::Error;
        let why = Reply::error_text(&reply).unwrap_or_default();
        self.log(|| {
            format!(
                "{} {} ({}) → {} {}",
                self.clients[c].name,
                a.ask.service(),
                a.request_id,
                reply
                    .data
                    .opt_str("server")
                    .ok()
                    .flatten()
                    .unwrap_or("broker"),
                if ok { "ok".to_owned() } else { why.clone() }
            )
        });
        // A claim's refusal for want of a majority speaks for the attempt that server made;
        // the same request sent again to another (the client core resends a late one) may
        // have taken effect there: the password in force is unknown to this client.
        if !ok && why.contains("majority") && matches!(a.ask, Ask::Register(_) | Ask::Password(_)) {
            self.clients[c].unsure = true;
        }
        if ok {
            self.succeeded(c, &a, &reply);
        } else if why.contains("token") || why.contains("session") || why.contains("password") {
            // The session ended (a password change elsewhere, or it was never this
            // server's to know): log in again with the password.
            self.clients[c].token = None;
            self.clients[c].to_confirm = None;
        } else if let Some(needed) = &a.needs {
            // Read your writes: what was acknowledged before this request was sent exists
            // for whichever server answers it.
            let known_before = self.created.get(needed).is_some_and(|at| *at <= a.first);
            if self.strict
                && known_before
                && (why.contains("has not logged in") || why.contains("does not exist"))
            {
                self.checks.violation(format!(
                    "read your writes: `{}` of {} refused ({why}) though `{needed}` was acknowledged before",
                    a.ask.service(), a.request_id
                ));
            }
        } else if let (Ask::Channel(ch), true) = (&a.ask, why.contains("already exists")) {
            // Worth posting to; but whether its creation was acknowledged to anyone, this
            // answer does not say.
            self.worth_posting(ch);
        } else if let Ask::Taken(_) = a.ask {
            // Not confirmed: the page comes again (repeats are dropped by id).
            self.clients[c].to_confirm = None;
        }
        let delay = self.rng.gen_range(1..50);
        self.at(delay, Due::Client { client: c });
    }

    /// A name is claimed once: a creation or registration acknowledged as new (not as a
    /// repeat of the same request) is the only one acknowledged for that name.
    fn claimed_once(&mut self, what: &str, a: &Asking, reply: &Envelope) {
        if reply.data.opt_bool("repeated").ok().flatten() == Some(true) {
            return;
        }
        match self.checks.claimed_by.get(what) {
            Some(first) if *first != a.request_id => {
                let why = format!(
                    "a name is claimed once: the {what} was acknowledged to {first} and again to {}",
                    a.request_id
                );
                self.checks.violation(why);
            }
            Some(_) => {}
            None => {
                self.checks
                    .claimed_by
                    .insert(what.to_owned(), a.request_id.clone());
            }
        }
    }

    /// What a success changes for client `c`, and what it is checked against.
    fn succeeded(&mut self, c: usize, a: &Asking, reply: &Envelope) {
        let id = reply.data.opt_str("id").ok().flatten().map(str::to_owned);
        // Every event the answer names (`posts` names several) was acknowledged.
        let ids = match &a.ask {
            Ask::Posts(..) => reply.data.str_list("ids").unwrap_or_default(),
            Ask::Login
            | Ask::Channel(_)
            | Ask::Publish
            | Ask::Message(_)
            | Ask::Register(_)
            | Ask::Password(_)
            | Ask::Delete(_)
            | Ask::Inbox
            | Ask::Taken(_) => id.iter().cloned().collect(),
        };
        for id in ids {
            self.checks.acked.push(Acked {
                request_id: a.request_id.clone(),
                id,
                service: a.ask.service(),
            });
        }
        if let Some(token) = reply.data.opt_str("token").ok().flatten() {
            self.clients[c].token = Some(token.to_owned());
            self.sessions
                .push((self.clients[c].name.clone(), token.to_owned()));
        }
        match &a.ask {
            Ask::Login => {
                self.clients[c].logged_in = true;
                let me = self.clients[c].name.clone();
                self.created.entry(me.clone()).or_insert(self.now);
                self.checks.people.insert(me);
            }
            Ask::Channel(ch) => {
                self.created.entry(ch.clone()).or_insert(self.now);
                self.checks.channels.insert(ch.clone());
                self.claimed_once(&format!("channel {ch}"), a, reply);
                self.worth_posting(ch);
                // Created with an owner (the request named one): this client's to delete.
                if a.owned && !self.clients[c].owns.contains(ch) {
                    self.clients[c].owns.push(ch.clone());
                }
            }
            Ask::Delete(ch) => {
                self.checks.deleted.insert(ch.clone());
                self.clients[c].owns.retain(|o| o != ch);
            }
            Ask::Register(pw) | Ask::Password(pw) => {
                if let Ask::Register(_) = a.ask {
                    let me = self.clients[c].name.clone();
                    self.claimed_once(&format!("account {me}"), a, reply);
                }
                self.clients[c].password = Some(pw.clone());
            }
            Ask::Message(to) => {
                if let Some(id) = id {
                    self.messages.push((id, to.clone()));
                }
            }
            Ask::Publish => {}
            Ask::Posts(channel, lines) => {
                let named = reply.data.str_list("ids").map_or(0, |ids| ids.len());
                if named != lines.len() {
                    self.checks.violation(format!(
                        "posts: {} was answered with {named} ids for {} posts",
                        a.request_id,
                        lines.len()
                    ));
                }
                self.checks.pasted.push((channel.clone(), lines.clone()));
            }
            Ask::Inbox => self.inbox_page(c, reply),
            Ask::Taken(cursor) => {
                let confirmed = &mut self.clients[c].confirmed;
                for (origin, n) in cursor {
                    let e = confirmed.entry(origin.clone()).or_default();
                    *e = (*e).max(*n);
                }
                self.clients[c].to_confirm = None;
            }
        }
    }

    /// A page of client `c`'s inbox: each private message to it is handed out once. One
    /// already covered by a cursor the cluster confirmed must not come again (where read your
    /// writes holds: the `taken` was acknowledged once the live servers held it).
    fn inbox_page(&mut self, c: usize, reply: &Envelope) {
        let page = match palaver_client::InboxPage::parse(reply) {
            Ok(page) => page,
            Err(e) => {
                self.checks.violation(format!(
                    "inbox: {}'s page cannot be read: {e}",
                    self.clients[c].name
                ));
                return;
            }
        };
        let (events, cursor) = (page.events, page.cursor);
        let me = self.clients[c].name.clone();
        for e in events {
            match &e.kind {
                EventKind::Message(MessageKind::Direct { dst, .. }) if dst.as_str() == me => {}
                EventKind::Message(MessageKind::Direct { .. } | MessageKind::Post { .. })
                | EventKind::Account(_)
                | EventKind::Room(_)
                | EventKind::Reader(_)
                | EventKind::Claim(_) => continue,
            }
            let id = e.id();
            if self.strict && covers(&self.clients[c].confirmed, &id) {
                self.checks.violation(format!(
                    "exactly-once inbox: {id} handed to {me}'s {DEVICE} again after its `taken` was acknowledged"
                ));
            }
            *self.clients[c].handed.entry(id).or_default() += 1;
        }
        let client = &mut self.clients[c];
        if cursor
            .iter()
            .any(|(o, n)| client.confirmed.get(o).is_none_or(|m| m < n))
        {
            client.to_confirm = Some(cursor);
        }
    }
}

impl World {
    /// Once healed: no private message was taken by a person's device without being handed
    /// out to it (the confirmed cursor covers only what some page handed out), so nothing
    /// acknowledged is skipped; what the cursor does not cover yet, the next page hands out.
    pub(super) fn inbox_settled(&mut self, views: &[crate::check::View]) {
        let Some(view) = views.first() else { return };
        for client in &self.clients {
            let cursor = view.cursor(&client.name, DEVICE);
            for (id, _) in self.messages.iter().filter(|(_, to)| *to == client.name) {
                if view.hides(id) || !covers(&cursor, id) || client.handed.contains_key(id) {
                    continue;
                }
                self.checks.violation(format!(
                    "exactly-once inbox: {id} to {} was taken by its {DEVICE} (cursor {cursor:?}) but never handed out",
                    client.name
                ));
            }
        }
    }
}
