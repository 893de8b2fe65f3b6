//! Clients in other languages talk to Palaver: Python (pyzmq and msgpack) and JavaScript on
//! Node.js (`zeromq` and `@msgpack/msgpack` from npm), each written against the standard alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, Cluster};

/// A Python with pyzmq and msgpack: `PALAVER_PYTHON` if set, else a virtual environment under
/// the target directory, made on first use.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("PALAVER_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyenv");
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", "import zmq, msgpack"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&py) {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv failed: is python3 installed?"
        );
        let pip = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "pyzmq",
                "msgpack",
            ])
            .status();
        assert!(
            pip.is_ok_and(|s| s.success()),
            "pip could not install pyzmq and msgpack"
        );
    }
    assert!(ready(&py), "pyzmq and msgpack are not importable");
    py
}

#[test]
fn a_python_client_logs_in_creates_lists_publishes_and_receives() {
    let py = python();
    let cluster = Cluster::start(&bin(), 1);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/interop.py");
    let (ok, text) = common::run(
        Command::new(py)
            .arg(script)
            .args([cluster.broker_endpoint(), cluster.sub_endpoint()]),
    );
    assert!(ok, "python client failed:\n{text}");
    assert!(text.contains("every step behaved"), "{text}");
}

/// A folder whose `node_modules` holds `zeromq` and `@msgpack/msgpack`: `PALAVER_NODE_MODULES`
/// if set, else one under the target directory, installed from npm on first use (`zeromq`
/// ships its native addon prebuilt, so nothing is compiled).
fn node_modules() -> PathBuf {
    if let Ok(p) = std::env::var("PALAVER_NODE_MODULES") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nodeenv");
    let modules = dir.join("node_modules");
    let ready = |modules: &Path| {
        Command::new("node")
            .args(["-e", "require('zeromq'); require('@msgpack/msgpack')"])
            .env("NODE_PATH", modules)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&modules) {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.json"),
            r#"{"name": "palaver-interop", "private": true}"#,
        )
        .unwrap();
        let npm = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "zeromq@6",
                "@msgpack/msgpack@3",
            ])
            .current_dir(&dir)
            .status();
        assert!(
            npm.is_ok_and(|s| s.success()),
            "npm could not install zeromq and @msgpack/msgpack: are node and npm installed?"
        );
    }
    assert!(
        ready(&modules),
        "zeromq and @msgpack/msgpack cannot be loaded"
    );
    modules
}

#[test]
fn a_node_client_logs_in_creates_lists_publishes_and_receives() {
    let modules = node_modules();
    let cluster = Cluster::start(&bin(), 1);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node/interop.js");
    let (ok, text) = common::run(
        Command::new("node")
            .arg(script)
            .args([cluster.broker_endpoint(), cluster.sub_endpoint()])
            .env("NODE_PATH", &modules),
    );
    assert!(ok, "node client failed:\n{text}");
    assert!(text.contains("every step behaved"), "{text}");
}
