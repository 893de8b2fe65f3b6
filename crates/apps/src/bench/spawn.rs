//! `palaver bench --spawn`: a throw-away local cluster (`palaver up` on a free port layout,
//! data in a fresh temporary directory) for the length of one run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use palaver_supervise::{Child, Layout, Output};

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
    /// Starts `servers` servers with broker, proxy and reference, and waits until `palaver up`
    /// says every one of them serves.
    ///
    /// # Errors
    /// When no free ports are found or the cluster does not come up in time.
    pub fn start(servers: usize) -> anyhow::Result<Spawned> {
        let layout = Layout::free(servers.max(1))?;
        let dir = std::env::temp_dir().join(format!(
            "palaver-bench-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let exe = std::env::current_exe().context("cannot find the palaver binary")?;
        let args: Vec<String> = [
            "up",
            "--servers",
            &layout.servers.to_string(),
            "--base-port",
            &layout.base.to_string(),
            "--data",
            &dir.join("data").display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let log = dir.join("cluster.log");
        let mut child = Child::start(
            "cluster",
            &exe,
            &args,
            &[("RUST_LOG", "info")],
            Output::File(log.clone()),
        )
        .context("cannot start the cluster")?;
        if let Err(e) = child.await_ready(START_TIMEOUT) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            drop(child);
            let _ = std::fs::remove_dir_all(&dir);
            anyhow::bail!("the cluster did not start ({e}); its log:\n{text}");
        }
        Ok(Spawned {
            child,
            dir,
            broker: layout.broker(),
            sub: layout.proxy_xpub(),
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.child.stop(STOP_TIMEOUT);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
