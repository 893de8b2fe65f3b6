//! Every client service through the broker, success and error paths.

mod common;

use common::{bin, name, Cluster};
use palaver_client::ClientError;
use palaver_proto::{Envelope, Reply, Status};

fn refused(r: Result<(), ClientError>) -> String {
    match r {
        Err(ClientError::Refused(text)) => text,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_standard_services_work_end_to_end() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();

    let reply = c.call(Envelope::new("login").with("user", "ana")).unwrap();
    assert_eq!(reply.service, "login");
    assert_eq!(reply.data.str("status").unwrap(), "sucesso");
    assert!(
        reply.data.timestamp().is_some(),
        "every reply carries a timestamp"
    );
    assert!(
        reply.data.clock().unwrap().is_some(),
        "every reply carries a clock"
    );
    c.login(&name("bob")).unwrap();
    c.login(&name("ana")).unwrap(); // a second login of the same user is fine

    assert_eq!(c.users().unwrap(), vec!["ana", "bob"]);

    let reply = c
        .call(Envelope::new("channel").with("channel", "general"))
        .unwrap();
    assert_eq!(reply.data.str("status").unwrap(), "sucesso");
    let reply = c.call(Envelope::new("channels")).unwrap();
    assert_eq!(
        reply.data.str_list("users").unwrap(),
        vec!["general"],
        "standard key"
    );
    assert_eq!(
        reply.data.str_list("channels").unwrap(),
        vec!["general"],
        "our key"
    );

    let reply = c
        .call(
            Envelope::new("publish")
                .with("user", "ana")
                .with("channel", "general")
                .with("message", "hi"),
        )
        .unwrap();
    assert_eq!(reply.data.str("status").unwrap(), "OK");
    let reply = c
        .call(
            Envelope::new("message")
                .with("src", "ana")
                .with("dst", "bob")
                .with("message", "psst"),
        )
        .unwrap();
    assert_eq!(reply.data.str("status").unwrap(), "OK");

    let counts = common::counts(&cluster.data_dir(0));
    assert_eq!(
        (
            counts.kind("login"),
            counts.kind("channel"),
            counts.kind("post"),
            counts.kind("message")
        ),
        (3, 1, 1, 1)
    );
}

#[test]
fn refusals_say_what_is_wrong_and_store_nothing() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    let before = common::counts(&cluster.data_dir(0));

    assert!(refused(c.create_channel(&name("general"))).contains("already exists"));
    assert!(refused(c.create_channel(&name("ana"))).contains("user's name"));
    assert!(refused(c.login(&name("general"))).contains("is a channel"));
    assert!(refused(c.publish(&name("ana"), &name("nowhere"), "x"))
        .contains("`nowhere` does not exist"));
    assert!(
        refused(c.publish(&name("zed"), &name("general"), "x")).contains("`zed` has not logged in")
    );
    assert!(refused(c.message(&name("ana"), &name("zed"), "x")).contains("`zed` does not exist"));

    for (env, want) in [
        (Envelope::new("login").with("user", "servers"), "reserved"),
        (
            Envelope::new("channel").with("channel", "replica"),
            "reserved",
        ),
        (
            Envelope::new("login").with("user", "bad name"),
            "may hold only",
        ),
        (Envelope::new("login").with("user", ""), "must not be empty"),
        (
            Envelope::new("channel").with("channel", "x".repeat(40)),
            "longer than 32",
        ),
        (
            Envelope::new("publish")
                .with("user", "ana")
                .with("channel", "general")
                .with("message", "   "),
            "must not be empty",
        ),
    ] {
        let service = env.service.clone();
        let reply = c.call(env).unwrap();
        assert_eq!(reply.service, service, "the reply repeats the service");
        assert_eq!(Reply::status(&reply), Status::Error);
        let text = Reply::error_text(&reply).unwrap();
        assert!(text.contains(want), "{text:?} should say {want:?}");
    }
    assert_eq!(
        common::counts(&cluster.data_dir(0)),
        before,
        "refused requests store nothing"
    );
    assert_eq!(c.channels().unwrap(), vec!["general"]);
    assert_eq!(c.users().unwrap(), vec!["ana"]);
}

#[test]
fn one_connection_keeps_many_requests_in_flight_each_answer_matched() {
    let cluster = Cluster::start(&bin(), 3);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    // 200 posts and 50 reads, none waiting for the one before.
    let mut sent = std::collections::BTreeMap::new();
    for i in 0..250 {
        let env = if i % 5 == 4 {
            Envelope::new("users")
        } else {
            Envelope::new("publish")
                .with("user", "ana")
                .with("channel", "general")
                .with("message", format!("m{i}"))
        };
        sent.insert(c.send_request(env).unwrap(), i);
    }
    assert_eq!(c.in_flight(), 250);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut ids = std::collections::BTreeSet::new();
    while let Some((token, reply)) = c.next_answer(until).unwrap() {
        let i = sent
            .remove(&token)
            .expect("an answer to a request of ours, once");
        let reply = reply.unwrap();
        let want = if i % 5 == 4 { "users" } else { "publish" };
        assert_eq!(reply.service, want, "answer {i} is to its own request");
        assert_eq!(
            palaver_proto::Reply::status(&reply),
            palaver_proto::Status::Success
        );
        if want == "publish" {
            assert!(ids.insert(reply.data.str("id").unwrap().to_owned()));
        }
    }
    assert!(sent.is_empty(), "unanswered: {sent:?}");
    assert_eq!(ids.len(), 200);
    // Asked of the cluster, which answers a history read only after committing what the
    // peers sent (a server's file may lag its memory by a few milliseconds).
    let query = palaver_proto::HistoryQuery {
        of: palaver_proto::Conversation::Channel(name("general")),
        limit: palaver_proto::MAX_HISTORY,
        before: None,
        after: None,
        window: Default::default(),
    };
    let reply = c
        .request(&palaver_proto::Request::History { query })
        .unwrap();
    let (events, _) = palaver_proto::HistoryQuery::parse_reply(&reply).unwrap();
    assert_eq!(events.len(), 200);
}
