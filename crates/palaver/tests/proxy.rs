//! The proxy carries only what people subscribe to: writes go on without it, and a subscriber
//! that never reads cannot make it grow without bound.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, name, Cluster};
use palaver_testkit::wait_until;

/// Resident memory of a process, in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One subscriber to everything that never reads grew the proxy to 179 MB with 16 KB posts,
/// never given back.
#[test]
fn a_subscriber_that_never_reads_does_not_grow_the_proxy_past_100_mb() {
    let mut cluster = Cluster::start(&bin(), 3);
    let ctx = zmq::Context::new();
    let idle = ctx.socket(zmq::SUB).unwrap();
    idle.set_rcvbuf(64 * 1024).unwrap();
    idle.set_subscribe(b"").unwrap();
    idle.connect(&cluster.sub_endpoint()).unwrap();
    let pid = cluster.proxy().pid();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // 12,000 posts of 16 KB: 192 MB through the proxy, all to the idle subscriber.
    let out = Command::new(bin())
        .args(["bench", "--workload", "fanout", "--subscribers", "1"])
        .args([
            "--clients",
            "4",
            "--window",
            "16",
            "--size",
            "16000",
            "--count",
            "3000",
        ])
        .args([
            "--broker",
            &cluster.broker_endpoint(),
            "--sub",
            &cluster.sub_endpoint(),
        ])
        .arg("--json")
        .output()
        .unwrap();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"].as_u64(), Some(12_000), "{v}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{v}");
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("proxy peak RSS {} MB", peak >> 20);
    assert!(peak > 0, "the proxy's memory was read");
    assert!(peak < 100 << 20, "the proxy grew to {} MB", peak >> 20);
    drop(idle);
}

/// With the proxy down, writes fell from ~3,000/s to ~20/s: each waited out the ack deadline,
/// because replication went through the proxy.
#[test]
fn writes_go_on_at_half_their_rate_or_more_while_the_proxy_is_down() {
    let mut cluster = Cluster::start(&bin(), 3);
    common::writers(&cluster, "general", 4);
    let broker = cluster.broker_endpoint();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (broker, stop, answered, acked) = (
                broker.clone(),
                stop.clone(),
                answered.clone(),
                acked.clone(),
            );
            std::thread::spawn(move || {
                let mut c = common::client(&broker);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let text = format!("w{w} {n}");
                    if c.publish(&name(&format!("w{w}")), &name("general"), &text)
                        .is_ok()
                    {
                        answered.fetch_add(1, Ordering::SeqCst);
                        acked.lock().unwrap().push(text);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let rate = |answered: &AtomicU64, over: Duration| {
        let start = (answered.load(Ordering::SeqCst), Instant::now());
        std::thread::sleep(over);
        (answered.load(Ordering::SeqCst) - start.0) as f64 / start.1.elapsed().as_secs_f64()
    };
    std::thread::sleep(Duration::from_millis(500));
    let up = rate(&answered, Duration::from_secs(3));
    cluster.proxy().kill();
    std::thread::sleep(Duration::from_millis(200));
    let down = rate(&answered, Duration::from_secs(3));
    eprintln!("writes/s with the proxy: {up:.0}; without: {down:.0}");
    cluster.restart_proxy();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        down >= up / 2.0,
        "{down:.0}/s without the proxy, {up:.0}/s with it"
    );
    // No acknowledged write is lost: every server holds every post answered OK.
    let acked = acked.lock().unwrap().clone();
    for i in 0..3 {
        let held = wait_until(Duration::from_secs(10), || {
            common::counts(&cluster.data_dir(i)).kind("post") >= acked.len() as u64
        });
        assert!(held, "s{} lacks acknowledged posts", i + 1);
        let store = common::store(&cluster.data_dir(i));
        for text in acked.iter().step_by(97) {
            assert!(
                store.has_post("general", text).unwrap(),
                "s{}: {text}",
                i + 1
            );
        }
    }
    // Publications resume once it is back.
    let mut sub = cluster.subscriber();
    sub.subscribe("general").unwrap();
    let mut probe = cluster.connection();
    cluster.await_subscription(&mut probe, &mut sub, &name("w0"), &name("general"));
}
