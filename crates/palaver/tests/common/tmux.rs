//! Programs in a pseudo-terminal: a tmux server of the test's own, one session per program.

use std::process::Command;
use std::time::Duration;

use palaver_testkit::wait_until;

/// A tmux server of the test's own, killed (with every pane's process) when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new(prefix: &str) -> Tmux {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Tmux {
            socket: format!("{prefix}-{}-{nanos}", std::process::id()),
        }
    }

    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the shell command `cmd` in a session named `session`, 120 × 32, with `env` set.
    pub fn start(&self, session: &str, cmd: &str, env: &[(String, String)]) {
        let mut args = vec![
            "new-session".to_string(),
            "-d".into(),
            "-s".into(),
            session.into(),
            "-x".into(),
            "120".into(),
            "-y".into(),
            "32".into(),
            "-e".into(),
            "TERM=xterm-256color".into(),
        ];
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(cmd.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tmux(&args);
    }

    pub fn screen(&self, session: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", session])
    }

    pub fn type_line(&self, session: &str, text: &str) {
        self.tmux(&["send-keys", "-t", session, "-l", text]);
        self.tmux(&["send-keys", "-t", session, "Enter"]);
    }

    /// Waits until `session`'s screen shows `want`; panics with the screen otherwise.
    pub fn expect(&self, session: &str, want: &str) {
        let shown = wait_until(Duration::from_secs(30), || {
            self.screen(session).contains(want)
        });
        assert!(
            shown,
            "{session}'s screen never showed {want:?}:\n{}",
            self.screen(session)
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}
