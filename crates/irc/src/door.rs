//! The gateway process: its settings, TLS, and the runtime beside the hub that its connections
//! share (`crate::listen`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use palaver_core::Shutdown;

use crate::listen;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub broker: String,
    pub sub: String,
    /// The name the gateway gives itself in its replies.
    pub server_name: String,
    /// Connections from one address at once.
    pub per_address: usize,
    /// Lines a client may send in one second before it is cut off.
    pub flood: usize,
    /// Lines waiting for one client before it counts as too slow.
    pub queue: usize,
    pub rate: palaver_web::Rate,
    /// How long a request waits for each attempt's answer.
    pub timeout: Duration,
    /// A second listener, for TLS.
    pub tls: Option<Tls>,
    /// Connections from a loopback address (this machine) are held to none of the limits
    /// above but the queue: for bouncers, bridges and bots beside a gateway, and for `palaver
    /// up`, whose cluster takes requests from this machine without limits anyway.
    pub trust_loopback: bool,
}

/// Where TLS connections are taken, and the certificate chain and key they are served with
/// (PEM files).
#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// The server's TLS settings, from its PEM files.
    ///
    /// # Errors
    /// When a file cannot be read, holds no certificate or key, or the key does not go with
    /// the certificate.
    pub fn config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .with_context(|| format!("cannot read certificates from {}", self.cert.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "{} holds no certificate (PEM, BEGIN CERTIFICATE)",
            self.cert.display()
        );
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("cannot read a private key from {}", self.key.display()))?;
        // ring, not aws-lc-rs: it builds with cargo alone on every machine Palaver runs on.
        // rustls marks it deprecated because its key exchange is not post-quantum; IRC's
        // TLS has no long-lived secrets for that to matter more than a simple build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the key does not go with the certificate")?;
        Ok(Arc::new(config))
    }
}

impl Options {
    /// The documented defaults, on `listen`, for the cluster at `broker` and `sub`.
    pub fn new(listen: SocketAddr, broker: &str, sub: &str) -> Options {
        Options {
            listen,
            broker: broker.to_owned(),
            sub: sub.to_owned(),
            server_name: "palaver".to_owned(),
            per_address: 16,
            flood: 100,
            queue: 4096,
            rate: palaver_web::Rate {
                per_second: 20.0,
                burst: 40.0,
            },
            timeout: palaver_client::DEFAULT_TIMEOUT,
            tls: None,
            trust_loopback: false,
        }
    }
}

/// Serves IRC clients until `shutdown`.
///
/// # Errors
/// When the address cannot be listened on or the sockets cannot be made.
pub fn run(opts: &Options, shutdown: &Shutdown) -> anyhow::Result<()> {
    let gateway = palaver_web::Gateway {
        name: "irc",
        broker: &opts.broker,
        sub: &opts.sub,
        rate: opts.rate,
        timeout: opts.timeout,
    };
    // A certificate that cannot be used is said before anything listens.
    let tls = match &opts.tls {
        Some(t) => Some((t.listen, tokio_rustls::TlsAcceptor::from(t.config()?))),
        None => None,
    };
    palaver_web::with_hub(&gateway, shutdown, |hub: listen::Hub| async move {
        let bind = |at: SocketAddr| async move {
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at}"))
        };
        let listener = bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let secure = match tls {
            Some((at, acceptor)) => Some((bind(at).await?, acceptor)),
            None => None,
        };
        let with_tls = match &secure {
            Some((l, _)) => format!(", or with TLS to {}", l.local_addr()?),
            None => String::new(),
        };
        println!(
            "palaver irc: connect an IRC client to {addr}{with_tls} (cluster at {})",
            opts.broker
        );
        palaver_supervise::notify_ready();
        let shared = listen::Shared::default();
        let plain = listen::serve(
            listener,
            None,
            shared.clone(),
            hub.clone(),
            opts.clone(),
            shutdown.clone(),
        );
        match secure {
            Some((l, acceptor)) => {
                let secure = listen::serve(
                    l,
                    Some(acceptor),
                    shared,
                    hub,
                    opts.clone(),
                    shutdown.clone(),
                );
                tokio::join!(plain, secure);
            }
            None => plain.await,
        }
        Ok(())
    })
}
