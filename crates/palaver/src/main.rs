//! `palaver`: one binary, one subcommand per role. This file only parses flags and wires the
//! libraries together.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use palaver_apps::{admin, bench, bot, client, listen, ping, up};
use palaver_core::Shutdown;
use palaver_proto::Name;

/// Servers decode and build many small MessagePack values per request; glibc's allocator spent
/// a fifth of a server's time on them under load, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "palaver",
    version,
    about = "A distributed BBS/IRC-style messaging system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole cluster on this machine: broker, proxy and servers, one log stream.
    Up(UpArgs),
    /// Run the request broker (ROUTER for clients, DEALER for servers).
    Broker(BrokerArgs),
    /// Run the publication proxy (XSUB for publishers, XPUB for subscribers).
    Proxy(ProxyArgs),
    /// Run the reference service: server ranks and heartbeats.
    Reference(ReferenceArgs),
    /// Run an application server.
    Server(ServerArgs),
    /// Chat from the terminal, one command per line.
    Client(ClientArgs),
    /// Chat full-screen: rooms, conversations, unread counts, receipts and the cluster.
    Chat(ChatArgs),
    /// Chat from a browser: serve the web client and a WebSocket gateway to the cluster.
    Web(WebArgs),
    /// Chat from any IRC client: serve an IRC gateway to the cluster's rooms and people.
    Irc(IrcArgs),
    /// Make traffic like a person would: create channels, follow them, post.
    Bot(BotArgs),
    /// Print every publication on some topics, one per line.
    Listen(ListenArgs),
    /// Measure throughput, latency and delivery: publish, fan-out, private messages or chat.
    Bench(BenchArgs),
    /// Inspect and steer the cluster: servers, clocks, elections.
    Admin(AdminArgs),
    /// Make new cluster credentials in FILE, for running each role by hand.
    Keygen {
        file: PathBuf,
        /// Leave FILE as it is if it already holds credentials (for a start-up step that runs
        /// every time).
        #[arg(long)]
        keep: bool,
    },
    /// Exit 0 when a role running on this host answers: a health check.
    Ping(PingArgs),
}

#[derive(Args)]
struct PingArgs {
    #[command(subcommand)]
    role: PingRole,
    #[command(flatten)]
    key: KeyArgs,
}

/// Each role is found where its own flags (or environment) put it, with a wildcard bind
/// address read as this host.
#[derive(Subcommand)]
enum PingRole {
    /// The broker completes a ZeroMQ handshake on its client-facing endpoint.
    Broker {
        #[arg(long, env = "PALAVER_BROKER_FRONTEND", default_value = "tcp://*:5555")]
        frontend: String,
    },
    /// The proxy completes a ZeroMQ handshake on its subscriber-facing endpoint.
    Proxy {
        #[arg(long, env = "PALAVER_PROXY_XPUB", default_value = "tcp://*:5558")]
        xpub: String,
    },
    /// The reference answers `list` (with the cluster's credentials).
    Reference {
        #[arg(long, env = "PALAVER_REFERENCE_BIND", default_value = "tcp://*:5560")]
        bind: String,
    },
    /// The server answers `status` on its peer endpoint (with the cluster's credentials).
    Server {
        #[arg(long, env = "PALAVER_SERVER_PEER")]
        peer: String,
    },
    /// The web gateway answers `GET /health`.
    Web {
        #[arg(long, env = "PALAVER_WEB_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// The IRC gateway answers `PING` with `PONG`.
    Irc {
        #[arg(long, env = "PALAVER_IRC_LISTEN", default_value = "127.0.0.1:6667")]
        listen: String,
    },
}

#[derive(Args)]
struct Endpoints {
    /// The broker's client-facing endpoint.
    #[arg(long, env = "PALAVER_BROKER", default_value = "tcp://127.0.0.1:5555")]
    broker: String,
    /// The proxy's subscriber-facing endpoint.
    #[arg(long, env = "PALAVER_SUB", default_value = "tcp://127.0.0.1:5558")]
    sub: String,
}

#[derive(Args)]
struct UpArgs {
    /// How many servers to run.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// Directory under which each server keeps `<name>/palaver.db`.
    #[arg(long, env = "PALAVER_DATA", default_value = "data")]
    data: PathBuf,
    /// Address every process binds and connects on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// First port: the broker takes it and the next (clients, servers), the proxy the two after
    /// (publishers, subscribers), the reference the fifth after, servers' peer endpoints the
    /// tenth after and on.
    #[arg(long, default_value_t = 5555)]
    base_port: u16,
    /// Skew each server's clock on purpose, in milliseconds, one value per server in order
    /// (say `--skew-ms=-3000,0,4000`), to watch Berkeley synchronisation correct it.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    skew_ms: Vec<i64>,
    /// Also serve the web client and its gateway, on this address (127.0.0.1:8080 when given
    /// without one).
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8080", value_name = "ADDR")]
    web: Option<std::net::SocketAddr>,
    /// Also serve the IRC gateway, on this address (127.0.0.1:6667 when given without one).
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:6667", value_name = "ADDR")]
    irc: Option<std::net::SocketAddr>,
    /// Keep the internal sockets on TCP with CURVE, as between hosts, instead of `ipc://`
    /// sockets in `<data>/sockets` (a directory only this user can open).
    #[arg(long)]
    tcp_inside: bool,
}

/// Where the cluster's credentials are: every process that uses an internal socket needs them.
#[derive(Args)]
struct KeyArgs {
    /// File holding the cluster's credentials (`palaver up` creates `<data>/cluster.key`;
    /// `palaver keygen FILE` makes one); the variable PALAVER_KEY, if set, holds them instead.
    #[arg(
        long = "key",
        env = "PALAVER_KEY_FILE",
        default_value = "data/cluster.key"
    )]
    file: PathBuf,
}

impl KeyArgs {
    fn load(&self) -> anyhow::Result<palaver_auth::Credentials> {
        palaver_auth::Credentials::load(&self.file).with_context(|| {
            "this process needs the cluster's credentials: give --key FILE (or set PALAVER_KEY); \
             `palaver up` keeps them in <data>/cluster.key"
        })
    }
}

#[derive(Args)]
struct ReferenceArgs {
    /// Endpoint servers connect to.
    #[arg(long, env = "PALAVER_REFERENCE_BIND", default_value = "tcp://*:5560")]
    bind: String,
    /// Directory holding the ranks (`reference.db`).
    #[arg(long, env = "PALAVER_REFERENCE_DATA", default_value = "data/reference")]
    data: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct BrokerArgs {
    /// Endpoint clients connect to.
    #[arg(long, env = "PALAVER_BROKER_FRONTEND", default_value = "tcp://*:5555")]
    frontend: String,
    /// Endpoint servers connect to.
    #[arg(long, env = "PALAVER_BROKER_BACKEND", default_value = "tcp://*:5556")]
    backend: String,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct ProxyArgs {
    /// Endpoint publishers connect to.
    #[arg(long, env = "PALAVER_PROXY_XSUB", default_value = "tcp://*:5557")]
    xsub: String,
    /// Endpoint subscribers connect to.
    #[arg(long, env = "PALAVER_PROXY_XPUB", default_value = "tcp://*:5558")]
    xpub: String,
    /// Publications queued per subscriber before a slow one loses the excess: its memory cost
    /// is this many messages (ZeroMQ counts messages, not bytes).
    #[arg(long, env = "PALAVER_PROXY_SUBSCRIBER_HWM", default_value_t = palaver_infra::SUBSCRIBER_HWM)]
    subscriber_hwm: i32,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct ServerArgs {
    /// The server's name, unique in the cluster.
    #[arg(long, env = "PALAVER_SERVER_NAME", required_unless_present = "claim")]
    name: Option<Name>,
    /// Data directory (default `data/<name>`); it belongs to this server alone.
    #[arg(long, env = "PALAVER_SERVER_DATA", conflicts_with = "claim")]
    data: Option<PathBuf>,
    /// For identical replicas sharing one volume: take the first free slot under DIR (`DIR/s1`,
    /// `DIR/s2`…) as this server's name and data directory, held while it runs.
    #[arg(
        long,
        env = "PALAVER_SERVER_CLAIM",
        value_name = "DIR",
        conflicts_with = "name"
    )]
    claim: Option<PathBuf>,
    /// The broker's server-facing endpoint.
    #[arg(
        long = "broker",
        env = "PALAVER_SERVER_BROKER",
        default_value = "tcp://127.0.0.1:5556"
    )]
    broker_backend: String,
    /// The proxy's publisher-facing endpoint.
    #[arg(
        long = "pub",
        env = "PALAVER_SERVER_PUB",
        default_value = "tcp://127.0.0.1:5557"
    )]
    proxy_xsub: String,
    /// The proxy's subscriber-facing endpoint.
    #[arg(
        long = "sub",
        env = "PALAVER_SERVER_SUB",
        default_value = "tcp://127.0.0.1:5558"
    )]
    proxy_xpub: String,
    /// The reference service.
    #[arg(
        long,
        env = "PALAVER_REFERENCE",
        default_value = "tcp://127.0.0.1:5560"
    )]
    reference: String,
    /// This server's endpoint for the other servers; port `*` picks a free one.
    #[arg(long, env = "PALAVER_SERVER_PEER", default_value = "tcp://127.0.0.1:*")]
    peer: String,
    /// The peer address to give the others, when the bound one will not do (say, `--peer
    /// tcp://*:5570`).
    #[arg(long, env = "PALAVER_SERVER_ADVERTISE")]
    advertise: Option<String>,
    /// Start with a deliberately wrong clock, this many milliseconds off.
    #[arg(
        long,
        env = "PALAVER_CLOCK_SKEW_MS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    clock_skew_ms: i64,
    /// Seconds a session may go unused before it expires (default a week).
    #[arg(long, env = "PALAVER_SESSION_IDLE", default_value_t = palaver_server::Policy::default().session_idle)]
    session_idle: f64,
    /// Seconds after a client's last beat when its person counts as offline.
    #[arg(long, env = "PALAVER_PRESENCE_TIMEOUT", default_value_t = palaver_server::Policy::default().presence_timeout)]
    presence_timeout: f64,
    /// How many servers the cluster has at least. Names, passwords and channels are decided
    /// by a majority of the larger of this and the servers the reference has ranked, so a
    /// server that starts before the others are known never decides alone.
    #[arg(long, env = "PALAVER_CLUSTER_SIZE", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    cluster_size: u16,
    /// For fault tests: die (abort) right after this server's first prepare of a two-phase
    /// delete is stored and the messages that follow it are sent.
    #[arg(long, hide = true)]
    crash_after_prepare: bool,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct ClientArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Who to log in as (asked for when missing and stdin is a terminal).
    #[arg(long, short)]
    user: Option<Name>,
    /// This client's name among the person's devices: each device gets everything that
    /// arrived while it was away, once.
    #[arg(long, env = "PALAVER_DEVICE", default_value = "terminal")]
    device: String,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Args)]
struct WebArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Address and port to serve the web client and the WebSocket on.
    #[arg(long, env = "PALAVER_WEB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// WebSocket connections from one address at once.
    #[arg(long, default_value_t = 16)]
    per_address: usize,
    /// The largest message a browser may send, in bytes (at most 1 MiB).
    #[arg(long, default_value_t = 64 << 10)]
    max_message: usize,
    /// Requests a second from one browser.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Requests one browser may make at once, beyond the rate.
    #[arg(long, default_value_t = 40.0)]
    burst: f64,
    /// Messages waiting for one browser before it is dropped as too slow.
    #[arg(long, default_value_t = 4096)]
    queue: usize,
}

#[derive(Args)]
struct IrcArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Address and port to take IRC connections on.
    #[arg(long, env = "PALAVER_IRC_LISTEN", default_value = "127.0.0.1:6667")]
    listen: std::net::SocketAddr,
    /// The name the gateway gives itself in its replies.
    #[arg(long, env = "PALAVER_IRC_NAME", default_value = "palaver")]
    name: String,
    /// IRC connections from one address at once.
    #[arg(long, env = "PALAVER_IRC_PER_ADDRESS", default_value_t = 16)]
    per_address: usize,
    /// Lines one client may send in a second before it is cut off.
    #[arg(long, env = "PALAVER_IRC_FLOOD", default_value_t = 100)]
    flood: usize,
    /// Requests a second from one client.
    #[arg(long, env = "PALAVER_IRC_RATE", default_value_t = 20.0)]
    rate: f64,
    /// Requests one client may make at once, beyond the rate.
    #[arg(long, env = "PALAVER_IRC_BURST", default_value_t = 40.0)]
    burst: f64,
    /// Lines waiting for one client before it is dropped as too slow.
    #[arg(long, env = "PALAVER_IRC_QUEUE", default_value_t = 4096)]
    queue: usize,
    /// Hold connections from this machine (a loopback address) to none of the limits above
    /// but --queue: for bouncers, bridges and bots beside the gateway. `palaver up` sets it,
    /// since its cluster takes requests from this machine without limits anyway.
    #[arg(long, env = "PALAVER_IRC_TRUST_LOOPBACK")]
    trust_loopback: bool,
    /// A certificate chain (PEM) for TLS connections; with --tls-key.
    #[arg(long, env = "PALAVER_IRC_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "PALAVER_IRC_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Address and port to take TLS connections on, once --tls-cert and --tls-key are given.
    #[arg(long, env = "PALAVER_IRC_TLS_LISTEN", default_value = "127.0.0.1:6697")]
    tls_listen: std::net::SocketAddr,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Who to log in as (without it, the connect screen asks, with the last name filled in).
    #[arg(long, short)]
    user: Option<Name>,
    /// This client's name among the person's devices: each device gets everything that
    /// arrived while it was away, once.
    #[arg(long, env = "PALAVER_DEVICE", default_value = "chat")]
    device: String,
    #[command(flatten)]
    password: PasswordArgs,
    /// Show the screen on made-up data, with no cluster (for a look, or a screenshot).
    #[arg(long)]
    demo: bool,
}

/// An account's password, for a name that has one: from the environment or a file, never
/// from the command line (where other users of the machine could read it).
#[derive(Args)]
struct PasswordArgs {
    /// A file whose first line is the password (else the environment's `PALAVER_PASSWORD`).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

impl PasswordArgs {
    fn load(&self) -> anyhow::Result<Option<String>> {
        if let Some(f) = &self.password_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the password file {}", f.display()))?;
            let line = text.lines().next().unwrap_or("").to_owned();
            return Ok(Some(line));
        }
        Ok(std::env::var("PALAVER_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()))
    }
}

#[derive(Args)]
struct BotArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Name to log in as (default: a random `bot-NNNN`).
    #[arg(long)]
    name: Option<Name>,
    /// Pause between two messages, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Messages sent to a channel before picking another.
    #[arg(long, default_value_t = 10)]
    burst: u32,
    /// Stop after this many messages (default: never).
    #[arg(long)]
    count: Option<u64>,
    /// Bytes of text per message (default: a short sentence).
    #[arg(long)]
    size: Option<usize>,
    /// With a password (from a file, or `PALAVER_PASSWORD`), the bot's name is an account:
    /// registered on first use, then logged in with it.
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Args)]
struct ListenArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Topics to follow (default: `servers` and every channel, including new ones).
    #[arg(long = "topic", short)]
    topics: Vec<String>,
    /// Print each publication as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// What to measure: `publish` (clients post, nobody listens), `fanout` (clients post to
    /// channels that `--subscribers` sockets follow), `dm` (pairs of clients write to each
    /// other, each following its own name), `chat` (paced bots posting, writing privately and
    /// reading, each following its name and three channels), `irc-idle` (starts an IRC
    /// gateway, opens --clients idle connections to it, default 1,000, each registered and in
    /// one room, and says what they cost the gateway in memory).
    #[arg(long, value_enum, default_value_t = Workload::Publish)]
    workload: Workload,
    /// Start a local cluster with this many servers for the run (free ports, temporary data)
    /// instead of using the one at `--broker`/`--sub`.
    #[arg(long, num_args = 0..=1, default_missing_value = "3", value_name = "SERVERS")]
    spawn: Option<usize>,
    /// Concurrent clients (default: 1; 2 for `dm`; 100 bots for `chat`).
    #[arg(long)]
    clients: Option<usize>,
    /// Requests each client keeps in flight (1: it waits for each reply before the next).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Requests per second per client, in a Poisson stream (default: as fast as replies
    /// allow; 2 for `chat`).
    #[arg(long)]
    rate: Option<f64>,
    /// Subscribers of the channels in `fanout`.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Channels to spread posts over (default: 1; 10 for `chat`).
    #[arg(long)]
    channels: Option<usize>,
    /// How long to measure, in seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 10.0, conflicts_with = "count")]
    duration: f64,
    /// Requests per client instead of a duration; all of them are measured.
    #[arg(long)]
    count: Option<u64>,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Workload {
    Publish,
    Fanout,
    Dm,
    Chat,
    IrcIdle,
}

#[derive(Args)]
struct AdminArgs {
    /// The reference service.
    #[arg(
        long,
        env = "PALAVER_REFERENCE",
        default_value = "tcp://127.0.0.1:5560"
    )]
    reference: String,
    #[command(flatten)]
    key: KeyArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Every server the reference knows: rank, address, alive, who is coordinator.
    Servers,
    /// Each live server's corrected clock and its offset from the others.
    Clocks,
    /// Ask a server (default: the lowest-ranked live one) to start an election.
    Election { server: Option<String> },
    /// Shift a server's clock by MS milliseconds (synchronisation will pull it back).
    #[command(allow_hyphen_values = true)]
    SetClock { server: String, ms: i64 },
    /// One screen on the whole cluster.
    Status,
    /// Per server: its event count, its version vector and a digest of everything it holds.
    Digest,
    /// Exit 0 only when every live server holds the same events (reading again for up to 3 s
    /// while they differ); otherwise say how they differ.
    Verify,
    /// Remove a server that is gone for good (stopped, its disk lost): it no longer votes on
    /// claims, so the others' majority is counted without it. Refused while it is alive.
    Forget {
        /// The server's name.
        server: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Client(_) | Command::Listen(_) | Command::Bench(_) | Command::Ping(_)
    );
    // The full-screen client owns the terminal: a log line would tear the screen.
    let chat = matches!(cli.command, Command::Chat(_));
    init_logging(if chat {
        "off"
    } else if quiet {
        "warn"
    } else {
        "info"
    });
    match cli.command {
        Command::Up(a) => up::run(
            &up::Options {
                servers: a.servers,
                data: a.data,
                host: a.host,
                base_port: a.base_port,
                skew_ms: a.skew_ms,
                web: a.web,
                irc: a.irc,
                tcp_inside: a.tcp_inside,
            },
            &on_signal()?,
        ),
        Command::Reference(a) => Ok(palaver_infra::run_reference(
            &a.bind,
            &a.data,
            &a.key.load()?,
            &on_signal()?,
        )?),
        Command::Broker(a) => Ok(palaver_infra::run_broker(
            &a.frontend,
            &a.backend,
            &a.key.load()?,
            &on_signal()?,
        )?),
        Command::Proxy(a) => Ok(palaver_infra::run_proxy(
            &a.xsub,
            &a.xpub,
            a.subscriber_hwm.max(1),
            &a.key.load()?,
            &on_signal()?,
        )?),
        Command::Keygen { file, keep } => {
            if keep && palaver_auth::Credentials::load(&file).is_ok() {
                println!("{} already holds cluster credentials; kept", file.display());
                return Ok(());
            }
            palaver_auth::Credentials::generate()?.save(&file)?;
            println!("cluster credentials written to {} (readable by you only); give every process of the cluster --key {0}", file.display());
            Ok(())
        }
        Command::Server(a) => {
            // Held until the server stops: the slot is ours while the lock is.
            let claim = match &a.claim {
                Some(dir) => Some(palaver_server::claim::claim(dir).with_context(|| {
                    format!("cannot take a server slot under {}", dir.display())
                })?),
                None => None,
            };
            let (name, data_dir) = match (&claim, a.name) {
                (Some(c), _) => (c.name.clone(), c.dir.clone()),
                (None, Some(name)) => {
                    let dir = a
                        .data
                        .unwrap_or_else(|| PathBuf::from("data").join(name.as_str()));
                    (name, dir)
                }
                (None, None) => anyhow::bail!("give --name or --claim"),
            };
            if claim.is_some() {
                tracing::info!(server = %name, data = %data_dir.display(), "took a free slot");
            }
            let cfg = palaver_server::Config {
                name,
                data_dir,
                broker_backend: a.broker_backend,
                proxy_xsub: a.proxy_xsub,
                proxy_xpub: a.proxy_xpub,
                reference: a.reference,
                peer: a.peer,
                advertise: a.advertise,
                clock_skew_ms: a.clock_skew_ms,
                credentials: a.key.load()?,
                policy: palaver_server::Policy {
                    session_idle: positive(a.session_idle, "--session-idle")?,
                    presence_timeout: positive(a.presence_timeout, "--presence-timeout")?,
                },
                crash_after_prepare: a.crash_after_prepare,
                cluster_size: usize::from(a.cluster_size),
            };
            palaver_server::run(&cfg, &on_signal()?).context("server failed")
        }
        Command::Client(a) => client::run(&client::Options {
            password: a.password.load()?,
            broker: a.endpoints.broker,
            sub: a.endpoints.sub,
            user: a.user,
            device: a.device,
        }),
        Command::Web(a) => {
            let mut opts =
                palaver_web::Options::new(a.listen, &a.endpoints.broker, &a.endpoints.sub);
            opts.per_address = a.per_address;
            opts.max_message = a.max_message.clamp(1, 1 << 20);
            opts.rate = gateway_rate(a.rate, a.burst)?;
            opts.queue = a.queue;
            palaver_web::run(&opts, &on_signal()?)
        }
        Command::Irc(a) => {
            let mut opts =
                palaver_irc::Options::new(a.listen, &a.endpoints.broker, &a.endpoints.sub);
            anyhow::ensure!(
                !a.name.is_empty() && !a.name.contains([' ', ':', '!', '@']),
                "--name must be one word without `:`, `!` or `@`"
            );
            opts.server_name = a.name;
            opts.per_address = a.per_address;
            opts.flood = a.flood.max(1);
            opts.rate = gateway_rate(a.rate, a.burst)?;
            opts.queue = a.queue;
            opts.trust_loopback = a.trust_loopback;
            if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
                opts.tls = Some(palaver_irc::Tls {
                    listen: a.tls_listen,
                    cert,
                    key,
                });
            }
            palaver_irc::run(&opts, &on_signal()?)
        }
        Command::Chat(a) => {
            if a.demo {
                return palaver_tui::demo();
            }
            palaver_tui::run(palaver_tui::Start {
                password: a.password.load()?,
                broker: a.endpoints.broker,
                sub: a.endpoints.sub,
                user: a.user,
                device: a.device,
            })
        }
        Command::Bot(a) => bot::run(
            &bot::Options {
                broker: a.endpoints.broker,
                sub: a.endpoints.sub,
                name: a.name,
                interval: Duration::from_millis(a.interval_ms),
                burst: a.burst,
                count: a.count,
                size: a.size,
                password: a.password.load()?,
            },
            &on_signal()?,
        ),
        Command::Listen(a) => listen::run(
            &listen::Options {
                broker: a.endpoints.broker,
                sub: a.endpoints.sub,
                topics: a.topics,
                json: a.json,
            },
            &on_signal()?,
        ),
        Command::Bench(a) => {
            let workload = match a.workload {
                Workload::Publish => bench::Workload::Publish,
                Workload::Fanout => bench::Workload::Fanout,
                Workload::Dm => bench::Workload::Dm,
                Workload::Chat => bench::Workload::Chat,
                Workload::IrcIdle => {
                    return bench::idle::run(
                        &a.endpoints.broker,
                        &a.endpoints.sub,
                        a.spawn,
                        a.clients.unwrap_or(1000).max(1),
                        a.json,
                    )
                }
            };
            let chat = workload == bench::Workload::Chat;
            bench::run(&bench::Options {
                workload,
                broker: a.endpoints.broker,
                sub: a.endpoints.sub,
                spawn: a.spawn,
                clients: a
                    .clients
                    .unwrap_or(match workload {
                        bench::Workload::Dm => 2,
                        bench::Workload::Chat => 100,
                        _ => 1,
                    })
                    .max(1),
                window: a.window.max(1),
                rate: a.rate.unwrap_or(if chat { 2.0 } else { 0.0 }),
                length: match a.count {
                    Some(n) => bench::Length::Count(n),
                    None => bench::Length::Duration(Duration::from_secs_f64(a.duration.max(0.1))),
                },
                size: a.size,
                channels: a.channels.unwrap_or(if chat { 10 } else { 1 }).max(1),
                subscribers: a.subscribers,
                json: a.json,
            })
        }
        Command::Ping(a) => {
            let (target, internal) = match a.role {
                PingRole::Broker { frontend } => {
                    (ping::Target::Broker { endpoint: frontend }, false)
                }
                PingRole::Proxy { xpub } => (ping::Target::Proxy { endpoint: xpub }, false),
                PingRole::Reference { bind } => (ping::Target::Reference { endpoint: bind }, true),
                PingRole::Server { peer } => (ping::Target::Server { endpoint: peer }, true),
                PingRole::Web { listen } => (ping::Target::Web { addr: listen }, false),
                PingRole::Irc { listen } => (ping::Target::Irc { addr: listen }, false),
            };
            let credentials = if internal { Some(a.key.load()?) } else { None };
            ping::run(&target, credentials.as_ref())
        }
        Command::Admin(a) => {
            let command = match a.command {
                AdminCommand::Servers => admin::Command::Servers,
                AdminCommand::Clocks => admin::Command::Clocks,
                AdminCommand::Election { server } => admin::Command::Election { server },
                AdminCommand::SetClock { server, ms } => admin::Command::SetClock { server, ms },
                AdminCommand::Status => admin::Command::Status,
                AdminCommand::Digest => admin::Command::Digest,
                AdminCommand::Verify => admin::Command::Verify,
                AdminCommand::Forget { server } => admin::Command::Forget { server },
            };
            admin::run(&a.reference, &a.key.load()?, &command)
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// A shutdown flag raised by Ctrl-C (SIGINT) or SIGTERM.
fn on_signal() -> anyhow::Result<Shutdown> {
    let shutdown = Shutdown::new();
    let flag = shutdown.clone();
    ctrlc::set_handler(move || flag.trigger()).context("cannot install the signal handler")?;
    Ok(shutdown)
}

/// `secs`, if it is a positive number of seconds.
fn positive(secs: f64, flag: &str) -> anyhow::Result<f64> {
    if secs.is_finite() && secs > 0.0 {
        Ok(secs)
    } else {
        anyhow::bail!("{flag} must be a positive number of seconds")
    }
}

/// A gateway's `--rate` and `--burst`, checked.
fn gateway_rate(rate: f64, burst: f64) -> anyhow::Result<palaver_web::Rate> {
    for (value, flag) in [(rate, "--rate"), (burst, "--burst")] {
        anyhow::ensure!(
            value.is_finite() && value > 0.0,
            "{flag} must be a positive number"
        );
    }
    Ok(palaver_web::Rate {
        per_second: rate,
        burst: burst.max(1.0),
    })
}
