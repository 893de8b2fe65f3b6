use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palaver_supervise::{Child, Output};

/// A child process whose output goes to a log file, started by the project's one supervisor
/// (`palaver_supervise`). Dropping it kills the process.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `bin args…`, stdout and stderr appended to `log`.
    ///
    /// # Panics
    /// When the process cannot be started: the test cannot go on.
    pub fn spawn(name: &str, bin: &Path, args: &[String], log: &Path) -> Proc {
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let child = Child::start(
            name,
            bin,
            args,
            &[("RUST_LOG", &level)],
            Output::File(log.to_owned()),
        )
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.exited().is_some()
    }

    /// Waits until the process says it is ready (a line on its readiness pipe), or exits, or
    /// `timeout` passes. Returns whether it is ready.
    pub fn await_ready(&mut self, timeout: Duration) -> bool {
        self.child.await_ready(timeout).is_ok()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: libc::c_int) {
        self.child.signal(sig);
    }

    /// `kill -9`, and reap.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, then waits up to `grace` for a clean exit. Returns whether it exited in time
    /// with status 0; kills it otherwise.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.child.stop(grace)
    }

    /// Waits until the log holds `needle`, or the process exits, or `timeout` passes.
    /// Returns whether the needle was found. (For what a test wants to see logged; readiness
    /// is [`Proc::await_ready`].)
    pub fn await_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let mut found = false;
        wait_until(timeout, || {
            found = self.log().contains(needle);
            found || self.exited()
        });
        found
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ----", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Checks `cond` every few milliseconds until it holds or `timeout` passes; returns whether it
/// held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
