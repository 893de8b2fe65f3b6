//! Waiting on many ZeroMQ sockets at once, woken only by those that have something.
//!
//! `zmq::poll` asks every socket for its events on each call (one system call each): with a
//! hundred sockets a thread and thousands of wake-ups a second, the load generator spent more
//! on polls than the system it measures spent on TCP. An epoll set of the sockets' signal
//! descriptors (`ZMQ_FD`) costs only for the sockets signalled. The descriptor signals edges:
//! after a wake-up, or after sending on a socket, read it until `ZMQ_EVENTS` has no `POLLIN`.

/// An epoll set of sockets' signal descriptors (`ZMQ_FD`), each registered with its index.
pub(crate) struct Ready {
    fd: std::os::fd::OwnedFd,
}

impl Ready {
    pub(crate) fn new<'a>(sockets: impl Iterator<Item = &'a zmq::Socket>) -> anyhow::Result<Ready> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `fd` was just made and is owned by nothing else.
        let ready = Ready {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        };
        for (i, socket) in sockets.enumerate() {
            let mut event = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            let signal = socket.get_fd()?;
            // SAFETY: both descriptors are open; `event` outlives the call.
            let r = unsafe {
                libc::epoll_ctl(
                    std::os::fd::AsRawFd::as_raw_fd(&ready.fd),
                    libc::EPOLL_CTL_ADD,
                    signal,
                    &mut event,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
        Ok(ready)
    }

    /// The indices of the sockets signalled within `timeout_ms` (none on a timeout).
    pub(crate) fn wait(&self, timeout_ms: i32) -> anyhow::Result<Vec<usize>> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 128];
        // SAFETY: the buffer holds as many events as it says.
        let n = unsafe {
            libc::epoll_wait(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::Interrupted => Ok(Vec::new()),
                _ => Err(e.into()),
            };
        }
        Ok(events[..n as usize]
            .iter()
            .map(|e| e.u64 as usize)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_wakes_the_socket_it_is_for() {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let dealers: Vec<zmq::Socket> = (0..3)
            .map(|_| {
                let d = ctx.socket(zmq::DEALER).unwrap();
                d.connect(&endpoint).unwrap();
                d
            })
            .collect();
        let ready = Ready::new(dealers.iter()).unwrap();
        for round in 0..20 {
            let d = &dealers[round % 3];
            d.send("ping", 0).unwrap();
            // As the senders do: read it once right after sending.
            assert!(!d.get_events().unwrap().contains(zmq::POLLIN));
            let frames = router.recv_multipart(0).unwrap();
            router.send_multipart([&frames[0][..], b"pong"], 0).unwrap();
            let mut woken = Vec::new();
            for _ in 0..50 {
                woken.extend(ready.wait(100).unwrap());
                if woken.contains(&(round % 3)) {
                    break;
                }
            }
            assert!(woken.contains(&(round % 3)), "round {round}: {woken:?}");
            while d.get_events().unwrap().contains(zmq::POLLIN) {
                while d.recv_bytes(zmq::DONTWAIT).is_ok() {}
            }
        }
    }
}
