//! `palaver chat` end to end: the real binary in a pseudo-terminal (tmux), against a real
//! cluster. Two people join a room and talk; one sees the other's message and then the read
//! receipt on their own private message; the broker is killed and started again, the status
//! bar shows the reconnection, and what was typed meanwhile arrives.

mod common;

use std::time::Duration;

use common::tmux::Tmux;
use common::{bin, name, Cluster};
use palaver_testkit::wait_until;

/// Starts `palaver chat` for `user` in a session of its own.
fn chat(t: &Tmux, cluster: &Cluster, user: &str) {
    let cmd = format!(
        "{} chat --user {user} --broker {} --sub {}",
        bin().display(),
        cluster.broker_endpoint(),
        cluster.sub_endpoint(),
    );
    t.start(user, &cmd, &[]);
}

#[test]
fn two_people_chat_see_receipts_and_lose_nothing_across_a_broker_restart() {
    let mut cluster = Cluster::start(&bin(), 3);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.login(&name("bob")).unwrap();
    let t = Tmux::new("palaver-chat");
    chat(&t, &cluster, "ana");
    chat(&t, &cluster, "bob");
    t.expect("ana", "logged in as ana");
    t.expect("bob", "logged in as bob");
    // The status bar names the server that answered and the coordinator.
    t.expect("ana", "answered by s");
    t.expect("ana", "coordinator s");

    t.type_line("ana", "/create den");
    t.expect("ana", "you joined #den");
    t.expect("ana", "#den · 1 members");
    t.type_line("bob", "/join den");
    t.expect("bob", "#den · 2 members");
    t.type_line("ana", "hello from ana");
    t.expect("bob", "ana: hello from ana");
    t.type_line("bob", "hi ana, bob here");
    t.expect("ana", "bob: hi ana, bob here");

    // A private message: delivered, then read once bob opens the conversation.
    t.type_line("ana", "/msg bob psst, a secret");
    t.expect("ana", "ana: psst, a secret");
    t.type_line("bob", "/msg ana");
    t.expect("bob", "ana: psst, a secret");
    t.expect("ana", "✓✓ read");

    // The broker dies: what ana types meanwhile waits, the status bar says so, and once the
    // broker is back everything arrives, once.
    cluster.kill_broker();
    t.type_line("ana", "sent while the broker was down");
    t.expect("ana", "reconnecting since");
    cluster.start_broker();
    t.expect("ana", "online ·");
    t.expect("bob", "ana: sent while the broker was down");
    let bob = t.screen("bob");
    assert_eq!(
        bob.matches("sent while the broker was down").count(),
        1,
        "shown once:\n{bob}"
    );
    // The conversation goes on.
    t.type_line("bob", "still here");
    t.expect("ana", "bob: still here");
    t.type_line("ana", "/quit");
    let gone = wait_until(Duration::from_secs(10), || {
        !t.tmux(&["list-sessions"]).contains("ana:")
    });
    assert!(gone, "ana's client did not quit");
}
