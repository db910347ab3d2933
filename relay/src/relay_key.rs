//! The relay's own ed25519 key ([`RelayKey`]), which signs a receipt for every credit it makes,
//! kept in a file of 64 hex characters (the secret seed). The file is made on first start with
//! mode 0600, and a file that others may read is refused: whoever holds the key can sign
//! receipts in the relay's name.

use crate::error::OpenError;
use glowworm_protocol::signing::RelayKey;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the key is when no `relay_key_file` is set: beside the database, DATABASE.relay-key.
pub fn default_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".relay-key");
    database.with_file_name(name)
}

/// Reads the key at `path`, or makes one there (mode 0600) when there is no file.
pub fn load_or_create(path: &Path) -> Result<RelayKey, OpenError> {
    let refuse = |message: String| OpenError::RelayKey {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path).map_err(refuse)?;
            let seed =
                hex::decode(text.trim()).map_err(|_| refuse("is not 64 hex characters".into()))?;
            RelayKey::from_secret_bytes(&seed)
                .map_err(|_| refuse("is not 64 hex characters (a 32-byte seed)".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = RelayKey::generate().map_err(|e| refuse(e.to_string()))?;
            write_private(path, &hex::encode(key.secret_bytes()))
                .map_err(|e| refuse(e.to_string()))?;
            tracing::info!(
                "made the relay key {} in {}",
                key.public_hex(),
                path.display()
            );
            Ok(key)
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "may be read by others (mode {:o}); run chmod 600 on it",
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), String> {
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = default_path(&dir.path().join("relay.sqlite"));
        assert_eq!(path, dir.path().join("relay.sqlite.relay-key"));
        let made = load_or_create(&path).unwrap();
        let read = load_or_create(&path).unwrap();
        assert_eq!(made.public_hex(), read.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = load_or_create(&path)
                .err()
                .expect("a readable key is refused");
            assert!(refused.to_string().contains("chmod 600"), "{refused}");
        }
        std::fs::write(&path, "not hex").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(load_or_create(&path).is_err());
    }
}
