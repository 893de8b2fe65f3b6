//! Presence: a thread that tells the cluster a person's client is alive, as often as the
//! server asks (its `beat` answer says), and that it is leaving when stopped.
//!
//! ```text
//!  Heartbeat ──beat {user, device, token}──▶ broker ──▶ a server ──▶ every server's Presence
//!      └── on drop: beat {leaving: true} (offline at once, not after the timeout)
//! ```

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use palaver_proto::Name;

use crate::{Connection, SharedClock};

/// How often to beat until a server says otherwise.
const FIRST_EVERY: Duration = Duration::from_secs(5);

/// A running heartbeat; dropping it says goodbye and stops the thread.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating for `user` on its own connection to `endpoint`, with `token` for an
    /// account.
    ///
    /// # Errors
    /// When the endpoint is malformed.
    pub fn start(
        ctx: &zmq::Context,
        endpoint: &str,
        clock: SharedClock,
        user: Name,
        token: Option<String>,
    ) -> Result<Heartbeat, crate::ClientError> {
        let mut conn =
            Connection::open(ctx, endpoint, clock)?.with_timeout(Duration::from_secs(2), 1);
        conn.set_token(token);
        let device = device_name();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let mut every = FIRST_EVERY;
                loop {
                    match conn.beat(&user, &device, false) {
                        Ok(secs) => {
                            every = Duration::from_secs_f64(secs.clamp(0.1, 60.0));
                        }
                        Err(e) => tracing::debug!(error = %e, "beat not answered"),
                    }
                    match stopped.recv_timeout(every) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                if let Err(e) = conn.beat(&user, &device, true) {
                    tracing::debug!(error = %e, "goodbye beat not answered");
                }
            })
            .map_err(|e| crate::ClientError::Refused(format!("cannot start the heartbeat: {e}")))?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A name for this client among the person's others: the host's process id and the time.
fn device_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}-{nanos:x}", std::process::id())
}
