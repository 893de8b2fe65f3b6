//! Real IRC clients, driven in a pseudo-terminal as a person would drive them: irssi and
//! WeeChat (Debian's packages, which scripts/test.sh installs) connect to `palaver up --irc`,
//! log in with SASL to accounts made with the line client, join a room and see its recent
//! posts, chat both ways with a person on the line client, write privately both ways, and
//! leave. The test reads every screen.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::bin;
use common::tmux::Tmux;
use palaver_supervise::Layout;
use palaver_testkit::Proc;

/// `palaver client` for the cluster `layout` describes, as `user`.
fn line_client(layout: &Layout, user: &str) -> String {
    format!(
        "{} client --broker {} --sub {} --user {user}",
        bin().display(),
        layout.broker(),
        layout.proxy_xpub()
    )
}

/// Makes `user` an account with `password`, with the line client.
fn register(layout: &Layout, user: &str, password: &str) {
    let mut cmd = Command::new(bin());
    cmd.args(["client", "--broker", &layout.broker()]).args([
        "--sub",
        &layout.proxy_xpub(),
        "--user",
        user,
    ]);
    let out = common::run_with_input(&mut cmd, &format!("/register {password}\n/quit\n"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(&format!("{user} is yours now")),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// irssi's configuration: one network, Palaver at `irc`, with SASL PLAIN as `nick`.
fn irssi_config(home: &Path, irc: &str, nick: &str, password: &str) {
    let (host, port) = irc.rsplit_once(':').unwrap();
    std::fs::create_dir_all(home).unwrap();
    let config = format!(
        r#"servers = (
  {{ address = "{host}"; chatnet = "palaver"; port = "{port}"; use_tls = "no"; autoconnect = "yes"; }}
);
chatnets = {{
  palaver = {{ type = "IRC"; sasl_mechanism = "PLAIN"; sasl_username = "{nick}"; sasl_password = "{password}"; }};
}};
settings = {{ core = {{ real_name = "{nick}"; user_name = "{nick}"; nick = "{nick}"; }}; }};
"#
    );
    std::fs::write(home.join("config"), config).unwrap();
}

/// `session`, logged in as `nick`, joins `#den` and is shown its first post, then chats both
/// ways with cy on the line client. `said` is how the client shows a line of someone's.
fn join_and_chat(tmux: &Tmux, session: &str, nick: &str, said: &dyn Fn(&str, &str) -> String) {
    tmux.type_line(session, "/join #den");
    tmux.expect(session, &said("cy", "a post from before anyone came"));
    tmux.expect("cy", &format!("{nick} joined"));
    let hello = format!("hello to {nick} from the line client");
    tmux.type_line("cy", &hello);
    tmux.expect(session, &said("cy", &hello));
    tmux.type_line(session, &format!("hello from {session}"));
    tmux.expect("cy", &format!("#den <{nick}> hello from {session}"));
}

/// `session`, logged in as `nick`, writes privately with cy both ways, then parts `#den` and
/// quits.
fn write_privately_and_leave(
    tmux: &Tmux,
    session: &str,
    nick: &str,
    said: &dyn Fn(&str, &str) -> String,
) {
    tmux.type_line(session, &format!("/msg cy psst from {session}"));
    tmux.expect("cy", &format!("*{nick} → cy* psst from {session}"));
    tmux.type_line("cy", &format!("/msg {nick} psst back to {session}"));
    tmux.expect("cy", &format!("sent to {nick}"));
    // A private message opens a query window (a buffer); the client shows it once chosen.
    tmux.type_line(session, "/query cy");
    tmux.expect(session, &said("cy", &format!("psst back to {session}")));
    tmux.type_line(session, "/part #den");
    tmux.expect("cy", &format!("#den: {nick} left"));
    tmux.type_line(session, "/quit");
}

#[test]
fn irssi_and_weechat_chat_with_the_line_client_through_palaver_up_irc() {
    for program in ["irssi", "weechat"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{program} is needed: scripts/test.sh installs it");
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::free(3).unwrap();
    let irc = layout.irc();
    let args: Vec<String> = [
        "up",
        "--base-port",
        &layout.base.to_string(),
        "--data",
        &dir.path().join("data").display().to_string(),
        "--irc",
        &irc,
    ]
    .map(str::to_owned)
    .to_vec();
    let mut up = Proc::spawn("up", &bin(), &args, &dir.path().join("up.log"));
    assert!(up.await_ready(Duration::from_secs(30)), "{}", up.log());
    register(&layout, "ana", "ana-secret");
    register(&layout, "bea", "bea-secret");

    // Cy, on the line client, makes the room and posts before anyone else comes.
    let tmux = Tmux::new("palaver-irc-clients");
    tmux.start("cy", &line_client(&layout, "cy"), &[]);
    tmux.expect("cy", "logged in as cy");
    tmux.type_line("cy", "/create den");
    tmux.expect("cy", "created");
    tmux.type_line("cy", "/join den");
    tmux.expect("cy", "joined #den");
    tmux.type_line("cy", "a post from before anyone came");
    tmux.expect("cy", "<cy> a post from before anyone came");

    // irssi, logged in with SASL to the account the line client made.
    let home = dir.path().join("irssi");
    irssi_config(&home, &irc, "ana", "ana-secret");
    tmux.start("irssi", &format!("irssi --home={}", home.display()), &[]);
    tmux.expect("irssi", "SASL authentication succeeded");
    tmux.expect("irssi", "Welcome to Palaver, ana");
    // irssi shows `<cy>`, or `<@cy>` in the room cy owns.
    let irssi = |who: &str, text: &str| format!("{who}> {text}");
    join_and_chat(&tmux, "irssi", "ana", &irssi);
    write_privately_and_leave(&tmux, "irssi", "ana", &irssi);

    // WeeChat, the same way, as bea.
    let wee = dir.path().join("weechat");
    let connect = format!(
        "/server add palaver {} -notls -sasl_mechanism=plain -sasl_username=bea \
         -sasl_password=bea-secret -nicks=bea -username=bea -realname=bea;/connect palaver",
        irc.replace(':', "/")
    );
    tmux.start(
        "weechat",
        &format!("weechat --dir {} -r '{connect}'", wee.display()),
        &[],
    );
    tmux.expect("weechat", "You are now logged in as bea");
    let weechat = |who: &str, text: &str| format!("{who} | {text}");
    join_and_chat(&tmux, "weechat", "bea", &weechat);
    // The room's recent posts, irssi's among them.
    tmux.expect("weechat", "ana | hello from irssi");
    tmux.expect("weechat", "bea | hello from weechat");
    // What the README shows (cargo test … -- --nocapture prints it).
    println!("{}", tmux.screen("weechat"));
    write_privately_and_leave(&tmux, "weechat", "bea", &weechat);
    assert!(
        up.stop(Duration::from_secs(15)),
        "up stops cleanly:\n{}",
        up.log()
    );
}
