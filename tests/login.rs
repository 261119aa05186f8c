//! Signing in and out: the HTML form with its CSRF token, safe `next`
//! redirects, logout, the JSON login, identical answers for every kind of bad
//! credentials, throttling and deactivated accounts.

mod common;

use bytes::Bytes;
use chatctl::client::{Answer, Client};
use common::*;
use hyper::Method;

/// GET /login: the page, its hidden token and the CSRF cookie's value.
async fn login_form(client: &Client, query: &str) -> (Answer, String, String) {
    let page = client.get(&format!("/login{query}")).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let token = input_value(&page.text(), "csrf_token").expect("a csrf_token input");
    let cookie = cookie_value(&page.headers, "chatctl_csrf").expect("a chatctl_csrf cookie");
    (page, token, cookie)
}

async fn post_login(client: &Client, csrf_cookie: Option<&str>, fields: &[(&str, &str)]) -> Answer {
    let cookie = csrf_cookie.map(|c| format!("chatctl_csrf={c}"));
    let mut headers = vec![FORM];
    if let Some(cookie) = &cookie {
        headers.push(("cookie", cookie.as_str()));
    }
    client.send(Method::POST, "/login", &headers, form_body(fields)).await.unwrap()
}

/// Calls `path` with a raw session cookie.
async fn get_with_session(client: &Client, path: &str, session: &str) -> Answer {
    client.send(Method::GET, path, &[("cookie", &format!("chatctl_session={session}"))], Bytes::new()).await.unwrap()
}

/// The text of the page's `role="alert"` element (the form's error slot).
fn alert_text(html: &str) -> String {
    html.split("role=\"alert\"")
        .nth(1)
        .and_then(|tail| tail.split_once('>'))
        .map(|(_, rest)| rest.split('<').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

fn assert_session_cookie_attributes(header: &str) {
    let attributes = cookie_attributes(header);
    for required in ["httponly", "samesite=lax", "path=/"] {
        assert!(attributes.iter().any(|a| a == required), "the session cookie lacks {required}: {header}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_page_has_a_hidden_csrf_token_matching_its_cookie() {
    let app = spawn_app(&[]).await;
    let (page, token, cookie) = login_form(&app.anonymous(), "").await;
    let html = page.text();
    assert!(input_is_hidden(&html, "csrf_token"), "the token input is not hidden");
    assert!(token.len() >= 32, "a guessable token: {token:?}");
    assert_eq!(token, cookie, "the form token is not the cookie's (double submit)");
    let header = set_cookie_for(&page.headers, "chatctl_csrf").unwrap();
    assert!(cookie_attributes(&header).iter().any(|a| a == "path=/"), "{header}");
    let (_, other, _) = login_form(&app.anonymous(), "").await;
    assert_ne!(token, other, "two visitors got the same token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_redirects_303_to_next_with_a_new_session_cookie() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let client = app.anonymous();
    let (_, token, cookie) = login_form(&client, "?next=/chat/lobby").await;
    let password = password_of("alice");
    let answer = post_login(
        &client,
        Some(&cookie),
        &[("username", "alice"), ("password", &password), ("csrf_token", &token), ("next", "/chat/lobby")],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(location(&answer.headers).as_deref(), Some("/chat/lobby"));
    let header = set_cookie_for(&answer.headers, "chatctl_session").expect("a session cookie");
    assert_session_cookie_attributes(&header);
    let session = cookie_value(&answer.headers, "chatctl_session").unwrap();
    assert!(!session.is_empty());
    let me = get_with_session(&client, "/api/me", &session).await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json().unwrap()["username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_without_next_redirects_to_the_lobby() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let client = app.anonymous();
    let (_, token, cookie) = login_form(&client, "").await;
    let password = password_of("alice");
    let answer =
        post_login(&client, Some(&cookie), &[("username", "alice"), ("password", &password), ("csrf_token", &token)])
            .await;
    assert_eq!(answer.status, 303);
    assert_eq!(location(&answer.headers).as_deref(), Some("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_replaces_an_existing_session_with_a_new_one() {
    let app = spawn_app(&["alice"]).await;
    let old = app.client("alice").session_cookie().unwrap().to_owned();
    let client = app.anonymous();
    let (_, token, cookie) = login_form(&client, "").await;
    let password = password_of("alice");
    let both = format!("chatctl_csrf={cookie}; chatctl_session={old}");
    let answer = client
        .send(
            Method::POST,
            "/login",
            &[FORM, ("cookie", &both)],
            form_body(&[("username", "alice"), ("password", &password), ("csrf_token", &token)]),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 303);
    let new = cookie_value(&answer.headers, "chatctl_session").expect("a session cookie");
    assert!(!new.is_empty());
    assert_ne!(new, old, "the session id was not renewed at sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_never_redirects_off_site() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let client = app.anonymous();
    let password = password_of("alice");
    for next in [
        "//evil.example",
        "https://evil.example",
        "/\\evil",
        "\\\\evil.example",
        "http:evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
    ] {
        let (_, token, cookie) = login_form(&client, "").await;
        let answer = post_login(
            &client,
            Some(&cookie),
            &[("username", "alice"), ("password", &password), ("csrf_token", &token), ("next", next)],
        )
        .await;
        assert_eq!(answer.status, 303, "next={next:?}: {}", answer.text());
        assert_eq!(location(&answer.headers).as_deref(), Some("/"), "next={next:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_page_does_not_carry_an_off_site_next_into_its_form() {
    let app = spawn_app(&[]).await;
    for next in ["//evil.example", "https://evil.example", "/%5Cevil"] {
        let (page, _, _) = login_form(&app.anonymous(), &format!("?next={next}")).await;
        let carried = input_value(&page.text(), "next").unwrap_or_default();
        assert!(carried.is_empty() || carried == "/", "next={next:?} was carried into the form as {carried:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_with_a_wrong_password_shows_the_form_with_an_error_and_no_session() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let client = app.anonymous();
    let (fresh, token, cookie) = login_form(&client, "").await;
    assert!(alert_text(&fresh.text()).is_empty(), "a fresh form shows an error");
    let answer = post_login(
        &client,
        Some(&cookie),
        &[("username", "alice"), ("password", "wrong-password-1"), ("csrf_token", &token)],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let html = answer.text();
    assert!(input_value(&html, "csrf_token").is_some(), "the form is not shown again");
    assert!(!alert_text(&html).is_empty(), "no error is shown: {html}");
    let session = cookie_value(&answer.headers, "chatctl_session");
    assert!(session.as_deref().is_none_or(str::is_empty), "a failed sign-in set a session: {session:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_without_a_valid_csrf_token_is_403() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let client = app.anonymous();
    let password = password_of("alice");
    let (_, token, cookie) = login_form(&client, "").await;
    let (_, other_token, _) = login_form(&client, "").await;
    // (what, the chatctl_csrf cookie, the submitted csrf_token field)
    let cases = [
        ("no token", Some(cookie.as_str()), None),
        ("empty token", Some(cookie.as_str()), Some("")),
        ("wrong token", Some(cookie.as_str()), Some(other_token.as_str())),
        ("no cookie", None, Some(token.as_str())),
    ];
    for (what, cookie, submitted) in cases {
        let mut fields = vec![("username", "alice"), ("password", password.as_str())];
        fields.extend(submitted.map(|t| ("csrf_token", t)));
        let answer = post_login(&client, cookie, &fields).await;
        assert_eq!(answer.status, 403, "{what}");
        assert!(
            cookie_value(&answer.headers, "chatctl_session").is_none_or(|s| s.is_empty()),
            "{what}: a session was set"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_the_page_token_ends_the_session_server_side() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let lobby = alice.get("/").await.unwrap();
    assert_eq!(lobby.status, 200);
    let token = input_value(&lobby.text(), "csrf_token").expect("a csrf_token in the lobby");
    let answer = alice.send(Method::POST, "/logout", &[FORM], form_body(&[("csrf_token", &token)])).await.unwrap();
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(location(&answer.headers).as_deref(), Some("/login"));
    // The same cookie, replayed: the server must have forgotten it.
    let me = alice.get("/api/me").await.unwrap();
    assert_json_error(&me, 401, "the old session after logout");
    assert_refused(alice.connect("/ws/chat/lobby/", None).await, 401, "a socket with the old session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_without_a_valid_token_is_403_and_keeps_the_session() {
    let app = spawn_app(&["alice", "bob"]).await;
    let alice = app.client("alice");
    let bobs_token = input_value(&app.client("bob").get("/").await.unwrap().text(), "csrf_token").unwrap();
    for (what, body) in [
        ("no token", form_body(&[])),
        ("empty token", form_body(&[("csrf_token", "")])),
        ("another user's token", form_body(&[("csrf_token", &bobs_token)])),
    ] {
        let answer = alice.send(Method::POST, "/logout", &[FORM], body).await.unwrap();
        assert_eq!(answer.status, 403, "{what}");
    }
    assert_eq!(alice.get("/api/me").await.unwrap().status, 200, "the session ended anyway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_login_answers_the_user_and_sets_the_session_cookie() {
    let app =
        spawn_app_with(&[UserSpec::new("alice").signed_out(), UserSpec::new("root").superuser().signed_out()], |_| {})
            .await;
    for (name, superuser) in [("alice", false), ("root", true)] {
        let answer = app
            .anonymous()
            .post_json("/api/login", &serde_json::json!({"username": name, "password": password_of(name)}))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.json().unwrap(), serde_json::json!({"username": name, "is_superuser": superuser}));
        let header = set_cookie_for(&answer.headers, "chatctl_session").expect("Set-Cookie");
        assert!(header.starts_with("chatctl_session="), "{header}");
        assert_session_cookie_attributes(&header);
        let session = cookie_value(&answer.headers, "chatctl_session").unwrap();
        let me = get_with_session(&app.anonymous(), "/api/me", &session).await;
        assert_eq!(me.json().unwrap()["username"], name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_login_answers_bad_password_unknown_user_and_deactivated_account_alike() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out(), UserSpec::new("gone").inactive()], |_| {}).await;
    let attempt = |username: &str, password: String| {
        let client = app.anonymous();
        let body = serde_json::json!({"username": username, "password": password});
        async move { client.post_json("/api/login", &body).await.unwrap() }
    };
    let wrong_password = attempt("alice", "not-her-password".into()).await;
    let unknown_user = attempt("nobody", password_of("nobody")).await;
    let deactivated = attempt("gone", password_of("gone")).await;
    let invalid_name = attempt("no such user!", "x".into()).await;
    // Usernames are compared case-sensitively: ALICE is nobody.
    let other_case = attempt("ALICE", password_of("alice")).await;
    for (what, answer) in [
        ("wrong password", &wrong_password),
        ("unknown user", &unknown_user),
        ("deactivated account", &deactivated),
        ("invalid username", &invalid_name),
        ("the username in another case", &other_case),
    ] {
        assert_json_error(answer, 401, what);
        assert!(set_cookie_for(&answer.headers, "chatctl_session").is_none(), "{what}: a session cookie was set");
        assert_eq!(answer.body, wrong_password.body, "{what} is told apart from a wrong password");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_answers_bad_password_unknown_user_and_deactivated_account_alike() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out(), UserSpec::new("gone").inactive()], |_| {}).await;
    let client = app.anonymous();
    let mut errors = Vec::new();
    for (username, password) in
        [("alice", "not-her-password".to_owned()), ("nobody", password_of("nobody")), ("gone", password_of("gone"))]
    {
        let (_, token, cookie) = login_form(&client, "").await;
        let answer = post_login(
            &client,
            Some(&cookie),
            &[("username", username), ("password", &password), ("csrf_token", &token)],
        )
        .await;
        assert_eq!(answer.status, 200, "{username}");
        assert!(cookie_value(&answer.headers, "chatctl_session").is_none_or(|s| s.is_empty()));
        errors.push(alert_text(&answer.text()));
    }
    assert!(!errors[0].is_empty());
    assert!(errors.iter().all(|e| *e == errors[0]), "the errors differ: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_for_one_username_are_throttled_with_429() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out(), UserSpec::new("bob").signed_out()], |_| {}).await;
    let client = app.anonymous();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = client
            .post_json("/api/login", &serde_json::json!({"username": "alice", "password": "guess-again-1"}))
            .await
            .unwrap();
        statuses.push(answer.status.as_u16());
        if answer.status == 429 {
            assert_json_error(&answer, 429, "throttled");
            break;
        }
        assert_json_error(&answer, 401, "a failed attempt");
    }
    assert_eq!(statuses.last(), Some(&429), "never throttled: {statuses:?}");
    // Even the right password is refused while throttled...
    let right = client
        .post_json("/api/login", &serde_json::json!({"username": "alice", "password": password_of("alice")}))
        .await
        .unwrap();
    assert_eq!(right.status, 429, "{}", right.text());
    assert!(set_cookie_for(&right.headers, "chatctl_session").is_none());
    // ...but another user is not locked out by alice's attacker.
    let mut bob = app.anonymous();
    let answer = bob.login("bob", &password_of("bob")).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_users_existing_session_stops_working() {
    let app = spawn_app_with(&[UserSpec::new("root").superuser(), UserSpec::new("alice")], |_| {}).await;
    let alice = app.client("alice");
    assert_eq!(alice.get("/api/me").await.unwrap().status, 200);

    deactivate(&app, "alice").await;

    assert_json_error(&alice.get("/api/me").await.unwrap(), 401, "the deactivated user's session");
    assert_json_error(
        &alice.get("/api/rooms/lobby/messages").await.unwrap(),
        401,
        "the deactivated user's history call",
    );
    assert_refused(alice.connect("/ws/chat/lobby/", None).await, 401, "a new socket of the deactivated user");
    let page = alice.get("/").await.unwrap();
    assert_eq!(page.status, 303, "the lobby still opens for a deactivated user");
    let mut again = app.anonymous();
    assert_eq!(again.login("alice", &password_of("alice")).await.unwrap().status, 401);
}

/// Deactivates `username` through the admin page, as the superuser `root`;
/// returns the redirect.
async fn deactivate(app: &TestApp, username: &str) -> Answer {
    let root = app.client("root");
    let token = input_value(&root.get("/").await.unwrap().text(), "csrf_token").unwrap();
    let answer = root
        .send(
            Method::POST,
            &format!("/admin/users/{username}/deactivate"),
            &[FORM],
            form_body(&[("csrf_token", &token)]),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 303, "deactivating failed: {}", answer.text());
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_notice_comes_from_the_server_never_from_the_url() {
    let app = spawn_app_with(&[UserSpec::new("root").superuser(), UserSpec::new("alice")], |_| {}).await;
    let root = app.client("root");
    let bait = "Your account is locked. Call 555-0100 now";
    let crafted = root.get(&format!("/admin?notice={}", bait.replace(' ', "+"))).await.unwrap();
    assert_eq!(crafted.status, 200, "{}", crafted.text());
    assert!(!crafted.text().contains("Call 555-0100"), "a crafted link put its text on the admin page");

    let redirect = deactivate(&app, "alice").await;
    assert_eq!(location(&redirect.headers).as_deref(), Some("/admin"), "the notice must not travel in the URL");
    let set_cookie = set_cookie_for(&redirect.headers, "chatctl_notice").expect("a chatctl_notice cookie");
    let attributes = cookie_attributes(&set_cookie);
    for wanted in ["httponly", "samesite=lax", "path=/admin"] {
        assert!(attributes.iter().any(|a| a == wanted), "{wanted} missing from {set_cookie}");
    }
    let flash = format!("chatctl_notice={}", cookie_value(&redirect.headers, "chatctl_notice").unwrap());
    let shown = root.send(Method::GET, "/admin", &[("cookie", &flash)], Bytes::new()).await.unwrap();
    assert!(shown.text().contains("User alice was deactivated."), "the notice is missing:\n{}", shown.text());
    assert_eq!(cookie_value(&shown.headers, "chatctl_notice").as_deref(), Some(""), "a shown notice is cleared");

    let forged = "chatctl_notice=created:<b>evil</b>";
    let page = root.send(Method::GET, "/admin", &[("cookie", forged)], Bytes::new()).await.unwrap();
    assert!(!page.text().contains("evil"), "a cookie the server never writes was shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_users_open_socket_can_no_longer_post() {
    let app = spawn_app_with(&[UserSpec::new("root").superuser(), UserSpec::new("alice")], |_| {}).await;
    let (mut open_socket, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let (mut watcher, _) = join(&app.client("root"), "/ws/chat/lobby/").await;
    deactivate(&app, "alice").await;
    // The socket may be closed, or refuse the frame; what it must not do is
    // store and deliver a message from an account that no longer may sign in.
    let _ = open_socket.send_message("posted after deactivation", None).await;
    let _ = open_socket.next_event(QUIET).await;
    assert!(watcher.receives_nothing(QUIET).await, "another member received a message from the deactivated user");
    let history = app.client("root").get_json("/api/rooms/lobby/messages").await.unwrap().1;
    assert_eq!(history["messages"], serde_json::json!([]), "a deactivated user's open socket still stores messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_login_from_a_foreign_origin_is_refused() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let body = serde_json::json!({"username": "alice", "password": password_of("alice")}).to_string();
    let answer = app
        .anonymous()
        .send(
            Method::POST,
            "/api/login",
            &[("content-type", "application/json"), ("origin", "http://evil.example")],
            Bytes::from(body.clone()),
        )
        .await
        .unwrap();
    assert_json_error(&answer, 403, "a cross-origin JSON login");
    assert!(set_cookie_for(&answer.headers, "chatctl_session").is_none());
    let own = app.own_origin();
    let answer = app
        .anonymous()
        .send(Method::POST, "/api/login", &[("content-type", "application/json"), ("origin", &own)], Bytes::from(body))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "a same-origin JSON login: {}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_pass_the_per_username_limit() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let guesses = (0..20).map(|i| {
        let client = app.anonymous();
        async move {
            let body = serde_json::json!({"username": "alice", "password": format!("wrong-guess-{i}")});
            client.post_json("/api/login", &body).await.unwrap().status.as_u16()
        }
    });
    let statuses: Vec<u16> = futures_join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "{checked} passwords were checked at once: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
}

/// Runs the futures concurrently, each on its own task.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_users_sign_in_from_one_address_and_all_get_in() {
    // An office behind one NAT, or every user behind a proxy nobody
    // declared: successful sign-ins never count against the address.
    let users: Vec<UserSpec> = (0..200).map(|i| UserSpec::new(&format!("member{i:03}")).signed_out()).collect();
    let app = spawn_app_with(&users, |_| {}).await;
    let started = std::time::Instant::now();
    // Twenty people at a time, as a crowd arriving at nine o'clock would.
    let mut refused: Vec<(String, u16)> = Vec::new();
    for batch in 0..10 {
        let logins = (0..20).map(|i| {
            let mut client = app.anonymous();
            async move {
                let name = format!("member{:03}", batch * 20 + i);
                let answer = client.login(&name, &password_of(&name)).await.unwrap();
                (name, answer.status.as_u16())
            }
        });
        refused.extend(futures_join_all(logins).await.into_iter().filter(|(_, status)| *status != 200));
    }
    assert!(refused.is_empty(), "{} of 200 correct sign-ins were refused: {refused:?}", refused.len());
    eprintln!("200 sign-ins from one address took {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_failing_is_refused_but_its_earlier_successes_never_counted() {
    let users: Vec<UserSpec> = (0..30).map(|i| UserSpec::new(&format!("m{i}")).signed_out()).collect();
    let app = spawn_app_with(&users, |_| {}).await;
    for i in 0..30 {
        let mut client = app.anonymous();
        let name = format!("m{i}");
        assert_eq!(client.login(&name, &password_of(&name)).await.unwrap().status, 200);
    }
    let mut statuses = Vec::new();
    for i in 0..25 {
        let answer = app
            .anonymous()
            .post_json("/api/login", &serde_json::json!({"username": format!("ghost{i}"), "password": "x-wrong-1"}))
            .await
            .unwrap();
        statuses.push(answer.status.as_u16());
    }
    let first_429 = statuses.iter().position(|s| *s == 429).expect("never throttled");
    assert_eq!(first_429, 20, "the 21st failure is the first refused: {statuses:?}");
    let refused = app.anonymous().login("m0", &password_of("m0")).await.unwrap();
    assert_eq!(refused.status, 429, "a throttled address is refused for every name");
    let retry_after: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_name_slows_down_but_its_owner_gets_in_from_a_clean_address_within_seconds() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |config| {
        config.trusted_proxies = chatctl::config::TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
    })
    .await;
    let attempt = |password: String, address: String| {
        let client = app.anonymous();
        async move {
            let body = serde_json::json!({"username": "alice", "password": password}).to_string();
            let started = std::time::Instant::now();
            let answer = client
                .send(
                    Method::POST,
                    "/api/login",
                    &[("content-type", "application/json"), ("x-forwarded-for", &address)],
                    Bytes::from(body),
                )
                .await
                .unwrap();
            (answer.status.as_u16(), started.elapsed())
        }
    };
    // A guesser spread over ten addresses, three guesses each, at once.
    let guesses = (0..30).map(|i| attempt(format!("guess-{i}"), format!("198.51.100.{}", i % 10)));
    for (status, _) in futures_join_all(guesses).await {
        assert!(status == 401 || status == 429, "{status}");
    }
    let (_, guess_took) = attempt("one-more-guess".into(), "198.51.100.99".into()).await;
    assert!(guess_took >= std::time::Duration::from_millis(400), "a guessed name was not slowed: {guess_took:?}");
    let (status, took) = attempt(password_of("alice"), "192.0.2.50".into()).await;
    assert_eq!(status, 200, "the owner was locked out of their account");
    assert!(took < std::time::Duration::from_secs(10), "the owner waited {took:?}");
}
