//! `palaver-sim`: whole clusters simulated from one seed each.
//!
//! ```text
//!  seed ──▶ World: N engines (palaver_server::engine), each with a real SQLite store on a
//!           simulated disk (commit latency, failed commits, crashes that lose what was not
//!           committed), a simulated network between them (loss, delay, reordering,
//!           duplication, partitions, paused servers), the broker's policy (live servers,
//!           requests sent again when one goes silent or leaves) and clients that log in,
//!           create channels, post and write privately, retrying with their request ids
//!        ──▶ faults for a while, then everything heals ──▶ invariants checked
//! ```
//!
//! Prints each failing seed with what it broke (run again with `--seed S` to replay it), and
//! ends with one line: `sim: N runs, V invariant violations`. Exits non-zero when V > 0.

mod check;
mod world;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

fn usage() -> ! {
    eprintln!(
        "usage: palaver-sim [--seeds N] [--first SEED] [--seed SEED] [--servers N] [--jobs N] [--verbose]\n\
         runs N simulated clusters (default 100) from seeds FIRST.. (default 1), or one seed"
    );
    std::process::exit(2);
}

fn main() {
    let mut seeds: u64 = 100;
    let mut first: u64 = 1;
    let mut servers: usize = 3;
    let mut jobs: usize = std::thread::available_parallelism().map_or(1, usize::from);
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--seeds" => seeds = num(),
            "--first" => first = num(),
            "--seed" => {
                first = num();
                seeds = 1;
                verbose = true;
            }
            "--servers" => servers = usize::try_from(num()).unwrap_or(3).clamp(1, 7),
            "--jobs" => jobs = usize::try_from(num()).unwrap_or(1).max(1),
            "--verbose" => verbose = true,
            _ => usage(),
        }
    }
    let next = AtomicU64::new(first);
    let end = first.saturating_add(seeds);
    let violations = AtomicU64::new(0);
    let runs = AtomicU64::new(0);
    let failed: Mutex<Vec<(u64, Vec<String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(usize::try_from(seeds).unwrap_or(1)).max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= end {
                    break;
                }
                let found = match world::World::run(seed, servers, verbose) {
                    Ok(found) => found,
                    Err(e) => vec![format!("the simulation itself failed: {e:#}")],
                };
                runs.fetch_add(1, Ordering::SeqCst);
                if !found.is_empty() {
                    violations.fetch_add(found.len() as u64, Ordering::SeqCst);
                    for v in &found {
                        println!("seed {seed}: {v}");
                    }
                    failed
                        .lock()
                        .expect("no thread panics holding it")
                        .push((seed, found));
                }
            });
        }
    });
    let failed = failed.into_inner().expect("no thread panics holding it");
    if !failed.is_empty() {
        let mut seeds: Vec<u64> = failed.iter().map(|(s, _)| *s).collect();
        seeds.sort_unstable();
        println!(
            "failing seeds (replay with --seed S): {}",
            seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let v = violations.load(Ordering::SeqCst);
    println!(
        "sim: {} runs, {v} invariant violations",
        runs.load(Ordering::SeqCst)
    );
    if v > 0 {
        std::process::exit(1);
    }
}
