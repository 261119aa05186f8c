//! The admin commands through the real binary, on a single node: against a
//! running server (they go through its control socket) and against a
//! stopped data dir (they open it themselves); online backup while messages
//! are being written, and restore. Commands run with no standard input
//! unless a test pipes a password, so none may wait for a prompt.

mod admin_support;
mod cluster_support;
mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use admin_support::{assert_ok, chatctl, closed, code, dir_arg, stderr, stdout};

use chatctl::client::Client;
use chatctl::config::ServerConfig;
use common::{create_users, join, password_of, spawn_app, spawn_app_with, spawn_unlimited_app, UserSpec, WAIT};
use serde_json::Value;

/// `users list --json` as (username -> the user's object).
async fn listed_users(dir: &Path) -> Vec<Value> {
    let output = chatctl(&["users", "list", "--json", "--data-dir", &dir_arg(dir)], None).await;
    assert_ok(&output, "users list --json");
    let users: Value = serde_json::from_slice(&output.stdout).expect("users list --json prints JSON");
    users.as_array().expect("a JSON array").clone()
}

fn user<'a>(users: &'a [Value], name: &str) -> &'a Value {
    users.iter().find(|u| u["username"] == name).unwrap_or_else(|| panic!("{name} missing from {users:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_commands_reach_a_running_server_and_deactivation_closes_the_socket() {
    let app = spawn_app(&["alice", "bob"]).await;
    let dir = app.dir.path();
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let socket = std::fs::metadata(dir.join("control.sock")).expect("serve listens on <data-dir>/control.sock");
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.permissions().mode() & 0o777, 0o600, "the control socket is not owner-only");
    let users = listed_users(dir).await;
    assert_eq!(users.len(), 2);
    assert_eq!(user(&users, "bob")["is_active"], true);
    assert!(user(&users, "bob")["created"].as_str().is_some_and(|c| c.ends_with('Z')));

    let (mut bob_ws, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    let output = chatctl(&["users", "deactivate", "bob", "--data-dir", &dir_arg(dir)], None).await;
    assert_ok(&output, "users deactivate bob");
    assert_eq!(closed(&mut bob_ws).await, (1008, "account deactivated".to_owned()));
    assert_eq!(user(&listed_users(dir).await, "bob")["is_active"], false);
    let mut bob = app.anonymous();
    assert_ne!(bob.login("bob", &password_of("bob")).await.unwrap().status, 200, "a deactivated user signed in");

    let unknown = chatctl(&["users", "deactivate", "nobody", "--data-dir", &dir_arg(dir)], None).await;
    assert_eq!(code(&unknown), 2, "an unknown user: {}", stderr(&unknown));
    assert!(stderr(&unknown).contains("no user named \"nobody\""), "{}", stderr(&unknown));

    let output = chatctl(&["users", "activate", "bob", "--data-dir", &dir_arg(dir)], None).await;
    assert_ok(&output, "users activate bob");
    assert_eq!(bob.login("bob", &password_of("bob")).await.unwrap().status, 200);

    let table = chatctl(&["users", "list", "--data-dir", &dir_arg(dir)], None).await;
    assert_ok(&table, "users list");
    assert!(stdout(&table).starts_with("USERNAME"), "{}", stdout(&table));
    assert!(stdout(&table).lines().any(|l| l.starts_with("alice") && l.contains("yes")), "{}", stdout(&table));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changepassword_signs_the_user_out_and_only_the_new_password_works() {
    let app = spawn_app(&["alice"]).await;
    let dir = dir_arg(app.dir.path());
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;

    let weak = chatctl(&["changepassword", "alice", "--password-stdin", "--data-dir", &dir], Some("alice123\n")).await;
    assert_eq!(code(&weak), 2, "a weak password: {}", stderr(&weak));
    assert!(stderr(&weak).contains("the password was refused"), "{}", stderr(&weak));
    assert!(ws.receives_nothing(Duration::from_millis(200)).await, "a refused change signed alice out");

    let new_password = "Fresh-Lantern-93!";
    let output = chatctl(
        &["changepassword", "alice", "--password-stdin", "--data-dir", &dir],
        Some(&format!("{new_password}\n")),
    )
    .await;
    assert_ok(&output, "changepassword alice");
    assert_eq!(closed(&mut ws).await, (1008, "signed out".to_owned()));
    // The old session is gone too, not only the socket.
    let (status, _) = app.client("alice").get_json("/api/me").await.unwrap();
    assert_ne!(status, 200, "the old session still works");

    let mut fresh = app.anonymous();
    assert_ne!(fresh.login("alice", &password_of("alice")).await.unwrap().status, 200, "the old password works");
    assert_eq!(fresh.login("alice", new_password).await.unwrap().status, 200, "the new password does not work");

    let unknown =
        chatctl(&["changepassword", "zed", "--password-stdin", "--data-dir", &dir], Some("Whatever-77-x\n")).await;
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn createsuperuser_works_while_the_server_runs_and_closes_setup() {
    let app = spawn_app(&[]).await;
    assert!(app.server.setup_url.is_some());
    let dir = dir_arg(app.dir.path());
    let args = ["createsuperuser", "--no-input", "--username", "root", "--email", "r@example.com", "--password-stdin"];
    let output = chatctl(&[&args[..], &["--data-dir", &dir]].concat(), Some("Quiet-Harbor-2026\n")).await;
    assert_ok(&output, "createsuperuser on a running server");
    assert!(stdout(&output).contains("Superuser root created."), "{}", stdout(&output));
    assert!(app.server.app().setup.get().is_none(), "the setup page is still open");
    let mut root = app.anonymous();
    assert_eq!(root.login("root", "Quiet-Harbor-2026").await.unwrap().status, 200);
    let (_, me) = root.get_json("/api/me").await.unwrap();
    assert_eq!(me["is_superuser"], true);

    let again = chatctl(&[&args[..], &["--data-dir", &dir]].concat(), Some("Quiet-Harbor-2026\n")).await;
    assert_eq!(code(&again), 1, "a taken username: {}", stderr(&again));
    assert!(stderr(&again).contains("already taken"), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_on_a_stopped_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &[UserSpec::new("alice"), UserSpec::new("bob")]);
    // A socket file left by a crashed server answers nobody: the commands open the dir.
    std::fs::write(dir.path().join("control.sock"), b"").unwrap();
    let d = dir_arg(dir.path());
    assert_eq!(listed_users(dir.path()).await.len(), 2);
    assert_ok(&chatctl(&["users", "deactivate", "bob", "--data-dir", &d], None).await, "deactivate, stopped");
    let output =
        chatctl(&["changepassword", "alice", "--password-stdin", "--data-dir", &d], Some("Copper-Kettle-58\n")).await;
    assert_ok(&output, "changepassword, stopped");
    let output = chatctl(
        &["createsuperuser", "--no-input", "--username", "root", "--password-stdin", "--data-dir", &d],
        Some("Quiet-Harbor-2026\n"),
    )
    .await;
    assert_ok(&output, "createsuperuser, stopped");

    let copy = dir.path().join("offline-backup.redb");
    assert_ok(&chatctl(&["backup", "--data-dir", &d, "--to", &dir_arg(&copy)], None).await, "backup, stopped");
    assert!(copy.is_file());

    let server = chatctl::startup::start(ServerConfig::ephemeral(dir.path())).await.expect("the server starts");
    let mut client = Client::new(&server.url()).unwrap();
    assert_ne!(client.login("bob", &password_of("bob")).await.unwrap().status, 200, "bob is deactivated");
    assert_ne!(client.login("alice", &password_of("alice")).await.unwrap().status, 200, "alice's old password");
    assert_eq!(client.login("alice", "Copper-Kettle-58").await.unwrap().status, 200, "alice's new password");
    assert_eq!(Client::new(&server.url()).unwrap().login("root", "Quiet-Harbor-2026").await.unwrap().status, 200);
    server.shutdown().await;
    assert!(!dir.path().join("control.sock").exists(), "shutdown leaves the control socket behind");

    let missing = dir.path().join("nothing-here");
    let output = chatctl(&["users", "list", "--data-dir", &dir_arg(&missing)], None).await;
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(!missing.exists(), "listing users created a data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_without_a_terminal_never_wait_for_a_prompt() {
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &[UserSpec::new("alice")]);
    let d = dir_arg(dir.path());
    for args in [
        vec!["createsuperuser", "--data-dir", &d],
        vec!["createsuperuser", "--username", "zoe", "--data-dir", &d],
        vec!["changepassword", "alice", "--data-dir", &d],
        vec!["createsuperuser", "--no-input", "--username", "zoe", "--data-dir", &d],
    ] {
        let output = chatctl(&args, None).await;
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
        let said = stderr(&output);
        assert!(said.contains("--password-stdin"), "{args:?} does not name the flag to use: {said}");
    }
    // The same while a server runs on the dir.
    let server = chatctl::startup::start(ServerConfig::ephemeral(dir.path())).await.unwrap();
    let output = chatctl(&["changepassword", "alice", "--data-dir", &d], None).await;
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_messages_are_written_holds_every_acknowledged_one() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = format!("m{i}");
                ws.send_message(&text, None).await.expect("sending");
                let echo = ws.next_of_type("chat_handler", WAIT).await.expect("an echo");
                assert_eq!(echo["message"], text.as_str());
                acknowledged.lock().unwrap().push(text);
                i += 1;
            }
            i
        })
    };
    while acknowledged.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("chatctl-backup.redb");
    let before_backup = acknowledged.lock().unwrap().clone();
    let output = chatctl(&["backup", "--data-dir", &dir_arg(app.dir.path()), "--to", &dir_arg(&file)], None).await;
    let during = acknowledged.lock().unwrap().len() - before_backup.len();
    assert_ok(&output, "backup while serving");
    // Keep writing a little after the backup, then stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = writer.await.expect("the writer");
    assert!(during > 0, "no message was written while the backup ran (sent {sent})");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let restored = out.path().join("restored");
    let output = chatctl(&["restore", "--data-dir", &dir_arg(&restored), "--from", &dir_arg(&file)], None).await;
    assert_ok(&output, "restore into a new dir");
    let server =
        chatctl::startup::start(ServerConfig::ephemeral(&restored)).await.expect("a server starts on the copy");
    let mut alice = Client::new(&server.url()).unwrap();
    assert_eq!(alice.login("alice", &password_of("alice")).await.unwrap().status, 200);
    let history = cluster_support::full_history(&alice, "lobby").await.expect("the history of the copy");
    let texts: Vec<&str> = history.iter().map(|m| m["message"].as_str().unwrap_or_default()).collect();
    for text in &before_backup {
        assert!(texts.contains(&text.as_str()), "{text}, acknowledged before the backup, is missing from it");
    }
    assert!(texts.len() < sent, "the backup holds messages written after it ended");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_running_server_a_database_without_force_and_a_foreign_file() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.redb");
    let dir = dir_arg(app.dir.path());
    assert_ok(&chatctl(&["backup", "--data-dir", &dir, "--to", &dir_arg(&file)], None).await, "backup");
    let again = chatctl(&["backup", "--data-dir", &dir, "--to", &dir_arg(&file)], None).await;
    assert_eq!(code(&again), 2, "an existing backup file is replaced without --force: {}", stderr(&again));

    let running = chatctl(&["restore", "--data-dir", &dir, "--from", &dir_arg(&file)], None).await;
    assert_eq!(code(&running), 1, "{}", stderr(&running));
    assert!(stderr(&running).contains("running"), "{}", stderr(&running));

    let stopped = tempfile::tempdir().unwrap();
    create_users(stopped.path(), &[UserSpec::new("bob")]);
    let s = dir_arg(stopped.path());
    let refused = chatctl(&["restore", "--data-dir", &s, "--from", &dir_arg(&file)], None).await;
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));

    let foreign = out.path().join("notes.txt");
    std::fs::write(&foreign, b"not a database").unwrap();
    let output = chatctl(&["restore", "--data-dir", &s, "--from", &dir_arg(&foreign), "--force"], None).await;
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("not a chatctl database"), "{}", stderr(&output));

    let forced = chatctl(&["restore", "--data-dir", &s, "--from", &dir_arg(&file), "--force"], None).await;
    assert_ok(&forced, "restore --force");
    let kept: Vec<_> = std::fs::read_dir(stopped.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("chatctl.redb.replaced-"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced database is not kept");
    let users = listed_users(stopped.path()).await;
    assert_eq!(users.len(), 1);
    assert_eq!(user(&users, "alice")["username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_refuses_another_user() {
    // Needs root (to become another user) and util-linux's setpriv.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    let setpriv = Path::new("/usr/bin/setpriv");
    if !root || !setpriv.exists() {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED the_control_socket_refuses_another_user: needs root and setpriv");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app(&["alice"]).await;
    let dir = app.dir.path();
    // Open the file modes, so that only the peer uid check stands in the way.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("control.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("chatctl");
    std::fs::copy(env!("CARGO_BIN_EXE_chatctl"), &bin).unwrap();
    let args: Vec<String> = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([bin.display().to_string(), "users".into(), "deactivate".into(), "alice".into()])
        .chain(["--data-dir".into(), dir_arg(dir)])
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/usr/bin/setpriv").args(&args).stdin(std::process::Stdio::null()).output()
    })
    .await
    .unwrap()
    .expect("running setpriv");
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(stderr(&output).contains("permission denied"), "{}", stderr(&output));
    assert_eq!(user(&listed_users(dir).await, "alice")["is_active"], true, "another user deactivated alice");
}
