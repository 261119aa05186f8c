//! Passwords over HTTP: a signed-in person changing their own
//! (`POST /api/password`: the other sessions end, this one stays, a wrong
//! current password counts in the sign-in throttle), an administrator's
//! reset (`POST /admin/users/<name>/password`: every session ends), the
//! account page that calls the API, and the page details around accounts:
//! the admin forms keep what was typed, deactivating asks first, the sign-in
//! page's notices, and error pages that keep the signed-in top bar. The last
//! test runs two nodes through RabbitMQ (skipped, loudly, without one).

mod cluster_support;
mod common;

use bytes::Bytes;
use chatctl::client::{Answer, Client};
use cluster_support::{broker, start_ready_node, TestStream};
use common::*;
use hyper::Method;

const NEW_PASSWORD: &str = "Velvet-Orchard-58!";

/// `POST /api/password` as the account page's script sends it, with an
/// `Origin` when given.
async fn change_password(client: &Client, old: &str, new: &str, origin: Option<&str>) -> Answer {
    let body = serde_json::json!({"old_password": old, "new_password": new}).to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(origin) = origin {
        headers.push(("origin", origin));
    }
    client.send(Method::POST, "/api/password", &headers, Bytes::from(body)).await.unwrap()
}

/// A second, separate session of `username` (another browser).
async fn second_session(app: &TestApp, username: &str) -> Client {
    let mut client = app.anonymous();
    let answer = client.login(username, &password_of(username)).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    client
}

/// Whether `password` signs `username` in (from a fresh client).
async fn signs_in(url: &str, username: &str, password: &str) -> bool {
    let mut client = Client::new(url).unwrap();
    let answer = client.login(username, password).await.unwrap();
    assert!(matches!(answer.status.as_u16(), 200 | 401), "{username}: {} {}", answer.status, answer.text());
    answer.status == 200
}

/// The admin page's CSRF token for `client`.
async fn admin_token(client: &Client) -> String {
    let page = client.get("/admin").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    input_value(&page.text(), "csrf_token").expect("a csrf_token on the admin page")
}

async fn post_form(client: &Client, path: &str, fields: &[(&str, &str)]) -> Answer {
    client.send(Method::POST, path, &[FORM], form_body(fields)).await.unwrap()
}

/// The `<tr>` of `username` on the admin page.
fn admin_row<'a>(html: &'a str, username: &str) -> &'a str {
    html.split("<tr>")
        .find(|row| row.starts_with(&format!("<td>{username}</td>")))
        .unwrap_or_else(|| panic!("no row for {username} in:\n{html}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_ones_own_password_signs_out_the_other_sessions_and_keeps_this_one() {
    let app = spawn_app(&["alice", "bob"]).await;
    let alice = app.client("alice");
    let elsewhere = second_session(&app, "alice").await;
    let (mut mine, _) = join(&alice, "/ws/chat/lobby/").await;
    let (mut theirs, _) = join(&elsewhere, "/ws/chat/lobby/").await;
    let (mut bobs, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;

    let answer = change_password(&alice, &password_of("alice"), NEW_PASSWORD, Some(&app.own_origin())).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json().unwrap(), serde_json::json!({"ok": true}));

    assert_eq!(expect_close_with_reason(&mut theirs).await.unwrap(), (1008, "signed out".to_owned()));
    assert_json_error(&elsewhere.get("/api/me").await.unwrap(), 401, "the other session after the change");
    assert!(mine.receives_nothing(QUIET).await, "the session that changed its password lost its socket");
    say(&mut mine, "still signed in").await;
    assert_eq!(alice.get("/api/me").await.unwrap().status, 200, "the session that changed its password ended");
    let seen = bobs.next_of_type("chat_handler", WAIT).await.expect("another user's socket stays open");
    assert_eq!(text_of(&seen), "still signed in");
    assert_eq!(app.client("bob").get("/api/me").await.unwrap().status, 200, "another user's session ended");

    assert!(!signs_in(&app.url(), "alice", &password_of("alice")).await, "the old password still works");
    assert!(signs_in(&app.url(), "alice", NEW_PASSWORD).await, "the new password does not work");
    // Without an Origin header (a non-browser client) the change is allowed too.
    let again = change_password(&alice, NEW_PASSWORD, "Copper-Lantern-71?", None).await;
    assert_eq!(again.status, 200, "{}", again.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_current_password_is_403_and_counts_like_a_failed_sign_in() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let (mut socket, _) = join(&alice, "/ws/chat/lobby/").await;
    for attempt in 1..=chatctl::auth::throttle::PER_ADDRESS_AND_NAME {
        let answer = change_password(&alice, "not-my-password-1", NEW_PASSWORD, None).await;
        assert_json_error(&answer, 403, &format!("wrong current password, attempt {attempt}"));
    }
    // The pair (this address, alice) is now throttled, for the API and for signing in alike.
    let throttled = change_password(&alice, &password_of("alice"), NEW_PASSWORD, None).await;
    assert_json_error(&throttled, 429, "a change after too many wrong passwords");
    let wait: u64 = throttled.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1, "Retry-After: {wait}");
    let mut fresh = app.anonymous();
    assert_eq!(fresh.login("alice", &password_of("alice")).await.unwrap().status, 429, "sign-in not throttled");

    assert!(socket.receives_nothing(QUIET).await, "a refused change closed a socket");
    assert_eq!(alice.get("/api/me").await.unwrap().status, 200, "a refused change ended the session");
    let stored = app.server.app().store.user("alice").unwrap().unwrap();
    assert!(chatctl::auth::password::verify(&password_of("alice"), &stored.password_hash), "the password changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_breaking_the_rules_is_400_with_the_reason() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    for (new, reason) in [
        ("short1", "too short"),
        ("40917362558", "entirely numeric"),
        ("password123", "too common"),
        ("alice2026", "similar"),
    ] {
        let answer = change_password(&alice, &password_of("alice"), new, None).await;
        assert_json_error(&answer, 400, new);
        let error = answer.json().unwrap()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(reason), "{new}: {error}");
    }
    for body in ["not json", "{\"old_password\": \"x\"}", "{\"old_password\": 1, \"new_password\": 2}", "[]"] {
        let answer = alice
            .send(Method::POST, "/api/password", &[("content-type", "application/json")], Bytes::from(body))
            .await
            .unwrap();
        assert_json_error(&answer, 400, body);
    }
    assert!(signs_in(&app.url(), "alice", &password_of("alice")).await, "a refused change changed the password");
    // Refusals by the rules cost no sign-in attempts: the right password still gets through.
    let answer = change_password(&alice, &password_of("alice"), NEW_PASSWORD, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_403_and_no_session_is_401() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    for origin in ["http://evil.example", "null"] {
        let answer = change_password(&alice, &password_of("alice"), NEW_PASSWORD, Some(origin)).await;
        assert_json_error(&answer, 403, origin);
    }
    let anonymous = change_password(&app.anonymous(), &password_of("alice"), NEW_PASSWORD, None).await;
    assert_json_error(&anonymous, 401, "no session");
    assert_json_error(&alice.get("/api/password").await.unwrap(), 405, "GET /api/password");
    assert!(signs_in(&app.url(), "alice", &password_of("alice")).await, "a refused change changed the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reset_ends_every_session_of_that_user() {
    let app = spawn_app_with(&[UserSpec::new("root").superuser(), UserSpec::new("bob")], |_| {}).await;
    let root = app.client("root");
    let bob_elsewhere = second_session(&app, "bob").await;
    let (mut one, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    let (mut two, _) = join(&bob_elsewhere, "/ws/direct/root/").await;
    let (mut roots, _) = join(&root, "/ws/chat/lobby/").await;

    let token = admin_token(&root).await;
    let answer =
        post_form(&root, "/admin/users/bob/password", &[("csrf_token", &token), ("password", NEW_PASSWORD)]).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(location(&answer.headers).as_deref(), Some("/admin"));
    for socket in [&mut one, &mut two] {
        assert_eq!(expect_close_with_reason(socket).await.unwrap(), (1008, "signed out".to_owned()));
    }
    assert_json_error(&app.client("bob").get("/api/me").await.unwrap(), 401, "bob's first session");
    assert_json_error(&bob_elsewhere.get("/api/me").await.unwrap(), 401, "bob's second session");
    assert!(roots.receives_nothing(QUIET).await, "the administrator's socket closed");
    assert!(!signs_in(&app.url(), "bob", &password_of("bob")).await, "the old password still works");
    assert!(signs_in(&app.url(), "bob", NEW_PASSWORD).await, "the new password does not work");

    let flash = format!("chatctl_notice={}", cookie_value(&answer.headers, "chatctl_notice").unwrap());
    let shown = root.send(Method::GET, "/admin", &[("cookie", &flash)], Bytes::new()).await.unwrap();
    assert!(shown.text().contains("The password of bob was changed"), "{}", shown.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_superusers_with_the_pages_token_reset_passwords_and_a_refusal_keeps_the_form() {
    let specs = [UserSpec::new("root").superuser(), UserSpec::new("alice"), UserSpec::new("bob")];
    let app = spawn_app_with(&specs, |_| {}).await;
    let root = app.client("root");
    let (mut bobs, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;

    let alice = app.client("alice");
    let alice_token = input_value(&alice.get("/").await.unwrap().text(), "csrf_token").unwrap();
    let fields = [("csrf_token", alice_token.as_str()), ("password", NEW_PASSWORD)];
    let refused = post_form(&alice, "/admin/users/bob/password", &fields).await;
    assert_eq!(refused.status, 403, "a non-superuser reset a password");

    let missing = post_form(&root, "/admin/users/bob/password", &[("password", NEW_PASSWORD)]).await;
    assert_eq!(missing.status, 403, "a reset without csrf_token");
    let wrong = post_form(&root, "/admin/users/bob/password", &[("csrf_token", "0".repeat(64).as_str())]).await;
    assert_eq!(wrong.status, 403, "a reset with a wrong csrf_token");

    let token = admin_token(&root).await;
    let weak = post_form(&root, "/admin/users/bob/password", &[("csrf_token", &token), ("password", "bob12")]).await;
    assert_eq!(weak.status, 400, "{}", weak.text());
    let html = weak.text();
    assert!(html.contains("The password of bob was not changed") && html.contains("too short"), "{html}");
    assert!(admin_row(&html, "bob").contains("<details class=\"row-action\" open>"), "bob's reset form is not open");
    assert!(!admin_row(&html, "alice").contains(" open>"), "another row's form is open");
    assert!(!html.contains("bob12"), "the refused password was echoed back");

    let unknown =
        post_form(&root, "/admin/users/nobody/password", &[("csrf_token", &token), ("password", NEW_PASSWORD)]).await;
    assert_eq!(unknown.status, 404);
    assert!(bobs.receives_nothing(QUIET).await, "a refused reset closed bob's socket");
    assert!(signs_in(&app.url(), "bob", &password_of("bob")).await, "a refused reset changed the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_new_user_keeps_what_was_typed_but_the_password_and_deactivating_asks_first() {
    let specs = [UserSpec::new("root").superuser(), UserSpec::new("alice")];
    let app = spawn_app_with(&specs, |_| {}).await;
    let root = app.client("root");
    let token = admin_token(&root).await;

    let typed = [
        ("csrf_token", token.as_str()),
        ("username", "carol"),
        ("email", "carol\"<x>@example.org"),
        ("password", "carol"),
        ("is_superuser", "on"),
    ];
    let weak = post_form(&root, "/admin/users", &typed).await;
    assert_eq!(weak.status, 400, "{}", weak.text());
    let html = weak.text();
    assert_eq!(input_value(&html, "username").as_deref(), Some("carol"));
    assert_eq!(input_value(&html, "email").as_deref(), Some("carol\"<x>@example.org"));
    assert!(html.contains("value=\"carol&quot;&lt;x&gt;@example.org\""), "the email is not escaped");
    assert!(html.contains("value=\"on\" checked"), "the administrator box was not kept");
    assert_eq!(input_value(&html, "password"), None, "the password was echoed back");

    let bad_name = [("csrf_token", token.as_str()), ("username", "<b>x"), ("password", NEW_PASSWORD)];
    let html = post_form(&root, "/admin/users", &bad_name).await.text();
    assert!(html.contains("value=\"&lt;b&gt;x\""), "the bad username is not kept escaped");

    let taken = [("csrf_token", token.as_str()), ("username", "ALICE"), ("email", "a@b.c"), ("password", NEW_PASSWORD)];
    let answer = post_form(&root, "/admin/users", &taken).await;
    assert_eq!(answer.status, 409);
    assert_eq!(input_value(&answer.text(), "username").as_deref(), Some("ALICE"));
    assert_eq!(input_value(&answer.text(), "email").as_deref(), Some("a@b.c"));
    assert!(!answer.text().contains(NEW_PASSWORD));

    // Deactivating is a two-step form: the row's button opens a confirm step
    // holding the real form, so it works without JavaScript.
    let admin = root.get("/admin").await.unwrap().text();
    let row = admin_row(&admin, "alice");
    let confirm = row.split("<summary class=\"danger\">Deactivate</summary>").nth(1).expect("a Deactivate step");
    assert!(confirm.starts_with("<form method=\"post\" action=\"/admin/users/alice/deactivate\""), "{row}");
    assert!(confirm.contains("Yes, deactivate"), "{row}");
    assert!(row.contains("action=\"/admin/users/alice/password\""), "no reset form in {row}");
    assert!(!admin_row(&admin, "root").contains("/deactivate"), "root may deactivate themself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_is_for_signed_in_people_and_linked_from_the_top_bar() {
    let app = spawn_app(&["alice"]).await;
    let page = app.client("alice").get("/account").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    for wanted in [
        "id=\"password-form\"",
        "id=\"old-password\"",
        "id=\"new-password\"",
        "id=\"new-password2\"",
        "src=\"/static/account.js\"",
        "<dd id=\"account-username\">alice</dd>",
        "href=\"/account\" title=\"Your account\" aria-current=\"page\"",
        "class=\"topbar\"",
    ] {
        assert!(html.contains(wanted), "{wanted} missing from /account:\n{html}");
    }
    let lobby = app.client("alice").get("/").await.unwrap().text();
    assert!(lobby.contains("href=\"/account\" title=\"Your account\">"), "the lobby's top bar has no account link");
    let script = app.anonymous().get("/static/account.js").await.unwrap();
    assert_eq!(script.status, 200);
    assert!(script.text().contains("/api/password"));

    let anonymous = app.anonymous().get("/account").await.unwrap();
    assert_eq!(anonymous.status, 303);
    assert_eq!(location(&anonymous.headers).as_deref(), Some("/login?next=/account"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_pages_keep_the_top_bar_when_signed_in() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    for (path, status) in [("/no/such/page", 404), ("/chat/bad-name!", 404), ("/admin", 403)] {
        let page = alice.get(path).await.unwrap();
        assert_eq!(page.status.as_u16(), status, "{path}");
        let html = page.text();
        assert!(html.contains("class=\"topbar\"") && html.contains("Sign out"), "{path} lost the top bar:\n{html}");
        assert!(html.contains(">alice</a>"), "{path} does not name the user");
        assert!(html.contains(&format!("<h1>{status} ")), "{path}: {html}");
    }
    let anonymous = app.anonymous().get("/no/such/page").await.unwrap();
    assert_eq!(anonymous.status, 404);
    assert!(!anonymous.text().contains("class=\"topbar\""), "an anonymous error page has a signed-in top bar");
    let stale = get_with_cookie(&app.anonymous(), "/no/such/page", "chatctl_session=stale").await;
    assert!(!stale.text().contains("class=\"topbar\""), "a stale session got a top bar");
}

async fn get_with_cookie(client: &Client, path: &str, cookie: &str) -> Answer {
    client.send(Method::GET, path, &[("cookie", cookie)], Bytes::new()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_lands_on_the_sign_in_page_with_a_notice() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let token = input_value(&alice.get("/").await.unwrap().text(), "csrf_token").unwrap();
    let answer = post_form(&alice, "/logout", &[("csrf_token", &token)]).await;
    assert_eq!(answer.status, 303);
    assert_eq!(location(&answer.headers).as_deref(), Some("/login"));
    let set_cookie = set_cookie_for(&answer.headers, "chatctl_notice").expect("a notice cookie");
    assert!(cookie_attributes(&set_cookie).iter().any(|a| a == "path=/login"), "{set_cookie}");

    let flash = format!("chatctl_notice={}", cookie_value(&answer.headers, "chatctl_notice").unwrap());
    let page = get_with_cookie(&app.anonymous(), "/login", &flash).await;
    assert!(page.text().contains("You have signed out."), "{}", page.text());
    assert_eq!(cookie_value(&page.headers, "chatctl_notice").as_deref(), Some(""), "a shown notice is cleared");
    assert!(!app.anonymous().get("/login").await.unwrap().text().contains("You have signed out."));

    let deactivated = app.anonymous().get("/login?reason=deactivated").await.unwrap().text();
    assert!(deactivated.contains("This account has been deactivated."), "{deactivated}");
    let crafted = app.anonymous().get("/login?reason=%3Cb%3ECall+555-0100").await.unwrap().text();
    assert!(!crafted.contains("555-0100") && !crafted.contains("deactivated"), "a crafted reason was shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_says_when_setup_is_pending_without_the_token() {
    let app = spawn_app(&[]).await;
    let setup_url = app.server.setup_url.clone().expect("an empty data dir offers setup");
    let token = setup_url.split("token=").nth(1).expect("a token in the setup URL");
    let html = app.anonymous().get("/login").await.unwrap().text();
    assert!(html.contains("No account exists yet"), "{html}");
    assert!(!html.contains(token), "the sign-in page revealed the setup token");

    let with_users = spawn_app(&["alice"]).await;
    let html = with_users.anonymous().get("/login").await.unwrap().text();
    assert!(!html.contains("No account exists yet"), "setup pending shown with an account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_one_node_signs_out_the_users_socket_on_another_node() {
    let test = "a_password_changed_on_one_node_signs_out_the_users_socket_on_another_node";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let one = start_ready_node(&broker.url, &stream.name).await;
    let two = start_ready_node(&broker.url, &stream.name).await;
    one.create_user("alice").await;
    let on_one = one.sign_in("alice").await;
    let on_two = two.sign_in("alice").await;
    let (mut kept, _) = join(&on_one, "/ws/chat/lobby/").await;
    let (mut ended, _) = join(&on_two, "/ws/chat/lobby/").await;

    let answer = change_password(&on_one, &password_of("alice"), NEW_PASSWORD, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    assert_eq!(expect_close_with_reason(&mut ended).await.unwrap(), (1008, "signed out".to_owned()));
    assert_json_error(&on_two.get("/api/me").await.unwrap(), 401, "the session on the other node");
    assert!(kept.receives_nothing(QUIET).await, "the changing session's socket closed");
    assert_eq!(on_one.get("/api/me").await.unwrap().status, 200);
    assert!(signs_in(&two.url(), "alice", NEW_PASSWORD).await, "the other node refuses the new password");
    assert!(!signs_in(&two.url(), "alice", &password_of("alice")).await, "the other node takes the old password");
    one.stop().await;
    two.stop().await;
}
