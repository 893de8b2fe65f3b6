//! The cluster's credentials, and what they guard.
//!
//! ```text
//!  cluster process (server, admin)            internal socket (broker's server side, proxy's
//!  Credentials::connect(socket) ──CURVE──▶     publisher side, peer endpoint, reference)
//!                                              Credentials::serve(socket)
//!                                                  │ handshake
//!                                                  ▼
//!                                              ZAP handler (one thread per context):
//!                                              admits the cluster's public key, refuses the rest
//! ```
//!
//! Every process of a cluster holds the same CURVE key pair. A socket that only the cluster may
//! use is a CURVE server with that key; a process that connects to it is a CURVE client that
//! proves it holds the same key. The handshake encrypts and authenticates everything after it,
//! and the ZAP handler refuses every client key but the cluster's, so a process without the
//! credentials cannot even complete a connection: it can neither send nor receive a message.
//!
//! The credentials are one line of text, the public and the secret key in Z85 (ZeroMQ's
//! printable encoding), kept in a file (`palaver up` writes `<data>/cluster.key` on first start)
//! or in the environment variable [`KEY_ENV`].

pub mod password;
pub mod token;

use std::path::Path;
use std::time::Instant;

use palaver_core::LogGate;

/// The environment variable that may hold the credentials themselves (the file's text).
pub const KEY_ENV: &str = "PALAVER_KEY";

/// The ZAP domain every internal socket declares.
const DOMAIN: &str = "palaver";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the cluster credentials from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the cluster credentials to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the cluster credentials are malformed: {0}")]
    Malformed(&'static str),
    #[error("this build of ZeroMQ has no CURVE security")]
    NoCurve,
    #[error("the local socket {path} cannot be private: {why}")]
    Ipc { path: String, why: String },
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
}

/// The cluster's CURVE key pair. Every process of a cluster holds the same one.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    public: [u8; 32],
    secret: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: this ends up in logs.
        write!(f, "Credentials({})", self.public_z85())
    }
}

impl Credentials {
    /// A new random key pair.
    ///
    /// # Errors
    /// When ZeroMQ was built without CURVE.
    pub fn generate() -> Result<Credentials, AuthError> {
        if !zmq::has("curve").unwrap_or(false) {
            return Err(AuthError::NoCurve);
        }
        let pair = zmq::CurveKeyPair::new()?;
        Ok(Credentials {
            public: pair.public_key,
            secret: pair.secret_key,
        })
    }

    /// Reads the text form: the public and the secret key in Z85, separated by white space;
    /// lines starting with `#` are comments.
    ///
    /// # Errors
    /// When there are not exactly two keys of 40 Z85 characters each.
    pub fn parse(text: &str) -> Result<Credentials, AuthError> {
        let words: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(str::split_whitespace)
            .collect();
        let [public, secret] = words.as_slice() else {
            return Err(AuthError::Malformed("expected a public and a secret key"));
        };
        let key = |z: &str| -> Result<[u8; 32], AuthError> {
            let bytes = zmq::z85_decode(z).map_err(|_| AuthError::Malformed("a key is not Z85"))?;
            bytes
                .try_into()
                .map_err(|_| AuthError::Malformed("a key is not 32 bytes"))
        };
        let creds = Credentials {
            public: key(public)?,
            secret: key(secret)?,
        };
        Ok(creds)
    }

    /// The text form that [`Credentials::parse`] reads.
    pub fn to_text(&self) -> String {
        format!(
            "# Palaver cluster credentials: every process of the cluster needs them; keep them secret.\n{} {}\n",
            self.public_z85(),
            z85(&self.secret)
        )
    }

    /// The public key in Z85, safe to show.
    pub fn public_z85(&self) -> String {
        z85(&self.public)
    }

    /// Reads the credentials from [`KEY_ENV`] if it is set, else from `file`.
    ///
    /// # Errors
    /// When neither holds well-formed credentials.
    pub fn load(file: &Path) -> Result<Credentials, AuthError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            if !text.trim().is_empty() {
                return Credentials::parse(&text);
            }
        }
        let text = std::fs::read_to_string(file).map_err(|source| AuthError::Read {
            path: file.display().to_string(),
            source,
        })?;
        Credentials::parse(&text)
    }

    /// Reads the credentials from `file`, creating the file with new ones if it does not exist
    /// (readable by its owner only).
    ///
    /// # Errors
    /// When the file cannot be read or written, or holds malformed credentials.
    pub fn load_or_create(file: &Path) -> Result<Credentials, AuthError> {
        match std::fs::read_to_string(file) {
            Ok(text) => Credentials::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let creds = Credentials::generate()?;
                creds.save(file)?;
                Ok(creds)
            }
            Err(source) => Err(AuthError::Read {
                path: file.display().to_string(),
                source,
            }),
        }
    }

    /// Writes the credentials to `file`, readable by its owner only.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, file: &Path) -> Result<(), AuthError> {
        use std::io::Write;
        let err = |source| AuthError::Write {
            path: file.display().to_string(),
            source,
        };
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(file).map_err(err)?;
        f.write_all(self.to_text().as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)
    }

    /// Makes `socket` (before it binds `endpoint`) one that only the cluster may use. Over TCP
    /// that is CURVE, and the context must run a ZAP handler ([`Credentials::guard`]), or
    /// libzmq would admit any CURVE client. An `ipc://` endpoint is guarded by the operating
    /// system instead ([`local_endpoint`]): its directory must be the process owner's alone,
    /// and nothing is encrypted on the way from one process to another of the same host.
    ///
    /// # Errors
    /// When an option cannot be set, or an `ipc://` endpoint's directory is open to others.
    pub fn serve(&self, socket: &zmq::Socket, endpoint: &str) -> Result<(), AuthError> {
        if let Some(path) = local_endpoint(endpoint) {
            return private_directory(path);
        }
        socket.set_zap_domain(DOMAIN)?;
        socket.set_curve_server(true)?;
        socket.set_curve_secretkey(&self.secret)?;
        Ok(())
    }

    /// Makes `socket` (before it connects to `endpoint`) present the cluster's key to an
    /// internal socket; an `ipc://` endpoint needs no key (see [`Credentials::serve`]).
    ///
    /// # Errors
    /// When an option cannot be set.
    pub fn connect(&self, socket: &zmq::Socket, endpoint: &str) -> Result<(), AuthError> {
        if local_endpoint(endpoint).is_some() {
            return Ok(());
        }
        socket.set_curve_serverkey(&self.public)?;
        socket.set_curve_publickey(&self.public)?;
        socket.set_curve_secretkey(&self.secret)?;
        Ok(())
    }

    /// Starts the ZAP handler of `ctx`: a thread that admits CURVE clients holding the cluster's
    /// key and refuses every other, logging refusals at most once a second with a count. Call
    /// it once per context, before any socket of it binds with [`Credentials::serve`].
    ///
    /// # Errors
    /// When the handler's socket cannot be bound (say, a second handler in one context).
    pub fn guard(&self, ctx: &zmq::Context, role: &'static str) -> Result<(), AuthError> {
        let zap = ctx.socket(zmq::REP)?;
        zap.set_linger(0)?;
        zap.bind("inproc://zeromq.zap.01")?;
        let public = self.public;
        std::thread::Builder::new()
            .name("zap".into())
            .spawn(move || serve_zap(&zap, &public, role))
            .map_err(|_| AuthError::Zmq(zmq::Error::EFAULT))?;
        Ok(())
    }
}

/// The socket file of an `ipc://` endpoint: a socket on this host that only processes of the
/// cluster's user can open (see [`private_directory`]).
pub fn local_endpoint(endpoint: &str) -> Option<&Path> {
    endpoint.strip_prefix("ipc://").map(Path::new)
}

/// Longest path an `ipc://` socket may have (`sun_path` holds 108 bytes with its NUL).
pub const MAX_IPC_PATH: usize = 107;

/// Makes sure the directory of the socket file `path` exists and is open to its owner only
/// (mode 0700, owned by this process's user): then the kernel lets no other user connect, and
/// a process of the cluster's user could read the cluster's key file anyway. A directory that
/// others may enter is refused rather than repaired, so a mistyped path never opens a socket
/// to the whole machine.
///
/// # Errors
/// When the path is too long for a socket, or its directory cannot be made or is not private.
pub fn private_directory(path: &Path) -> Result<(), AuthError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let refuse = |why: String| AuthError::Ipc {
        path: path.display().to_string(),
        why,
    };
    if path.as_os_str().len() > MAX_IPC_PATH {
        return Err(refuse(format!("longer than {MAX_IPC_PATH} bytes")));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| refuse(format!("cannot create its directory: {e}")))?;
        // `recursive` applies the mode to the last directory only after the umask: set it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| refuse(format!("cannot restrict its directory: {e}")))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| refuse(format!("its directory: {e}")))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(refuse(format!(
            "its directory belongs to uid {}, not to this process (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "its directory has mode {:o}; other users could connect (make it 0700)",
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

fn z85(key: &[u8; 32]) -> String {
    // 32 bytes is a multiple of 4, the one thing Z85 asks of its input.
    zmq::z85_encode(key).expect("32 bytes encode in Z85")
}

/// Answers ZAP requests (RFC 27) until the context ends.
fn serve_zap(zap: &zmq::Socket, public: &[u8; 32], role: &'static str) {
    let mut gate = LogGate::every_second();
    let mut refused: u64 = 0;
    loop {
        let frames = match zap.recv_multipart(0) {
            Ok(frames) => frames,
            Err(zmq::Error::ETERM) => return,
            Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                tracing::error!(role, error = %e, "the ZAP handler stopped");
                return;
            }
        };
        // [version, request id, domain, address, identity, mechanism, credentials…]
        let field = |i: usize| frames.get(i).map(Vec::as_slice).unwrap_or_default();
        let admitted = field(0) == b"1.0"
            && field(2) == DOMAIN.as_bytes()
            && field(5) == b"CURVE"
            && field(6) == public;
        if !admitted {
            refused += 1;
            if let Some(quiet) = gate.admit(Instant::now()) {
                tracing::warn!(
                    role,
                    address = %String::from_utf8_lossy(field(3)),
                    mechanism = %String::from_utf8_lossy(field(5)),
                    refused,
                    unlogged = quiet,
                    "refused a connection without the cluster's credentials"
                );
            }
        }
        let (code, text): (&[u8], &[u8]) = if admitted {
            (b"200", b"OK")
        } else {
            (b"400", b"not a member of this cluster")
        };
        let reply: [&[u8]; 6] = [b"1.0", field(1), code, text, b"", b""];
        if let Err(e) = zap.send_multipart(reply, 0) {
            tracing::warn!(role, error = %e, "ZAP reply not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_through_their_text() {
        let c = Credentials::generate().unwrap();
        assert_eq!(Credentials::parse(&c.to_text()).unwrap(), c);
        assert!(
            !format!("{c:?}").contains(&z85(&c.secret)),
            "Debug hides the secret"
        );
        for bad in ["", "abc", "a b c", &format!("{} x", c.public_z85())] {
            assert!(Credentials::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_file_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("cluster.key");
        let a = Credentials::load_or_create(&file).unwrap();
        let b = Credentials::load_or_create(&file).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Sends one request from `client` to a guarded REP socket; whether it was answered.
    fn answered(
        ctx: &zmq::Context,
        endpoint: &str,
        client: Option<&Credentials>,
        text: &str,
    ) -> bool {
        let req = ctx.socket(zmq::REQ).unwrap();
        req.set_linger(0).unwrap();
        if let Some(c) = client {
            c.connect(&req, endpoint).unwrap();
        }
        req.connect(endpoint).unwrap();
        req.send(text, 0).unwrap();
        req.poll(zmq::POLLIN, 1_000).unwrap() > 0
    }

    #[test]
    fn only_the_cluster_gets_through() {
        let cluster = Credentials::generate().unwrap();
        let ctx = zmq::Context::new();
        cluster.guard(&ctx, "test").unwrap();
        let rep = ctx.socket(zmq::REP).unwrap();
        cluster.serve(&rep, "tcp://127.0.0.1:*").unwrap();
        rep.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = rep.get_last_endpoint().unwrap().unwrap();
        let server = std::thread::spawn(move || {
            // Answers whatever reaches it; only the cluster's request should.
            let mut served = 0;
            while rep.poll(zmq::POLLIN, 20_000).unwrap() > 0 {
                let last = rep.recv_bytes(0).unwrap() == b"last";
                rep.send("pong", 0).unwrap();
                served += 1;
                if last {
                    break;
                }
            }
            served
        });
        let outsider = Credentials::generate().unwrap();
        let client_ctx = zmq::Context::new();
        assert!(
            !answered(&client_ctx, &endpoint, None, "ping"),
            "no credentials"
        );
        assert!(
            !answered(&client_ctx, &endpoint, Some(&outsider), "ping"),
            "another key"
        );
        assert!(
            answered(&client_ctx, &endpoint, Some(&cluster), "last"),
            "the cluster"
        );
        assert_eq!(server.join().unwrap(), 1);
    }

    /// Whether a process of user `nobody` can connect to the Unix socket at `path` (a child
    /// made with `fork` that gives up root first, using nothing but system calls).
    fn nobody_connects(path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: the child calls only async-signal-safe functions and leaves with _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let ok = libc::setgid(65534) == 0 && libc::setuid(65534) == 0;
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                let connected = libc::connect(fd, std::ptr::addr_of!(addr).cast(), len) == 0;
                libc::_exit(match (ok, connected) {
                    (false, _) => 2,
                    (true, true) => 0,
                    (true, false) => 1,
                });
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            let code = libc::WEXITSTATUS(status);
            assert_ne!(code, 2, "the child could not become nobody");
            code == 0
        }
    }

    #[test]
    fn a_local_socket_lives_in_a_directory_of_its_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let cluster = Credentials::generate().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // A directory the role makes for itself is 0700, and the socket in it serves the
        // cluster's processes without any key.
        let path = tmp.path().join("sockets").join("proxy");
        let endpoint = format!("ipc://{}", path.display());
        let ctx = zmq::Context::new();
        let rep = ctx.socket(zmq::REP).unwrap();
        cluster.serve(&rep, &endpoint).unwrap();
        rep.bind(&endpoint).unwrap();
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let server = std::thread::spawn(move || {
            if rep.poll(zmq::POLLIN, 5_000).unwrap() > 0 {
                rep.recv_bytes(0).unwrap();
                rep.send("pong", 0).unwrap();
            }
        });
        assert!(
            answered(&ctx, &endpoint, Some(&cluster), "last"),
            "the cluster"
        );
        server.join().unwrap();
        // Another user cannot even reach the socket file (root would: checked as nobody).
        if unsafe { libc::geteuid() } == 0 {
            assert!(
                !nobody_connects(&path),
                "nobody connected to a private socket"
            );
            // The check itself can fail: in a directory open to all, nobody gets through.
            let open = tmp.path().join("open");
            std::fs::create_dir(&open).unwrap();
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
            let open_rep = ctx.socket(zmq::REP).unwrap();
            open_rep
                .bind(&format!("ipc://{}/s", open.display()))
                .unwrap();
            std::fs::set_permissions(open.join("s"), std::fs::Permissions::from_mode(0o777))
                .unwrap();
            assert!(nobody_connects(&open.join("s")), "the probe works");
        }
        // A directory others may enter is refused, not repaired; so is a path too long.
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = ctx.socket(zmq::REP).unwrap();
        let err = cluster
            .serve(&s, &format!("ipc://{}/broker", shared.display()))
            .unwrap_err();
        assert!(err.to_string().contains("mode 755"), "{err}");
        let long = format!("ipc://{}/{}", tmp.path().display(), "x".repeat(120));
        assert!(cluster.serve(&s, &long).is_err());
        // Over TCP nothing changed: the socket is a CURVE server.
        cluster.serve(&s, "tcp://127.0.0.1:*").unwrap();
        assert!(s.is_curve_server().unwrap());
    }
}
