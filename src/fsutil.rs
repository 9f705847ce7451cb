//! Small filesystem helpers.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file the daemon writes in its state directory: transcripts
/// and reports are about people, and no other local user may read them.
pub const FILE_MODE: u32 = 0o600;

/// Mode of the directories that hold them.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) with [`DIR_MODE`], and narrows an
/// existing one to it; a directory we cannot narrow (not ours) is left as
/// it is, with a warning.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != DIR_MODE {
        if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)) {
            log::warn!(
                "{} has mode {mode:o} and cannot be narrowed to {DIR_MODE:o}: {e}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Opens `path` for appending, creating it with [`FILE_MODE`].
pub fn open_private_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in the
/// same directory, fsync, rename over the target, fsync the directory. A
/// reader sees either the old file or the whole new one, even after a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates, syncs and removes a file in `dir`: the directory takes writes
/// now (not read-only, not full, ours).
pub fn check_writable(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir.join(".writable");
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(b"ok")?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&probe);
    written.and(removed)
}
