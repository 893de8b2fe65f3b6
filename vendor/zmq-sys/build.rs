//! Builds libzmq from source (as the published zmq-sys does) with CURVE, linked against the
//! libsodium that libsodium-sys-stable built.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let include = std::env::var("DEP_SODIUM_INCLUDE").expect("libsodium-sys-stable's include dir");
    let lib = std::env::var("DEP_SODIUM_LIB").expect("libsodium-sys-stable's lib dir");
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}
