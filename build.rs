//! Stamps the build for `chatctl --version`: the git commit it was built
//! from (`unknown` outside a git checkout, e.g. a source tarball) and the
//! build date (UTC; `SOURCE_DATE_EPOCH` when set, for reproducible builds).
//!
//! It reruns only when HEAD moves (a commit, a checkout) or
//! `SOURCE_DATE_EPOCH` changes, so editing code never reruns it: the date is
//! that of the last commit-changing build, not of every compile.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    for path in head_files() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CHATCTL_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=CHATCTL_BUILD_DATE={}", build_date());
}

/// Runs git in the package directory; `None` when git is missing or this is
/// not a checkout.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The files that change when HEAD moves: `HEAD` itself, the branch ref it
/// points to, and `packed-refs` (where a branch's ref may live instead).
/// Asked of git so that worktrees (where `.git` is a file) work too. Only
/// existing files are listed: cargo reruns on every build for a missing one.
fn head_files() -> Vec<PathBuf> {
    let mut names = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    names.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    names
        .iter()
        .filter_map(|name| git(&["rev-parse", "--path-format=absolute", "--git-path", name]))
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .collect()
}

/// `YYYY-MM-DD` in UTC.
fn build_date() -> String {
    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(raw) => raw.trim().parse::<i64>().unwrap_or_else(|_| panic!("SOURCE_DATE_EPOCH={raw} is not a number")),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
    };
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`), so that no date crate is needed at build time.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
