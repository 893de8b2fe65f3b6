//! A server whose disk is full steps aside: it leaves the broker's rotation, the others take
//! the writes, it logs at most a line a second, and once space returns it catches up by itself.
//! Before, it stayed in the rotation, answered a third of the writes with `erro`, served stale
//! history and logged ~80,000 lines a second.
//!
//! The full disk is a real one: a small tmpfs mounted over the server's data directory (this
//! test needs root, as the suite has on its machines).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, name, Cluster};
use palaver_testkit::wait_until;

/// A tmpfs of `mb` megabytes mounted at a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mb: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot mount a tmpfs at {} (this test needs root)",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `file` until it refuses another byte.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

fn log_lines(cluster: &Cluster, server: &str, needle: &str) -> usize {
    std::fs::read_to_string(cluster.dir().join(format!("{server}.log")))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[test]
fn a_server_with_a_full_disk_steps_aside_and_catches_up_when_space_returns() {
    let mut cluster = Cluster::start(&bin(), 3);
    common::writers(&cluster, "general", 4);
    // s3 restarts on an empty 16 MB tmpfs and catches up there.
    cluster.kill_server(2);
    let data = cluster.data_dir(2);
    let _tmpfs = Tmpfs::mount(&data, 16);
    cluster.start_server(2);
    let ballast = data.join("ballast");

    let started = Instant::now();
    let broker = cluster.broker_endpoint();
    let text = "y".repeat(2_000);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (broker, text) = (broker.clone(), text.clone());
            std::thread::spawn(move || {
                let mut c = common::client(&broker);
                let mut refused = 0;
                for n in 0..400 {
                    let me = name(&format!("w{w}"));
                    let body = format!("{text} {w}-{n}");
                    // A person whose post is refused sends it again; it must then go through.
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        match c.publish(&me, &name("general"), &body) {
                            Ok(()) => break,
                            Err(e) if attempts < 3 => {
                                refused += 1;
                                eprintln!("w{w} post {n} refused once: {e}");
                            }
                            Err(e) => panic!("w{w} post {n} failed three times: {e}"),
                        }
                    }
                }
                refused
            })
        })
        .collect();
    // The disk fills while s3 takes writes: a batch of its own fails after it went to the
    // peers, and must be stored later under the same numbers, not refused and reused.
    let filled = wait_until(Duration::from_secs(10), || {
        common::counts(&data).kind("post") >= 100
    });
    assert!(filled, "s3 took writes before its disk filled");
    fill(&ballast);
    let refused: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let elapsed = started.elapsed();
    assert!(
        log_lines(&cluster, "s3", "out of the broker's rotation") >= 1,
        "s3 stepped aside"
    );
    let failure_lines = log_lines(&cluster, "s3", "commits still fail")
        + log_lines(&cluster, "s3", "commits fail:");
    assert!(
        failure_lines as u64 <= elapsed.as_secs() + 2,
        "{failure_lines} failure lines in {elapsed:?}"
    );
    eprintln!("{refused} refusals; 1,600 posts in {elapsed:?}; {failure_lines} failure log lines");
    assert!(
        refused <= 64,
        "s3 kept taking writes it could not store: {refused} refusals"
    );

    // Space returns: s3 writes again, takes clients again and holds everything.
    std::fs::remove_file(&ballast).unwrap();
    let back = wait_until(Duration::from_secs(20), || {
        log_lines(&cluster, "s3", "commits work again") >= 1
    });
    assert!(back, "s3 never found it could write again");
    let vectors = |cluster: &Cluster| -> Vec<Vec<(String, u64)>> {
        (0..3)
            .map(|i| common::store(&cluster.data_dir(i)).vector().unwrap())
            .collect()
    };
    let same = wait_until(Duration::from_secs(20), || {
        let v = vectors(&cluster);
        v[0] == v[1] && v[1] == v[2]
    });
    assert!(same, "s3 did not catch up: {:?}", vectors(&cluster));
    assert!(common::counts(&cluster.data_dir(2)).kind("post") >= 1_600);
    let rejoined = wait_until(Duration::from_secs(10), || {
        log_lines(&cluster, "s3", "accepting client requests") >= 3
    });
    assert!(rejoined, "s3 takes clients again");
    let (verified, said) = common::admin_verify(&cluster);
    assert!(verified, "admin verify: {said}");
    let log = std::fs::read_to_string(cluster.dir().join("s3.log")).unwrap_or_default();
    for line in log.lines().filter(|l| {
        ["commit", "rotation", "accepting"]
            .iter()
            .any(|w| l.contains(w))
    }) {
        eprintln!("s3 | {line}");
    }
    // Stop s3 before its file system goes away.
    cluster.kill_server(2);
}
