use std::path::{Path, PathBuf};
use std::time::Duration;

use palaver_auth::Credentials;
use palaver_client::{Connection, SharedClock, Subscriber};
use palaver_proto::Name;
use palaver_supervise::Layout;

use crate::Proc;

/// How long a process may take to say it is ready.
const READY: Duration = Duration::from_secs(20);

/// A reference, a broker, a proxy and servers, started from the `palaver` binary at `bin`, on
/// the ports of a free [`Layout`] (the one `palaver up` uses).
pub struct Cluster {
    bin: PathBuf,
    ctx: zmq::Context,
    credentials: Credentials,
    key_file: PathBuf,
    layout: Layout,
    /// Each role's arguments, by name (`reference`, `broker`, `proxy`, `s1`…).
    roles: Vec<(String, Vec<String>)>,
    // Servers before the others, so they stop first when the cluster drops.
    servers: Vec<Option<Proc>>,
    reference: Option<Proc>,
    broker: Proc,
    proxy: Proc,
    /// Logs and data; last, so that it outlives the processes (fields drop in order) and a
    /// failing test still shows their logs.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a cluster with `servers` servers named `s1`, `s2`… and waits until each is
    /// serving.
    ///
    /// # Panics
    /// When a process cannot be started or does not become ready: the test cannot go on.
    pub fn start(bin: &Path, servers: usize) -> Cluster {
        Cluster::start_skewed(bin, &vec![0; servers])
    }

    /// Starts a cluster with one server per entry of `skews_ms`, each with its clock that many
    /// milliseconds off.
    ///
    /// # Panics
    /// As [`Cluster::start`].
    pub fn start_skewed(bin: &Path, skews_ms: &[i64]) -> Cluster {
        Cluster::start_configured(bin, skews_ms, &[], false)
    }

    /// Starts a cluster of `servers` servers, each given `server_args` besides its own (say
    /// `["--presence-timeout", "3"]`).
    ///
    /// # Panics
    /// As [`Cluster::start`].
    pub fn start_with(bin: &Path, servers: usize, server_args: &[&str]) -> Cluster {
        Cluster::start_configured(bin, &vec![0; servers], server_args, false)
    }

    /// Starts a cluster whose internal sockets are on TCP with CURVE, as between hosts,
    /// instead of the `ipc://` sockets of a cluster on one host.
    ///
    /// # Panics
    /// As [`Cluster::start`].
    pub fn start_over_tcp(bin: &Path, servers: usize) -> Cluster {
        Cluster::start_configured(bin, &vec![0; servers], &[], true)
    }

    fn start_configured(
        bin: &Path,
        skews_ms: &[i64],
        server_args: &[&str],
        over_tcp: bool,
    ) -> Cluster {
        // Another process may take a port between the layout's check and our bind: then the
        // process says it exited instead of ready, and the cluster starts afresh on new ports.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let credentials = Credentials::generate().expect("cluster credentials");
            let key_file = dir.path().join("cluster.key");
            credentials
                .save(&key_file)
                .expect("write the cluster credentials");
            let layout = Layout::free(skews_ms.len()).expect("free ports");
            let layout = if over_tcp {
                layout
            } else {
                layout.local(&dir.path().join("sockets"))
            };
            let mut roles = layout.roles(dir.path(), &key_file, skews_ms);
            for (name, args) in &mut roles {
                if name.starts_with('s') && name[1..].parse::<usize>().is_ok() {
                    args.extend(server_args.iter().map(|a| (*a).to_owned()));
                }
            }
            let start = |name: &str| -> Option<Proc> {
                let mut p = spawn_role(bin, dir.path(), &roles, name);
                p.await_ready(READY).then_some(p)
            };
            let (Some(reference), Some(broker), Some(proxy)) =
                (start("reference"), start("broker"), start("proxy"))
            else {
                continue;
            };
            let mut cluster = Cluster {
                bin: bin.to_owned(),
                dir,
                ctx: zmq::Context::new(),
                credentials,
                key_file,
                layout,
                roles,
                servers: skews_ms.iter().map(|_| None).collect(),
                reference: Some(reference),
                broker,
                proxy,
            };
            match (0..skews_ms.len()).try_for_each(|i| cluster.try_start_server(i)) {
                Ok(()) => return cluster,
                Err(why) => assert!(why.contains("Address already in use"), "{why}"),
            }
        }
        panic!("the cluster could not start on free ports");
    }

    /// Starts (or restarts, on the same port and data) the reference and waits until it serves.
    ///
    /// # Panics
    /// When it does not become ready in time.
    pub fn start_reference(&mut self) {
        self.reference = None;
        self.reference = Some(self.restart("reference"));
    }

    /// Starts role `name` on its ports, waiting until it is ready; a port the old process has
    /// not let go of yet is tried again for a while.
    fn restart(&self, name: &str) -> Proc {
        for _ in 0..50 {
            let mut p = spawn_role(&self.bin, self.dir.path(), &self.roles, name);
            if p.await_ready(READY) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{name} could not start again on its ports");
    }

    /// `kill -9` of the reference.
    pub fn kill_reference(&mut self) {
        if let Some(mut p) = self.reference.take() {
            p.kill();
        }
    }

    /// Where servers and admins find the reference.
    pub fn reference_endpoint(&self) -> String {
        self.layout.reference()
    }

    /// The name of server `i` (0-based): `s1`, `s2`…
    pub fn server_name(i: usize) -> String {
        format!("s{}", i + 1)
    }

    /// Server `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(Cluster::server_name(i))
    }

    /// The directory holding logs and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Where clients connect.
    pub fn broker_endpoint(&self) -> String {
        self.layout.broker()
    }

    /// Where a web gateway beside this cluster may listen (`host:port`): a port kept for it,
    /// outside the range the kernel hands to outgoing connections, so that a gateway can be
    /// restarted on it.
    pub fn web_listen(&self) -> String {
        self.layout.web()
    }

    /// The broker's server side (internal).
    pub fn broker_backend_endpoint(&self) -> String {
        self.layout.broker_backend()
    }

    /// The proxy's publisher side (internal).
    pub fn proxy_xsub_endpoint(&self) -> String {
        self.layout.proxy_xsub()
    }

    /// Where subscribers connect.
    pub fn sub_endpoint(&self) -> String {
        self.layout.proxy_xpub()
    }

    /// The cluster's credentials, for tests that talk to internal endpoints.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The file holding the cluster's credentials (`--key` of every process).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// A connection to an internal endpoint (a server's peer endpoint, the reference), with the
    /// cluster's credentials.
    pub fn internal(&self, endpoint: &str) -> Connection {
        Connection::open_internal(&self.ctx, endpoint, SharedClock::new(), &self.credentials)
            .expect("connection")
    }

    /// A fresh client connection through the broker.
    pub fn connection(&self) -> Connection {
        Connection::open(&self.ctx, &self.broker_endpoint(), SharedClock::new())
            .expect("connection")
    }

    /// A fresh subscriber on the proxy.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber::open(&self.ctx, &self.sub_endpoint(), SharedClock::new()).expect("subscriber")
    }

    /// Starts (or restarts) server `i` and waits until it serves.
    ///
    /// # Panics
    /// When it does not become ready in time.
    pub fn start_server(&mut self, i: usize) {
        if let Err(why) = self.try_start_server(i) {
            panic!("{why}");
        }
    }

    /// Starts (or restarts) server `i`; when it does not become ready in time, that, with what
    /// it and the cluster logged.
    fn try_start_server(&mut self, i: usize) -> Result<(), String> {
        let name = Cluster::server_name(i);
        self.servers[i] = None;
        let mut proc = spawn_role(&self.bin, self.dir.path(), &self.roles, &name);
        if !proc.await_ready(READY) {
            return Err(format!("{name} did not start:\n{}", proc.log()));
        }
        self.servers[i] = Some(proc);
        Ok(())
    }

    /// Starts (or restarts) server `i` with `extra` arguments besides its own, and waits until
    /// it serves.
    ///
    /// # Panics
    /// When it does not become ready in time.
    pub fn start_server_with(&mut self, i: usize, extra: &[&str]) {
        let name = Cluster::server_name(i);
        self.servers[i] = None;
        let mut roles = self.roles.clone();
        for (n, args) in &mut roles {
            if *n == name {
                args.extend(extra.iter().map(|a| (*a).to_owned()));
            }
        }
        let mut proc = spawn_role(&self.bin, self.dir.path(), &roles, &name);
        assert!(
            proc.await_ready(READY),
            "{name} did not start:\n{}",
            proc.log()
        );
        self.servers[i] = Some(proc);
    }

    /// Whether server `i`'s process has exited (say, it died as a fault test asked).
    pub fn server_exited(&mut self, i: usize) -> bool {
        self.servers[i].as_mut().is_none_or(Proc::exited)
    }

    /// `kill -9` of server `i`.
    pub fn kill_server(&mut self, i: usize) {
        if let Some(mut p) = self.servers[i].take() {
            p.kill();
        }
    }

    /// Server `i`'s peer endpoint, while it runs.
    pub fn peer_addr(&mut self, i: usize) -> Option<String> {
        self.servers[i].as_ref()?;
        Some(self.layout.peer(i + 1))
    }

    /// SIGTERM to server `i`; returns whether it stopped cleanly (exit 0) in time.
    pub fn stop_server(&mut self, i: usize) -> bool {
        self.servers[i]
            .take()
            .is_some_and(|mut p| p.stop(Duration::from_secs(10)))
    }

    /// The running process of server `i`.
    pub fn server(&mut self, i: usize) -> Option<&mut Proc> {
        self.servers[i].as_mut()
    }

    pub fn broker(&mut self) -> &mut Proc {
        &mut self.broker
    }

    pub fn proxy(&mut self) -> &mut Proc {
        &mut self.proxy
    }

    /// Starts the proxy again on its ports (after [`Proc::kill`] of [`Cluster::proxy`]) and
    /// waits until it serves.
    ///
    /// # Panics
    /// When it does not become ready in time.
    pub fn restart_proxy(&mut self) {
        self.proxy.kill();
        self.proxy = self.restart("proxy");
    }

    /// `kill -9` of the broker (its process stays dead until [`Cluster::start_broker`]).
    pub fn kill_broker(&mut self) {
        self.broker.kill();
    }

    /// Starts the broker again on its ports and waits until it serves.
    ///
    /// # Panics
    /// When it does not become ready in time.
    pub fn start_broker(&mut self) {
        self.broker.kill();
        self.broker = self.restart("broker");
    }

    /// Makes sure `sub` receives `channel`'s posts: posts probes as `user` until one arrives.
    /// ZeroMQ subscriptions reach the proxy asynchronously, so this is how a test knows.
    ///
    /// # Panics
    /// When no probe arrives within 10 s.
    pub fn await_subscription(
        &self,
        conn: &mut Connection,
        sub: &mut Subscriber,
        user: &Name,
        channel: &Name,
    ) {
        let arrived = crate::wait_until(Duration::from_secs(10), || {
            conn.publish(user, channel, "probe").expect("probe post");
            sub.recv_timeout(Duration::from_millis(50))
                .expect("receive")
                .is_some()
        });
        assert!(arrived, "subscription to {channel} never became active");
        while sub
            .recv_timeout(Duration::from_millis(100))
            .expect("receive")
            .is_some()
        {}
    }
}

/// Starts role `name` of `roles`, logging to `<dir>/<name>.log`.
fn spawn_role(bin: &Path, dir: &Path, roles: &[(String, Vec<String>)], name: &str) -> Proc {
    let (_, args) = roles
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no role {name}"));
    Proc::spawn(name, bin, args, &dir.join(format!("{name}.log")))
}
