//! Several runners on one database (one SQLite data directory, or one
//! PostgreSQL database): users are leased, the endpoint limits hold across
//! runners, a killed runner's users continue on the others once its leases
//! expire, a paused runner writes nothing once its lease is gone, and every
//! message arrives exactly once.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Backend, FAILING_USER, Lab, USER_PASSWORD, Worker, count_users, flytt, flytt_command, flytt_ok,
    json,
};
use flytt_testsupport::corpus;

/// `flytt worker` with short leases (heartbeat 1 s, lease 3 s).
fn worker(data: &Path) -> Worker {
    let child = flytt_command(data, &["worker"])
        .env("FLYTT_HEARTBEAT", "1s")
        .env("FLYTT_LEASE", "3s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flytt worker");
    Worker(child)
}

fn batch(data: &Path) -> serde_json::Value {
    json(&flytt(data, &["batch", "show", "Bølge 1", "--json"]))
}

fn users(data: &Path) -> Vec<serde_json::Value> {
    json(&flytt(data, &["user", "list", "--json"]))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_until(what: &str, data: &Path, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = batch(data);
        if done(&status) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn assert_every_mailbox_exact(lab: &Lab, users: &[String]) {
    for user in users {
        let mut from = lab.source.admin_session(user).await.expect("login");
        let mut to = lab.target.admin_session(user).await.expect("login");
        let (a, b) = (
            corpus::snapshot(&mut from).await.expect("snapshot"),
            corpus::snapshot(&mut to).await.expect("snapshot"),
        );
        assert!(
            a["INBOX"] == b["INBOX"],
            "{user}: {} messages on the source, {} on the target",
            a["INBOX"].len(),
            b["INBOX"].len()
        );
    }
}

fn syncing_holders(data: &Path) -> usize {
    users(data)
        .iter()
        .filter(|u| u["status"] == "Syncing")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_runners_share_one_data_directory() {
    three_runners_share_one_database(Backend::Sqlite, 12).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_runners_share_one_postgres_database() {
    three_runners_share_one_database(Backend::Postgres, 20).await;
}

/// Three runners on one database, a batch of `user_count` users (and one with a
/// wrong password), the source limited to 3 migrations: never more than 3
/// source logins at once; one runner SIGKILLed mid-batch: its users
/// continue on the others once the lease expires; every message exactly
/// once.
async fn three_runners_share_one_database(backend: Backend, user_count: usize) {
    let names: Vec<String> = (0..user_count)
        .map(|i| format!("u{i:02}@example.org"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let counts = vec![400; names.len()];
    let lab = Lab::start_on(backend, &refs, &counts, 3_000).await;
    let data = &lab.data;
    flytt_ok(
        data,
        &[
            "endpoint",
            "set",
            "gammel",
            "--max-concurrent-migrations",
            "3",
            "--max-concurrent-incremental-syncs",
            "3",
        ],
    );
    let csv = lab.dir.path().join("users.csv");
    std::fs::write(&csv, Lab::csv(&refs)).expect("csv");
    let csv = csv.display().to_string();
    flytt_ok(
        data,
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
            &csv,
        ],
    );
    flytt_ok(data, &["batch", "start", "Bølge 1"]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counter = count_users(lab.source.config_path().to_path_buf(), stop.clone());
    let mut runners: Vec<Worker> = (0..3).map(|_| worker(data)).collect();
    // All three are registered and share the work.
    let deadline = Instant::now() + Duration::from_secs(30);
    while json(&flytt(data, &["worker", "list", "--json"]))
        .as_array()
        .map_or(0, Vec::len)
        < 3
    {
        assert!(Instant::now() < deadline, "three runners never registered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Kill the runner holding a user, mid-sync.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let listed = json(&flytt(data, &["worker", "list", "--json"]));
        let holder = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["users_held"].as_u64().unwrap_or(0) > 0)
            .and_then(|r| r["pid"].as_u64());
        if let Some(pid) = holder {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no runner holds a user: {listed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let index = runners
        .iter()
        .position(|w| u64::from(w.0.id()) == victim)
        .expect("the holder is one of ours");
    let mut killed = runners.remove(index);
    killed.0.kill().expect("SIGKILL");
    killed.0.wait().expect("reap");
    assert!(
        syncing_holders(data) >= 1,
        "users were syncing when it died"
    );

    wait_until("the batch never synced", data, |s| {
        s["status"] == "SyncedWithErrors" || s["status"] == "Synced"
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = counter.join().expect("counter");
    assert!(
        (1..=3).contains(&most),
        "{most} users logged in to the source at once; the limit is 3"
    );
    let status = batch(data);
    assert_eq!(status["user_counts"]["Synced"], user_count, "{status}");
    assert_eq!(status["user_counts"]["Failed"], 1, "{status}");
    assert_every_mailbox_exact(&lab, &names).await;
    // The failed one is the wrong password, alone.
    let failed: Vec<serde_json::Value> = users(data)
        .into_iter()
        .filter(|u| u["status"] == "Failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["email"], FAILING_USER);
    drop(runners);
}

fn signal(worker: &Worker, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &worker.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal}");
}

/// The runner id a user's lease names, if any.
fn holder(data: &Path, email: &str) -> Option<String> {
    users(data)
        .into_iter()
        .find(|u| u["email"] == email)
        .and_then(|u| u["runner"].as_str().map(str::to_string))
}

/// A runner paused (SIGSTOP) past its lease while it copies a mailbox:
/// another runner takes the user over; resumed (SIGCONT), the first one
/// writes nothing more for that user: every message arrives exactly once
/// and the user ends Synced by the runner that holds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_runner_does_not_write_a_user_another_took() {
    let user = "stor@example.org";
    let lab = Lab::start_on(Backend::Postgres, &[user], &[4_000], 3_000).await;
    let data = &lab.data;
    let csv = lab.dir.path().join("users.csv");
    std::fs::write(&csv, Lab::csv(&[user])).expect("csv");
    let csv = csv.display().to_string();
    flytt_ok(
        data,
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
            &csv,
        ],
    );
    flytt_ok(data, &["batch", "start", "Bølge 1"]);
    let first = worker(data);
    // Pause it a fifth of the way through the mailbox.
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.target_inbox(user).await < 800 {
        assert!(Instant::now() < deadline, "the copy never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&first, "-STOP");
    let paused = holder(data, user).expect("the first runner holds the user");

    // The second runner waits for the lease to expire, then takes over.
    let second = worker(data);
    let deadline = Instant::now() + Duration::from_secs(60);
    let taker = loop {
        match holder(data, user) {
            Some(runner) if runner != paused => break runner,
            _ => {}
        }
        assert!(Instant::now() < deadline, "nobody took the user over");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Resumed while the second one copies: both would append the same
    // messages if the first one went on.
    let taken_at = lab.target_inbox(user).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.target_inbox(user).await < taken_at + 300 {
        assert!(Instant::now() < deadline, "the second runner never copied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&first, "-CONT");

    wait_until("the batch never synced", data, |s| {
        s["status"] == "SyncedWithErrors" || s["status"] == "Synced"
    });
    assert!(taken_at < 3_000, "taken over mid-copy ({taken_at} copied)");
    assert_every_mailbox_exact(&lab, &[user.to_string()]).await;
    let log = json(&flytt(data, &["user", "show", user, "--json"]));
    let messages: Vec<&str> = log["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.ends_with("the lease expired")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&format!("(runner {taker})"))),
        "{messages:?}"
    );
    assert_eq!(log["status"], "Synced", "{log}");
    drop((first, second));
}

/// Staged preparation across runners: three workers on one PostgreSQL
/// prepare a staged batch through a directory hook that is slow on purpose.
/// Each user's mailbox is made once (two runners never prepare the same
/// user), and never more preparations run at once than the endpoints'
/// MaxConcurrentMigrations (2), whichever runner does them.
#[tokio::test(flavor = "multi_thread")]
async fn staged_preparation_is_shared_once_within_the_limit() {
    use std::os::unix::fs::PermissionsExt;
    let names: Vec<String> = (0..8).map(|i| format!("s{i}@example.org")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let lab = Lab::start_on(Backend::Postgres, &refs, &vec![2; refs.len()], 1_000).await;
    let data = &lab.data;
    // Every user is a mail user; making a mailbox takes 300 ms and is
    // logged with its start and end.
    let hook = lab.dir.path().join("hook");
    let log = lab.dir.path().join("hook.log");
    std::fs::write(
        &hook,
        format!(
            r#"#!/usr/bin/python3
import json, sys, time
request = json.load(sys.stdin)
op = request["operation"]
if op == "verify":
    print(json.dumps({{"ok": True}})); sys.exit(0)
email = request["email"]
if op == "make_mailbox":
    with open("{log}", "a") as log:
        log.write("start " + email + "\n")
    time.sleep(0.3)
    with open("{log}", "a") as log:
        log.write("end " + email + "\n")
print(json.dumps({{"ok": True, "user": {{"id": email, "state": "mail_user" if op == "lookup" else "mailbox"}}}}))
"#,
            log = log.display()
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let admin_pw = lab.dir.path().join("admin.pw").display().to_string();
    let hook = hook.display().to_string();
    flytt_ok(data, &["directory", "new", "krok", "--hook", &hook]);
    for (endpoint, extra) in [
        (
            "gammel",
            vec!["--admin-user", "admin", "--admin-password-file", &admin_pw],
        ),
        ("ny", vec!["--directory", "krok"]),
    ] {
        let mut args = vec![
            "endpoint",
            "set",
            endpoint,
            "--max-concurrent-migrations",
            "2",
            "--max-concurrent-incremental-syncs",
            "2",
        ];
        args.extend(extra);
        flytt_ok(data, &args);
    }
    let csv = lab.dir.path().join("staged.csv");
    let rows: String = names
        .iter()
        .map(|u| format!("{u},Nytt-passord-1\n"))
        .collect();
    std::fs::write(&csv, format!("EmailAddress,Password\n{rows}")).expect("csv");
    let csv = csv.display().to_string();
    flytt_ok(
        data,
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
            &csv,
            "--auto-start",
        ],
    );
    let runners: Vec<Worker> = (0..3).map(|_| worker(data)).collect();
    wait_until("the batch never synced", data, |s| s["status"] == "Synced");
    drop(runners);
    let log = std::fs::read_to_string(&log).expect("hook log");
    let mut running = 0i32;
    let mut most = 0;
    let mut made: std::collections::HashMap<&str, u32> = Default::default();
    for line in log.lines() {
        match line.split_once(' ') {
            Some(("start", email)) => {
                running += 1;
                most = most.max(running);
                *made.entry(email).or_default() += 1;
            }
            Some(("end", _)) => running -= 1,
            _ => panic!("odd log line {line:?}"),
        }
    }
    assert!(
        names.iter().all(|u| made.get(u.as_str()) == Some(&1)),
        "each mailbox made once: {made:?}"
    );
    assert!(
        (1..=2).contains(&most),
        "{most} preparations at once; the limit is 2"
    );
    assert_every_mailbox_exact(&lab, &names).await;
}

/// A directory that hangs does not hold up the runner: a staged user whose
/// mailbox takes 30 s to make is given up after --step-deadline (and waits
/// to try again, saying why), while an IMAP batch on the same servers runs
/// to Synced meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_directory_does_not_hold_up_other_batches() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::start(
        &["kari@example.org", "ola@example.org", "treg@example.org"],
        &[20, 20, 5],
        1_000,
    )
    .await;
    let data = &lab.data;
    let hook = lab.dir.path().join("hook");
    std::fs::write(
        &hook,
        r#"#!/usr/bin/python3
import json, sys, time
request = json.load(sys.stdin)
op = request["operation"]
if op == "make_mailbox":
    time.sleep(30)
if op == "verify":
    print(json.dumps({"ok": True})); sys.exit(0)
print(json.dumps({"ok": True, "user": {"id": request["email"], "state": "mail_user" if op == "lookup" else "mailbox"}}))
"#,
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let admin_pw = lab.dir.path().join("admin.pw").display().to_string();
    flytt_ok(
        data,
        &[
            "directory",
            "new",
            "treg",
            "--hook",
            &hook.display().to_string(),
        ],
    );
    flytt_ok(
        data,
        &[
            "endpoint",
            "set",
            "gammel",
            "--admin-user",
            "admin",
            "--admin-password-file",
            &admin_pw,
        ],
    );
    flytt_ok(data, &["endpoint", "set", "ny", "--directory", "treg"]);
    let staged = lab.dir.path().join("staged.csv");
    std::fs::write(
        &staged,
        "EmailAddress,Password\ntreg@example.org,Nytt-passord-1\n",
    )
    .expect("csv");
    let imap = lab.dir.path().join("imap.csv");
    std::fs::write(
        &imap,
        format!(
            "EmailAddress,UserName,Password\nkari@example.org,kari@example.org,{USER_PASSWORD}\nola@example.org,ola@example.org,{USER_PASSWORD}\n"
        ),
    )
    .expect("csv");
    for (name, kind, csv) in [("treg", "staged", &staged), ("rask", "imap", &imap)] {
        flytt_ok(
            data,
            &[
                "batch",
                "new",
                "--name",
                name,
                "--type",
                kind,
                "--source-endpoint",
                "gammel",
                "--target-endpoint",
                "ny",
                "--csv",
                &csv.display().to_string(),
                "--auto-start",
            ],
        );
    }
    let started = std::time::Instant::now();
    let _serve = Worker::serve_with(data, &["--step-deadline", "4s"]);
    let mut waited = None;
    loop {
        let rask = json(&flytt(data, &["batch", "show", "rask", "--json"]));
        let treg = json(&flytt(
            data,
            &["user", "show", "treg@example.org", "--json"],
        ));
        if let Some(reason) = treg["waiting"]["reason"].as_str() {
            waited = Some(reason.to_string());
        }
        if rask["status"] == "Synced" && waited.is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "held up: rask {rask}, treg {treg}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let waited = waited.unwrap_or_default();
    assert!(waited.contains("did not finish within 4 s"), "{waited}");
    assert_eq!(lab.target_inbox("kari@example.org").await, 20);
    assert_eq!(lab.target_inbox("ola@example.org").await, 20);
}
