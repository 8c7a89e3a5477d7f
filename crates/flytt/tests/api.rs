//! The HTTP API of a running `flytt serve`, against the real Dovecot pair:
//! a batch created from an uploaded CSV, watched through the event stream
//! to Synced, completed, its reports downloaded; tokens; malformed input;
//! and the OpenAPI document checked against the routes.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, USER_PASSWORD as PASSWORD, Worker, flytt_ok, new_token};
use flytt_testsupport::dovecot::MASTER_PASSWORD;
use reqwest::StatusCode;

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON")
    }
}

/// Reads server-sent events from `response` into `seen` until `done` says
/// so or the time is up; returns the (event, data) pairs.
async fn read_events(
    mut response: reqwest::Response,
    done: impl Fn(&[(String, serde_json::Value)]) -> bool,
    limit: Duration,
) -> Vec<(String, serde_json::Value)> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buffer = String::new();
    while !done(&seen) {
        assert!(
            start.elapsed() < limit,
            "the stream did not show the end in time: {seen:?}"
        );
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("the stream went silent")
            .expect("stream");
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if !event.is_empty() {
                seen.push((event, serde_json::from_str(&data).unwrap_or_default()));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_through_the_api_from_upload_to_reports() {
    let users = [
        "anne@example.org",
        "bjorn@example.org",
        "cecilie@example.org",
        "dag@example.org",
    ];
    let lab = Lab::start(&users, &[20, 21, 22, 23], 2_000).await;
    let data = lab.data.clone();
    let token = new_token(&data, "tests");
    let (_server, base) = Worker::serve(&data);
    let api = Api {
        base,
        token,
        client: reqwest::Client::new(),
    };

    // The endpoint test logs in through the admin account.
    let tested: serde_json::Value = api
        .post(
            "/api/v1/endpoints/ny/test",
            serde_json::json!({"user": "anne@example.org"}),
        )
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["logged_in_as"], "anne@example.org", "{tested}");
    assert!(
        tested["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case("IMAP4rev1")))),
        "{tested}"
    );
    let refused: serde_json::Value = api
        .post(
            "/api/v1/endpoints/gammel/test",
            serde_json::json!({"user": "anne@example.org"}),
        )
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("no admin account")),
        "{refused}"
    );

    // An endpoint made over the API keeps its password to itself.
    let made = api
        .post(
            "/api/v1/endpoints",
            serde_json::json!({"name": "tredje", "url": "imaps://mail.example.org",
                               "admin_user": "admin", "admin_password": "hemmelig-passord"}),
        )
        .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let made = made.text().await.expect("text");
    assert!(
        made.contains("\"admin_password_set\":true") && !made.contains("hemmelig"),
        "{made}"
    );
    let bad = api
        .post(
            "/api/v1/endpoints",
            serde_json::json!({"name": "fjerde", "url": "pop3://mail.example.org"}),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // A CSV with a problem is refused with its line, and nothing is made.
    let mut bad = String::from("EmailAddress,UserName,Password\n");
    bad.push_str("anne@example.org,anne@example.org,\n");
    let refused = api
        .post(
            "/api/v1/batches",
            serde_json::json!({"name": "api", "type": "imap", "source_endpoint": "gammel",
                               "target_endpoint": "ny", "csv": bad}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(answer["problems"][0]["line"], 2, "{answer}");
    assert!(
        answer["problems"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Password is empty"),
        "{answer}"
    );
    assert_eq!(api.json("/api/v1/batches").await, serde_json::json!([]));

    // The stream is open before anything happens.
    let stream = api.get("/api/v1/events/stream?batch=api").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );

    let csv = Lab::csv(&users);
    let created = api
        .post(
            "/api/v1/batches",
            serde_json::json!({"name": "api", "type": "imap", "source_endpoint": "gammel",
                               "target_endpoint": "ny", "csv": csv, "large_item_limit": "10MB",
                               "incremental_sync_interval": "1h",
                               "folder_mapping": ["Arkiv/* -> Archive/*; Gammelt -> \"Gammel post\""]}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let batch: serde_json::Value = created.json().await.expect("JSON");
    assert_eq!(batch["status"], "Created", "{batch}");
    assert_eq!(batch["users"], 5, "{batch}");
    assert_eq!(
        batch["parameters"]["large_item_limit"],
        10 * 1024 * 1024,
        "{batch}"
    );
    assert_eq!(
        batch["parameters"]["folder_mapping"],
        serde_json::json!([
            "\"Arkiv/*\" -> \"Archive/*\"",
            "\"Gammelt\" -> \"Gammel post\""
        ]),
        "{batch}"
    );
    let again = api
        .post(
            "/api/v1/batches",
            serde_json::json!({"name": "api", "type": "imap", "source_endpoint": "gammel",
                               "target_endpoint": "ny", "csv": "EmailAddress,UserName,Password\nx@example.org,x,passord-123\n"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let started = api
        .post("/api/v1/batches/api/start", serde_json::json!({}))
        .await;
    assert_eq!(started.status(), StatusCode::OK);

    let seen = read_events(
        stream,
        |seen| {
            seen.iter()
                .any(|(e, d)| e == "progress" && d["status"] == "SyncedWithErrors")
        },
        Duration::from_secs(120),
    )
    .await;
    for user in users {
        assert!(
            seen.iter()
                .any(|(e, d)| e == "status" && d["email"] == user && d["status"] == "Synced"),
            "{user} reaching Synced is in the stream: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|(e, d)| e == "status"
            && d["email"] == "per@example.org"
            && d["status"] == "Failed"
            && d["message"].as_str().unwrap_or_default().contains("LOGIN")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(e, d)| e == "progress" && d["user_counts"]["Syncing"].as_u64() > Some(0)),
        "the stream shows users syncing: {seen:?}"
    );

    for (i, user) in users.iter().enumerate() {
        assert_eq!(lab.target_inbox(user).await, 20 + i as u32, "{user}");
    }
    let shown = api.json("/api/v1/batches/api").await;
    assert_eq!(
        shown["totals"]["messages_copied"],
        20 + 21 + 22 + 23,
        "{shown}"
    );
    let per = api.json("/api/v1/users/PER@example.org").await;
    assert_eq!(per["status"], "Failed", "{per}");

    // The users page by page (each page's Link names the next), searched
    // by address and filtered by status.
    let emails = |users: &serde_json::Value| -> Vec<String> {
        users
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["email"].as_str().map(str::to_string))
            .collect()
    };
    let everyone = emails(&api.json("/api/v1/batches/api/users").await);
    assert_eq!(everyone.len(), 5, "{everyone:?}");
    let mut paged = Vec::new();
    let mut next = Some("/api/v1/batches/api/users?limit=2".to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let response = api.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        next = response
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(path, _)| path.to_string());
        let page: serde_json::Value = response.json().await.expect("JSON");
        assert!(page.as_array().is_some_and(|p| p.len() <= 2), "{page}");
        paged.extend(emails(&page));
        pages += 1;
        assert!(pages <= 3, "the pages end");
    }
    assert_eq!(paged, everyone, "every user once, in CSV order");
    assert_eq!(
        emails(&api.json("/api/v1/batches/api/users?q=CEC").await),
        ["cecilie@example.org"]
    );
    assert_eq!(
        emails(
            &api.json("/api/v1/batches/api/users?status=Failed&q=example")
                .await
        ),
        ["per@example.org"]
    );
    // The runner that synced them is listed; it holds nobody now.
    let workers = api.json("/api/v1/workers").await;
    assert_eq!(workers.as_array().map(Vec::len), Some(1), "{workers}");
    assert_eq!(workers[0]["users_held"], 0, "{workers}");
    assert!(
        workers[0]["last_heartbeat"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // Retry the failed user (still a wrong password: Failed again, alone).
    let retried: serde_json::Value = api
        .post("/api/v1/batches/api/retry", serde_json::json!({}))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(retried["retried"], 1, "{retried}");

    let completing = api
        .post("/api/v1/batches/api/complete", serde_json::json!({}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let completing_status = completing.status();
    if completing_status == StatusCode::CONFLICT {
        // The retry made the batch sync again; complete once it is synced.
        loop {
            let done = api.json("/api/v1/batches/api").await;
            if done["status"] == "SyncedWithErrors" {
                break;
            }
            assert!(Instant::now() < deadline, "{done}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let completing = api
            .post("/api/v1/batches/api/complete", serde_json::json!({}))
            .await;
        assert_eq!(completing.status(), StatusCode::OK);
    } else {
        assert_eq!(completing_status, StatusCode::OK);
    }
    let done = loop {
        let done = api.json("/api/v1/batches/api").await;
        if done["status"] == "CompletedWithErrors" {
            break done;
        }
        assert!(Instant::now() < deadline, "{done}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["user_counts"]["Completed"], 4, "{done}");

    let report = api.get("/api/v1/batches/api/reports/users.csv").await;
    assert_eq!(report.status(), StatusCode::OK);
    assert!(
        report
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("api-users.csv"))
    );
    let report = report.text().await.expect("text");
    assert_eq!(report.lines().count(), 6, "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("dag@example.org,Completed,,") && l.contains(",23,23,")),
        "{report}"
    );
    let errors = api
        .get("/api/v1/batches/api/reports/errors.csv")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        errors
            .lines()
            .any(|l| l.starts_with("per@example.org,user,")),
        "{errors}"
    );

    let metrics = api.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("flytt_users{batch=\"api\",status=\"Completed\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "flytt_messages_copied_total{{batch=\"api\"}} {}",
            20 + 21 + 22 + 23
        )),
        "{metrics}"
    );
    assert!(metrics.contains("flytt_syncs_in_flight{endpoint=\"gammel\"} 0"));

    // No answer carries a password.
    for path in [
        "/api/v1/batches",
        "/api/v1/batches/api/users",
        "/api/v1/endpoints",
        "/api/v1/events?batch=api",
    ] {
        let text = api.get(path).await.text().await.expect("text");
        assert!(
            !text.contains(PASSWORD)
                && !text.contains("feil-passord")
                && !text.contains(MASTER_PASSWORD),
            "{path}: {text}"
        );
    }

    let removed = api
        .client
        .delete(api.url("/api/v1/batches/api"))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/api/v1/batches/api").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Tokens and malformed input: 401 without detail, clear 4xx errors, and
/// the server still answers afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let token = new_token(&data, "tests");
    let (_server, base) = Worker::serve(&data);
    let api = Api {
        base,
        token,
        // A fresh connection per request: after refusing an oversized body
        // the server closes its connection (it does not read 33 MiB it will
        // not use), and a pooled one would be reused by the next request.
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
    };
    let health = api
        .client
        .get(api.url("/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.status(), StatusCode::OK);
    for (path, token) in [
        ("/api/v1/batches", None),
        ("/api/v1/batches", Some("flytt_wrong")),
        ("/api/v1/batches", Some("not-even-a-token")),
        ("/metrics", None),
        ("/api/v1/openapi.json", None),
    ] {
        let mut request = api.client.get(api.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            response.text().await.expect("text"),
            r#"{"error":"unauthorized"}"#
        );
    }
    let removed = flytt_ok(&data, &["token", "remove", "tests"]);
    assert!(removed.status.success());
    assert_eq!(
        api.get("/api/v1/batches").await.status(),
        StatusCode::UNAUTHORIZED,
        "a removed token opens nothing"
    );
    let api = Api {
        token: new_token(&data, "second"),
        ..api
    };

    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            api.client.post(api.url("/api/v1/batches")).body("{\"name\":"),
            StatusCode::BAD_REQUEST,
            "request body",
        ),
        (
            api.client.post(api.url("/api/v1/batches")).body("[1,2]"),
            StatusCode::BAD_REQUEST,
            "request body",
        ),
        (
            api.client.post(api.url("/api/v1/batches")).body(
                r#"{"name":"x","type":"imap","source_endpoint":"a","target_endpoint":"b","csv":"","colour":"red"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            api.client.post(api.url("/api/v1/batches")).body(
                r#"{"name":"x","type":"pst","source_endpoint":"a","target_endpoint":"b","csv":""}"#,
            ),
            StatusCode::BAD_REQUEST,
            "type",
        ),
        (
            api.client.post(api.url("/api/v1/batches")).body(
                r#"{"name":"x","type":"imap","source_endpoint":"a","target_endpoint":"b","csv":"","bad_item_limit":"lots"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "bad_item_limit",
        ),
        (
            api.client.post(api.url("/api/v1/batches")).body(
                r#"{"name":"x","type":"imap","source_endpoint":"a","target_endpoint":"b","csv":"","folder_mapping":["Arkiv/* -> X/**"]}"#,
            ),
            StatusCode::BAD_REQUEST,
            "the target's wildcards must be the source's",
        ),
        (
            api.client.post(api.url("/api/v1/batches")).body(
                r#"{"name":"x","type":"imap","source_endpoint":"a","target_endpoint":"b","csv":""}"#,
            ),
            StatusCode::NOT_FOUND,
            "no endpoint",
        ),
        (
            api.client.post(api.url("/api/v1/batches/nope/start")),
            StatusCode::NOT_FOUND,
            "no batch",
        ),
        (
            api.client.get(api.url("/api/v1/events?after=soon")),
            StatusCode::BAD_REQUEST,
            "after",
        ),
        (
            api.client.get(api.url("/api/v1/batches/nope/users?limit=0")),
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            api.client.get(api.url("/api/v1/batches/nope/users?cursor=abc")),
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            api.client.get(api.url("/api/v1/batches/nope/users?status=Sleeping")),
            StatusCode::BAD_REQUEST,
            "Sleeping",
        ),
        (
            api.client.get(api.url("/api/v1/batches/nope/users?limit=5")),
            StatusCode::NOT_FOUND,
            "no batch",
        ),
        (
            api.client.post(api.url("/api/v1/csv/validate?type=imap")).body(vec![0xff, 0xfe, 0x00]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "UTF-8",
        ),
        (
            api.client
                .post(api.url("/api/v1/csv/validate?type=imap"))
                .body(vec![b'a'; 33 * 1024 * 1024]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            api.client.get(api.url("/api/v1/nothing/here")),
            StatusCode::NOT_FOUND,
            "no such route",
        ),
    ];
    for (request, status, says) in cases {
        let response = request.bearer_auth(&api.token).send().await.expect("send");
        let got = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(got, status, "{text}");
        assert!(text.contains(says), "{status}: {text}");
    }
    assert_eq!(api.json("/api/v1/batches").await, serde_json::json!([]));
}

/// Every route in the OpenAPI document answers (none is the router's
/// "no such route" or a wrong method), and every route the router has is
/// in the document.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let token = new_token(&data, "tests");
    let (_server, base) = Worker::serve(&data);
    let api = Api {
        base,
        token,
        client: reqwest::Client::new(),
    };
    let served = api.json("/api/v1/openapi.json").await;
    let file: serde_json::Value =
        serde_json::from_str(flytt_api::OPENAPI).expect("openapi.json is JSON");
    assert_eq!(served, file);
    let paths = served["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path
                .replace("{name}", "no-such-batch")
                .replace("{email}", "nobody@example.org");
            let request = api
                .client
                .request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
                    api.url(&concrete),
                )
                .bearer_auth(&api.token);
            let request = if concrete.ends_with("/stream") {
                request.timeout(Duration::from_secs(2))
            } else {
                request
            };
            let Ok(response) = request.send().await else {
                continue; // the stream: answered, then held open
            };
            let status = response.status();
            let text = if concrete.ends_with("/stream") {
                String::new()
            } else {
                response.text().await.unwrap_or_default()
            };
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !text.contains("no such route"),
                "{method} {path} is documented but not routed"
            );
            assert!(status.as_u16() < 500, "{method} {path}: {status} {text}");
        }
    }
    // The routes, as the router declares them.
    let source = include_str!("../../flytt-api/src/routes.rs");
    let mut routed = Vec::new();
    for (at, _) in source.match_indices(".route(") {
        // The call's text, up to its closing parenthesis.
        let call = &source[at + ".route(".len()..];
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(call.len(), |(i, _)| i);
        let call = &call[..end];
        let Some((_, rest)) = call.split_once('"') else {
            continue;
        };
        let Some((path, handlers)) = rest.split_once('"') else {
            continue;
        };
        let full = if path == "/healthz" || path == "/metrics" {
            path.to_string()
        } else {
            format!("/api/v1{path}")
        };
        for (marker, method) in [
            ("get(", "GET"),
            ("post(", "POST"),
            ("patch(", "PATCH"),
            ("delete(", "DELETE"),
        ] {
            if handlers.contains(marker) {
                routed.push(format!("{method} {full}"));
            }
        }
    }
    routed.sort();
    documented.sort();
    assert_eq!(routed, documented);
}
