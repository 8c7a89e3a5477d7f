//! The administrator's controls on running work, across server families:
//! a batch's Stop and a user's Stop end a running sync at a safe point
//! within seconds (the source behind a slow link, so the copy is still
//! under way), nothing is written after, and a Start or a retry copies the
//! rest exactly once; one failed user is fixed and retried alone, stopped
//! and removed, through the API, the dashboard and the CLI.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::{
    Driver, browser, choose, click_button, click_link, fill, overflow_right, screenshot, text,
    wait_for_text,
};
use common::{Worker, flytt, flytt_ok, json, new_token, sign_in};
use flytt_testsupport::corpus::{self, CorpusFolder, CorpusMessage, Snapshot};
use flytt_testsupport::proxy::LatencyProxy;
use flytt_testsupport::slapd::{ADMIN_DN, ADMIN_PASSWORD, BASE_DN, Slapd};
use flytt_testsupport::{Family, Layout, NewEndpoint, TestServer};

const PASSWORD: &str = "konsoll-passord-3";
const KARI: &str = "kari@example.org";
const OLA: &str = "ola@example.org";
const PER: &str = "per@example.org";
const BATCH: &str = "b";

fn messages(from: u32, count: u32, size: usize) -> Vec<CorpusMessage> {
    (from..from + count)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("konsoll-{n}")), size),
            flags: vec!["\\Seen".into()],
            date: corpus::spread_date(n),
        })
        .collect()
}

async fn seed(server: &TestServer, user: &str, folders: &[CorpusFolder]) {
    let mut session = server.admin_session(user).await.expect("source login");
    corpus::seed(&mut session, server.separator(), folders)
        .await
        .expect("seed");
}

fn folder(path: &str, messages: Vec<CorpusMessage>) -> CorpusFolder {
    CorpusFolder {
        path: vec![path.to_string()],
        subscribed: true,
        messages,
    }
}

/// The messages of `folders` (INBOX and Prosjekter) in `user`'s mailbox.
async fn mail(server: &TestServer, user: &str) -> Vec<(String, Vec<Snapshot>)> {
    let mut session = server.admin_session(user).await.expect("login");
    let snapshot = corpus::snapshot(&mut session).await.expect("snapshot");
    ["INBOX", "Prosjekter"]
        .iter()
        .map(|f| (f.to_string(), snapshot.get(*f).cloned().unwrap_or_default()))
        .collect()
}

/// The target's folders hold exactly the source's messages (said briefly:
/// the messages are large).
fn assert_same(target: &[(String, Vec<Snapshot>)], source: &[(String, Vec<Snapshot>)]) {
    for ((folder, there), (_, here)) in target.iter().zip(source) {
        let missing = here.iter().filter(|m| !there.contains(m)).count();
        let extra = there.iter().filter(|m| !here.contains(m)).count();
        let first_extra = there.iter().find(|m| !here.contains(m)).map(|m| {
            (
                String::from_utf8_lossy(&m.bytes[..m.bytes.len().min(300)]).to_string(),
                m.flags.clone(),
                m.date.clone(),
            )
        });
        assert!(
            missing == 0 && extra == 0 && there.len() == here.len(),
            "{folder}: {} on the target, {} on the source, {missing} missing, {extra} not as on the source: {first_extra:?}",
            there.len(),
            here.len()
        );
    }
}

/// Endpoints `gammel` (the source at `source_url`, the users' own logins
/// from the CSV) and `ny` (the target, through its admin).
fn add_endpoints(data: &Path, dir: &Path, source: (&TestServer, String), target: &TestServer) {
    let password_file = dir.join("target-admin");
    std::fs::write(&password_file, target.admin_password()).expect("password file");
    for endpoint in [
        NewEndpoint {
            name: "gammel",
            url: source.1,
            ca_file: source.0.ca_file(),
            admin: None,
            max_migrations: 4,
            allow_plaintext: false,
        },
        NewEndpoint {
            name: "ny",
            url: target.url(),
            ca_file: target.ca_file(),
            admin: Some(target.admin(&password_file)),
            max_migrations: 4,
            allow_plaintext: false,
        },
    ] {
        let args = endpoint.args();
        flytt_ok(data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

fn new_batch(data: &Path, dir: &Path, rows: &[(&str, &str)]) {
    let csv = dir.join("users.csv");
    let mut text = String::from("EmailAddress,UserName,Password\n");
    for (user, password) in rows {
        text.push_str(&format!("{user},{user},{password}\n"));
    }
    std::fs::write(&csv, text).expect("csv");
    let csv = csv.display().to_string();
    flytt_ok(
        data,
        &[
            "batch",
            "new",
            "--name",
            BATCH,
            "--type",
            "imap",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            &csv,
        ],
    );
}

fn batch_status(data: &Path) -> String {
    let shown = json(&flytt(data, &["batch", "show", BATCH, "--json"]));
    shown["status"].as_str().unwrap_or_default().to_string()
}

fn user(data: &Path, email: &str) -> serde_json::Value {
    json(&flytt(data, &["user", "show", email, "--json"]))
}

/// A user's counts per folder, as `user show` gives them: folder →
/// (found, copied).
fn folder_counts(data: &Path, email: &str) -> std::collections::HashMap<String, (u64, u64)> {
    let shown = user(data, email);
    shown["statistics"]["folder_counts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let number = |key: &str| c[key].as_u64().unwrap_or(0);
            let folder = c["folder"].as_str().unwrap_or_default().to_string();
            (folder, (number("found"), number("copied")))
        })
        .collect()
}

/// Polls until `done` says so; panics after `within`.
fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> Option<String>) -> Duration {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < within {
        match done() {
            None => return started.elapsed(),
            Some(state) => last = Some(state),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} within {within:?}: last {last:?}");
}

/// How the administrator stops the running sync.
#[derive(Clone, Copy)]
enum StopBy {
    Batch,
    User,
}

/// Kari's mailbox (1,200 messages of 8 KB in INBOX, 100 in Prosjekter) is
/// copied from a source behind a 1 MB/s link, so it takes over ten
/// seconds; once a hundred messages are across, the administrator stops
/// it. The sync ends within seconds with the user given back (not
/// failed), the target holds a part of the mail, each message once and
/// exact, and nothing more arrives after; then a Start (or the user's
/// retry) copies the rest, and the target is exactly the source.
async fn a_stop_ends_the_running_sync_at_a_safe_point(
    source: Family,
    target: Family,
    stop_by: StopBy,
) {
    let users = [(KARI, PASSWORD)];
    let source = TestServer::start(source, &users).await.expect("source");
    let target = TestServer::start(target, &users).await.expect("target");
    seed(
        &source,
        KARI,
        &[
            folder("INBOX", messages(0, 1_200, 8_000)),
            folder("Prosjekter", messages(5_000, 100, 8_000)),
        ],
    )
    .await;
    let link = LatencyProxy::start_shaped(source.port(), Duration::from_millis(1), 1_000_000)
        .await
        .expect("proxy");
    let source_url = source
        .url()
        .replace(&format!(":{}", source.port()), &format!(":{}", link.port));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    add_endpoints(&data, dir.path(), (&source, source_url), &target);
    new_batch(&data, dir.path(), &[(KARI, PASSWORD)]);
    flytt_ok(&data, &["batch", "start", BATCH]);
    let worker = Worker::start(&data);

    wait_until(Duration::from_secs(60), "a hundred messages copied", || {
        let shown = user(&data, KARI);
        let copied = shown["progress"]["messages_copied"].as_u64().unwrap_or(0);
        (copied < 100).then(|| shown.to_string())
    });
    let asked = Instant::now();
    let said = match stop_by {
        StopBy::Batch => flytt_ok(&data, &["batch", "stop", BATCH]),
        StopBy::User => flytt_ok(&data, &["user", "stop", KARI]),
    };
    let said = String::from_utf8_lossy(&said.stdout).to_string();
    assert!(said.contains("next safe point"), "{said}");
    let stopped_in = match stop_by {
        StopBy::Batch => {
            let now = batch_status(&data);
            assert!(now == "Stopping" || now == "Stopped", "{now}");
            wait_until(Duration::from_secs(20), "the batch Stopped", || {
                let now = batch_status(&data);
                (now != "Stopped").then_some(now)
            });
            asked.elapsed()
        }
        StopBy::User => {
            wait_until(Duration::from_secs(20), "the user Stopped", || {
                let shown = user(&data, KARI);
                (shown["status"] != "Stopped").then(|| shown.to_string())
            });
            asked.elapsed()
        }
    };
    assert!(
        stopped_in < Duration::from_secs(8),
        "the sync took {stopped_in:?} to stop"
    );
    let shown = user(&data, KARI);
    let expected = match stop_by {
        StopBy::Batch => "Queued",
        StopBy::User => "Stopped",
    };
    assert_eq!(shown["status"], expected, "{shown}");
    assert!(shown["error"].is_null(), "a stop is no failure: {shown}");
    assert!(shown["requested"].is_null(), "{shown}");

    // A part is there, each message once and as on the source; nothing
    // more arrives once stopped.
    let original = mail(&source, KARI).await;
    let part = mail(&target, KARI).await;
    let copied: usize = part.iter().map(|(_, m)| m.len()).sum();
    assert!((100..1_300).contains(&copied), "{copied} copied");
    for ((folder, on_target), (_, on_source)) in part.iter().zip(&original) {
        let mut seen = std::collections::HashSet::new();
        for message in on_target {
            assert!(seen.insert(&message.bytes), "{folder}: a message twice");
            assert!(
                on_source.contains(message),
                "{folder}: a message not as on the source"
            );
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let later: usize = mail(&target, KARI).await.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(later, copied, "written after the stop");
    // Each folder's copies so far are counted, as many as it holds.
    let counts = folder_counts(&data, KARI);
    for (folder, on_target) in &part {
        let counted = counts.get(folder).map_or(0, |c| c.1);
        assert_eq!(counted, on_target.len() as u64, "{folder}: {counts:?}");
    }

    match stop_by {
        StopBy::Batch => {
            let said = flytt_ok(&data, &["batch", "start", BATCH]);
            assert!(String::from_utf8_lossy(&said.stdout).contains("started"));
        }
        StopBy::User => {
            assert_eq!(batch_status(&data), "SyncedWithErrors");
            let said = flytt_ok(&data, &["user", "retry", KARI]);
            assert!(
                String::from_utf8_lossy(&said.stdout).contains("Queued"),
                "{said:?}"
            );
            assert_eq!(batch_status(&data), "Syncing");
        }
    }
    wait_until(Duration::from_secs(90), "the batch Synced", || {
        let now = batch_status(&data);
        (now != "Synced").then_some(now)
    });
    assert_same(&mail(&target, KARI).await, &original);
    // Each message counted once in its folder, across the stop.
    let counts = folder_counts(&data, KARI);
    assert_eq!(counts.get("INBOX"), Some(&(1_200, 1_200)), "{counts:?}");
    assert_eq!(counts.get("Prosjekter"), Some(&(100, 100)), "{counts:?}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_stop_ends_running_syncs_dovecot_to_cyrus() {
    a_stop_ends_the_running_sync_at_a_safe_point(
        Family::Dovecot(Layout::Source),
        Family::Cyrus,
        StopBy::Batch,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_stop_ends_its_running_sync_cyrus_to_dovecot() {
    a_stop_ends_the_running_sync_at_a_safe_point(
        Family::Cyrus,
        Family::Dovecot(Layout::Target),
        StopBy::User,
    )
    .await;
}

/// Ola's row has a wrong password: Ola fails alone. The password is
/// corrected through the API (sealed, never shown), Ola is retried alone
/// and synced, the batch too; Per is stopped (CLI) and retried from the
/// dashboard's batch page, Kari removed
/// (and may join a new batch); actions a status does not allow are
/// refused with 409.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_user_is_fixed_and_retried_alone() {
    let users = [(KARI, PASSWORD), (OLA, PASSWORD), (PER, PASSWORD)];
    let source = TestServer::start(Family::Dovecot(Layout::Source), &users)
        .await
        .expect("source");
    let target = TestServer::start(Family::Cyrus, &users)
        .await
        .expect("target");
    for (i, (email, _)) in users.iter().enumerate() {
        let from = 100 * i as u32;
        seed(
            &source,
            email,
            &[folder("INBOX", messages(from, 20, 2_000))],
        )
        .await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    add_endpoints(&data, dir.path(), (&source, source.url()), &target);
    new_batch(
        &data,
        dir.path(),
        &[(KARI, PASSWORD), (OLA, "feil-passord"), (PER, PASSWORD)],
    );
    let token = new_token(&data, "console");
    let (worker, base) = Worker::serve(&data);
    let http = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
    };
    flytt_ok(&data, &["batch", "start", BATCH]);
    wait_until(
        Duration::from_secs(60),
        "the batch SyncedWithErrors",
        || {
            let now = batch_status(&data);
            (now != "SyncedWithErrors").then_some(now)
        },
    );
    assert_eq!(user(&data, OLA)["status"], "Failed");
    assert_eq!(mail(&target, OLA).await[0].1.len(), 0);

    // Refused where the status does not allow it.
    let refused = api(reqwest::Method::POST, &format!("/users/{KARI}/retry"))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT);
    let missing = api(reqwest::Method::DELETE, "/users/nobody@example.org")
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);

    // The corrected password, through the API: write-only.
    let changed = api(reqwest::Method::PATCH, &format!("/users/{OLA}"))
        .json(&serde_json::json!({ "password": PASSWORD }))
        .send()
        .await
        .expect("send");
    assert_eq!(changed.status(), reqwest::StatusCode::OK);
    let changed = changed.text().await.expect("body");
    assert!(!changed.contains(PASSWORD), "{changed}");
    let changed: serde_json::Value = serde_json::from_str(&changed).expect("json");
    assert_eq!(changed["status"], "Failed");
    let empty = api(reqwest::Method::PATCH, &format!("/users/{OLA}"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(empty.status(), reqwest::StatusCode::BAD_REQUEST);

    let retried = api(reqwest::Method::POST, &format!("/users/{OLA}/retry"))
        .send()
        .await
        .expect("send");
    assert_eq!(retried.status(), reqwest::StatusCode::OK);
    let retried: serde_json::Value = retried.json().await.expect("json");
    assert_eq!(retried["status"], "Queued", "{retried}");
    assert_eq!(retried["stopping"], false);
    wait_until(Duration::from_secs(60), "the batch Synced", || {
        let now = batch_status(&data);
        (now != "Synced").then_some(now)
    });
    assert_eq!(mail(&target, OLA).await, mail(&source, OLA).await);

    // Ola completed alone, before the batch: a new message arrives with its
    // final sync, and the batch goes on syncing the others.
    seed(&source, OLA, &[folder("INBOX", messages(900, 1, 2_000))]).await;
    let said = flytt_ok(&data, &["user", "complete", OLA]);
    assert!(
        String::from_utf8_lossy(&said.stdout).contains("final sync"),
        "{said:?}"
    );
    wait_until(Duration::from_secs(60), "Ola Completed", || {
        let shown = user(&data, OLA);
        (shown["status"] != "Completed").then(|| shown.to_string())
    });
    assert!(user(&data, OLA)["requested"].is_null());
    assert_eq!(mail(&target, OLA).await, mail(&source, OLA).await);
    assert_eq!(batch_status(&data), "Synced");
    let again = flytt(&data, &["user", "complete", OLA]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a completed user is not completed again"
    );

    // Per, not running, is Stopped at once and stays so until retried.
    let said = flytt_ok(&data, &["user", "stop", PER]);
    assert!(String::from_utf8_lossy(&said.stdout).contains("is Stopped"));
    assert_eq!(user(&data, PER)["status"], "Stopped");
    let again = flytt(&data, &["user", "stop", PER]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    // Retried from its batch's page in the dashboard.
    let (dashboard, session) = sign_in(&base, &token).await;
    let page = dashboard
        .get(format!("{base}/batches/{BATCH}"))
        .header("Cookie", &session)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(&format!("aria-label=\"Retry {PER}\"")),
        "{page}"
    );
    assert!(
        !page.contains(&format!("aria-label=\"Retry {OLA}\"")),
        "{page}"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token");
    let retried = dashboard
        .post(format!("{base}/batches/{BATCH}/users/{PER}/retry"))
        .header("Cookie", &session)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .expect("retry");
    assert_eq!(retried.status(), reqwest::StatusCode::SEE_OTHER);
    wait_until(Duration::from_secs(60), "Per synced again", || {
        let shown = user(&data, PER);
        (shown["status"] != "Synced").then(|| shown.to_string())
    });

    // Parameters from the batch page's form: what changed goes to the
    // rule book, which refuses what the status does not let change.
    let set = format!("/batches/{BATCH}/set");
    let (_, page) = post_form(
        &dashboard,
        &base,
        &session,
        &set,
        &[("bad_item_limit", "5")],
    )
    .await;
    assert!(page.contains("Changed: BadItemLimit"), "{page}");
    let (_, page) = post_form(
        &dashboard,
        &base,
        &session,
        &set,
        &[("mailbox_type", "ArchiveOnly")],
    )
    .await;
    assert!(page.contains("MailboxType cannot change now"), "{page}");
    let shown = json(&flytt(&data, &["batch", "show", BATCH, "--json"]));
    assert_eq!(
        shown["parameters"]["bad_item_limit"],
        serde_json::json!({"Count": 5})
    );
    assert!(shown["parameters"]["mailbox_type"].is_null(), "{shown}");

    // Per moved to another batch, its password sealed anew there: stopped,
    // moved, retried, and it syncs in the new batch.
    let csv = dir.path().join("b2.csv");
    std::fs::write(
        &csv,
        "EmailAddress,UserName,Password\nekstra@example.org,ekstra@example.org,pw\n",
    )
    .expect("csv");
    flytt_ok(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "b2",
            "--type",
            "imap",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            &csv.display().to_string(),
        ],
    );
    flytt_ok(&data, &["user", "stop", PER]);
    let moved = flytt_ok(&data, &["user", "move", PER, "--to", "b2"]);
    assert!(String::from_utf8_lossy(&moved.stdout).contains("moved to batch b2"));
    let again = flytt(
        &data,
        &["user", "move", PER, "--to", "b2", "--batch", BATCH],
    );
    assert_eq!(again.status.code(), Some(2), "Per is no longer in {BATCH}");
    flytt_ok(&data, &["user", "retry", PER, "--batch", "b2"]);
    flytt_ok(&data, &["batch", "start", "b2"]);
    wait_until(Duration::from_secs(60), "Per synced in b2", || {
        let shown = user(&data, PER);
        (shown["batch"] != "b2" || shown["status"] != "Synced").then(|| shown.to_string())
    });

    // Ticked users together: each by the rules, the refusals said.
    let (_, page) = post_form(
        &dashboard,
        &base,
        &session,
        &format!("/batches/{BATCH}/selected-users"),
        &[("action", "stop"), ("user", KARI), ("user", OLA)],
    )
    .await;
    assert!(page.contains("1 user: stopped."), "{page}");
    assert!(
        page.contains("is Completed; it cannot be stopped"),
        "{page}"
    );
    assert_eq!(user(&data, KARI)["status"], "Stopped");

    // Kari removed: out of the batch, free for another.
    let removed = api(reqwest::Method::DELETE, &format!("/users/{KARI}"))
        .send()
        .await
        .expect("send");
    assert_eq!(removed.status(), reqwest::StatusCode::NO_CONTENT);
    let listed = json(&flytt(&data, &["user", "list", "--batch", BATCH, "--json"]));
    let emails: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, [OLA]);
    assert_eq!(
        mail(&target, KARI).await[0].1.len(),
        20,
        "mail is never touched"
    );

    // Parameters change by the rule book: notifications and completion
    // while it runs; what shapes the copy, not any more.
    let said = flytt_ok(
        &data,
        &[
            "batch",
            "set",
            BATCH,
            "--notification-emails",
            "drift@example.org",
            "--complete-after",
            "2030-01-01T18:00:00+01:00",
        ],
    );
    assert!(String::from_utf8_lossy(&said.stdout).contains("NotificationEmails, CompleteAfter"));
    let shown = json(&flytt(&data, &["batch", "show", BATCH, "--json"]));
    assert_eq!(
        shown["parameters"]["notification_emails"],
        serde_json::json!(["drift@example.org"])
    );
    assert_eq!(
        shown["parameters"]["complete_after"],
        "2030-01-01T18:00:00+01:00"
    );
    let locked = flytt(
        &data,
        &[
            "batch",
            "set",
            BATCH,
            "--parameter",
            "MailboxType=ArchiveOnly",
        ],
    );
    assert_eq!(locked.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&locked.stderr).contains("MailboxType cannot change now"),
        "{locked:?}"
    );
    let bad = flytt(
        &data,
        &["batch", "set", BATCH, "--complete-after", "tomorrow"],
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("CompleteAfter: \"tomorrow\" is not a time"),
        "{bad:?}"
    );
    let patched = api(reqwest::Method::PATCH, &format!("/batches/{BATCH}"))
        .json(&serde_json::json!({ "large_item_limit": "30MB", "verify": true }))
        .send()
        .await
        .expect("send");
    assert_eq!(patched.status(), reqwest::StatusCode::OK);
    let patched: serde_json::Value = patched.json().await.expect("json");
    assert_eq!(patched["parameters"]["large_item_limit"], 30 << 20);
    assert_eq!(patched["parameters"]["verify"], true);
    assert_eq!(
        patched["parameters"]["notification_emails"],
        serde_json::json!(["drift@example.org"]),
        "the rest stays"
    );
    // What a user gets, and from where.
    let effective = user(&data, OLA)["effective_parameters"].clone();
    let has =
        |parameter: &str, value: &str, origin: &str| {
            effective.as_array().into_iter().flatten().any(|e| {
                e["parameter"] == parameter && e["value"] == value && e["origin"] == origin
            })
        };
    assert!(has("LargeItemLimit", "30 MB", "batch"), "{effective}");
    assert!(
        has("MailboxType", "PrimaryAndArchive", "default"),
        "{effective}"
    );
    // The user's page says the same, with its events.
    let page = dashboard
        .get(format!("{base}/batches/{BATCH}/users/{OLA}"))
        .header("Cookie", &session)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    for says in [
        "What it gets",
        "LargeItemLimit",
        "30 MB",
        "the batch",
        "its final sync ran and it is Completed",
        "changed by the administrator: Password",
    ] {
        assert!(page.contains(says), "{says}: {page}");
    }
    assert!(!page.contains(PASSWORD));
    for (body, status) in [
        (
            serde_json::json!({ "mailbox_type": "PrimaryOnly" }),
            reqwest::StatusCode::CONFLICT,
        ),
        (
            serde_json::json!({ "colour": "blue" }),
            reqwest::StatusCode::BAD_REQUEST,
        ),
        (
            serde_json::json!({ "bad_item_limit": "many" }),
            reqwest::StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = api(reqwest::Method::PATCH, &format!("/batches/{BATCH}"))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(refused.status(), status, "{body}");
    }

    let events = flytt_ok(&data, &["batch", "events", BATCH]);
    let events = String::from_utf8_lossy(&events.stdout).to_string();
    assert!(
        events.contains("changed by the administrator: Password"),
        "{events}"
    );
    assert!(events.contains("UserRemoved"), "{events}");
    assert!(
        events.contains("parameters changed: LargeItemLimit, Verify"),
        "{events}"
    );
    assert!(!events.contains(PASSWORD), "{events}");
    drop(worker);
}

/// A signed-in dashboard form post: the answer's status and, after a
/// redirect, the page it leads to (else the answer's own page).
async fn post_form(
    http: &reqwest::Client,
    base: &str,
    session: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (reqwest::StatusCode, String) {
    let page = http
        .get(format!("{base}/endpoints"))
        .header("Cookie", session)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token")
        .to_string();
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend_from_slice(fields);
    let answer = http
        .post(format!("{base}{path}"))
        .header("Cookie", session)
        .form(&form)
        .send()
        .await
        .expect("post");
    let status = answer.status();
    let location = answer
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let text = match location {
        Some(to) => http
            .get(format!("{base}{to}"))
            .header("Cookie", session)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html"),
        None => answer.text().await.expect("html"),
    };
    (status, text)
}

/// Endpoints made, tested, changed and removed in the dashboard and the
/// API, against a real Dovecot: a wrong admin password is caught only by a
/// test with a user, and a test without one says what it did not check.
#[tokio::test(flavor = "multi_thread")]
async fn endpoints_are_managed_in_the_dashboard_and_the_api() {
    let users = [(KARI, PASSWORD)];
    let server = TestServer::start(Family::Dovecot(Layout::Target), &users)
        .await
        .expect("server");
    seed(&server, KARI, &[folder("INBOX", messages(0, 3, 1_000))]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let token = new_token(&data, "console");
    let (worker, base) = Worker::serve(&data);
    let (http, session) = sign_in(&base, &token).await;
    let url = server.url();
    let ca = server.ca_file().display().to_string();
    let admin = server.admin(Path::new("unused"));

    let new = |password: &'static str| {
        vec![
            ("name", "ny"),
            ("url", url.as_str()),
            ("ca_file", ca.as_str()),
            ("admin_user", admin.user),
            ("admin_mode", admin.mode),
            ("admin_password", password),
            ("max_concurrent_migrations", "5"),
        ]
    };
    let (status, page) = post_form(&http, &base, &session, "/endpoints", &new("feil")).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    assert!(page.contains("Endpoint ny created"), "{page}");
    let (status, page) = post_form(&http, &base, &session, "/endpoints", &new("feil")).await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("exists already"), "{page}");
    assert!(
        page.contains(&format!("value=\"{url}\"")),
        "the form keeps what was sent"
    );

    // Without a user the test connects only, and says so.
    let (_, page) = post_form(&http, &base, &session, "/endpoints/ny/test", &[]).await;
    assert!(page.contains("Not checked:"), "{page}");
    assert!(
        page.contains("the login through the admin account"),
        "{page}"
    );
    let (_, page) = post_form(
        &http,
        &base,
        &session,
        "/endpoints/ny/test",
        &[("user", KARI)],
    )
    .await;
    assert!(page.contains("The test failed"), "{page}");

    // The right password, through the change form; then the test opens
    // Kari's INBOX.
    let right = server.admin_password();
    let (status, page) = post_form(
        &http,
        &base,
        &session,
        "/endpoints/ny/change",
        &[
            ("url", url.as_str()),
            ("ca_file", ca.as_str()),
            ("admin_user", admin.user),
            ("admin_mode", admin.mode),
            ("admin_password", right),
            ("max_concurrent_migrations", "6"),
        ],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    assert!(page.contains("Endpoint ny changed"), "{page}");
    let (_, page) = post_form(
        &http,
        &base,
        &session,
        "/endpoints/ny/test",
        &[("user", KARI)],
    )
    .await;
    assert!(
        page.contains(&format!("opened {KARI}&#39;s INBOX read-only: 3 messages")),
        "{page}"
    );
    assert!(!page.contains(right), "the password is never shown");
    let (status, page) = post_form(
        &http,
        &base,
        &session,
        "/endpoints/ny/change",
        &[("url", url.as_str()), ("max_concurrent_migrations", "many")],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("is not a number"), "{page}");

    // The API changes it too, checked the same way.
    let api = |body: serde_json::Value| {
        http.patch(format!("{base}/api/v1/endpoints/ny"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let changed = api(serde_json::json!({ "max_concurrent_migrations": 7 }))
        .await
        .expect("send");
    assert_eq!(changed.status(), reqwest::StatusCode::OK);
    let changed: serde_json::Value = changed.json().await.expect("json");
    assert_eq!(changed["max_concurrent_migrations"], 7);
    assert_eq!(changed["admin_password_set"], true);
    let refused = api(serde_json::json!({ "max_concurrent_incremental_syncs": 99 }))
        .await
        .expect("send");
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    let shown = json(&flytt(&data, &["endpoint", "show", "ny", "--json"]));
    assert_eq!(shown["max_concurrent_migrations"], 7, "{shown}");

    // The CSV template of a batch type: its columns, an example row.
    let template = http
        .get(format!("{base}/csv-template/imap"))
        .send()
        .await
        .expect("template");
    assert!(
        template
            .headers()
            .get("content-disposition")
            .and_then(|d| d.to_str().ok())
            .is_some_and(|d| d.contains("flytt-imap.csv"))
    );
    let template = template.text().await.expect("csv");
    assert!(
        template.starts_with("EmailAddress,UserName,Password"),
        "{template}"
    );
    let checked = flytt_ok(
        &data,
        &["batch", "validate", "--type", "imap", "--csv", &{
            let path = dir.path().join("template.csv");
            std::fs::write(&path, &template).expect("write");
            path.display().to_string()
        }],
    );
    assert!(
        checked.status.success(),
        "the template's example row is valid"
    );

    // Removed from the dashboard.
    let (status, page) = post_form(&http, &base, &session, "/endpoints/ny/remove", &[]).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    assert!(page.contains("Endpoint ny removed"), "{page}");
    let gone = flytt(&data, &["endpoint", "show", "ny"]);
    assert_eq!(gone.status.code(), Some(2));
    drop(worker);
}

/// Thirty batches: the list shows the newest 25 first with a link to the
/// rest, finds batches by name and status, and its live refresh asks for
/// the same page.
#[tokio::test(flavor = "multi_thread")]
async fn the_batch_list_pages_searches_and_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    for name in ["gammel", "ny"] {
        flytt_ok(
            &data,
            &[
                "endpoint",
                "new",
                name,
                "--url",
                &format!("imaps://{name}.example.org"),
            ],
        );
    }
    for n in 0..30 {
        let csv = dir.path().join(format!("{n}.csv"));
        std::fs::write(
            &csv,
            format!("EmailAddress,UserName,Password\nu{n}@example.org,u{n}@example.org,pw\n"),
        )
        .expect("csv");
        flytt_ok(
            &data,
            &[
                "batch",
                "new",
                "--name",
                &format!("b-{n:02}"),
                "--type",
                "imap",
                "--source-endpoint",
                "gammel",
                "--target-endpoint",
                "ny",
                "--csv",
                &csv.display().to_string(),
            ],
        );
    }
    let said = flytt_ok(&data, &["batch", "stop", "b-07"]);
    assert!(String::from_utf8_lossy(&said.stdout).contains("stopped."));
    let token = new_token(&data, "console");
    let (worker, base) = Worker::serve(&data);
    let (http, session) = sign_in(&base, &token).await;
    let get = |path: String| {
        let (http, session, base) = (&http, &session, &base);
        async move {
            let answer = http
                .get(format!("{base}{path}"))
                .header("Cookie", session)
                .send()
                .await
                .expect("page");
            (answer.status(), answer.text().await.expect("html"))
        }
    };
    let (_, first) = get("/".into()).await;
    assert!(first.contains("1–25 of 30"), "{first}");
    assert!(first.contains("Next batches"), "{first}");
    let newest = first.find(">b-29<").expect("the newest");
    let older = first.find(">b-05<").expect("an older one");
    assert!(newest < older, "newest first");
    assert!(!first.contains(">b-04<"), "the oldest are on the next page");
    let (_, second) = get("/?page=1".into()).await;
    assert!(
        second.contains("26–30 of 30") && second.contains(">b-00<"),
        "{second}"
    );
    let (_, found) = get("/?q=B-1".into()).await;
    let shown = found.matches(">b-").count();
    assert_eq!(shown, 10, "b-10 … b-19: {found}");
    assert!(
        found.contains("hx-get=\"/partials/batches?q=B%2D1\""),
        "{found}"
    );
    let (_, stopped) = get("/?status=Stopped".into()).await;
    assert_eq!(stopped.matches(">b-").count(), 1, "{stopped}");
    assert!(stopped.contains(">b-07<"));
    let (_, by_name) = get("/?sort=name".into()).await;
    assert!(by_name.find(">b-00<") < by_name.find(">b-01<"), "{by_name}");
    let (status, _) = get("/?colour=blue".into()).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    drop(worker);
}

/// Signs in to the dashboard at `base` with an API token, in the browser.
async fn browser_sign_in(client: &fantoccini::Client, base: &str, token: &str) {
    client.goto(&format!("{base}/login")).await.expect("goto");
    fill(client, "secret", token).await;
    click_button(client, "Sign in").await;
    wait_for_text(client, "the batch list", |t| {
        t.contains("Migration batches")
    })
    .await;
}

/// Loads `url` again until its text satisfies `done` (pages without a
/// live part); panics after a minute.
async fn reload_until(
    client: &fantoccini::Client,
    url: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        client.goto(url).await.expect("goto");
        let now = text(client).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "waiting for {what}:\n{now}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Names `directory` (empty: none) on endpoint ny, through its page's
/// change form.
async fn name_directory_on_ny(client: &fantoccini::Client, base: &str, directory: &str) {
    client
        .goto(&format!("{base}/endpoints/ny"))
        .await
        .expect("goto");
    choose(client, "directory", directory).await;
    click_button(client, "Save the changes").await;
    wait_for_text(client, "the endpoint changed", |t| {
        t.contains("Endpoint ny changed")
    })
    .await;
}

/// The console in a real browser (headless Chromium), Dovecot to Cyrus:
/// Ola's wrong CSV password is corrected on Ola's page and Ola retried
/// alone while Kari's large mailbox copies through a slow link; the
/// batch's Stop then ends Kari's sync within seconds, nothing written
/// after; a batch of 200 users pages and searches; a directory is added,
/// tested, named by an endpoint and removed; an endpoint is created,
/// changed and removed; and on a phone the pages need no sideways
/// scrolling, a failed user's status and error in view.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_browser() {
    let users = [(KARI, PASSWORD), (OLA, PASSWORD)];
    let source = TestServer::start(Family::Dovecot(Layout::Source), &users)
        .await
        .expect("source");
    let target = TestServer::start(Family::Cyrus, &users)
        .await
        .expect("target");
    seed(
        &source,
        KARI,
        &[
            folder("INBOX", messages(0, 2_400, 8_000)),
            folder("Prosjekter", messages(5_000, 100, 8_000)),
        ],
    )
    .await;
    seed(&source, OLA, &[folder("INBOX", messages(9_000, 5, 2_000))]).await;
    let link = LatencyProxy::start_shaped(source.port(), Duration::from_millis(1), 500_000)
        .await
        .expect("proxy");
    let source_url = source
        .url()
        .replace(&format!(":{}", source.port()), &format!(":{}", link.port));
    let slapd = Slapd::start().expect("slapd");
    slapd.add_mail_user("kari", KARI).expect("a directory user");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    add_endpoints(&data, dir.path(), (&source, source_url), &target);
    new_batch(
        &data,
        dir.path(),
        &[(KARI, PASSWORD), (OLA, "feil-passord")],
    );
    let many = dir.path().join("mange.csv");
    let mut rows = String::from("EmailAddress,UserName,Password\n");
    for n in 1..=200 {
        rows.push_str(&format!(
            "bruker{n:03}@example.org,bruker{n:03},passord-{n}\n"
        ));
    }
    std::fs::write(&many, rows).expect("csv");
    flytt_ok(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "mange",
            "--type",
            "imap",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            &many.display().to_string(),
        ],
    );
    let token = new_token(&data, "browser");
    let (worker, base) = Worker::serve(&data);
    let driver = Driver::start();
    let client = browser(&driver).await;
    browser_sign_in(&client, &base, &token).await;

    // Started from its page: Ola fails on the wrong password, Kari copies.
    client
        .goto(&format!("{base}/batches/{BATCH}"))
        .await
        .expect("goto");
    click_button(&client, "Start").await;
    let ola_page = format!("{base}/batches/{BATCH}/users/ola%40example.org");
    let page = reload_until(&client, &ola_page, "Ola failed", |t| t.contains("Failed: ")).await;
    assert!(page.contains("correct it below"), "{page}");
    assert_eq!(mail(&target, OLA).await[0].1.len(), 0);

    // On a phone: no page needs sideways scrolling; Ola's row shows its
    // status and its error in view, Kari's its progress.
    client.set_window_size(390, 844).await.expect("resize");
    let mut wide = Vec::new();
    for path in [
        "/".to_string(),
        format!("/batches/{BATCH}"),
        "/batches/mange".to_string(),
        format!("/batches/{BATCH}/users/kari%40example.org"),
        "/batches/new".to_string(),
        "/endpoints".to_string(),
        "/endpoints/ny".to_string(),
        "/directories".to_string(),
    ] {
        client.goto(&format!("{base}{path}")).await.expect("goto");
        let overflow = overflow_right(&client).await;
        if overflow != 0 {
            wide.push(format!("{path}: {overflow} px"));
        }
    }
    assert!(
        wide.is_empty(),
        "pages that scroll sideways on a phone: {wide:?}"
    );
    client
        .goto(&format!("{base}/batches/{BATCH}"))
        .await
        .expect("goto");
    let in_view = client
        .execute(
            "var width = document.documentElement.clientWidth; \
             return Array.from(document.querySelectorAll('#live .table-wrap tbody tr')).map(function (row) { \
               return Array.from(row.querySelectorAll('td')).filter(function (cell) { \
                 var box = cell.getBoundingClientRect(); \
                 return box.width > 0 && box.left >= 0 && box.right <= width; \
               }).map(function (cell) { return cell.textContent.trim(); }).join(' | '); });",
            vec![],
        )
        .await
        .expect("cells in view");
    let rows: Vec<String> = serde_json::from_value(in_view).expect("rows");
    let kari_row = rows.iter().find(|r| r.contains(KARI)).expect("Kari's row");
    assert!(kari_row.contains("Syncing"), "{kari_row}");
    let ola_row = rows.iter().find(|r| r.contains(OLA)).expect("Ola's row");
    assert!(
        ola_row.contains("Failed") && ola_row.contains("LOGIN"),
        "{ola_row}"
    );
    client
        .execute(
            "document.querySelector('#live .table-wrap').scrollIntoView(); return null;",
            vec![],
        )
        .await
        .expect("scroll");
    screenshot(&client, "users-phone.png").await;
    client.set_window_size(1280, 900).await.expect("resize");

    client.goto(&ola_page).await.expect("goto");

    // Ola's password corrected on Ola's page (never shown again), and Ola
    // retried alone: synced while Kari still copies.
    fill(&client, "password", PASSWORD).await;
    click_button(&client, "Save the sign-in").await;
    let page = wait_for_text(&client, "the sign-in saved", |t| {
        t.contains("sign-in changed")
    })
    .await;
    assert!(!client.source().await.expect("source").contains(PASSWORD));
    assert!(page.contains("Failed"), "{page}");
    click_button(&client, "Retry").await;
    wait_for_text(&client, "Ola queued", |t| {
        t.contains("ola@example.org is Queued")
    })
    .await;
    reload_until(&client, &ola_page, "Ola synced", |t| {
        t.contains("Its mail is across")
    })
    .await;
    assert_same(
        &mail(&target, OLA).await[..1],
        &mail(&source, OLA).await[..1],
    );
    let kari = user(&data, KARI);
    assert_eq!(
        kari["status"], "Syncing",
        "Kari's copy is still under way: {kari}"
    );
    assert!(
        kari["progress"]["messages_copied"].as_u64().unwrap_or(0) > 0,
        "{kari}"
    );

    // Kari's page says where the copy is, how far and how fast.
    let page = reload_until(
        &client,
        &format!("{base}/batches/{BATCH}/users/kari%40example.org"),
        "Kari's progress",
        |t| t.contains("% done"),
    )
    .await;
    let now = page
        .lines()
        .find(|l| l.starts_with("Copying "))
        .unwrap_or_default();
    assert!(
        now.ends_with(" KB/s.") || now.ends_with(" MB/s."),
        "{now:?}: {page}"
    );

    // The batch's Stop ends Kari's sync at a safe point within seconds.
    client
        .goto(&format!("{base}/batches/{BATCH}"))
        .await
        .expect("goto");
    let asked = Instant::now();
    click_button(&client, "Stop").await;
    wait_for_text(&client, "the batch stopped", |t| {
        t.contains("Stopped") && !t.contains("Stopping")
    })
    .await;
    let stopped_in = asked.elapsed();
    assert!(
        stopped_in < Duration::from_secs(8),
        "stopped after {stopped_in:?}"
    );
    assert_eq!(batch_status(&data), "Stopped");
    let copied: usize = mail(&target, KARI).await.iter().map(|(_, m)| m.len()).sum();
    assert!((1..2_500).contains(&copied), "{copied} of Kari's copied");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later: usize = mail(&target, KARI).await.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(later, copied, "written after the stop");
    screenshot(&client, "batch-stopped.png").await;
    // Kari's page lists its folders with what each holds on the target.
    client
        .goto(&format!("{base}/batches/{BATCH}/users/kari%40example.org"))
        .await
        .expect("goto");
    let page = text(&client).await;
    let inbox_copied = mail(&target, KARI).await[0].1.len();
    let inbox_row = page
        .lines()
        .find(|l| l.starts_with("INBOX"))
        .unwrap_or_default();
    assert!(
        inbox_row.starts_with("INBOX 2400 ") && inbox_row.ends_with(&format!(" {inbox_copied}")),
        "{inbox_row:?}: {inbox_copied} on the target; {page}"
    );

    // Two hundred users: a hundred a page, the next page, a search.
    client
        .goto(&format!("{base}/batches/mange"))
        .await
        .expect("goto");
    let page = text(&client).await;
    assert!(page.contains("bruker001@example.org") && page.contains("bruker100@example.org"));
    assert!(!page.contains("bruker101@example.org"), "a hundred a page");
    click_link(&client, "Next users").await;
    let page = wait_for_text(&client, "the next users", |t| {
        t.contains("bruker101@example.org")
    })
    .await;
    assert!(page.contains("bruker200@example.org") && !page.contains("bruker100@example.org"));
    assert!(!page.contains("Next users"), "{page}");
    fill(&client, "q", "BRUKER13").await;
    click_button(&client, "Show users").await;
    let page = wait_for_text(&client, "the search's users", |t| {
        t.contains("bruker130@example.org")
    })
    .await;
    let found = page.matches("@example.org").count();
    assert_eq!(found, 10, "bruker130–139: {page}");

    // A directory: added, tested with Kari's address, named by endpoint
    // ny (then it cannot go), and removed.
    client
        .goto(&format!("{base}/directories"))
        .await
        .expect("goto");
    fill(&client, "name", "corp").await;
    fill(&client, "url", &slapd.url()).await;
    fill(&client, "bind_dn", ADMIN_DN).await;
    fill(&client, "bind_password", "feil-passord").await;
    fill(&client, "base_dn", BASE_DN).await;
    fill(&client, "ca_file", &slapd.ca_file().display().to_string()).await;
    client
        .find(fantoccini::Locator::Css("input[name=allow_plaintext]"))
        .await
        .expect("checkbox")
        .click()
        .await
        .expect("tick");
    click_button(&client, "Create the directory").await;
    wait_for_text(&client, "the directory's page", |t| {
        t.contains("Directory corp created")
    })
    .await;
    assert!(
        !client
            .source()
            .await
            .expect("source")
            .contains(ADMIN_PASSWORD)
    );
    // A wrong bind password: the test says so; the change form mends it.
    click_button(&client, "Test the directory").await;
    wait_for_text(&client, "the failed test", |t| {
        t.contains("The test failed")
    })
    .await;
    fill(&client, "bind_password", ADMIN_PASSWORD).await;
    click_button(&client, "Save the changes").await;
    wait_for_text(&client, "the directory changed", |t| {
        t.contains("Directory corp changed")
    })
    .await;
    assert!(
        !client
            .source()
            .await
            .expect("source")
            .contains(ADMIN_PASSWORD)
    );
    fill(&client, "user", KARI).await;
    click_button(&client, "Test the directory").await;
    let page = wait_for_text(&client, "the directory test", |t| {
        t.contains("Test the directory") && t.contains("a mail user")
    })
    .await;
    assert!(page.contains(&format!("{KARI} is uid=kari")), "{page}");
    fill(&client, "user", "ingen@example.org").await;
    click_button(&client, "Test the directory").await;
    wait_for_text(&client, "an address not there", |t| {
        t.contains("ingen@example.org is not in the directory")
    })
    .await;
    name_directory_on_ny(&client, &base, "corp").await;
    let ny = json(&flytt(&data, &["endpoint", "show", "ny", "--json"]));
    assert_eq!(ny["directory"], "corp", "{ny}");
    client
        .goto(&format!("{base}/directories/corp"))
        .await
        .expect("goto");
    assert!(text(&client).await.contains("ny"), "used by ny");
    click_button(&client, "Remove the directory").await;
    client.accept_alert().await.expect("confirm");
    wait_for_text(&client, "the removal refused", |t| {
        t.contains("used by an endpoint")
    })
    .await;
    name_directory_on_ny(&client, &base, "").await;
    client
        .goto(&format!("{base}/directories/corp"))
        .await
        .expect("goto");
    click_button(&client, "Remove the directory").await;
    client.accept_alert().await.expect("confirm");
    wait_for_text(&client, "the directory removed", |t| {
        t.contains("Directory corp removed")
    })
    .await;
    let listed = json(&flytt(&data, &["directory", "list", "--json"]));
    assert_eq!(listed, serde_json::json!([]), "{listed}");

    // An endpoint: created, changed and removed.
    client
        .goto(&format!("{base}/endpoints"))
        .await
        .expect("goto");
    fill(&client, "name", "tredje").await;
    fill(&client, "url", "imaps://imap.example.org").await;
    fill(&client, "max_concurrent_migrations", "7").await;
    click_button(&client, "Create the endpoint").await;
    wait_for_text(&client, "the endpoint created", |t| {
        t.contains("Endpoint tredje created")
    })
    .await;
    fill(&client, "max_concurrent_migrations", "9").await;
    click_button(&client, "Save the changes").await;
    wait_for_text(&client, "the endpoint changed", |t| {
        t.contains("Endpoint tredje changed")
    })
    .await;
    let shown = json(&flytt(&data, &["endpoint", "show", "tredje", "--json"]));
    assert_eq!(shown["max_concurrent_migrations"], 9, "{shown}");
    click_button(&client, "Remove the endpoint").await;
    client.accept_alert().await.expect("confirm");
    wait_for_text(&client, "the endpoint removed", |t| {
        t.contains("Endpoint tredje removed")
    })
    .await;
    assert!(
        !flytt(&data, &["endpoint", "show", "tredje"])
            .status
            .success()
    );

    client.close().await.expect("close");
    drop(worker);
}
