//! flytt's persistent state. The store knows nothing of IMAP: it keeps
//! numbers and names that the sync engine gives it (ARCHITECTURE.md,
//! invariant 2). SQLite is the embedded default; its file lives in the data
//! directory.
//!
//! Writes use WAL and a busy timeout so that a CLI command and a running
//! job can share the file. The public methods are the interface a
//! PostgreSQL backend will implement too.

mod batches;
mod directories;
mod endpoints;
mod events;
mod leases;
mod mails;
mod sync_state;
mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

pub use batches::{BatchSummary, BatchUser, NewBatch, NewBatchUser, WorkItem};
pub use directories::StoredDirectory;
pub use endpoints::Endpoint;
pub use events::{Event, EventFilter, kind as event_kind};
pub use leases::{Claim, ClaimOutcome, EndpointLimit, RunnerInfo};
pub use mails::BatchMail;
pub use sync_state::{CopiedMessage, FolderState, InterruptedAppends, PairId};
pub use tokens::ApiToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("corrupt value in column {column}: {value}")]
    Corrupt { column: &'static str, value: i64 },
    #[error("an endpoint named {0:?} exists already")]
    EndpointExists(String),
    #[error("no endpoint named {0:?}")]
    NoSuchEndpoint(String),
    #[error("endpoint {0:?} is used by a batch; remove the batch first")]
    EndpointInUse(String),
    #[error("a batch named {0:?} exists already")]
    BatchExists(String),
    #[error("no batch named {0:?}")]
    NoSuchBatch(String),
    #[error("no user {0:?} in any batch")]
    NoSuchUser(String),
    #[error("a directory named {0:?} exists already")]
    DirectoryExists(String),
    #[error("no directory named {0:?}")]
    NoSuchDirectory(String),
    #[error("directory {0:?} is used by an endpoint; change the endpoint first")]
    DirectoryInUse(String),
    #[error("a token named {0:?} exists already")]
    TokenExists(String),
    #[error("no token named {0:?}")]
    NoSuchToken(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The state store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

fn to_u32(column: &'static str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Corrupt { column, value })
}

impl Store {
    /// Whether `data_dir` holds a store already.
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join("flytt.db").exists()
    }

    /// Opens (creating if needed) `flytt.db` in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join("flytt.db");
        // Several flytt processes may open a new data directory at once;
        // migrations must run one at a time.
        let lock_path = data_dir.join("flytt.db.lock");
        let lock_file = lock_path.clone();
        // Waiting for the lock blocks; keep it off the async workers.
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_file)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| Error::Open {
            path: lock_path.display().to_string(),
            source: sqlx::Error::Io(e),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let store = Self::connect(options, path.display().to_string()).await;
        drop(lock);
        store
    }

    /// A private in-memory store (tests, dry runs).
    pub async fn in_memory() -> Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| Error::Open {
                path: ":memory:".into(),
                source,
            })?
            .foreign_keys(true);
        Self::connect(options, ":memory:".into()).await
    }

    async fn connect(options: SqliteConnectOptions, path: String) -> Result<Store> {
        // Waiting for another process's write is normal here, not an alert.
        let options = options
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Info, Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            // One writer at a time is SQLite's model anyway; readers share.
            .max_connections(if path == ":memory:" { 1 } else { 4 })
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path, source })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Starts a transaction that takes the write lock at once. A deferred
    /// transaction that reads first and writes later fails with "database is
    /// locked" when another process wrote meanwhile (WAL snapshots cannot be
    /// upgraded); an immediate one waits its turn within the busy timeout.
    pub(crate) async fn write_transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(validity: u32) -> FolderState {
        FolderState {
            source_folder: "INBOX".into(),
            target_folder: "INBOX".into(),
            source_uidvalidity: validity,
            target_uidvalidity: 7,
            highest_modseq: None,
            uid_next: None,
        }
    }

    #[tokio::test]
    async fn uid_map_survives_reopen_and_resets_on_new_uidvalidity() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Open {
            path: "tmp".into(),
            source: sqlx::Error::Io(e),
        })?;
        let store = Store::open(dir.path()).await?;
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
            .finish_folder(pair, "INBOX", Some(u64::from(u32::MAX) + 5), Some(3))
            .await?;
        drop(store);

        let store = Store::open(dir.path()).await?;
        assert_eq!(store.copied(pair, "INBOX").await?, copied);
        store.begin_folder(pair, &state(1)).await?;
        assert_eq!(
            store.copied(pair, "INBOX").await?.len(),
            2,
            "same epoch keeps the map"
        );
        assert_eq!(
            store
                .folder_state(pair, "INBOX")
                .await?
                .and_then(|s| s.highest_modseq),
            Some(u64::from(u32::MAX) + 5)
        );
        store.begin_folder(pair, &state(2)).await?;
        assert!(
            store.copied(pair, "INBOX").await?.is_empty(),
            "new UIDVALIDITY drops the map"
        );
        Ok(())
    }

    /// An upgrade: state kept under an earlier version's keys is taken over
    /// by the new keys once, never shared between the two.
    #[tokio::test]
    async fn legacy_keys_are_renamed_once() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Open {
            path: "tmp".into(),
            source: sqlx::Error::Io(e),
        })?;
        let store = Store::open(dir.path()).await?;
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
    /// raced in the migration ("table already exists") and failed writes
    /// with "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_processes_share_a_new_data_dir() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Open {
            path: "tmp".into(),
            source: sqlx::Error::Io(e),
        })?;
        let mut tasks = Vec::new();
        for user in 0..8 {
            let path = dir.path().to_path_buf();
            tasks.push(tokio::spawn(async move {
                let store = Store::open(&path).await?;
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
            }));
        }
        for task in tasks {
            let copied = task.await.map_err(|e| Error::Open {
                path: e.to_string(),
                source: sqlx::Error::PoolClosed,
            })??;
            assert_eq!(copied, 1000);
        }
        Ok(())
    }

    #[tokio::test]
    async fn endpoints_are_named_uniquely_and_round_trip() -> Result<()> {
        let store = Store::in_memory().await?;
        let mut endpoint = Endpoint {
            name: "gammel".into(),
            url: "imaps://mail.example.org:993".into(),
            allow_plaintext: false,
            ca_file: None,
            tls_fingerprints: vec![format!("sha256:{}", "ab".repeat(32))],
            admin_user: Some("admin".into()),
            admin_mode: "master".into(),
            admin_password_sealed: Some("v1:abcd:xyz".into()),
            max_concurrent_migrations: 20,
            max_concurrent_incremental_syncs: 10,
            sieve_url: None,
            directory: None,
        };
        store.create_endpoint(&endpoint).await?;
        assert!(matches!(
            store.create_endpoint(&endpoint).await,
            Err(Error::EndpointExists(name)) if name == "gammel"
        ));
        assert_eq!(store.endpoint("gammel").await?, endpoint);
        endpoint.max_concurrent_migrations = 5;
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
            overrides: "{}".into(),
            user_name: None,
            password_sealed: None,
            target_user_name: None,
            target_password_sealed: None,
        }
    }

    /// Batch "b1" from endpoint "old" to "new" with two users (CSV lines 2
    /// and 3), started; their ids.
    async fn started_batch(store: &Store, users: [&str; 2]) -> Result<(i64, i64)> {
        store.create_endpoint(&endpoint("old")).await?;
        store.create_endpoint(&endpoint("new")).await?;
        store
            .create_batch(&NewBatch {
                name: "b1".into(),
                batch_type: "imap".into(),
                source_endpoint: "old".into(),
                target_endpoint: "new".into(),
                parameters: "{}".into(),
                users: vec![user(users[0], 2), user(users[1], 3)],
            })
            .await?;
        store.set_batch_status("b1", "Syncing").await?;
        let items = store.work_items(&["Syncing"]).await?;
        Ok((items[0].user_id, items[1].user_id))
    }

    /// Leases: a claim is a compare-and-set that also counts every live
    /// lease against the endpoints' limits; only the holder ends a user;
    /// only an expired lease is taken back.
    #[tokio::test]
    async fn leases_claim_renew_expire_and_limit() -> Result<()> {
        let store = Store::in_memory().await?;
        let (a, b) = started_batch(&store, ["a@example.org", "b@example.org"]).await?;
        store.register_runner("r1", "host", 1).await?;
        store.register_runner("r2", "host", 2).await?;
        let lease = std::time::Duration::from_secs(30);
        let claim = |user_id, runner, max| Claim {
            user_id,
            runner,
            from: "Queued",
            to: "Syncing",
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
        };
        assert_eq!(
            store.claim_user(&claim(a, "r1", 1)).await?,
            ClaimOutcome::Claimed
        );
        // The same user again: held (its status moved on, and it is leased).
        assert_eq!(
            store.claim_user(&claim(a, "r2", 5)).await?,
            ClaimOutcome::Taken
        );
        // Another user: the endpoint's one slot is r1's, across runners.
        assert_eq!(
            store.claim_user(&claim(b, "r2", 1)).await?,
            ClaimOutcome::NoSlot
        );
        assert_eq!(store.live_leases().await?.get("old"), Some(&(1, 0)));
        assert_eq!(store.heartbeat("r1", lease).await?, vec![a]);
        assert!(store.heartbeat("r2", lease).await?.is_empty());
        // A live lease is not taken back.
        assert_eq!(store.take_back_expired("Syncing", "Queued").await?, 0);
        // Only the holder records the end.
        assert!(
            !store
                .finish_user(a, "r2", "Synced", None, Some("{}"))
                .await?
        );
        let runners = store.runners().await?;
        assert_eq!(runners.iter().map(|r| r.users_held).sum::<u64>(), 1);

        // r1 dies: its lease ends, the user goes back, r2 takes it, and r1
        // can neither renew nor record it any more.
        store.expire_runner("r1").await?;
        assert_eq!(store.take_back_expired("Syncing", "Queued").await?, 1);
        assert_eq!(
            store.claim_user(&claim(a, "r2", 1)).await?,
            ClaimOutcome::Claimed
        );
        assert!(store.heartbeat("r1", lease).await?.is_empty());
        assert!(
            !store
                .finish_user(a, "r1", "Synced", None, Some("{}"))
                .await?
        );
        assert!(
            store
                .finish_user(a, "r2", "Synced", None, Some("{}"))
                .await?
        );
        assert!(store.live_leases().await?.is_empty());
        let users = store.batch_users(Some("b1")).await?;
        assert_eq!(users[0].status, "Synced");
        assert_eq!(store.runners().await?.len(), 1, "r1 is stopped");
        Ok(())
    }

    #[tokio::test]
    async fn status_changes_are_logged_in_order_and_outlive_the_batch() -> Result<()> {
        let store = Store::in_memory().await?;
        let (kari, _) = started_batch(&store, ["kari@example.org", "ola@example.org"]).await?;
        // Setting the same status again is no change and no event.
        store.set_batch_status("b1", "Syncing").await?;
        store.set_user_status(kari, "Syncing", None, None).await?;
        store
            .set_user_status(kari, "Failed", Some("wrong password"), None)
            .await?;
        assert_eq!(store.move_users("b1", "Failed", "Queued").await?, 1);
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
}
