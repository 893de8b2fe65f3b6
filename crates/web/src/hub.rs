//! The ZeroMQ side of the gateway: one thread owns the one DEALER to the broker and the one
//! SUB on the proxy that every browser session shares, and drives the [`Gateway`] core.
//!
//! ```text
//!  session tasks ──Command (channel + a byte on a socketpair to wake the poll)──▶ hub thread
//!  hub thread ──zmq::poll──▶ DEALER (requests, answers) · SUB (publications) · wake-up
//!                            · the SUB's monitor (the proxy link came back: repair the rooms)
//!  hub thread ──each turn, one batch per session──▶ its Inbox ──▶ its writer
//!                 (more than `queue` texts waiting: that session is too slow, and is dropped,
//!                  not waited for)
//! ```
//!
//! A text that goes to many sessions (a room's post) is one [`Text`] that they share, with a
//! memo of the front door's choosing (`M`) where what each session would make of it alike is
//! made once for all of them: the IRC front door parses it once and forms its lines once.
//! What one turn of the hub has for a session (a burst of posts) reaches it as one batch, so
//! that a busy room costs a wake-up per session per turn, not per post.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use axum::extract::ws::Utf8Bytes;
use palaver_client::reconnects::Reconnects;
use palaver_core::{LogGate, Shutdown};
use palaver_proto::{Publication, MAX_SOCKET_BYTES};

use crate::gateway::{Action, Gateway, Rate, Sid};

/// Why the gateway ended a session: a WebSocket close code and its reason.
pub type Ended = Arc<OnceLock<(u16, String)>>;

/// The close code for a browser that is dropped for what it did (too slow).
pub const POLICY: u16 = 1008;

/// At most this many frames are read from one socket per turn, so neither starves the other.
const BATCH: usize = 1024;
/// How long the poll waits at most, so that a shutdown is seen.
const IDLE: Duration = Duration::from_millis(200);

/// A text for the sessions it goes to, shared by all of them, with `M`, a memo (empty at
/// first) for what a front door makes of it once for all of them.
pub struct Text<M = ()>(Arc<(Utf8Bytes, M)>);

impl<M> Clone for Text<M> {
    fn clone(&self) -> Self {
        Text(self.0.clone())
    }
}

impl<M: Default> Text<M> {
    pub fn new(text: impl Into<Utf8Bytes>) -> Self {
        Text(Arc::new((text.into(), M::default())))
    }
}

impl<M> Text<M> {
    pub fn as_str(&self) -> &str {
        self.0 .0.as_str()
    }

    /// The text as a WebSocket frame's, without a copy.
    pub fn utf8(&self) -> Utf8Bytes {
        self.0 .0.clone()
    }

    /// The memo that every session given this text shares.
    pub fn memo(&self) -> &M {
        &self.0 .1
    }
}

/// Where a session's texts arrive, in batches, in the order the hub made them.
pub struct Inbox<M = ()> {
    batches: tokio::sync::mpsc::UnboundedReceiver<Vec<Text<M>>>,
    waiting: Arc<AtomicUsize>,
}

impl<M> Inbox<M> {
    /// The next batch; `None` once the hub ended the session or stopped.
    pub async fn recv(&mut self) -> Option<Vec<Text<M>>> {
        let batch = self.batches.recv().await?;
        self.waiting.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }

    /// A batch already there, if any.
    pub fn try_recv(&mut self) -> Option<Vec<Text<M>>> {
        let batch = self.batches.try_recv().ok()?;
        self.waiting.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }
}

/// The hub's side of a session's inbox.
struct Outbox<M> {
    batches: tokio::sync::mpsc::UnboundedSender<Vec<Text<M>>>,
    /// What this turn has for the session so far, sent at its end ([`Driver::send_turn`]).
    turn: Vec<Text<M>>,
    /// Texts sent and not yet taken by the session.
    waiting: Arc<AtomicUsize>,
    /// The most texts that may wait.
    most: usize,
    ended: Ended,
}

/// What a session asks of the hub.
enum Command<M> {
    Open {
        sid: Sid,
        outbox: Outbox<M>,
        hello: String,
        rated: bool,
    },
    Text {
        sid: Sid,
        text: String,
    },
    /// A text of the session layer's own (a refusal), for the browser, in its turn.
    Say {
        sid: Sid,
        text: String,
    },
    Close {
        sid: Sid,
    },
}

/// The sessions' handle on the hub, whose texts carry a memo `M`. Cloning shares it.
pub struct Hub<M = ()> {
    commands: mpsc::Sender<Command<M>>,
    waker: Arc<UnixStream>,
    next: Arc<AtomicU64>,
}

impl<M> Clone for Hub<M> {
    fn clone(&self) -> Self {
        Hub {
            commands: self.commands.clone(),
            waker: self.waker.clone(),
            next: self.next.clone(),
        }
    }
}

impl<M> Hub<M> {
    /// A new session: its number, and the inbox where what the gateway has for it arrives.
    /// More than `queue` texts waiting there, and the session is too slow: the gateway ends
    /// it, `ended` says why, and the inbox closes. A session that is not `rated` may make
    /// requests as fast as it likes (a trusted client on the gateway's own machine).
    pub fn open(&self, queue: usize, ended: Ended, hello: String, rated: bool) -> (Sid, Inbox<M>) {
        let sid = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox {
            batches: tx,
            turn: Vec::new(),
            waiting: waiting.clone(),
            most: queue.max(1),
            ended,
        };
        self.command(Command::Open {
            sid,
            outbox,
            hello,
            rated,
        });
        (
            sid,
            Inbox {
                batches: rx,
                waiting,
            },
        )
    }

    /// A text from the browser.
    pub fn text(&self, sid: Sid, text: String) {
        self.command(Command::Text { sid, text });
    }

    /// A text for the browser, from the session layer.
    pub fn say(&self, sid: Sid, text: String) {
        self.command(Command::Say { sid, text });
    }

    pub fn close(&self, sid: Sid) {
        self.command(Command::Close { sid });
    }

    fn command(&self, c: Command<M>) {
        // The hub gone means the gateway is stopping: nothing to do.
        if self.commands.send(c).is_ok() {
            // A full socketpair means a wake-up is pending already.
            let _ = (&*self.waker).write(&[1]);
        }
    }
}

/// Starts the hub thread, connected to the broker and the proxy.
///
/// # Errors
/// When the sockets cannot be made or the endpoints are malformed.
pub fn spawn<M: Default + Send + Sync + 'static>(
    ctx: &zmq::Context,
    broker: &str,
    sub: &str,
    rate: Rate,
    timeout: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<(Hub<M>, JoinHandle<()>)> {
    let dealer = ctx.socket(zmq::DEALER)?;
    dealer.set_linger(0)?;
    dealer.set_maxmsgsize(MAX_SOCKET_BYTES)?;
    dealer.connect(broker)?;
    let subscriber = ctx.socket(zmq::SUB)?;
    subscriber.set_linger(0)?;
    subscriber.set_rcvhwm(100_000)?;
    subscriber.set_maxmsgsize(MAX_SOCKET_BYTES)?;
    subscriber.connect(sub)?;
    // Without a monitor the gateway still works; browsers sweep their inbox, and read a room
    // again when they open it.
    let link = Reconnects::watch(ctx, &subscriber)
        .inspect_err(|e| tracing::warn!(error = %e, "cannot watch the link to the proxy; posts missed while it is down are not filled in"))
        .ok();
    let (wake_tx, wake_rx) = UnixStream::pair()?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let (commands, rx) = mpsc::channel();
    let hub = Hub {
        commands,
        waker: Arc::new(wake_tx),
        next: Arc::new(AtomicU64::new(1)),
    };
    let mut driver = Driver {
        gateway: Gateway::new(rate, timeout, palaver_client::DEFAULT_RETRIES),
        dealer,
        subscriber,
        link,
        outboxes: HashMap::new(),
        touched: Vec::new(),
        log: LogGate::every_second(),
        dropped: 0,
    };
    let thread = std::thread::Builder::new()
        .name("hub".into())
        .spawn(move || driver.run(&rx, wake_rx, &shutdown))?;
    Ok((hub, thread))
}

struct Driver<M> {
    gateway: Gateway,
    dealer: zmq::Socket,
    subscriber: zmq::Socket,
    /// The SUB's monitor: when the link to the proxy comes back, what it missed is read again.
    link: Option<Reconnects>,
    outboxes: HashMap<Sid, Outbox<M>>,
    /// The sessions this turn has something for.
    touched: Vec<Sid>,
    log: LogGate,
    /// Browsers dropped for reading too slowly.
    dropped: u64,
}

impl<M: Default> Driver<M> {
    fn run(
        &mut self,
        commands: &mpsc::Receiver<Command<M>>,
        mut waker: UnixStream,
        shutdown: &Shutdown,
    ) {
        let fd = waker.as_raw_fd();
        while !shutdown.is_triggered() {
            loop {
                match commands.try_recv() {
                    Ok(c) => self.command(c),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            let wait = self
                .gateway
                .deadline()
                .map_or(IDLE, |d| d.saturating_duration_since(now).min(IDLE));
            let mut items = vec![
                self.dealer.as_poll_item(zmq::POLLIN),
                self.subscriber.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(fd, zmq::POLLIN),
            ];
            items.extend(self.link.as_ref().map(Reconnects::as_poll_item));
            let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            match zmq::poll(&mut items, ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the gateway cannot poll its sockets");
                    return;
                }
            }
            let (answers, publications, woken) = (
                items[0].is_readable(),
                items[1].is_readable(),
                items[2].is_readable(),
            );
            let relinked = items.get(3).is_some_and(zmq::PollItem::is_readable);
            drop(items);
            if relinked && self.link.as_mut().is_some_and(Reconnects::came_back) {
                tracing::info!("the link to the proxy is back; filling in the rooms' missed posts");
                let actions = self.gateway.on_reconnect(Instant::now());
                self.carry_out(actions);
            }
            if woken {
                let mut sink = [0u8; 256];
                while matches!(waker.read(&mut sink), Ok(n) if n > 0) {}
            }
            if answers {
                self.answers();
            }
            if publications {
                self.publications();
            }
            let actions = self.gateway.on_timeout(Instant::now());
            self.carry_out(actions);
            self.send_turn();
        }
    }

    /// Sends each session what this turn has for it, as one batch; a session with more than
    /// it may hold waiting is dropped.
    fn send_turn(&mut self) {
        let mut todo = Vec::new();
        let mut touched = std::mem::take(&mut self.touched);
        for sid in touched.drain(..) {
            let Some(outbox) = self.outboxes.get_mut(&sid) else {
                continue;
            };
            let batch = std::mem::take(&mut outbox.turn);
            let n = batch.len();
            let waiting = outbox.waiting.fetch_add(n, Ordering::Relaxed) + n;
            let why = if waiting > outbox.most {
                Some(format!(
                    "too slow: {} messages waiting for this client",
                    outbox.most
                ))
            } else if outbox.batches.send(batch).is_err() {
                None
            } else {
                continue;
            };
            if let Some(why) = why {
                let _ = outbox.ended.set((POLICY, why.clone()));
                self.dropped += 1;
                let dropped = self.dropped;
                self.note(&format!("dropped a session: {why} ({dropped} so far)"));
            }
            // Closing the outbox closes the session's inbox.
            self.outboxes.remove(&sid);
            todo.extend(self.gateway.close(Instant::now(), sid));
        }
        // Its room is kept for the next turn.
        self.touched = touched;
        if !todo.is_empty() {
            self.carry_out(todo);
            self.send_turn();
        }
    }

    fn command(&mut self, c: Command<M>) {
        let now = Instant::now();
        match c {
            Command::Open {
                sid,
                outbox,
                hello,
                rated,
            } => {
                self.gateway.open(now, sid, rated);
                self.outboxes.insert(sid, outbox);
                self.carry_out(vec![Action::Deliver(vec![sid], hello)]);
            }
            Command::Text { sid, text } => {
                let actions = self.gateway.request(now, sid, &text);
                self.carry_out(actions);
            }
            Command::Say { sid, text } => self.carry_out(vec![Action::Deliver(vec![sid], text)]),
            Command::Close { sid } => {
                self.outboxes.remove(&sid);
                let actions = self.gateway.close(now, sid);
                self.carry_out(actions);
            }
        }
    }

    fn answers(&mut self) {
        for _ in 0..BATCH {
            let frame = match self.dealer.recv_bytes(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) => return,
                Err(e) => {
                    self.note(&format!("cannot read an answer: {e}"));
                    return;
                }
            };
            let actions = self.gateway.on_reply(Instant::now(), &frame);
            self.carry_out(actions);
        }
    }

    fn publications(&mut self) {
        for _ in 0..BATCH {
            let frames = match self.subscriber.recv_multipart(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) => return,
                Err(e) => {
                    self.note(&format!("cannot read a publication: {e}"));
                    return;
                }
            };
            match Publication::from_frames(&frames) {
                Ok(p) => {
                    if let Some(seq) = frames.get(1).and_then(|b| palaver_proto::stamped_seq(b)) {
                        let actions = self.gateway.on_sequence(Instant::now(), &p.topic, seq);
                        self.carry_out(actions);
                    }
                    let actions = self.gateway.on_publication(Instant::now(), p);
                    self.carry_out(actions);
                }
                Err(e) => self.note(&format!("dropped a publication that cannot be read: {e}")),
            }
        }
    }

    /// Does what the core asks; what it has for sessions goes out at the end of the turn.
    fn carry_out(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(frame) => {
                    if let Err(e) = self.dealer.send(frame, zmq::DONTWAIT) {
                        // The request stays in flight: it is sent again at its deadline.
                        self.note(&format!("cannot send a request to the broker: {e}"));
                    }
                }
                Action::Subscribe(topic) => {
                    if let Err(e) = self.subscriber.set_subscribe(topic.as_bytes()) {
                        self.note(&format!("cannot follow {topic}: {e}"));
                    }
                }
                Action::Unsubscribe(topic) => {
                    if let Err(e) = self.subscriber.set_unsubscribe(topic.as_bytes()) {
                        self.note(&format!("cannot stop following {topic}: {e}"));
                    }
                }
                Action::Deliver(sids, text) => {
                    let text = Text::new(text);
                    for sid in sids {
                        if let Some(outbox) = self.outboxes.get_mut(&sid) {
                            if outbox.turn.is_empty() {
                                self.touched.push(sid);
                            }
                            outbox.turn.push(text.clone());
                        }
                    }
                }
            }
        }
    }

    fn note(&mut self, what: &str) {
        if let Some(held) = self.log.admit(Instant::now()) {
            tracing::warn!(held, "{what}");
        }
    }
}
