//! The job runner: takes the users of started batches through their
//! syncs, within the endpoints' limits, and keeps their statuses.
//!
//! Every few hundred milliseconds it reads the store (so CLI commands that
//! change it while the runner is up take effect) and starts what may start:
//! a queued user's initial sync when both its endpoints have a free
//! migration slot, a synced user's incremental sync when its interval has
//! passed and an incremental slot is free, and a completing batch's final
//! syncs. A user's failure never stops the others; a connection that drops
//! is retried with backoff before the user is marked Failed.
//!
//! Stopping (the `shutdown` future) and crashing end the same way: syncs in
//! flight are abandoned, and their users go back to where a new runner picks
//! them up (Queued, or Synced for an incremental sync). The sync engine's
//! checkpoints make the repeat cheap and duplicate-free.

mod analyze;
mod staged;

pub use analyze::{AnalysisObserver, QuietAnalysis, analyze_batch};

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use flytt_batch::{
    BadItemLimit, BatchAction, BatchParameters, BatchStatus, BatchType, MailboxType, PartialSync,
    SieveStatistics, StatisticsIssue, UserStatistics, UserStatus,
};
use flytt_control::endpoints::{endpoint_auth, server_config as server, sieve_server};
use flytt_imap::{Auth, ErrorClass, Secret, Transient};
use flytt_secrets::Keyring;
use flytt_sieve::{SieveAuth, SieveReport, migrate_scripts};
use flytt_store::{
    BatchState, Claim, ClaimOutcome, Endpoint, EndpointLimit, Startable, Store, WorkItem,
};
use flytt_sync::{Account, MailboxScope, SyncError, SyncOptions, sync_mailbox};
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("state store: {0}")]
    Store(#[from] flytt_store::Error),
    #[error("secrets: {0}")]
    Secrets(#[from] flytt_secrets::Error),
    #[error("a stored value does not parse: {0}")]
    Stored(String),
    #[error(transparent)]
    Control(#[from] flytt_control::ControlError),
}

/// How the runner paces itself.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    pub tick: Duration,
    /// The wait after a sync's first transient error (a busy, throttling or
    /// lost server); it doubles with every try that makes no progress.
    pub first_backoff: Duration,
    /// The longest wait between tries (a server's own suggestion may be
    /// longer, and is obeyed).
    pub max_backoff: Duration,
    /// A user whose tries make no progress for this long fails, with the
    /// last reason.
    pub give_up_after: Duration,
    /// An endpoint's effective limit is lowered at most once per this time,
    /// and raised no sooner than this after.
    pub limit_cooldown: Duration,
    /// The longest a staged user's preparation (directory, ManageSieve) or
    /// a Sieve script copy may take; then it is tried again later.
    pub step_deadline: Duration,
    /// How often the runner renews its leases.
    pub heartbeat: Duration,
    /// How long a lease lasts without a heartbeat; then another runner may
    /// take the user back.
    pub lease: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            tick: Duration::from_millis(500),
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            give_up_after: Duration::from_secs(3600),
            limit_cooldown: Duration::from_secs(10),
            step_deadline: Duration::from_secs(120),
            heartbeat: Duration::from_secs(10),
            lease: Duration::from_secs(30),
        }
    }
}

impl RunnerOptions {
    /// How long a sync may go on writing after its lease was last renewed:
    /// the lease, less a heartbeat's worth of slack, so that it stops
    /// before another runner may take the user.
    fn write_window(&self) -> Duration {
        self.lease.saturating_sub(self.heartbeat)
    }

    /// The wait before try `retries + 1`: exponential, with jitter (a
    /// random half of it), so users refused together do not come back
    /// together; never shorter than what the server asked for.
    fn backoff(&self, retries: u32, server_asks: Option<Duration>) -> Duration {
        let full = self
            .first_backoff
            .saturating_mul(1u32 << retries.min(16))
            .min(self.max_backoff);
        let mut random = [0u8; 4];
        let _ = getrandom::fill(&mut random);
        let fraction = f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
        let jittered = full.mul_f64(0.5 + fraction / 2.0);
        server_asks.map_or(jittered, |asked| asked.max(jittered))
    }
}

/// Until when a running sync may write (see `RunnerOptions::write_window`),
/// and whether the administrator asked it to stop.
#[derive(Debug)]
struct Lease {
    until: std::sync::Mutex<std::time::Instant>,
    stop: std::sync::atomic::AtomicBool,
}

impl Lease {
    fn new(until: std::time::Instant) -> Lease {
        Lease {
            until: std::sync::Mutex::new(until),
            stop: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The sync is to end at its next safe point (`Observer::stop_requested`).
    fn ask_to_stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn stop_asked(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn renew(&self, until: std::time::Instant) {
        if let Ok(mut current) = self.until.lock() {
            *current = until;
        }
    }

    fn valid(&self) -> bool {
        self.until
            .lock()
            .is_ok_and(|until| std::time::Instant::now() < *until)
    }
}

/// This runner's id (host, process and a random part), its host and its
/// process.
pub fn runner_id() -> (String, String, u32) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let pid = std::process::id();
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let id = format!("{host}-{pid}-{}", u32::from_le_bytes(random));
    (id, host, pid)
}

/// What a leased user is in: a staged user's preparation or a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Directory and ManageSieve steps before a staged user's initial sync
    /// (`staged.rs`); the user stays Queued.
    Preparation,
    Initial,
    Incremental,
    Final,
}

impl Kind {
    fn running_status(self) -> UserStatus {
        match self {
            Kind::Preparation => UserStatus::Queued,
            Kind::Initial => UserStatus::Syncing,
            Kind::Incremental => UserStatus::IncrementalSyncing,
            Kind::Final => UserStatus::Completing,
        }
    }

    /// Where the user goes back to when the work is abandoned. A final sync
    /// goes back to Queued: a completing batch takes Queued users too.
    fn resume_status(self) -> UserStatus {
        match self {
            Kind::Preparation | Kind::Initial | Kind::Final => UserStatus::Queued,
            Kind::Incremental => UserStatus::Synced,
        }
    }

    /// Whether it counts against the endpoints' incremental limit too.
    fn is_incremental(self) -> bool {
        matches!(self, Kind::Incremental | Kind::Final)
    }
}

/// What every step of the runner works with.
pub(crate) struct RunnerContext<'a> {
    store: &'a Store,
    keyring: &'a std::sync::Arc<Keyring>,
    /// This runner's id (the leases' holder).
    id: &'a str,
    options: &'a RunnerOptions,
}

pub(crate) struct Running {
    kind: Kind,
    lease: std::sync::Arc<Lease>,
    task: tokio::task::AbortHandle,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    store: Store,
    data_dir: &Path,
    options: RunnerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunnerError> {
    let keyring = std::sync::Arc::new(flytt_control::keyring(&store, data_dir).await?);
    let (id, host, pid) = runner_id();
    register(&store, &id, &host, pid).await?;
    // A busy database now only delays the take-over: the leases expire.
    if let Err(e) = expire_dead_local_runners(&store, &host).await {
        tracing::warn!(error = %e, "cannot end the leases of this host's dead runners yet");
    }
    tracing::info!(runner = %id, "runner started");
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut tasks: JoinSet<i64> = JoinSet::new();
    let mut last_heartbeat = std::time::Instant::now();
    let mut analysis: Option<tokio::task::JoinHandle<()>> = None;
    tokio::pin!(shutdown);
    loop {
        if last_heartbeat.elapsed() >= options.heartbeat {
            last_heartbeat = std::time::Instant::now();
            renew_leases(&store, &id, &options, &mut running).await;
        }
        // A busy or unreachable database (SQLite locked by another runner,
        // PostgreSQL restarting) is waited out, tick after tick; running
        // syncs stop writing by themselves when their leases lapse.
        let tick = std::time::Instant::now();
        let context = RunnerContext {
            store: &store,
            keyring: &keyring,
            id: &id,
            options: &options,
        };
        let step = async {
            take_back_expired(&store).await?;
            ask_to_stop(&store, &id, &running).await?;
            store.carry_out_user_requests().await?;
            let batches = store.batch_states().await?;
            staged::prepare(&context, &batches, &mut running, &mut tasks).await?;
            schedule(&context, &batches, &mut running, &mut tasks).await?;
            settle_batches(&store, &batches).await
        };
        if let Err(e) = step.await {
            tracing::warn!(error = %e, "the runner's tick failed; trying again");
        }
        if analysis.as_ref().is_none_or(|task| task.is_finished()) {
            analysis = start_analysis(&store, &keyring, &id).await;
        }
        tracing::debug!(elapsed_ms = tick.elapsed().as_secs_f64() * 1000.0, "tick");
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(user_id) = done {
                    running.remove(&user_id);
                }
            }
            _ = tokio::time::sleep(options.tick) => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // An analysis broken off is taken over by another runner once its
    // heartbeat lapses; it changed nothing.
    if let Some(task) = analysis {
        task.abort();
    }
    // A clean stop releases the leases: the users go back at once.
    for (user_id, run) in running {
        store
            .finish_user(user_id, &id, run.kind.resume_status(), None, None)
            .await?;
    }
    store.stop_runner(&id).await?;
    Ok(())
}

/// Claims an analysis asked for (through the API or the dashboard) and
/// runs it beside the syncs, one at a time per runner.
async fn start_analysis(
    store: &Store,
    keyring: &std::sync::Arc<Keyring>,
    id: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    let batch = match store
        .claim_analysis(id, flytt_store::ANALYSIS_ABANDONED_AFTER)
        .await
    {
        Ok(batch) => batch?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for analyses to run");
            return None;
        }
    };
    tracing::info!(batch, "analysis started");
    let (store, keyring, id) = (store.clone(), keyring.clone(), id.to_string());
    Some(tokio::spawn(async move {
        match analyze_batch(&store, keyring, &batch, &id, &QuietAnalysis).await {
            Ok(()) => tracing::info!(batch, "analysis done"),
            Err(e) => tracing::warn!(batch, error = %e, "analysis broken off"),
        }
    }))
}

/// Registers the runner, waiting up to a minute for a busy database (a
/// SQLite file another runner holds locked).
async fn register(store: &Store, id: &str, host: &str, pid: u32) -> Result<(), RunnerError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.register_runner(id, host, pid).await {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "cannot register the runner yet; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Users whose runner's lease expired (it died, or lost the database) go
/// back to where they resume; only expired leases are taken back.
async fn take_back_expired(store: &Store) -> Result<(), RunnerError> {
    for kind in [Kind::Initial, Kind::Incremental, Kind::Final] {
        store
            .take_back_expired(kind.running_status(), kind.resume_status())
            .await?;
    }
    Ok(())
}

/// A runner of this host whose process is gone died: its leases end now
/// rather than when they expire (a restart after a crash resumes at once).
async fn expire_dead_local_runners(store: &Store, host: &str) -> Result<(), RunnerError> {
    for runner in store.runners().await? {
        let alive = std::path::Path::new(&format!("/proc/{}", runner.pid)).exists();
        if runner.host == host && !alive {
            store.expire_runner(&runner.id).await?;
        }
    }
    Ok(())
}

/// Asks this runner's syncs that are to end (their batch Stopping or
/// Removing, or their user asked to stop or be removed) to stop at their
/// next safe point.
async fn ask_to_stop(
    store: &Store,
    id: &str,
    running: &HashMap<i64, Running>,
) -> Result<(), RunnerError> {
    if running.is_empty() {
        return Ok(());
    }
    for user_id in store.users_to_stop(id).await? {
        if let Some(run) = running.get(&user_id)
            && !run.lease.stop_asked()
        {
            tracing::info!(
                user_id,
                "asked to stop: the sync ends at its next safe point"
            );
            run.lease.ask_to_stop();
        }
    }
    Ok(())
}

/// Renews this runner's leases. A user it no longer holds (its lease
/// expired and was taken back: a pause, a lost database) stops at once.
async fn renew_leases(
    store: &Store,
    id: &str,
    options: &RunnerOptions,
    running: &mut HashMap<i64, Running>,
) {
    let started = std::time::Instant::now();
    let held = match store.heartbeat(id, options.lease).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "cannot renew the leases");
            return;
        }
    };
    running.retain(|user_id, run| {
        if held.contains(user_id) {
            run.lease.renew(started + options.write_window());
            true
        } else if run.task.is_finished() {
            // It ended and released its lease; the loop has not reaped it yet.
            false
        } else {
            tracing::warn!(user_id, "lease lost: the sync stops");
            run.task.abort();
            false
        }
    });
}

/// Starts what may start: for each active batch, asks the database for at
/// most as many users as its endpoints have free slots (across runners),
/// and claims them one by one.
async fn schedule(
    context: &RunnerContext<'_>,
    batches: &[BatchState],
    running: &mut HashMap<i64, Running>,
    tasks: &mut JoinSet<i64>,
) -> Result<(), RunnerError> {
    let store = context.store;
    // Live leases per endpoint, across runners: a cheap first filter; the
    // claim checks again in its transaction.
    let mut live = store.live_leases().await?;
    let endpoints: HashMap<String, Endpoint> = store
        .endpoints()
        .await?
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    for batch in batches {
        let parameters = &batch.parameters;
        let (Some(source), Some(target)) = (
            endpoints.get(&batch.source_endpoint),
            endpoints.get(&batch.target_endpoint),
        ) else {
            continue;
        };
        let incremental = Startable::Incremental {
            interval_secs: parameters.incremental_sync_interval_secs,
        };
        let wanted: &[(Startable, Kind)] = match batch.status {
            BatchStatus::Syncing => &[
                (Startable::CompleteAsked, Kind::Final),
                (Startable::Initial, Kind::Initial),
                (incremental, Kind::Incremental),
            ],
            BatchStatus::Synced | BatchStatus::SyncedWithErrors => &[
                (Startable::CompleteAsked, Kind::Final),
                (incremental, Kind::Incremental),
            ],
            BatchStatus::Completing => &[(Startable::Final, Kind::Final)],
            _ => &[],
        };
        for (which, kind) in wanted {
            let free = free_slots(&live, source, target, *kind);
            if free == 0 {
                continue;
            }
            for item in store.startable_users(&batch.name, *which, free).await? {
                if running.contains_key(&item.user_id) {
                    continue;
                }
                if !start(context, running, tasks, item, *kind).await? {
                    continue;
                }
                for endpoint in [&source.name, &target.name] {
                    let counts = live.entry(endpoint.clone()).or_default();
                    counts.0 += 1;
                    counts.1 += u32::from(kind.is_incremental());
                }
            }
        }
    }
    Ok(())
}

/// Claims `item` for `kind` (a preparation or a sync) and starts it as a
/// task; false when another runner was first or a limit filled meanwhile.
async fn start(
    context: &RunnerContext<'_>,
    running: &mut HashMap<i64, Running>,
    tasks: &mut JoinSet<i64>,
    item: WorkItem,
    kind: Kind,
) -> Result<bool, RunnerError> {
    let options = context.options;
    let claimed_at = std::time::Instant::now();
    let claim = Claim {
        user_id: item.user_id,
        runner: context.id,
        from: item.status,
        to: kind.running_status(),
        lease: options.lease,
        incremental: kind.is_incremental(),
        limits: [&item.source, &item.target].map(|e| EndpointLimit {
            endpoint: &e.name,
            max_migrations: e.migration_limit(),
            max_incremental: e.max_concurrent_incremental_syncs,
        }),
    };
    if context.store.claim_user(&claim).await? != ClaimOutcome::Claimed {
        return Ok(false);
    }
    let lease = std::sync::Arc::new(Lease::new(claimed_at + options.write_window()));
    let user_id = item.user_id;
    let (store, keyring, options, task_lease, runner) = (
        context.store.clone(),
        context.keyring.clone(),
        options.clone(),
        lease.clone(),
        context.id.to_string(),
    );
    let task = tasks.spawn(async move {
        let attempt = Attempt {
            item: &item,
            keyring: &keyring,
            options: &options,
            store: &store,
            kind,
            lease: &task_lease,
            runner: &runner,
        };
        attempt.run().await;
        user_id
    });
    running.insert(user_id, Running { kind, lease, task });
    Ok(true)
}

/// How many more syncs of `kind` both endpoints take now: every leased
/// user, whichever runner holds it, takes a migration slot on its source
/// and its target endpoint; incremental and final syncs also count
/// against the incremental limit.
fn free_slots(
    live: &HashMap<String, (u32, u32)>,
    source: &Endpoint,
    target: &Endpoint,
    kind: Kind,
) -> u32 {
    [source, target]
        .iter()
        .map(|endpoint| {
            let (all, incremental) = live.get(&endpoint.name).copied().unwrap_or_default();
            let migrations = endpoint.migration_limit().saturating_sub(all);
            match kind {
                Kind::Initial => migrations,
                _ => migrations.min(
                    endpoint
                        .max_concurrent_incremental_syncs
                        .saturating_sub(incremental),
                ),
            }
        })
        .min()
        .unwrap_or(0)
}

/// One try at a user's sync. Returns the statistics (all its syncs so
/// far), or why it stopped. An initial or final sync also copies the
/// user's Sieve scripts; incremental syncs leave them.
async fn sync_user(
    item: &WorkItem,
    parameters: &BatchParameters,
    keyring: &Keyring,
    store: &Store,
    kind: Kind,
    step_deadline: Duration,
    progress: &std::sync::Arc<Progress>,
) -> Result<UserStatistics, Failure> {
    let overrides = &item.overrides;
    let source = source_account(item, keyring).map_err(Failure::Fatal)?;
    let mut target = target_account(item, keyring).map_err(Failure::Fatal)?;
    // The engine asks before each APPEND (`Observer::may_write`); the
    // gate also holds back what was queued before a pause, at the wire.
    if let Some(lease) = progress.lease.clone() {
        target.server.write_gate = Some(flytt_imap::WriteGate::new(move || lease.valid()));
    }
    let sync_options = sync_options(item, parameters, kind);
    let bad_item_limit = overrides
        .bad_item_limit
        .or(parameters.bad_item_limit)
        .unwrap_or(BadItemLimit::Count(0));
    // What the sync is doing goes to the store twice a second, for
    // `user show` while it runs.
    let reporter = {
        let (progress, store, user_id) = (progress.clone(), store.clone(), item.user_id);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(500));
            let mut validated = false;
            loop {
                ticks.tick().await;
                let _ = store
                    .set_user_progress(user_id, Some(&progress.now()))
                    .await;
                if !validated && progress.planned.load(std::sync::atomic::Ordering::Relaxed) {
                    validated = store.set_user_validated(user_id).await.is_ok();
                }
            }
        })
    };
    let outcome = sync_once(
        item,
        &source,
        &target,
        store,
        &sync_options,
        bad_item_limit,
        progress,
    )
    .await;
    // Wait for the reporter to be gone, so no late write brings the
    // progress back after the final status clears it.
    reporter.abort();
    let _ = reporter.await;
    let stats = outcome?;
    if kind == Kind::Final
        && item.batch_type == BatchType::Staged
        && parameters.convert_source_on_complete
    {
        staged::convert_source(item, keyring, store)
            .await
            .map_err(Failure::Fatal)?;
    }
    // A remote move switches the address over when it completes: the side
    // being left forwards to user@TargetDeliveryDomain.
    if kind == Kind::Final
        && matches!(
            item.batch_type,
            BatchType::Onboarding | BatchType::Offboarding
        )
    {
        staged::forward(item, parameters, keyring, store)
            .await
            .map_err(Failure::Fatal)?;
    }
    let stats = with_dav_collections(stats, item, (&source, &target), store, step_deadline).await;
    // Incremental syncs leave the scripts; a staged user's moved at
    // provisioning (`staged::prepare`).
    if kind == Kind::Incremental || (kind == Kind::Initial && item.batch_type == BatchType::Staged)
    {
        return Ok(stats);
    }
    Ok(with_sieve_scripts(stats, item, &source, &target, step_deadline).await)
}

/// How a user's sync behaves: the batch's parameters with the user's CSV
/// overrides, and the endpoints' connections (one rule, for the syncs and
/// Analyze's dry runs).
fn sync_options(item: &WorkItem, parameters: &BatchParameters, kind: Kind) -> SyncOptions {
    let overrides = &item.overrides;
    SyncOptions {
        exclude: parameters.exclude_folders.clone(),
        large_item_limit: overrides.large_item_limit.or(parameters.large_item_limit),
        mailbox_scope: match overrides.mailbox_type.or(parameters.mailbox_type) {
            Some(MailboxType::PrimaryOnly) => MailboxScope::PrimaryOnly,
            Some(MailboxType::ArchiveOnly) => MailboxScope::ArchiveOnly,
            Some(MailboxType::PrimaryAndArchive) | None => MailboxScope::PrimaryAndArchive,
        },
        // The last sync before a batch completes checks every copy it makes.
        verify: parameters.verify || kind == Kind::Final,
        connections: item
            .source
            .connections_per_user
            .min(item.target.connections_per_user)
            .max(1) as usize,
        delete_removed: overrides.deletion_sync(parameters),
        folder_mapping: overrides.folder_mapping(parameters),
        report_subjects: parameters.report_subjects,
        gmail_labels: parameters.gmail_labels,
        download_limit: item.source.download_limit,
        ..SyncOptions::default()
    }
}

/// After an initial or final sync: the user's Sieve scripts, when both
/// endpoints have a ManageSieve server. What could not be copied is
/// reported in the statistics' issues; it never fails the user.
async fn with_sieve_scripts(
    mut stats: UserStatistics,
    item: &WorkItem,
    source: &Account,
    target: &Account,
    deadline: Duration,
) -> UserStatistics {
    let (Ok(Some(from)), Ok(Some(to))) = (sieve_server(&item.source), sieve_server(&item.target))
    else {
        return stats;
    };
    let report = match (sieve_auth(&source.auth), sieve_auth(&target.auth)) {
        (Some(source_auth), Some(target_auth)) => match tokio::time::timeout(
            deadline,
            migrate_scripts((&from, &source_auth), (&to, &target_auth)),
        )
        .await
        {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => SieveReport {
                issues: vec![format!("the Sieve scripts were not copied: {e}")],
                ..SieveReport::default()
            },
            Err(_) => SieveReport {
                issues: vec![format!(
                    "the Sieve scripts were not copied: ManageSieve did not finish within {} s",
                    deadline.as_secs()
                )],
                ..SieveReport::default()
            },
        },
        _ => SieveReport {
            issues: vec![
                "the Sieve scripts were not copied: OAuth logins cannot open ManageSieve".into(),
            ],
            ..SieveReport::default()
        },
    };
    stats
        .issues
        .extend(report.issues.iter().map(|reason| StatisticsIssue {
            kind: "sieve".into(),
            reason: reason.clone(),
            ..StatisticsIssue::default()
        }));
    // A copy that made none active left the target's as it was: after a
    // staged user's forwarding, the source's active script is flytt's
    // redirect, which stays behind, and the user's stays active.
    let still_active = stats
        .sieve
        .as_ref()
        .and_then(|before| before.active.clone())
        .filter(|active| report.copied.contains(active));
    stats.sieve = Some(SieveStatistics {
        active: report.active.or(still_active),
        copied: report.copied,
    });
    stats
}

/// After every sync: the user's address books and calendars, when both
/// endpoints have a DAV server. What could not be copied is reported in
/// the statistics' issues (kind `dav`); it never fails the user.
async fn with_dav_collections(
    mut stats: UserStatistics,
    item: &WorkItem,
    (source, target): (&Account, &Account),
    store: &Store,
    deadline: Duration,
) -> UserStatistics {
    if item.source.dav_url.is_none() || item.target.dav_url.is_none() {
        return stats;
    }
    let outcome = match tokio::time::timeout(deadline, copy_dav(item, source, target, store)).await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "DAV did not finish within {} s",
            deadline.as_secs()
        )),
    };
    let mut issues: Vec<String> = Vec::new();
    match outcome {
        Ok(report) => {
            issues.extend(
                report
                    .refused
                    .iter()
                    .map(|r| format!("{}: {}", r.source, r.reason)),
            );
            issues.extend(
                report
                    .properties_refused
                    .iter()
                    .map(|(collection, property)| {
                        format!("{collection}: the target did not keep its {property}")
                    }),
            );
            // `stats` holds the earlier syncs' counts (`UserStatistics::then`).
            let now = report.statistics();
            stats.dav = Some(stats.dav.map_or(now, |before| before.then(&now)));
        }
        Err(e) => issues.push(format!("contacts and calendars were not copied: {e}")),
    }
    stats
        .issues
        .extend(issues.into_iter().map(|reason| StatisticsIssue {
            kind: "dav".into(),
            reason,
            ..StatisticsIssue::default()
        }));
    stats
}

async fn copy_dav(
    item: &WorkItem,
    source: &Account,
    target: &Account,
    store: &Store,
) -> Result<flytt_dav::DavReport, String> {
    let client = |endpoint, auth| {
        flytt_control::endpoints::dav_account(endpoint, auth)?
            .ok_or_else(|| "no DAV server".to_string())
            .and_then(|account| flytt_dav::DavClient::new(account).map_err(|e| e.to_string()))
    };
    let source = client(&item.source, &source.auth)?;
    let target = client(&item.target, &target.auth)?;
    let options = flytt_dav::CopyOptions {
        delete_removed: item.overrides.deletion_sync(&item.parameters),
    };
    flytt_dav::copy_user(&source, &target, store, options)
        .await
        .map_err(|e| e.to_string())
}

/// The IMAP login as a ManageSieve login (SASL PLAIN), where one exists.
fn sieve_auth(auth: &Auth) -> Option<SieveAuth<'_>> {
    match auth {
        Auth::Login { user, password } => Some(SieveAuth {
            authorize_as: None,
            user,
            password: password.expose(),
        }),
        // A master login is the admin with the user as authorization identity.
        Auth::Master {
            user,
            admin,
            password,
        } => Some(SieveAuth {
            authorize_as: Some(user),
            user: admin,
            password: password.expose(),
        }),
        Auth::Plain {
            user,
            password,
            authorize_as,
        } => Some(SieveAuth {
            authorize_as: authorize_as.as_deref(),
            user,
            password: password.expose(),
        }),
        Auth::XOAuth2 { .. } | Auth::OAuthBearer { .. } => None,
    }
}

/// What a running sync is doing.
#[derive(Default)]
struct Progress {
    /// Both logins worked and the folders are listed.
    planned: std::sync::atomic::AtomicBool,
    folder: std::sync::Mutex<String>,
    messages: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
    matched: std::sync::atomic::AtomicU64,
    /// Copies per folder, for a sync that stops early.
    folders: std::sync::Mutex<Vec<flytt_batch::FolderCount>>,
    /// About how many messages the sync has to copy, once it knows.
    to_copy: std::sync::OnceLock<u64>,
    /// When the sync started, for its rate and the time left.
    started: std::sync::OnceLock<std::time::Instant>,
    /// The runner's lease on the user: no write after it lapsed.
    lease: Option<std::sync::Arc<Lease>>,
}

impl Progress {
    /// What the sync did so far, for a sync that stops early.
    fn partial(&self) -> PartialSync {
        use std::sync::atomic::Ordering::Relaxed;
        PartialSync {
            messages_copied: self.messages.load(Relaxed),
            bytes_copied: self.bytes.load(Relaxed),
            messages_matched: self.matched.load(Relaxed),
            folders: self.folders.lock().map(|f| f.clone()).unwrap_or_default(),
        }
    }

    /// The sync's progress now, with its estimate.
    fn now(&self) -> flytt_batch::SyncProgress {
        use std::sync::atomic::Ordering::Relaxed;
        let progress = flytt_batch::SyncProgress {
            folder: self.folder.lock().map(|f| f.clone()).unwrap_or_default(),
            messages_copied: self.messages.load(Relaxed),
            bytes_copied: self.bytes.load(Relaxed),
            messages_matched: self.matched.load(Relaxed),
            messages_to_copy: self.to_copy.get().copied(),
            ..flytt_batch::SyncProgress::default()
        };
        let elapsed = self
            .started
            .get()
            .map(std::time::Instant::elapsed)
            .unwrap_or_default();
        progress.estimate(elapsed)
    }
}

impl flytt_sync::Observer for Progress {
    fn sized(&self, messages_to_copy: u64) {
        let _ = self.to_copy.set(messages_to_copy);
    }

    fn planned(&self, _folders: u64) {
        self.planned
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn folder_started(&self, folder: &str) {
        if let Ok(mut current) = self.folder.lock() {
            *current = folder.to_string();
        }
    }

    fn found(&self, folder: &str, messages: u64) {
        if let Ok(mut folders) = self.folders.lock() {
            flytt_batch::FolderCount::of(&mut folders, folder).found = messages;
        }
    }

    fn copied(&self, folder: &str, messages: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.messages.fetch_add(messages, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        if let Ok(mut folders) = self.folders.lock() {
            flytt_batch::FolderCount::of(&mut folders, folder).copied += messages;
        }
    }

    fn matched(&self, messages: u64) {
        self.matched
            .fetch_add(messages, std::sync::atomic::Ordering::Relaxed);
    }

    fn may_write(&self) -> bool {
        self.lease.as_ref().is_none_or(|lease| lease.valid())
    }

    fn stop_requested(&self) -> bool {
        self.lease.as_ref().is_some_and(|lease| lease.stop_asked())
    }
}

/// Why a try at a user's sync did not succeed.
#[derive(Debug)]
enum Failure {
    /// The user fails, for this reason.
    Fatal(String),
    /// A busy, throttling or lost server, a busy database: try again later.
    Transient(Retry),
    /// Asked to stop, the sync stopped at a safe point.
    Stopped,
}

/// A transient failure's details.
#[derive(Debug)]
struct Retry {
    /// What happened, in words for the administrator.
    reason: String,
    /// The endpoint that refused or throttled (not one that merely lost a
    /// connection): its effective limit goes down.
    busy_endpoint: Option<String>,
    /// How long the server asked to wait.
    retry_after: Option<Duration>,
}

/// One try at one user's sync, and what is recorded after it.
struct Attempt<'a> {
    item: &'a WorkItem,
    keyring: &'a Keyring,
    options: &'a RunnerOptions,
    store: &'a Store,
    kind: Kind,
    lease: &'a std::sync::Arc<Lease>,
    runner: &'a str,
}

impl Attempt<'_> {
    async fn run(&self) {
        let recorded = match self.kind {
            Kind::Preparation => self.prepare().await,
            _ => self.sync().await,
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(user = %self.item.email, "the lease was taken over: nothing recorded");
            }
            Err(e) => {
                tracing::error!(user = %self.item.email, error = %e, "cannot record the user's status");
            }
        }
    }

    /// A staged user's preparation, within `step_deadline`: a directory or
    /// ManageSieve server that does not answer in time is waited out like
    /// a busy mail server.
    async fn prepare(&self) -> flytt_store::Result<bool> {
        let started = std::time::Instant::now();
        let deadline = self.options.step_deadline;
        let item = self.item;
        let prepared = tokio::time::timeout(
            deadline,
            staged::prepare_user(self.store, self.keyring, item, &item.parameters),
        )
        .await;
        match prepared {
            Ok(Ok(scripts)) => {
                if let Some(sieve) = scripts {
                    let stats = UserStatistics {
                        sieve: Some(sieve),
                        ..item.stats.clone().unwrap_or_default()
                    };
                    self.store
                        .record_user_statistics(item.user_id, &stats)
                        .await?;
                }
                self.store.set_user_validated(item.user_id).await?;
                self.store.release_user(item.user_id, self.runner).await?;
                Ok(true)
            }
            Ok(Err(reason)) => {
                tracing::warn!(user = %item.email, batch = %item.batch, %reason, "provisioning failed");
                self.finish(UserStatus::Failed, Some(&reason), None).await
            }
            Err(_) => {
                let retry = Retry {
                    reason: format!(
                        "the directory or ManageSieve server did not finish within {} s",
                        deadline.as_secs()
                    ),
                    busy_endpoint: None,
                    retry_after: None,
                };
                self.postpone(retry, &Progress::default(), started.elapsed())
                    .await
            }
        }
    }

    async fn sync(&self) -> flytt_store::Result<bool> {
        let started = std::time::Instant::now();
        let progress = std::sync::Arc::new(Progress {
            lease: Some(self.lease.clone()),
            started: std::time::Instant::now().into(),
            ..Progress::default()
        });
        let outcome = sync_user(
            self.item,
            &self.item.parameters,
            self.keyring,
            self.store,
            self.kind,
            self.options.step_deadline,
            &progress,
        )
        .await;
        match outcome {
            Ok(stats) => self.succeeded(&stats).await,
            // The lease lapsed (the database was out of reach): the user
            // goes back, it did not fail.
            Err(_) if !self.lease.valid() => {
                self.finish(self.kind.resume_status(), None, None).await
            }
            Err(Failure::Fatal(reason)) => self.failed(&reason).await,
            Err(Failure::Transient(retry)) => {
                self.postpone(retry, &progress, started.elapsed()).await
            }
            Err(Failure::Stopped) => self.stopped(&progress).await,
        }
    }

    /// A sync that stopped when asked: the user goes back to where it
    /// resumes, with what it copied counted; the next tick carries out a
    /// user's own request (Stopped, removed), and a Stopping batch becomes
    /// Stopped once none of its syncs runs.
    async fn stopped(&self, progress: &Progress) -> flytt_store::Result<bool> {
        tracing::info!(user = %self.item.email, batch = %self.item.batch, "the sync stopped when asked");
        let stats = self
            .item
            .stats
            .clone()
            .unwrap_or_default()
            .with_partial(&progress.partial());
        self.finish(self.kind.resume_status(), None, Some(&stats))
            .await
    }

    async fn succeeded(&self, stats: &UserStatistics) -> flytt_store::Result<bool> {
        // Good syncs raise limits that a refusal lowered. A busy database
        // here costs a step of the increase, never the user's status.
        for endpoint in [&self.item.source.name, &self.item.target.name] {
            if let Err(e) = self
                .store
                .raise_endpoint_limit(endpoint, self.options.limit_cooldown)
                .await
            {
                tracing::warn!(endpoint = %endpoint, error = %e, "cannot raise the endpoint's limit");
            }
        }
        let done = if self.kind == Kind::Final {
            UserStatus::Completed
        } else {
            UserStatus::Synced
        };
        self.finish(done, None, Some(stats)).await
    }

    async fn failed(&self, reason: &str) -> flytt_store::Result<bool> {
        let item = self.item;
        tracing::warn!(user = %item.email, batch = %item.batch, %reason, "user failed");
        self.finish(UserStatus::Failed, Some(reason), None).await
    }

    async fn finish(
        &self,
        status: UserStatus,
        error: Option<&str>,
        stats: Option<&UserStatistics>,
    ) -> flytt_store::Result<bool> {
        self.store
            .finish_user(self.item.user_id, self.runner, status, error, stats)
            .await
    }

    /// A transient failure: the user gives its slot back and waits (the
    /// backoff, or what the server asked for), unless it has gone without
    /// progress for `give_up_after`; a server that refused or throttled
    /// gets fewer migrations at once.
    async fn postpone(
        &self,
        retry: Retry,
        progress: &Progress,
        elapsed: Duration,
    ) -> flytt_store::Result<bool> {
        let item = self.item;
        let partial = progress.partial();
        let progressed = partial.progressed();
        let stalled = Duration::from_millis(item.stalled_ms.unwrap_or(0)) + elapsed;
        if !progressed && stalled >= self.options.give_up_after {
            let reason = format!(
                "no progress for {} min: {}",
                stalled.as_secs() / 60,
                retry.reason
            );
            return self.failed(&reason).await;
        }
        if let Some(endpoint) = &retry.busy_endpoint {
            match self
                .store
                .lower_endpoint_limit(endpoint, self.options.limit_cooldown)
                .await
            {
                Ok(Some(limit)) => {
                    tracing::info!(endpoint = %endpoint, limit, "the server pushes back: fewer migrations at once");
                }
                Ok(None) => {}
                // The wait is recorded all the same.
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint, error = %e, "cannot lower the endpoint's limit");
                }
            }
        }
        let retries = if progressed { 0 } else { item.retries };
        let wait = self.options.backoff(retries, retry.retry_after);
        tracing::info!(user = %item.email, wait_s = wait.as_secs(), reason = %retry.reason, "waiting before the next try");
        let stats = item
            .stats
            .clone()
            .unwrap_or_default()
            .with_partial(&partial);
        self.store
            .postpone_user(
                item.user_id,
                self.runner,
                self.kind.resume_status(),
                Some(&stats),
                &flytt_store::Postponement {
                    wait,
                    reason: &retry.reason,
                    progressed,
                },
            )
            .await
    }
}

/// One sync of the mailbox. Per-message problems are in the statistics; an
/// error is sorted into a transient one (try later) or the user's failure.
async fn sync_once(
    item: &WorkItem,
    source: &Account,
    target: &Account,
    store: &Store,
    sync_options: &SyncOptions,
    bad_item_limit: BadItemLimit,
    progress: &Progress,
) -> Result<UserStatistics, Failure> {
    let report = match sync_mailbox(source, target, store, sync_options, progress).await {
        Ok(report) => report,
        Err(SyncError::Stopped) => return Err(Failure::Stopped),
        Err(e) => {
            return Err(match e.class() {
                ErrorClass::Transient(transient) => Failure::Transient(Retry {
                    reason: waiting_reason(&e, transient),
                    busy_endpoint: transient
                        .busy
                        .then(|| match e {
                            SyncError::Source(_) => Some(item.source.name.clone()),
                            SyncError::Target(_) => Some(item.target.name.clone()),
                            _ => None,
                        })
                        .flatten(),
                    retry_after: transient.retry_after,
                }),
                ErrorClass::Fatal | ErrorClass::Refused => Failure::Fatal(e.explain()),
            });
        }
    };
    if let BadItemLimit::Count(limit) = bad_item_limit
        && report.messages_failed > u64::from(limit)
    {
        return Err(Failure::Fatal(format!(
            "{} bad items, more than the BadItemLimit of {limit}",
            report.messages_failed
        )));
    }
    // The sync's report as the statistics the store keeps.
    let latest: UserStatistics = serde_json::to_value(&report)
        .and_then(serde_json::from_value)
        .map_err(|e| Failure::Fatal(format!("the sync's report: {e}")))?;
    Ok(match &item.stats {
        Some(previous) => previous.then(latest),
        None => latest,
    })
}

/// What a transient error means, for `user show`: "source refused the
/// connection (…)", "target is busy or throttling (…)", "connection to the
/// source lost (…)".
fn waiting_reason(error: &SyncError, transient: Transient) -> String {
    let (side, imap) = match error {
        SyncError::Source(e) => ("source", e),
        SyncError::Target(e) => ("target", e),
        other => return other.explain(),
    };
    let what = match imap {
        flytt_imap::Error::Connect { .. } => format!("{side} refused the connection"),
        flytt_imap::Error::Closed { .. } if transient.busy => {
            format!("{side} refused the connection")
        }
        flytt_imap::Error::Rejected { .. } => format!("{side} is busy or throttling"),
        flytt_imap::Error::Timeout { .. } => format!("{side} stopped answering"),
        flytt_imap::Error::Spool { .. } => {
            format!("no room to keep the {side}'s messages on disk (--spool-budget)")
        }
        _ => format!("connection to the {side} lost"),
    };
    format!("{what} ({imap})")
}

fn open_user_secret(
    item: &WorkItem,
    keyring: &Keyring,
    sealed: &str,
    column: &str,
) -> Result<Secret, String> {
    let secret = keyring
        .open(
            sealed,
            &format!("batch/{}/user/{}/{column}", item.batch, item.email),
        )
        .map_err(|e| format!("the stored {column}: {e}"))?;
    Ok(Secret::new(secret.expose()))
}

/// The source login: the CSV's UserName and Password (an IMAP batch), or
/// the source endpoint's admin account opening the user's mailbox.
fn source_account(item: &WorkItem, keyring: &Keyring) -> Result<Account, String> {
    let server = server(&item.source)?;
    if let (Some(user), Some(sealed)) = (&item.user_name, &item.password_sealed) {
        return Ok(Account {
            server,
            auth: Auth::Login {
                user: user.clone(),
                password: open_user_secret(item, keyring, sealed, "Password")?,
            },
        });
    }
    let refresh_token = item
        .refresh_token_sealed
        .as_ref()
        .map(|sealed| open_user_secret(item, keyring, sealed, "RefreshToken"))
        .transpose()?;
    match endpoint_auth(&item.source, &item.email, keyring, refresh_token)? {
        Some(auth) => Ok(Account { server, auth }),
        None => Err(format!(
            "no way to log in to the source: the CSV has no UserName/Password and endpoint {} has no admin account or OAuth client",
            item.source.name
        )),
    }
}

/// The target login: the target endpoint's admin account, or the CSV's
/// TargetUserName and TargetPassword.
fn target_account(item: &WorkItem, keyring: &Keyring) -> Result<Account, String> {
    let server = server(&item.target)?;
    if let Some(auth) = endpoint_auth(&item.target, &item.email, keyring, None)? {
        return Ok(Account { server, auth });
    }
    match (&item.target_user_name, &item.target_password_sealed) {
        (Some(user), Some(sealed)) => Ok(Account {
            server,
            auth: Auth::Login {
                user: user.clone(),
                password: open_user_secret(item, keyring, sealed, "TargetPassword")?,
            },
        }),
        _ => Err(format!(
            "no way to log in to the target: endpoint {} has no admin account or OAuth client and the CSV has no TargetUserName/TargetPassword",
            item.target.name
        )),
    }
}

/// Whether a batch parameter's time (RFC 3339) has come; no time means now.
fn time_has_come(when: Option<&str>) -> bool {
    when.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| t <= chrono::Utc::now())
}

/// Moves batches along: a Created batch starts at its StartAfter time when
/// AutoStart or StartAfter asks for it; a syncing batch whose users are all
/// past their initial sync is Synced (or SyncedWithErrors), and completes at
/// its CompleteAfter time when AutoComplete or CompleteAfter asks for it; a
/// completing one whose users are all done is Completed (or
/// CompletedWithErrors).
async fn settle_batches(store: &Store, batches: &[BatchState]) -> Result<(), RunnerError> {
    for batch in batches {
        let parameters = &batch.parameters;
        let starts = (parameters.auto_start || parameters.start_after.is_some())
            && time_has_come(parameters.start_after.as_deref());
        let completes = (parameters.auto_complete || parameters.complete_after.is_some())
            && time_has_come(parameters.complete_after.as_deref());
        let count = |s: UserStatus| batch.count(s);
        let failed = UserStatus::ALL
            .iter()
            .any(|s| s.is_unsuccessful() && count(*s) > 0);
        let next = match batch.status {
            BatchStatus::Stopping | BatchStatus::Removing
                if store.users_running(&batch.name).await? == 0 =>
            {
                if batch.status == BatchStatus::Removing {
                    store.remove_batch(&batch.name).await?;
                    tracing::info!(batch = %batch.name, "batch removed: its syncs have stopped");
                    continue;
                }
                Some(batch.status.when_idle())
            }
            // AutoStart and AutoComplete act as the administrator would,
            // by the same table.
            BatchStatus::Created if starts => batch.status.after(BatchAction::Start),
            BatchStatus::Synced | BatchStatus::SyncedWithErrors if completes => {
                batch.status.after(BatchAction::Complete)
            }
            BatchStatus::Syncing if count(UserStatus::Queued) + count(UserStatus::Syncing) == 0 => {
                Some(if failed {
                    BatchStatus::SyncedWithErrors
                } else {
                    BatchStatus::Synced
                })
            }
            // Every user still to sync holds completion back, also one in
            // its initial sync (completed while a retry ran): it gets its
            // final sync after.
            BatchStatus::Completing
                if count(UserStatus::Synced)
                    + count(UserStatus::Syncing)
                    + count(UserStatus::Completing)
                    + count(UserStatus::IncrementalSyncing)
                    + count(UserStatus::Queued)
                    == 0 =>
            {
                Some(if failed {
                    BatchStatus::CompletedWithErrors
                } else {
                    BatchStatus::Completed
                })
            }
            _ => None,
        };
        if let Some(next) = next {
            store.set_batch_status(&batch.name, next).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn batch_with_users(statuses: &[UserStatus]) -> Store {
        let store = Store::in_memory().await.expect("store");
        for name in ["old", "new"] {
            store
                .create_endpoint(&Endpoint::new(name, "imaps://mail.example.org"))
                .await
                .expect("endpoint");
        }
        let users = (0..statuses.len())
            .map(|i| flytt_store::NewBatchUser {
                email: format!("user{i}@example.org"),
                csv_line: i as u64 + 2,
                overrides: flytt_batch::UserOverrides::default(),
                user_name: None,
                password_sealed: None,
                target_user_name: None,
                target_password_sealed: None,
                refresh_token_sealed: None,
            })
            .collect();
        store
            .create_batch(&flytt_store::NewBatch {
                name: "b".into(),
                batch_type: BatchType::Imap,
                source_endpoint: "old".into(),
                target_endpoint: "new".into(),
                parameters: BatchParameters::default(),
                users,
            })
            .await
            .expect("batch");
        store
            .set_batch_status("b", BatchStatus::Completing)
            .await
            .expect("status");
        let items = store
            .startable_users("b", Startable::Final, 100)
            .await
            .expect("items");
        for (item, user_status) in items.iter().zip(statuses) {
            store
                .set_user_status(item.user_id, *user_status, None, None)
                .await
                .expect("user status");
        }
        store
    }

    /// A batch completed while a retried user is in its initial sync waits
    /// for that user (it was once marked Completed with the user unsynced).
    #[tokio::test]
    async fn completion_waits_for_users_still_in_their_initial_sync() {
        let store = batch_with_users(&[UserStatus::Completed, UserStatus::Syncing]).await;
        let batches = store.batch_states().await.expect("batches");
        settle_batches(&store, &batches).await.expect("settle");
        assert_eq!(
            store.batch("b").await.expect("batch").status,
            BatchStatus::Completing
        );
        let store = batch_with_users(&[UserStatus::Completed, UserStatus::Failed]).await;
        let batches = store.batch_states().await.expect("batches");
        settle_batches(&store, &batches).await.expect("settle");
        assert_eq!(
            store.batch("b").await.expect("batch").status,
            BatchStatus::CompletedWithErrors
        );
    }
}
