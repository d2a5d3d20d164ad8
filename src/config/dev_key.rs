//! The development key: generated once into a private file so that `mediagate serve` and
//! `mediagate sign` agree out of the box, with no configuration at all.
//!
//! It is never used when `[keys.secrets]` is configured, and `keys.dev_key = false` refuses it
//! (the production setting). Callers announce it loudly at start-up.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::keys::Secret;

/// Key id of the development key: visible in every token it signs.
pub const KEY_ID: &str = "dev";

/// Resolves `keys.dev_key_file`; empty means the XDG state directory.
pub fn location(configured: &str) -> Result<PathBuf, String> {
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))
        .ok_or("neither XDG_STATE_HOME nor HOME is set; set keys.dev_key_file")?;
    Ok(state.join("mediagate").join("dev.key"))
}

/// Reads the key at `file`, creating it (mode 0600, directory 0700) when absent.
pub fn load_or_create(file: &Path) -> Result<Secret, String> {
    match fs::read_to_string(file) {
        Ok(text) => {
            let mode = fs::metadata(file)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(format!(
                    "development key {} is readable by others (mode {:o}); chmod 600 it",
                    file.display(),
                    mode & 0o777
                ));
            }
            Secret::from_base64(&text).map_err(|e| format!("{}: {e}", file.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(file),
        Err(error) => Err(format!("cannot read {}: {error}", file.display())),
    }
}

fn create(file: &Path) -> Result<Secret, String> {
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let secret = Secret::generate().map_err(|e| e.to_string())?;
    // create_new: if two processes race, one wins and the other reads the winner's key.
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut handle| writeln!(handle, "{}", secret.to_base64()));
    match written {
        Ok(()) => Ok(secret),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(file),
        Err(error) => Err(format!("cannot write {}: {error}", file.display())),
    }
}
