#![allow(dead_code)] // each test binary uses its own part of these helpers

use std::path::{Path, PathBuf};

use palaver_proto::Name;
use palaver_store::{Counts, Store};
pub use palaver_testkit::Cluster;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_palaver"))
}

pub fn name(s: &str) -> Name {
    Name::parse(s).expect("valid test name")
}

/// Opens a server's database beside the running server (WAL allows a second reader).
pub fn store(dir: &Path) -> Store {
    Store::open(dir).expect("open store")
}

pub fn counts(dir: &Path) -> Counts {
    store(dir).counts().expect("counts")
}
