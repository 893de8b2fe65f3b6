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

    /// Makes `socket` (before it binds) one that only the cluster may use. The context must run
    /// a ZAP handler ([`Credentials::guard`]), or libzmq would admit any CURVE client.
    ///
    /// # Errors
    /// When an option cannot be set.
    pub fn serve(&self, socket: &zmq::Socket) -> Result<(), AuthError> {
        socket.set_zap_domain(DOMAIN)?;
        socket.set_curve_server(true)?;
        socket.set_curve_secretkey(&self.secret)?;
        Ok(())
    }

    /// Makes `socket` (before it connects) present the cluster's key to an internal socket.
    ///
    /// # Errors
    /// When an option cannot be set.
    pub fn connect(&self, socket: &zmq::Socket) -> Result<(), AuthError> {
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
            c.connect(&req).unwrap();
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
        cluster.serve(&rep).unwrap();
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
}
