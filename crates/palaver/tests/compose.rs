//! The `docker compose` deployment, run for real and as the README says to run it: the image
//! from the Dockerfile (its `base` stage, with this build's binary), the compose file users
//! get, a real Docker engine.
//!
//! It needs an engine (`DOCKER_HOST`) that holds the Dockerfile's base image, and `docker
//! compose` on the `PATH`: `scripts/deploy-test.sh` installs and starts one, builds the base
//! image and runs this (`cargo test -p palaver --features deploy-tests --test compose`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::deploy::{self, Acked};
use common::tmux::Tmux;
use common::{bin, name};
use palaver_client::{Connection, SharedClock, Subscriber};
use palaver_testkit::wait_until;

/// How long a fault may take to heal: `admin verify` passes within this once it ends.
const HEAL: Duration = Duration::from_secs(15);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The commands of the README's container section, in order.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Run it in containers"))
        .expect("the README has a section `Run it in containers`");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has a sh block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The README's command that starts with `start`, word for word.
fn readme(start: &str) -> String {
    readme_commands()
        .into_iter()
        .find(|c| c.starts_with(start))
        .unwrap_or_else(|| panic!("the README gives no `{start}…` command"))
}

/// One compose project of the test's own: its own name, its own host ports. Dropping it takes
/// down everything it started, volumes included.
struct Deployment {
    project: String,
    broker_port: u16,
    sub_port: u16,
    web_port: u16,
    irc_port: u16,
}

impl Deployment {
    fn new() -> Deployment {
        // Ports free on this host, from the layout the other tests' clusters take theirs from.
        let layout = palaver_supervise::Layout::free(0).expect("free ports");
        let port = |endpoint: String| -> u16 {
            endpoint
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port")
        };
        Deployment {
            project: format!("palaver-test-{}", std::process::id()),
            broker_port: port(layout.broker()),
            sub_port: port(layout.proxy_xpub()),
            web_port: port(layout.web()),
            irc_port: port(layout.irc()),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("COMPOSE_PROJECT_NAME".into(), self.project.clone()),
            ("PALAVER_BROKER_PORT".into(), self.broker_port.to_string()),
            ("PALAVER_SUB_PORT".into(), self.sub_port.to_string()),
            ("PALAVER_WEB_PORT".into(), self.web_port.to_string()),
            ("PALAVER_IRC_PORT".into(), self.irc_port.to_string()),
        ];
        for k in ["DOCKER_HOST", "PATH"] {
            if let Ok(v) = std::env::var(k) {
                env.push((k.into(), v));
            }
        }
        env
    }

    /// Runs a shell command line in the repository, as a person would type it there.
    fn sh(&self, line: &str) -> Output {
        Command::new("bash")
            .args(["-c", line])
            .current_dir(repo())
            .envs(self.env())
            .output()
            .expect("bash runs")
    }

    /// Runs `line` and returns what it printed; panics with its output if it fails.
    fn ok(&self, line: &str) -> String {
        let out = self.sh(line);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// The containers of `service`, or of every service for "".
    fn containers(&self, service: &str) -> Vec<String> {
        self.ok(format!("docker compose ps -q {service}").trim_end())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every service's containers: the keys made (exited 0), the rest running and healthy.
    fn healthy(&self) -> Result<(), String> {
        let ids = self.containers("");
        if ids.len() < 9 {
            return Err(format!("{} containers", ids.len()));
        }
        let states = self.ok(&format!(
            "docker inspect -f '{{{{.Name}}}} {{{{.State.Status}}}} {{{{.State.ExitCode}}}} \
             {{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{end}}}}' {}",
            ids.join(" ")
        ));
        let bad: Vec<&str> = states
            .lines()
            .filter(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let keys = w[0].contains("_keys_") || w[0].contains("-keys-");
                !(if keys {
                    w.get(1) == Some(&"exited") && w.get(2) == Some(&"0")
                } else {
                    w.get(1) == Some(&"running") && w.get(3) == Some(&"healthy")
                })
            })
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }

    fn await_healthy(&self, within: Duration) {
        let mut last = String::new();
        let ok = wait_until(within, || match self.healthy() {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        });
        assert!(
            ok,
            "not every service became healthy:\n{last}\n{}",
            String::from_utf8_lossy(&self.sh("docker compose logs --no-color --tail 10").stdout)
        );
    }

    fn logs(&self, service: &str) -> String {
        self.ok(&format!("docker compose logs --no-color {service}"))
    }

    /// `palaver admin verify` in the reference's container: every live server, and all
    /// three of them, hold the same events.
    fn verify(&self) -> Result<String, String> {
        deploy::verified(&self.sh("docker compose exec -T reference palaver admin verify"))
    }

    fn verify_within(&self, within: Duration, after: &str) {
        deploy::verify_within(within, after, || self.verify());
    }

    /// The server every live server takes for coordinator.
    fn coordinator(&self) -> String {
        let out = self.ok("docker compose exec -T reference palaver admin servers");
        out.lines()
            .find_map(|l| l.strip_prefix("coordinator: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no coordinator in:\n{out}"))
            .to_owned()
    }

    /// The container whose server took the name `server`.
    fn container_of(&self, server: &str) -> String {
        let said = format!("took a free slot server={server} ");
        self.containers("server")
            .into_iter()
            .find(|c| {
                let out = self.sh(&format!("docker logs {c} 2>&1"));
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .rfind(|l| l.contains("took a free slot"))
                    .is_some_and(|l| l.contains(&said))
            })
            .unwrap_or_else(|| panic!("no server container says it is {server}"))
    }

    /// What each bot was told was stored.
    fn acknowledged(&self) -> Acked {
        deploy::acknowledged(&self.logs("bot"))
    }

    /// How many posts the bots have been told were stored.
    fn posted(&self) -> usize {
        deploy::count(&self.acknowledged())
    }

    /// Waits until the bots have posted `more` beyond what they had: the cluster serves them.
    fn bots_post(&self, more: usize, after: &str) {
        let before = self.posted();
        let ok = wait_until(Duration::from_secs(30), || self.posted() >= before + more);
        assert!(ok, "after {after}, the bots posted no more than {before}");
    }

    /// Each server's data directory, on the engine's disk (the `servers` volume).
    fn server_dirs(&self) -> Vec<PathBuf> {
        let volume = format!("{}_servers", self.project);
        let mount = self.ok(&format!(
            "docker volume inspect -f '{{{{.Mountpoint}}}}' {volume}"
        ));
        let mount = PathBuf::from(mount.trim());
        ["s1", "s2", "s3"].iter().map(|s| mount.join(s)).collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let out = self.sh("docker compose --profile tools down -v --remove-orphans -t 5");
        if !out.status.success() {
            eprintln!(
                "could not take the deployment down:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Builds `palaver:latest`: the Dockerfile's `base` stage with this build's binary added
/// (stripped of debug information, as the source build strips it), the way its `runtime` stage
/// adds the binary that its `build` stage compiles.
fn build_image(d: &Deployment) {
    d.ok("docker build -q --target base -t palaver-base:test .");
    let ctx = tempfile::tempdir().unwrap();
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(ctx.path().join("palaver"))
        .arg(bin())
        .status()
        .expect("strip runs");
    assert!(status.success());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM palaver-base:test\nCOPY palaver /usr/local/bin/palaver\nUSER palaver\n",
    )
    .unwrap();
    d.ok(&format!(
        "docker build -q -t palaver:latest {}",
        ctx.path().display()
    ));
}

#[test]
fn the_compose_deployment_comes_up_heals_from_faults_and_keeps_its_data() {
    let d = Deployment::new();
    build_image(&d);

    // Up, as the README says; every service healthy.
    d.ok(&readme("docker compose up"));
    d.await_healthy(Duration::from_secs(120));
    let ps = d.ok(&readme("docker compose ps"));
    assert!(ps.contains("healthy"), "{ps}");
    // The web client, on this host's published port.
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], d.web_port));
    let page = common::http_get(web, "/");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("<html"),
        "{page}"
    );
    // The IRC gateway, on this host's published port: it answers a PING before registration.
    let irc = std::net::SocketAddr::from(([127, 0, 0, 1], d.irc_port));
    let pong = common::irc_ping(irc, "compose");
    assert!(pong.ends_with("PONG palaver :compose"), "{pong}");

    // The bots post; the listener sees their posts. (Its hearing the coordinator's
    // announcement is checked below, when the coordinator is killed and another elected.)
    d.bots_post(10, "start");
    let bots: BTreeSet<String> = d.acknowledged().keys().map(|(b, _)| b.clone()).collect();
    assert_eq!(bots.len(), 2, "both bots post: {bots:?}");
    let heard = wait_until(Duration::from_secs(30), || {
        let log = d.logs("listener");
        bots.iter().all(|b| log.contains(&format!("from {b}")))
    });
    assert!(heard, "the listener:\n{}", d.logs("listener"));

    // A client on this host and one in a container (the README's command, in a terminal)
    // talk to each other.
    let ctx = zmq::Context::new();
    let broker = format!("tcp://127.0.0.1:{}", d.broker_port);
    let mut ana = Connection::open(&ctx, &broker, SharedClock::new()).unwrap();
    ana.login(&name("ana"))
        .expect("a client on the host logs in");
    let mut inbox = Subscriber::open(
        &ctx,
        &format!("tcp://127.0.0.1:{}", d.sub_port),
        SharedClock::new(),
    )
    .unwrap();
    inbox.subscribe("ana").unwrap();
    let t = Tmux::new("palaver-compose");
    let cwd = repo().display().to_string();
    t.start(
        "bob",
        &format!("cd {cwd} && {}", readme("docker compose run --rm client")),
        &d.env(),
    );
    t.expect("bob", "your name:");
    t.type_line("bob", "bob");
    let online = wait_until(Duration::from_secs(30), || {
        ana.online()
            .is_ok_and(|o| o.iter().any(|(who, _)| who == "bob"))
    });
    assert!(online, "bob never came online:\n{}", t.screen("bob"));
    ana.message(&name("ana"), &name("bob"), "hello from the host")
        .unwrap();
    t.expect("bob", "hello from the host");
    t.type_line("bob", "/msg ana hello from the container");
    let got = wait_until(Duration::from_secs(30), || {
        matches!(inbox.recv_timeout(Duration::from_millis(200)), Ok(Some(r))
            if r.publication.envelope.data.opt_str("message").ok().flatten()
                == Some("hello from the container"))
    });
    assert!(got, "ana never got bob's message:\n{}", t.screen("bob"));
    t.type_line("bob", "/quit");

    // Faults through the engine. After each, every server holds the same events within 15 s
    // and the bots go on posting.
    let verified = wait_until(HEAL, || {
        d.sh(&readme("docker compose run --rm admin verify"))
            .status
            .success()
    });
    assert!(verified, "the README's verify never passed");
    let servers = d.containers("server");
    assert_eq!(servers.len(), 3);

    // The coordinator's container is killed: another server is elected and the listener hears
    // it; started again, it takes its slot back.
    let announced = || d.logs("listener").matches("coordinator is now s").count();
    let before = announced();
    let coordinator = d.coordinator();
    let victim = d.container_of(&coordinator);
    d.ok(&format!("docker kill {victim}"));
    d.bots_post(4, "the coordinator killed");
    let heard = wait_until(Duration::from_secs(30), || announced() > before);
    assert!(
        heard,
        "no announcement after the coordinator died:\n{}",
        d.logs("listener")
    );
    d.ok(&format!("docker start {victim}"));
    d.verify_within(HEAL, "the coordinator killed and started again");
    assert_eq!(d.container_of(&coordinator), victim);
    d.bots_post(4, "the coordinator killed and started again");
    let servers: Vec<String> = servers.into_iter().filter(|c| *c != victim).collect();

    let network = format!("{}_default", d.project);
    d.ok(&format!(
        "docker network disconnect {network} {}",
        servers[0]
    ));
    // The fault lasts 10 s: time is what it is made of, not a condition to wait for.
    std::thread::sleep(Duration::from_secs(10));
    d.ok(&format!("docker network connect {network} {}", servers[0]));
    d.verify_within(HEAL, "a server cut off for 10 s");
    d.bots_post(4, "a server cut off for 10 s");

    d.ok("docker compose restart broker");
    d.verify_within(HEAL, "the broker restarted");
    d.bots_post(4, "the broker restarted");

    d.ok("docker compose restart proxy");
    d.verify_within(HEAL, "the proxy restarted");
    d.bots_post(4, "the proxy restarted");

    // Nothing a bot saw acknowledged is missing, on any server's disk.
    d.ok("docker compose pause bot");
    d.verify_within(HEAL, "the bots paused");
    let acked = d.acknowledged();
    let kept = deploy::all_on_disk(&d.server_dirs(), &acked);
    eprintln!("{kept} acknowledged posts, all on every server");

    // Down and up again: the volumes keep everything; each replica finds its own name.
    let before = d.verify().expect("verified");
    d.ok("docker compose unpause bot");
    d.ok(&readme("docker compose down"));
    assert!(d.containers("").is_empty());
    d.ok(&readme("docker compose up"));
    d.await_healthy(Duration::from_secs(120));
    d.verify_within(HEAL, "down and up");
    let servers = d.ok("docker compose exec -T reference palaver admin servers");
    for s in ["s1", "s2", "s3"] {
        assert!(servers.contains(s), "{servers}");
    }
    assert_eq!(deploy::all_on_disk(&d.server_dirs(), &acked), kept);
    let held = |text: &str| -> u64 {
        text.split_whitespace()
            .skip_while(|w| *w != "same")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("an event count")
    };
    let after = d.verify().expect("verified");
    assert!(
        held(&after) >= held(&before),
        "events before down: {before}; after up: {after}"
    );
}
