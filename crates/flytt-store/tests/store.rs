//! The store's rules, on both backends: SQLite (a data directory) and
//! PostgreSQL (a server of the test's own, started by flytt-testsupport).
//! Each check runs once per backend.

use std::time::Duration;

use flytt_batch::{
    BatchParameters, BatchStatus, BatchType, StatisticsIssue, UserOverrides, UserStatistics,
    UserStatus,
};
use flytt_store::*;
use flytt_testsupport::Postgres;

/// Where a test's state lives; `open` opens it anew, as another process
/// (or a restart) would.
enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(Postgres),
}

impl Database {
    fn start(backend: Backend) -> Database {
        match backend {
            Backend::Sqlite => Database::Sqlite(tempfile::tempdir().expect("temporary directory")),
            Backend::Postgres => Database::Postgres(Postgres::start().expect("start PostgreSQL")),
        }
    }

    async fn open(&self) -> Result<Store> {
        self.place().open().await
    }

    /// Where it is, for a task of its own.
    fn place(&self) -> Place {
        match self {
            Database::Sqlite(dir) => Place::Dir(dir.path().to_path_buf()),
            Database::Postgres(server) => Place::Url(server.url()),
        }
    }
}

#[derive(Clone)]
enum Place {
    Dir(std::path::PathBuf),
    Url(String),
}

impl Place {
    async fn open(self) -> Result<Store> {
        match self {
            Place::Dir(dir) => Store::open(&dir).await,
            Place::Url(url) => Store::connect(&url).await,
        }
    }
}

/// One `#[tokio::test]` per backend for each check (`async fn(&Database)`).
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        $(
            mod $check {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() -> Result<()> {
                    super::$check(&Database::start(Backend::Sqlite)).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() -> Result<()> {
                    super::$check(&Database::start(Backend::Postgres)).await
                }
            }
        )*
    };
}

on_both_backends!(
    uid_map_survives_reopen_and_resets_on_new_uidvalidity,
    legacy_keys_are_renamed_once,
    concurrent_processes_share_a_new_database,
    endpoints_are_named_uniquely_and_round_trip,
    leases_claim_renew_expire_and_limit,
    concurrent_claims_never_exceed_a_limit,
    status_changes_are_logged_in_order_and_outlive_the_batch,
    batches_users_tokens_mails_and_directories_round_trip,
    event_readers_wake_when_events_are_written,
    a_prepared_user_is_not_prepared_again,
    a_postponed_user_waits_and_counts_its_tries,
    an_endpoint_limit_goes_down_on_refusals_and_up_on_good_syncs,
    dav_checkpoints_are_per_pair_and_updated_in_place,
    an_analysis_is_claimed_once_kept_per_user_and_taken_over_when_abandoned,
    download_windows_are_kept_per_source_mailbox,
);

/// What a source mailbox read in its day is kept by its key, replaced in
/// place (a download limit's state, see flytt-sync's `download.rs`).
async fn download_windows_are_kept_per_source_mailbox(db: &Database) -> Result<()> {
    use flytt_store::DownloadWindow;
    let store = db.open().await?;
    assert_eq!(
        store.download_window("kari@imap.gmail.com:993").await?,
        None
    );
    let first = DownloadWindow {
        started_ms: 1_764_900_000_000,
        bytes: 3 << 30,
    };
    store
        .save_download_window("kari@imap.gmail.com:993", first)
        .await?;
    let later = DownloadWindow {
        bytes: first.bytes + 4096,
        ..first
    };
    store
        .save_download_window("kari@imap.gmail.com:993", later)
        .await?;
    assert_eq!(
        store.download_window("kari@imap.gmail.com:993").await?,
        Some(later)
    );
    assert_eq!(store.download_window("ola@imap.gmail.com:993").await?, None);
    let reopened = db.open().await?;
    assert_eq!(
        reopened.download_window("kari@imap.gmail.com:993").await?,
        Some(later)
    );
    Ok(())
}

/// Analyze's state: one runner claims a requested analysis; results are
/// kept per user in CSV order and only by the runner that holds it; a new
/// request clears the last; a running one is not restarted while its
/// runner beats, and is taken over once it stops.
async fn an_analysis_is_claimed_once_kept_per_user_and_taken_over_when_abandoned(
    db: &Database,
) -> Result<()> {
    use flytt_batch::{AnalysisState, ProbeRate, UserAnalysis};
    let store = db.open().await?;
    started_batch(&store, &["a@example.org", "b@example.org"]).await?;
    assert!(store.analysis("b1").await?.is_none());
    assert!(
        store
            .claim_analysis("r1", ANALYSIS_ABANDONED_AFTER)
            .await?
            .is_none()
    );
    assert!(store.request_analysis("b1").await?);
    let (one, two) = tokio::join!(
        store.claim_analysis("r1", ANALYSIS_ABANDONED_AFTER),
        store.claim_analysis("r2", ANALYSIS_ABANDONED_AFTER)
    );
    let claimed: Vec<String> = [one?, two?].into_iter().flatten().collect();
    assert_eq!(claimed, vec!["b1".to_string()], "one runner claims it");
    let winner = if store.analysis_heartbeat("b1", "r1").await? {
        "r1"
    } else {
        "r2"
    };
    let loser = if winner == "r1" { "r2" } else { "r1" };
    // Running and alive: neither asked for again nor started here.
    assert!(!store.request_analysis("b1").await?);
    assert!(!store.begin_analysis("b1", "cli").await?);
    let items = store.batch_work_items("b1").await?;
    assert_eq!(items.len(), 2);
    let result = |email: &str, bytes| UserAnalysis {
        email: email.into(),
        bytes,
        ..UserAnalysis::default()
    };
    // Saved in reverse, read back in CSV order; the loser's is refused.
    assert!(
        store
            .save_user_analysis("b1", winner, items[1].user_id, &result("b@example.org", 5))
            .await?
    );
    assert!(
        store
            .save_user_analysis("b1", winner, items[0].user_id, &result("a@example.org", 7))
            .await?
    );
    assert!(
        !store
            .save_user_analysis("b1", loser, items[0].user_id, &result("a@example.org", 1))
            .await?
    );
    let probe = ProbeRate {
        messages: 3,
        bytes: 6,
        seconds: 1.0,
    };
    store
        .finish_analysis("b1", winner, Ok(Some(probe)), 20)
        .await?;
    let analysis = store.analysis("b1").await?.expect("an analysis");
    assert_eq!(analysis.run.state, AnalysisState::Done);
    assert_eq!(
        (analysis.users, analysis.analyzed, analysis.bytes),
        (2, 2, 12)
    );
    let emails: Vec<&str> = analysis
        .user_results
        .iter()
        .map(|u| u.email.as_str())
        .collect();
    assert_eq!(emails, ["a@example.org", "b@example.org"]);
    assert_eq!(analysis.run.probe, Some(probe));
    assert_eq!(analysis.run.concurrency, 20);
    assert!(analysis.run.finished_at.is_some());
    // Started anew: the last results are gone; a run that stops beating
    // is taken over by another runner.
    assert!(store.begin_analysis("b1", "cli").await?);
    let analysis = store.analysis("b1").await?.expect("an analysis");
    assert_eq!(
        (analysis.run.state, analysis.analyzed),
        (AnalysisState::Running, 0)
    );
    assert!(
        store
            .claim_analysis("r3", ANALYSIS_ABANDONED_AFTER)
            .await?
            .is_none(),
        "its runner is alive"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store
            .claim_analysis("r3", Duration::from_millis(10))
            .await?,
        Some("b1".to_string())
    );
    assert!(
        !store.analysis_heartbeat("b1", "cli").await?,
        "the CLI lost it"
    );
    store
        .finish_analysis("b1", "r3", Err("stopped".into()), 20)
        .await?;
    let analysis = store.analysis("b1").await?.expect("an analysis");
    assert_eq!(analysis.run.state, AnalysisState::Failed);
    assert_eq!(analysis.run.error.as_deref(), Some("stopped"));
    Ok(())
}

async fn dav_checkpoints_are_per_pair_and_updated_in_place(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let pair = store
        .mailbox_pair("dav:kari@a:443/", "dav:kari@b:443/", None)
        .await?;
    let other = store
        .mailbox_pair("dav:ola@a:443/", "dav:ola@b:443/", None)
        .await?;
    let mut copied = flytt_store::DavCopied {
        source_href: "/kari/kontakter/1.vcf".into(),
        source_etag: Some("\"e1\"".into()),
        target_href: "/dav/kari/kontakter/1.vcf".into(),
        target_etag: None,
        kind: "contact".into(),
    };
    store.record_dav_copied(pair, &copied).await?;
    copied.source_etag = Some("\"e2\"".into());
    copied.target_etag = Some("\"t2\"".into());
    store.record_dav_copied(pair, &copied).await?;
    assert_eq!(
        db.open().await?.dav_copied(pair).await?,
        vec![copied.clone()]
    );
    assert!(store.dav_copied(other).await?.is_empty());
    // Forgotten in its own pair only.
    store.record_dav_copied(other, &copied).await?;
    store.forget_dav_copied(pair, &copied.source_href).await?;
    assert!(store.dav_copied(pair).await?.is_empty());
    assert_eq!(store.dav_copied(other).await?, vec![copied]);

    // Sync tokens: per pair and collection, replaced in place.
    assert_eq!(store.dav_sync_token(pair, "/kari/kontakter/").await?, None);
    store
        .set_dav_sync_token(pair, "/kari/kontakter/", "tok-1")
        .await?;
    store
        .set_dav_sync_token(pair, "/kari/kontakter/", "tok-2")
        .await?;
    store
        .set_dav_sync_token(other, "/kari/kontakter/", "other")
        .await?;
    assert_eq!(
        db.open()
            .await?
            .dav_sync_token(pair, "/kari/kontakter/")
            .await?
            .as_deref(),
        Some("tok-2")
    );
    assert_eq!(store.dav_sync_token(pair, "/kari/kalender/").await?, None);
    Ok(())
}

fn state(validity: u32) -> FolderState {
    FolderState {
        source_folder: "INBOX".into(),
        target_folder: "INBOX".into(),
        source_uidvalidity: validity,
        target_uidvalidity: 7,
        highest_modseq: None,
        uid_next: None,
        deletions_synced: false,
    }
}

async fn uid_map_survives_reopen_and_resets_on_new_uidvalidity(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let pair = store.mailbox_pair("a@src:143", "a@dst:143", None).await?;
    assert_eq!(
        pair,
        store.mailbox_pair("a@src:143", "a@dst:143", None).await?
    );
    store.begin_folder(pair, &state(1)).await?;
    let copied = vec![
        CopiedMessage {
            source_uid: 1,
            target_uid: Some(10),
            flags: "\\Seen".into(),
        },
        CopiedMessage {
            source_uid: 2,
            target_uid: None,
            flags: String::new(),
        },
    ];
    store.record_copied(pair, "INBOX", &copied).await?;
    store
        .finish_folder(pair, "INBOX", Some(u64::from(u32::MAX) + 5), Some(3), true)
        .await?;
    store.begin_appending(pair, "INBOX", Some(11)).await?;
    drop(store);

    let store = db.open().await?;
    assert_eq!(store.copied(pair, "INBOX").await?, copied);
    assert_eq!(
        store.interrupted_appends(pair, "INBOX").await?,
        Some(InterruptedAppends {
            target_uid_next: Some(11)
        })
    );
    store.end_appending(pair, "INBOX").await?;
    assert_eq!(store.interrupted_appends(pair, "INBOX").await?, None);
    store.begin_folder(pair, &state(1)).await?;
    assert_eq!(
        store.copied(pair, "INBOX").await?.len(),
        2,
        "same epoch keeps the map"
    );
    // Deletion sync forgets the copies it expunged, and only those.
    store.forget_copied(pair, "INBOX", &[1]).await?;
    assert_eq!(store.copied(pair, "INBOX").await?, copied[1..].to_vec());
    store.record_copied(pair, "INBOX", &copied[..1]).await?;
    let kept = store.folder_state(pair, "INBOX").await?;
    assert_eq!(
        kept.as_ref().and_then(|s| s.highest_modseq),
        Some(u64::from(u32::MAX) + 5)
    );
    assert!(kept.is_some_and(|s| s.deletions_synced));
    store.begin_folder(pair, &state(2)).await?;
    assert!(
        store
            .folder_state(pair, "INBOX")
            .await?
            .is_some_and(|s| !s.deletions_synced && s.highest_modseq.is_none()),
        "a new epoch's marks and deletions start over"
    );
    assert!(
        store.copied(pair, "INBOX").await?.is_empty(),
        "new UIDVALIDITY drops the map"
    );
    // A folder gone from the source is forgotten with its map.
    store.record_copied(pair, "INBOX", &copied).await?;
    // What a sync need not copy again, per folder (its progress estimate).
    assert_eq!(
        store.copy_counts(pair).await?,
        std::collections::HashMap::from([("INBOX".to_string(), 2)])
    );
    let folders: Vec<String> = store
        .folder_states(pair)
        .await?
        .into_iter()
        .map(|s| s.source_folder)
        .collect();
    assert_eq!(folders, vec!["INBOX".to_string()]);
    store.forget_folder(pair, "INBOX").await?;
    assert!(store.folder_states(pair).await?.is_empty());
    assert!(store.copied(pair, "INBOX").await?.is_empty());
    Ok(())
}

/// An upgrade: state kept under an earlier version's keys is taken over
/// by the new keys once, never shared between the two.
async fn legacy_keys_are_renamed_once(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let old = store
        .mailbox_pair("a*admin@src", "a*admin@dst", None)
        .await?;
    store.begin_folder(old, &state(1)).await?;
    let legacy = || Some(("a*admin@src".to_string(), "a*admin@dst".to_string()));
    let new = store.mailbox_pair("a@src", "a@dst", legacy()).await?;
    assert_eq!(new, old, "the old state is the new pair's");
    assert!(store.folder_state(new, "INBOX").await?.is_some());
    // The old keys are gone: asking for them again makes a new, empty pair.
    let again = store
        .mailbox_pair("a*admin@src", "a*admin@dst", None)
        .await?;
    assert_ne!(again, new);
    assert_eq!(store.mailbox_pair("a@src", "a@dst", legacy()).await?, new);
    Ok(())
}

/// Regression: several `flytt sync` processes on one new data directory
/// raced in the migration ("table already exists") and failed writes with
/// "database is locked". PostgreSQL: several runners start at once.
async fn concurrent_processes_share_a_new_database(db: &Database) -> Result<()> {
    let mut tasks = Vec::new();
    for user in 0..8 {
        let store = db.place().open();
        tasks.push(async move {
            let store = store.await?;
            let pair = store
                .mailbox_pair(&format!("u{user}@src"), &format!("u{user}@dst"), None)
                .await?;
            store.begin_folder(pair, &state(1)).await?;
            for batch in 0..20u32 {
                let rows: Vec<CopiedMessage> = (0..50)
                    .map(|i| CopiedMessage {
                        source_uid: batch * 50 + i + 1,
                        target_uid: Some(batch * 50 + i + 1),
                        flags: String::new(),
                    })
                    .collect();
                store.record_copied(pair, "INBOX", &rows).await?;
            }
            Ok::<usize, Error>(store.copied(pair, "INBOX").await?.len())
        });
    }
    for copied in futures_join_all(tasks).await {
        assert_eq!(copied?, 1000);
    }
    Ok(())
}

/// Runs the futures concurrently on the runtime's threads.
async fn futures_join_all<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

async fn endpoints_are_named_uniquely_and_round_trip(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let mut endpoint = Endpoint {
        name: "gammel".into(),
        url: "imaps://mail.example.org:993".into(),
        allow_plaintext: true,
        ca_file: Some("/etc/ca.pem".into()),
        tls_fingerprints: vec![format!("sha256:{}", "ab".repeat(32))],
        admin_user: Some("admin".into()),
        admin_mode: AdminMode::Plain,
        admin_password_sealed: Some("v1:abcd:xyz".into()),
        max_concurrent_migrations: 20,
        max_concurrent_incremental_syncs: 10,
        connections_per_user: 3,
        compression: flytt_store::Compression::Always,
        download_limit: flytt_store::DownloadLimit::Unlimited,
        sieve_url: None,
        dav_url: Some("https://dav.example.org/".into()),
        directory: None,
        oauth: None,
        effective_migrations: None,
    };
    store.create_endpoint(&endpoint).await?;
    assert!(matches!(
        store.create_endpoint(&endpoint).await,
        Err(Error::EndpointExists(name)) if name == "gammel"
    ));
    assert_eq!(store.endpoint("gammel").await?, endpoint);
    endpoint.max_concurrent_migrations = 5;
    endpoint.connections_per_user = 1;
    endpoint.compression = flytt_store::Compression::Never;
    endpoint.download_limit = flytt_store::DownloadLimit::PerDay(2500 << 20);
    endpoint.allow_plaintext = false;
    endpoint.directory = Some("nowhere".into());
    assert!(matches!(
        store.update_endpoint(&endpoint).await,
        Err(Error::NoSuchDirectory(name)) if name == "nowhere"
    ));
    endpoint.directory = None;
    endpoint.oauth = Some(flytt_store::EndpointOAuth {
        mechanism: flytt_store::OAuthMechanism::Oauthbearer,
        token_url: "https://oauth2.googleapis.com/token".into(),
        client_id: "1234.apps.googleusercontent.com".into(),
        client_secret_sealed: Some("v1:abcd:secret".into()),
        scope: Some("https://mail.google.com/".into()),
        service_account_sealed: None,
    });
    store.update_endpoint(&endpoint).await?;
    assert_eq!(store.endpoints().await?, vec![endpoint.clone()]);
    endpoint.download_limit = flytt_store::DownloadLimit::Auto;
    store.update_endpoint(&endpoint).await?;
    assert_eq!(store.endpoints().await?, vec![endpoint]);
    store.remove_endpoint("gammel").await?;
    assert!(matches!(
        store.endpoint("gammel").await,
        Err(Error::NoSuchEndpoint(_))
    ));
    assert!(matches!(
        store.remove_endpoint("gammel").await,
        Err(Error::NoSuchEndpoint(_))
    ));
    Ok(())
}

fn endpoint(name: &str) -> Endpoint {
    Endpoint::new(name, "imaps://mail.example.org:993")
}

fn user(email: &str, line: u64) -> NewBatchUser {
    NewBatchUser {
        email: email.into(),
        csv_line: line,
        overrides: UserOverrides::default(),
        user_name: None,
        password_sealed: None,
        target_user_name: None,
        target_password_sealed: None,
        refresh_token_sealed: None,
    }
}

/// Batch "b1" from endpoint "old" to "new" with these users (CSV lines 2
/// on), started; their ids.
async fn started_batch(store: &Store, users: &[&str]) -> Result<Vec<i64>> {
    store.create_endpoint(&endpoint("old")).await?;
    store.create_endpoint(&endpoint("new")).await?;
    store
        .create_batch(&NewBatch {
            name: "b1".into(),
            batch_type: BatchType::Imap,
            source_endpoint: "old".into(),
            target_endpoint: "new".into(),
            parameters: BatchParameters::default(),
            users: (0u64..)
                .zip(users)
                .map(|(i, email)| user(email, i + 2))
                .collect(),
        })
        .await?;
    store.set_batch_status("b1", BatchStatus::Syncing).await?;
    let items = store.startable_users("b1", Startable::Initial, 100).await?;
    Ok(items.iter().map(|item| item.user_id).collect())
}

fn claim<'a>(user_id: i64, runner: &'a str, max: u32, lease: Duration) -> Claim<'a> {
    Claim {
        user_id,
        runner,
        from: UserStatus::Queued,
        to: UserStatus::Syncing,
        lease,
        incremental: false,
        limits: [
            EndpointLimit {
                endpoint: "old",
                max_migrations: max,
                max_incremental: max,
            },
            EndpointLimit {
                endpoint: "new",
                max_migrations: 20,
                max_incremental: 10,
            },
        ],
    }
}

/// Leases: a claim is a compare-and-set that also counts every live lease
/// against the endpoints' limits; only the holder ends a user; only an
/// expired lease is taken back.
async fn leases_claim_renew_expire_and_limit(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let ids = started_batch(&store, &["a@example.org", "b@example.org"]).await?;
    let (a, b) = (ids[0], ids[1]);
    store.register_runner("r1", "host", 1).await?;
    store.register_runner("r2", "host", 2).await?;
    let lease = Duration::from_secs(30);
    assert_eq!(
        store.claim_user(&claim(a, "r1", 1, lease)).await?,
        ClaimOutcome::Claimed
    );
    // A leased user is no longer startable by anyone.
    let startable = store.startable_users("b1", Startable::Initial, 100).await?;
    assert_eq!(
        startable.iter().map(|i| i.user_id).collect::<Vec<_>>(),
        vec![b]
    );
    // The same user again: held (its status moved on, and it is leased).
    assert_eq!(
        store.claim_user(&claim(a, "r2", 5, lease)).await?,
        ClaimOutcome::Taken
    );
    // Another user: the endpoint's one slot is r1's, across runners.
    assert_eq!(
        store.claim_user(&claim(b, "r2", 1, lease)).await?,
        ClaimOutcome::NoSlot
    );
    assert_eq!(store.live_leases().await?.get("old"), Some(&(1, 0)));
    assert_eq!(store.heartbeat("r1", lease).await?, vec![a]);
    assert!(store.heartbeat("r2", lease).await?.is_empty());
    // A live lease is not taken back.
    assert_eq!(
        store
            .take_back_expired(UserStatus::Syncing, UserStatus::Queued)
            .await?,
        0
    );
    // Only the holder records the end.
    assert!(
        !store
            .finish_user(
                a,
                "r2",
                UserStatus::Synced,
                None,
                Some(&UserStatistics::default())
            )
            .await?
    );
    let runners = store.runners().await?;
    assert_eq!(runners.iter().map(|r| r.users_held).sum::<u64>(), 1);

    // r1 dies: its lease ends, the user goes back, r2 takes it, and r1 can
    // neither renew nor record it any more.
    store.expire_runner("r1").await?;
    assert_eq!(
        store
            .take_back_expired(UserStatus::Syncing, UserStatus::Queued)
            .await?,
        1
    );
    assert_eq!(
        store.claim_user(&claim(a, "r2", 1, lease)).await?,
        ClaimOutcome::Claimed
    );
    assert!(store.heartbeat("r1", lease).await?.is_empty());
    assert!(
        !store
            .finish_user(
                a,
                "r1",
                UserStatus::Synced,
                None,
                Some(&UserStatistics::default())
            )
            .await?
    );
    assert!(
        store
            .finish_user(
                a,
                "r2",
                UserStatus::Synced,
                None,
                Some(&UserStatistics::default())
            )
            .await?
    );
    assert!(store.live_leases().await?.is_empty());
    let users = store.batch_users(Some("b1")).await?;
    assert_eq!(users[0].status, UserStatus::Synced);
    assert!(users[0].last_synced_at.is_some());
    assert_eq!(store.runners().await?.len(), 1, "r1 is stopped");

    // A short lease that is not renewed expires by the database's clock.
    store.register_runner("r3", "host", 3).await?;
    assert_eq!(
        store
            .claim_user(&claim(b, "r3", 5, Duration::from_millis(200)))
            .await?,
        ClaimOutcome::Claimed
    );
    assert_eq!(
        store
            .take_back_expired(UserStatus::Syncing, UserStatus::Queued)
            .await?,
        0
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.heartbeat("r3", lease).await?.is_empty(), "too late");
    assert_eq!(
        store
            .take_back_expired(UserStatus::Syncing, UserStatus::Queued)
            .await?,
        1
    );
    let log = store
        .events(&EventFilter {
            email: Some("b@example.org".into()),
            ..EventFilter::default()
        })
        .await?;
    assert_eq!(
        log.last().and_then(|e| e.message.as_deref()),
        Some("Syncing -> Queued: the lease expired")
    );
    Ok(())
}

/// Many runners claiming at once, through their own connections: the
/// endpoint's limit holds, and every user is claimed by exactly one.
async fn concurrent_claims_never_exceed_a_limit(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let emails: Vec<String> = (0..12).map(|i| format!("u{i}@example.org")).collect();
    let names: Vec<&str> = emails.iter().map(String::as_str).collect();
    let ids = started_batch(&store, &names).await?;
    let mut runners = Vec::new();
    for r in 0..6 {
        let store = db.open().await?;
        let ids = ids.clone();
        runners.push(async move {
            let runner = format!("r{r}");
            store.register_runner(&runner, "host", r).await?;
            let mut claimed = Vec::new();
            for id in ids {
                let outcome = store
                    .claim_user(&claim(id, &runner, 3, Duration::from_secs(30)))
                    .await?;
                if outcome == ClaimOutcome::Claimed {
                    claimed.push(id);
                }
            }
            Ok::<Vec<i64>, Error>(claimed)
        });
    }
    let mut claimed = Vec::new();
    for result in futures_join_all(runners).await {
        claimed.extend(result?);
    }
    assert_eq!(claimed.len(), 3, "the limit across runners: {claimed:?}");
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), 3, "each user once");
    assert_eq!(store.live_leases().await?.get("old"), Some(&(3, 0)));
    Ok(())
}

async fn status_changes_are_logged_in_order_and_outlive_the_batch(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let ids = started_batch(&store, &["kari@example.org", "ola@example.org"]).await?;
    let kari = ids[0];
    // Setting the same status again is no change and no event.
    store.set_batch_status("b1", BatchStatus::Syncing).await?;
    store
        .set_user_status(kari, UserStatus::Syncing, None, None)
        .await?;
    store
        .set_user_status(kari, UserStatus::Failed, Some("wrong password"), None)
        .await?;
    assert_eq!(
        store
            .move_users("b1", UserStatus::Failed, UserStatus::Queued)
            .await?,
        1
    );
    let batch = store.batch("b1").await?;
    assert!(batch.started_at.is_some() && batch.completed_at.is_none());

    let all = store.events(&EventFilter::default()).await?;
    let described: Vec<(&str, Option<&str>, Option<&str>)> = all
        .iter()
        .map(|e| (e.kind.as_str(), e.email.as_deref(), e.message.as_deref()))
        .collect();
    assert_eq!(
        described,
        vec![
            (
                "BatchCreated",
                None,
                Some("imap batch from old to new with 2 users")
            ),
            ("BatchStatus", None, Some("Created -> Syncing")),
            (
                "UserStatus",
                Some("kari@example.org"),
                Some("Queued -> Syncing")
            ),
            (
                "UserStatus",
                Some("kari@example.org"),
                Some("Syncing -> Failed: wrong password")
            ),
            (
                "UserStatus",
                Some("kari@example.org"),
                Some("Failed -> Queued")
            ),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    // RFC 3339, UTC, with milliseconds, on both backends.
    assert!(
        all.iter()
            .all(|e| e.at.len() == 24 && e.at.ends_with('Z') && &e.at[10..11] == "T"),
        "{:?}",
        all[0].at
    );

    let after = store
        .events(&EventFilter {
            after: Some(all[2].id),
            email: Some("KARI@example.org".into()),
            ..EventFilter::default()
        })
        .await?;
    assert_eq!(after.len(), 2);
    let newest = store
        .events(&EventFilter {
            limit: Some(1),
            ..EventFilter::default()
        })
        .await?;
    assert_eq!(newest, vec![all[4].clone()]);

    store.remove_batch("b1").await?;
    let log = store
        .events(&EventFilter {
            batch: Some("b1".into()),
            ..EventFilter::default()
        })
        .await?;
    assert_eq!(log.len(), 6);
    assert_eq!(log[5].kind, "BatchRemoved");
    Ok(())
}

/// Every kind of row the store keeps, written and read back.
async fn batches_users_tokens_mails_and_directories_round_trip(db: &Database) -> Result<()> {
    let store = db.open().await?;
    store
        .create_directory(&StoredDirectory {
            name: "ldap".into(),
            settings: "{\"url\":\"ldap://x\"}".into(),
            bind_password_sealed: Some("v1:k:sealed".into()),
        })
        .await?;
    assert!(matches!(
        store
            .create_directory(&StoredDirectory {
                name: "ldap".into(),
                settings: "{}".into(),
                bind_password_sealed: None,
            })
            .await,
        Err(Error::DirectoryExists(_))
    ));
    let mut source = endpoint("old");
    source.directory = Some("ldap".into());
    store.create_endpoint(&source).await?;
    store.create_endpoint(&endpoint("new")).await?;
    assert!(matches!(
        store.remove_directory("ldap").await,
        Err(Error::DirectoryInUse(_))
    ));
    assert_eq!(store.directories().await?.len(), 1);
    // A change keeps the sealed password unless it brings one.
    let mut changed = StoredDirectory {
        name: "ldap".into(),
        settings: "{\"url\":\"ldaps://y\"}".into(),
        bind_password_sealed: None,
    };
    store.change_directory(&changed).await?;
    let stored = store.directory("ldap").await?;
    assert_eq!(stored.settings, changed.settings);
    assert_eq!(stored.bind_password_sealed.as_deref(), Some("v1:k:sealed"));
    changed.bind_password_sealed = Some("v1:k:new".into());
    store.change_directory(&changed).await?;
    assert_eq!(
        store
            .directory("ldap")
            .await?
            .bind_password_sealed
            .as_deref(),
        Some("v1:k:new")
    );
    changed.name = "ingen".into();
    assert!(matches!(
        store.change_directory(&changed).await,
        Err(Error::NoSuchDirectory(_))
    ));

    let mut kari = user("kari@example.org", 2);
    kari.password_sealed = Some("v1:k:pw".into());
    kari.user_name = Some("kari".into());
    let batch = NewBatch {
        name: "b1".into(),
        batch_type: BatchType::Imap,
        source_endpoint: "old".into(),
        target_endpoint: "new".into(),
        parameters: BatchParameters {
            verify: true,
            ..BatchParameters::default()
        },
        users: vec![kari],
    };
    store.create_batch(&batch).await?;
    assert!(matches!(
        store.create_batch(&batch).await,
        Err(Error::BatchExists(_))
    ));
    assert!(matches!(
        store.remove_endpoint("old").await,
        Err(Error::EndpointInUse(_))
    ));
    store
        .add_batch_users("b1", &[user("ola@example.org", 3)])
        .await?;
    assert_eq!(store.active_users().await?.len(), 2);
    store.set_batch_status("b1", BatchStatus::Syncing).await?;
    let items = store.startable_users("b1", Startable::Initial, 100).await?;
    assert_eq!(items.len(), 2);
    assert_eq!(
        store
            .startable_users("b1", Startable::Initial, 1)
            .await?
            .len(),
        1,
        "limited"
    );
    assert_eq!(items[0].password_sealed.as_deref(), Some("v1:k:pw"));
    assert_eq!(items[0].source.directory.as_deref(), Some("ldap"));
    assert_eq!(items[0].seconds_since_sync, None);
    store.set_user_validated(items[0].user_id).await?;
    store
        .set_user_progress(
            items[0].user_id,
            Some(&flytt_batch::SyncProgress {
                folder: "INBOX".into(),
                ..flytt_batch::SyncProgress::default()
            }),
        )
        .await?;
    let stats = UserStatistics {
        messages_copied: 3,
        bytes_copied: 3_000,
        issues: vec![StatisticsIssue {
            kind: "large".into(),
            folder: "INBOX".into(),
            uid: Some(7),
            reason: "over the LargeItemLimit".into(),
            date: Some("2024-03-01T10:00:00+01:00".into()),
            subject: Some("Tilbud på ferie".into()),
        }],
        ..UserStatistics::default()
    };
    store
        .set_user_status(items[0].user_id, UserStatus::Synced, None, Some(&stats))
        .await?;
    let due =
        |interval_secs| store.startable_users("b1", Startable::Incremental { interval_secs }, 100);
    assert!(due(3_600).await?.is_empty(), "not due for an hour");
    let items = due(0).await?;
    assert_eq!(items.len(), 1);
    let since = items[0].seconds_since_sync.expect("synced");
    assert!((0..5).contains(&since), "{since}");
    assert!(items[0].validated);
    let users = store.batch_users(None).await?;
    assert_eq!(users[0].stats.as_ref(), Some(&stats));
    assert_eq!(users[0].progress, None, "cleared at the end");
    store.set_batch_status("b1", BatchStatus::Synced).await?;
    store.set_batch_status("b1", BatchStatus::Completed).await?;
    let summary = store.batch("b1").await?;
    assert_eq!(summary.status, BatchStatus::Completed);
    assert_eq!(
        (summary.totals.messages_copied, summary.totals.bytes_copied),
        (3, 3_000),
        "totals are sums of the stored statistics"
    );
    assert!(summary.initial_sync_done_at.is_some() && summary.completed_at.is_some());
    assert_eq!(
        summary.user_counts,
        vec![(UserStatus::Queued, 1), (UserStatus::Synced, 1)]
    );
    assert!(store.active_users().await?.is_empty());

    assert!(store.claim_mail("b1", BatchMail::Status).await?);
    assert!(!store.claim_mail("b1", BatchMail::Status).await?);
    store.release_mail("b1", BatchMail::Status).await?;
    assert!(store.claim_mail("b1", BatchMail::Status).await?);

    store.create_token("ci", &"0".repeat(64)).await?;
    assert!(matches!(
        store.create_token("ci", &"1".repeat(64)).await,
        Err(Error::TokenExists(_))
    ));
    assert_eq!(
        store.token_by_hash(&"0".repeat(64)).await?.as_deref(),
        Some("ci")
    );
    assert_eq!(store.token_by_hash(&"2".repeat(64)).await?, None);
    let tokens = store.tokens().await?;
    assert!(tokens[0].last_used_at.is_some());
    store.remove_token("ci").await?;
    assert!(matches!(
        store.remove_token("ci").await,
        Err(Error::NoSuchToken(_))
    ));
    Ok(())
}

/// A reader of the event log is woken by a write: in the same process on
/// both backends, and on PostgreSQL from another connection (another
/// runner, another machine) by LISTEN/NOTIFY.
async fn event_readers_wake_when_events_are_written(db: &Database) -> Result<()> {
    let reader = db.open().await?;
    let writer = match db {
        Database::Sqlite(_) => reader.clone(),
        Database::Postgres(_) => db.open().await?,
    };
    let mut changes = reader.changes();
    // The listener connects in the background: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    changes.borrow_and_update();
    started_batch(&writer, &["a@example.org"]).await?;
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("woken within 5 s")
        .expect("the store is alive");
    let events = reader.events(&EventFilter::default()).await?;
    assert_eq!(events.len(), 2, "created and started: {events:?}");
    Ok(())
}

/// A preparation's lease (the status unchanged) is taken only on a user
/// not prepared yet: a runner that read its candidates before another
/// runner prepared and released one does not prepare it again.
async fn a_prepared_user_is_not_prepared_again(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let ids = started_batch(&store, &["a@example.org", "b@example.org"]).await?;
    let preparation = |user_id| {
        let mut claim = claim(user_id, "r1", 5, Duration::from_secs(30));
        claim.to = UserStatus::Queued;
        claim
    };
    store.register_runner("r1", "host", 1).await?;
    assert_eq!(
        store.claim_user(&preparation(ids[0])).await?,
        ClaimOutcome::Claimed
    );
    store.set_user_validated(ids[0]).await?;
    store.release_user(ids[0], "r1").await?;
    assert_eq!(
        store.claim_user(&preparation(ids[0])).await?,
        ClaimOutcome::Taken
    );
    assert_eq!(
        store.claim_user(&preparation(ids[1])).await?,
        ClaimOutcome::Claimed
    );
    // The prepared user's initial sync is claimed as usual.
    assert_eq!(
        store
            .claim_user(&claim(ids[0], "r1", 5, Duration::from_secs(30)))
            .await?,
        ClaimOutcome::Claimed
    );
    Ok(())
}

/// A user given back after a transient error is not startable until its
/// wait is over; it says why it waits; its tries and time without
/// progress are counted until it progresses or ends.
async fn a_postponed_user_waits_and_counts_its_tries(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let ids = started_batch(&store, &["a@example.org", "b@example.org"]).await?;
    store.register_runner("r1", "host", 1).await?;
    let postpone = |wait_ms: u64, progressed: bool| flytt_store::Postponement {
        wait: Duration::from_millis(wait_ms),
        reason: "source refused the connection",
        progressed,
    };
    assert_eq!(
        store
            .claim_user(&claim(ids[0], "r1", 5, Duration::from_secs(30)))
            .await?,
        ClaimOutcome::Claimed
    );
    let copied = UserStatistics {
        messages_copied: 7,
        ..UserStatistics::default()
    };
    assert!(
        store
            .postpone_user(
                ids[0],
                "r1",
                UserStatus::Queued,
                Some(&copied),
                &postpone(60_000, false)
            )
            .await?
    );
    let user = store.user_by_email("a@example.org").await?;
    assert_eq!(user.status, UserStatus::Queued);
    assert_eq!(user.runner, None, "the slot is given back");
    assert_eq!(user.stats.map(|s| s.messages_copied), Some(7));
    let waiting = user.waiting.expect("waiting");
    assert_eq!(waiting.reason, "source refused the connection");
    assert!((55..=60).contains(&waiting.seconds_left), "{waiting:?}");
    let startable = store.startable_users("b1", Startable::Initial, 10).await?;
    assert_eq!(
        startable.iter().map(|i| i.user_id).collect::<Vec<_>>(),
        vec![ids[1]],
        "a waiting user is not started"
    );
    let events = store
        .events(&flytt_store::EventFilter {
            batch: Some("b1".into()),
            email: Some("a@example.org".into()),
            after: None,
            limit: Some(10),
        })
        .await?;
    assert!(
        events.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("waiting 60 s: source refused the connection"))),
        "{events:?}"
    );

    // A second try without progress after the wait: counted.
    let claim_b = claim(ids[1], "r1", 5, Duration::from_secs(30));
    assert_eq!(store.claim_user(&claim_b).await?, ClaimOutcome::Claimed);
    store
        .postpone_user(ids[1], "r1", UserStatus::Queued, None, &postpone(0, false))
        .await?;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let item = store.startable_users("b1", Startable::Initial, 10).await?;
    assert_eq!(item.len(), 1);
    assert_eq!((item[0].retries, item[0].stalled_ms.is_some()), (1, true));
    assert_eq!(store.claim_user(&claim_b).await?, ClaimOutcome::Claimed);
    store
        .postpone_user(ids[1], "r1", UserStatus::Queued, None, &postpone(0, false))
        .await?;
    let item = store.startable_users("b1", Startable::Initial, 10).await?;
    assert_eq!(item[0].retries, 2);
    assert!(item[0].stalled_ms.is_some_and(|ms| ms >= 30), "{item:?}");
    // Progress starts the count over; a good end clears it all.
    assert_eq!(store.claim_user(&claim_b).await?, ClaimOutcome::Claimed);
    store
        .postpone_user(ids[1], "r1", UserStatus::Queued, None, &postpone(0, true))
        .await?;
    let item = store.startable_users("b1", Startable::Initial, 10).await?;
    assert_eq!(item[0].retries, 1);
    assert!(item[0].stalled_ms.is_some_and(|ms| ms < 30), "{item:?}");
    assert_eq!(store.claim_user(&claim_b).await?, ClaimOutcome::Claimed);
    store
        .finish_user(ids[1], "r1", UserStatus::Synced, None, None)
        .await?;
    let user = store.user_by_email("b@example.org").await?;
    assert_eq!(user.waiting, None);
    Ok(())
}

/// An endpoint's effective limit: three quarters on a refusal, at most once
/// per cooldown; one more per good sync after the cooldown, up to the
/// configured maximum, where it is gone.
async fn an_endpoint_limit_goes_down_on_refusals_and_up_on_good_syncs(db: &Database) -> Result<()> {
    let store = db.open().await?;
    let mut endpoint = endpoint("busy");
    endpoint.max_concurrent_migrations = 10;
    store.create_endpoint(&endpoint).await?;
    let cooldown = Duration::from_millis(200);
    assert_eq!(store.lower_endpoint_limit("busy", cooldown).await?, Some(7));
    assert_eq!(
        store.lower_endpoint_limit("busy", cooldown).await?,
        None,
        "once per cooldown"
    );
    assert_eq!(store.endpoint("busy").await?.migration_limit(), 7);
    store.raise_endpoint_limit("busy", cooldown).await?;
    assert_eq!(
        store.endpoint("busy").await?.migration_limit(),
        7,
        "not raised within the cooldown"
    );
    tokio::time::sleep(cooldown).await;
    for _ in 0..2 {
        assert!(
            store
                .lower_endpoint_limit("busy", Duration::ZERO)
                .await?
                .is_some()
        );
    }
    assert_eq!(store.endpoint("busy").await?.migration_limit(), 3);
    for _ in 0..5 {
        assert!(
            store
                .lower_endpoint_limit("busy", Duration::ZERO)
                .await?
                .is_some()
        );
    }
    assert_eq!(
        store.endpoint("busy").await?.migration_limit(),
        1,
        "never 0"
    );
    for expected in 2..=9 {
        store.raise_endpoint_limit("busy", Duration::ZERO).await?;
        assert_eq!(store.endpoint("busy").await?.migration_limit(), expected);
    }
    store.raise_endpoint_limit("busy", Duration::ZERO).await?;
    let endpoint = store.endpoint("busy").await?;
    assert_eq!(
        (endpoint.effective_migrations, endpoint.migration_limit()),
        (None, 10)
    );
    Ok(())
}
