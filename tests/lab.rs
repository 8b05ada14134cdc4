//! The LAN lab for these tests: `borg-lab` driving the `borg-node` built with them.

use std::path::PathBuf;

pub use borg_lab::{Lab, lab_available};

/// The `borg-node` executable under test.
pub fn borg_node_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_borg-node"))
}

/// A new lab running the `borg-node` under test.
pub fn new_lab() -> Lab {
    Lab::new(borg_node_bin())
}
