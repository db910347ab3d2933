//! The worker's ed25519 key in a file only its owner can read (mode 0600), created on first use.

use glowworm_protocol::signing::ContributorKey;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("could not read the key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not create the key file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {path} is not 64 hex characters (a 32-byte ed25519 secret key)")]
    Malformed { path: PathBuf },
    #[error(
        "the key file {path} can be read by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(transparent)]
    Key(#[from] glowworm_protocol::signing::SignatureError),
}

/// The default key path: `$XDG_CONFIG_HOME/glowworm/worker.key` or `~/.config/glowworm/worker.key`.
pub fn default_path() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("glowworm").join("worker.key")
}

/// Loads the key at `path`, or creates one there. Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(ContributorKey, bool), KeyFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((load(path, &text)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((create(path)?, true)),
        Err(source) => Err(KeyFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn load(path: &Path, text: &str) -> Result<ContributorKey, KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| KeyFileError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let bytes = hex::decode(text.trim()).map_err(|_| KeyFileError::Malformed {
        path: path.to_path_buf(),
    })?;
    if bytes.len() != 32 {
        return Err(KeyFileError::Malformed {
            path: path.to_path_buf(),
        });
    }
    Ok(ContributorKey::from_secret_bytes(&bytes)?)
}

fn create(path: &Path) -> Result<ContributorKey, KeyFileError> {
    let err = |source| KeyFileError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let key = ContributorKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    writeln!(file, "{}", hex::encode(key.secret_bytes())).map_err(err)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_file_and_loads_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/worker.key");
        let (key, created) = load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.public_hex(), again.public_hex());
    }

    #[test]
    fn refuses_malformed_and_world_readable_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.key");
        std::fs::write(&path, "not hex\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(KeyFileError::Malformed { .. })
        ));
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(KeyFileError::TooOpen { .. })
        ));
    }
}
