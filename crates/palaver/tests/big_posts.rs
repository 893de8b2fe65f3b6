//! Replication holds for the largest messages: batches and fetched pages are capped in bytes,
//! so any mix of sizes converges. Before, a batch or page past 1 MiB was refused by its
//! receiver and dropped silently, and the same page was asked for again forever.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, name, Cluster};
use palaver_proto::MAX_TEXT_BYTES;
use palaver_testkit::wait_until;

fn vectors(cluster: &Cluster) -> Vec<Vec<(String, u64)>> {
    (0..3)
        .map(|i| common::store(&cluster.data_dir(i)).vector().unwrap())
        .collect()
}

fn digests_agree(cluster: &Cluster) -> bool {
    let d: Vec<u64> = (0..3)
        .map(|i| common::store(&cluster.data_dir(i)).digest().unwrap())
        .collect();
    d[0] == d[1] && d[1] == d[2]
}

/// A restarted server used to hold none of 1,200 posts of 16,000 bytes after 30 s.
#[test]
fn a_restarted_server_catches_up_on_1200_posts_of_16_kb_within_10_s() {
    let mut cluster = Cluster::start(&bin(), 3);
    common::writers(&cluster, "big", 4);
    cluster.kill_server(2);
    let broker = cluster.broker_endpoint();
    let text = "x".repeat(16_000);
    assert!(text.len() <= MAX_TEXT_BYTES);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let broker = broker.clone();
            let text = text.clone();
            std::thread::spawn(move || {
                let mut c = common::client(&broker);
                for _ in 0..300 {
                    c.publish(&name(&format!("w{w}")), &name("big"), &text)
                        .expect("every post is answered OK");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let started = Instant::now();
    cluster.start_server(2);
    let caught_up = wait_until(Duration::from_secs(10), || {
        let v = vectors(&cluster);
        v[2] == v[0] && v[0] == v[1]
    });
    assert!(
        caught_up,
        "s3 did not catch up within 10 s: {:?}",
        vectors(&cluster)
    );
    eprintln!(
        "s3 caught up {:?} after its restart began",
        started.elapsed()
    );
    assert_eq!(common::counts(&cluster.data_dir(2)).kind("post"), 1200);
    assert!(wait_until(Duration::from_secs(5), || digests_agree(
        &cluster
    )));
    let (ok, text) = common::admin_verify(&cluster);
    assert!(ok, "admin verify: {text}");
}

/// 100 clients with 4 posts of 16 KB in flight each used to leave the servers apart for good.
#[test]
fn a_hundred_pipelined_clients_of_16_kb_posts_converge_within_10_s() {
    let cluster = Cluster::start(&bin(), 3);
    let out = Command::new(bin())
        .args([
            "bench",
            "--workload",
            "publish",
            "--clients",
            "100",
            "--window",
            "4",
        ])
        .args(["--size", "16000", "--count", "12", "--json"])
        .args(["--broker", &cluster.broker_endpoint()])
        .args(["--sub", &cluster.sub_endpoint()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"].as_u64(), Some(1200), "{v}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{v}");
    let agreed = wait_until(Duration::from_secs(10), || digests_agree(&cluster));
    assert!(
        agreed,
        "servers still differ 10 s later: {:?}",
        vectors(&cluster)
    );
    let posts: Vec<u64> = (0..3)
        .map(|i| common::counts(&cluster.data_dir(i)).kind("post"))
        .collect();
    assert!(posts.iter().all(|p| *p >= 1200), "{posts:?}");
    let (ok, text) = common::admin_verify(&cluster);
    assert!(ok, "admin verify: {text}");
}

/// The largest history answer (500 posts of 16 KiB, about 8 MiB) comes back through the broker
/// like any other, and the server stays in the rotation. (The broker once capped its server
/// side at 2 MiB and dropped the connection of a server that answered so much.)
#[test]
fn the_largest_history_answer_passes_the_broker() {
    let cluster = Cluster::start(&bin(), 1);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("big")).unwrap();
    let text = "x".repeat(MAX_TEXT_BYTES);
    for i in 0..palaver_proto::MAX_HISTORY {
        c.publish(
            &name("ana"),
            &name("big"),
            &format!("{i}{text}")[..MAX_TEXT_BYTES],
        )
        .unwrap();
    }
    let query = palaver_proto::HistoryQuery {
        of: palaver_proto::Conversation::Channel(name("big")),
        limit: palaver_proto::MAX_HISTORY,
        before: None,
        after: None,
        window: Default::default(),
    };
    let reply = c
        .request(&palaver_proto::Request::History { query })
        .unwrap();
    let (events, _) = palaver_proto::HistoryQuery::parse_reply(&reply).unwrap();
    assert_eq!(events.len(), palaver_proto::MAX_HISTORY);
    // The server was not cut off for it: it goes on answering.
    assert_eq!(c.users().unwrap(), ["ana"]);
}
