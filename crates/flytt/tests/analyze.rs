//! Analyze (`flytt batch analyze`, the API's analysis routes): every user
//! looked at without changing anything, across server families: Dovecot →
//! Cyrus (whose APPENDLIMIT leaves a message out) and Cyrus → Dovecot
//! (whose quota the mail does not fit); a refused login is the user's
//! result, not the batch's end; the target is the same afterwards; the
//! real sync then skips what Analyze said it would.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Worker, flytt, flytt_ok, json, new_token, sign_in};
use flytt_testsupport::corpus::{self, CorpusFolder, CorpusMessage, Snapshot};
use flytt_testsupport::dovecot::storage_quota;
use flytt_testsupport::{Cyrus, Dovecot, Family, Layout, NewEndpoint, TestServer};

const PASSWORD: &str = "passord-for-alle-2";
const KARI: &str = "kari@example.org";
const OLA: &str = "ola@example.org";
/// Over Cyrus's `maxmessagesize` in the test and over the LargeItemLimit
/// the Cyrus → Dovecot test sets.
const BIG: usize = 300_000;

async fn server(family: Family, users: &[(&str, &str)]) -> TestServer {
    match family {
        // A target that tells its APPENDLIMIT.
        Family::Cyrus => TestServer::Cyrus(
            Cyrus::start_with(users, "maxmessagesize: 200000\n")
                .await
                .expect("cyrus"),
        ),
        // A target with a 1 MB quota that the mail does not fit.
        Family::Dovecot(layout) => TestServer::Dovecot(
            Dovecot::start_with(layout, users, &storage_quota("1M")).expect("dovecot"),
        ),
    }
}

fn message(n: u32, size: usize) -> CorpusMessage {
    CorpusMessage {
        bytes: corpus::generated_message(n, Some(&format!("analyze-{n}")), size),
        flags: vec!["\\Seen".into()],
        date: corpus::spread_date(n),
    }
}

/// Kari's mailbox: 30 messages of ~40 KB in INBOX (1.2 MB: more than the
/// Dovecot target's quota), one of `BIG` bytes in Arkiv, and a folder
/// whose name holds the target's separator.
fn mailbox(odd_folder: &str) -> Vec<CorpusFolder> {
    let folder = |path: &str, messages| CorpusFolder {
        path: vec![path.to_string()],
        subscribed: true,
        messages,
    };
    vec![
        folder("INBOX", (0..30).map(|n| message(n, 40_000)).collect()),
        folder("Arkiv", vec![message(100, BIG), message(101, 2_000)]),
        folder(odd_folder, vec![message(200, 3_000)]),
    ]
}

type Mailbox = BTreeMap<String, Vec<Snapshot>>;

async fn target_snapshot(target: &TestServer, user: &str) -> Mailbox {
    let mut session = target.admin_session(user).await.expect("target login");
    corpus::snapshot(&mut session).await.expect("snapshot")
}

fn add_endpoints(data: &Path, dir: &Path, source: &TestServer, target: &TestServer) {
    let password_file = dir.join("target-admin");
    std::fs::write(&password_file, target.admin_password()).expect("password file");
    for (name, server, admin) in [
        ("gammel", source, None),
        ("ny", target, Some(target.admin(&password_file))),
    ] {
        let endpoint = NewEndpoint {
            name,
            url: server.url(),
            ca_file: server.ca_file(),
            admin,
            max_migrations: 4,
            allow_plaintext: false,
        };
        let args = endpoint.args();
        flytt_ok(data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// A batch of Kari (her own source login) and Ola (a wrong password).
fn new_batch(data: &Path, dir: &Path, extra: &[&str]) {
    let csv = dir.join("users.csv");
    std::fs::write(
        &csv,
        format!(
            "EmailAddress,UserName,Password\n{KARI},{KARI},{PASSWORD}\n{OLA},{OLA},feil-passord\n"
        ),
    )
    .expect("csv");
    let csv = csv.display().to_string();
    let mut args = vec![
        "batch",
        "new",
        "--name",
        "b",
        "--type",
        "imap",
        "--source-endpoint",
        "gammel",
        "--target-endpoint",
        "ny",
        "--csv",
        &csv,
    ];
    args.extend(extra);
    flytt_ok(data, &args);
}

async fn analyze_changes_nothing_and_says_what_the_copy_meets(source: Family, target: Family) {
    let users = [(KARI, PASSWORD), (OLA, PASSWORD)];
    let source = TestServer::start(source, &users).await.expect("source");
    let target = server(target, &users).await;
    // A name holding the target's separator, where the source can have
    // one (Cyrus refuses `/` in names: from it, a plain name).
    let odd_folder = match source.family() {
        Family::Cyrus => "Prosjekter".to_string(),
        Family::Dovecot(_) => format!("Q1{}2024", target.separator()),
    };
    let mut session = source.admin_session(KARI).await.expect("source login");
    corpus::seed(&mut session, source.separator(), &mailbox(&odd_folder))
        .await
        .expect("seed");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    add_endpoints(&data, dir.path(), &source, &target);
    // Dovecot has no APPENDLIMIT: there the batch's LargeItemLimit leaves
    // the big message out.
    let limit = matches!(target.family(), Family::Dovecot(_));
    let mut batch_args = vec!["--folder-mapping", "\"Arkiv\" -> \"Gammelt/Arkiv\""];
    if limit {
        batch_args.extend(["--large-item-limit", "250KB"]);
    }
    new_batch(&data, dir.path(), &batch_args);
    let before = target_snapshot(&target, KARI).await;

    let report = dir.path().join("analysis.csv");
    let report_arg = report.display().to_string();
    let out = flytt(
        &data,
        &["batch", "analyze", "b", "--json", "--csv", &report_arg],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "one user could not be looked at: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let analysis = json(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(PASSWORD) && !text.contains(target.admin_password()),
        "{text}"
    );
    assert_eq!(analysis["state"], "Done", "{analysis:#}");
    assert_eq!(
        (analysis["users"].as_u64(), analysis["failed"].as_u64()),
        (Some(2), Some(1))
    );
    let users = analysis["user_results"].as_array().expect("users");
    let (kari, ola) = (&users[0], &users[1]);
    assert_eq!(ola["email"], OLA);
    let refused = ola["error"].as_str().expect("Ola's login is refused");
    assert!(refused.starts_with("source:"), "{refused}");

    assert_eq!(kari["email"], KARI);
    assert!(kari["error"].is_null(), "{kari:#}");
    // Everything but the big message: 30 + 1 + 1, in three folders.
    assert_eq!(kari["messages"], 32, "{kari:#}");
    assert_eq!(kari["messages_found"], 33, "{kari:#}");
    let role_folders = source.role_folders().len() as u64;
    assert_eq!(kari["folders"].as_u64(), Some(3 + role_folders), "{kari:#}");
    let bytes = kari["bytes"].as_u64().expect("bytes");
    assert!((1_200_000..1_300_000).contains(&bytes), "{bytes}");
    assert!(kari["largest_message"].as_u64() > Some(BIG as u64));
    assert_eq!(kari["large_items"], 1, "{kari:#}");
    let renamed = kari["renamed_folders"].as_array().expect("renamed");
    if source.family() == Family::Cyrus {
        assert!(renamed.is_empty(), "{kari:#}");
    } else {
        assert_eq!(renamed.len(), 1, "{kari:#}");
        assert_eq!(renamed[0]["folder"], odd_folder.as_str());
    }
    // The mapping rule's placement is shown.
    let ruled = &kari["folder_rules"][0];
    assert_eq!(ruled["folder"], "Arkiv", "{kari:#}");
    let placed = ruled["target"].as_str().unwrap_or_default();
    assert!(
        placed.contains("Gammelt") && placed.ends_with("Arkiv"),
        "{kari:#}"
    );
    let capabilities = |side: &str| kari[side].as_array().map(|c| c.len()).unwrap_or(0);
    assert!(capabilities("source_capabilities") > 3 && capabilities("target_capabilities") > 3);
    match target.family() {
        Family::Cyrus => {
            assert_eq!(kari["append_limit"], 200_000, "{kari:#}");
            assert!(kari["target_quota"].is_null());
        }
        Family::Dovecot(_) => {
            assert!(kari["append_limit"].is_null());
            assert_eq!(kari["target_quota"]["limit_bytes"], 1024 * 1024, "{kari:#}");
            assert_eq!(analysis["over_quota"], 1);
        }
    }
    // The probe read Kari's INBOX; the estimate follows from it.
    assert_eq!(analysis["probe"]["messages"], 30, "{analysis:#}");
    assert!(analysis["estimated_seconds"].is_u64(), "{analysis:#}");
    assert_eq!(analysis["concurrency"], 4);

    // Nothing changed on the target; the report has a row per user.
    assert_eq!(target_snapshot(&target, KARI).await, before);
    let csv = std::fs::read_to_string(&report).expect("report");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("EmailAddress,Error,Folders"), "{csv}");
    assert!(
        lines[1].starts_with(KARI) && lines[2].starts_with(OLA),
        "{csv}"
    );

    // The text shows the last analysis without running one.
    let last = flytt(&data, &["batch", "analyze", "b", "--last"]);
    assert_eq!(last.status.code(), Some(1));
    let text = String::from_utf8_lossy(&last.stdout);
    assert!(
        text.contains("cannot be analyzed") && text.contains("Estimate: about"),
        "{text}"
    );

    // The copy meets what Analyze said: into Cyrus the big message is
    // skipped as over the APPENDLIMIT and the rest arrives; Dovecot's
    // quota does not take the mail, and the user fails as full.
    flytt_ok(&data, &["batch", "start", "b"]);
    let worker = Worker::start(&data);
    common::wait_for_batch(&data, "b", "SyncedWithErrors").await;
    drop(worker);
    let shown = json(&flytt_ok(&data, &["user", "show", KARI, "--json"]));
    if limit {
        let error = shown["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("target mailbox full"), "{shown:#}");
        return;
    }
    let stats = &shown["statistics"];
    assert_eq!(stats["messages_copied"], 32, "{shown:#}");
    assert_eq!(stats["messages_skipped"], 1, "{shown:#}");
    let skipped = stats["issues"].as_array().expect("issues");
    assert!(
        skipped.iter().any(|i| i["kind"] == "large"
            && i["reason"]
                .as_str()
                .is_some_and(|r| r.contains("over the target's APPENDLIMIT of 200000"))),
        "{shown:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analyze_dovecot_to_cyrus() {
    analyze_changes_nothing_and_says_what_the_copy_meets(
        Family::Dovecot(Layout::Target),
        Family::Cyrus,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analyze_cyrus_to_dovecot() {
    analyze_changes_nothing_and_says_what_the_copy_meets(
        Family::Cyrus,
        Family::Dovecot(Layout::Target),
    )
    .await;
}

/// Through the API: a POST asks, `flytt serve`'s runner does it, the
/// GET shows it and the CSV downloads; a second POST while it runs is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_asks_and_a_runner_analyzes() {
    let users = [(KARI, PASSWORD), (OLA, PASSWORD)];
    let source = TestServer::start(Family::Dovecot(Layout::Source), &users)
        .await
        .expect("source");
    let target = TestServer::start(Family::Dovecot(Layout::Target), &users)
        .await
        .expect("target");
    let mut session = source.admin_session(KARI).await.expect("source login");
    corpus::seed(&mut session, source.separator(), &mailbox("Prosjekter"))
        .await
        .expect("seed");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    add_endpoints(&data, dir.path(), &source, &target);
    new_batch(&data, dir.path(), &[]);
    let token = new_token(&data, "analyze");
    let (_worker, base) = Worker::serve(&data);
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/batches/b/analysis");
    let none = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(none.status(), 404, "not analyzed yet");
    let asked = http
        .post(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("post");
    assert_eq!(asked.status(), 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let analysis: serde_json::Value = loop {
        let answer: serde_json::Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if answer["state"] == "Done" {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "{answer:#}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(analysis["user_results"][0]["messages"], 33, "{analysis:#}");
    assert!(
        analysis["user_results"][1]["error"].is_string(),
        "{analysis:#}"
    );
    let csv = http
        .get(format!("{url}.csv"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), 200);
    assert!(
        csv.text()
            .await
            .expect("text")
            .starts_with("EmailAddress,Error")
    );
    let unknown = http
        .post(format!("{base}/api/v1/batches/nope/analysis"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 404);
    // The dashboard's batch page shows it, with a button to analyze again.
    let page = dashboard_page(&base, &token, "/batches/b").await;
    assert!(page.contains("action=\"/batches/b/analyze\""), "{page}");
    assert!(
        page.contains("Analysis") && page.contains("Cannot be analyzed: source:"),
        "{page}"
    );
    assert!(
        page.contains("2 of 2 users looked at (1 could not be): 33 messages"),
        "{page}"
    );
    assert!(page.contains("/batches/b/reports/analysis.csv"), "{page}");
    // Nothing was copied: the target's INBOX is as it was.
    let mut session = target.admin_session(KARI).await.expect("target login");
    let inbox = session
        .select("INBOX", flytt_imap::Access::ReadOnly)
        .await
        .expect("select");
    assert_eq!(inbox.exists, 0);
}

/// A dashboard page, signed in with an API token.
async fn dashboard_page(base: &str, token: &str, path: &str) -> String {
    let (http, session) = sign_in(base, token).await;
    http.get(format!("{base}{path}"))
        .header("Cookie", session)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html")
}
