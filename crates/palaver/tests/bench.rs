//! `palaver bench`: every workload runs against a real cluster and accounts for what it sent
//! and what the subscribers received. Speed itself is never asserted here; the figures are in
//! docs/benchmarks.md.

mod common;

use std::process::Command;

use common::{bin, Cluster};

/// Runs `palaver bench <args> --json` against the cluster and returns its result.
fn bench_json(cluster: &Cluster, args: &str) -> serde_json::Value {
    let endpoints = format!(
        "--broker {} --sub {}",
        cluster.broker_endpoint(),
        cluster.sub_endpoint()
    );
    run_bench(&format!("{args} {endpoints}"))
}

/// Runs `palaver bench <args> --json` and returns its result.
fn run_bench(args: &str) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("bench")
        .args(args.split_whitespace())
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// All `n` requests were answered, none with an error.
fn assert_all_answered(v: &serde_json::Value, n: u64) {
    assert_eq!((count(v, "requests"), count(v, "errors")), (n, 0), "{v}");
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Every message answered OK reached every socket that follows its topic, once.
fn assert_delivered_once(v: &serde_json::Value) {
    assert!(count(v, "deliveries") > 0, "{v}");
    assert_eq!(v["deliveries"], v["expected_deliveries"], "{v}");
    assert_eq!((count(v, "missed"), count(v, "repeated")), (0, 0), "{v}");
    assert!(count(&v["end_to_end_us"], "p50") > 0, "{v}");
}

#[test]
fn publish_measures_synchronous_and_pipelined_clients() {
    let cluster = Cluster::start(&bin(), 1);
    let mut answered = 0;
    for window in ["1", "8"] {
        let v = bench_json(
            &cluster,
            &format!("--clients 2 --window {window} --duration 0.5"),
        );
        assert_eq!(v["window"].as_u64(), Some(window.parse().unwrap()));
        assert!(count(&v, "requests") > 0, "{v}");
        assert_eq!(count(&v, "errors"), 0, "{v}");
        assert_eq!(v["by_service"]["publish"], v["requests"], "{v}");
        let lat = &v["latency_us"];
        assert!(
            count(lat, "p50") > 0 && count(lat, "p50") <= count(lat, "p99"),
            "{v}"
        );
        answered += count(&v, "requests");
    }
    // Every request answered OK is stored (warm-up requests too, so at least as many).
    assert!(common::counts(&cluster.data_dir(0)).kind("post") >= answered);
}

#[test]
fn a_counted_run_sends_exactly_its_count_over_the_channels() {
    let cluster = Cluster::start(&bin(), 1);
    let before = common::counts(&cluster.data_dir(0)).kind("post");
    let v = bench_json(&cluster, "--clients 3 --window 4 --count 40 --channels 4");
    assert_all_answered(&v, 120);
    assert_eq!(
        common::counts(&cluster.data_dir(0)).kind("post") - before,
        120
    );
    let store = common::store(&cluster.data_dir(0));
    for c in 0..4 {
        let q = palaver_proto::HistoryQuery {
            of: palaver_proto::Conversation::Channel(common::name(&format!("publish-room-{c}"))),
            limit: 500,
            before: None,
            after: None,
            window: Default::default(),
        };
        let (posts, _) = store.history(&q).unwrap();
        assert_eq!(posts.len(), 30, "room {c} has its share");
    }
}

#[test]
fn fanout_counts_every_delivery_once() {
    let cluster = Cluster::start(&bin(), 1);
    for _ in 0..2 {
        // Twice: a second run must not be mistaken for retries of the first.
        let v = bench_json(
            &cluster,
            "--workload fanout --subscribers 6 --channels 2 --window 4 --duration 0.5",
        );
        assert_eq!(count(&v, "subscribers"), 6, "{v}");
        assert_delivered_once(&v);
    }
}

#[test]
fn dm_delivers_each_private_message_to_its_one_reader() {
    let cluster = Cluster::start(&bin(), 1);
    let v = bench_json(
        &cluster,
        "--workload dm --clients 5 --window 2 --duration 0.5",
    );
    assert_eq!(v["by_service"]["message"], v["requests"], "{v}");
    assert_delivered_once(&v);
    // One reader per message: everything answered OK, warm-up included, was delivered once.
    assert!(count(&v, "deliveries") >= count(&v, "requests"), "{v}");
}

#[test]
fn chat_bots_make_a_paced_mix_and_hear_everything_meant_for_them() {
    let cluster = Cluster::start(&bin(), 2);
    let v = bench_json(
        &cluster,
        "--workload chat --clients 12 --rate 40 --count 40",
    );
    assert_all_answered(&v, 480);
    let services = v["by_service"].as_object().unwrap();
    for s in ["publish", "message", "users", "channels", "history"] {
        assert!(services.contains_key(s), "{s} missing from the mix: {v}");
    }
    assert_eq!(count(&v, "subscribers"), 12, "{v}");
    assert_delivered_once(&v);
    // Paced at 40/s each, 40 requests take about a second, not the few milliseconds that
    // 480 unpaced requests would.
    assert!(v["seconds"].as_f64().unwrap() > 0.5, "{v}");
}

#[test]
fn more_clients_than_a_zeromq_context_holds_by_default() {
    // 520 bots, each with a request socket and a subscriber socket: past ZeroMQ's default of
    // 1,023 sockets per context.
    let cluster = Cluster::start(&bin(), 1);
    let v = bench_json(
        &cluster,
        "--workload chat --clients 520 --rate 20 --count 1",
    );
    assert_all_answered(&v, 520);
    assert_eq!(count(&v, "subscribers"), 520, "{v}");
    assert_delivered_once(&v);
}

#[test]
fn spawn_runs_against_a_cluster_of_its_own() {
    let v = run_bench("--spawn 2 --clients 2 --count 25");
    assert_all_answered(&v, 50);
}
