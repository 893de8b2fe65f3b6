//! The request logic's tests: the standard services, request ids, and accounts (each service's
//! refusals, sessions ending, idle expiry), with password work done on the spot.

use super::*;
use palaver_proto::{AccountKind, MessageKind, Status};

pub(super) fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// An event of `origin`'s, for the folds' tests.
pub(super) fn event(origin: &str, seq: u64, lamport: u64, kind: EventKind) -> Event {
    Event {
        origin: origin.into(),
        seq,
        lamport,
        timestamp: 0.0,
        kind,
        request: None,
    }
}

/// The services, with every claim decided on the spot as a cluster of one server decides
/// it: in the next slot of the log of claims, applied, then the request finished.
trait Decides {
    fn handle_now(&mut self, req: Request, now: f64, lamport: &mut Lamport) -> Handled;
    fn request_now(
        &mut self,
        req: Request,
        request: Option<String>,
        proofs: &Proofs,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled;
    fn verified_now(
        &mut self,
        pending: Pending,
        verdict: Verdict,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled;
    fn settle_claim(&mut self, h: Handled, now: f64, lamport: &mut Lamport) -> Handled;
}

impl Decides for State {
    fn handle_now(&mut self, req: Request, now: f64, lamport: &mut Lamport) -> Handled {
        let h = self.handle(req, now, lamport);
        self.settle_claim(h, now, lamport)
    }

    fn request_now(
        &mut self,
        req: Request,
        request: Option<String>,
        proofs: &Proofs,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let h = self.handle_request(req, request, proofs, now, lamport);
        self.settle_claim(h, now, lamport)
    }

    fn verified_now(
        &mut self,
        pending: Pending,
        verdict: Verdict,
        request: Option<String>,
        now: f64,
        lamport: &mut Lamport,
    ) -> Handled {
        let h = self.verified(pending, verdict, request, now, lamport);
        self.settle_claim(h, now, lamport)
    }

    fn settle_claim(&mut self, mut h: Handled, now: f64, lamport: &mut Lamport) -> Handled {
        let Some(p) = h.claim.take() else {
            return h;
        };
        let slot = self.claims_applied() + 1;
        let claimed = Claimed {
            claim: p.claim,
            server: name("s1"),
            request: p.request.clone(),
        };
        let decided = self.apply_claim(slot, &claimed).map(|()| slot);
        self.claimed(p.after, decided, p.request, now, lamport)
    }
}

fn state() -> State {
    State::new("s1", Snapshot::default())
}

fn run(st: &mut State, req: Request) -> Envelope {
    st.handle_now(req, 1.0, &mut Lamport::default()).reply
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
            channel: name("general"),
            user: None,
        }
    )));
    let users = run(&mut st, Request::Users {});
    assert_eq!(users.data.str_list("users").unwrap(), vec!["ana", "bob"]);
    let chans = run(&mut st, Request::Channels {});
    assert_eq!(chans.data.str_list("users").unwrap(), vec!["general"]);
    assert_eq!(chans.data.str_list("channels").unwrap(), vec!["general"]);
    let post = Request::Publish {
        user: name("ana"),
        channel: name("general"),
        message: "hi".into(),
    };
    let h = st.handle_now(post, 2.0, &mut Lamport::default());
    assert_eq!(h.reply.data.str("status").unwrap(), "OK");
    let ev = h.events.first().cloned().expect("a post is stored");
    let (topic, env) = h
        .publication
        .into_iter()
        .next()
        .expect("a post is published");
    assert_eq!(topic, "general");
    assert_eq!(env.data.str("id").unwrap(), ev.id());
    assert_eq!(env.data.clock().unwrap(), Some(ev.lamport));
    let dm = Request::Message {
        src: name("ana"),
        dst: name("bob"),
        message: "psst".into(),
    };
    let h = st.handle_now(dm, 3.0, &mut Lamport::default());
    assert!(ok(&h.reply));
    assert_eq!(h.publication.into_iter().next().unwrap().0, "bob");
}

#[test]
fn refusals_say_why_and_change_nothing() {
    let mut st = state();
    run(&mut st, Request::Login { user: name("ana") });
    run(
        &mut st,
        Request::Channel {
            channel: name("general"),
            user: None,
        },
    );
    let cases = [
        (
            Request::Channel {
                channel: name("general"),
                user: None,
            },
            "already exists",
        ),
        (
            Request::Channel {
                channel: name("ana"),
                user: None,
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
        let h = st.handle_now(req, 1.0, &mut Lamport::default());
        assert!(h.events.is_empty() && h.publication.is_empty());
        assert_eq!(h.reply.data.str("status").unwrap(), "erro");
        assert!(
            Reply::error_text(&h.reply).unwrap().contains(want),
            "{:?}",
            h.reply
        );
    }
    assert_eq!(
        run(&mut st, Request::Users {})
            .data
            .str_list("users")
            .unwrap(),
        vec!["ana"]
    );
}

/// `ana` logged in and `general` made on `st`: the events, to take in elsewhere.
fn ana_in_general(st: &mut State, clock: &mut Lamport) -> Vec<Event> {
    let mut made = Vec::new();
    for req in [
        Request::Login { user: name("ana") },
        Request::Channel {
            channel: name("general"),
            user: None,
        },
    ] {
        made.extend(st.handle_now(req, 1.0, clock).events);
    }
    made
}

fn posts(lines: &[&str]) -> Request {
    Request::Posts {
        user: name("ana"),
        channel: name("general"),
        messages: lines.iter().map(|l| (*l).to_owned()).collect(),
    }
}

#[test]
fn posts_are_made_one_after_another_each_with_a_request_id_of_its_own() {
    let mut st = state();
    let mut clock = Lamport::default();
    ana_in_general(&mut st, &mut clock);
    let h = st.request_now(
        posts(&["one", "two", "three"]),
        Some("p1".into()),
        &Proofs::default(),
        2.0,
        &mut clock,
    );
    assert!(ok(&h.reply), "{:?}", h.reply);
    let texts: Vec<&str> = h
        .events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Message(MessageKind::Post { message, .. }) => message.as_str(),
            other => panic!("not a post: {other:?}"),
        })
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(h.events.windows(2).all(|w| w[0].lamport < w[1].lamport));
    let requests: Vec<Option<&str>> = h.events.iter().map(|e| e.request.as_deref()).collect();
    assert_eq!(requests, [Some("p1#0"), Some("p1#1"), Some("p1")]);
    // One publication each, on the channel, as `publish` makes.
    assert_eq!(h.publication.len(), 3);
    assert!(h.publication.iter().all(|(topic, _)| topic == "general"));
    // The answer names every post, and the last one's place.
    let ids: Vec<String> = h.events.iter().map(Event::id).collect();
    assert_eq!(h.reply.data.str_list("ids").unwrap(), ids);
    assert_eq!(h.reply.data.str("id").unwrap(), ids[2]);
    let cursors: Vec<String> = h
        .events
        .iter()
        .map(|e| palaver_proto::Cursor::of(e).to_string())
        .collect();
    assert_eq!(h.reply.data.str_list("cursors").unwrap(), cursors);
    // Asked again: nothing more is made, and the answer is the same.
    let again = st.request_now(
        posts(&["one", "two", "three"]),
        Some("p1".into()),
        &Proofs::default(),
        3.0,
        &mut clock,
    );
    assert!(again.events.is_empty() && again.publication.is_empty());
    assert_eq!(again.reply.data.str("id").unwrap(), ids[2]);
    assert_eq!(again.reply.data.str_list("ids").unwrap(), ids);
    assert_eq!(again.reply.data.str_list("cursors").unwrap(), cursors);
    assert_eq!(again.reply.data.opt_bool("repeated").unwrap(), Some(true));
}

#[test]
fn a_retry_of_posts_makes_only_those_the_server_does_not_hold() {
    let mut s1 = State::new("s1", Snapshot::default());
    let mut clock = Lamport::default();
    let setup = ana_in_general(&mut s1, &mut clock);
    let first = s1.request_now(
        posts(&["one", "two", "three"]),
        Some("p1".into()),
        &Proofs::default(),
        2.0,
        &mut clock,
    );
    // s2 took in the first two posts before s1 went silent; the client asks s2 again.
    let mut s2 = State::new("s2", Snapshot::default());
    for e in setup.iter().chain(&first.events[..2]) {
        assert_eq!(s2.apply(e), None);
    }
    let retry = s2.request_now(
        posts(&["one", "two", "three"]),
        Some("p1".into()),
        &Proofs::default(),
        3.0,
        &mut clock,
    );
    assert!(ok(&retry.reply), "{:?}", retry.reply);
    assert!(retry.repeat, "what it names may wait for a commit");
    let [third] = &retry.events[..] else {
        panic!("one post made: {:?}", retry.events);
    };
    assert_eq!(third.request.as_deref(), Some("p1"));
    assert!(third.lamport > first.events[1].lamport, "after the others");
    let ids = retry.reply.data.str_list("ids").unwrap();
    assert_eq!(
        ids,
        [first.events[0].id(), first.events[1].id(), third.id()]
    );
    // s1's third post, when it arrives, is the same request's: the later of the two is hidden.
    assert!(s2.apply(&first.events[2]).is_some());
}

#[test]
fn posts_refused_make_nothing() {
    let mut st = state();
    let mut clock = Lamport::default();
    let h = st.handle_now(posts(&["hello"]), 1.0, &mut clock);
    assert!(h.events.is_empty() && !ok(&h.reply));
    ana_in_general(&mut st, &mut clock);
    let nowhere = Request::Posts {
        user: name("ana"),
        channel: name("nowhere"),
        messages: vec!["hello".into()],
    };
    let h = st.handle_now(nowhere, 2.0, &mut clock);
    assert!(h.events.is_empty() && h.publication.is_empty());
    assert!(Reply::error_text(&h.reply).unwrap().contains("nowhere"));
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
            user: None,
        },
    );
    let post = || Request::Publish {
        user: name("ana"),
        channel: name("general"),
        message: "hi".into(),
    };
    let first = st.request_now(
        post(),
        Some("r1".into()),
        &Proofs::default(),
        1.0,
        &mut clock,
    );
    let again = st.request_now(
        post(),
        Some("r1".into()),
        &Proofs::default(),
        2.0,
        &mut clock,
    );
    assert!(
        !first.events.is_empty() && again.events.is_empty(),
        "the retry makes no event"
    );
    assert_eq!(
        again.reply.data.str("id").unwrap(),
        first.reply.data.str("id").unwrap()
    );
    // Both answers say where the post stands in the total order.
    let event = first.events.first().unwrap();
    let cursor = palaver_proto::Cursor::of(event).to_string();
    assert_eq!(first.reply.data.str("cursor").unwrap(), cursor);
    assert_eq!(again.reply.data.str("cursor").unwrap(), cursor);
    let other = st.request_now(
        post(),
        Some("r2".into()),
        &Proofs::default(),
        3.0,
        &mut clock,
    );
    assert!(!other.events.is_empty(), "another id is another post");
    // A retried channel creation is answered as success, not "already exists".
    let make = || Request::Channel {
        channel: name("news"),
        user: None,
    };
    assert!(!st
        .request_now(
            make(),
            Some("c1".into()),
            &Proofs::default(),
            4.0,
            &mut clock
        )
        .events
        .is_empty());
    let retry = st.request_now(
        make(),
        Some("c1".into()),
        &Proofs::default(),
        5.0,
        &mut clock,
    );
    assert_eq!(retry.reply.data.str("status").unwrap(), "sucesso");
}

#[test]
fn a_request_made_twice_on_two_servers_hides_the_later_event_everywhere() {
    let post = |origin: &str, seq: u64, lamport: u64| Event {
        origin: origin.into(),
        seq,
        lamport,
        timestamp: 1.0,
        kind: EventKind::Message(MessageKind::Post {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        }),
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
    let again = b.request_now(
        Request::Publish {
            user: name("ana"),
            channel: name("general"),
            message: "hi".into(),
        },
        Some("r1".into()),
        &Proofs::default(),
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
        kind: EventKind::Account(AccountKind::Login { user: name("ana") }),
        request: None,
    };
    st.apply(&mine);
    let next = st.handle_now(
        Request::Login { user: name("bob") },
        2.0,
        &mut Lamport::starting_at(20),
    );
    assert_eq!(
        next.events.first().cloned().unwrap().seq,
        8,
        "never a number a peer already holds"
    );
}

#[test]
fn reload_forgets_what_was_not_stored() {
    let mut st = state();
    let mut clock = Lamport::default();
    let h = st.handle_now(
        Request::Channel {
            channel: name("c"),
            user: None,
        },
        1.0,
        &mut clock,
    );
    let lamport = h.events.first().cloned().unwrap().lamport;
    st.reload(Snapshot::default());
    let listed = run(&mut st, Request::Channels {});
    assert!(listed.data.str_list("channels").unwrap().is_empty());
    let again = st.handle_now(
        Request::Channel {
            channel: name("c"),
            user: None,
        },
        1.0,
        &mut clock,
    );
    let again = again.events.first().cloned().unwrap();
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
    let a = st.handle_now(Request::Login { user: name("a") }, 1.0, &mut clock);
    let b = st.handle_now(Request::Login { user: name("b") }, 1.0, &mut clock);
    let (a, b) = (
        a.events.first().cloned().unwrap(),
        b.events.first().cloned().unwrap(),
    );
    assert_eq!((a.seq, b.seq), (42, 43));
    assert!(a.lamport > 500 && b.lamport > a.lamport);
}

/// Runs a request as the reactor does, doing its password work (if any) on the spot. The
/// Lamport clock follows `now`, so later calls make later events.
fn with_proofs(st: &mut State, req: Request, proofs: Proofs, now: f64) -> Handled {
    let mut clock = Lamport::starting_at((now * 1000.0) as u64);
    let h = st.request_now(req, None, &proofs, now, &mut clock);
    match h.verify {
        Some(v) => {
            let verdict = crate::hasher::work(v.job);
            st.verified_now(v.pending, verdict, None, now, &mut clock)
        }
        None => h,
    }
}

/// Registers `user` with `pw` and logs in with it: the login's answer (with the token).
fn open_account(st: &mut State, user: &str, pw: &str, now: f64) -> Handled {
    with_proofs(
        st,
        Request::Register { user: name(user) },
        password(pw),
        now,
    );
    with_proofs(st, Request::Login { user: name(user) }, password(pw), now)
}

fn password(p: &str) -> Proofs {
    Proofs {
        password: Some(Secret::new(p)),
        token: None,
    }
}

fn token(t: &str) -> Proofs {
    Proofs {
        token: Some(Secret::new(t)),
        password: None,
    }
}

/// A state where `ana` has an account with `secret-1` and a session, whose token is
/// returned; `bob` and `#general` exist without passwords.
fn with_account() -> (State, String) {
    let mut st = state();
    run(&mut st, Request::Login { user: name("bob") });
    run(
        &mut st,
        Request::Channel {
            channel: name("general"),
            user: None,
        },
    );
    let h = with_proofs(
        &mut st,
        Request::Register { user: name("ana") },
        password("secret-1"),
        1.0,
    );
    assert!(ok(&h.reply), "{:?}", h.reply);
    assert!(matches!(
        h.events.first().map(|e| &e.kind),
        Some(EventKind::Account(AccountKind::Register { .. }))
    ));
    let h = with_proofs(
        &mut st,
        Request::Login { user: name("ana") },
        password("secret-1"),
        2.0,
    );
    assert!(ok(&h.reply), "{:?}", h.reply);
    let t = h.reply.data.str("token").unwrap().to_owned();
    assert!(matches!(
        h.events.first().map(|e| &e.kind),
        Some(EventKind::Account(AccountKind::Session { .. }))
    ));
    (st, t)
}

fn refused(h: &Handled, want: &str) {
    assert_eq!(Reply::status(&h.reply), Status::Error, "{:?}", h.reply);
    let text = Reply::error_text(&h.reply).unwrap();
    assert!(text.contains(want), "{text:?} should say {want:?}");
    assert!(h.events.is_empty() && h.publication.is_empty() && h.read.is_none());
}

#[test]
fn an_account_is_used_only_with_its_session() {
    let (mut st, t) = with_account();
    let post = || Request::Publish {
        user: name("ana"),
        channel: name("general"),
        message: "hi".into(),
    };
    let dm = || Request::Message {
        src: name("ana"),
        dst: name("bob"),
        message: "psst".into(),
    };
    let hist = || Request::History {
        query: HistoryQuery {
            of: palaver_proto::Conversation::Direct(name("ana"), name("bob")),
            limit: 10,
            before: None,
            after: None,
            window: Default::default(),
        },
    };
    // The standard services, without a token: refused, nothing stored.
    refused(
        &with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            Proofs::default(),
            3.0,
        ),
        "has a password",
    );
    refused(
        &with_proofs(&mut st, post(), Proofs::default(), 3.0),
        "has a password",
    );
    refused(
        &with_proofs(&mut st, dm(), Proofs::default(), 3.0),
        "has a password",
    );
    refused(
        &with_proofs(&mut st, hist(), Proofs::default(), 3.0),
        "has a password",
    );
    // A forged token, and another person's.
    let forged = "f".repeat(64);
    refused(
        &with_proofs(&mut st, post(), token(&forged), 3.0),
        "not valid",
    );
    let cy = open_account(&mut st, "cy", "secret-cy", 3.0);
    let cy_token = cy.reply.data.str("token").unwrap().to_owned();
    refused(
        &with_proofs(&mut st, post(), token(&cy_token), 3.0),
        "not `ana`'s",
    );
    // With the session: accepted; the private message is sealed.
    assert!(ok(&with_proofs(&mut st, post(), token(&t), 3.0).reply));
    let h = with_proofs(&mut st, dm(), token(&t), 3.0);
    assert!(ok(&h.reply));
    let (topic, env) = h.publication.into_iter().next().unwrap();
    assert_eq!((topic.as_str(), env.service.as_str()), ("bob", "sealed"));
    assert!(
        env.data.get("message").is_none(),
        "no text on the open port"
    );
    assert!(with_proofs(&mut st, hist(), token(&t), 3.0).read.is_some());
    // Between two names without passwords, the standard's full message.
    let plain = Request::Message {
        src: name("bob"),
        dst: name("bob"),
        message: "note to self".into(),
    };
    let h = with_proofs(&mut st, plain, Proofs::default(), 3.0);
    assert_eq!(
        h.publication.into_iter().next().unwrap().1.service,
        "message"
    );
}

#[test]
fn account_services_refuse_what_is_wrong_and_change_nothing() {
    let (mut st, t) = with_account();
    let login = |p| with_proofs_owned(Request::Login { user: name("ana") }, p);
    let cases: Vec<((Request, Proofs), &str)> = vec![
        (login(password("wrong-pass")), "wrong password"),
        (
            (
                Request::Login {
                    user: name("nobody"),
                },
                password("secret-1"),
            ),
            "has no password",
        ),
        (
            (
                Request::Register { user: name("ana") },
                password("secret-2"),
            ),
            "already registered",
        ),
        (
            (
                Request::Register {
                    user: name("general"),
                },
                password("secret-2"),
            ),
            "is a channel",
        ),
        (
            (Request::Register { user: name("dee") }, password("short")),
            "at least 8",
        ),
        (
            (Request::Register { user: name("dee") }, Proofs::default()),
            "needs a `password`",
        ),
        (
            (
                Request::Password {
                    user: name("ana"),
                    new: Secret::new("secret-new"),
                },
                password("wrong-pass"),
            ),
            "wrong password",
        ),
        (
            (
                Request::Password {
                    user: name("bob"),
                    new: Secret::new("secret-new"),
                },
                password("secret-1"),
            ),
            "has no password",
        ),
        (
            (Request::Logout { user: name("ana") }, Proofs::default()),
            "has a password",
        ),
        (
            (
                Request::Logout { user: name("ana") },
                token(&"0".repeat(64)),
            ),
            "not valid",
        ),
        (
            (Request::Logout { user: name("bob") }, token(&t)),
            "no password",
        ),
        (
            (
                Request::Unregister { user: name("ana") },
                password("wrong-pass"),
            ),
            "wrong password",
        ),
        (
            (
                Request::Unregister { user: name("bob") },
                password("secret-1"),
            ),
            "no account",
        ),
        (
            (
                Request::Beat {
                    user: name("ana"),
                    device: "d".into(),
                    leaving: false,
                },
                Proofs::default(),
            ),
            "has a password",
        ),
    ];
    for ((req, proofs), want) in cases {
        refused(&with_proofs(&mut st, req, proofs, 3.0), want);
    }
    // Still as before: the password, the session.
    assert!(ok(&with_proofs(
        &mut st,
        Request::Login { user: name("ana") },
        token(&t),
        4.0
    )
    .reply));
    assert!(ok(&with_proofs(
        &mut st,
        Request::Login { user: name("ana") },
        password("secret-1"),
        4.0
    )
    .reply));
}

fn with_proofs_owned(req: Request, p: Proofs) -> (Request, Proofs) {
    (req, p)
}

#[test]
fn sessions_end_by_logout_password_change_and_closing() {
    let (mut st, t1) = with_account();
    let again = with_proofs(
        &mut st,
        Request::Login { user: name("ana") },
        password("secret-1"),
        3.0,
    );
    let t2 = again.reply.data.str("token").unwrap().to_owned();
    let beat = || Request::Beat {
        user: name("ana"),
        device: "d".into(),
        leaving: false,
    };
    assert!(ok(&with_proofs(&mut st, beat(), token(&t2), 3.0).reply));
    // A change of password from session 2 ends session 1, keeps session 2.
    let change = Request::Password {
        user: name("ana"),
        new: Secret::new("secret-2"),
    };
    let mut p = password("secret-1");
    p.token = Some(Secret::new(&t2));
    assert!(ok(&with_proofs(&mut st, change, p, 4.0).reply));
    refused(
        &with_proofs(&mut st, beat(), token(&t1), 5.0),
        "password change",
    );
    assert!(ok(&with_proofs(&mut st, beat(), token(&t2), 5.0).reply));
    refused(
        &with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            password("secret-1"),
            5.0,
        ),
        "wrong password",
    );
    // Logout ends session 2.
    assert!(ok(&with_proofs(
        &mut st,
        Request::Logout { user: name("ana") },
        token(&t2),
        6.0
    )
    .reply));
    refused(&with_proofs(&mut st, beat(), token(&t2), 6.0), "logged out");
    // Closing the account retires the name.
    let h = with_proofs(
        &mut st,
        Request::Login { user: name("ana") },
        password("secret-2"),
        7.0,
    );
    let t3 = h.reply.data.str("token").unwrap().to_owned();
    assert!(ok(&with_proofs(
        &mut st,
        Request::Unregister { user: name("ana") },
        password("secret-2"),
        8.0
    )
    .reply));
    refused(&with_proofs(&mut st, beat(), token(&t3), 9.0), "closed");
    refused(
        &with_proofs(
            &mut st,
            Request::Register { user: name("ana") },
            password("secret-3"),
            9.0,
        ),
        "cannot be registered again",
    );
    refused(
        &with_proofs(
            &mut st,
            Request::Login { user: name("ana") },
            Proofs::default(),
            9.0,
        ),
        "closed",
    );
    let dm = Request::Message {
        src: name("bob"),
        dst: name("ana"),
        message: "hello?".into(),
    };
    refused(&with_proofs(&mut st, dm, Proofs::default(), 9.0), "closed");
    let users = run(&mut st, Request::Users {});
    assert!(!users
        .data
        .str_list("users")
        .unwrap()
        .contains(&"ana".to_owned()));
}

#[test]
fn idle_sessions_expire_and_use_is_recorded_for_every_server() {
    let policy = Policy {
        session_idle: 240.0,
        presence_timeout: 15.0,
    };
    let mut st = State::with_policy("s1", Snapshot::default(), policy);
    let h = open_account(&mut st, "ana", "secret-1", 0.0);
    let t = h.reply.data.str("token").unwrap().to_owned();
    assert_eq!(h.reply.data.opt_f64("idle").unwrap(), Some(240.0));
    let beat = || Request::Beat {
        user: name("ana"),
        device: "d".into(),
        leaving: false,
    };
    // Used within a 24th of the idle time (10 s): nothing recorded.
    assert!(ok(&with_proofs(&mut st, beat(), token(&t), 5.0).reply));
    assert!(st.take_extra().is_empty());
    // Later: a `touch` event, which every server takes in.
    assert!(ok(&with_proofs(&mut st, beat(), token(&t), 200.0).reply));
    let touches = st.take_extra();
    assert!(
        matches!(touches.as_slice(), [Event { kind: EventKind::Account(AccountKind::Touch { .. }), timestamp, .. }] if *timestamp == 200.0)
    );
    // 240 s after that use, the session is still good; after, expired.
    assert!(ok(&with_proofs(&mut st, beat(), token(&t), 440.0).reply));
    st.take_extra();
    assert!(ok(&with_proofs(&mut st, beat(), token(&t), 680.0).reply));
    st.take_extra();
    refused(&with_proofs(&mut st, beat(), token(&t), 921.0), "expired");
    // Another server that took the same events agrees.
    let mut peer = State::with_policy("s2", Snapshot::default(), policy);
    let mut clock = Lamport::default();
    let mut events = Vec::new();
    let mut fresh = State::with_policy("s1", Snapshot::default(), policy);
    for (req, p, now) in [
        (
            Request::Register { user: name("ana") },
            password("secret-1"),
            0.0,
        ),
        (
            Request::Login { user: name("ana") },
            password("secret-1"),
            0.0,
        ),
    ] {
        let h = fresh.request_now(req, None, &p, now, &mut clock);
        let v = h.verify.unwrap();
        let h = fresh.verified_now(v.pending, crate::hasher::work(v.job), None, now, &mut clock);
        events.push(h.events.first().cloned().unwrap());
    }
    for e in &events {
        peer.apply(e);
    }
    assert_eq!(peer.user_count(), 1);
}

/// A request whose id took effect on another server while its password work ran here is not
/// made twice: made twice, this server remembered its own later event and never hid it, while
/// every other server hid it (servers disagreed on what they show).
#[test]
fn a_request_done_elsewhere_during_its_password_work_is_not_made_twice() {
    let mut st = state();
    let mut clock = Lamport::starting_at(10);
    let proofs = password("correct horse");
    let h = st.request_now(
        Request::Register { user: name("ana") },
        Some("r-7".into()),
        &proofs,
        1.0,
        &mut clock,
    );
    let v = h.verify.expect("password work first");
    // Meanwhile the broker gave the request to s2, which registered ana.
    let mut there = event(
        "s2",
        1,
        5,
        AccountKind::Register {
            user: name("ana"),
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        }
        .into(),
    );
    there.request = Some("r-7".into());
    assert_eq!(st.apply(&there), None);
    let done = st.verified_now(
        v.pending,
        crate::hasher::work(v.job),
        Some("r-7".into()),
        2.0,
        &mut clock,
    );
    assert!(done.events.is_empty(), "made twice: {:?}", done.events);
    assert_eq!(done.reply.data.str("id").unwrap(), "s2:1");
    assert_eq!(done.reply.data.opt_bool("repeated").unwrap(), Some(true));
}

/// `topic`: only someone in the room sets it; it is published to the room, shown by
/// `members`, and cleared by a `topic` without one.
#[test]
fn a_member_sets_the_topic_which_members_shows_and_the_room_hears() {
    let mut st = state();
    // One clock for the whole story, as a server has.
    let mut clock = Lamport::default();
    let mut run = |st: &mut State, req: Request| st.handle_now(req, 1.0, &mut clock).reply;
    for user in ["ana", "bob"] {
        run(&mut st, Request::Login { user: name(user) });
    }
    run(
        &mut st,
        Request::Channel {
            channel: name("general"),
            user: Some(name("ana")),
        },
    );
    let set = |user: &str, topic: Option<&str>| Request::Topic {
        user: name(user),
        channel: name("general"),
        topic: topic.map(str::to_owned),
    };
    let outsider = run(&mut st, set("bob", Some("mine")));
    assert_eq!(
        Reply::error_text(&outsider).as_deref(),
        Some("join `general` to set its topic")
    );
    let nowhere = Request::Topic {
        user: name("ana"),
        channel: name("nowhere"),
        topic: None,
    };
    assert!(!ok(&run(&mut st, nowhere)));
    let join = Request::Join {
        user: name("bob"),
        channel: name("general"),
        limit: 0,
    };
    assert!(ok(&run(&mut st, join)));
    let h = st.handle_now(
        set("bob", Some("plans")),
        3.0,
        &mut Lamport::starting_at(100),
    );
    assert!(ok(&h.reply));
    let (topic, env) = h.publication.into_iter().next().expect("published");
    assert_eq!(topic, "general");
    assert_eq!(env.service, "topic");
    assert_eq!(env.data.str("topic").unwrap(), "plans");
    assert_eq!(env.data.str("user").unwrap(), "bob");
    let members = run(
        &mut st,
        Request::Members {
            channel: name("general"),
        },
    );
    assert_eq!(members.data.str("topic").unwrap(), "plans");
    assert_eq!(members.data.str("topic_by").unwrap(), "bob");
    assert_eq!(members.data.str("owner").unwrap(), "ana");
    let cleared = st.handle_now(set("bob", None), 4.0, &mut Lamport::starting_at(200));
    assert!(ok(&cleared.reply));
    let members = run(
        &mut st,
        Request::Members {
            channel: name("general"),
        },
    );
    assert_eq!(members.data.opt_str("topic").unwrap(), None);
}

/// A two-phase delete's record for a client's request that another server's record already
/// carries (the broker sent the delete to both) is kept without the request id: made with it
/// after the other's arrived, it was hidden everywhere but here (the simulation found it).
#[test]
fn a_delete_record_for_a_request_another_server_recorded_carries_no_request_id() {
    let mut st = state();
    let theirs = Event {
        request: Some("d-1".into()),
        ..event(
            "s2",
            1,
            5,
            EventKind::Room(palaver_proto::RoomKind::Delete {
                tx: "t1".into(),
                channel: name("den"),
            }),
        )
    };
    assert_eq!(st.apply(&theirs), None);
    let kind = EventKind::Room(palaver_proto::RoomKind::Delete {
        tx: "t1".into(),
        channel: name("den"),
    });
    let h = st.record(
        kind.clone(),
        Some("d-1".into()),
        1.0,
        &mut Lamport::default(),
    );
    assert_eq!(
        h.events
            .first()
            .cloned()
            .expect("recorded all the same")
            .request,
        None
    );
    let h = st.record(kind, Some("d-2".into()), 1.0, &mut Lamport::default());
    assert_eq!(
        h.events.first().cloned().unwrap().request.as_deref(),
        Some("d-2")
    );
}
