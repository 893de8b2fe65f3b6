use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process whose output goes to a log file. Dropping it kills the process.
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
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file);
        // SAFETY: prctl is async-signal-safe. The child gets SIGKILL when the thread that
        // started it ends, so no process outlives its test.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signalling our own child has no memory-safety requirements.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// `kill -9`, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `grace` for a clean exit. Returns whether it exited in time
    /// with status 0; kills it otherwise.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let exited = wait_until(grace, || self.exited());
        let ok = exited && self.child.wait().map(|s| s.success()).unwrap_or(false);
        self.kill();
        ok
    }

    /// Waits until the log holds `needle`, or the process exits, or `timeout` passes.
    /// Returns whether the needle was found.
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
