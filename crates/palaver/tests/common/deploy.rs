//! What the deployment tests (compose, hosts) check the same way: the posts a bot was told
//! were stored, found on every server's disk, and `palaver admin verify` passing in time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use palaver_proto::Conversation;
use palaver_testkit::wait_until;

/// Posts a bot was told were stored: (bot, channel) → the numbers of its posts.
pub type Acked = BTreeMap<(String, String), BTreeSet<u64>>;

/// Reads a bot's `posted bot=… channel=… n=…` lines out of `log`.
pub fn acknowledged(log: &str) -> Acked {
    let mut acked = Acked::new();
    for line in log.lines().filter(|l| l.contains(" posted ")) {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_owned)
        };
        if let (Some(bot), Some(channel), Some(n)) = (field("bot="), field("channel="), field("n="))
        {
            acked
                .entry((bot, channel))
                .or_default()
                .insert(n.parse().expect("a post's number"));
        }
    }
    acked
}

/// How many posts `acked` holds.
pub fn count(acked: &Acked) -> usize {
    acked.values().map(BTreeSet::len).sum()
}

/// Asserts that every post in `acked` is in each of the servers' data directories `dirs`;
/// returns how many there are.
pub fn all_on_disk(dirs: &[PathBuf], acked: &Acked) -> usize {
    let channels: BTreeSet<&String> = acked.keys().map(|(_, c)| c).collect();
    for dir in dirs {
        for channel in &channels {
            let held: BTreeSet<String> =
                super::history_in(dir, &Conversation::Channel(super::name(channel)))
                    .into_iter()
                    .collect();
            for ((bot, _), ns) in acked.iter().filter(|((_, c), _)| c == *channel) {
                for n in ns {
                    let text = format!("message {n} from {bot}");
                    assert!(
                        held.contains(&text),
                        "{} lacks {text:?} in #{channel}, which {bot} saw acknowledged",
                        dir.display()
                    );
                }
            }
        }
    }
    count(acked)
}

/// What `palaver admin verify` printed, as a pass when all three servers agreed.
pub fn verified(out: &Output) -> Result<String, String> {
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.contains("3 servers hold the same") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Asserts that `verify` passes within `within` after `after`, and says how soon it did.
pub fn verify_within(
    within: Duration,
    after: &str,
    mut verify: impl FnMut() -> Result<String, String>,
) {
    let started = Instant::now();
    let mut last = String::new();
    let ok = wait_until(within, || match verify() {
        Ok(_) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(
        ok,
        "after {after}, verify did not pass within {within:?}:\n{last}"
    );
    eprintln!("after {after}: verify passed in {:?}", started.elapsed());
}
