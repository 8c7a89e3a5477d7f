//! `flytt directory …` and the API's `/directories` against a real
//! OpenLDAP: add, test (bind, base, a user), show without the password,
//! name it from an endpoint, remove.

mod common;

use common::{Worker, flytt, flytt_ok, json, new_token};
use flytt_testsupport::slapd::{ADMIN_DN, ADMIN_PASSWORD, BASE_DN, Slapd};

#[test]
fn directories_are_added_tested_and_named_by_endpoints() {
    let slapd = Slapd::start().expect("slapd");
    slapd
        .add_mail_user("kari", "kari@example.org")
        .expect("user");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let password = dir.path().join("bind.pw");
    std::fs::write(&password, format!("{ADMIN_PASSWORD}\n")).expect("write");
    let wrong = dir.path().join("wrong.pw");
    std::fs::write(&wrong, "feil").expect("write");
    let url = slapd.url();
    // Plaintext allowed, but the directory offers StartTLS: it is used,
    // with the CA verified.
    let ca = slapd.ca_file().display().to_string();
    for (name, file) in [("corp", &password), ("feil", &wrong)] {
        flytt_ok(
            &data,
            &[
                "directory",
                "new",
                name,
                "--ldap-url",
                &url,
                "--bind-dn",
                ADMIN_DN,
                "--bind-password-file",
                file.to_str().expect("path"),
                "--base-dn",
                BASE_DN,
                "--allow-plaintext",
                "--ca-file",
                &ca,
            ],
        );
    }
    let tested = json(&flytt_ok(
        &data,
        &[
            "directory",
            "test",
            "corp",
            "--user",
            "kari@example.org",
            "--json",
        ],
    ));
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["user"]["state"], "mail_user", "{tested}");
    let absent = json(&flytt_ok(
        &data,
        &[
            "directory",
            "test",
            "corp",
            "--user",
            "nobody@example.org",
            "--json",
        ],
    ));
    assert!(absent["user"].is_null(), "{absent}");
    let failed = flytt(&data, &["directory", "test", "feil"]);
    assert_eq!(failed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("bind"));
    // `directory set` mends it: the right bind password, sealed; a filter
    // without {email} is refused.
    let password_flag = password.display().to_string();
    flytt_ok(
        &data,
        &[
            "directory",
            "set",
            "feil",
            "--bind-password-file",
            &password_flag,
        ],
    );
    flytt_ok(
        &data,
        &["directory", "test", "feil", "--user", "kari@example.org"],
    );
    let bad_filter = flytt(
        &data,
        &["directory", "set", "feil", "--user-filter", "(uid=kari)"],
    );
    assert_eq!(bad_filter.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_filter.stderr).contains("{email}"));

    let shown = flytt_ok(&data, &["directory", "show", "corp", "--json"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    assert_eq!(json(&shown)["bind_password_set"], true);

    flytt_ok(
        &data,
        &[
            "endpoint",
            "new",
            "ny",
            "--url",
            "imaps://mail.example.org",
            "--directory",
            "corp",
        ],
    );
    let missing = flytt(
        &data,
        &[
            "endpoint",
            "new",
            "x",
            "--url",
            "imaps://mail.example.org",
            "--directory",
            "nope",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no directory named \"nope\""));
    let in_use = flytt(&data, &["directory", "remove", "corp"]);
    assert_eq!(in_use.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&in_use.stderr).contains("used by an endpoint"));
    flytt_ok(&data, &["directory", "remove", "feil"]);
}

/// The same through the API: added with its bind password (write-only),
/// listed, tested with a user, refused twice, removed.
#[tokio::test(flavor = "multi_thread")]
async fn directories_are_managed_through_the_api() {
    let slapd = Slapd::start().expect("slapd");
    slapd
        .add_mail_user("kari", "kari@example.org")
        .expect("user");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let token = new_token(&data, "api");
    let (worker, base) = Worker::serve(&data);
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
    };
    let body = serde_json::json!({
        "name": "corp",
        "settings": {
            "kind": "ldap",
            "url": slapd.url(),
            "allow_plaintext": true,
            "ca_files": [slapd.ca_file()],
            "bind_dn": ADMIN_DN,
            "base_dn": BASE_DN,
        },
        "bind_password": ADMIN_PASSWORD,
    });
    let created = call(reqwest::Method::POST, "/directories")
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = created.status();
    let created = created.text().await.expect("body");
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    assert!(!created.contains(ADMIN_PASSWORD), "{created}");
    let again = call(reqwest::Method::POST, "/directories")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT);
    // No program to run is taken from a request.
    let hook = call(reqwest::Method::POST, "/directories")
        .json(&serde_json::json!({
            "name": "skript",
            "settings": { "kind": "hook", "program": "/bin/sh" },
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(hook.status(), reqwest::StatusCode::BAD_REQUEST);
    let listed: serde_json::Value = call(reqwest::Method::GET, "/directories")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(listed[0]["name"], "corp", "{listed}");
    assert_eq!(listed[0]["bind_password_set"], true);
    let tested: serde_json::Value = call(reqwest::Method::POST, "/directories/corp/test")
        .json(&serde_json::json!({ "user": "kari@example.org" }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["user"]["state"], "mail_user", "{tested}");
    // Changed: a filter that finds nobody, then back; the kind stays; a
    // wrong bind password is said by the test.
    let change = |body: serde_json::Value| {
        call(reqwest::Method::PATCH, "/directories/corp")
            .json(&body)
            .send()
    };
    let changed = change(serde_json::json!({
        "settings": { "user_filter": "(uid=ingen-{email})" },
        "bind_password": "feil-passord",
    }))
    .await
    .expect("send");
    assert_eq!(changed.status(), reqwest::StatusCode::OK);
    let changed = changed.text().await.expect("body");
    assert!(
        changed.contains("(uid=ingen-{email})") && !changed.contains("feil-passord"),
        "{changed}"
    );
    let test = || async {
        call(reqwest::Method::POST, "/directories/corp/test")
            .json(&serde_json::json!({ "user": "kari@example.org" }))
            .send()
            .await
            .expect("send")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    };
    let tested = test().await;
    assert_eq!(tested["ok"], false, "the wrong bind password: {tested}");
    let changed = change(serde_json::json!({
        "settings": { "user_filter": "(mail={email})" },
        "bind_password": ADMIN_PASSWORD,
    }))
    .await
    .expect("send");
    assert_eq!(changed.status(), reqwest::StatusCode::OK);
    let tested = test().await;
    assert_eq!(tested["user"]["state"], "mail_user", "{tested}");
    for (path, body, status) in [
        (
            "/directories/corp",
            serde_json::json!({ "settings": { "kind": "hook" } }),
            reqwest::StatusCode::BAD_REQUEST,
        ),
        (
            "/directories/corp",
            serde_json::json!({ "settings": { "url": "http://not-ldap" } }),
            reqwest::StatusCode::BAD_REQUEST,
        ),
        (
            "/directories/ingen",
            serde_json::json!({ "settings": {} }),
            reqwest::StatusCode::NOT_FOUND,
        ),
    ] {
        let refused = call(reqwest::Method::PATCH, path)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(refused.status(), status, "{body}");
    }
    let removed = call(reqwest::Method::DELETE, "/directories/corp")
        .send()
        .await
        .expect("send");
    assert_eq!(removed.status(), reqwest::StatusCode::NO_CONTENT);
    let gone = call(reqwest::Method::GET, "/directories/corp")
        .send()
        .await
        .expect("send");
    assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);
    drop(worker);
}
