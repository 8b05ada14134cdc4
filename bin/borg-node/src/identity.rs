//! The node's long-term ed25519 identity, kept in `identity.key` in the data dir.
//!
//! - Created on first use with mode 0600 inside a data dir of mode 0700.
//! - Stored as libp2p's protobuf key encoding.
//! - A key file that others can read, or that does not decode, stops the node with a one-line
//!   error: silently replacing it would change the peer id, and using a leaked key would let
//!   someone else impersonate the node.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use libp2p::identity::Keypair;

/// File name of the key inside the data dir.
pub const KEY_FILE: &str = "identity.key";

/// Creates the data dir (mode 0700) if it does not exist yet.
pub fn ensure_data_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))
}

/// The path of the key file in `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Loads the identity from `data_dir`, creating a new one if there is none.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair> {
    ensure_data_dir(data_dir)?;
    let path = key_path(data_dir);
    match fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "identity key file {} is accessible by other users (mode {mode:o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
            let bytes = fs::read(&path)
                .with_context(|| format!("cannot read identity key file {}", path.display()))?;
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "identity key file {} is corrupt ({e}); move it away to create a new identity (this changes the peer id)",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => {
            Err(e).with_context(|| format!("cannot read identity key file {}", path.display()))
        }
    }
}

fn create(path: &Path) -> Result<Keypair> {
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .context("cannot encode the new identity key")?;
    // Write to a temporary file and rename, so a crash never leaves a half-written key that
    // would then be reported as corrupt. create_new + 0600 means the key is never readable
    // by others, not even briefly.
    let tmp = path.with_extension("key.tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create identity key file {}", tmp.display()))?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot create identity key file {}", path.display()))?;
    Ok(keypair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let first = load_or_create(&data).unwrap();
        let mode = fs::metadata(key_path(&data)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let second = load_or_create(&data).unwrap();
        assert_eq!(first.public(), second.public());
    }

    #[test]
    fn readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        fs::set_permissions(key_path(dir.path()), fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("accessible by other users"), "{err}");
        assert!(err.contains("644"), "{err}");
    }

    #[test]
    fn corrupt_key_is_refused_and_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path());
        fs::write(&path, b"garbage").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert!(!err.contains('\n'));
        assert_eq!(fs::read(&path).unwrap(), b"garbage");
    }

    #[test]
    fn empty_key_file_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path());
        fs::write(&path, b"").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            load_or_create(dir.path())
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
    }
}
