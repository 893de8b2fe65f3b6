//! Real Palaver processes for integration tests: a broker, a proxy and servers on free loopback
//! ports (`palaver up`'s layout), each logging to a file in a temporary directory and saying
//! when it is ready on a pipe (`palaver_supervise`). Every process is killed when its
//! handle drops, a panicking test included, and dies with the test thread that started it even
//! if the test process itself is killed.

mod cluster;
mod proc;

pub use cluster::Cluster;
pub use proc::{wait_until, Proc};
