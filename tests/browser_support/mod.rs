//! What the browser test needs around a real Chromium: finding it (or
//! skipping loudly), and a hand-written W3C WebDriver client in `webdriver`.
//! Kept small on purpose: a WebDriver crate would cost more build time than
//! the test itself.

pub mod webdriver;

use std::path::Path;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser test can run. Missing binaries skip it with a loud
/// line, unless `CHATCTL_REQUIRE_BROWSER=1` (set by CI) makes that a failure.
pub fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CHATCTL_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!(
            "CHATCTL_REQUIRE_BROWSER=1 but {} not found: apt-get install chromium chromium-driver",
            missing.join(" and ")
        );
    }
    eprintln!(
        "SKIPPED browser test: chromium/chromedriver not installed ({} missing; apt-get install chromium chromium-driver, \
         or set CHATCTL_REQUIRE_BROWSER=1 to make this a failure)",
        missing.join(", ")
    );
    false
}

/// Decodes standard, padded base64 (WebDriver screenshots), so that one
/// helper does not pull in a crate.
pub fn decode_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    fn sextet(c: u8) -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => anyhow::bail!("not a base64 character: {:?}", c as char),
        } as u32)
    }
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    anyhow::ensure!(clean.len().is_multiple_of(4), "base64 length {} is not a multiple of 4", clean.len());
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        anyhow::ensure!(pad <= 2, "bad base64 padding");
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Ok(out)
}

#[test]
fn base64_decodes_padded_and_unpadded_tails() {
    assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
    assert_eq!(decode_base64("aGV5").unwrap(), b"hey");
    assert_eq!(decode_base64("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
}
