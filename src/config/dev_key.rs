//! The development key: generated once into a private file so that `mediagate serve` and
//! `mediagate sign` agree out of the box, with no configuration at all.
//!
//! It is never used when `[keys.secrets]` is configured, and `keys.dev_key = false` refuses it
//! (the production setting). Callers announce it loudly at start-up.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

/// Reads the key at `file`, creating it (mode 0600, missing directories 0700) when absent.
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
    if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        // Only directories created here get 0700; an existing one keeps its mode, since it is
        // not ours to change (a key file under /tmp must not strip /tmp's 1777 as root).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory below the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("mediagate-devkey-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// The permission bits in octal, as `ls -l` users read them.
    fn mode(path: &Path) -> String {
        format!(
            "{:o}",
            fs::metadata(path).unwrap().permissions().mode() & 0o7777
        )
    }

    #[test]
    fn existing_key_directory_keeps_its_mode() {
        for wanted in [0o1777, 0o755] {
            let scratch = Scratch::new(&format!("{wanted:o}"));
            fs::set_permissions(&scratch.0, fs::Permissions::from_mode(wanted)).unwrap();
            let file = scratch.0.join("dev.key");
            load_or_create(&file).unwrap();
            assert_eq!(
                mode(&scratch.0),
                format!("{wanted:o}"),
                "existing directory"
            );
            assert_eq!(mode(&file), "600");
        }
    }

    #[test]
    fn created_key_directories_are_private() {
        let scratch = Scratch::new("chain");
        let file = scratch.0.join("state/mediagate/dev.key");
        let created = load_or_create(&file).unwrap();
        assert_eq!(mode(&scratch.0.join("state")), "700");
        assert_eq!(mode(&scratch.0.join("state/mediagate")), "700");
        assert_eq!(mode(&file), "600");
        // The second run reads the key the first one wrote.
        assert_eq!(load_or_create(&file).unwrap().expose(), created.expose());
    }
}
