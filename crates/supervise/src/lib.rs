//! One way to run Palaver's processes, for `palaver up`, `palaver bench --spawn` and the tests:
//! start a child, know when it is ready from a real signal, stop it within a deadline, and
//! never leave it behind.
//!
//! ```text
//!  parent: Child::start ──pipe──▶ child (fd 3, PALAVER_READY_FD=3)
//!  child:  binds, catches up… ──notify_ready()──▶ "ready\n" on fd 3
//!  parent: await_ready(deadline) ◀── the line, or EOF if the child died first
//!  parent: stop(grace): SIGTERM, wait, SIGKILL   drop: SIGKILL and reap
//! ```
//!
//! The child also gets `PR_SET_PDEATHSIG`, so it dies with the thread that started it even
//! when the parent is killed outright. [`Layout`] is where every process of a cluster listens.

use std::io::{BufRead, BufReader, PipeReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod layout;

pub use layout::Layout;

/// The variable that tells a child which file descriptor to say "ready" on.
pub const READY_FD_ENV: &str = "PALAVER_READY_FD";

/// The descriptor the child finds the pipe on.
const READY_FD: i32 = 3;

/// Says "ready" to the supervisor that started this process, if one did; later calls do
/// nothing. A process calls it once it serves: its sockets are bound, and for a server, it has
/// caught up with its peers and joined the broker.
pub fn notify_ready() {
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // Said once. (A child of ours gets a pipe of its own from [`Child::start`], which sets
    // the variable afresh.)
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SAID.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let line = b"ready\n";
    // SAFETY: writing a few bytes to, then closing, the descriptor our supervisor gave us
    // for exactly this; nothing else in the process uses it.
    unsafe {
        libc::write(fd, line.as_ptr().cast(), line.len());
        libc::close(fd);
    }
}

/// Where a child's output goes.
pub enum Output {
    /// Appended to this file (stdout and stderr both).
    File(std::path::PathBuf),
    /// Piped: take them with [`Child::take_output`].
    Piped,
    /// Dropped.
    Null,
}

/// Why a child is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// It exited (or closed the pipe) before saying so.
    Exited,
    /// It said nothing within the deadline.
    Timeout(Duration),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited => f.write_str("it exited before it was ready"),
            NotReady::Timeout(d) => write!(f, "it was not ready within {d:?}"),
        }
    }
}

/// A child process. Dropping it kills it.
pub struct Child {
    name: String,
    child: std::process::Child,
    /// The readiness line, from a thread that reads the pipe.
    ready: Option<mpsc::Receiver<bool>>,
    is_ready: bool,
}

impl Child {
    /// Starts `exe args…` named `name`, with `env` added, its output to `output`, and a pipe to
    /// say "ready" on.
    ///
    /// # Errors
    /// When the pipe, the output file or the process cannot be made.
    pub fn start(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(&str, &str)],
        output: Output,
    ) -> std::io::Result<Child> {
        let (reader, writer) = std::io::pipe()?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .env(READY_FD_ENV, READY_FD.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        match output {
            Output::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                cmd.stdout(file.try_clone()?).stderr(file);
            }
            Output::Piped => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Output::Null => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let fd = writer.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec: prctl, dup2, fcntl.
        unsafe {
            cmd.pre_exec(move || {
                // The child dies with the thread that started it: no process outlives its
                // supervisor, even one killed with SIGKILL.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if fd == READY_FD {
                    // Already in place: keep it open across exec.
                    libc::fcntl(fd, libc::F_SETFD, 0);
                } else if libc::dup2(fd, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // Our copy of the writing end goes, so the reader sees the end when the child does.
        drop(writer);
        Ok(Child {
            name: name.to_owned(),
            child,
            ready: Some(watch(reader)),
            is_ready: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its piped stdout and stderr (once), when started with [`Output::Piped`].
    pub fn take_output(
        &mut self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// Waits until the child says it is ready, it exits, or `timeout` passes.
    ///
    /// # Errors
    /// [`NotReady`] says which of the last two happened.
    pub fn await_ready(&mut self, timeout: Duration) -> Result<(), NotReady> {
        if self.is_ready {
            return Ok(());
        }
        let Some(rx) = &self.ready else {
            return Err(NotReady::Exited);
        };
        match rx.recv_timeout(timeout) {
            Ok(true) => {
                self.is_ready = true;
                self.ready = None;
                Ok(())
            }
            Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.ready = None;
                Err(NotReady::Exited)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(NotReady::Timeout(timeout)),
        }
    }

    /// Whether the child has said it is ready (without waiting).
    pub fn is_ready(&mut self) -> bool {
        self.await_ready(Duration::ZERO).is_ok()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signalling our own child has no memory-safety requirements.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// SIGTERM, then up to `grace` for it to exit; SIGKILL after that. Returns whether it
    /// exited in time with status 0.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let end = Instant::now() + grace;
        loop {
            if let Some(status) = self.exited() {
                return status.success();
            }
            if Instant::now() >= end {
                self.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the readiness pipe on a thread of its own: `true` for the line, `false` for the end.
fn watch(reader: PipeReader) -> mpsc::Receiver<bool> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let said = BufReader::new(reader)
            .read_line(&mut line)
            .is_ok_and(|_| line.trim() == "ready");
        let _ = tx.send(said);
    });
    rx
}

/// Stops `children` together: SIGTERM to all, then waits for each until one shared deadline,
/// and kills whatever is left. Returns the names of those that had to be killed.
pub fn stop_all<'a>(
    children: impl IntoIterator<Item = &'a mut Child>,
    grace: Duration,
) -> Vec<String> {
    let mut children: Vec<&mut Child> = children.into_iter().collect();
    for c in &children {
        c.signal(libc::SIGTERM);
    }
    let end = Instant::now() + grace;
    let mut killed = Vec::new();
    for c in &mut children {
        while c.exited().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        if c.exited().is_none() {
            killed.push(c.name.clone());
        }
        c.kill();
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Child {
        Child::start(
            "sh",
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            &[],
            Output::Null,
        )
        .unwrap()
    }

    #[test]
    fn a_child_that_says_ready_is_ready() {
        let mut c = sh("sleep 0.1; echo ready >&3; sleep 30");
        assert_eq!(c.await_ready(Duration::from_secs(10)), Ok(()));
        assert!(c.is_ready());
        assert!(!c.stop(Duration::from_secs(5)) || c.exited().is_some());
    }

    #[test]
    fn a_child_that_dies_first_is_not_ready_and_we_know_at_once() {
        let mut c = sh("exit 3");
        let start = Instant::now();
        assert_eq!(
            c.await_ready(Duration::from_secs(30)),
            Err(NotReady::Exited)
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_silent_child_times_out_and_is_killed_on_stop() {
        let mut c = sh("trap '' TERM; sleep 30");
        assert_eq!(
            c.await_ready(Duration::from_millis(200)),
            Err(NotReady::Timeout(Duration::from_millis(200)))
        );
        // It ignores SIGTERM: killed at the deadline.
        assert!(!c.stop(Duration::from_millis(300)));
        assert!(c.exited().is_some());
    }

    #[test]
    fn the_ready_variable_names_the_pipe() {
        let mut c = sh("[ \"$PALAVER_READY_FD\" = 3 ] && echo ready >&3");
        assert_eq!(c.await_ready(Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn stop_all_stops_everyone_within_one_deadline() {
        let mut a = sh("sleep 30");
        // Ready once it ignores SIGTERM.
        let mut b = sh("trap '' TERM; echo ready >&3; sleep 30");
        b.await_ready(Duration::from_secs(10)).unwrap();
        let start = Instant::now();
        let killed = stop_all([&mut a, &mut b], Duration::from_millis(500));
        assert_eq!(killed, ["sh"]);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(a.exited().is_some() && b.exited().is_some());
    }
}
