//! Where every process of a local cluster listens, computed in one place for `palaver up`,
//! `palaver bench --spawn` and the tests.
//!
//! ```text
//!  base+0 broker, clients     base+2 proxy, publishers   base+4 the web gateway (HTTP)
//!  base+1 broker, servers     base+3 proxy, subscribers  base+5 reference
//!  base+10+i server i's peer endpoint (i from 1)
//! ```
//!
//! A cluster on one host ([`Layout::local`]) puts the sockets only the cluster uses (the
//! broker's server side, the proxy's publisher side, the peer endpoints) in a directory of its
//! own as `ipc://` endpoints: the kernel lets only the cluster's user open them, and no frame
//! is encrypted between two processes of one machine. The reference stays on TCP, where
//! `palaver admin` finds it.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports already handed out by this process, so that two clusters started at once (tests run
/// in parallel threads) never share one.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A cluster's ports: a base and fixed offsets from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub host: String,
    pub base: u16,
    pub servers: usize,
    /// Where the internal sockets live when the cluster is on one host; `None`: TCP.
    pub sockets: Option<std::path::PathBuf>,
}

impl Layout {
    pub fn new(host: &str, base: u16, servers: usize) -> Layout {
        Layout {
            host: host.to_owned(),
            base,
            servers,
            sockets: None,
        }
    }

    /// The same layout with its internal sockets in `dir` (made private when they bind; see
    /// `palaver_auth::private_directory`), or on TCP as before when `dir`'s socket paths would
    /// be too long for a Unix socket.
    pub fn local(mut self, dir: &std::path::Path) -> Layout {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        // The longest name below ("s" and a server's number) must fit a socket's path.
        let longest = dir.join(format!("s{}", self.servers)).as_os_str().len();
        self.sockets = (longest <= palaver_auth::MAX_IPC_PATH).then_some(dir);
        self
    }

    /// An internal socket: `ipc://` in the sockets directory when there is one, else TCP.
    fn internal(&self, name: &str, offset: u16) -> String {
        match &self.sockets {
            Some(dir) => format!("ipc://{}", dir.join(name).display()),
            None => self.endpoint(offset),
        }
    }

    /// A layout on 127.0.0.1 whose every port was free a moment ago, its base picked at random
    /// outside the kernel's ephemeral range, where any outgoing connection may take a port at
    /// any moment (a test or a benchmark binds them at once; a clash is retried by the caller).
    ///
    /// # Errors
    /// When no free layout turns up in 200 tries.
    pub fn free(servers: usize) -> std::io::Result<Layout> {
        let (low, high) = listening_range(ephemeral_range(), 10 + servers as u16);
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let given = given.get_or_insert_with(HashSet::new);
        for _ in 0..200 {
            let base = low + (random() % u32::from(high - low)) as u16;
            let layout = Layout::new("127.0.0.1", base, servers);
            let ports = layout.ports();
            if ports.iter().any(|p| given.contains(p)) {
                continue;
            }
            let free = ports
                .iter()
                .map(|p| TcpListener::bind(("127.0.0.1", *p)))
                .collect::<Result<Vec<_>, _>>()
                .is_ok();
            if free {
                given.extend(ports);
                return Ok(layout);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no free range of ports for a cluster",
        ))
    }

    fn endpoint(&self, offset: u16) -> String {
        format!("tcp://{}:{}", self.host, self.base + offset)
    }

    /// Every port the layout uses.
    pub fn ports(&self) -> Vec<u16> {
        let servers = (1..=self.servers).map(|i| self.base + 10 + i as u16);
        [0, 1, 2, 3, 4, 5, 6]
            .into_iter()
            .map(|o| self.base + o)
            .chain(servers)
            .collect()
    }

    /// The broker's client side: what clients connect to.
    pub fn broker(&self) -> String {
        self.endpoint(0)
    }

    /// The broker's server side.
    pub fn broker_backend(&self) -> String {
        self.internal("broker", 1)
    }

    /// The proxy's publisher side (servers publish here).
    pub fn proxy_xsub(&self) -> String {
        self.internal("proxy", 2)
    }

    /// The proxy's subscriber side: what subscribers connect to.
    pub fn proxy_xpub(&self) -> String {
        self.endpoint(3)
    }

    /// Where a web gateway may listen (`host:port`, HTTP).
    pub fn web(&self) -> String {
        format!("{}:{}", self.host, self.base + 4)
    }

    pub fn reference(&self) -> String {
        self.endpoint(5)
    }

    /// Where an IRC gateway may listen (`host:port`).
    pub fn irc(&self) -> String {
        format!("{}:{}", self.host, self.base + 6)
    }

    /// Server `i`'s peer endpoint, `i` from 1.
    pub fn peer(&self, i: usize) -> String {
        self.internal(&format!("s{i}"), 10 + i as u16)
    }

    /// The arguments of each role, in the order they start: reference, broker, proxy, then the
    /// servers (named `s1`, `s2`…, data under `data`, clocks skewed by `skew_ms[i]`).
    pub fn roles(
        &self,
        data: &std::path::Path,
        key: &std::path::Path,
        skew_ms: &[i64],
    ) -> Vec<(String, Vec<String>)> {
        let key = key.display().to_string();
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let reference_data = data.join("reference").display().to_string();
        let mut roles = vec![
            (
                "reference".to_owned(),
                owned(&[
                    "reference",
                    "--bind",
                    &self.reference(),
                    "--data",
                    &reference_data,
                    "--key",
                    &key,
                ]),
            ),
            (
                "broker".to_owned(),
                owned(&[
                    "broker",
                    "--frontend",
                    &self.broker(),
                    "--backend",
                    &self.broker_backend(),
                    "--key",
                    &key,
                ]),
            ),
            (
                "proxy".to_owned(),
                owned(&[
                    "proxy",
                    "--xsub",
                    &self.proxy_xsub(),
                    "--xpub",
                    &self.proxy_xpub(),
                    "--key",
                    &key,
                ]),
            ),
        ];
        let cluster = self.servers.to_string();
        for i in 1..=self.servers {
            let name = format!("s{i}");
            let server_data = data.join(&name).display().to_string();
            let skew = skew_ms.get(i - 1).copied().unwrap_or(0).to_string();
            roles.push((
                name.clone(),
                owned(&[
                    "server",
                    "--name",
                    &name,
                    "--data",
                    &server_data,
                    "--broker",
                    &self.broker_backend(),
                    "--pub",
                    &self.proxy_xsub(),
                    "--sub",
                    &self.proxy_xpub(),
                    "--reference",
                    &self.reference(),
                    "--peer",
                    &self.peer(i),
                    "--clock-skew-ms",
                    &skew,
                    "--cluster-size",
                    &cluster,
                    "--key",
                    &key,
                ]),
            ));
        }
        roles
    }
}

/// The ports the kernel hands to outgoing connections (Linux's default when it cannot say).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .filter(|(low, high)| low <= high)
        .unwrap_or((32_768, 60_999))
}

/// Where a layout `span` ports wide may start: 10,000 up to the ephemeral range, or, when
/// that leaves too little room, from just above it.
fn listening_range((eph_low, eph_high): (u16, u16), span: u16) -> (u16, u16) {
    const FLOOR: u16 = 10_000;
    const ROOM: u16 = 1_000;
    if eph_low >= FLOOR.saturating_add(span).saturating_add(ROOM) {
        (FLOOR, eph_low - span)
    } else if eph_high <= u16::MAX - span - ROOM {
        (eph_high + 1, u16::MAX - span)
    } else {
        (FLOOR, u16::MAX - span)
    }
}

/// A random number from the kernel, without a dependency for it.
fn random() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: getrandom fills the buffer it is given, of the length it is given.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(buf)
    } else {
        // Fall back on the clock's nanoseconds: good enough to spread bases.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_puts_each_role_on_its_offset() {
        let l = Layout::new("h", 5555, 2);
        assert_eq!(l.broker(), "tcp://h:5555");
        assert_eq!(l.broker_backend(), "tcp://h:5556");
        assert_eq!(l.proxy_xsub(), "tcp://h:5557");
        assert_eq!(l.proxy_xpub(), "tcp://h:5558");
        assert_eq!(l.reference(), "tcp://h:5560");
        assert_eq!(l.peer(2), "tcp://h:5567");
        assert_eq!(
            l.ports(),
            [5555, 5556, 5557, 5558, 5559, 5560, 5561, 5566, 5567]
        );
        assert_eq!(l.web(), "h:5559");
        assert_eq!(l.irc(), "h:5561");
        let roles = l.roles(
            std::path::Path::new("/d"),
            std::path::Path::new("/k"),
            &[0, 40],
        );
        let names: Vec<_> = roles.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["reference", "broker", "proxy", "s1", "s2"]);
        assert!(roles[4]
            .1
            .windows(2)
            .any(|w| w == ["--clock-skew-ms", "40"]));
        assert!(roles[3]
            .1
            .windows(2)
            .any(|w| w == ["--peer", "tcp://h:5566"]));
    }

    #[test]
    fn a_free_layout_is_free_and_clear_of_the_ephemeral_ports() {
        let (low, high) = ephemeral_range();
        let l = Layout::free(3).unwrap();
        for p in l.ports() {
            assert!(TcpListener::bind(("127.0.0.1", p)).is_ok(), "port {p}");
            assert!(!(low..=high).contains(&p), "port {p} in {low}–{high}");
        }
    }

    #[test]
    fn layouts_start_below_the_ephemeral_range_or_else_above_it() {
        // Linux's default range leaves 10,000–32,767.
        assert_eq!(listening_range((32_768, 60_999), 13), (10_000, 32_755));
        // A range starting low leaves room above it only.
        assert_eq!(listening_range((1_024, 40_000), 13), (40_001, 65_522));
        // A range over everything leaves no choice.
        assert_eq!(listening_range((1_024, 65_000), 13), (10_000, 65_522));
    }

    #[test]
    fn a_local_layout_puts_the_internal_sockets_in_its_directory_and_nothing_else() {
        let l = Layout::new("h", 5555, 2).local(std::path::Path::new("/run/p/sockets"));
        assert_eq!(l.broker_backend(), "ipc:///run/p/sockets/broker");
        assert_eq!(l.proxy_xsub(), "ipc:///run/p/sockets/proxy");
        assert_eq!(l.peer(2), "ipc:///run/p/sockets/s2");
        // What clients, subscribers and `palaver admin` open stays on TCP.
        assert_eq!(l.broker(), "tcp://h:5555");
        assert_eq!(l.proxy_xpub(), "tcp://h:5558");
        assert_eq!(l.reference(), "tcp://h:5560");
        // A directory too deep for a socket's path keeps everything on TCP.
        let deep = format!("/{}", "d".repeat(120));
        let l = Layout::new("h", 5555, 2).local(std::path::Path::new(&deep));
        assert_eq!(l.peer(2), "tcp://h:5567");
    }
}
