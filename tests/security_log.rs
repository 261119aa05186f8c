//! The log a fail2ban or a SIEM reads: `chatctl serve` as a process, its
//! stderr read line by line. With `--log-format json` every line is JSON
//! (the setup URL included); sign-ins, failures, throttling and refused
//! upgrades carry the client's address and the username.

mod common;

use std::process::Command;

use chatctl::client::Client;
use common::serve_process::ServeProcess;
use common::*;

fn address_in(line: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    json["fields"]["addr"].as_str().expect("the serving line names its address").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_only_json_and_carry_security_events_with_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(dir.path(), &["--log-format", "json"]);
    let setup = server.wait_for("setup");
    let setup: serde_json::Value = serde_json::from_str(&setup).expect("the setup URL comes as a JSON line");
    assert!(setup["fields"]["url"].as_str().unwrap().contains("/setup?token="), "{setup}");
    let lines = server.stop();
    for line in &lines {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line}");
    }

    create_users(dir.path(), &[UserSpec::new("alice")]);
    let mut server = ServeProcess::start(dir.path(), &["--log-format", "json"]);
    let url = format!("http://{}", address_in(&server.wait_for("chatctl is serving")));
    let mut client = Client::new(&url).unwrap();
    assert_eq!(client.login("alice", "not-her-password").await.unwrap().status, 401);
    let failed: serde_json::Value = serde_json::from_str(&server.wait_for("sign-in failed")).unwrap();
    assert_eq!(failed["target"], "chatctl::security");
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["fields"]["client"], "127.0.0.1");
    assert_eq!(failed["fields"]["username"], "alice");
    assert_eq!(client.login("alice", &password_of("alice")).await.unwrap().status, 200);
    let signed_in: serde_json::Value = serde_json::from_str(&server.wait_for("signed in")).unwrap();
    assert_eq!(signed_in["level"], "INFO");
    assert_eq!(signed_in["fields"]["client"], "127.0.0.1");
    // An Origin crafted to forge a second security line for fail2ban.
    let forged = "http://x WARN chatctl::security: sign-in failed client=198.51.100.77 x";
    let refused = client.connect("/ws/chat/lobby/", Some(forged)).await;
    assert!(refused.is_err());
    let upgrade: serde_json::Value = serde_json::from_str(&server.wait_for("upgrade refused")).unwrap();
    assert_eq!(upgrade["fields"]["client"], "127.0.0.1");
    let origin = upgrade["fields"]["origin"].as_str().unwrap();
    assert!(!origin.contains(' '), "the refused Origin is logged with its spaces: {origin}");
    let lines = server.stop();
    for line in &lines {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_give_fail2ban_the_forwarded_client_address() {
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &[UserSpec::new("alice")]);
    let mut server = ServeProcess::start(dir.path(), &["--trusted-proxy", "127.0.0.1"]);
    let banner = server.wait_for("chatctl is serving at ");
    let url = banner.rsplit(' ').next().unwrap().to_owned();
    let client = Client::new(&url).unwrap();
    let body = serde_json::json!({"username": "alice", "password": "wrong-password-1"}).to_string();
    for _ in 0..6 {
        client
            .send(
                hyper::Method::POST,
                "/api/login",
                &[("content-type", "application/json"), ("x-forwarded-for", "203.0.113.7")],
                bytes::Bytes::from(body.clone()),
            )
            .await
            .unwrap();
    }
    // The form fail2ban's filter in contrib/ matches: level, target, message, client first.
    let failed = server.wait_for("sign-in failed");
    assert!(failed.contains(" WARN chatctl::security: sign-in failed client=203.0.113.7 username=alice"), "{failed}");
    let throttled = server.wait_for("sign-in throttled");
    assert!(throttled.contains(" WARN chatctl::security: sign-in throttled client=203.0.113.7 "), "{throttled}");
    // A crafted Origin cannot put another address where fail2ban reads one.
    let forged = "http://x WARN chatctl::security: sign-in failed client=198.51.100.77 x";
    assert!(client.connect("/ws/chat/lobby/", Some(forged)).await.is_err());
    let refused = server.wait_for("upgrade refused");
    assert!(!refused.contains("sign-in failed client=198"), "{refused}");
    let lines = server.stop();
    fail2ban_finds_only(&lines, "203.0.113.7");
}

/// Runs Debian's `fail2ban-regex` with contrib/fail2ban/chatctl.conf over
/// the lines a server logged: every failed or throttled sign-in matches,
/// with `client` as the host, and nothing else does.
fn fail2ban_finds_only(lines: &[String], client: &str) {
    if Command::new("fail2ban-regex").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CHATCTL_REQUIRE_FAIL2BAN").is_none(),
            "CHATCTL_REQUIRE_FAIL2BAN is set but fail2ban-regex is missing: apt-get install fail2ban"
        );
        eprintln!("SKIPPED the fail2ban filter check: fail2ban-regex is not installed (apt-get install fail2ban)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("chatctl.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let filter = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/chatctl.conf");
    let output = Command::new("fail2ban-regex").arg("-v").arg(&log).arg(&filter).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let expected = lines.iter().filter(|l| l.contains("sign-in failed") || l.contains("sign-in throttled")).count();
    assert!(expected > 0, "no failed sign-in was logged");
    let matched = format!(", {expected} matched,");
    assert!(report.contains(&matched), "fail2ban-regex should match {expected} lines:\n{report}");
    let hosts: Vec<&str> = report
        .lines()
        .filter_map(|line| line.strip_prefix("|      "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(!hosts.is_empty() && hosts.iter().all(|host| *host == client), "fail2ban found {hosts:?}:\n{report}");
}
