use std::collections::{BTreeSet, HashMap};

use palaver_core::Lamport;
use palaver_proto::{Envelope, Name, Reply, Request};
use palaver_store::{Event, EventKind, Snapshot};

/// The server's logic, free of I/O: what a request does given what is known.
///
/// Names of users and channels share one namespace. A name whose creation is on its way to disk
/// is "in flight": nobody else may take it for the other kind, and a second channel of the same
/// name is refused, but it does not count as existing (it is not listed, and cannot be posted
/// to) until its write is durable.
pub struct State {
    origin: String,
    users: BTreeSet<Name>,
    channels: BTreeSet<Name>,
    in_flight: HashMap<Name, (Kind, u32)>,
    seq: u64,
    lamport: Lamport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Channel,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answer at once.
    Reply(Envelope),
    /// Store this event first; answer with [`State::committed`]'s reply once it is durable.
    Write(Event),
}

impl State {
    /// Starts from what the store holds.
    pub fn new(origin: &str, snap: Snapshot) -> State {
        State {
            origin: origin.to_owned(),
            users: snap.users.into_iter().collect(),
            channels: snap.channels.into_iter().collect(),
            in_flight: HashMap::new(),
            seq: snap.progress.get(origin).copied().unwrap_or(0),
            lamport: Lamport::starting_at(snap.max_lamport),
        }
    }

    /// Takes in the Lamport counter of a received message.
    pub fn observe(&mut self, clock: u64) {
        self.lamport.observe(clock);
    }

    /// Advances the Lamport clock for a send.
    pub fn tick(&mut self) -> u64 {
        self.lamport.tick()
    }

    pub fn users(&self) -> impl Iterator<Item = &Name> {
        self.users.iter()
    }

    pub fn channels(&self) -> impl Iterator<Item = &Name> {
        self.channels.iter()
    }

    /// Decides what `req`, received at physical time `now`, does.
    pub fn handle(&mut self, req: Request, now: f64) -> Outcome {
        let service = req.service();
        let refuse = |text: String| Outcome::Reply(Reply::error(service, &text));
        let kind = match req {
            Request::Users => return Outcome::Reply(list(service, "users", &self.users)),
            Request::Channels => {
                let names: Vec<rmpv::Value> =
                    self.channels.iter().map(|c| c.as_str().into()).collect();
                return Outcome::Reply(
                    Reply::ok(service)
                        .with("users", names.clone())
                        .with("channels", names),
                );
            }
            Request::Login { user } => {
                if self.is(&user, Kind::Channel) {
                    return refuse(format!("`{user}` is a channel, not a user"));
                }
                self.hold(&user, Kind::User);
                EventKind::Login { user }
            }
            Request::Channel { channel } => {
                if self.channels.contains(&channel) || self.in_flight_as(&channel, Kind::Channel) {
                    return refuse(format!("channel `{channel}` already exists"));
                }
                if self.is(&channel, Kind::User) {
                    return refuse(format!("`{channel}` is a user's name"));
                }
                self.hold(&channel, Kind::Channel);
                EventKind::Channel { channel }
            }
            Request::Publish {
                user,
                channel,
                message,
            } => {
                if !self.channels.contains(&channel) {
                    return refuse(format!("channel `{channel}` does not exist"));
                }
                if !self.users.contains(&user) {
                    return refuse(format!("user `{user}` has not logged in"));
                }
                EventKind::Post {
                    user,
                    channel,
                    message,
                }
            }
            Request::Message { src, dst, message } => {
                if !self.users.contains(&src) {
                    return refuse(format!("user `{src}` has not logged in"));
                }
                if !self.users.contains(&dst) {
                    return refuse(format!("user `{dst}` does not exist"));
                }
                EventKind::Direct { src, dst, message }
            }
        };
        self.seq += 1;
        Outcome::Write(Event {
            origin: self.origin.clone(),
            seq: self.seq,
            lamport: self.lamport.tick(),
            timestamp: now,
            kind,
        })
    }

    /// Records that `event` is durable, and returns the reply to its request and the
    /// publication it makes, if any (as topic and envelope, not yet stamped).
    pub fn committed(&mut self, event: &Event) -> (Envelope, Option<(String, Envelope)>) {
        self.release(event);
        let id = event.id();
        let stamp = |env: Envelope| {
            env.with("timestamp", event.timestamp)
                .with("clock", event.lamport)
                .with("id", id.as_str())
        };
        match &event.kind {
            EventKind::Login { user } => {
                self.users.insert(user.clone());
                (Reply::ok("login").with("id", id.as_str()), None)
            }
            EventKind::Channel { channel } => {
                self.channels.insert(channel.clone());
                (Reply::ok("channel").with("id", id.as_str()), None)
            }
            EventKind::Post {
                user,
                channel,
                message,
            } => {
                let publication = stamp(
                    Envelope::new("publish")
                        .with("user", user.as_str())
                        .with("channel", channel.as_str())
                        .with("message", message.as_str()),
                );
                (
                    Reply::ok("publish").with("id", id.as_str()),
                    Some((channel.to_string(), publication)),
                )
            }
            EventKind::Direct { src, dst, message } => {
                let publication = stamp(
                    Envelope::new("message")
                        .with("src", src.as_str())
                        .with("dst", dst.as_str())
                        .with("message", message.as_str()),
                );
                (
                    Reply::ok("message").with("id", id.as_str()),
                    Some((dst.to_string(), publication)),
                )
            }
        }
    }

    /// Records that `event` could not be stored, and returns the error reply.
    pub fn failed(&mut self, event: &Event) -> Envelope {
        self.release(event);
        let service = match event.kind {
            EventKind::Login { .. } => "login",
            EventKind::Channel { .. } => "channel",
            EventKind::Post { .. } => "publish",
            EventKind::Direct { .. } => "message",
        };
        Reply::error(service, "the server could not store this; try again")
    }

    fn is(&self, name: &Name, kind: Kind) -> bool {
        let known = match kind {
            Kind::User => self.users.contains(name),
            Kind::Channel => self.channels.contains(name),
        };
        known || self.in_flight_as(name, kind)
    }

    fn in_flight_as(&self, name: &Name, kind: Kind) -> bool {
        self.in_flight.get(name).is_some_and(|(k, _)| *k == kind)
    }

    fn hold(&mut self, name: &Name, kind: Kind) {
        self.in_flight.entry(name.clone()).or_insert((kind, 0)).1 += 1;
    }

    fn release(&mut self, event: &Event) {
        let name = match &event.kind {
            EventKind::Login { user } => user,
            EventKind::Channel { channel } => channel,
            _ => return,
        };
        if let Some(entry) = self.in_flight.get_mut(name) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.in_flight.remove(name);
            }
        }
    }
}

fn list(service: &str, key: &str, names: &BTreeSet<Name>) -> Envelope {
    let names: Vec<rmpv::Value> = names.iter().map(|n| n.as_str().into()).collect();
    Reply::ok(service).with(key, names)
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

    /// Runs a request to completion, committing any write at once.
    fn run(st: &mut State, req: Request) -> Envelope {
        match st.handle(req, 1.0) {
            Outcome::Reply(env) => env,
            Outcome::Write(ev) => st.committed(&ev).0,
        }
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
        let Outcome::Write(ev) = st.handle(post, 2.0) else {
            panic!("post should write")
        };
        let (reply, publication) = st.committed(&ev);
        assert_eq!(reply.data.str("status").unwrap(), "OK");
        let (topic, env) = publication.unwrap();
        assert_eq!(topic, "general");
        assert_eq!(env.data.str("id").unwrap(), ev.id());
        let dm = Request::Message {
            src: name("ana"),
            dst: name("bob"),
            message: "psst".into(),
        };
        assert!(ok(&run(&mut st, dm)));
    }

    #[test]
    fn refusals_say_why() {
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
            let Outcome::Reply(env) = st.handle(req, 1.0) else {
                panic!("refusal expected")
            };
            assert_eq!(env.data.str("status").unwrap(), "erro");
            assert!(Reply::error_text(&env).unwrap().contains(want), "{env:?}");
        }
    }

    #[test]
    fn a_name_in_flight_is_held() {
        let mut st = state();
        let Outcome::Write(first) = st.handle(Request::Channel { channel: name("c") }, 1.0) else {
            panic!()
        };
        assert!(matches!(
            st.handle(Request::Channel { channel: name("c") }, 1.0),
            Outcome::Reply(_)
        ));
        assert!(matches!(
            st.handle(Request::Login { user: name("c") }, 1.0),
            Outcome::Reply(_)
        ));
        let listed = run(&mut st, Request::Channels);
        assert!(
            listed.data.str_list("channels").unwrap().is_empty(),
            "not durable yet"
        );
        let err = st.failed(&first);
        assert_eq!(err.data.str("status").unwrap(), "erro");
        assert!(matches!(
            st.handle(Request::Channel { channel: name("c") }, 1.0),
            Outcome::Write(_)
        ));
    }

    #[test]
    fn events_get_consecutive_ids_and_rising_clocks() {
        let mut st = State::new(
            "s1",
            Snapshot {
                progress: [("s1".to_owned(), 41)].into(),
                max_lamport: 100,
                ..Snapshot::default()
            },
        );
        st.observe(500);
        let Outcome::Write(a) = st.handle(Request::Login { user: name("a") }, 1.0) else {
            panic!()
        };
        let Outcome::Write(b) = st.handle(Request::Login { user: name("b") }, 1.0) else {
            panic!()
        };
        assert_eq!((a.seq, b.seq), (42, 43));
        assert!(a.lamport > 500 && b.lamport > a.lamport);
    }
}
