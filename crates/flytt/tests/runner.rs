//! `flytt serve` running batches against real Dovecot servers: good users
//! end Synced with their mail on the target, a wrong password and a missing
//! target mailbox fail alone with the reason, the endpoint limit holds,
//! a killed `serve` resumes without loss or duplicates, and batches start
//! and complete on their own when asked to.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{
    Backend, Worker, add_endpoint, count_users, flytt, flytt_ok, json, keep_state_in, seed_inbox,
};
use flytt_testsupport::corpus::{self, CorpusMessage};
use flytt_testsupport::dovecot::MASTER_PASSWORD;
use flytt_testsupport::{Dovecot, Layout, Postgres};

const PASSWORD: &str = "kilde-passord-1";

fn batch_status(data: &Path, batch: &str) -> serde_json::Value {
    json(&flytt(data, &["batch", "show", batch, "--json"]))
}

fn wait_for(data: &Path, batch: &str, statuses: &[&str], worker: &mut Child) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = batch_status(data, batch);
        if statuses.iter().any(|s| status["status"] == *s) {
            return status;
        }
        assert!(
            worker.try_wait().ok().flatten().is_none(),
            "the worker died"
        );
        assert!(Instant::now() < deadline, "batch stuck: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `user`'s target INBOX holds `count` messages (at most 60 s).
async fn wait_copied(target: &Dovecot, user: &str, count: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut session = target.admin_session(user).await.expect("login");
        let copied = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select")
            .exists;
        if copied >= count {
            return;
        }
        drop(session);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A data directory (its state kept by `backend`) with the master password
/// in a file beside it.
struct Place {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    admin_pw: std::path::PathBuf,
    _database: Option<Postgres>,
}

fn lab(backend: Backend) -> Place {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin_pw = dir.path().join("admin.pw");
    std::fs::write(&admin_pw, MASTER_PASSWORD).expect("write");
    let database = keep_state_in(backend, &data);
    Place {
        dir,
        data,
        admin_pw,
        _database: database,
    }
}

fn new_batch(data: &Path, csv: &Path, batch_type: &str, extra: &[&str]) {
    let csv = csv.to_str().expect("path");
    let mut args = vec![
        "batch",
        "new",
        "--name",
        "Bølge 1",
        "--type",
        batch_type,
        "--source-endpoint",
        "gammel",
        "--target-endpoint",
        "ny",
        "--csv",
        csv,
    ];
    args.extend(extra);
    flytt_ok(data, &args);
}

/// Fifty users with per-row overrides, one wrong password, one missing
/// target mailbox and one over-large message.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_runs_to_completion_and_failures_stay_alone() {
    a_batch_runs_to_completion_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_runs_to_completion_on_postgres() {
    a_batch_runs_to_completion_on(Backend::Postgres).await;
}

async fn a_batch_runs_to_completion_on(backend: Backend) {
    let good = [
        "kari@example.org",
        "ola@example.org",
        "nora@example.org",
        "emil@example.org",
    ];
    // Fifty users in all: four named ones, 44 more, two that will fail.
    let more: Vec<String> = (0..44).map(|i| format!("bruker{i}@example.org")).collect();
    let mut source_users: Vec<(&str, &str)> = good
        .iter()
        .copied()
        .chain(more.iter().map(String::as_str))
        .map(|u| (u, PASSWORD))
        .collect();
    source_users.extend([
        ("per@example.org", PASSWORD),
        ("lise@example.org", PASSWORD),
    ]);
    let source = Dovecot::start(Layout::Source, &source_users).expect("source");
    // lise has no mailbox on the target.
    let target_users: Vec<(&str, &str)> = source_users
        .iter()
        .copied()
        .filter(|(u, _)| *u != "lise@example.org")
        .collect();
    let target = Dovecot::start(Layout::Target, &target_users).expect("target");
    for (i, user) in good.iter().enumerate() {
        seed_inbox(&source, user, 5 + i as u32, 2_000).await;
    }
    for user in &more {
        seed_inbox(&source, user, 2, 1_500).await;
    }
    // One message over the batch's LargeItemLimit: skipped and reported,
    // the user still synced.
    let mut kari = source.admin_session(good[0]).await.expect("login");
    let large = [CorpusMessage {
        bytes: corpus::large_message(1, 2 * 1024 * 1024),
        flags: vec![],
        date: corpus::spread_date(1),
    }];
    corpus::append_all(&mut kari, "INBOX", &large)
        .await
        .expect("seed");
    drop(kari);
    // bruker0 has one too, but its CSV row raises the limit to 5 MB.
    // bruker1 moves only its archive, bruker2 only its primary mailbox
    // (MailboxType per row); each has a message in the archive folder.
    for user in &more[1..3] {
        let mut session = source.admin_session(user).await.expect("login");
        let archived = [CorpusMessage {
            bytes: corpus::generated_message(77, Some(&format!("arkiv-{user}")), 1_000),
            flags: vec![],
            date: corpus::spread_date(77),
        }];
        corpus::append_all(&mut session, "Arkiv", &archived)
            .await
            .expect("seed");
    }
    let mut bruker0 = source.admin_session(&more[0]).await.expect("login");
    corpus::append_all(&mut bruker0, "INBOX", &large)
        .await
        .expect("seed");
    drop(bruker0);

    let place = lab(backend);
    let (dir, data, admin_pw) = (&place.dir, place.data.clone(), place.admin_pw.clone());
    let limits = [
        "--max-concurrent-migrations",
        "2",
        "--max-concurrent-incremental-syncs",
        "1",
    ];
    add_endpoint(&data, "gammel", &source, None, &limits);
    add_endpoint(&data, "ny", &target, Some(&admin_pw), &limits);
    let mut csv = String::from("EmailAddress,UserName,Password,LargeItemLimit,MailboxType\n");
    for user in good {
        csv.push_str(&format!("{user},{user},{PASSWORD},,\n"));
    }
    for (i, user) in more.iter().enumerate() {
        let (limit, scope) = match i {
            0 => ("5MB", ""),
            1 => ("", "ArchiveOnly"),
            2 => ("", "PrimaryOnly"),
            _ => ("", ""),
        };
        csv.push_str(&format!("{user},{user},{PASSWORD},{limit},{scope}\n"));
    }
    csv.push_str("per@example.org,per@example.org,feil-passord,,\n");
    csv.push_str(&format!("lise@example.org,lise@example.org,{PASSWORD},,\n"));
    let csv_path = dir.path().join("users.csv");
    std::fs::write(&csv_path, csv).expect("csv");
    new_batch(&data, &csv_path, "imap", &["--large-item-limit", "1MB"]);
    flytt_ok(&data, &["batch", "start", "Bølge 1"]);

    // Count the source's concurrent logins while the batch runs: the
    // endpoint allows two migrations at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counter = count_users(source.config_path().to_path_buf(), stop.clone());
    let mut worker = Worker::start(&data);
    let status = wait_for(
        &data,
        "Bølge 1",
        &["SyncedWithErrors", "Synced"],
        &mut worker.0,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = counter.join().expect("counter");
    assert!(
        (1..=2).contains(&most),
        "{most} users logged in to the source at once; the limit is 2"
    );
    assert_eq!(status["status"], "SyncedWithErrors", "{status}");
    assert_eq!(status["user_counts"]["Synced"], 48, "{status}");
    assert_eq!(status["user_counts"]["Failed"], 2, "{status}");

    let users = json(&flytt(&data, &["user", "list", "--json"]));
    let error_of = |email: &str| {
        users
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["email"] == email)
            .map(|u| u["error"].to_string())
            .unwrap_or_default()
    };
    assert!(error_of("per@example.org").contains("LOGIN"), "{users}");
    assert!(error_of("lise@example.org").contains("target"), "{users}");
    assert!(!users.to_string().contains(PASSWORD) && !users.to_string().contains(MASTER_PASSWORD));

    let mut on_target = 0;
    for (i, user) in good.iter().enumerate() {
        let mut session = target.admin_session(user).await.expect("login");
        let inbox = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select");
        assert_eq!(inbox.exists, 5 + i as u32, "{user}");
        on_target += inbox.exists;
    }
    for (i, user) in more.iter().enumerate() {
        let mut session = target.admin_session(user).await.expect("login");
        let inbox = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select");
        // bruker0's own LargeItemLimit let its 2 MB message through;
        // bruker1 moved only its archive.
        let expected = match i {
            0 => 3,
            1 => 0,
            _ => 2,
        };
        assert_eq!(inbox.exists, expected, "{user}");
        let archive = session
            .select("Archive", flytt_imap::Access::ReadOnly)
            .await
            .expect("select");
        assert_eq!(archive.exists, u32::from(i == 1), "{user}: Archive");
        on_target += inbox.exists + archive.exists;
    }

    // The batch's totals are what is on the target; its speed is known.
    let shown = json(&flytt(&data, &["batch", "show", "Bølge 1", "--json"]));
    assert_eq!(shown["totals"]["messages_copied"], on_target, "{shown}");
    assert_eq!(shown["totals"]["messages_skipped"], 1, "{shown}");
    assert!(
        shown["throughput"]["messages_per_second"].as_f64() > Some(0.0),
        "{shown}"
    );
    assert!(shown["initial_sync_done_at"].is_string(), "{shown}");

    // The event log tells the story, with reasons and without secrets.
    let events = flytt(&data, &["batch", "events", "Bølge 1", "--json"]);
    let log = json(&events);
    let messages: Vec<String> = log
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["email"].is_null())
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        messages[..3],
        [
            "imap batch from gammel to ny with 50 users".to_string(),
            "Created -> Syncing".to_string(),
            "Syncing -> SyncedWithErrors".to_string()
        ],
        "{log}"
    );
    let per = json(&flytt(
        &data,
        &[
            "batch",
            "events",
            "Bølge 1",
            "--user",
            "per@example.org",
            "--json",
        ],
    ));
    let failed = per
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["status"] == "Failed")
        .map(|e| e["message"].to_string())
        .unwrap_or_default();
    assert!(
        failed.contains("Syncing -> Failed") && failed.contains("LOGIN"),
        "{per}"
    );
    let events = log.to_string();
    assert!(!events.contains(PASSWORD) && !events.contains(MASTER_PASSWORD));

    // The reports say what happened, one row per user and per problem.
    let reports = dir.path().join("reports");
    flytt_ok(
        &data,
        &[
            "batch",
            "report",
            "Bølge 1",
            "--out",
            reports.to_str().expect("path"),
        ],
    );
    let users_csv =
        std::fs::read_to_string(reports.join("Bølge_1-users.csv")).expect("users report");
    assert_eq!(users_csv.lines().count(), 51, "{users_csv}");
    assert!(
        users_csv
            .lines()
            .any(|l| l.starts_with("kari@example.org,Synced,,") && l.contains(",6,5,0,1,0,")),
        "{users_csv}"
    );
    assert!(
        users_csv
            .lines()
            .any(|l| l.starts_with("per@example.org,Failed,")),
        "{users_csv}"
    );
    let errors_csv =
        std::fs::read_to_string(reports.join("Bølge_1-errors.csv")).expect("errors report");
    // The skipped message's date, and no subject: the batch did not ask.
    let large = errors_csv
        .lines()
        .find(|l| l.starts_with("kari@example.org,large,INBOX,6,"))
        .unwrap_or_else(|| panic!("{errors_csv}"));
    let cells: Vec<&str> = large.split(',').collect();
    assert_eq!(cells.len(), 7, "{large}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(cells[5]).is_ok(),
        "{large}"
    );
    assert_eq!(cells[6], "", "{large}");
    assert!(
        errors_csv
            .lines()
            .any(|l| l.starts_with("lise@example.org,user,")),
        "{errors_csv}"
    );
    assert!(!users_csv.contains(PASSWORD) && !errors_csv.contains(PASSWORD));

    flytt_ok(&data, &["batch", "complete", "Bølge 1"]);
    let status = wait_for(
        &data,
        "Bølge 1",
        &["CompletedWithErrors", "Completed"],
        &mut worker.0,
    );
    assert_eq!(status["status"], "CompletedWithErrors", "{status}");
    assert_eq!(status["user_counts"]["Completed"], 48, "{status}");
}

/// Stop the worker (SIGTERM), then kill it (SIGKILL), in the middle of a
/// batch; start it again: every user ends Synced with every message
/// exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_resumes_without_losing_or_duplicating() {
    a_killed_worker_resumes_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_resumes_on_postgres() {
    a_killed_worker_resumes_on(Backend::Postgres).await;
}

async fn a_killed_worker_resumes_on(backend: Backend) {
    let users = ["a@example.org", "b@example.org", "c@example.org"];
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (*u, PASSWORD)).collect();
    let source = Dovecot::start(Layout::Source, &pairs).expect("source");
    let target = Dovecot::start(Layout::Target, &pairs).expect("target");
    for user in users {
        seed_inbox(&source, user, 1_500, 3_000).await;
    }
    let place = lab(backend);
    let (dir, data, admin_pw) = (&place.dir, place.data.clone(), place.admin_pw.clone());
    let limits = [
        "--max-concurrent-migrations",
        "2",
        "--max-concurrent-incremental-syncs",
        "1",
    ];
    add_endpoint(&data, "gammel", &source, Some(&admin_pw), &limits);
    add_endpoint(&data, "ny", &target, Some(&admin_pw), &limits);
    let csv_path = dir.path().join("users.csv");
    std::fs::write(&csv_path, format!("EmailAddress\n{}\n", users.join("\n"))).expect("csv");
    new_batch(&data, &csv_path, "staged", &[]);
    flytt_ok(&data, &["batch", "start", "Bølge 1"]);

    // Stop cleanly (SIGTERM) a first time, kill (SIGKILL) a second time.
    let mut first = Worker::start(&data);
    wait_copied(&target, users[0], 300).await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(first.0.id().to_string())
        .status();
    let exit = first.0.wait().expect("reap");
    assert!(
        exit.success(),
        "SIGTERM must end the worker cleanly: {exit}"
    );
    let listed = json(&flytt(&data, &["user", "list", "--json"]));
    assert!(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .all(|u| u["status"] != "Syncing"),
        "a stopped worker leaves no user marked as syncing: {listed}"
    );
    let first_start = |listed: &serde_json::Value| {
        listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["email"] == users[0])
            .map(|u| u["first_started_at"].clone())
            .unwrap_or_default()
    };
    let first_started = first_start(&listed);
    assert!(first_started.is_string(), "{listed}");

    let mut second = Worker::start(&data);
    // While it runs, `user list` says where each running sync is, and how
    // far: at most the whole mailbox to copy (less what the first worker's
    // map holds, which depends on how far it got on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = json(&flytt(&data, &["user", "list", "--json"]));
        let resumed = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| {
                u["email"] == users[0]
                    && u["status"] == "Syncing"
                    && u["progress"]["folder"] == "INBOX"
                    && u["progress"]["percent"].is_u64()
            })
            .map(|u| u["progress"].clone());
        if let Some(progress) = resumed {
            let to_copy = progress["messages_to_copy"].as_u64().unwrap_or(u64::MAX);
            assert!(to_copy <= 1_500, "{progress}");
            assert!(progress["percent"].as_u64() < Some(100), "{progress}");
            break;
        }
        assert!(Instant::now() < deadline, "no live progress: {listed}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_copied(&target, users[1], 600).await;
    second.0.kill().expect("SIGKILL");
    second.0.wait().expect("reap");
    let stale = batch_status(&data, "Bølge 1");
    assert_eq!(stale["status"], "Syncing", "{stale}");

    let mut worker = Worker::start(&data);
    let status = wait_for(
        &data,
        "Bølge 1",
        &["Synced", "SyncedWithErrors"],
        &mut worker.0,
    );
    assert_eq!(status["status"], "Synced", "{status}");
    let listed = json(&flytt(&data, &["user", "list", "--json"]));
    assert_eq!(
        first_start(&listed),
        first_started,
        "later syncs keep the first start"
    );
    for user in users {
        let mut from = source.admin_session(user).await.expect("login");
        let mut to = target.admin_session(user).await.expect("login");
        let (a, b) = (
            corpus::snapshot(&mut from).await.expect("snapshot"),
            corpus::snapshot(&mut to).await.expect("snapshot"),
        );
        assert_eq!(a["INBOX"].len(), 1_500, "{user}");
        assert!(
            a["INBOX"] == b["INBOX"],
            "{user}: target INBOX differs ({} messages)",
            b["INBOX"].len()
        );
    }
}

/// AutoStart and AutoComplete take a batch from Created to Completed
/// without a command; a StartAfter in the future holds another back.
#[tokio::test(flavor = "multi_thread")]
async fn auto_start_and_auto_complete() {
    let pairs = [
        ("kari@example.org", PASSWORD),
        ("ola@example.org", PASSWORD),
    ];
    let source = Dovecot::start(Layout::Source, &pairs).expect("source");
    let target = Dovecot::start(Layout::Target, &pairs).expect("target");
    seed_inbox(&source, "kari@example.org", 3, 1_000).await;
    let place = lab(Backend::Sqlite);
    let (dir, data, admin_pw) = (&place.dir, place.data.clone(), place.admin_pw.clone());
    add_endpoint(&data, "gammel", &source, Some(&admin_pw), &[]);
    add_endpoint(&data, "ny", &target, Some(&admin_pw), &[]);
    let csv = |name: &str, user: &str| {
        let path = dir.path().join(format!("{name}.csv"));
        std::fs::write(&path, format!("EmailAddress\n{user}\n")).expect("csv");
        path
    };
    new_batch(
        &data,
        &csv("kari", "kari@example.org"),
        "staged",
        &["--auto-start", "--auto-complete"],
    );
    let ola = csv("ola", "ola@example.org");
    let ola = ola.to_str().expect("path");
    let later = |name: &str, when: &str| {
        flytt(
            &data,
            &[
                "batch",
                "new",
                "--name",
                name,
                "--type",
                "staged",
                "--source-endpoint",
                "gammel",
                "--target-endpoint",
                "ny",
                "--csv",
                ola,
                "--start-after",
                when,
            ],
        )
    };
    assert_eq!(later("Feil", "i morgen").status.code(), Some(2));
    assert_eq!(
        later("Senere", "2099-01-01T00:00:00+01:00").status.code(),
        Some(0)
    );

    let mut worker = Worker::start(&data);
    let status = wait_for(
        &data,
        "Bølge 1",
        &["Completed", "CompletedWithErrors"],
        &mut worker.0,
    );
    assert_eq!(status["status"], "Completed", "{status}");
    assert_eq!(batch_status(&data, "Senere")["status"], "Created");
    let mut session = target
        .admin_session("kari@example.org")
        .await
        .expect("login");
    assert_eq!(
        session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select")
            .exists,
        3
    );
}

/// FolderMapping: the batch's rules for every user, a CSV row's own rules
/// before them; `batch show` and `user show` say which.
#[tokio::test(flavor = "multi_thread")]
async fn folder_mapping_per_batch_and_per_row() {
    let users = ["kari@example.org", "ola@example.org"];
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (*u, PASSWORD)).collect();
    let source = Dovecot::start(Layout::Source, &pairs).expect("source");
    let target = Dovecot::start(Layout::Target, &pairs).expect("target");
    for user in users {
        let mut session = source.admin_session(user).await.expect("login");
        let folders = [
            (vec!["Prosjekter".to_string(), "Nordvik".to_string()], 2),
            (vec!["Gammelt".to_string()], 1),
        ];
        for (n, (path, count)) in folders.into_iter().enumerate() {
            let messages: Vec<CorpusMessage> = (0..count)
                .map(|i| CorpusMessage {
                    bytes: corpus::generated_message(10 * n as u32 + i, None, 1_000),
                    flags: vec!["\\Seen".into()],
                    date: corpus::spread_date(i),
                })
                .collect();
            corpus::seed(
                &mut session,
                source.separator(),
                &[corpus::CorpusFolder {
                    path,
                    subscribed: true,
                    messages,
                }],
            )
            .await
            .expect("seed");
        }
    }
    let place = lab(Backend::Sqlite);
    let data = place.data.clone();
    add_endpoint(&data, "gammel", &source, Some(&place.admin_pw), &[]);
    add_endpoint(&data, "ny", &target, Some(&place.admin_pw), &[]);
    let csv = place.dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "EmailAddress,FolderMapping\n\
         kari@example.org,\"Prosjekter/* -> Kari/*; Gammelt -> \"\"Gammel post\"\"\"\n\
         ola@example.org,\n",
    )
    .expect("csv");
    new_batch(
        &data,
        &csv,
        "onboarding",
        &["--folder-mapping", "Prosjekter/* -> Kunder/*"],
    );
    let shown =
        String::from_utf8_lossy(&flytt_ok(&data, &["batch", "show", "Bølge 1"]).stdout).to_string();
    assert!(
        shown.contains("Mapping:   \"Prosjekter/*\" -> \"Kunder/*\""),
        "{shown}"
    );
    let kari = json(&flytt_ok(
        &data,
        &["user", "show", "kari@example.org", "--json"],
    ));
    assert_eq!(
        kari["overrides"]["folder_mapping"],
        serde_json::json!([
            "\"Prosjekter/*\" -> \"Kari/*\"",
            "\"Gammelt\" -> \"Gammel post\""
        ]),
        "{kari}"
    );
    flytt_ok(&data, &["batch", "start", "Bølge 1"]);
    let mut worker = Worker::start(&data);
    let status = wait_for(
        &data,
        "Bølge 1",
        &["Synced", "SyncedWithErrors"],
        &mut worker.0,
    );
    assert_eq!(status["status"], "Synced", "{status}");
    drop(worker);
    let folder_sizes = async |user: &str| {
        let mut session = target.admin_session(user).await.expect("login");
        let snapshot = corpus::snapshot(&mut session).await.expect("snapshot");
        snapshot
            .into_iter()
            .filter(|(_, messages)| !messages.is_empty())
            .map(|(path, messages)| (path, messages.len()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let sizes = |pairs: &[(&str, usize)]| {
        pairs
            .iter()
            .map(|(p, n)| (p.to_string(), *n))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        folder_sizes("kari@example.org").await,
        sizes(&[("Kari/Nordvik", 2), ("Gammel post", 1)])
    );
    assert_eq!(
        folder_sizes("ola@example.org").await,
        sizes(&[("Kunder/Nordvik", 2), ("Gammelt", 1)])
    );
}

/// A source endpoint's download limit per mailbox and day: each user
/// copies within its allowance, then waits for the next day with the
/// reason, neither failed nor retried before then.
#[tokio::test(flavor = "multi_thread")]
async fn users_over_the_source_s_download_limit_wait_for_the_next_day() {
    let users = ["kari@example.org", "ola@example.org"];
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (*u, PASSWORD)).collect();
    let source = Dovecot::start(Layout::Source, &pairs).expect("source");
    let target = Dovecot::start(Layout::Target, &pairs).expect("target");
    for user in users {
        seed_inbox(&source, user, 200, 3_000).await;
    }
    let place = lab(Backend::Sqlite);
    let data = place.data.clone();
    add_endpoint(
        &data,
        "gammel",
        &source,
        Some(&place.admin_pw),
        &["--download-per-day", "200KB"],
    );
    add_endpoint(&data, "ny", &target, Some(&place.admin_pw), &[]);
    let csv = place.dir.path().join("users.csv");
    std::fs::write(&csv, format!("EmailAddress\n{}\n{}\n", users[0], users[1])).expect("csv");
    new_batch(&data, &csv, "onboarding", &[]);
    flytt_ok(&data, &["batch", "start", "Bølge 1"]);
    let worker = Worker::start(&data);
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = loop {
        let list = json(&flytt(
            &data,
            &["user", "list", "--batch", "Bølge 1", "--json"],
        ));
        let reasons: Vec<(String, u64)> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| {
                let reason = u["waiting"]["reason"].as_str()?;
                Some((reason.to_string(), u["waiting"]["seconds_left"].as_u64()?))
            })
            .collect();
        if reasons.len() == users.len() {
            break reasons;
        }
        assert!(Instant::now() < deadline, "users not waiting: {list}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for (reason, seconds_left) in &waiting {
        assert!(
            reason.contains("download limit of 200 KB a day"),
            "{reason}"
        );
        assert!(*seconds_left > 23 * 3600, "{reason}: {seconds_left} s");
    }
    let shown =
        String::from_utf8_lossy(&flytt_ok(&data, &["user", "show", users[0]]).stdout).to_string();
    assert!(
        shown.contains("Now:    waiting 2") && shown.contains(" h "),
        "{shown}"
    );
    // Within the allowance (a chunk of 50 messages, ~160 KB, is what one
    // read takes), not all 200.
    for user in users {
        let mut session = target.admin_session(user).await.expect("login");
        let copied = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select")
            .exists;
        assert!(copied > 0 && copied < 200, "{user}: {copied} copied");
    }
    let status = batch_status(&data, "Bølge 1");
    assert_eq!(status["status"], "Syncing", "{status}");
    drop(worker);
}
