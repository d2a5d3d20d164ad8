//! The file-version edge: which version of a site's file a path names, for links bound to a
//! file version (v2 field `0x13`, spec §17).
//!
//! Blocking file-system calls: the async edges run [`version_of`] on the blocking pool
//! (`spawn_blocking`), never on a runtime thread, and only for tokens that carry the field.
//! What a version is made of, and why, is [`FileVersion`]'s business.
//!
//! The file is `files_root` + the canonical path (spec §7.1: no dot segments, no encoded
//! slashes, no NUL), resolved with every symbolic link followed; a file whose resolved path
//! lies outside the (resolved) root is refused, so a link inside the root cannot make
//! mediagate reveal anything about files elsewhere. Symbolic links within the root are
//! followed, as nginx follows them by default.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::token::FileVersion;

/// Why a path has no version.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Occurs when no file (or no directory on the way) exists at the path.
    #[error("no such file")]
    NotFound,
    /// Occurs when the path resolves, through a symbolic link, to somewhere outside the
    /// site's `files_root`.
    #[error("the path leads outside files_root through a symbolic link")]
    OutsideRoot,
    /// Occurs when the path names a directory, a socket, a FIFO or a device.
    #[error("not a regular file")]
    NotAFile,
    /// Occurs when the file system refuses (permissions, I/O errors).
    #[error("cannot read the file's metadata: {0}")]
    Io(io::Error),
}

impl From<io::Error> for FileError {
    fn from(error: io::Error) -> FileError {
        match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => FileError::NotFound,
            _ => FileError::Io(error),
        }
    }
}

/// The version of the file at `canonical` (a canonical request path, starting with `/`)
/// below `root` (resolved, as `Site::files_root` is). Blocking.
pub fn version_of(root: &Path, canonical: &str) -> Result<FileVersion, FileError> {
    // A canonical path has no dot segments, so joining never climbs out of the root; only a
    // symbolic link can, which the resolution below catches.
    let relative = canonical.trim_start_matches('/');
    if relative.is_empty() {
        return Err(FileError::NotAFile);
    }
    let resolved = std::fs::canonicalize(root.join(relative))?;
    if !resolved.starts_with(root) {
        return Err(FileError::OutsideRoot);
    }
    let metadata = std::fs::metadata(&resolved)?;
    if !metadata.is_file() {
        return Err(FileError::NotAFile);
    }
    Ok(FileVersion::of(
        metadata.size(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.ino(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, resolved, removed on drop.
    struct Root(PathBuf);

    impl Root {
        fn new(name: &str) -> Root {
            let dir =
                std::env::temp_dir().join(format!("mediagate-files-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("media")).unwrap();
            Root(std::fs::canonicalize(dir).unwrap())
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_replaced_file_has_a_new_version_and_an_unchanged_one_keeps_it() {
        let root = Root::new("replace");
        let file = root.0.join("media/a.txt");
        std::fs::write(&file, b"one").unwrap();
        let first = version_of(&root.0, "/media/a.txt").unwrap();
        assert_eq!(version_of(&root.0, "/media/a.txt").unwrap(), first);
        // Same size, same content, written next to it and renamed over: a new inode.
        let next = root.0.join("media/.a.txt.new");
        std::fs::write(&next, b"one").unwrap();
        std::fs::rename(&next, &file).unwrap();
        assert_ne!(version_of(&root.0, "/media/a.txt").unwrap(), first);
    }

    #[test]
    fn a_touch_changes_the_version() {
        let root = Root::new("touch");
        let file = root.0.join("media/a.txt");
        std::fs::write(&file, b"one").unwrap();
        let before = version_of(&root.0, "/media/a.txt").unwrap();
        let later = std::fs::metadata(&file).unwrap().modified().unwrap()
            + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_ne!(version_of(&root.0, "/media/a.txt").unwrap(), before);
    }

    #[test]
    fn missing_files_directories_and_links_out_of_the_root_have_no_version() {
        let root = Root::new("refusals");
        assert!(matches!(
            version_of(&root.0, "/media/none.txt"),
            Err(FileError::NotFound)
        ));
        assert!(matches!(
            version_of(&root.0, "/media/none/deeper.txt"),
            Err(FileError::NotFound)
        ));
        assert!(matches!(
            version_of(&root.0, "/media"),
            Err(FileError::NotAFile)
        ));
        assert!(matches!(version_of(&root.0, "/"), Err(FileError::NotAFile)));
        let outside = Root::new("refusals-outside");
        std::fs::write(outside.0.join("secret.txt"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.0.join("secret.txt"), root.0.join("media/out.txt"))
            .unwrap();
        std::os::unix::fs::symlink(&outside.0, root.0.join("media/outdir")).unwrap();
        for path in ["/media/out.txt", "/media/outdir/secret.txt"] {
            assert!(
                matches!(version_of(&root.0, path), Err(FileError::OutsideRoot)),
                "{path}"
            );
        }
        // A link that stays inside the root is followed: the version is its target's.
        std::fs::write(root.0.join("media/target.txt"), b"t").unwrap();
        std::os::unix::fs::symlink("target.txt", root.0.join("media/in.txt")).unwrap();
        assert_eq!(
            version_of(&root.0, "/media/in.txt").unwrap(),
            version_of(&root.0, "/media/target.txt").unwrap()
        );
    }
}
