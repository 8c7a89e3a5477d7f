//! Analyze (`flytt batch analyze`, `POST /api/v1/batches/{name}/analysis`):
//! every user of a batch looked at before anything moves, without changing
//! anything anywhere.
//!
//! For each user, as many at a time as the endpoints allow migrations: both
//! logins (a refused one is the user's result), both servers'
//! capabilities, the target's quota and APPENDLIMIT, and a dry run of the
//! sync with the batch's and the row's parameters (the same
//! `sync_options` as the real syncs): the folders it would visit, the
//! messages and bytes it would copy, the large items it would skip, the
//! folders the target cannot take under their own names, the folders the
//! mapping rules place. Then a probe:
//! up to `PROBE_MESSAGES` messages or `PROBE_BYTES` bytes read from the
//! largest mailbox's INBOX, timed, for the estimate
//! (`flytt_batch::analysis::estimate`). Each result is saved as it comes,
//! so the dashboard shows the analysis filling in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flytt_batch::{ProbeRate, QuotaUse, RenamedFolder, RuledFolder, UserAnalysis};
use flytt_imap::{Access, Session};
use flytt_secrets::Keyring;
use flytt_store::{Store, WorkItem};
use flytt_sync::{Account, IssueKind, Quiet, Report, sync_mailbox};
use tokio::task::JoinSet;

use crate::{Kind, RunnerError, source_account, sync_options, target_account};

/// The probe reads at most this many messages…
const PROBE_MESSAGES: usize = 200;
/// …and this many bytes (after the message that passes it).
const PROBE_BYTES: u64 = 16 * 1024 * 1024;
/// How often a running analysis tells the store it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Progress, for a progress bar: called after each user.
pub trait AnalysisObserver: Send + Sync {
    fn started(&self, _users: u64) {}
    fn user_done(&self, _result: &UserAnalysis) {}
}

/// An observer that ignores everything.
pub struct QuietAnalysis;
impl AnalysisObserver for QuietAnalysis {}

/// Runs the analysis of `batch` that `runner` holds (claimed from the
/// store, or begun by the CLI) to its end and records how it ended. Stops
/// early, recording nothing more, when the store says the analysis is no
/// longer `runner`'s (asked for anew, or taken over).
pub async fn analyze_batch(
    store: &Store,
    keyring: Arc<Keyring>,
    batch: &str,
    runner: &str,
    observer: &dyn AnalysisObserver,
) -> Result<(), RunnerError> {
    let items = store.batch_work_items(batch).await?;
    let concurrency = items
        .first()
        .map(|i| {
            i.source
                .max_concurrent_migrations
                .min(i.target.max_concurrent_migrations)
                .max(1)
        })
        .unwrap_or(1);
    observer.started(items.len() as u64);
    let work = async {
        let results = analyze_users(
            store,
            keyring.clone(),
            batch,
            runner,
            items,
            concurrency,
            observer,
        )
        .await?;
        let probe = match largest(&results) {
            Some(item) => probe(&item, &keyring).await.unwrap_or_else(|reason| {
                tracing::warn!(batch, user = item.email, reason, "no probe: no estimate");
                None
            }),
            None => None,
        };
        Ok::<_, RunnerError>(probe)
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = lost(store, batch, runner) => return Ok(()),
    };
    let outcome = outcome.map_err(|e| e.to_string());
    store
        .finish_analysis(batch, runner, outcome, concurrency)
        .await?;
    Ok(())
}

/// Resolves when the analysis is no longer `runner`'s; beats its heartbeat
/// until then. A store out of reach is waited out (the heartbeat lapses
/// only after a minute).
async fn lost(store: &Store, batch: &str, runner: &str) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Ok(false) = store.analysis_heartbeat(batch, runner).await {
            tracing::warn!(
                batch,
                "the analysis was taken over or asked for anew; this one stops"
            );
            return;
        }
    }
}

/// Every user, `concurrency` at a time, each result saved as it comes;
/// returns the users with their results.
async fn analyze_users(
    store: &Store,
    keyring: Arc<Keyring>,
    batch: &str,
    runner: &str,
    items: Vec<WorkItem>,
    concurrency: u32,
    observer: &dyn AnalysisObserver,
) -> Result<Vec<(WorkItem, UserAnalysis)>, RunnerError> {
    let mut waiting = items.into_iter();
    let mut tasks = JoinSet::new();
    let mut results = Vec::new();
    loop {
        while tasks.len() < concurrency as usize {
            let Some(item) = waiting.next() else { break };
            let (store, keyring) = (store.clone(), keyring.clone());
            tasks.spawn(async move {
                let result = analyze_user(&item, &keyring, &store).await;
                (item, result)
            });
        }
        let Some(done) = tasks.join_next().await else {
            return Ok(results);
        };
        let (item, result) =
            done.map_err(|e| RunnerError::Stored(format!("an analysis task: {e}")))?;
        store
            .save_user_analysis(batch, runner, item.user_id, &result)
            .await?;
        observer.user_done(&result);
        results.push((item, result));
    }
}

/// One user: logins, capabilities, quota, and the dry run.
async fn analyze_user(item: &WorkItem, keyring: &Keyring, store: &Store) -> UserAnalysis {
    let started = Instant::now();
    let mut result = UserAnalysis {
        email: item.email.clone(),
        ..UserAnalysis::default()
    };
    if let Err(reason) = look(item, keyring, store, &mut result).await {
        result.error = Some(reason);
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

async fn look(
    item: &WorkItem,
    keyring: &Keyring,
    store: &Store,
    result: &mut UserAnalysis,
) -> Result<(), String> {
    let source = source_account(item, keyring)?;
    let target = target_account(item, keyring)?;
    servers(&source, &target, result).await?;
    let mut options = sync_options(item, &item.parameters, Kind::Initial);
    options.dry_run = true;
    options.connections = 1;
    let report = sync_mailbox(&source, &target, store, &options, &Quiet)
        .await
        .map_err(|e| e.explain())?;
    plan(&report, result);
    Ok(())
}

/// Both logins and what each server says of itself; the target's quota on
/// INBOX and its APPENDLIMIT.
async fn servers(
    source: &Account,
    target: &Account,
    result: &mut UserAnalysis,
) -> Result<(), String> {
    let (src, tgt) = tokio::join!(logged_in(source), logged_in(target));
    let src = src.map_err(|e| format!("source: {e}"))?;
    let mut tgt = tgt.map_err(|e| format!("target: {e}"))?;
    result.source_capabilities = src.capabilities().to_vec();
    result.target_capabilities = tgt.capabilities().to_vec();
    result.append_limit = tgt.append_limit();
    let quotas = tgt
        .quota_root("INBOX")
        .await
        .map_err(|e| format!("target: {e}"))?;
    result.target_quota = quotas.iter().find_map(|q| {
        let (used_bytes, limit_bytes) = q.storage_bytes()?;
        Some(QuotaUse {
            root: q.root.clone(),
            used_bytes,
            limit_bytes,
        })
    });
    src.logout().await;
    tgt.logout().await;
    Ok(())
}

async fn logged_in(account: &Account) -> flytt_imap::Result<Session> {
    let mut session = Session::connect(&account.server).await?;
    session.login(&account.auth).await?;
    Ok(session)
}

/// What the dry run would do, as the user's result.
fn plan(report: &Report, result: &mut UserAnalysis) {
    result.folders = report.folders;
    result.folders_excluded = report.folders_excluded.clone();
    result.messages = report.plan.iter().map(|(_, messages, _)| messages).sum();
    result.bytes = report.plan.iter().map(|(_, _, bytes)| bytes).sum();
    result.messages_found = report.messages_found;
    result.messages_excluded = report.messages_excluded;
    result.largest_message = report.largest_message;
    let of_kind = |kind| report.issues.iter().filter(move |i| i.kind == kind);
    result.large_items = of_kind(IssueKind::Large).count() as u64;
    result.renamed_folders = of_kind(IssueKind::Renamed)
        .chain(of_kind(IssueKind::Folder))
        .map(|i| RenamedFolder {
            folder: i.folder.clone(),
            reason: i.reason.clone(),
        })
        .collect();
    result.folder_rules = report
        .folder_map
        .iter()
        .filter_map(|m| {
            Some(RuledFolder {
                folder: m.source.clone(),
                target: m.target.clone(),
                rule: m.rule.clone()?,
            })
        })
        .collect();
}

/// The user with the most to copy, for the probe.
fn largest(results: &[(WorkItem, UserAnalysis)]) -> Option<WorkItem> {
    results
        .iter()
        .filter(|(_, r)| r.error.is_none() && r.bytes > 0)
        .max_by_key(|(_, r)| r.bytes)
        .map(|(item, _)| item.clone())
}

/// Reads up to `PROBE_MESSAGES` messages or `PROBE_BYTES` bytes of the
/// user's INBOX, newest first, and times the FETCH. `None` for an empty
/// INBOX; then there is no estimate, which the result says by leaving it
/// out.
async fn probe(item: &WorkItem, keyring: &Keyring) -> Result<Option<ProbeRate>, String> {
    let source = source_account(item, keyring)?;
    let mut session = logged_in(&source).await.map_err(|e| e.to_string())?;
    session
        .select("INBOX", Access::ReadOnly)
        .await
        .map_err(|e| e.to_string())?;
    let sizes = session
        .uid_fetch("1:*", "UID RFC822.SIZE")
        .await
        .map_err(|e| e.to_string())?;
    let mut uids = Vec::new();
    let mut bytes = 0;
    for message in sizes.iter().rev() {
        let (Some(uid), Some(size)) = (message.uid, message.size) else {
            continue;
        };
        if uids.len() >= PROBE_MESSAGES || bytes >= PROBE_BYTES {
            break;
        }
        uids.push(uid);
        bytes += u64::from(size);
    }
    if uids.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let fetched = session
        .uid_fetch(&flytt_imap::uid_set(&uids), "UID BODY.PEEK[]")
        .await
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    session.logout().await;
    let bytes = fetched
        .iter()
        .filter_map(|m| m.body.as_ref().map(|b| b.len()))
        .sum();
    Ok(Some(ProbeRate {
        messages: fetched.len() as u64,
        bytes,
        seconds,
    }))
}
