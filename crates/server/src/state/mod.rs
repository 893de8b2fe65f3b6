use std::collections::BTreeSet;

use palaver_core::Lamport;
use palaver_proto::{Envelope, HistoryQuery, Name, Publication, Reply, Request};
use palaver_store::{Event, EventKind, RequestEvent, Snapshot, RECENT_REQUESTS};

use crate::recent::Recent;

// One module per client service: what it checks, and what it does to the state.
mod channel;
mod channels;
mod history;
mod login;
mod message;
mod publish;
mod users;

/// What a client service decided.
enum Outcome {
    /// Answer this, and nothing else.
    Reply(Envelope),
    /// Refuse, saying why; nothing changes.
    Refused(String),
    /// Make this event: stored, replicated, published, then answered with its id.
    Event(EventKind),
    /// Answer from the store after the batch's commit.
    Read(HistoryQuery),
}

/// The server's logic, free of I/O: what a request does given what is known.
///
/// A write takes effect in memory as soon as it is accepted, so that later requests of the same
/// batch see it; the driver commits the batch and only then sends any of its replies. If the
/// commit fails, the driver calls [`State::reload`] with what the store really holds, and the
/// batch's requests are answered with errors.
pub struct State {
    origin: String,
    users: BTreeSet<Name>,
    channels: BTreeSet<Name>,
    seq: u64,
    /// Recent client request ids and the event each made.
    requests: Recent,
}

/// What a request did.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The answer, to send once `event` (if any) is durable.
    pub reply: Envelope,
    /// The state change to store.
    pub event: Option<Event>,
    /// What to publish once `event` is durable: topic and message.
    pub publication: Option<(String, Envelope)>,
    /// A read of the store to answer with instead of `reply`, after the batch's commit, so
    /// that it sees every event acknowledged before it (`history`).
    pub read: Option<HistoryQuery>,
}

impl Handled {
    /// An answer and nothing else.
    pub fn reply(reply: Envelope) -> Handled {
        Handled {
            reply,
            event: None,
            publication: None,
            read: None,
        }
    }
}

impl State {
    /// Starts from what the store holds.
    pub fn new(origin: &str, snap: Snapshot) -> State {
        let mut st = State {
            origin: origin.to_owned(),
            users: BTreeSet::new(),
            channels: BTreeSet::new(),
            seq: 0,
            requests: Recent::new(RECENT_REQUESTS),
        };
        st.reload(snap);
        st
    }

    /// Forgets whatever was accepted but not stored, and starts again from `snap`.
    pub fn reload(&mut self, snap: Snapshot) {
        self.users = snap.users.into_iter().collect();
        self.channels = snap.channels.into_iter().collect();
        self.seq = snap.progress.get(&self.origin).copied().unwrap_or(0);
        self.requests.clear();
        for (request, made) in snap.requests {
            // A request made twice (see `apply`) names its earlier event.
            match self.requests.get(&request) {
                Some(prev) if (prev.lamport, &prev.origin) <= (made.lamport, &made.origin) => {}
                _ => self.requests.remember(&request, &made),
            }
        }
    }

    /// Takes in an event another server accepted (and this one has just stored).
    ///
    /// A name claimed as a user on one server and as a channel on another at the same moment
    /// keeps the kind this server learned first; see docs/replication.md.
    ///
    /// Returns an event to hide, when this one repeats a request another event already made
    /// (the first attempt reached a server that died before passing it on, and the retry went
    /// elsewhere): of the two, the later in the total order is hidden, the same on every server.
    pub fn apply(&mut self, event: &Event) -> Option<(String, u64)> {
        if event.origin == self.origin {
            // One of this server's own events, back from a peer (this server sent it, then
            // crashed before its commit, or lost its disk): its number is taken.
            self.seq = self.seq.max(event.seq);
        }
        let mut hide = None;
        if let Some(request) = &event.request {
            if !self.requests.made_by(request, event) {
                match self.requests.get(request) {
                    Some(prev) => {
                        let made = RequestEvent::of(event);
                        let (earlier, later) =
                            if (prev.lamport, &prev.origin) <= (made.lamport, &made.origin) {
                                (prev, made)
                            } else {
                                (made, prev)
                            };
                        hide = Some((later.origin.clone(), later.seq));
                        self.requests.replace(request, &earlier);
                    }
                    None => self.requests.remember_event(request, event),
                }
            }
        }
        match &event.kind {
            EventKind::Login { user } => login::on_event(self, user),
            EventKind::Channel { channel } => channel::on_event(self, channel),
            EventKind::Post { .. } | EventKind::Direct { .. } => {}
        }
        hide
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Decides what `req`, received at physical time `now`, does, and applies it. An accepted
    /// event takes its Lamport time from `lamport`.
    pub fn handle(&mut self, req: Request, now: f64, lamport: &mut Lamport) -> Handled {
        self.handle_request(req, None, now, lamport)
    }

    /// As [`State::handle`], for a request that may carry the client's request id: a write whose
    /// id was seen before (here, or on any server, through replication) is not done again; it
    /// is answered as the first time, with the same event id.
    pub fn handle_request(
        &mut self,
        req: Request,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let service = req.service();
        if let Some(id) = request
            .as_ref()
            .filter(|_| req.writes())
            .and_then(|r| self.requests.get(r))
        {
            return Handled::reply(
                Reply::ok(service)
                    .with("id", id.id())
                    .with("repeated", true),
            );
        }
        let outcome = match req {
            Request::Login { user } => login::apply(self, user),
            Request::Users => users::apply(self),
            Request::Channel { channel } => channel::apply(self, channel),
            Request::Channels => channels::apply(self),
            Request::Publish {
                user,
                channel,
                message,
            } => publish::apply(self, user, channel, message),
            Request::Message { src, dst, message } => message::apply(self, src, dst, message),
            Request::History(q) => history::apply(q),
        };
        let kind = match outcome {
            Outcome::Reply(reply) => return Handled::reply(reply),
            Outcome::Refused(why) => return Handled::reply(Reply::error(service, &why)),
            Outcome::Read(q) => {
                return Handled {
                    read: Some(q),
                    ..Handled::reply(Reply::ok(service))
                }
            }
            Outcome::Event(kind) => kind,
        };
        self.seq += 1;
        let event = Event {
            origin: self.origin.clone(),
            seq: self.seq,
            lamport: lamport.tick(),
            timestamp: now,
            kind,
            request,
        };
        if let Some(r) = &event.request {
            self.requests.remember_event(r, &event);
        }
        let reply = Reply::ok(service).with("id", event.id());
        let publication = Publication::of_event(&event).map(|p| (p.topic, p.envelope));
        Handled {
            reply,
            event: Some(event),
            publication,
            read: None,
        }
    }
}

/// A listing reply: the names under each of `keys`.
fn list(service: &str, names: &BTreeSet<Name>, keys: &[&str]) -> Envelope {
    let names: Vec<rmpv::Value> = names.iter().map(|n| n.as_str().into()).collect();
    keys.iter()
        .fold(Reply::ok(service), |env, key| env.with(key, names.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_proto::Status;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn state() -> State {
        State::new("s1", Snapshot::default())
    }

    fn run(st: &mut State, req: Request) -> Envelope {
        st.handle(req, 1.0, &mut Lamport::default()).reply
    }

    fn ok(env: &Envelope) -> bool {
        Reply::status(env) == Status::Success
    }

    #[test]
    fn the_standard_flow_works() {
        let mut st = state();
        assert!(ok(&run(&mut st, Request::Login { user: name("ana") })));
        assert!(ok(&run(&mut st, Request::Login { user: name("bob") })));
        assert!(ok(&run(
            &mut st,
            Request::Channel {
                channel: name("general")
            }
        )));
        let users = run(&mut st, Request::Users);
        assert_eq!(users.data.str_list("users").unwrap(), vec!["ana", "bob"]);
        let chans = run(&mut st, Request::Channels);
        assert_eq!(chans.data.str_list("users").unwrap(), vec!["general"]);
        assert_eq!(chans.data.str_list("channels").unwrap(), vec!["general"]);
        let post = Request::Publish {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        };
        let h = st.handle(post, 2.0, &mut Lamport::default());
        assert_eq!(h.reply.data.str("status").unwrap(), "OK");
        let ev = h.event.expect("a post is stored");
        let (topic, env) = h.publication.expect("a post is published");
        assert_eq!(topic, "general");
        assert_eq!(env.data.str("id").unwrap(), ev.id());
        assert_eq!(env.data.clock().unwrap(), Some(ev.lamport));
        let dm = Request::Message {
            src: name("ana"),
            dst: name("bob"),
            message: "psst".into(),
        };
        let h = st.handle(dm, 3.0, &mut Lamport::default());
        assert!(ok(&h.reply));
        assert_eq!(h.publication.unwrap().0, "bob");
    }

    #[test]
    fn refusals_say_why_and_change_nothing() {
        let mut st = state();
        run(&mut st, Request::Login { user: name("ana") });
        run(
            &mut st,
            Request::Channel {
                channel: name("general"),
            },
        );
        let cases = [
            (
                Request::Channel {
                    channel: name("general"),
                },
                "already exists",
            ),
            (
                Request::Channel {
                    channel: name("ana"),
                },
                "is a user's name",
            ),
            (
                Request::Login {
                    user: name("general"),
                },
                "is a channel",
            ),
            (
                Request::Publish {
                    user: name("ana"),
                    channel: name("nope"),
                    message: "x".into(),
                },
                "channel `nope` does not exist",
            ),
            (
                Request::Publish {
                    user: name("zed"),
                    channel: name("general"),
                    message: "x".into(),
                },
                "user `zed` has not logged in",
            ),
            (
                Request::Message {
                    src: name("ana"),
                    dst: name("zed"),
                    message: "x".into(),
                },
                "user `zed` does not exist",
            ),
        ];
        for (req, want) in cases {
            let h = st.handle(req, 1.0, &mut Lamport::default());
            assert!(h.event.is_none() && h.publication.is_none());
            assert_eq!(h.reply.data.str("status").unwrap(), "erro");
            assert!(
                Reply::error_text(&h.reply).unwrap().contains(want),
                "{:?}",
                h.reply
            );
        }
        assert_eq!(
            run(&mut st, Request::Users).data.str_list("users").unwrap(),
            vec!["ana"]
        );
    }

    #[test]
    fn a_repeated_request_takes_effect_once() {
        let mut st = state();
        let mut clock = Lamport::default();
        run(&mut st, Request::Login { user: name("ana") });
        run(
            &mut st,
            Request::Channel {
                channel: name("general"),
            },
        );
        let post = || Request::Publish {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        };
        let first = st.handle_request(post(), Some("r1".into()), 1.0, &mut clock);
        let again = st.handle_request(post(), Some("r1".into()), 2.0, &mut clock);
        assert!(
            first.event.is_some() && again.event.is_none(),
            "the retry makes no event"
        );
        assert_eq!(
            again.reply.data.str("id").unwrap(),
            first.reply.data.str("id").unwrap()
        );
        let other = st.handle_request(post(), Some("r2".into()), 3.0, &mut clock);
        assert!(other.event.is_some(), "another id is another post");
        // A retried channel creation is answered as success, not "already exists".
        let make = || Request::Channel {
            channel: name("news"),
        };
        assert!(st
            .handle_request(make(), Some("c1".into()), 4.0, &mut clock)
            .event
            .is_some());
        let retry = st.handle_request(make(), Some("c1".into()), 5.0, &mut clock);
        assert_eq!(retry.reply.data.str("status").unwrap(), "sucesso");
    }

    #[test]
    fn a_request_made_twice_on_two_servers_hides_the_later_event_everywhere() {
        let post = |origin: &str, seq: u64, lamport: u64| Event {
            origin: origin.into(),
            seq,
            lamport,
            timestamp: 1.0,
            kind: EventKind::Post {
                user: name("ana"),
                channel: name("general"),
                message: "hi".into(),
            },
            request: Some("r1".into()),
        };
        let (first, retry) = (post("s1", 5, 10), post("s2", 7, 12));
        // One server learns of the first attempt first, another of the retry first.
        let mut a = state();
        assert_eq!(a.apply(&first), None);
        assert_eq!(a.apply(&retry), Some(("s2".into(), 7)));
        let mut b = State::new("s3", Snapshot::default());
        assert_eq!(b.apply(&retry), None);
        assert_eq!(
            b.apply(&first),
            Some(("s2".into(), 7)),
            "the same event is hidden on both"
        );
        let again = b.handle_request(
            Request::Publish {
                user: name("ana"),
                channel: name("general"),
                message: "hi".into(),
            },
            Some("r1".into()),
            2.0,
            &mut Lamport::default(),
        );
        assert_eq!(
            again.reply.data.str("id").unwrap(),
            "s1:5",
            "a third try names the earlier event"
        );
    }

    #[test]
    fn own_events_back_from_a_peer_take_their_numbers() {
        let mut st = state();
        let mine = Event {
            origin: "s1".into(),
            seq: 7,
            lamport: 20,
            timestamp: 1.0,
            kind: EventKind::Login { user: name("ana") },
            request: None,
        };
        st.apply(&mine);
        let next = st.handle(
            Request::Login { user: name("bob") },
            2.0,
            &mut Lamport::starting_at(20),
        );
        assert_eq!(
            next.event.unwrap().seq,
            8,
            "never a number a peer already holds"
        );
    }

    #[test]
    fn reload_forgets_what_was_not_stored() {
        let mut st = state();
        let mut clock = Lamport::default();
        let h = st.handle(Request::Channel { channel: name("c") }, 1.0, &mut clock);
        let lamport = h.event.unwrap().lamport;
        st.reload(Snapshot::default());
        let listed = run(&mut st, Request::Channels);
        assert!(listed.data.str_list("channels").unwrap().is_empty());
        let again = st.handle(Request::Channel { channel: name("c") }, 1.0, &mut clock);
        let again = again.event.unwrap();
        assert_eq!(again.seq, 1, "the unstored sequence number is reused");
        assert!(again.lamport > lamport, "the clock never goes back");
    }

    #[test]
    fn events_get_consecutive_ids_and_rising_clocks() {
        let snap = Snapshot {
            progress: [("s1".to_owned(), 41)].into(),
            max_lamport: 100,
            ..Snapshot::default()
        };
        let mut st = State::new("s1", snap);
        let mut clock = Lamport::starting_at(100);
        clock.observe(500);
        let a = st.handle(Request::Login { user: name("a") }, 1.0, &mut clock);
        let b = st.handle(Request::Login { user: name("b") }, 1.0, &mut clock);
        let (a, b) = (a.event.unwrap(), b.event.unwrap());
        assert_eq!((a.seq, b.seq), (42, 43));
        assert!(a.lamport > 500 && b.lamport > a.lamport);
    }
}
