//! `palaver bench --spawn`: a throw-away local cluster (`palaver up` on free ports, data in a
//! fresh temporary directory) for the length of one run.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;

/// How long a fresh cluster may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running cluster; stopped and its data removed when dropped.
pub(crate) struct Spawned {
    child: Child,
    dir: PathBuf,
    pub broker: String,
    pub sub: String,
}

impl Spawned {
    /// Starts `servers` servers with broker, proxy and reference, and waits until every
    /// server takes client requests.
    ///
    /// # Errors
    /// When no free ports are found or the cluster does not come up in time.
    pub fn start(servers: usize) -> anyhow::Result<Spawned> {
        let servers = servers.max(1);
        let base = free_base(servers)?;
        let dir = std::env::temp_dir().join(format!(
            "palaver-bench-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log = dir.join("cluster.log");
        let out = std::fs::File::create(&log)?;
        let exe = std::env::current_exe().context("cannot find the palaver binary")?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "up",
            "--servers",
            &servers.to_string(),
            "--base-port",
            &base.to_string(),
        ])
        .arg("--data")
        .arg(dir.join("data"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
        // SAFETY: prctl is async-signal-safe; it makes the cluster die with this process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().context("cannot start the cluster")?;
        let spawned = Spawned {
            child,
            dir,
            broker: format!("tcp://127.0.0.1:{base}"),
            sub: format!("tcp://127.0.0.1:{}", base + 3),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches("accepting client requests").count() >= servers {
                return Ok(spawned);
            }
            if Instant::now() > deadline {
                bail!("the cluster did not start in time; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A base port whose cluster ports (`palaver up`'s layout: base to base+5, and base+11 on for
/// the servers) are all free.
fn free_base(servers: usize) -> anyhow::Result<u16> {
    let mut rng = rand::thread_rng();
    for _ in 0..100 {
        let base: u16 = rng.gen_range(20_000..60_000);
        let ports = (0..=5).chain((11..).take(servers)).map(|o| base + o);
        let free = ports
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if free {
            return Ok(base);
        }
    }
    bail!("no free ports for a local cluster")
}
