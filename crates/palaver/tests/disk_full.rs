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

impl Tmpfs {
    /// Gives the file system `mb` megabytes.
    fn grow(&self, mb: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot grow the tmpfs at {}", self.0.display());
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

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Posts as fast as `workers` clients can for `secs` seconds (each post answered before the
/// next), and returns the answers' latencies, longest first.
fn load(broker: &str, workers: usize, secs: u64, tag: &str) -> Vec<Duration> {
    let until = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (broker, tag) = (broker.to_owned(), tag.to_owned());
            std::thread::spawn(move || {
                let mut c = common::client(&broker);
                let me = name(&format!("w{w}"));
                let mut took = Vec::new();
                let mut n = 0;
                while Instant::now() < until {
                    let asked = Instant::now();
                    c.publish(
                        &me,
                        &name("general"),
                        &format!("{tag} {w}-{n} {}", "z".repeat(1000)),
                    )
                    .unwrap_or_else(|e| panic!("w{w} {tag} post {n}: {e}"));
                    took.push(asked.elapsed());
                    n += 1;
                }
                took
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    all
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
    // s3 restarts on an empty 64 MB tmpfs and catches up there.
    cluster.kill_server(2);
    let data = cluster.data_dir(2);
    let tmpfs = Tmpfs::mount(&data, 64);
    // How long the disk stays full under load (PALAVER_DISK_FULL_SECS).
    let full_secs: u64 = std::env::var("PALAVER_DISK_FULL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
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

    // The disk stays full while the others take writes at full speed: s3 keeps what it
    // cannot store out of memory (it grew with the cluster's writes, without a ceiling).
    let pid = cluster.server(2).expect("s3 runs").pid();
    let before = rss_mib(pid);
    let sampler = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(full_secs);
        let mut peak: f64 = 0.0;
        while Instant::now() < until {
            peak = peak.max(rss_mib(pid));
            std::thread::sleep(Duration::from_millis(200));
        }
        peak
    });
    let during = load(&broker, 4, full_secs, "full");
    let peak = sampler.join().unwrap();
    eprintln!(
        "s3 resident: {before:.1} MiB when full, at most {peak:.1} MiB over {full_secs} s while the others took {} posts",
        during.len()
    );
    assert!(
        peak - before < 8.0,
        "s3 grew from {before:.1} to {peak:.1} MiB while its disk was full"
    );

    // Space returns while clients keep writing (the disk grows, with room for all that the
    // others wrote meanwhile, about 2 MB a second, and the ballast goes): s3 writes again,
    // catches up, takes clients again once caught up (so none waits behind its backlog) and
    // holds everything.
    tmpfs.grow(256 + 8 * u32::try_from(full_secs).unwrap_or(600));
    std::fs::remove_file(&ballast).unwrap();
    let after = {
        let broker = broker.clone();
        std::thread::spawn(move || load(&broker, 4, 10, "back"))
    };
    let back = wait_until(Duration::from_secs(20), || {
        log_lines(&cluster, "s3", "commits work again") >= 1
    });
    assert!(back, "s3 never found it could write again");
    let vectors = |cluster: &Cluster| -> Vec<Vec<(String, u64)>> {
        (0..3)
            .map(|i| common::store(&cluster.data_dir(i)).vector().unwrap())
            .collect()
    };
    // The backlog grows with the outage: s3 fetches it page by page (about 1,500 events a
    // second per origin on two loaded cores).
    let fetching = Instant::now();
    let same = wait_until(Duration::from_secs(20 + full_secs / 2), || {
        let v = vectors(&cluster);
        v[0] == v[1] && v[1] == v[2]
    });
    assert!(same, "s3 did not catch up: {:?}", vectors(&cluster));
    eprintln!("s3 caught up in {:?}", fetching.elapsed());
    let after = after.join().unwrap();
    eprintln!(
        "while s3 came back: {} posts, the slowest answered in {:?}",
        after.len(),
        after[0]
    );
    assert!(
        after[0] < Duration::from_secs(1),
        "a request waited {:?} while s3 came back",
        after[0]
    );
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
