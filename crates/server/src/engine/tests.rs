//! The engine's rules on simulated time: each test feeds inputs at chosen instants and asserts
//! on exactly the outputs that come back. The store is a real SQLite file in a temporary
//! directory; the writer is played by the test (a commit is done when the test says so).

use std::time::{Duration, Instant};

use palaver_proto::{Envelope, Reply, Status};

use super::*;

/// One engine, its store's directory, and simulated time.
struct Rig {
    engine: Engine,
    /// A write connection of the test's own: it plays the writer thread.
    writer: Store,
    base: Instant,
    /// Milliseconds since `base`.
    ms: u64,
    _dir: tempfile::TempDir,
}

fn setup(name: &str) -> Setup {
    Setup {
        name: palaver_proto::Name::parse(name).unwrap(),
        policy: Policy::default(),
        crash_after_prepare: false,
        seed: 7,
    }
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let writer = Store::open(dir.path()).unwrap();
        let base = Instant::now();
        let now = Now {
            at: base,
            wall: 1_000.0,
        };
        let engine = Engine::new(&setup("s1"), Store::open(dir.path()).unwrap(), now).unwrap();
        Rig {
            engine,
            writer,
            base,
            ms: 0,
            _dir: dir,
        }
    }

    fn now(&self) -> Now {
        Now {
            at: self.base + Duration::from_millis(self.ms),
            wall: 1_000.0 + self.ms as f64 / 1000.0,
        }
    }

    /// Moves time forward and runs the turn.
    fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.ms += ms;
        self.turn()
    }

    fn turn(&mut self) -> Vec<Output> {
        let now = self.now();
        self.engine.handle_timeout(now);
        self.outputs()
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.engine.poll_output()).collect()
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        let now = self.now();
        self.engine.handle(now, input);
        self.outputs()
    }

    /// A client's request through the broker, with `token`.
    fn ask(&mut self, token: u64, env: Envelope) -> Vec<Output> {
        let body = env.to_bytes();
        self.input(Input::Request {
            route: Route::Broker(token),
            body,
        })
    }

    /// Commits `job` as the writer thread does, and hands the result back.
    fn commit(&mut self, job: Job) -> Vec<Output> {
        let results = self
            .writer
            .append_hiding(job.events.iter(), &job.hidden)
            .unwrap();
        self.input(Input::Committed(Done {
            events: job.events,
            hidden: job.hidden,
            results,
            failed: None,
        }))
    }

    /// Commits `job`, then runs the turn (where replication releases what the commit allows).
    fn commit_turn(&mut self, job: Job) -> Vec<Output> {
        let mut out = self.commit(job);
        out.extend(self.turn());
        out
    }

    /// `peer` acknowledges our events up to `seq`, and the turn runs.
    fn ack(&mut self, peer: &str, seq: u64) -> Vec<Output> {
        let mut out = self.input(Input::Peer(PeerInput::Ack {
            peer: peer.into(),
            seq,
        }));
        out.extend(self.turn());
        out
    }

    /// Fails `job` as a full disk does.
    fn fail(&mut self, job: Job) -> Vec<Output> {
        let n = job.events.len();
        self.input(Input::Committed(Done {
            events: job.events,
            hidden: job.hidden,
            results: vec![Err("disk full".into()); n],
            failed: Some("database or disk is full".into()),
        }))
    }

    /// Into the broker's rotation: a lone server serves once its grace is over.
    fn serving(&mut self) -> Vec<Output> {
        let out = self.advance(STARTUP_GRACE.as_millis() as u64);
        assert!(joined(&out), "joined the broker: {out:?}");
        out
    }
}

fn joined(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::JoinBroker))
}

fn commits(out: Vec<Output>) -> Vec<Job> {
    out.into_iter()
        .filter_map(|o| match o {
            Output::Commit(job) => Some(job),
            _ => None,
        })
        .collect()
}

fn one_commit(out: Vec<Output>) -> Job {
    let mut jobs = commits(out);
    assert_eq!(jobs.len(), 1, "one commit");
    jobs.remove(0)
}

/// The answers to the broker, by token.
fn replies(out: &[Output]) -> Vec<(u64, &Envelope)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Reply {
                route: Route::Broker(t),
                reply,
            } => Some((*t, reply)),
            _ => None,
        })
        .collect()
}

fn login(user: &str) -> Envelope {
    Envelope::new("login").with("user", user)
}

fn post(user: &str, channel: &str, text: &str) -> Envelope {
    Envelope::new("publish")
        .with("user", user)
        .with("channel", channel)
        .with("message", text)
}

/// Requests handled while the writer commits form the next batch, committed together once it
/// is idle: three logins share a commit, two more wait for it and share the next.
#[test]
fn requests_that_arrive_while_the_writer_works_share_the_next_commit() {
    let mut rig = Rig::new();
    rig.serving();
    for (t, user) in [(1, "ana"), (2, "bob"), (3, "cid")] {
        assert!(
            rig.ask(t, login(user)).is_empty(),
            "nothing leaves before the commit"
        );
    }
    let first = one_commit(rig.turn());
    assert_eq!(first.events.len(), 3);
    for (t, user) in [(4, "dee"), (5, "eve")] {
        rig.ask(t, login(user));
    }
    assert!(commits(rig.turn()).is_empty(), "one batch at a time");
    let out = rig.commit_turn(first);
    let answered: Vec<u64> = replies(&out).iter().map(|(t, _)| *t).collect();
    assert_eq!(
        answered,
        [1, 2, 3],
        "a lone server answers once its batch is durable"
    );
    let second = one_commit(out);
    assert_eq!(second.events.len(), 2);
}

/// A write is answered only once it is durable and the live peers hold it, and its
/// publication leaves before its answer; a silent peer holds it up for the ack timeout only.
#[test]
fn a_write_is_answered_once_durable_and_acknowledged_publications_first() {
    let mut rig = Rig::new();
    rig.input(Input::Peer(PeerInput::Peers(vec!["s2".into()])));
    // s2 holds all we had when it joined (nothing): trusted, so waited for.
    rig.ack("s2", 0);
    rig.serving();
    rig.ask(1, Envelope::new("channel").with("channel", "general"));
    let job = one_commit(rig.turn());
    rig.commit(job);
    rig.ask(2, login("ana"));
    rig.ask(3, post("ana", "general", "hi"));
    let out = rig.turn();
    let sent = out
        .iter()
        .find_map(|o| match o {
            Output::Replicate(events) => Some(events.clone()),
            _ => None,
        })
        .expect("the peers get the events while they are committed");
    let job = one_commit(out);
    assert_eq!(sent, job.events);
    // The channel's batch is answered once s2 acknowledges it.
    let seq = |n: usize| sent[n].seq;
    assert!(replies(&rig.ack("s2", seq(0) - 1))
        .iter()
        .any(|(t, _)| *t == 1));
    let out = rig.commit_turn(job);
    assert!(
        replies(&out).is_empty(),
        "durable, but s2 does not hold it yet"
    );
    let out = rig.ack("s2", seq(1));
    let published = out
        .iter()
        .position(|o| matches!(o, Output::Publish { topic, .. } if topic == "general"))
        .expect("the post is published");
    let answered = out
        .iter()
        .position(|o| {
            matches!(
                o,
                Output::Reply {
                    route: Route::Broker(3),
                    ..
                }
            )
        })
        .expect("the post is answered");
    assert!(published < answered, "publication before answer: {out:?}");
    // A peer that stops acknowledging holds a write up for the ack timeout, then no more.
    rig.ask(4, post("ana", "general", "again"));
    let job = one_commit(rig.turn());
    assert!(replies(&rig.commit_turn(job)).is_empty());
    assert!(replies(&rig.advance(499)).is_empty());
    assert_eq!(replies(&rig.advance(1))[0].0, 4);
}

/// A refused request moves no clock; an accepted one takes its clock in.
#[test]
fn a_refused_request_moves_no_clock() {
    let mut rig = Rig::new();
    rig.serving();
    let before = rig.engine.lamport().now();
    rig.ask(1, post("ana", "nowhere", "hi").with("clock", 5_000));
    rig.ask(2, Envelope::new("dance").with("clock", 6_000));
    let out = rig.turn();
    let r = replies(&out);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|(_, e)| Reply::status(e) == Status::Error));
    assert_eq!(
        rig.engine.lamport().now(),
        before,
        "refusals leave the clock"
    );
    rig.ask(3, login("ana").with("clock", 7_000));
    rig.turn();
    assert!(rig.engine.lamport().now() > 7_000);
}

/// A request with no id of its own takes the broker's token as one: sent again (the broker
/// gave it to another server, or again to this one) it takes effect once.
#[test]
fn the_brokers_token_makes_a_request_take_effect_once() {
    let mut rig = Rig::new();
    rig.serving();
    rig.ask(9, login("ana"));
    let job = one_commit(rig.turn());
    assert_eq!(job.events[0].request.as_deref(), Some("~0000000000000009"));
    assert_eq!(replies(&rig.commit_turn(job)).len(), 1);
    rig.ask(9, login("ana"));
    let out = rig.turn();
    let r = replies(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1.data.opt_bool("repeated").unwrap(), Some(true));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Commit(j) if !j.events.is_empty())),
        "no second event: {out:?}"
    );
}

/// Clients are taken only once caught up with the peers found at start-up; a lone server, or
/// one whose peers do not answer, after the grace. Answers to the broker before then are
/// dropped (the broker gave those requests to another server).
#[test]
fn clients_are_taken_once_caught_up() {
    let mut rig = Rig::new();
    let out = rig.input(Input::Peer(PeerInput::Peers(vec!["s2".into()])));
    assert!(out.is_empty());
    let out = rig.turn();
    assert!(!joined(&out));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::AskVector { peer, .. } if peer == "s2")),
        "compares with s2: {out:?}"
    );
    // s2 has an event this server lacks: fetched first.
    let theirs: VersionVector = [("s2".to_owned(), 1)].into_iter().collect();
    rig.input(Input::Peer(PeerInput::Vector {
        peer: "s2".into(),
        vector: theirs.clone(),
    }));
    let out = rig.turn();
    assert!(!joined(&out));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Fetch { origin, after: 0, .. } if origin == "s2")));
    let event = login_event("s2", 1, 1, "bob", None);
    rig.input(Input::Peer(PeerInput::Fetched {
        peer: "s2".into(),
        origin: "s2".into(),
        events: vec![event],
        more: false,
    }));
    rig.input(Input::Peer(PeerInput::Vector {
        peer: "s2".into(),
        vector: theirs,
    }));
    let out = rig.turn();
    assert!(joined(&out), "caught up: serving: {out:?}");
    assert!(out.iter().any(|o| matches!(o, Output::Ready)));
}

#[test]
fn a_lone_server_serves_after_the_grace_and_drops_answers_before() {
    let mut rig = Rig::new();
    rig.ask(1, Envelope::new("users"));
    let out = rig.turn();
    assert!(replies(&out).is_empty(), "not in the rotation: {out:?}");
    assert!(!joined(&rig.advance(STARTUP_GRACE.as_millis() as u64 - 1)));
    assert!(joined(&rig.advance(1)));
    assert_eq!(rig.engine.dropped_replies, 1);
}

/// A batch of its own that fails to commit after it went to the peers: out of the rotation,
/// tried again each second with the same events; the peers' events that arrive meanwhile
/// are set aside (not acknowledged, not kept); once the batch is stored, it compares with
/// the peers again before it takes clients.
#[test]
fn failed_commits_step_aside_keep_nothing_and_retry_the_same_batch() {
    let mut rig = Rig::new();
    rig.input(Input::Peer(PeerInput::Peers(vec!["s2".into()])));
    rig.serving();
    rig.ask(1, login("ana"));
    let job = one_commit(rig.turn());
    let out = rig.fail(job.clone());
    assert!(out.iter().any(|o| matches!(o, Output::LeaveBroker)));
    assert!(
        replies(&out).is_empty(),
        "no answer: the client retries elsewhere"
    );
    // Events from s2 meanwhile: not kept, not acknowledged.
    let events: Vec<palaver_proto::Event> = (1..=50)
        .map(|seq| login_event("s2", seq, seq, &format!("u{seq}"), None))
        .collect();
    let out = rig.input(Input::Peer(PeerInput::Replica {
        origin: "s2".into(),
        events,
    }));
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })));
    assert_eq!(rig.engine.set_aside, 50);
    assert!(rig.engine.pending.is_empty(), "nothing kept in memory");
    // Tried again after a second, with the same events.
    assert!(commits(rig.advance(999)).is_empty());
    let again = one_commit(rig.advance(1));
    assert_eq!(again.events, job.events);
    let out = rig.commit(again);
    assert!(!joined(&out));
    let out = rig.turn();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::AskVector { peer, .. } if peer == "s2")),
        "compares with s2 again: {out:?}"
    );
    assert!(!joined(&out), "not before it has caught up");
}

/// The peers' events wait a little to share a commit with this server's own writes, and are
/// acknowledged at once (their origin has them on disk).
#[test]
fn replicas_are_acknowledged_at_once_and_committed_within_the_delay() {
    let mut rig = Rig::new();
    rig.input(Input::Peer(PeerInput::Peers(vec!["s2".into()])));
    let event = login_event("s2", 1, 3, "bob", None);
    rig.input(Input::Peer(PeerInput::Replica {
        origin: "s2".into(),
        events: vec![event.clone()],
    }));
    let out = rig.turn();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Ack { peer, seq: 1 } if peer == "s2")));
    assert!(commits(out).is_empty(), "waits to share a commit");
    assert!(commits(rig.advance(19)).is_empty());
    let job = one_commit(rig.advance(1));
    assert_eq!(job.events, vec![event]);
}

fn login_event(
    origin: &str,
    seq: u64,
    lamport: u64,
    user: &str,
    request: Option<&str>,
) -> palaver_proto::Event {
    palaver_proto::Event {
        origin: origin.into(),
        seq,
        lamport,
        timestamp: 1.0,
        kind: palaver_proto::AccountKind::Login {
            user: palaver_proto::Name::parse(user).unwrap(),
        }
        .into(),
        request: request.map(str::to_owned),
    }
}

/// A repeated answer names an event that waited in memory for this server's commit; when
/// that commit fails, the answer is refused, not sent as if the event were stored (the
/// simulation found it, seed 10118: the event's origin had died, and the write was lost).
#[test]
fn an_answer_that_stood_on_a_failed_commit_is_refused() {
    let mut rig = Rig::new();
    rig.input(Input::Peer(PeerInput::Peers(vec!["s2".into()])));
    rig.serving();
    rig.input(Input::Peer(PeerInput::Replica {
        origin: "s2".into(),
        events: vec![login_event("s2", 1, 5, "bob", Some("q-1"))],
    }));
    rig.ask(5, login("bob").with("request_id", "q-1"));
    let job = one_commit(rig.turn());
    assert_eq!(
        job.events.len(),
        1,
        "the repeat waits for what it names to be stored"
    );
    let out = rig.fail(job);
    let r = replies(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(Reply::status(r[0].1), Status::Error, "{:?}", r[0].1);
}

/// Repeats found while memory ran ahead of the disk are forgotten with it: kept, they hid the
/// one event a request made once the memory was dropped (the simulation found it, seed 4088).
#[test]
fn a_reload_forgets_the_repeats_found_against_the_memory_it_drops() {
    let mut rig = Rig::new();
    rig.input(Input::Peer(PeerInput::Peers(vec!["s2".into()])));
    rig.serving();
    rig.input(Input::Peer(PeerInput::Replica {
        origin: "s2".into(),
        events: vec![login_event("s2", 1, 1, "bob", Some("b-1"))],
    }));
    let job = one_commit(rig.advance(20));
    // While that commits, a request makes an event here, and s2's copy of the same request
    // arrives: the later of the two is to be hidden.
    rig.ask(6, login("ana").with("request_id", "r-1"));
    rig.input(Input::Peer(PeerInput::Replica {
        origin: "s2".into(),
        events: vec![login_event("s2", 2, 900, "ana", Some("r-1"))],
    }));
    assert!(!rig.engine.hidden.is_empty());
    rig.fail(job);
    assert!(
        rig.engine.hidden.is_empty(),
        "decided against memory that is gone: {:?}",
        rig.engine.hidden
    );
}
