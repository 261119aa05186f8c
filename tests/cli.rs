//! The `chatctl` binary itself: `--version`, `migrate` on a data dir without
//! a database, an empty database file refused by every command, and the
//! file-mode warnings an operator sees at start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::serve_process::ServeProcess;

const CHATCTL: &str = env!("CARGO_BIN_EXE_chatctl");

fn chatctl(args: &[&str]) -> Output {
    Command::new(CHATCTL).args(args).env_remove("CHATCTL_DATA_DIR").output().expect("running chatctl")
}

fn both_streams(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn version_names_the_package_version_commit_and_build_date() {
    let out = chatctl(&["--version"]);
    assert!(out.status.success(), "{}", both_streams(&out));
    let line = String::from_utf8(out.stdout).unwrap();
    let line = line.trim_end();
    let prefix = format!("chatctl {} (commit ", env!("CARGO_PKG_VERSION"));
    let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let (commit, rest) = rest.split_once(", built ").unwrap_or_else(|| panic!("no build date in {line:?}"));
    let is_hash = commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(is_hash || commit == "unknown", "commit {commit:?} in {line:?}");
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line:?} does not end with ')'"));
    let digits: Vec<&str> = date.split('-').collect();
    let widths: Vec<usize> = digits.iter().map(|part| part.len()).collect();
    assert_eq!(widths, [4, 2, 2], "date {date:?} in {line:?}");
    assert!(digits.iter().all(|part| part.bytes().all(|b| b.is_ascii_digit())), "date {date:?}");
    let (month, day): (u32, u32) = (digits[1].parse().unwrap(), digits[2].parse().unwrap());
    assert!((1..=12).contains(&month) && (1..=31).contains(&day), "date {date:?}");
}

#[test]
fn migrate_check_without_a_database_creates_nothing_and_exits_2() {
    let parent = tempfile::tempdir().unwrap();
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = parent.path().join("missing");
    for dir in [&empty, &missing] {
        let out = chatctl(&["migrate", "--check", "--data-dir", dir.to_str().unwrap()]);
        let said = both_streams(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains(&format!("no database at {}", dir.join("chatctl.redb").display())), "{said}");
        assert!(said.contains("chatctl migrate --data-dir"), "the answer says what to do: {said}");
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "--check wrote into the data dir");
    assert!(!missing.exists(), "--check created the data dir");
}

#[test]
fn migrate_without_a_database_creates_an_owner_only_one_and_says_so() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let out = chatctl(&["migrate", "--data-dir", dir.to_str().unwrap()]);
    let said = both_streams(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("created one at schema version"), "{said}");
    assert_eq!((mode_of(&dir), mode_of(&dir.join("chatctl.redb"))), (0o700, 0o600));
    let out = chatctl(&["migrate", "--check", "--data-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "a new database needs no steps: {}", both_streams(&out));
}

#[test]
fn migrate_warns_about_a_data_dir_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    assert!(chatctl(&["migrate", "--data-dir", dir.path().to_str().unwrap()]).status.success());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = chatctl(&["migrate", "--check", "--data-dir", dir.path().to_str().unwrap()]);
    let said = both_streams(&out);
    assert!(out.status.success(), "a warning, not a refusal: {said}");
    assert!(said.contains(&format!("chmod 700 {}", dir.path().display())), "{said}");
}

#[test]
fn serve_warns_at_start_about_a_database_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    assert!(chatctl(&["migrate", "--data-dir", dir.path().to_str().unwrap()]).status.success());
    let db = dir.path().join("chatctl.redb");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut server = ServeProcess::start(dir.path(), &[]);
    let line = server.wait_for("chmod 600");
    server.stop();
    assert!(line.contains("WARN") && line.contains(&db.display().to_string()), "{line}");
    assert_eq!(mode_of(&db), 0o644, "serve warns; it does not change the mode itself");
}

#[test]
fn every_command_refuses_an_empty_database_file_and_says_how_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chatctl.redb");
    std::fs::write(&db, b"").unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let backup = dir.path().join("copy.redb");
    let commands: [&[&str]; 4] = [
        &["serve", "--bind", "127.0.0.1:0", "--data-dir", data_dir],
        &["migrate", "--data-dir", data_dir],
        &["users", "list", "--data-dir", data_dir],
        &["backup", "--data-dir", data_dir, "--to", backup.to_str().unwrap()],
    ];
    for args in commands {
        let out = chatctl(args);
        let said = both_streams(&out);
        assert!(!out.status.success(), "{args:?} went ahead on an empty database file: {said}");
        assert!(said.contains(&db.display().to_string()), "{args:?} does not name the file: {said}");
        assert!(said.contains("chatctl restore --data-dir"), "{args:?} does not say what to do: {said}");
        assert!(!said.contains("/setup"), "{args:?} offered a setup link: {said}");
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "the empty file was written to");
}
