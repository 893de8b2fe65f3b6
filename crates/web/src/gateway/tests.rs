//! The gateway core on simulated time, with the broker's answers made up here.

use super::*;

const RATE: Rate = Rate {
    per_second: 2.0,
    burst: 3.0,
};

fn gateway() -> Gateway {
    Gateway::new(RATE, Duration::from_millis(100), 2)
}

/// A gateway whose rate no test here reaches.
fn roomy() -> Gateway {
    let rate = Rate {
        per_second: 100.0,
        burst: 100.0,
    };
    Gateway::new(rate, Duration::from_millis(100), 2)
}

/// The request frames among `actions`.
fn sent(actions: &[Action]) -> Vec<Envelope> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(f) => Some(Envelope::decode(f).expect("a request")),
            _ => None,
        })
        .collect()
}

/// What `sid` was handed, as JSON.
fn told(actions: &[Action], sid: Sid) -> Vec<Json> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver(to, text) if to.contains(&sid) => {
                Some(serde_json::from_str(text).expect("JSON"))
            }
            _ => None,
        })
        .collect()
}

/// The broker's answer to `req`, with `fields`.
fn answer(req: &Envelope, fields: &[(&str, Value)]) -> Vec<u8> {
    let mut env = Envelope::new(req.service.clone()).with("status", "OK");
    if let Some(id) = req.data.opt_str("request_id").unwrap() {
        env = env.with("request_id", id);
    }
    for (k, v) in fields {
        env = env.with(k, v.clone());
    }
    env.to_bytes()
}

use rmpv::Value;

/// Logs `sid` in as `user` with a token; returns the actions of the answer.
fn log_in(g: &mut Gateway, now: Instant, sid: Sid, user: &str) -> Vec<Action> {
    let text = json!({"re": 1, "service": "login", "data": {"user": user, "password": "pw", "device": "d1"}});
    let req = sent(&g.request(now, sid, &text.to_string())).remove(0);
    assert_eq!(req.data.opt_str("user").unwrap(), Some(user));
    let token = format!("token-of-{user}");
    g.on_reply(
        now,
        &answer(&req, &[("token", Value::from(token.as_str()))]),
    )
}

#[test]
fn a_login_follows_the_persons_topics_and_beats_for_them() {
    let t0 = Instant::now();
    let mut g = gateway();
    g.open(t0, 1, true);
    let actions = log_in(&mut g, t0, 1, "ana");
    let subscribed: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Subscribe(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(subscribed, ["ana", "servers", "presence"]);
    let said = &told(&actions, 1)[0];
    assert_eq!(said["re"], 1);
    assert_eq!(said["data"]["user"], "ana");
    assert_eq!(said["data"]["device"], "d1");
    // The rooms are asked for with the session's token, and followed.
    let joined = sent(&actions).remove(0);
    assert_eq!(joined.service, "joined");
    assert_eq!(joined.data.opt_str("token").unwrap(), Some("token-of-ana"));
    let rooms = Value::Array(vec![Value::from("den")]);
    let actions = g.on_reply(t0, &answer(&joined, &[("channels", rooms)]));
    assert_eq!(actions, [Action::Subscribe("den".into())]);
    // A beat is due at once, as the person's web device.
    let beat = sent(&g.on_timeout(t0)).remove(0);
    assert_eq!(beat.service, "beat");
    assert_eq!(beat.data.opt_str("device").unwrap(), Some("web-d1"));
    let actions = g.on_reply(t0, &answer(&beat, &[("every", Value::F64(4.0))]));
    assert!(actions.is_empty());
    assert_eq!(g.deadline(), Some(t0 + Duration::from_secs(4)));
    // Closing says goodbye and follows nothing more.
    let actions = g.close(t0, 1);
    let goodbye = sent(&actions).remove(0);
    assert_eq!(goodbye.data.opt_bool("leaving").unwrap(), Some(true));
    assert_eq!(g.topics().count(), 0);
    assert_eq!(g.sessions(), 0);
}

#[test]
fn requests_act_as_the_sessions_person_and_nobody_else() {
    let t0 = Instant::now();
    let mut g = roomy();
    g.open(t0, 1, true);
    let ask = |g: &mut Gateway, data: Json| {
        let text = json!({"re": 5, "service": data["s"], "data": data["d"]}).to_string();
        g.request(t0, 1, &text)
    };
    let refused = |actions: Vec<Action>| -> String {
        assert!(sent(&actions).is_empty(), "nothing reaches the cluster");
        let t = told(&actions, 1).remove(0);
        assert_eq!(t["data"]["gateway"], true);
        t["data"]["description"].as_str().unwrap().to_owned()
    };
    let why = refused(ask(
        &mut g,
        json!({"s": "publish", "d": {"channel": "den", "message": "x"}}),
    ));
    assert_eq!(why, "log in first");
    // Before logging in: the open services go through, with no user.
    let users = sent(&ask(&mut g, json!({"s": "users", "d": {}}))).remove(0);
    assert_eq!(users.data.get("user"), None);
    log_in(&mut g, t0, 1, "ana");
    let why = refused(ask(
        &mut g,
        json!({"s": "publish", "d": {"channel": "den", "message": "x", "user": "bob"}}),
    ));
    assert_eq!(why, "this session is `ana`'s; it cannot act as `bob`");
    let why = refused(ask(
        &mut g,
        json!({"s": "message", "d": {"dst": "cy", "message": "x", "src": 7}}),
    ));
    assert!(why.contains("cannot act as `7`"), "{why}");
    let why = refused(ask(
        &mut g,
        json!({"s": "read", "d": {"id": "s1:1", "token": "x"}}),
    ));
    assert!(why.contains("`token` only with `login`"), "{why}");
    let why = refused(ask(&mut g, json!({"s": "unseal", "d": {}})));
    assert!(why.contains("the gateway's to send"), "{why}");
    // Allowed ones carry the person, the device and the token.
    let m = sent(&ask(
        &mut g,
        json!({"s": "message", "d": {"dst": "cy", "message": "x"}}),
    ))
    .remove(0);
    assert_eq!(m.data.opt_str("src").unwrap(), Some("ana"));
    assert_eq!(m.data.opt_str("token").unwrap(), Some("token-of-ana"));
    let i = sent(&ask(
        &mut g,
        json!({"s": "inbox", "d": {"device": "other"}}),
    ))
    .remove(0);
    assert_eq!(i.data.opt_str("device").unwrap(), Some("web-d1"));
    assert_eq!(i.data.opt_str("user").unwrap(), Some("ana"));
    let h = sent(&ask(&mut g, json!({"s": "history", "d": {"with": "cy"}}))).remove(0);
    assert_eq!(h.data.opt_str("user").unwrap(), Some("ana"));
    let same = sent(&ask(
        &mut g,
        json!({"s": "publish", "d": {"channel": "den", "message": "x", "user": "ana"}}),
    ));
    assert_eq!(same.len(), 1, "naming oneself is fine");
    assert_eq!(g.counts.refused, 5);
}

#[test]
fn requests_beyond_the_rate_are_refused_until_the_bucket_refills() {
    let t0 = Instant::now();
    let mut g = gateway();
    g.open(t0, 1, true);
    let users = r#"{"re": 1, "service": "users"}"#;
    let passed = |a: &[Action]| !sent(a).is_empty();
    for _ in 0..3 {
        assert!(passed(&g.request(t0, 1, users)));
    }
    let a = g.request(t0, 1, users);
    assert!(!passed(&a));
    let why = told(&a, 1).remove(0);
    assert!(why["data"]["description"]
        .as_str()
        .unwrap()
        .contains("at most 2 a second (3 at once)"));
    // Half a second later one more is allowed (2 a second), then none.
    let t1 = t0 + Duration::from_millis(500);
    assert!(passed(&g.request(t1, 1, users)));
    assert!(!passed(&g.request(t1, 1, users)));
    // A session that is not rated (a trusted client on the gateway's machine) is never held
    // back, while the rated one beside it still is.
    g.open(t1, 2, false);
    for _ in 0..100 {
        assert!(passed(&g.request(t1, 2, users)));
    }
    assert!(!passed(&g.request(t1, 1, users)));
}

#[test]
fn private_publications_reach_only_their_person_and_repeats_are_dropped() {
    let t0 = Instant::now();
    let mut g = gateway();
    for (sid, user) in [(1, "ana"), (2, "bob"), (3, "ana")] {
        g.open(t0, sid, true);
        log_in(&mut g, t0, sid, user);
    }
    let message = Publication {
        topic: "ana".into(),
        envelope: Envelope::new("message")
            .with("src", "bob")
            .with("dst", "ana")
            .with("message", "psst")
            .with("id", "s1:9")
            .with("clock", 9),
    };
    let a = g.on_publication(t0, message.clone());
    assert_eq!(a.len(), 1);
    assert!(matches!(&a[0], Action::Deliver(to, _) if *to == vec![1, 3]));
    assert!(g.on_publication(t0, message).is_empty(), "a repeat");
    assert_eq!(g.counts.repeats, 1);
    // Presence goes to everyone logged in; a topic nobody follows to nobody.
    let presence = Publication {
        topic: "presence".into(),
        envelope: Envelope::new("presence")
            .with("user", "cy")
            .with("online", true),
    };
    assert!(matches!(&g.on_publication(t0, presence)[0], Action::Deliver(to, _) if to.len() == 3));
    let elsewhere = Publication {
        topic: "elsewhere".into(),
        envelope: Envelope::new("publish").with("id", "s1:10"),
    };
    assert!(g.on_publication(t0, elsewhere).is_empty());
}

#[test]
fn a_sealed_message_is_opened_with_the_recipients_session() {
    let t0 = Instant::now();
    let mut g = gateway();
    g.open(t0, 1, true);
    log_in(&mut g, t0, 1, "bob");
    let sealed = Publication {
        topic: "bob".into(),
        envelope: Envelope::new("sealed")
            .with("src", "ana")
            .with("dst", "bob")
            .with("id", "s2:4")
            .with("clock", 12),
    };
    let a = g.on_publication(t0, sealed);
    assert!(told(&a, 1).is_empty(), "nothing before it is opened");
    let unseal = sent(&a).remove(0);
    assert_eq!(unseal.service, "unseal");
    assert_eq!(unseal.data.opt_str("token").unwrap(), Some("token-of-bob"));
    let reply = answer(
        &unseal,
        &[
            ("src", Value::from("ana")),
            ("dst", Value::from("bob")),
            ("message", Value::from("see you at 6")),
            ("sent", Value::F64(1.5)),
            ("lamport", Value::from(12)),
        ],
    );
    let m = told(&g.on_reply(t0, &reply), 1).remove(0);
    assert_eq!(m["topic"], "bob");
    assert_eq!(m["service"], "message");
    assert_eq!(m["data"]["message"], "see you at 6");
    assert_eq!(m["data"]["id"], "s2:4");
}

#[test]
fn a_request_the_cluster_never_answers_is_reported_to_its_browser() {
    let t0 = Instant::now();
    let mut g = gateway();
    g.open(t0, 1, true);
    let first = g.request(t0, 1, r#"{"re": 8, "service": "channels"}"#);
    let resent = g.on_timeout(t0 + Duration::from_millis(100));
    assert_eq!(sent(&resent), sent(&first), "sent again, the same request");
    let gave_up = g.on_timeout(t0 + Duration::from_millis(200));
    let t = told(&gave_up, 1).remove(0);
    assert_eq!(t["re"], 8);
    assert!(t["data"]["description"]
        .as_str()
        .unwrap()
        .contains("no answer from the cluster after 2 attempts"));
    assert_eq!(g.counts.gave_up, 1);
}

#[test]
fn joining_and_leaving_a_room_follow_and_unfollow_it() {
    let t0 = Instant::now();
    let mut g = roomy();
    for (sid, user) in [(1, "ana"), (2, "bob")] {
        g.open(t0, sid, true);
        log_in(&mut g, t0, sid, user);
    }
    let join = |g: &mut Gateway, sid: Sid, service: &str| {
        let text = json!({"re": 2, "service": service, "data": {"channel": "den"}}).to_string();
        let req = sent(&g.request(t0, sid, &text)).remove(0);
        g.on_reply(t0, &answer(&req, &[]))
    };
    assert!(join(&mut g, 1, "join").contains(&Action::Subscribe("den".into())));
    assert!(!join(&mut g, 2, "join").contains(&Action::Subscribe("den".into())));
    assert!(!join(&mut g, 1, "leave").contains(&Action::Unsubscribe("den".into())));
    assert!(join(&mut g, 2, "leave").contains(&Action::Unsubscribe("den".into())));
    // A refused join follows nothing.
    let text = json!({"re": 3, "service": "join", "data": {"channel": "den"}}).to_string();
    let req = sent(&g.request(t0, 1, &text)).remove(0);
    let refusal = Envelope::new("join")
        .with("status", "erro")
        .with("description", "channel `den` was deleted")
        .with(
            "request_id",
            req.data.opt_str("request_id").unwrap().unwrap(),
        )
        .to_bytes();
    assert!(!g
        .on_reply(t0, &refusal)
        .iter()
        .any(|a| matches!(a, Action::Subscribe(_))));
}

/// A post to `den` by ana, accepted by s1.
fn post(seq: u64, lamport: u64, text: &str) -> palaver_proto::Event {
    palaver_proto::Event {
        origin: "s1".into(),
        seq,
        lamport,
        timestamp: 1.0,
        kind: palaver_proto::EventKind::Message(palaver_proto::MessageKind::Post {
            user: Name::parse("ana").unwrap(),
            channel: Name::parse("den").unwrap(),
            message: text.into(),
        }),
        request: None,
    }
}

/// The cluster's `history` answer to `req`.
fn history(req: &Envelope, events: &[palaver_proto::Event], more: bool) -> Vec<u8> {
    let id = req.data.opt_str("request_id").unwrap().unwrap();
    HistoryQuery::reply(events, more)
        .with("request_id", id)
        .to_bytes()
}

/// The `history` requests among `actions`.
fn histories(actions: &[Action]) -> Vec<Envelope> {
    sent(actions)
        .into_iter()
        .filter(|e| e.service == "history")
        .collect()
}

#[test]
fn after_a_reconnect_the_rooms_followed_are_read_again_from_their_last_post() {
    let t0 = Instant::now();
    let mut g = roomy();
    for (sid, user) in [(1, "ana"), (2, "bob")] {
        g.open(t0, sid, true);
        log_in(&mut g, t0, sid, user);
    }
    let text = json!({"re": 2, "service": "join", "data": {"channel": "den"}}).to_string();
    let join = sent(&g.request(t0, 1, &text)).remove(0);
    g.on_reply(t0, &answer(&join, &[]));
    let live = Publication::of_event(&post(1, 10, "one")).unwrap();
    assert_eq!(told(&g.on_publication(t0, live), 1).len(), 1);

    // The link is back: den is read after its last post seen; ana's and bob's own topics and
    // the shared ones are not rooms.
    let asked = histories(&g.on_reconnect(t0));
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].data.opt_str("channel").unwrap(), Some("den"));
    assert_eq!(asked[0].data.opt_str("after").unwrap(), Some("10:s1"));
    assert_eq!(
        asked[0].data.get("token"),
        None,
        "a room's history needs no session"
    );
    // What was seen already is not handed out again; what was missed reaches den's followers.
    let a = g.on_reply(
        t0,
        &history(&asked[0], &[post(1, 10, "one"), post(2, 11, "two")], false),
    );
    let to_ana = told(&a, 1);
    assert_eq!(to_ana.len(), 1, "{to_ana:?}");
    assert_eq!(to_ana[0]["topic"], "den");
    assert_eq!(to_ana[0]["service"], "publish");
    assert_eq!(to_ana[0]["data"]["message"], "two");
    assert_eq!(
        to_ana[0]["data"]["clock"], 11,
        "the post's own Lamport time"
    );
    assert_eq!(to_ana[0]["data"]["id"], "s1:2");
    assert!(told(&a, 2).is_empty(), "bob is not in den");
    assert_eq!(g.counts.repaired, 1);

    // Once more a moment later, from the newest post now; a full page asks for the next.
    assert!(g.deadline().is_some_and(|d| d <= t0 + SECOND_REPAIR));
    let t1 = t0 + SECOND_REPAIR;
    let asked = histories(&g.on_timeout(t1));
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].data.opt_str("after").unwrap(), Some("11:s1"));
    let next = histories(&g.on_reply(t1, &history(&asked[0], &[post(3, 12, "three")], true)));
    assert_eq!(next[0].data.opt_str("after").unwrap(), Some("12:s1"));
    let done = g.on_reply(t1, &history(&next[0], &[post(4, 13, "four")], false));
    assert!(histories(&done).is_empty());
    assert_eq!(g.counts.repaired, 3);
    // Nothing more is due for the repair.
    assert!(histories(&g.on_timeout(t1 + SECOND_REPAIR * 5)).is_empty());
}

#[test]
fn a_gap_in_a_rooms_numbers_is_read_from_history_from_before_it() {
    let t0 = Instant::now();
    let mut g = roomy();
    g.open(t0, 1, true);
    log_in(&mut g, t0, 1, "ana");
    let text = json!({"re": 2, "service": "join", "data": {"channel": "den"}}).to_string();
    let join = sent(&g.request(t0, 1, &text)).remove(0);
    g.on_reply(t0, &answer(&join, &[]));
    assert!(
        g.on_sequence(t0, "den", 7).is_empty(),
        "the first number seen"
    );
    let live = Publication::of_event(&post(1, 10, "one")).unwrap();
    assert_eq!(told(&g.on_publication(t0, live), 1).len(), 1);
    assert!(g.on_sequence(t0, "den", 8).is_empty(), "the next one");
    g.on_publication(t0, Publication::of_event(&post(2, 11, "two")).unwrap());
    // 9 and 10 never came: den is read from before the gap.
    let asked = histories(&g.on_sequence(t0, "den", 11));
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].data.opt_str("channel").unwrap(), Some("den"));
    assert_eq!(asked[0].data.opt_str("after").unwrap(), Some("10:s1"));
    let a = g.on_reply(
        t0,
        &history(
            &asked[0],
            &[
                post(2, 11, "two"),
                post(3, 12, "three"),
                post(4, 13, "four"),
            ],
            false,
        ),
    );
    let texts: Vec<_> = told(&a, 1)
        .iter()
        .map(|j| j["data"]["message"].clone())
        .collect();
    assert_eq!(
        texts,
        vec![json!("three"), json!("four")],
        "what was missed, once"
    );
    // A person's own topic has no history to read: a gap there asks for nothing.
    assert!(histories(&g.on_sequence(t0, "ana", 1)).is_empty());
    assert!(histories(&g.on_sequence(t0, "ana", 5)).is_empty());
}
