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
            counts.logins,
            counts.channels,
            counts.posts,
            counts.messages
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
