//! `palaver admin` against a running cluster, as an operator would use it.

mod common;

use std::time::Duration;

use common::{admin, bin, Cluster};
use palaver_testkit::wait_until;

#[test]
fn admin_shows_servers_clocks_and_steers_elections_and_clocks() {
    let cluster = Cluster::start(&bin(), 3);
    let mut servers = String::new();
    let agreed = wait_until(Duration::from_secs(10), || {
        servers = admin(&cluster, &["servers"]).1;
        servers.contains("coordinator: s3 (all live servers agree)")
    });
    assert!(agreed, "{servers}");
    for s in ["s1", "s2", "s3"] {
        assert!(
            servers
                .lines()
                .any(|l| l.starts_with(s) && l.contains("yes")),
            "{s} listed alive:\n{servers}"
        );
    }

    let (ok, clocks) = admin(&cluster, &["clocks"]);
    assert!(ok && clocks.contains("spread:"), "{clocks}");
    assert_eq!(
        clocks
            .lines()
            .filter(|l| ["s1 ", "s2 ", "s3 "].iter().any(|s| l.starts_with(s)))
            .count(),
        3,
        "{clocks}"
    );

    let (ok, out) = admin(&cluster, &["set-clock", "s1", "5000"]);
    assert!(ok && out.contains("s1: clock shifted by 5000 ms"), "{out}");
    let (ok, out) = admin(&cluster, &["set-clock", "s1", "-5000"]);
    assert!(ok, "{out}");

    let (ok, out) = admin(&cluster, &["election", "s1"]);
    assert!(
        ok && out.contains("s1 (rank 1) started an election"),
        "{out}"
    );
    assert!(wait_until(Duration::from_secs(5), || admin(
        &cluster,
        &["servers"]
    )
    .1
    .contains("all live servers agree")));

    let (ok, status) = admin(&cluster, &["status"]);
    assert!(
        ok && status.contains("COORDINATOR") && status.contains("spread:"),
        "{status}"
    );

    let (ok, out) = admin(&cluster, &["set-clock", "nobody", "10"]);
    assert!(!ok && out.contains("knows no server `nobody`"), "{out}");
    // A live server is not removed from the cluster; an unknown one cannot be.
    let (ok, out) = admin(&cluster, &["forget", "s1"]);
    assert!(!ok && out.contains("`s1` is alive"), "{out}");
    let (ok, out) = admin(&cluster, &["forget", "nobody"]);
    assert!(!ok && out.contains("knows no server `nobody`"), "{out}");
}

#[test]
fn admin_says_so_when_the_reference_is_down() {
    let mut cluster = Cluster::start(&bin(), 1);
    cluster.kill_reference();
    let (ok, out) = admin(&cluster, &["servers"]);
    assert!(!ok && out.contains("cannot reach the reference"), "{out}");
}

#[test]
fn admin_verify_passes_once_the_servers_hold_the_same_events() {
    let cluster = Cluster::start(&bin(), 3);
    let mut c = cluster.connection();
    c.login(&common::name("ana")).unwrap();
    c.create_channel(&common::name("general")).unwrap();
    for i in 0..50 {
        c.publish(
            &common::name("ana"),
            &common::name("general"),
            &format!("m{i}"),
        )
        .unwrap();
    }
    let mut out = String::new();
    let same = wait_until(Duration::from_secs(10), || {
        let (ok, text) = admin(&cluster, &["verify"]);
        out = text;
        ok
    });
    assert!(same, "{out}");
    // 52 events of the requests, and the records of the claims that made the names (each
    // server's promise and vote, and the decisions).
    let held: u64 = out
        .split("hold the same ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.contains("3 servers hold the same"), "{out}");
    assert!((52..=52 + 3 * 8).contains(&held), "{out}");
    let (ok, digest) = admin(&cluster, &["digest"]);
    assert!(ok, "{digest}");
    let lines: Vec<&str> = digest
        .lines()
        .filter(|l| l.contains("events  digest"))
        .collect();
    assert_eq!(lines.len(), 3, "{digest}");
    assert!(lines.iter().all(|l| l.contains("vector s1:")), "{digest}");
}
