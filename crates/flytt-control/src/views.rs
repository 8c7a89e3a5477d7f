//! How batches, users and events are shown: the JSON of `--json` and of the
//! HTTP API, one shape for both. Nothing here holds a secret: stored
//! passwords are sealed and never read for showing.

use std::collections::BTreeMap;

use serde::Serialize;

use flytt_batch::{BatchParameters, BatchStatus, UserOverrides, UserStatistics, UserStatus};
/// The batch's users' statistics added up (by the store).
pub use flytt_store::Totals;
use flytt_store::{BatchSummary, BatchUser, Endpoint, Event, RunnerInfo};

/// A batch with its users counted per status and its totals.
#[derive(Clone, Debug, Serialize)]
pub struct BatchView {
    pub name: String,
    #[serde(rename = "type")]
    pub batch_type: String,
    pub status: BatchStatus,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub initial_sync_done_at: Option<String>,
    pub completed_at: Option<String>,
    pub parameters: BatchParameters,
    /// How many users the batch has.
    pub users: u64,
    pub user_counts: BTreeMap<String, u64>,
    pub totals: Totals,
    /// Messages and bytes copied per second of the initial sync (so far).
    pub throughput: Option<Throughput>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Throughput {
    pub seconds: f64,
    pub messages_per_second: f64,
    pub bytes_per_second: f64,
}

/// A user of a batch.
#[derive(Clone, Debug, Serialize)]
pub struct UserView {
    pub email: String,
    pub batch: String,
    pub csv_line: u64,
    pub user_name: Option<String>,
    pub status: UserStatus,
    pub error: Option<String>,
    pub overrides: UserOverrides,
    /// When the current or last sync started.
    pub started_at: Option<String>,
    /// When the user's first sync started (kept by later syncs).
    pub first_started_at: Option<String>,
    /// When the user was first known good (logged in on both sides).
    pub validated_at: Option<String>,
    pub last_synced_at: Option<String>,
    /// What the syncs found and did (all syncs added up).
    pub statistics: Option<UserStatistics>,
    /// What a running sync is doing now: folder, messages and bytes so
    /// far, per cent done and time left.
    pub progress: Option<flytt_batch::SyncProgress>,
    /// The runner holding the user's lease while it syncs.
    pub runner: Option<String>,
    /// Why the user waits before its next try (a busy, throttling or lost
    /// server), and for how much longer.
    pub waiting: Option<WaitingView>,
    /// What the administrator asked of the running sync and is not done
    /// yet ("Stop", "Remove"): it ends at its next safe point.
    pub requested: Option<flytt_batch::UserRequest>,
    /// What the user gets of each parameter a CSV row may override, and
    /// from where (row, batch or default); in one user's views only
    /// (`with_effective`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_parameters: Option<Vec<flytt_batch::Effective>>,
}

/// A user waiting out a busy, throttling or lost server.
#[derive(Clone, Debug, Serialize)]
pub struct WaitingView {
    pub reason: String,
    /// Seconds until the next try may start (0: due, waiting for a slot).
    pub seconds_left: u64,
}

impl WaitingView {
    /// "waiting 40 s: source refused the connection (…)", "waiting 23 h 59
    /// min: the source's download limit …".
    pub fn sentence(&self) -> String {
        if self.seconds_left == 0 {
            format!("next try due after: {}", self.reason)
        } else {
            format!(
                "waiting {}: {}",
                flytt_batch::duration_words(self.seconds_left),
                self.reason
            )
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EventView {
    pub id: i64,
    pub at: String,
    pub batch: String,
    pub email: Option<String>,
    pub kind: String,
    pub status: Option<String>,
    pub message: Option<String>,
}

/// A runner sharing the database: `flytt worker list`, the API's
/// /workers and the dashboard's workers table.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: String,
    pub last_heartbeat: String,
    pub users_held: u64,
}

impl WorkerView {
    pub fn new(runner: &RunnerInfo) -> WorkerView {
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        WorkerView {
            id: runner.id.clone(),
            host: runner.host.clone(),
            pid: runner.pid,
            started_at: time(runner.started_at_ms),
            last_heartbeat: time(runner.heartbeat_at_ms),
            users_held: runner.users_held,
        }
    }
}

/// What may be shown of an endpoint: everything but the password.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointView {
    pub name: String,
    pub url: String,
    pub allow_plaintext: bool,
    pub ca_file: Option<String>,
    /// Pinned certificate fingerprints (`sha256:HEX`).
    pub tls_fingerprints: Vec<String>,
    pub admin_user: Option<String>,
    pub admin_mode: flytt_store::AdminMode,
    pub admin_password_set: bool,
    pub max_concurrent_migrations: u32,
    /// How many migrations run at once now: below the maximum while the
    /// server refuses or throttles (lowered by the runners, raised again by
    /// good syncs).
    pub effective_concurrent_migrations: u32,
    pub max_concurrent_incremental_syncs: u32,
    /// Sessions one user's migration opens to this server at most.
    pub connections_per_user: u32,
    /// Whether sessions to this server are compressed (COMPRESS=DEFLATE):
    /// `never` or `always`.
    pub compression: flytt_store::Compression,
    /// As a source: how much one mailbox may read in a day: `auto`
    /// (Gmail's limit on a Gmail source), `unlimited`, or bytes.
    pub download_per_day: String,
    pub sieve_url: Option<String>,
    /// The CardDAV/CalDAV server, if contacts and calendars move too.
    pub dav_url: Option<String>,
    pub directory: Option<String>,
    /// The OAuth client that opens users' mailboxes, if it has one.
    pub oauth: Option<OAuthView>,
}

/// An endpoint's download limit in words, for people.
pub fn download_limit_words(limit: flytt_store::DownloadLimit) -> String {
    match limit {
        flytt_store::DownloadLimit::Auto => format!(
            "auto ({} on a Gmail source, else none)",
            flytt_batch::size::human_size(flytt_store::DownloadLimit::GMAIL_PER_DAY)
        ),
        flytt_store::DownloadLimit::Unlimited => "unlimited".into(),
        flytt_store::DownloadLimit::PerDay(bytes) => flytt_batch::size::human_size(bytes),
    }
}

/// An endpoint's OAuth client, its secrets only said to be set.
#[derive(Clone, Debug, Serialize)]
pub struct OAuthView {
    pub mechanism: flytt_store::OAuthMechanism,
    pub token_url: String,
    pub client_id: String,
    pub scope: Option<String>,
    pub client_secret_set: bool,
    pub service_account_set: bool,
}

impl EndpointView {
    pub fn new(endpoint: &Endpoint) -> EndpointView {
        EndpointView {
            name: endpoint.name.clone(),
            url: endpoint.url.clone(),
            allow_plaintext: endpoint.allow_plaintext,
            ca_file: endpoint.ca_file.clone(),
            tls_fingerprints: endpoint.tls_fingerprints.clone(),
            admin_user: endpoint.admin_user.clone(),
            admin_mode: endpoint.admin_mode,
            admin_password_set: endpoint.admin_password_sealed.is_some(),
            max_concurrent_migrations: endpoint.max_concurrent_migrations,
            effective_concurrent_migrations: endpoint.migration_limit(),
            max_concurrent_incremental_syncs: endpoint.max_concurrent_incremental_syncs,
            connections_per_user: endpoint.connections_per_user,
            compression: endpoint.compression,
            download_per_day: endpoint.download_limit.to_string(),
            sieve_url: endpoint.sieve_url.clone(),
            dav_url: endpoint.dav_url.clone(),
            directory: endpoint.directory.clone(),
            oauth: endpoint.oauth.as_ref().map(|oauth| OAuthView {
                mechanism: oauth.mechanism,
                token_url: oauth.token_url.clone(),
                client_id: oauth.client_id.clone(),
                scope: oauth.scope.clone(),
                client_secret_set: oauth.client_secret_sealed.is_some(),
                service_account_set: oauth.service_account_sealed.is_some(),
            }),
        }
    }
}

/// The store's timestamps (`YYYY-MM-DD HH:MM:SS[.fff]`, UTC).
fn parse_time(stored: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(stored, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// A store timestamp as RFC 3339 (with milliseconds when it has them).
pub(crate) fn rfc3339(stored: &str) -> String {
    let format = if stored.contains('.') {
        chrono::SecondsFormat::Millis
    } else {
        chrono::SecondsFormat::Secs
    };
    match parse_time(stored) {
        Some(time) => time.to_rfc3339_opts(format, true),
        None => stored.to_string(),
    }
}

impl UserView {
    pub fn new(user: &BatchUser) -> UserView {
        UserView {
            email: user.email.clone(),
            batch: user.batch.clone(),
            csv_line: user.csv_line,
            user_name: user.user_name.clone(),
            status: user.status,
            error: user.error.clone(),
            overrides: user.overrides.clone(),
            started_at: user.started_at.as_deref().map(rfc3339),
            first_started_at: user.first_started_at.as_deref().map(rfc3339),
            validated_at: user.validated_at.as_deref().map(rfc3339),
            last_synced_at: user.last_synced_at.as_deref().map(rfc3339),
            statistics: user.stats.clone(),
            progress: user.progress.clone(),
            runner: user.runner.clone(),
            // Kept until the next try ends; while it runs, it is no wait.
            waiting: user
                .waiting
                .as_ref()
                .filter(|_| !user.status.is_running())
                .map(|w| WaitingView {
                    reason: w.reason.clone(),
                    seconds_left: w.seconds_left,
                }),
            requested: user.requested,
            effective_parameters: None,
        }
    }

    /// The view with the user's effective parameters under its batch's.
    pub fn with_effective(mut self, batch: &flytt_batch::BatchParameters) -> UserView {
        self.effective_parameters = Some(self.overrides.effective(batch));
        self
    }
}

impl EventView {
    pub fn new(event: &Event) -> EventView {
        EventView {
            id: event.id,
            at: event.at.clone(),
            batch: event.batch.clone(),
            email: event.email.clone(),
            kind: event.kind.clone(),
            status: event.status.clone(),
            message: event.message.clone(),
        }
    }
}

impl BatchView {
    pub fn new(batch: &BatchSummary) -> BatchView {
        let totals = batch.totals.clone();
        let now = chrono::Utc::now();
        let throughput = batch
            .started_at
            .as_deref()
            .and_then(parse_time)
            .map(|start| {
                let end = batch
                    .initial_sync_done_at
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(now);
                // Timestamps have whole seconds: never divide by less than one.
                let seconds = ((end - start).num_milliseconds() as f64 / 1000.0).max(1.0);
                Throughput {
                    seconds,
                    messages_per_second: totals.messages_copied as f64 / seconds,
                    bytes_per_second: totals.bytes_copied as f64 / seconds,
                }
            });
        BatchView {
            name: batch.name.clone(),
            batch_type: batch.batch_type.name().to_string(),
            status: batch.status,
            source_endpoint: batch.source_endpoint.clone(),
            target_endpoint: batch.target_endpoint.clone(),
            created_at: rfc3339(&batch.created_at),
            started_at: batch.started_at.as_deref().map(rfc3339),
            initial_sync_done_at: batch.initial_sync_done_at.as_deref().map(rfc3339),
            completed_at: batch.completed_at.as_deref().map(rfc3339),
            parameters: batch.parameters.clone(),
            users: batch.user_counts.iter().map(|c| c.1).sum(),
            user_counts: batch
                .user_counts
                .iter()
                .map(|(status, n)| (status.to_string(), *n))
                .collect(),
            totals,
            throughput,
        }
    }

    /// Users in `status`.
    pub fn count(&self, status: UserStatus) -> u64 {
        self.user_counts.get(status.as_str()).copied().unwrap_or(0)
    }
}

/// "1 failed user", "3 failed users".
pub fn count_of(count: u64, thing: &str) -> String {
    if count == 1 {
        format!("1 {thing}")
    } else {
        format!("{count} {thing}s")
    }
}

/// A status in words, as people write it: "SyncedWithErrors" → "Synced
/// with errors", "IncrementalSyncing" → "Incremental syncing".
pub fn status_words(status: &str) -> String {
    let mut words = String::new();
    for (i, c) in status.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            words.push(' ');
            words.push(c.to_ascii_lowercase());
        } else {
            words.push(c);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_words() {
        assert_eq!(status_words("SyncedWithErrors"), "Synced with errors");
        assert_eq!(status_words("Queued"), "Queued");
    }

    #[test]
    fn stored_times_read_as_rfc3339() {
        assert_eq!(rfc3339("2026-11-22 14:05:09"), "2026-11-22T14:05:09Z");
        assert_eq!(
            rfc3339("2026-11-22 14:05:09.250"),
            "2026-11-22T14:05:09.250Z"
        );
        assert_eq!(rfc3339("not a time"), "not a time");
    }
}
