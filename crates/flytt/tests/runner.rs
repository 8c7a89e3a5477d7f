//! `flytt worker` running a batch against real Dovecot servers: good users
//! end Synced with their mail on the target, a wrong password and a missing
//! target mailbox fail alone with the reason, and completion ends the batch.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flytt_testsupport::corpus::{self, CorpusMessage};
use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
use flytt_testsupport::{Dovecot, Layout};

fn flytt(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flytt"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run flytt")
}

fn batch_status(data: &Path) -> serde_json::Value {
    serde_json::from_slice(&flytt(data, &["batch", "show", "Bølge 1", "--json"]).stdout)
        .unwrap_or(serde_json::Value::Null)
}

fn wait_for(data: &Path, statuses: &[&str], worker: &mut Child) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = batch_status(data);
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

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_runs_to_completion_and_failures_stay_alone() {
    let good = [
        "kari@example.org",
        "ola@example.org",
        "nora@example.org",
        "emil@example.org",
    ];
    let mut source_users: Vec<(&str, &str)> =
        good.iter().map(|u| (*u, "kilde-passord-1")).collect();
    source_users.push(("per@example.org", "kilde-passord-1"));
    source_users.push(("lise@example.org", "kilde-passord-1"));
    let source = Dovecot::start(Layout::Source, &source_users).expect("source");
    // lise has no mailbox on the target.
    let target_users: Vec<(&str, &str)> = source_users
        .iter()
        .copied()
        .filter(|(u, _)| *u != "lise@example.org")
        .collect();
    let target = Dovecot::start(Layout::Target, &target_users).expect("target");

    for (i, user) in good.iter().enumerate() {
        let mut session = source.admin_session(user).await.expect("login");
        let messages: Vec<CorpusMessage> = (0..5 + i as u32)
            .map(|n| CorpusMessage {
                bytes: corpus::generated_message(n, Some(&format!("{n}-{user}")), 2_000),
                flags: vec!["\\Seen".into()],
                date: corpus::spread_date(n),
            })
            .collect();
        corpus::append_all(&mut session, "INBOX", &messages)
            .await
            .expect("seed");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin_pw = dir.path().join("admin.pw");
    std::fs::write(&admin_pw, MASTER_PASSWORD).expect("write");
    let new_endpoint = |name: &str, server: &Dovecot, admin: bool| {
        let mut args = vec![
            "endpoint".to_string(),
            "new".into(),
            name.into(),
            "--url".into(),
            server.url(),
            "--ca-file".into(),
            server.ca_file().display().to_string(),
            "--max-concurrent-migrations".into(),
            "2".into(),
            "--max-concurrent-incremental-syncs".into(),
            "1".into(),
        ];
        if admin {
            args.extend([
                "--admin-user".into(),
                MASTER_USER.into(),
                "--admin-password-file".into(),
                admin_pw.display().to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = flytt(&data, &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    new_endpoint("gammel", &source, false);
    new_endpoint("ny", &target, true);

    let mut csv = String::from("EmailAddress,UserName,Password\n");
    for user in good {
        csv.push_str(&format!("{user},{user},kilde-passord-1\n"));
    }
    csv.push_str("per@example.org,per@example.org,feil-passord\n");
    csv.push_str("lise@example.org,lise@example.org,kilde-passord-1\n");
    let csv_path = dir.path().join("users.csv");
    std::fs::write(&csv_path, csv).expect("csv");
    let out = flytt(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "Bølge 1",
            "--type",
            "imap",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            csv_path.to_str().expect("path"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        flytt(&data, &["batch", "start", "Bølge 1"]).status.code(),
        Some(0)
    );

    // Count the source's concurrent logins while the batch runs: the
    // endpoint allows two migrations at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counter = {
        let (stop, conf) = (stop.clone(), source.config_path().to_path_buf());
        std::thread::spawn(move || {
            let mut most = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(out) = Command::new("doveadm")
                    .arg("-c")
                    .arg(&conf)
                    .args(["who", "-1"])
                    .output()
                {
                    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
                    most = most.max(lines.saturating_sub(1));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            most
        })
    };
    let mut worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_flytt"))
            .arg("worker")
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker"),
    );
    let status = wait_for(&data, &["SyncedWithErrors", "Synced"], &mut worker.0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = counter.join().expect("counter");
    assert!(
        (1..=2).contains(&most),
        "{most} concurrent source logins; the limit is 2"
    );
    assert_eq!(status["status"], "SyncedWithErrors", "{status}");
    assert_eq!(status["user_counts"]["Synced"], 4, "{status}");
    assert_eq!(status["user_counts"]["Failed"], 2, "{status}");

    let users: serde_json::Value =
        serde_json::from_slice(&flytt(&data, &["user", "list", "--json"]).stdout).expect("json");
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
    assert!(
        !users.to_string().contains("kilde-passord")
            && !users.to_string().contains(MASTER_PASSWORD)
    );

    for (i, user) in good.iter().enumerate() {
        let mut session = target.admin_session(user).await.expect("login");
        let inbox = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select");
        assert_eq!(inbox.exists, 5 + i as u32, "{user}");
    }

    assert_eq!(
        flytt(&data, &["batch", "complete", "Bølge 1"])
            .status
            .code(),
        Some(0)
    );
    let status = wait_for(&data, &["CompletedWithErrors", "Completed"], &mut worker.0);
    assert_eq!(status["status"], "CompletedWithErrors", "{status}");
    assert_eq!(status["user_counts"]["Completed"], 4, "{status}");
}

/// SIGKILL the worker in the middle of a batch, start it again: every user
/// ends Synced with every message exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_resumes_without_losing_or_duplicating() {
    let users = ["a@example.org", "b@example.org", "c@example.org"];
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (*u, "kilde-passord-1")).collect();
    let source = Dovecot::start(Layout::Source, &pairs).expect("source");
    let target = Dovecot::start(Layout::Target, &pairs).expect("target");
    for user in users {
        let mut session = source.admin_session(user).await.expect("login");
        let messages: Vec<CorpusMessage> = (0..1_500u32)
            .map(|n| CorpusMessage {
                bytes: corpus::generated_message(n, Some(&format!("{n}-{user}")), 3_000),
                flags: vec![],
                date: corpus::spread_date(n),
            })
            .collect();
        corpus::append_all(&mut session, "INBOX", &messages)
            .await
            .expect("seed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin_pw = dir.path().join("admin.pw");
    std::fs::write(&admin_pw, MASTER_PASSWORD).expect("write");
    for (name, server) in [("gammel", &source), ("ny", &target)] {
        let out = flytt(
            &data,
            &[
                "endpoint",
                "new",
                name,
                "--url",
                &server.url(),
                "--ca-file",
                server.ca_file().to_str().expect("path"),
                "--admin-user",
                MASTER_USER,
                "--admin-password-file",
                admin_pw.to_str().expect("path"),
                "--max-concurrent-migrations",
                "2",
                "--max-concurrent-incremental-syncs",
                "1",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let csv_path = dir.path().join("users.csv");
    std::fs::write(&csv_path, format!("EmailAddress\n{}\n", users.join("\n"))).expect("csv");
    let out = flytt(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "Bølge 1",
            "--type",
            "staged",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            csv_path.to_str().expect("path"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        flytt(&data, &["batch", "start", "Bølge 1"]).status.code(),
        Some(0)
    );

    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_flytt"))
            .arg("worker")
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker")
    };
    let mut first = spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut session = target.admin_session(users[0]).await.expect("login");
        let copied = session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select")
            .exists;
        drop(session);
        if copied >= 300 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    let stale = batch_status(&data);
    assert_eq!(stale["status"], "Syncing", "{stale}");

    let mut worker = Worker(spawn());
    let status = wait_for(&data, &["Synced", "SyncedWithErrors"], &mut worker.0);
    assert_eq!(status["status"], "Synced", "{status}");
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
        ("kari@example.org", "kilde-passord-1"),
        ("ola@example.org", "kilde-passord-1"),
    ];
    let source = Dovecot::start(Layout::Source, &pairs).expect("source");
    let target = Dovecot::start(Layout::Target, &pairs).expect("target");
    let mut session = source
        .admin_session("kari@example.org")
        .await
        .expect("login");
    let messages: Vec<CorpusMessage> = (0..3u32)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("auto-{n}")), 1_000),
            flags: vec![],
            date: corpus::spread_date(n),
        })
        .collect();
    corpus::append_all(&mut session, "INBOX", &messages)
        .await
        .expect("seed");
    drop(session);

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin_pw = dir.path().join("admin.pw");
    std::fs::write(&admin_pw, MASTER_PASSWORD).expect("write");
    for (name, server) in [("gammel", &source), ("ny", &target)] {
        let out = flytt(
            &data,
            &[
                "endpoint",
                "new",
                name,
                "--url",
                &server.url(),
                "--ca-file",
                server.ca_file().to_str().expect("path"),
                "--admin-user",
                MASTER_USER,
                "--admin-password-file",
                admin_pw.to_str().expect("path"),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let csv = |name: &str, user: &str| {
        let path = dir.path().join(format!("{name}.csv"));
        std::fs::write(&path, format!("EmailAddress\n{user}\n")).expect("csv");
        path
    };
    let kari = csv("kari", "kari@example.org");
    let out = flytt(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "Bølge 1",
            "--type",
            "staged",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            kari.to_str().expect("path"),
            "--auto-start",
            "--auto-complete",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ola = csv("ola", "ola@example.org");
    let out = flytt(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "Senere",
            "--type",
            "staged",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            ola.to_str().expect("path"),
            "--start-after",
            "2099-01-01T00:00:00+01:00",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad_time = flytt(
        &data,
        &[
            "batch",
            "new",
            "--name",
            "Feil",
            "--type",
            "staged",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            ola.to_str().expect("path"),
            "--start-after",
            "i morgen",
        ],
    );
    assert_eq!(bad_time.status.code(), Some(2));

    let mut worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_flytt"))
            .arg("worker")
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker"),
    );
    let status = wait_for(&data, &["Completed", "CompletedWithErrors"], &mut worker.0);
    assert_eq!(status["status"], "Completed", "{status}");
    let later: serde_json::Value =
        serde_json::from_slice(&flytt(&data, &["batch", "show", "Senere", "--json"]).stdout)
            .expect("json");
    assert_eq!(later["status"], "Created", "{later}");
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
