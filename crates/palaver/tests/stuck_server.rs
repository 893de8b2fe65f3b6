//! A stuck or dead server costs clients nothing: the broker stops sending to a server within a
//! second of it going silent and sends what it held to another server, so even a standard REQ
//! client with no retries is answered, and nothing is stored twice when the server comes back.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bin, history, name, Cluster};
use palaver_proto::{Conversation, Envelope, Reply, Status};
use palaver_testkit::wait_until;

/// Requests, and the time between two: 300 over about ten seconds.
const REQUESTS: usize = 300;
const PACE: Duration = Duration::from_millis(30);
/// How long a standard client waits for each answer.
const POLL: Duration = Duration::from_secs(3);

/// What a standard client does: one REQ socket, one request at a time, no request id, no
/// retries; each answer awaited for [`POLL`]. Returns the requests that were not answered OK
/// (a REQ socket that timed out is replaced, as such a client would have to).
fn standard_client(broker: &str, during: impl Fn(usize)) -> Vec<String> {
    let ctx = zmq::Context::new();
    let open = || {
        let s = ctx.socket(zmq::REQ).unwrap();
        s.set_linger(0).unwrap();
        s.connect(broker).unwrap();
        s
    };
    let mut req = open();
    let mut failures = Vec::new();
    let start = Instant::now();
    for i in 0..REQUESTS {
        during(i);
        // Paced, so that the requests span the whole fault.
        let due = start + PACE * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let mut env = Envelope::new("publish")
            .with("user", "w0")
            .with("channel", "general")
            .with("message", format!("m{i}"));
        env.stamp(palaver_proto::now_secs(), 0);
        req.send(env.to_bytes(), 0).unwrap();
        if req.poll(zmq::POLLIN, POLL.as_millis() as i64).unwrap() == 0 {
            failures.push(format!("m{i}: no answer within {POLL:?}"));
            req = open();
            continue;
        }
        let reply = Envelope::decode(&req.recv_bytes(0).unwrap()).unwrap();
        if Reply::status(&reply) != Status::Success {
            failures.push(format!("m{i}: {:?}", Reply::error_text(&reply)));
        }
    }
    failures
}

/// Every server shows each of the posts exactly once.
fn each_post_once_everywhere(cluster: &Cluster) -> Result<(), String> {
    let general = Conversation::Channel(name("general"));
    for i in 0..3 {
        let h = history(cluster, i, &general);
        for k in 0..REQUESTS {
            let n = h.iter().filter(|m| **m == format!("m{k}")).count();
            if n != 1 {
                return Err(format!("server {i} shows m{k} {n} times"));
            }
        }
        if h.len() != REQUESTS {
            return Err(format!("server {i} shows {} posts", h.len()));
        }
    }
    Ok(())
}

fn settles(cluster: &Cluster) {
    let mut last = Ok(());
    let ok = wait_until(Duration::from_secs(20), || {
        last = each_post_once_everywhere(cluster);
        last.is_ok()
    });
    assert!(ok, "the servers do not settle: {last:?}");
    let (passed, text) = common::admin_verify(cluster);
    assert!(passed, "verify: {text}");
}

#[test]
fn a_stopped_server_holds_no_request_and_stores_nothing_twice() {
    let mut cluster = Cluster::start(&bin(), 3);
    common::writers(&cluster, "general", 1);
    let stopped = 1;
    cluster.server(stopped).unwrap().signal(libc::SIGSTOP);
    let t0 = Instant::now();
    let failures = standard_client(&cluster.broker_endpoint(), |_| {});
    // Stopped for ten seconds in all, then it goes on with whatever it had taken.
    std::thread::sleep((t0 + Duration::from_secs(10)).saturating_duration_since(Instant::now()));
    cluster.server(stopped).unwrap().signal(libc::SIGCONT);
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} unanswered: {failures:?}",
        failures.len()
    );
    let log = cluster.broker().log();
    assert!(
        log.contains("went silent"),
        "the broker says it lost the server:\n{log}"
    );
    settles(&cluster);
}

#[test]
fn a_killed_and_restarted_server_holds_no_request() {
    let mut cluster = Cluster::start(&bin(), 3);
    common::writers(&cluster, "general", 1);
    let victim = 2;
    let broker = cluster.broker_endpoint();
    let cluster_ref = std::sync::Mutex::new(&mut cluster);
    let failures = standard_client(&broker, |i| {
        let mut c = cluster_ref.lock().unwrap();
        if i == 30 {
            c.kill_server(victim);
        }
        if i == 200 {
            c.start_server(victim);
        }
    });
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} unanswered: {failures:?}",
        failures.len()
    );
    settles(&cluster);
}

/// How long `palaver <args…>` takes against the cluster, with `input` on stdin; it must succeed.
fn timed(cluster: &Cluster, args: &[&str], input: &str) -> Duration {
    let start = Instant::now();
    let mut child = common::command(cluster, args[0], &args[1..])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "palaver {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

#[test]
fn the_front_ends_do_not_wait_on_a_stopped_server() {
    let mut cluster = Cluster::start(&bin(), 3);
    common::writers(&cluster, "general", 1);
    // Twenty commands, the way a script pipes them in.
    let script: String = std::iter::once("/join general\n".to_owned())
        .chain((0..18).map(|i| format!("line {i}\n")))
        .chain(std::iter::once("/users\n".to_owned()))
        .collect();
    let client = ["client", "--user", "w0"];
    let bot = [
        "bot",
        "--name",
        "robo",
        "--interval-ms",
        "1",
        "--count",
        "20",
    ];
    let normal = (timed(&cluster, &client, &script), timed(&cluster, &bot, ""));
    cluster.server(1).unwrap().signal(libc::SIGSTOP);
    let stuck = (timed(&cluster, &client, &script), timed(&cluster, &bot, ""));
    cluster.server(1).unwrap().signal(libc::SIGCONT);
    let slack = Duration::from_secs(3);
    assert!(
        stuck.0 <= normal.0 + slack,
        "the client took {:?} with a server stopped, {:?} normally",
        stuck.0,
        normal.0
    );
    assert!(
        stuck.1 <= normal.1 + slack,
        "the bot took {:?} with a server stopped, {:?} normally",
        stuck.1,
        normal.1
    );
}
