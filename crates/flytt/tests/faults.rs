//! Busy, flaky and throttling servers (a fault-injecting proxy in front of
//! real Dovecot and Cyrus servers): a batch through a source that caps
//! connections and cuts them ends Synced with every message exactly once;
//! throttling answers are waited out, never bad items; a full target fails
//! its user as such; a server that never lets a user through fails it after
//! the time without progress; messages a FETCH leaves out are copied on the
//! next pass.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Worker, flytt, flytt_ok, json};
use flytt_testsupport::corpus::{self, CorpusFolder, CorpusMessage, Snapshot};
use flytt_testsupport::{Answer, Family, FaultProxy, Faults, Layout, NewEndpoint, TestServer};

const PASSWORD: &str = "passord-for-alle-1";

/// A source and a target server, the source's users seeded, and a data
/// directory whose endpoint `gammel` goes through a fault proxy.
struct Setup {
    source: TestServer,
    target: TestServer,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    data: PathBuf,
    users: Vec<String>,
}

/// `messages` generated messages (about 3 KB) in INBOX and a few in a
/// second folder.
fn mailbox(user: &str, messages: u32) -> Vec<CorpusFolder> {
    let message = |n: u32| CorpusMessage {
        bytes: corpus::generated_message(n, Some(&format!("{n}-{user}")), 3_000),
        flags: if n.is_multiple_of(4) {
            vec!["\\Seen".into()]
        } else {
            vec![]
        },
        date: corpus::spread_date(n),
    };
    vec![
        CorpusFolder {
            path: vec!["INBOX".into()],
            subscribed: true,
            messages: (0..messages).map(message).collect(),
        },
        CorpusFolder {
            path: vec!["Prosjekter".into()],
            subscribed: true,
            messages: (messages..messages + 12).map(message).collect(),
        },
    ]
}

impl Setup {
    /// `faults_on_target`: the proxy stands before the target instead.
    async fn new(
        source: Family,
        users: usize,
        messages: u32,
        faults: Faults,
        faults_on_target: bool,
        source_limit: u32,
    ) -> Setup {
        let users: Vec<String> = (0..users)
            .map(|i| format!("bruker{i}@example.org"))
            .collect();
        let logins: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), PASSWORD)).collect();
        let source = TestServer::start(source, &logins).await.expect("source");
        let target = TestServer::start(Family::Dovecot(Layout::Target), &logins)
            .await
            .expect("target");
        for user in &users {
            let mut session = source.admin_session(user).await.expect("login");
            corpus::seed(&mut session, source.separator(), &mailbox(user, messages))
                .await
                .expect("seed");
        }
        let faulty = if faults_on_target { &target } else { &source };
        let proxy = FaultProxy::start(faulty.port(), faults)
            .await
            .expect("proxy");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        for (name, server, through_proxy, limit) in [
            ("gammel", &source, !faults_on_target, source_limit),
            ("ny", &target, faults_on_target, 20),
        ] {
            let password_file = dir.path().join(format!("{name}.pw"));
            std::fs::write(&password_file, server.admin_password()).expect("password file");
            let url = if through_proxy {
                format!("imap://127.0.0.1:{}", proxy.port)
            } else {
                server.url()
            };
            let endpoint = NewEndpoint {
                name,
                url,
                ca_file: server.ca_file(),
                admin: Some(server.admin(&password_file)),
                max_migrations: limit,
                // The proxy reads the protocol: no TLS through it.
                allow_plaintext: through_proxy,
            };
            let args = endpoint.args();
            flytt_ok(&data, &args.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Setup {
            source,
            target,
            proxy,
            dir,
            data,
            users,
        }
    }

    /// Batch `b` of every user (the users' own source logins, the target's
    /// admin), started.
    fn start_batch(&self, extra: &[&str]) {
        let csv = self.dir.path().join("users.csv");
        let mut rows = String::from("EmailAddress,UserName,Password\n");
        for user in &self.users {
            rows.push_str(&format!("{user},{user},{PASSWORD}\n"));
        }
        std::fs::write(&csv, rows).expect("csv");
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
        flytt_ok(&self.data, &args);
        flytt_ok(&self.data, &["batch", "start", "b"]);
    }

    /// `flytt serve` (with `serve_args`) until the batch has one of
    /// `statuses`, at most `limit`; the service goes on until dropped.
    fn serve_until(
        &self,
        statuses: &[&str],
        serve_args: &[&str],
        limit: Duration,
    ) -> (Worker, Seen) {
        let (mut worker, _) = Worker::serve_with(&self.data, serve_args);
        let seen = wait_for(self, statuses, limit, &mut worker);
        (worker, seen)
    }

    /// Starts the batch (with `batch_args`), serves until it has synced
    /// (with or without errors, at most a minute) and returns the first
    /// user as `user show` gives it.
    fn one_pass(&self, batch_args: &[&str]) -> serde_json::Value {
        self.start_batch(batch_args);
        let _ = self.serve_until(
            &["Synced", "SyncedWithErrors"],
            &[],
            Duration::from_secs(60),
        );
        user(&self.data, &self.users[0])
    }

    /// Both servers' view of a user's mailbox, for an exact comparison:
    /// the folders that hold messages (the target has empty special-use
    /// folders of its own).
    async fn mailboxes(&self, user: &str) -> (Mailbox, Mailbox) {
        let mut source = self.source.admin_session(user).await.expect("source");
        let mut target = self.target.admin_session(user).await.expect("target");
        let non_empty = |mailbox: Mailbox| -> Mailbox {
            mailbox
                .into_iter()
                .filter(|(_, messages)| !messages.is_empty())
                .collect()
        };
        (
            non_empty(corpus::snapshot(&mut source).await.expect("snapshot")),
            non_empty(corpus::snapshot(&mut target).await.expect("snapshot")),
        )
    }
}

type Mailbox = BTreeMap<String, Vec<Snapshot>>;

fn batch(data: &Path) -> serde_json::Value {
    json(&flytt(data, &["batch", "show", "b", "--json"]))
}

fn user(data: &Path, email: &str) -> serde_json::Value {
    json(&flytt(data, &["user", "show", email, "--json"]))
}

/// The users' statuses, errors and waits, for a failed assertion.
fn errors(data: &Path) -> String {
    let users = json(&flytt(data, &["user", "list", "--batch", "b", "--json"]));
    users
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            format!(
                "{} {} {} {}",
                u["email"], u["status"], u["error"], u["waiting"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What was seen while waiting for the batch.
#[derive(Default)]
struct Seen {
    /// `user show`'s waiting sentences.
    waiting: Vec<String>,
    /// The lowest effective limit of the source endpoint.
    lowest_source_limit: Option<u64>,
}

/// Polls until the batch has one of `statuses` (at most `limit`), watching
/// the users' waits and the source endpoint's limit.
fn wait_for(setup: &Setup, statuses: &[&str], limit: Duration, worker: &mut Worker) -> Seen {
    let deadline = Instant::now() + limit;
    let mut seen = Seen::default();
    loop {
        let status = batch(&setup.data);
        if statuses.iter().any(|s| status["status"] == *s) {
            return seen;
        }
        let endpoint = json(&flytt(
            &setup.data,
            &["endpoint", "show", "gammel", "--json"],
        ));
        if let Some(limit) = endpoint["effective_concurrent_migrations"].as_u64() {
            seen.lowest_source_limit =
                Some(seen.lowest_source_limit.map_or(limit, |l| l.min(limit)));
        }
        let users = json(&flytt(
            &setup.data,
            &["user", "list", "--batch", "b", "--json"],
        ));
        for u in users.as_array().into_iter().flatten() {
            if let Some(reason) = u["waiting"]["reason"].as_str() {
                seen.waiting.push(reason.to_string());
            }
        }
        assert!(
            worker.0.try_wait().ok().flatten().is_none(),
            "flytt serve died"
        );
        assert!(
            Instant::now() < deadline,
            "batch stuck: {status}\n{}",
            errors(&setup.data)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The issue's scenario: a source that takes 4 connections at once
/// (`* BYE [UNAVAILABLE]` for the next), cuts every connection after
/// 1.5–4 s (a user's copy takes longer: the answers trickle at 1 MB/s)
/// and refuses or throttles some LOGINs, EXAMINEs and FETCHes, behind an
/// endpoint limit of 10. Every user
/// ends Synced with its mailbox exactly as on the source: each message once,
/// flags and dates kept, and the statistics count each once.
async fn a_batch_through_a_capped_cutting_throttling_source(family: Family) {
    let messages = 1000;
    let faults = Faults {
        max_connections: Some(4),
        cut_after: Some((Duration::from_millis(1500), Duration::from_millis(4000))),
        // About 3 s of copying per user: cuts land in the middle.
        bytes_per_second: Some(1_000_000),
        answers: vec![
            Answer {
                command: "UID FETCH",
                containing: Some("BODY.PEEK[]"),
                completion: "NO [THROTTLED] Request is throttled. Suggested Backoff Time: 1500 ms"
                    .into(),
                times: 4,
            },
            Answer {
                command: "UID FETCH",
                containing: Some("RFC822.SIZE"),
                completion: "NO [LIMIT] Too many commands".into(),
                times: 2,
            },
            Answer {
                command: "LOGIN",
                containing: None,
                completion: "NO [UNAVAILABLE] Too many simultaneous connections".into(),
                times: 2,
            },
            Answer {
                command: "EXAMINE",
                containing: None,
                completion: "NO [INUSE] Mailbox is locked, try again later".into(),
                times: 2,
            },
        ],
        ..Faults::default()
    };
    let setup = Setup::new(family, 10, messages, faults, false, 10).await;
    setup.start_batch(&[]);
    let (worker, seen) = setup.serve_until(
        &["Synced", "SyncedWithErrors"],
        &[],
        Duration::from_secs(240),
    );
    drop(worker);

    let status = batch(&setup.data);
    assert_eq!(
        status["status"],
        "Synced",
        "{status}\n{}",
        errors(&setup.data)
    );
    let counts = &setup.proxy.counts;
    assert!(
        counts.refused.load(Ordering::Relaxed) > 0,
        "no connection was refused"
    );
    assert!(
        counts.cut.load(Ordering::Relaxed) > 0,
        "no connection was cut"
    );
    assert_eq!(
        counts.answered.load(Ordering::Relaxed),
        10,
        "every throttling answer was given"
    );
    assert!(
        seen.waiting
            .iter()
            .any(|w| w.contains("source refused the connection")),
        "no user said why it waited: {:?}",
        seen.waiting
    );
    assert!(
        seen.lowest_source_limit.is_some_and(|l| l < 10),
        "the source's effective limit never went down: {:?}",
        seen.lowest_source_limit
    );
    let expected = u64::from(messages) + 12;
    for email in &setup.users {
        let (source, target) = setup.mailboxes(email).await;
        assert_eq!(
            source, target,
            "{email}: the target differs from the source"
        );
        let shown = user(&setup.data, email);
        let stats = &shown["statistics"];
        assert_eq!(shown["status"], "Synced", "{shown}");
        assert_eq!(stats["messages_failed"], 0, "{shown}");
        assert_eq!(
            stats["messages_copied"].as_u64().unwrap_or(0)
                + stats["messages_matched"].as_u64().unwrap_or(0),
            expected,
            "{email}: every message counted once: {stats}\n{}",
            String::from_utf8_lossy(
                &flytt(&setup.data, &["batch", "events", "b", "--user", email]).stdout
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_through_a_capped_cutting_throttling_dovecot_source() {
    a_batch_through_a_capped_cutting_throttling_source(Family::Dovecot(Layout::Source)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_through_a_capped_cutting_throttling_cyrus_source() {
    a_batch_through_a_capped_cutting_throttling_source(Family::Cyrus).await;
}

/// `NO [OVERQUOTA]` on APPEND: the user fails as "target mailbox full",
/// with no message counted as a bad item.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_target_fails_the_user_as_such() {
    let faults = Faults {
        answers: vec![Answer {
            command: "APPEND",
            containing: None,
            completion: "NO [OVERQUOTA] Quota exceeded (mailbox for user is full)".into(),
            times: 1_000,
        }],
        ..Faults::default()
    };
    let setup = Setup::new(Family::Dovecot(Layout::Source), 1, 30, faults, true, 10).await;
    let shown = setup.one_pass(&[]);
    assert_eq!(shown["status"], "Failed", "{shown}");
    let error = shown["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("target mailbox full"), "{error}");
    assert!(error.contains("Quota exceeded"), "{error}");
}

/// A source that never lets the user in: tried with backoff, it fails
/// after --give-up-after without progress, with the last reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_progress_fails_after_the_give_up_time() {
    let faults = Faults {
        max_connections: Some(0),
        ..Faults::default()
    };
    let setup = Setup::new(Family::Dovecot(Layout::Source), 1, 5, faults, false, 10).await;
    setup.start_batch(&[]);
    let started = Instant::now();
    let (_worker, seen) = setup.serve_until(
        &["SyncedWithErrors"],
        &["--give-up-after", "5s"],
        Duration::from_secs(60),
    );
    let shown = user(&setup.data, &setup.users[0]);
    let error = shown["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("no progress for") && error.contains("source refused the connection"),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(
        setup.proxy.counts.refused.load(Ordering::Relaxed) >= 2,
        "tried more than once"
    );
    assert!(!seen.waiting.is_empty(), "the wait was not shown");
}

/// A FETCH that answers OK without some of the messages asked for: they
/// are not taken as gone (UID SEARCH finds them), the pass reports them,
/// and the next pass copies them.
#[tokio::test(flavor = "multi_thread")]
async fn messages_a_fetch_leaves_out_are_copied_on_the_next_pass() {
    let faults = Faults {
        answers: vec![Answer {
            command: "UID FETCH",
            containing: Some("BODY.PEEK[]"),
            completion: "OK Fetch completed.".into(),
            times: 1,
        }],
        ..Faults::default()
    };
    let setup = Setup::new(Family::Dovecot(Layout::Source), 1, 120, faults, false, 10).await;
    setup.start_batch(&["--incremental-sync-interval", "1s"]);
    let (worker, _seen) = setup.serve_until(&["Synced"], &[], Duration::from_secs(60));
    let email = &setup.users[0];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (source, target) = setup.mailboxes(email).await;
        if source == target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the left-out messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(worker);
    let shown = user(&setup.data, email);
    assert_eq!(shown["statistics"]["messages_failed"], 0, "{shown}");
    assert_eq!(
        shown["statistics"]["messages_copied"].as_u64(),
        Some(132),
        "each message copied once: {shown}"
    );
}

/// A source whose RFC822.SIZE cannot be trusted (every size announced as
/// 1 byte): LargeItemLimit still holds, on the bytes received. The large
/// messages are skipped and reported; the rest is copied.
#[tokio::test(flavor = "multi_thread")]
async fn large_item_limit_holds_on_the_bytes_received() {
    let faults = Faults {
        understate_sizes: true,
        ..Faults::default()
    };
    let setup = Setup::new(Family::Dovecot(Layout::Source), 1, 20, faults, false, 10).await;
    let email = setup.users[0].clone();
    let mut session = setup.source.admin_session(&email).await.expect("login");
    let large: Vec<CorpusMessage> = (100..102)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("stor-{n}")), 40_000),
            flags: vec![],
            date: corpus::spread_date(n),
        })
        .collect();
    corpus::append_all(&mut session, "INBOX", &large)
        .await
        .expect("seed");
    drop(session);
    let shown = setup.one_pass(&["--large-item-limit", "10KB"]);
    let stats = &shown["statistics"];
    assert_eq!(shown["status"], "Synced", "{shown}");
    assert_eq!(stats["messages_skipped"], 2, "{stats}");
    assert_eq!(stats["messages_copied"], 32, "{stats}");
    let issues = stats["issues"].as_array().cloned().unwrap_or_default();
    assert!(
        issues
            .iter()
            .filter(|i| i["kind"] == "large")
            .all(|i| i["reason"]
                .as_str()
                .is_some_and(|r| r.contains("bytes received"))),
        "{issues:?}"
    );
    let (_, target) = setup.mailboxes(&email).await;
    let on_target: usize = target.values().map(Vec::len).sum();
    assert_eq!(on_target, 32, "the large messages stayed behind");
}

/// A target that keeps copies of another size than was sent (here every
/// size it announces is 1 byte) has every copy reported as altered, never
/// silently: the sizes come from the FETCH flytt sends right behind a
/// folder's last APPENDs.
#[tokio::test(flavor = "multi_thread")]
async fn copies_the_target_keeps_at_another_size_are_reported() {
    let faults = Faults {
        understate_sizes: true,
        ..Faults::default()
    };
    let setup = Setup::new(Family::Dovecot(Layout::Source), 1, 20, faults, true, 10).await;
    let shown = setup.one_pass(&[]);
    let stats = &shown["statistics"];
    assert_eq!(stats["messages_copied"], 32, "{stats}");
    assert_eq!(stats["messages_altered"], 32, "{stats}");
    let issues = stats["issues"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        issues.iter().filter(|i| i["kind"] == "altered").count(),
        32,
        "{issues:?}"
    );
    assert!(
        issues
            .iter()
            .filter(|i| i["kind"] == "altered")
            .all(|i| i["reason"]
                .as_str()
                .is_some_and(|r| r.contains(", 1 stored)"))),
        "{issues:?}"
    );
}

/// A flag update the target refuses (`NO [CANNOT]` on UID STORE) is not
/// skipped for good: the pass reports it, and the next pass applies it.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_flag_update_is_applied_on_the_next_pass() {
    let faults = Faults {
        answers: vec![Answer {
            command: "UID STORE",
            containing: None,
            completion: "NO [CANNOT] Flags cannot be changed now".into(),
            times: 1,
        }],
        ..Faults::default()
    };
    let setup = Setup::new(Family::Dovecot(Layout::Source), 1, 30, faults, true, 10).await;
    let email = setup.users[0].clone();
    setup.start_batch(&["--incremental-sync-interval", "1s"]);
    let (_worker, _seen) = setup.serve_until(&["Synced"], &[], Duration::from_secs(60));
    // The user flags every message on the source.
    let mut session = setup.source.admin_session(&email).await.expect("login");
    session
        .select("INBOX", flytt_imap::Access::ReadWrite)
        .await
        .expect("select");
    let uids = session.uid_search_all().await.expect("search");
    let flagged = flytt_imap::Flag::parse("\\Flagged").expect("flag");
    session
        .uid_store(&uids, true, &[flagged])
        .await
        .expect("store");
    drop(session);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (source, target) = setup.mailboxes(&email).await;
        if source == target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused flag update never arrived"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        setup.proxy.counts.answered.load(Ordering::Relaxed),
        1,
        "the target refused one flag update"
    );
}

/// One message whose FETCH answer cannot be parsed: the rest of the folder
/// is copied, the user is not failed, and the message is reported as left
/// for the next pass, not lost and not a bad item.
#[tokio::test(flavor = "multi_thread")]
async fn an_unparsable_message_is_deferred_and_the_rest_copied() {
    let faults = Faults {
        garble_body_of_uid: Some(7),
        ..Faults::default()
    };
    let setup = Setup::new(Family::Dovecot(Layout::Source), 1, 30, faults, false, 10).await;
    let email = setup.users[0].clone();
    let shown = setup.one_pass(&[]);
    let stats = &shown["statistics"];
    assert_eq!(shown["status"], "Synced", "{shown}");
    assert_eq!(stats["messages_failed"], 0, "{stats}");
    // UID 7 of both folders (INBOX has 30 messages, Prosjekter 12).
    assert_eq!(stats["messages_copied"], 40, "{stats}");
    let issues = stats["issues"].as_array().cloned().unwrap_or_default();
    let deferred = issues
        .iter()
        .filter(|i| {
            i["kind"] == "deferred"
                && i["uid"] == 7
                && i["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("could not be parsed"))
        })
        .count();
    assert_eq!(deferred, 2, "{issues:?}");
    let (_, target) = setup.mailboxes(&email).await;
    assert_eq!(target.values().map(Vec::len).sum::<usize>(), 40);
}
