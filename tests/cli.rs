//! The `chatctl` binary itself: `--version`.

use std::process::{Command, Output};

const CHATCTL: &str = env!("CARGO_BIN_EXE_chatctl");

fn chatctl(args: &[&str]) -> Output {
    Command::new(CHATCTL).args(args).env_remove("CHATCTL_DATA_DIR").output().expect("running chatctl")
}

fn both_streams(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
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
