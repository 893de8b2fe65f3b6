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

/// Runs `palaver bench --workload fanout <args> --json` against `cluster` while sampling the
/// proxy's resident memory: the bench's report and the proxy's peak.
fn fanout_with_peak(cluster: &mut Cluster, args: &[&str]) -> (serde_json::Value, u64) {
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
    let out = Command::new(bin())
        .args(["bench", "--workload", "fanout"])
        .args(args)
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
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("proxy peak RSS {} MB", peak >> 20);
    assert!(peak > 0, "the proxy's memory was read");
    (serde_json::from_slice(&out.stdout).unwrap(), peak)
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
    // 12,000 posts of 16 KB: 192 MB through the proxy, all to the idle subscriber.
    let (v, peak) = fanout_with_peak(
        &mut cluster,
        &[
            "--subscribers",
            "1",
            "--clients",
            "4",
            "--window",
            "16",
            "--size",
            "16000",
            "--count",
            "3000",
        ],
    );
    assert_eq!(v["requests"].as_u64(), Some(12_000), "{v}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{v}");
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

/// Ten subscribers that never read, each following its own busy channel (4 KB posts), cost
/// the proxy less than 100 MB in all and slow nobody: ten others reading the same channels
/// miss nothing. Each stalled one, once it reads, finds the gap in the proxy's numbers; and
/// the memory goes back once they leave.
#[test]
fn ten_subscribers_that_never_read_cost_the_proxy_under_100_mb_and_are_told_what_they_missed() {
    let mut cluster = Cluster::start(&bin(), 3);
    let ctx = zmq::Context::new();
    let stalled: Vec<zmq::Socket> = (0..10)
        .map(|i| {
            let s = ctx.socket(zmq::SUB).unwrap();
            s.set_rcvhwm(1).unwrap();
            s.set_rcvbuf(4096).unwrap();
            s.set_subscribe(format!("fanout-room-{i}").as_bytes())
                .unwrap();
            s.connect(&cluster.sub_endpoint()).unwrap();
            s
        })
        .collect();
    let pid = cluster.proxy().pid();
    // 28,000 posts of 4 KB over ten channels: 2,800 each, far more than a stalled
    // subscriber's queue (1,000) and its kernel buffers hold.
    let (v, peak) = fanout_with_peak(
        &mut cluster,
        &[
            "--subscribers",
            "10",
            "--channels",
            "10",
            "--clients",
            "4",
            "--window",
            "32",
            "--size",
            "4000",
            "--count",
            "7000",
        ],
    );
    assert_eq!(v["requests"].as_u64(), Some(28_000), "{v}");
    assert_eq!(
        v["missed"].as_u64(),
        Some(0),
        "the readers lost nothing: {v}"
    );
    assert_eq!(v["gaps"].as_u64(), Some(0), "{v}");
    assert!(peak < 100 << 20, "the proxy grew to {} MB", peak >> 20);
    // Each stalled subscriber reads again what it holds; then one more post on its channel
    // reaches it, numbered past what the proxy dropped for it. (A gap shows with the next
    // publication of its topic.)
    let mut c = cluster.connection();
    c.login(&name("late")).unwrap();
    for (i, s) in stalled.iter().enumerate() {
        let mut seqs = Vec::new();
        let read = |seqs: &mut Vec<u64>, wait_ms: i64| {
            while s.poll(zmq::POLLIN, wait_ms).unwrap() > 0 {
                let frames = s.recv_multipart(0).unwrap();
                seqs.push(palaver_proto::stamped_seq(&frames[1]).expect("numbered"));
            }
        };
        read(&mut seqs, 300);
        let held = seqs.len();
        c.publish(
            &name("late"),
            &name(&format!("fanout-room-{i}")),
            "one more",
        )
        .unwrap();
        read(&mut seqs, 2_000);
        let skipped: u64 = seqs.windows(2).map(|w| w[1].saturating_sub(w[0] + 1)).sum();
        eprintln!(
            "stalled subscriber {i}: held {held}, skipped {skipped}, last {:?}",
            seqs.last()
        );
        assert!(
            held > 0 && seqs.len() == held + 1,
            "{i}: {held} then {}",
            seqs.len()
        );
        assert!(skipped > 0, "stalled subscriber {i} saw no gap");
        assert!(seqs.last() > Some(&2_800), "{i} reads on to the newest");
    }
    // Once they leave, the proxy gives the memory back.
    drop(stalled);
    let back = wait_until(Duration::from_secs(15), || rss(pid) < peak / 2);
    assert!(
        back,
        "the proxy kept {} MB of a {} MB peak",
        rss(pid) >> 20,
        peak >> 20
    );
}

/// The client core's subscriber, told by the proxy's numbers that it missed two posts of a
/// room, reads them from `history` and hands out all five in order, each once. (The numbers
/// come from a stand-in for the proxy, so that exactly these two go missing.)
#[test]
fn a_subscriber_fills_a_gap_in_the_numbers_from_history_in_order() {
    let cluster = Cluster::start(&bin(), 3);
    let mut c = cluster.connection();
    c.login(&name("ana")).unwrap();
    c.create_channel(&name("general")).unwrap();
    for i in 1..=5 {
        c.publish(&name("ana"), &name("general"), &format!("p{i}"))
            .unwrap();
    }
    let of = palaver_proto::Conversation::Channel(name("general"));
    let events = common::store(&cluster.data_dir(0))
        .whole_history(&of)
        .unwrap();
    let posts: Vec<_> = events
        .iter()
        .filter_map(palaver_proto::Publication::of_event)
        .collect();
    assert_eq!(posts.len(), 5);

    let ctx = zmq::Context::new();
    let proxy = ctx.socket(zmq::XPUB).unwrap();
    proxy.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = proxy.get_last_endpoint().unwrap().unwrap();
    let mut sub = palaver_client::Subscriber::open(&ctx, &endpoint, Default::default()).unwrap();
    sub.subscribe("general").unwrap();
    sub.repair_with(cluster.connection()).unwrap();
    // The subscription has reached the stand-in.
    assert!(proxy.poll(zmq::POLLIN, 5_000).unwrap() > 0);
    proxy.recv_bytes(0).unwrap();
    let send = |p: &palaver_proto::Publication, seq: u64| {
        let body = palaver_proto::stamp(&p.envelope.to_bytes(), seq).unwrap();
        proxy
            .send_multipart([p.topic.as_bytes(), &body[..]], 0)
            .unwrap();
    };
    send(&posts[0], 1);
    send(&posts[1], 2);
    send(&posts[4], 5);
    let mut texts = Vec::new();
    while let Some(r) = sub.recv_timeout(Duration::from_secs(2)).unwrap() {
        texts.push(
            r.publication
                .envelope
                .data
                .str("message")
                .unwrap()
                .to_owned(),
        );
        if texts.len() == 5 {
            break;
        }
    }
    assert_eq!(texts, ["p1", "p2", "p3", "p4", "p5"]);
    assert_eq!(sub.missed(), 2);
    assert!(
        sub.recv_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none(),
        "each once"
    );
}
