//! Whether a socket's connection came back after it was lost, read from the socket's monitor.
//! What a SUB socket missed lies between the two: a subscriber fills the gap from `history`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Tells the monitors of one process apart (inproc endpoints are per context, and a socket's
/// address is no name: sockets move, and a freed one's address is reused).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A socket's monitor, reduced to "lost" and "back".
pub struct Reconnects {
    monitor: zmq::Socket,
    disconnected: bool,
}

impl Reconnects {
    /// Watches `socket`, made on `ctx`, for its connection dropping and coming back.
    ///
    /// # Errors
    /// When the monitor cannot be set up.
    pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket) -> zmq::Result<Reconnects> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let endpoint = format!("inproc://palaver-monitor-{}-{n}", std::process::id());
        let events = zmq::SocketEvent::CONNECTED.to_raw() | zmq::SocketEvent::DISCONNECTED.to_raw();
        socket.monitor(&endpoint, i32::from(events))?;
        // On the socket's own context: the monitor is an inproc endpoint.
        let monitor = ctx.socket(zmq::PAIR)?;
        monitor.connect(&endpoint)?;
        Ok(Reconnects {
            monitor,
            disconnected: false,
        })
    }

    /// For `zmq::poll`: readable when the monitor has something to say.
    pub fn as_poll_item(&self) -> zmq::PollItem<'_> {
        self.monitor.as_poll_item(zmq::POLLIN)
    }

    /// Reads what the monitor said so far: whether the connection came back after it was lost.
    pub fn came_back(&mut self) -> bool {
        let mut back = false;
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let event = frames
                .first()
                .and_then(|f| f.get(..2))
                .map(|b| u16::from_le_bytes([b[0], b[1]]));
            match event {
                Some(e) if e == zmq::SocketEvent::DISCONNECTED.to_raw() => self.disconnected = true,
                Some(e) if e == zmq::SocketEvent::CONNECTED.to_raw() && self.disconnected => {
                    self.disconnected = false;
                    back = true;
                }
                _ => {}
            }
        }
        back
    }
}
