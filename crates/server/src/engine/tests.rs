//! The engine's rules on simulated time: each test feeds inputs at chosen instants and asserts
//! on exactly the outputs that come back. The store is a real SQLite file in a temporary
//! directory; the writer is played by the test (a commit is done when the test says so).

use std::time::{Duration, Instant};

use palaver_proto::peer::{PeerReply, PeerRequest};
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
        addr: format!("tcp://{name}:1"),
        skew: 0.0,
        cluster: 1,
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
        self.input(Input::Request { token, body })
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
        let req = PeerRequest::Ack {
            from: name(peer),
            origin: name("s1"),
            seq,
        };
        let mut out = self.hear(peer, &req);
        out.extend(self.turn());
        out
    }

    /// A frame from `peer` on the peer endpoint.
    fn hear(&mut self, peer: &str, req: &PeerRequest) -> Vec<Output> {
        let body = req.to_envelope().to_bytes();
        let route = vec![peer.as_bytes().to_vec()];
        self.input(Input::Peer { route, body })
    }

    /// `peer`'s answer to what this server asked it.
    fn answer(&mut self, peer: &str, ask: PeerAsk, reply: &PeerReply) -> Vec<Output> {
        let ask = Ask::Peer {
            peer: peer.into(),
            ask,
        };
        let answer = Ok(reply.to_envelope());
        self.input(Input::Answer { ask, answer })
    }

    /// The reference ranks this server first and lists `peers` (ranked after it) as alive.
    fn peers(&mut self, peers: &[&str]) -> Vec<Output> {
        let ranked: Vec<(&str, u64)> = (2..).zip(peers).map(|(r, p)| (*p, r)).collect();
        self.ranked(1, &ranked)
    }

    /// The reference gives this server `rank`, and lists `peers` with theirs as alive.
    fn ranked(&mut self, rank: u64, peers: &[(&str, u64)]) -> Vec<Output> {
        let answer = Ok(Envelope::new("rank").with("rank", rank));
        let ask = Ask::Reference(RefAsk::Rank);
        let mut out = self.input(Input::Answer { ask, answer });
        let list: Vec<rmpv::Value> = peers
            .iter()
            .map(|(p, rank)| {
                palaver_proto::ServerEntry {
                    name: name(p),
                    rank: *rank,
                    addr: Some(format!("tcp://{p}:1")),
                    alive: None,
                }
                .to_value()
            })
            .collect();
        let answer = Ok(Envelope::new("list").with("list", list));
        let ask = Ask::Reference(RefAsk::List);
        out.extend(self.input(Input::Answer { ask, answer }));
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

fn name(s: &str) -> palaver_proto::Name {
    palaver_proto::Name::parse(s).unwrap()
}

/// The one-way messages of kind `what` sent to `peer`, read back.
fn told(out: &[Output], to: &str, what: &str) -> Vec<PeerRequest> {
    out.iter()
        .filter_map(|o| match o {
            Output::Tell {
                peer,
                body,
                what: w,
            } if peer == to && *w == what => {
                let env = Envelope::decode(body).unwrap();
                Some(PeerRequest::parse(env).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// Whether this server asked `to` for `ask`; the request if so.
fn asked(out: &[Output], to: &str, ask: &PeerAsk) -> Option<PeerRequest> {
    out.iter().find_map(|o| match o {
        Output::Ask {
            ask: Ask::Peer { peer, ask: a },
            envelope,
        } if peer == to && a == ask => Some(PeerRequest::parse(envelope.clone()).unwrap()),
        _ => None,
    })
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
                route: Asker::Broker(t),
                reply,
            } => Some((*t, reply)),
            _ => None,
        })
        .collect()
}

/// Makes `users` and `channels` names this server knows, as if `s2` had written them before
/// claims existed: logins and creations of these names need no claim (the tests that are not
/// about claims are not held up by them). `s2` must be a peer.
fn known(rig: &mut Rig, users: &[&str], channels: &[&str]) {
    let mut events: Vec<palaver_proto::Event> = users
        .iter()
        .map(|u| login_event("s2", 0, 1, u, None))
        .collect();
    events.extend(channels.iter().map(|c| {
        palaver_proto::Event {
            origin: "s2".into(),
            seq: 0,
            lamport: 1,
            timestamp: 1.0,
            kind: palaver_proto::RoomKind::Channel {
                channel: name(c),
                owner: None,
            }
            .into(),
            request: None,
        }
    }));
    for (seq, e) in (1..).zip(events.iter_mut()) {
        e.seq = seq;
    }
    rig.hear(
        "s2",
        &PeerRequest::Replica {
            origin: name("s2"),
            events,
        },
    );
    let job = one_commit(rig.advance(20));
    rig.commit_turn(job);
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
    // The three logins, with the records of the claims that made their names (a lone
    // server decides them itself, in the same commit).
    let logins = |job: &Job| {
        job.events
            .iter()
            .filter(|e| matches!(e.kind, palaver_proto::EventKind::Account(_)))
            .count()
    };
    assert_eq!(logins(&first), 3);
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
    assert_eq!(logins(&second), 2);
}

/// A write is answered only once it is durable and the live peers hold it, and its
/// publication leaves before its answer; a silent peer holds it up for the ack timeout only.
#[test]
fn a_write_is_answered_once_durable_and_acknowledged_publications_first() {
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    // s2 holds all we had when it joined (nothing): trusted, so waited for.
    rig.ack("s2", 0);
    rig.serving();
    known(&mut rig, &["ana", "bob"], &["general"]);
    rig.ask(1, login("bob"));
    let job = one_commit(rig.turn());
    rig.commit(job);
    rig.ask(2, login("ana"));
    rig.ask(3, post("ana", "general", "hi"));
    let out = rig.turn();
    let sent = match told(&out, "s2", "replica batch").pop() {
        Some(PeerRequest::Replica { events, .. }) => events,
        other => panic!("the peers get the events while they are committed: {other:?}"),
    };
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
                    route: Asker::Broker(3),
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
    let before = rig.engine.lamport();
    rig.ask(1, post("ana", "nowhere", "hi").with("clock", 5_000));
    rig.ask(2, Envelope::new("dance").with("clock", 6_000));
    let out = rig.turn();
    let r = replies(&out);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|(_, e)| Reply::status(e) == Status::Error));
    assert_eq!(rig.engine.lamport(), before, "refusals leave the clock");
    rig.ask(3, login("ana").with("clock", 7_000));
    rig.turn();
    assert!(rig.engine.lamport() > 7_000);
}

/// A request with no id of its own takes the broker's token as one: sent again (the broker
/// gave it to another server, or again to this one) it takes effect once.
#[test]
fn the_brokers_token_makes_a_request_take_effect_once() {
    let mut rig = Rig::new();
    rig.serving();
    rig.ask(9, login("ana"));
    let job = one_commit(rig.turn());
    let made = job.events.iter().find(|e| e.request.is_some()).unwrap();
    assert_eq!(made.request.as_deref(), Some("~0000000000000009"));
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
    let out = rig.peers(&["s2"]);
    assert!(!joined(&out));
    let out = rig.turn();
    assert!(!joined(&out));
    assert!(
        asked(&out, "s2", &PeerAsk::Vector).is_some(),
        "compares with s2: {out:?}"
    );
    // s2 has an event this server lacks: fetched first.
    let theirs = PeerReply::Vector {
        vector: [("s2".to_owned(), 1)].into_iter().collect(),
    };
    rig.answer("s2", PeerAsk::Vector, &theirs);
    let out = rig.turn();
    assert!(!joined(&out));
    let fetch = PeerAsk::Fetch {
        origin: "s2".into(),
    };
    assert!(matches!(
        asked(&out, "s2", &fetch),
        Some(PeerRequest::Fetch { after: 0, .. })
    ));
    let event = login_event("s2", 1, 1, "bob", None);
    let fetched = PeerReply::Fetched {
        origin: name("s2"),
        events: vec![event],
        more: false,
    };
    rig.answer("s2", fetch, &fetched);
    rig.answer("s2", PeerAsk::Vector, &theirs);
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
    rig.peers(&["s2"]);
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
    let replica = PeerRequest::Replica {
        origin: name("s2"),
        events,
    };
    let out = rig.hear("s2", &replica);
    assert!(told(&out, "s2", "ack").is_empty());
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
        asked(&out, "s2", &PeerAsk::Vector).is_some(),
        "compares with s2 again: {out:?}"
    );
    assert!(!joined(&out), "not before it has caught up");
}

/// The peers' events wait a little to share a commit with this server's own writes, and are
/// acknowledged at once (their origin has them on disk).
#[test]
fn replicas_are_acknowledged_at_once_and_committed_within_the_delay() {
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    let event = login_event("s2", 1, 3, "bob", None);
    let replica = PeerRequest::Replica {
        origin: name("s2"),
        events: vec![event.clone()],
    };
    rig.hear("s2", &replica);
    let out = rig.turn();
    assert!(matches!(
        told(&out, "s2", "ack")[..],
        [PeerRequest::Ack { seq: 1, .. }]
    ));
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
    rig.peers(&["s2"]);
    rig.serving();
    rig.hear(
        "s2",
        &PeerRequest::Replica {
            origin: name("s2"),
            events: vec![login_event("s2", 1, 5, "bob", Some("q-1"))],
        },
    );
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
    rig.peers(&["s2"]);
    rig.serving();
    rig.hear(
        "s2",
        &PeerRequest::Replica {
            origin: name("s2"),
            events: vec![
                login_event("s2", 1, 1, "bob", Some("b-1")),
                login_event("s2", 2, 1, "ana", None),
            ],
        },
    );
    let job = one_commit(rig.advance(20));
    // While that commits, a request makes an event here, and s2's copy of the same request
    // arrives: the later of the two is to be hidden.
    rig.ask(6, login("ana").with("request_id", "r-1"));
    rig.hear(
        "s2",
        &PeerRequest::Replica {
            origin: name("s2"),
            events: vec![login_event("s2", 3, 900, "ana", Some("r-1"))],
        },
    );
    assert!(!rig.engine.hidden.is_empty());
    rig.fail(job);
    assert!(
        rig.engine.hidden.is_empty(),
        "decided against memory that is gone: {:?}",
        rig.engine.hidden
    );
}

/// What this server asked of the reference.
fn asked_reference(out: &[Output], what: RefAsk) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Ask { ask: Ask::Reference(r), .. } if *r == what))
}

/// The requests this server sent `to`, of any kind, read back.
fn asks_to(out: &[Output], to: &str) -> Vec<(PeerAsk, PeerRequest)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Ask {
                ask: Ask::Peer { peer, ask },
                envelope,
            } if peer == to => Some((ask.clone(), PeerRequest::parse(envelope.clone()).unwrap())),
            _ => None,
        })
        .collect()
}

/// A server asks the reference for a rank at start-up, then beats and asks who lives; a
/// reference that forgot it (its heartbeat refused) is asked for a rank again at the next beat.
#[test]
fn a_server_asks_for_a_rank_and_again_when_the_reference_forgot_it() {
    let mut rig = Rig::new();
    assert!(asked_reference(&rig.turn(), RefAsk::Rank));
    rig.ranked(1, &[]);
    let out = rig.advance(1_000);
    assert!(asked_reference(&out, RefAsk::Heartbeat));
    assert!(asked_reference(&out, RefAsk::List));
    assert!(!asked_reference(&out, RefAsk::Rank));
    let refused = Ok(Reply::error(
        "heartbeat",
        "unknown server `s1`: ask for a rank first",
    ));
    let ask = Ask::Reference(RefAsk::Heartbeat);
    rig.input(Input::Answer {
        ask,
        answer: refused,
    });
    // At the next beat, a rank instead.
    let out = rig.advance(1_000);
    assert!(asked_reference(&out, RefAsk::Rank), "{out:?}");
    assert!(!asked_reference(&out, RefAsk::Heartbeat));
}

/// The bully election on the peer endpoint: a lower rank's election is answered (and this
/// server stands itself); a higher rank's is refused, and the refusal moves no clock.
#[test]
fn an_election_is_answered_from_below_and_refused_from_above_moving_no_clock() {
    let mut rig = Rig::new();
    rig.ranked(2, &[("s0", 1), ("s3", 3)]);
    let intro = |n: &str, rank| palaver_proto::peer::Introduction {
        name: name(n),
        rank: Some(rank),
        addr: None,
    };
    let from_below = PeerRequest::Election {
        from: Some(intro("s0", 1)),
    };
    let out = rig.hear("s0", &from_below);
    let answer = out.iter().find_map(|o| match o {
        Output::Reply {
            route: Asker::Direct(_),
            reply,
        } => Some(reply.clone()),
        _ => None,
    });
    assert_eq!(answer.map(|r| r.service), Some("election".to_owned()));
    let before = rig.engine.lamport();
    let mut env = PeerRequest::Election {
        from: Some(intro("s3", 3)),
    }
    .to_envelope();
    env.stamp(1.0, before + 1_000);
    let route = vec![b"s3".to_vec()];
    let out = rig.input(Input::Peer {
        route,
        body: env.to_bytes(),
    });
    let refused = out.iter().any(|o| {
        matches!(o, Output::Reply { route: Asker::Direct(_), reply } if Reply::status(reply) == Status::Error)
    });
    assert!(refused, "{out:?}");
    assert_eq!(rig.engine.lamport(), before, "a refusal moves no clock");
}

/// The coordinator is learned from an announcement on `servers`, and a login's answer names
/// it.
#[test]
fn the_coordinator_is_learned_from_its_announcement_and_named_on_login() {
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    let mut env = Envelope::new("election")
        .with("coordinator", "s2")
        .with("rank", 2u64);
    env.stamp(1.0, 1);
    let frames = vec![b"servers".to_vec(), env.to_bytes()];
    rig.input(Input::Announcement(frames));
    assert_eq!(
        rig.engine.coordinator().map(|c| c.name.as_str()),
        Some("s2")
    );
    rig.ack("s2", 0);
    rig.serving();
    known(&mut rig, &["ana"], &[]);
    rig.ask(1, login("ana"));
    let job = one_commit(rig.turn());
    rig.commit_turn(job);
    let out = rig.ack("s2", 1);
    let r = replies(&out);
    assert_eq!(r[0].1.data.opt_str("coordinator").unwrap(), Some("s2"));
}

/// The highest rank wins the election, and as coordinator runs Berkeley rounds: each clock,
/// its own included, is moved to the average (here s2's clock is 2 s ahead: the coordinator
/// steps 1 s forward and tells s2 to step 1 s back).
#[test]
fn the_coordinator_moves_every_clock_to_the_average() {
    let mut rig = Rig::new();
    rig.ranked(5, &[("s2", 2)]);
    // Unopposed from above: it wins once its election's answer time is over.
    let mut out = Vec::new();
    for _ in 0..40 {
        out = rig.advance(100);
        if rig.engine.coordinator().is_some() {
            break;
        }
    }
    assert_eq!(
        rig.engine.coordinator().map(|c| c.name.as_str()),
        Some("s1")
    );
    let mut round = None;
    for _ in 0..40 {
        round = asks_to(&out, "s2")
            .into_iter()
            .find(|(ask, _)| matches!(ask, PeerAsk::Clock { .. }));
        if round.is_some() {
            break;
        }
        out = rig.advance(100);
    }
    let (ask, _) = round.expect("a round asks s2 for its clock");
    let before = rig.engine.wall();
    let theirs = PeerReply::Clock {
        time: before + 2.0,
        coordinator: palaver_proto::peer::Claim::Nobody,
    };
    let out = rig.answer("s2", ask, &theirs);
    let adjust = asks_to(&out, "s2")
        .into_iter()
        .find_map(|(_, req)| match req {
            PeerRequest::Adjust { delta } => Some(delta),
            _ => None,
        });
    let delta = adjust.expect("s2 is told to adjust");
    assert!((delta + 1.0).abs() < 1e-6, "s2 steps back 1 s: {delta}");
    assert!(
        (rig.engine.wall() - before - 1.0).abs() < 1e-6,
        "own clock 1 s forward"
    );
}

/// A peer that introduces itself (in a `vector` request) before the reference has listed the
/// servers is connected to, but does not decide whom to catch up with: the first list does
/// (handed the early peer alone, a server caught up with it and served without what a third
/// server had acknowledged; the simulation found it, seed 3798).
#[test]
fn the_first_list_not_an_early_peer_decides_whom_to_catch_up_with() {
    let mut rig = Rig::new();
    let answer = Ok(Envelope::new("rank").with("rank", 3u64));
    let ask = Ask::Reference(RefAsk::Rank);
    rig.input(Input::Answer { ask, answer });
    let early = PeerRequest::Vector {
        from: Some(palaver_proto::peer::Introduction {
            name: name("s2"),
            rank: Some(2),
            addr: Some("tcp://s2:1".into()),
        }),
        vector: Some(Default::default()),
    };
    rig.hear("s2", &early);
    let empty = PeerReply::Vector {
        vector: Default::default(),
    };
    rig.answer("s2", PeerAsk::Vector, &empty);
    assert!(!joined(&rig.turn()), "not caught up before the list");
    let out = rig.ranked(3, &[("s2", 2), ("s1x", 1)]);
    assert!(!joined(&out));
    rig.answer("s2", PeerAsk::Vector, &empty);
    assert!(!joined(&rig.turn()), "s1x, listed, is not compared yet");
    let theirs = PeerReply::Vector {
        vector: [("s1x".to_owned(), 0)].into_iter().collect(),
    };
    rig.answer("s1x", PeerAsk::Vector, &theirs);
    assert!(joined(&rig.turn()), "caught up with every listed peer");
}

/// A server stopped for longer than the broker waits for a silent one (a `SIGSTOP`, a paused
/// machine) leaves the rotation when it runs again, compares with its peers, and takes
/// clients only once caught up (serving at once, it refused a post to a channel created
/// meanwhile; the simulation found it, seed 18073).
#[test]
fn a_server_that_was_stopped_takes_clients_again_only_once_caught_up() {
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    rig.ack("s2", 0);
    rig.serving();
    let out = rig.advance(100);
    assert!(!out.iter().any(|o| matches!(o, Output::LeaveBroker)));
    let out = rig.advance(1_500);
    assert!(
        out.iter().any(|o| matches!(o, Output::LeaveBroker)),
        "{out:?}"
    );
    assert!(!joined(&out));
    assert!(
        asked(&out, "s2", &PeerAsk::Vector).is_some(),
        "compares again"
    );
    let theirs = PeerReply::Vector {
        vector: [("s2".to_owned(), 0)].into_iter().collect(),
    };
    rig.answer("s2", PeerAsk::Vector, &theirs);
    assert!(joined(&rig.turn()), "caught up: back in the rotation");
}

/// A prepare of this server's that a crash lost before it reached the disk comes back from a
/// peer (which it had reached); the server takes it as its own record again, asks the other
/// participants once it has been prepared too long, and records the decision one of them
/// knows (taken as a peer's event, it was never decided; the simulation found it, seed 4409).
#[test]
fn a_prepare_fetched_back_from_a_peer_is_decided() {
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    let tx = "s2-0000000000000001";
    let prepare = palaver_proto::Event {
        origin: "s1".into(),
        seq: 1,
        lamport: 3,
        timestamp: 1.0,
        kind: palaver_proto::RoomKind::Prepare {
            tx: tx.into(),
            channel: name("c1"),
            owner: name("ana"),
            leader: name("s2"),
            participants: vec![name("s1"), name("s2"), name("s3")],
        }
        .into(),
        request: None,
    };
    let theirs = PeerReply::Vector {
        vector: [("s1".to_owned(), 1), ("s2".to_owned(), 0)]
            .into_iter()
            .collect(),
    };
    let mut out = rig.answer("s2", PeerAsk::Vector, &theirs);
    out.extend(rig.turn());
    let fetch = PeerAsk::Fetch {
        origin: "s1".into(),
    };
    assert!(
        asked(&out, "s2", &fetch).is_some(),
        "fetches its own: {out:?}"
    );
    let fetched = PeerReply::Fetched {
        origin: name("s1"),
        events: vec![prepare.clone()],
        more: false,
    };
    out = rig.answer("s2", fetch, &fetched);
    out.extend(rig.advance(REPLICA_COMMIT_DELAY.as_millis() as u64));
    let job = one_commit(out);
    assert_eq!(job.events, vec![prepare]);
    rig.commit_turn(job);
    let mut out = rig.answer("s2", PeerAsk::Vector, &theirs);
    out.extend(rig.turn());
    assert!(joined(&out), "caught up: serves");
    let query = palaver_core::commit::Msg::Query { tx: tx.into() };
    let mut queried = false;
    for _ in 0..60 {
        let (jobs, mut out): (Vec<Output>, Vec<Output>) = rig
            .advance(100)
            .into_iter()
            .partition(|o| matches!(o, Output::Commit(_)));
        for job in commits(jobs) {
            out.extend(rig.commit_turn(job));
        }
        queried |= told(&out, "s2", "twopc")
            .iter()
            .any(|r| matches!(r, PeerRequest::TwoPc { msg, .. } if *msg == query));
        if queried {
            break;
        }
    }
    assert!(queried, "asks the other participant what it knows");
    let known = PeerRequest::TwoPc {
        from: name("s2"),
        msg: palaver_core::commit::Msg::Known {
            tx: tx.into(),
            state: palaver_core::commit::Known::Committed,
        },
    };
    let mut out = rig.hear("s2", &known);
    out.extend(rig.turn());
    let job = one_commit(out);
    assert!(
        job.events.iter().any(|e| matches!(
            &e.kind,
            palaver_proto::EventKind::Room(palaver_proto::RoomKind::Delete { tx: t, .. }) if t == tx
        )),
        "records the commit: {:?}",
        job.events
    );
}

/// A request that reached a server while it was stopped, handed over the moment it runs
/// again, is not decided against memory that is behind: the server leaves the rotation first,
/// and the broker gives the request to another (answered here, it refused a post to a channel
/// created meanwhile; the simulation found it, seed 14795).
#[test]
fn a_request_that_waited_out_a_stop_is_left_to_the_broker() {
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    rig.ack("s2", 0);
    rig.serving();
    rig.ms += 1_500;
    let mut out = rig.ask(8, login("bob"));
    out.extend(rig.ask(9, post("ana", "den", "hello")));
    out.extend(rig.turn());
    assert!(
        out.iter().any(|o| matches!(o, Output::LeaveBroker)),
        "{out:?}"
    );
    assert_eq!(rig.engine.dropped_replies, 2);
    // Caught up again, back in the rotation: neither request was decided here, so neither
    // is answered, not even once the rotation takes this server back.
    let theirs = PeerReply::Vector {
        vector: [("s2".to_owned(), 0)].into_iter().collect(),
    };
    for job in commits(std::mem::take(&mut out)) {
        out.extend(rig.commit_turn(job));
    }
    out.extend(rig.answer("s2", PeerAsk::Vector, &theirs));
    out.extend(rig.turn());
    assert!(joined(&out), "back in the rotation");
    out.extend(rig.advance(1_000));
    assert!(replies(&out).is_empty(), "not answered: {out:?}");
}

/// A live peer whose requests go unanswered is out of reach (logged once), and in reach again
/// once it answers.
#[test]
fn a_live_peer_that_stops_answering_is_out_of_reach_until_it_answers() {
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    assert!(rig.engine.out_of_reach().is_empty());
    let ask = Ask::Peer {
        peer: "s2".into(),
        ask: PeerAsk::Vector,
    };
    for _ in 0..2 {
        let answer = Err(Failure::Timeout);
        rig.input(Input::Answer {
            ask: ask.clone(),
            answer,
        });
        assert_eq!(rig.engine.out_of_reach(), vec!["s2".to_owned()]);
    }
    // A request that could not even be sent says nothing either way.
    rig.input(Input::Answer {
        ask: ask.clone(),
        answer: Err(Failure::NotSent),
    });
    assert_eq!(rig.engine.out_of_reach(), vec!["s2".to_owned()]);
    let theirs = PeerReply::Vector {
        vector: [("s2".to_owned(), 0)].into_iter().collect(),
    };
    rig.answer("s2", PeerAsk::Vector, &theirs);
    assert!(rig.engine.out_of_reach().is_empty());
}

/// This server takes part in deciding claims as an acceptor and learner: it promises a
/// leader's ballot and accepts its slot once each record is stored (and only then answers),
/// and learns the leader's decision from the log.
#[test]
fn a_server_promises_accepts_and_learns_claims_once_its_records_are_stored() {
    use palaver_core::claims::{Ballot, Entry, Msg};
    use palaver_proto::claim::{Claim, Claimed};
    let mut rig = Rig::new();
    rig.peers(&["s2"]);
    rig.ack("s2", 0);
    rig.serving();
    let ballot = Ballot {
        round: 1,
        node: "s2".into(),
    };
    let claimed = Claimed {
        claim: Claim::Person { name: name("cy") },
        server: name("s2"),
        request: Some("r-1".into()),
    };
    let step = |msg| PeerRequest::Claims {
        from: name("s2"),
        msg,
    };
    let said = |out: &[Output]| -> Vec<Msg<Claimed>> {
        told(out, "s2", "claims")
            .into_iter()
            .filter_map(|r| match r {
                PeerRequest::Claims { msg, .. } => Some(msg),
                _ => None,
            })
            .collect()
    };
    // The promise: recorded, stored, then said.
    let mut out = rig.hear(
        "s2",
        &step(Msg::Prepare {
            ballot: ballot.clone(),
            from: 1,
        }),
    );
    out.extend(rig.turn());
    assert!(said(&out).is_empty(), "not before the record is stored");
    let job = one_commit(out);
    assert!(matches!(
        &job.events[..],
        [e] if matches!(&e.kind, palaver_proto::EventKind::Claim(palaver_proto::ClaimKind::Promise { round: 1, .. }))
    ));
    let mut out = rig.commit_turn(job);
    out.extend(rig.ack("s2", 1));
    assert!(
        said(&out)
            .iter()
            .any(|m| matches!(m, Msg::Promise { ballot: b, .. } if *b == ballot)),
        "{out:?}"
    );
    // The vote, the same way.
    let mut out = rig.hear(
        "s2",
        &step(Msg::Accept {
            ballot: ballot.clone(),
            slot: 1,
            entry: Entry::Claim(claimed.clone()),
        }),
    );
    out.extend(rig.turn());
    let job = one_commit(out);
    let mut out = rig.commit_turn(job);
    out.extend(rig.ack("s2", 2));
    assert!(
        said(&out)
            .iter()
            .any(|m| matches!(m, Msg::Accepted { slot: 1, .. })),
        "{out:?}"
    );
    // A refusal for a lower ballot, with no record.
    let mut out = rig.hear(
        "s2",
        &step(Msg::Prepare {
            ballot: Ballot {
                round: 0,
                node: "s2".into(),
            },
            from: 1,
        }),
    );
    out.extend(rig.turn());
    for job in commits(std::mem::take(&mut out)) {
        assert!(job.events.is_empty(), "a refusal records nothing");
        out.extend(rig.commit_turn(job));
    }
    // The decision, learned from the leader's event.
    assert_eq!(rig.engine.claims_applied(), 0);
    let decided = palaver_proto::Event {
        origin: "s2".into(),
        seq: 1,
        lamport: 9,
        timestamp: 1.0,
        kind: palaver_proto::ClaimKind::Decided {
            slot: 1,
            claim: Some(claimed),
        }
        .into(),
        request: None,
    };
    rig.hear(
        "s2",
        &PeerRequest::Replica {
            origin: name("s2"),
            events: vec![decided],
        },
    );
    assert_eq!(rig.engine.claims_applied(), 1);
}

/// Plays `node`'s part (a peer) in deciding claims: takes what this server told it in `out`,
/// and hands its answers back. Its records are not kept: a peer's disk is not under test.
fn vote(
    rig: &mut Rig,
    node: &mut palaver_core::claims::Node<palaver_proto::claim::Claimed>,
    out: &[Output],
) -> Vec<Output> {
    let me = node.me().to_owned();
    for req in told(out, &me, "claims") {
        if let PeerRequest::Claims { from, msg } = req {
            node.on_message(rig.now().at, from.as_str(), msg);
        }
    }
    let mut more = Vec::new();
    while let Some(action) = node.poll_action() {
        if let palaver_core::claims::Action::Send { to, msg } = action {
            if to == "s1" {
                let req = PeerRequest::Claims {
                    from: name(&me),
                    msg,
                };
                more.extend(rig.hear(&me, &req));
            }
        }
    }
    more
}

/// Runs the turns of a claim until its request is answered: commits what is to commit, has
/// `voters` answer what they are told, and the peers acknowledge every event (unless cut
/// off: `voters` empty).
fn until_answered(
    rig: &mut Rig,
    voters: &mut [palaver_core::claims::Node<palaver_proto::claim::Claimed>],
    mut out: Vec<Output>,
    jobs: &mut Vec<Job>,
) -> Envelope {
    let cut_off = voters.is_empty();
    for _ in 0..50 {
        if let Some((_, reply)) = replies(&out).first() {
            return (*reply).clone();
        }

        let mut next = Vec::new();
        for v in voters.iter_mut() {
            next.extend(vote(rig, v, &out));
        }
        next.extend(rig.turn());
        let (to_commit, rest): (Vec<Output>, Vec<Output>) = next
            .into_iter()
            .partition(|o| matches!(o, Output::Commit(_)));
        next = rest;
        for job in commits(to_commit) {
            jobs.push(job.clone());
            next.extend(rig.commit_turn(job));
        }
        if !cut_off {
            for peer in ["s2", "s3"] {
                next.extend(rig.ack(peer, 1_000));
            }
        }
        out = next;
        if replies(&out).is_empty() {
            out.extend(rig.advance(100));
        }
    }
    panic!("never answered");
}

/// A brand-new name is a claim: it is answered only once a majority of the servers (here s1
/// and s2 of three) accepted it, and the login that records it is written after that; with
/// no peer answering, the request is refused within the phase's timeout and nothing that
/// could take effect is written.
#[test]
fn a_new_name_waits_for_a_majority_and_a_server_cut_off_refuses_it() {
    use palaver_core::claims::{Node, Timeouts};
    let mut rig = Rig::new();
    rig.peers(&["s2", "s3"]);
    rig.ack("s2", 0);
    rig.ack("s3", 0);
    rig.serving();
    let mut s2 = Node::new("s2", Timeouts::default());
    s2.set_members(["s1".to_owned(), "s2".to_owned(), "s3".to_owned()]);
    let out = rig.ask(1, login("zed"));
    let mut jobs = Vec::new();
    let reply = until_answered(&mut rig, std::slice::from_mut(&mut s2), out, &mut jobs);
    assert_eq!(Reply::status(&reply), Status::Success, "{reply:?}");
    let kinds: Vec<&palaver_proto::EventKind> = jobs
        .iter()
        .flat_map(|j| &j.events)
        .map(|e| &e.kind)
        .collect();
    let decided = kinds
        .iter()
        .position(|k| {
            matches!(
                k,
                palaver_proto::EventKind::Claim(palaver_proto::ClaimKind::Decided { .. })
            )
        })
        .expect("the decision is stored");
    let recorded = kinds
        .iter()
        .position(|k| {
            matches!(
                k,
                palaver_proto::EventKind::Account(palaver_proto::AccountKind::Login { .. })
            )
        })
        .expect("the login is stored");
    assert!(
        decided <= recorded,
        "the login follows its decision: {kinds:?}"
    );
    assert_eq!(rig.engine.claims_applied(), 1);
    let users = rig.ask(2, Envelope::new("users"));
    let users = until_answered(&mut rig, std::slice::from_mut(&mut s2), users, &mut jobs);
    assert_eq!(users.data.str_list("users").unwrap(), vec!["zed"]);

    // Cut off: nobody answers any more. This server led, but has heard from no one for a
    // moment: it campaigns again, finds no majority, and refuses within the phase's timeout
    // (1.5 s), having written nothing but its own promise.
    for _ in 0..16 {
        rig.advance(100);
    }
    let before = jobs.len();
    let out = rig.ask(3, login("amy"));
    let mut quiet = Vec::new();
    let start = rig.ms;
    let reply = until_answered(&mut rig, &mut quiet, out, &mut jobs);
    assert_eq!(
        reply.data.str("description").unwrap(),
        super::claims::NO_MAJORITY,
        "{reply:?}"
    );
    let waited = rig.ms - start;
    assert!(waited <= 2_000, "refused after {waited} ms");
    for e in jobs[before..].iter().flat_map(|j| &j.events) {
        assert!(
            !matches!(e.kind, palaver_proto::EventKind::Account(_)),
            "nothing but claim records: {e:?}"
        );
        assert!(
            !matches!(
                e.kind,
                palaver_proto::EventKind::Claim(palaver_proto::ClaimKind::Decided { .. })
            ),
            "no decision: {e:?}"
        );
    }
    assert_eq!(rig.engine.claims_applied(), 1);
}
