//! Password hashing (argon2id, OWASP parameters) and Django's password rules.

use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Hashes with argon2id m=19456 KiB, t=2, p=1 (argon2's defaults, OWASP's
/// recommendation) and a fresh random salt. CPU-heavy: call off the runtime.
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters cannot fail on a password")
        .to_string()
}

/// Whether `password` matches the PHC string. An unparsable hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, verified when a username does not
/// exist so that a wrong username costs as much time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("chatctl-dummy-password-never-matches"))
}

const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Django's four validators; returns every rule the password breaks, worded
/// for the person choosing it. Empty means acceptable.
pub fn check_rules(password: &str, username: &str, email: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if password.chars().count() < 8 {
        problems.push("This password is too short. It must contain at least 8 characters.".to_owned());
    }
    if !password.is_empty() && password.chars().all(|c| c.is_ascii_digit()) {
        problems.push("This password is entirely numeric.".to_owned());
    }
    if too_similar(password, username) || (!email.is_empty() && too_similar(password, email)) {
        problems.push("The password is too similar to the username or email.".to_owned());
    }
    let lowered = password.trim().to_lowercase();
    if COMMON_PASSWORDS.lines().any(|line| !line.starts_with('#') && line == lowered) {
        problems.push("This password is too common.".to_owned());
    }
    problems
}

/// Django's UserAttributeSimilarityValidator: the attribute, or any part of
/// it split on non-word characters, is at least 70% similar to the password.
fn too_similar(password: &str, attribute: &str) -> bool {
    let password = password.to_lowercase();
    let attribute = attribute.to_lowercase();
    std::iter::once(attribute.as_str())
        .chain(attribute.split(|c: char| !c.is_alphanumeric() && c != '_'))
        .filter(|part| !part.is_empty())
        .any(|part| similarity(&password, part) >= 0.7)
}

/// 2·M / T with M the longest common subsequence: close to difflib's ratio.
fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut row = vec![0usize; b.len() + 1];
    for &ca in &a {
        let mut diagonal = 0;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == cb { diagonal + 1 } else { above.max(row[j]) };
            diagonal = above;
        }
    }
    2.0 * row[b.len()] as f64 / (a.len() + b.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let phc = hash("correct horse battery");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterx", &phc));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn django_rules_are_enforced() {
        assert!(check_rules("Tr0ub4dor&3x", "alice", "").is_empty());
        assert_eq!(check_rules("short1", "alice", "").len(), 1);
        assert!(check_rules("1234567890123", "alice", "")[0].contains("numeric"));
        assert!(check_rules("password123", "alice", "")[0].contains("common"));
        assert!(check_rules("alice2026", "alice2026x", "").iter().any(|p| p.contains("similar")));
        assert!(check_rules("jsmith-mail", "zz", "jsmith@mail.example").iter().any(|p| p.contains("similar")));
    }
}
