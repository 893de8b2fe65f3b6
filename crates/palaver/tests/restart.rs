//! Everything a server acknowledged is still there after it restarts, and nothing it
//! acknowledged is lost when it is killed under load.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bin, name, Cluster};
use palaver_client::{Connection, SharedClock};

fn fill(c: &mut Connection) {
    c.login(&name("ana")).unwrap();
    c.login(&name("bob")).unwrap();
    c.create_channel(&name("general")).unwrap();
    c.publish(&name("ana"), &name("general"), "kept post")
        .unwrap();
    c.message(&name("ana"), &name("bob"), "kept message")
        .unwrap();
}

fn check(cluster: &Cluster) {
    let mut c = cluster.connection();
    assert_eq!(c.users().unwrap(), vec!["ana", "bob"]);
    assert_eq!(c.channels().unwrap(), vec!["general"]);
    let counts = common::counts(&cluster.data_dir(0));
    assert_eq!(
        (
            counts.kind("login"),
            counts.kind("channel"),
            counts.kind("post"),
            counts.kind("message")
        ),
        (2, 1, 1, 1)
    );
    assert!(common::store(&cluster.data_dir(0))
        .has_post("general", "kept post")
        .unwrap());
    // The restarted server goes on with new ids, not over the old ones.
    c.publish(&name("ana"), &name("general"), "after restart")
        .unwrap();
    assert_eq!(common::counts(&cluster.data_dir(0)).kind("post"), 2);
}

#[test]
fn a_clean_restart_keeps_everything() {
    let mut cluster = Cluster::start(&bin(), 1);
    fill(&mut cluster.connection());
    assert!(cluster.stop_server(0), "SIGTERM stops the server cleanly");
    cluster.start_server(0);
    check(&cluster);
}

#[test]
fn a_killed_server_keeps_everything_it_acknowledged() {
    let mut cluster = Cluster::start(&bin(), 1);
    fill(&mut cluster.connection());
    cluster.kill_server(0);
    cluster.start_server(0);
    check(&cluster);
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_post() {
    let mut cluster = Cluster::start(&bin(), 1);
    let mut setup = cluster.connection();
    setup.create_channel(&name("load")).unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = zmq::Context::new();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (acked, stop, ctx, broker) = (
                acked.clone(),
                stop.clone(),
                ctx.clone(),
                cluster.broker_endpoint(),
            );
            std::thread::spawn(move || {
                let me = name(&format!("writer{i}"));
                let mut c = Connection::open(&ctx, &broker, SharedClock::new())
                    .unwrap()
                    .with_timeout(Duration::from_millis(300), 1);
                c.login(&me).unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let text = format!("{me} #{n}");
                    if c.publish(&me, &name("load"), &text).is_ok() {
                        acked.lock().unwrap().insert(text);
                    }
                }
            })
        })
        .collect();
    let enough = palaver_testkit::wait_until(Duration::from_secs(30), || {
        acked.lock().unwrap().len() >= 2000
    });
    assert!(enough, "the writers made progress");
    cluster.kill_server(0);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    cluster.start_server(0);
    let store = common::store(&cluster.data_dir(0));
    let missing: Vec<&String> = acked
        .iter()
        .filter(|t| !store.has_post("load", t).unwrap())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged posts lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    assert!(store.counts().unwrap().kind("post") >= acked.len() as u64);
}
