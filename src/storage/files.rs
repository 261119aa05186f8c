//! File modes of the data dir and the database, and the space left for it. chatctl creates both
//! owner-only (0700 and 0600, set as they are created, so they are never
//! open to others even for a moment). Existing ones are left as they are: a
//! loose mode is reported with the `chmod` that fixes it, never refused.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Mode of a data dir chatctl creates.
pub const DATA_DIR_MODE: u32 = 0o700;
/// Mode of a database file chatctl creates.
pub const DB_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) unless it exists. Only `dir` itself
/// gets `DATA_DIR_MODE`: parents are ordinary directories, such as
/// `/var/lib`, made with the process's umask.
pub(super) fn create_data_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DATA_DIR_MODE);
    match builder.create(dir) {
        // Another process made it between the check and here: fine.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Creates an empty database file with `DB_FILE_MODE` unless one exists;
/// redb then initialises the empty file in place. Returns whether it made one.
pub(super) fn create_db_file(path: &Path) -> io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, DB_FILE_MODE);
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Bytes an unprivileged writer may still use in the file system holding
/// `path`; `None` where that cannot be read.
pub fn free_bytes(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stats = rustix::fs::statvfs(path).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// A data dir or database that group or others may read or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoosePermission {
    /// The file or directory to `chmod`, for the message.
    pub path: PathBuf,
    /// What it is, for the message: "data dir" or "database".
    pub what: &'static str,
    /// The permission bits found (`0o755`).
    pub mode: u32,
    /// The bits it should have.
    pub wanted: u32,
}

impl LoosePermission {
    /// The command that fixes it, with the path quoted for a shell.
    pub fn fix(&self) -> String {
        format!("chmod {:o} {}", self.wanted, shell_quote(&self.path.display().to_string()))
    }
}

impl fmt::Display for LoosePermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} {} is open to group or others (mode {:04o}); it holds password hashes and messages. Run `{}`",
            self.what,
            self.path.display(),
            self.mode,
            self.fix()
        )
    }
}

/// The data dir and its database (when present) whose modes let group or
/// others in. Paths that cannot be read are skipped: opening them reports that.
pub fn loose_permissions(data_dir: &Path) -> Vec<LoosePermission> {
    let checks = [
        (data_dir.to_path_buf(), "data dir", DATA_DIR_MODE),
        (data_dir.join(super::DB_FILE), "database", DB_FILE_MODE),
    ];
    checks.into_iter().filter_map(|(path, what, wanted)| loose(path, what, wanted)).collect()
}

#[cfg(unix)]
fn loose(path: PathBuf, what: &'static str, wanted: u32) -> Option<LoosePermission> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(LoosePermission { path, what, mode, wanted })
}

#[cfg(not(unix))]
fn loose(_path: PathBuf, _what: &'static str, _wanted: u32) -> Option<LoosePermission> {
    None
}

/// `path` as one shell word: as is when it is plain, else single-quoted.
fn shell_quote(path: &str) -> String {
    let plain = !path.is_empty() && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+@%:,=".contains(&b));
    if plain {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::storage::{SchemaCheck, Store, DB_FILE};

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_data_dir_chatctl_creates_is_0700_and_its_database_0600() {
        let parent = tempfile::tempdir().unwrap();
        let data_dir = parent.path().join("var").join("chatctl");
        let store = Store::open(&data_dir, SchemaCheck::RequireCurrent).unwrap();
        assert_eq!(mode_of(&data_dir), 0o700);
        assert_eq!(mode_of(store.path()), 0o600);
        // Parents are ordinary directories, not owner-only ones.
        assert_ne!(mode_of(&parent.path().join("var")) & 0o077, 0, "parents keep the umask's mode");
        assert!(loose_permissions(&data_dir).is_empty());
    }

    #[test]
    fn an_existing_empty_data_dir_gets_an_owner_only_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap();
        assert_eq!(mode_of(store.path()), 0o600);
    }

    #[test]
    fn loose_modes_are_reported_with_the_chmod_that_fixes_them_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap());
        let db = dir.path().join(DB_FILE);
        set_mode(dir.path(), 0o755);
        set_mode(&db, 0o640);
        let found = loose_permissions(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        let (dir_warning, db_warning) = (found[0].to_string(), found[1].to_string());
        assert!(dir_warning.contains(&format!("chmod 700 {}", dir.path().display())), "{dir_warning}");
        assert!(dir_warning.contains("0755"), "{dir_warning}");
        assert!(db_warning.contains(&format!("chmod 600 {}", db.display())), "{db_warning}");
        // Warned about, not refused and not changed behind the operator's back.
        drop(Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap());
        assert_eq!((mode_of(dir.path()), mode_of(&db)), (0o755, 0o640));
        set_mode(dir.path(), 0o700);
        set_mode(&db, 0o600);
        assert!(loose_permissions(dir.path()).is_empty());
    }

    #[test]
    fn the_fix_quotes_paths_a_shell_would_split() {
        let odd = LoosePermission { path: "/srv/my chat/it's".into(), what: "data dir", mode: 0o755, wanted: 0o700 };
        assert_eq!(odd.fix(), r"chmod 700 '/srv/my chat/it'\''s'");
        let plain = LoosePermission { path: "/var/lib/chatctl".into(), what: "data dir", mode: 0o755, wanted: 0o700 };
        assert_eq!(plain.fix(), "chmod 700 /var/lib/chatctl");
    }
}
