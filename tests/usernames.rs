//! The username rules of every way accounts are made, on real servers: a
//! name made only of dots is refused, a name that differs only in case from
//! an existing one is taken, and sign-in looks names up exactly as written.
//! (The cluster race is in `cluster.rs`, `--amqp-url` in `admin_cluster.rs`,
//! the setup page in `persistence.rs`.)

mod admin_support;
mod cluster_support;
mod common;

use admin_support::{assert_ok, chatctl, code, dir_arg, stderr, stdout};
use chatctl::client::{Answer, Client};
use common::{create_users, form_body, input_value, password_of, spawn_app_with, UserSpec, FORM};
use hyper::Method;

const DOTS_REASON: &str = "cannot be made only of dots";
const CASE_REASON: &str = "differ only in case";

/// Submits the admin page's "create user" form as `admin`.
async fn admin_creates(admin: &Client, username: &str) -> Answer {
    let token = input_value(&admin.get("/admin").await.unwrap().text(), "csrf_token").expect("the admin form's token");
    let fields = [("csrf_token", token.as_str()), ("username", username), ("password", "Brass-Compass-804")];
    admin.send(Method::POST, "/admin/users", &[FORM], form_body(&fields)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_form_refuses_dot_names_and_names_taken_in_another_case_and_keeps_working() {
    let app = spawn_app_with(&[UserSpec::new("root").superuser(), UserSpec::new("bob")], |_| {}).await;
    let root = app.client("root");
    for dots in [".", ".."] {
        let answer = admin_creates(&root, dots).await;
        assert_eq!(answer.status, 400, "{dots:?}: {}", answer.text());
        assert!(answer.text().contains(DOTS_REASON), "{dots:?}: the page does not say why: {}", answer.text());
    }
    for taken in ["Bob", "BOB", "bob"] {
        let answer = admin_creates(&root, taken).await;
        assert_eq!(answer.status, 409, "{taken}: {}", answer.text());
        assert!(answer.text().contains("already exists"), "{taken}: {}", answer.text());
        assert!(answer.text().contains("csrf_token"), "{taken}: the admin form is not shown again");
    }
    let store = app.server.app().store.clone();
    let names: Vec<String> = store.users().unwrap().into_iter().map(|u| u.username.into()).collect();
    assert_eq!(names, ["bob", "root"]);
    assert_eq!(admin_creates(&root, "carol").await.status, 303, "the form stopped working after a refusal");
    assert!(store.user("carol").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_looks_the_name_up_exactly_as_written() {
    let app = spawn_app_with(&[UserSpec::new("bob")], |_| {}).await;
    let mut client = app.anonymous();
    assert_eq!(client.login("BOB", &password_of("bob")).await.unwrap().status, 401);
    assert_eq!(client.login("Bob", &password_of("bob")).await.unwrap().status, 401);
    assert_eq!(client.login("bob", &password_of("bob")).await.unwrap().status, 200);
}

/// `createsuperuser --no-input --username <name>` on `dir`.
async fn createsuperuser(dir: &str, username: &str) -> std::process::Output {
    let args = ["createsuperuser", "--no-input", "--username", username, "--password-stdin", "--data-dir", dir];
    chatctl(&args, Some("Quiet-Harbor-2026\n")).await
}

/// What both ways of reaching a data dir (through a running server's control
/// socket, or opening it) must answer.
async fn createsuperuser_refuses_dots_and_other_cases(dir: &str, running: &str) {
    for dots in [".", ".."] {
        let output = createsuperuser(dir, dots).await;
        assert_eq!(code(&output), 2, "{running}: {dots:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(DOTS_REASON), "{running}: {dots:?}: {}", stderr(&output));
    }
    for taken in ["Bob", "BOB"] {
        let output = createsuperuser(dir, taken).await;
        assert_eq!(code(&output), 1, "{running}: {taken}: {}", stderr(&output));
        assert!(stderr(&output).contains("already taken"), "{running}: {taken}: {}", stderr(&output));
        assert!(stderr(&output).contains(CASE_REASON), "{running}: {taken}: {}", stderr(&output));
    }
    let output = createsuperuser(dir, "carol").await;
    assert_ok(&output, "createsuperuser carol");
    assert!(stdout(&output).contains("Superuser carol created."), "{running}: {}", stdout(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn createsuperuser_on_a_running_server_refuses_dot_names_and_names_taken_in_another_case() {
    let app = spawn_app_with(&[UserSpec::new("bob")], |_| {}).await;
    createsuperuser_refuses_dots_and_other_cases(&dir_arg(app.dir.path()), "running").await;
    let names: Vec<String> = app.server.app().store.users().unwrap().into_iter().map(|u| u.username.into()).collect();
    assert_eq!(names, ["bob", "carol"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn createsuperuser_on_a_stopped_data_dir_refuses_dot_names_and_names_taken_in_another_case() {
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &[UserSpec::new("bob")]);
    createsuperuser_refuses_dots_and_other_cases(&dir_arg(dir.path()), "stopped").await;
    let listed = chatctl(&["users", "list", "--data-dir", &dir_arg(dir.path())], None).await;
    assert_ok(&listed, "users list");
    let names: Vec<String> =
        stdout(&listed).lines().skip(1).filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect();
    assert_eq!(names, ["bob", "carol"], "{}", stdout(&listed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_account_made_only_of_dots_still_signs_in_and_can_chat() {
    // Written straight to storage, as a version without the rule could.
    let app = spawn_app_with(&[UserSpec::new("..").signed_out(), UserSpec::new("bob")], |_| {}).await;
    let mut dots = app.anonymous();
    assert_eq!(dots.login("..", &password_of("..")).await.unwrap().status, 200);
    let (status, me) = dots.get_json("/api/me").await.unwrap();
    assert_eq!((status.as_u16(), me["username"].as_str()), (200, Some("..")));
    let (mut ws, _) = common::join(&dots, "/ws/chat/lobby/").await;
    assert_eq!(common::say(&mut ws, "still here").await["author"], "..");
    assert_eq!(app.anonymous().get("/direct/..").await.unwrap().status, 404);
}
