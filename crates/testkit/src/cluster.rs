use std::path::{Path, PathBuf};
use std::time::Duration;

use palaver_auth::Credentials;
use palaver_client::{Connection, SharedClock, Subscriber};
use palaver_proto::Name;

use crate::{free_port, Proc};

/// How long a process may take to say it is ready.
const READY: Duration = Duration::from_secs(20);

/// A reference, a broker, a proxy and servers, started from the `palaver` binary at `bin`.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    ctx: zmq::Context,
    credentials: Credentials,
    key_file: PathBuf,
    frontend: u16,
    backend: u16,
    xsub: u16,
    xpub: u16,
    reference_port: u16,
    skews: Vec<i64>,
    // Servers before the others, so they stop first when the cluster drops.
    servers: Vec<Option<Proc>>,
    reference: Option<Proc>,
    broker: Proc,
    proxy: Proc,
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
        let dir = tempfile::tempdir().expect("temporary directory");
        let credentials = Credentials::generate().expect("cluster credentials");
        let key_file = dir.path().join("cluster.key");
        credentials
            .save(&key_file)
            .expect("write the cluster credentials");
        let key = key_file.display().to_string();
        let (broker, frontend, backend) =
            start_pair(bin, dir.path(), "broker", "broker ready", |a, b| {
                vec![
                    "broker".into(),
                    "--frontend".into(),
                    tcp(a),
                    "--backend".into(),
                    tcp(b),
                    "--key".into(),
                    key.clone(),
                ]
            });
        let (proxy, xsub, xpub) = start_pair(bin, dir.path(), "proxy", "proxy ready", |a, b| {
            vec![
                "proxy".into(),
                "--xsub".into(),
                tcp(a),
                "--xpub".into(),
                tcp(b),
                "--key".into(),
                key.clone(),
            ]
        });
        let mut cluster = Cluster {
            bin: bin.to_owned(),
            dir,
            ctx: zmq::Context::new(),
            credentials,
            key_file,
            frontend,
            backend,
            xsub,
            xpub,
            reference_port: 0,
            skews: skews_ms.to_vec(),
            servers: Vec::new(),
            reference: None,
            broker,
            proxy,
        };
        cluster.start_reference();
        for i in 0..skews_ms.len() {
            cluster.servers.push(None);
            cluster.start_server(i);
        }
        cluster
    }

    /// Starts (or restarts, on the same port and data) the reference and waits until it serves.
    ///
    /// # Panics
    /// When it does not become ready in time.
    pub fn start_reference(&mut self) {
        let data = self.dir.path().join("reference").display().to_string();
        let log = self.dir.path().join("reference.log");
        for _ in 0..5 {
            if self.reference_port == 0 {
                self.reference_port = free_port();
            }
            let args = vec![
                "reference".into(),
                "--bind".into(),
                tcp(self.reference_port),
                "--data".into(),
                data.clone(),
                "--key".into(),
                self.key_file.display().to_string(),
            ];
            let before = std::fs::read_to_string(&log)
                .map(|s| s.matches("reference ready").count())
                .unwrap_or(0);
            let mut proc = Proc::spawn("reference", &self.bin, &args, &log);
            let ready = crate::wait_until(READY, || {
                proc.log().matches("reference ready").count() > before || proc.exited()
            });
            if ready && !proc.exited() {
                self.reference = Some(proc);
                return;
            }
            if self.servers.is_empty() {
                // Nobody knows the port yet: try another.
                self.reference_port = 0;
            }
        }
        panic!("the reference could not start");
    }

    /// `kill -9` of the reference.
    pub fn kill_reference(&mut self) {
        if let Some(mut p) = self.reference.take() {
            p.kill();
        }
    }

    /// Where servers and admins find the reference.
    pub fn reference_endpoint(&self) -> String {
        tcp(self.reference_port)
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
        tcp(self.frontend)
    }

    /// The broker's server side (internal).
    pub fn broker_backend_endpoint(&self) -> String {
        tcp(self.backend)
    }

    /// The proxy's publisher side (internal).
    pub fn proxy_xsub_endpoint(&self) -> String {
        tcp(self.xsub)
    }

    /// Where subscribers connect.
    pub fn sub_endpoint(&self) -> String {
        tcp(self.xpub)
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
        let name = Cluster::server_name(i);
        let args = vec![
            "server".into(),
            "--name".into(),
            name.clone(),
            "--data".into(),
            self.data_dir(i).display().to_string(),
            "--broker".into(),
            tcp(self.backend),
            "--pub".into(),
            tcp(self.xsub),
            "--sub".into(),
            tcp(self.xpub),
            "--reference".into(),
            tcp(self.reference_port),
            "--clock-skew-ms".into(),
            self.skews.get(i).copied().unwrap_or(0).to_string(),
            "--key".into(),
            self.key_file.display().to_string(),
        ];
        let log = self.dir.path().join(format!("{name}.log"));
        let before = std::fs::read_to_string(&log)
            .map(|s| s.matches("accepting client requests").count())
            .unwrap_or(0);
        let mut proc = Proc::spawn(&name, &self.bin, &args, &log);
        let ready = crate::wait_until(READY, || {
            proc.log().matches("accepting client requests").count() > before || proc.exited()
        });
        assert!(
            ready && !proc.exited(),
            "{name} did not start:\n{}",
            proc.log()
        );
        self.servers[i] = Some(proc);
    }

    /// `kill -9` of server `i`.
    pub fn kill_server(&mut self, i: usize) {
        if let Some(mut p) = self.servers[i].take() {
            p.kill();
        }
    }

    /// The peer endpoint server `i` logged when it started serving.
    pub fn peer_addr(&mut self, i: usize) -> Option<String> {
        let log = self.servers[i].as_ref()?.log();
        let line = log.lines().rev().find(|l| l.contains("serving"))?;
        let at = line.find("peer=")? + "peer=".len();
        Some(line[at..].split_whitespace().next()?.to_owned())
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
        let log = self.dir.path().join("proxy.log");
        let before = self.proxy.log().matches("proxy ready").count();
        let args = vec![
            "proxy".into(),
            "--xsub".into(),
            tcp(self.xsub),
            "--xpub".into(),
            tcp(self.xpub),
            "--key".into(),
            self.key_file.display().to_string(),
        ];
        for _ in 0..50 {
            let mut proc = Proc::spawn("proxy", &self.bin, &args, &log);
            let ready = crate::wait_until(READY, || {
                proc.log().matches("proxy ready").count() > before || proc.exited()
            });
            if ready && !proc.exited() {
                self.proxy = proc;
                return;
            }
            // The old process's ports may take a moment to be free again.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the proxy could not restart on its ports");
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

fn tcp(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// Starts a process that binds two ports, retrying with new ports if a bind fails.
fn start_pair(
    bin: &Path,
    dir: &Path,
    name: &str,
    ready: &str,
    args: impl Fn(u16, u16) -> Vec<String>,
) -> (Proc, u16, u16) {
    for _ in 0..5 {
        let (a, b) = (free_port(), free_port());
        let mut proc = Proc::spawn(name, bin, &args(a, b), &dir.join(format!("{name}.log")));
        if proc.await_log(ready, READY) && !proc.exited() {
            return (proc, a, b);
        }
    }
    panic!("{name} could not start on free ports");
}
