//! borg-net's multi-node tests, compiled into one binary.
//!
//! - `mesh`: many in-process nodes over the memory transport (with Noise).
//! - `lan`: real `borg-node` processes on emulated LANs (network namespaces, needs root).

mod lab;
mod lan;
mod mesh;
mod reps;
mod store;
mod util;
