//! Builds libzmq from source (as the published zmq-sys does) with CURVE, linked against the
//! libsodium that libsodium-sys-stable built, and with libzmq's draft options compiled in: the
//! proxy sets `ZMQ_IN_BATCH_SIZE`, the size of the buffer each connection reads into, which is
//! most of what an idle subscriber costs it (about 18 of 22 KB).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let include = std::env::var("DEP_SODIUM_INCLUDE").expect("libsodium-sys-stable's include dir");
    let lib = std::env::var("DEP_SODIUM_LIB").expect("libsodium-sys-stable's lib dir");
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .enable_draft(true)
        .build();
}
