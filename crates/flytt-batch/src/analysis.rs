//! Analyze (`flytt batch analyze`): what a batch will move, found by
//! logging in for every user and planning the copy without changing
//! anything, and how long it will take at a measured rate.
//!
//! The runner (or the CLI) fills a `UserAnalysis` per user and an
//! `AnalysisRun` for the batch; the store keeps both; `BatchAnalysis` is
//! what people see, with the totals and the estimate worked out here, the
//! one place for that rule.

use serde::{Deserialize, Serialize};

use crate::status::AnalysisState;

/// What one user's mailbox holds and what the copy would meet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserAnalysis {
    pub email: String,
    /// Why the user could not be looked at (a refused login, a server that
    /// could not be reached); the counts are empty then.
    pub error: Option<String>,
    /// Source folders the copy visits.
    pub folders: u64,
    /// Folders left out (exclude patterns, MailboxType), as decoded paths.
    pub folders_excluded: Vec<String>,
    /// Messages and bytes the copy would move (what the target holds
    /// already not counted).
    pub messages: u64,
    pub bytes: u64,
    /// Messages in the folders left out.
    pub messages_excluded: u64,
    /// Messages in the folders the copy visits (those to copy, those to
    /// skip, and those the target holds already from an earlier sync).
    pub messages_found: u64,
    /// The largest message (RFC822.SIZE) among those to copy or skip.
    pub largest_message: u64,
    /// Messages over LargeItemLimit or the target's APPENDLIMIT: skipped.
    pub large_items: u64,
    /// Folders whose names the target cannot take as they are.
    pub renamed_folders: Vec<RenamedFolder>,
    /// Folders a folder mapping rule sends elsewhere (the batch's or the
    /// row's `FolderMapping`), and where.
    pub folder_rules: Vec<RuledFolder>,
    /// The target mailbox's storage quota, where the target tells it
    /// (GETQUOTAROOT INBOX).
    pub target_quota: Option<QuotaUse>,
    /// The largest message the target takes (APPENDLIMIT), where it says.
    pub append_limit: Option<u64>,
    pub source_capabilities: Vec<String>,
    pub target_capabilities: Vec<String>,
    /// How long looking took.
    pub seconds: f64,
}

/// A folder the copy will create under another name, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenamedFolder {
    /// Decoded source path.
    pub folder: String,
    pub reason: String,
}

/// A folder a mapping rule places: its source path, the target folder
/// (full name, decoded) and the rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuledFolder {
    pub folder: String,
    pub target: String,
    pub rule: String,
}

/// A storage quota root: bytes used and allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    pub root: String,
    pub used_bytes: u64,
    pub limit_bytes: u64,
}

impl UserAnalysis {
    /// Whether the mail to copy fits in what the target's quota leaves,
    /// where the target has one.
    pub fn fits_quota(&self) -> Option<bool> {
        self.target_quota
            .as_ref()
            .map(|q| q.used_bytes.saturating_add(self.bytes) <= q.limit_bytes)
    }
}

/// A probe copy's reading of the source: messages and bytes fetched on one
/// connection, and how long that took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeRate {
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
}

impl ProbeRate {
    pub fn bytes_per_second(&self) -> Option<f64> {
        (self.seconds > 0.0 && self.bytes > 0).then(|| self.bytes as f64 / self.seconds)
    }
}

/// A batch's analysis as the store keeps it, without the users' results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRun {
    pub state: AnalysisState,
    pub requested_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub probe: Option<ProbeRate>,
    /// Users looked at (and, in the estimate, migrated) at once: the
    /// smaller of the two endpoints' MaxConcurrentMigrations.
    pub concurrency: u32,
}

/// A batch's analysis: the run, the totals, the estimate and every user's
/// result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchAnalysis {
    pub batch: String,
    #[serde(flatten)]
    pub run: AnalysisRun,
    /// Users in the batch; `analyzed` of them are looked at so far, and
    /// `failed` of those could not be (their `error` says why).
    pub users: u64,
    pub analyzed: u64,
    pub failed: u64,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    pub large_items: u64,
    pub largest_message: u64,
    pub renamed_folders: u64,
    /// Users whose mail does not fit the target's quota.
    pub over_quota: u64,
    /// How long the copy of the analyzed users' mail would take, from the
    /// probe's rate, `concurrency` users at a time.
    pub estimated_seconds: Option<u64>,
    pub user_results: Vec<UserAnalysis>,
}

impl BatchAnalysis {
    pub fn new(
        batch: String,
        run: AnalysisRun,
        users: u64,
        user_results: Vec<UserAnalysis>,
    ) -> BatchAnalysis {
        let ok = || user_results.iter().filter(|u| u.error.is_none());
        let sum = |f: fn(&UserAnalysis) -> u64| ok().map(f).sum::<u64>();
        let estimated_seconds = estimate(&user_results, run.probe, run.concurrency);
        BatchAnalysis {
            batch,
            users,
            analyzed: user_results.len() as u64,
            failed: user_results.iter().filter(|u| u.error.is_some()).count() as u64,
            folders: sum(|u| u.folders),
            messages: sum(|u| u.messages),
            bytes: sum(|u| u.bytes),
            large_items: sum(|u| u.large_items),
            largest_message: ok().map(|u| u.largest_message).max().unwrap_or(0),
            renamed_folders: sum(|u| u.renamed_folders.len() as u64),
            over_quota: ok().filter(|u| u.fits_quota() == Some(false)).count() as u64,
            estimated_seconds,
            run,
            user_results,
        }
    }
}

/// How long copying the users' bytes takes at the probe's rate, with
/// `concurrency` users copied at a time: the users' time spread over the
/// slots, and never less than the largest user's own time (one user is
/// copied by one runner). Assumes the servers give every slot the probe's
/// rate: an estimate, not a promise.
pub fn estimate(users: &[UserAnalysis], probe: Option<ProbeRate>, concurrency: u32) -> Option<u64> {
    let rate = probe?.bytes_per_second()?;
    let times: Vec<f64> = users
        .iter()
        .filter(|u| u.error.is_none())
        .map(|u| u.bytes as f64 / rate)
        .collect();
    let longest = times.iter().copied().fold(0.0, f64::max);
    let spread = times.iter().sum::<f64>() / f64::from(concurrency.max(1));
    Some(longest.max(spread).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(bytes: u64) -> UserAnalysis {
        UserAnalysis {
            email: format!("u{bytes}@example.org"),
            bytes,
            ..UserAnalysis::default()
        }
    }

    fn probe(bytes_per_second: u64) -> Option<ProbeRate> {
        Some(ProbeRate {
            messages: 10,
            bytes: bytes_per_second,
            seconds: 1.0,
        })
    }

    #[test]
    fn the_estimate_spreads_users_over_the_slots_but_not_below_the_largest() {
        let users = [user(100), user(100), user(100), user(100)];
        assert_eq!(estimate(&users, probe(10), 2), Some(20));
        assert_eq!(estimate(&users, probe(10), 20), Some(10));
        let users = [user(1000), user(10), user(10)];
        assert_eq!(estimate(&users, probe(10), 2), Some(100));
    }

    #[test]
    fn no_probe_no_estimate_and_failed_users_count_for_nothing() {
        assert_eq!(estimate(&[user(100)], None, 2), None);
        assert_eq!(estimate(&[user(100)], probe(0), 2), None);
        let failed = UserAnalysis {
            error: Some("login refused".into()),
            bytes: 1_000_000,
            ..user(0)
        };
        assert_eq!(estimate(&[failed, user(50)], probe(10), 1), Some(5));
    }

    #[test]
    fn totals_and_quota() {
        let mut tight = user(2048);
        tight.target_quota = Some(QuotaUse {
            root: "User quota".into(),
            used_bytes: 1024,
            limit_bytes: 2048,
        });
        tight.large_items = 2;
        let roomy = UserAnalysis {
            target_quota: Some(QuotaUse {
                root: "User quota".into(),
                used_bytes: 0,
                limit_bytes: 1 << 30,
            }),
            ..user(10)
        };
        let run = AnalysisRun {
            state: AnalysisState::Done,
            requested_at: "2026-12-04 10:00:00".into(),
            started_at: None,
            finished_at: None,
            error: None,
            probe: probe(1024),
            concurrency: 20,
        };
        let analysis = BatchAnalysis::new("b".into(), run, 3, vec![tight, roomy]);
        assert_eq!(
            (analysis.analyzed, analysis.bytes, analysis.over_quota),
            (2, 2058, 1)
        );
        assert_eq!(analysis.large_items, 2);
        assert_eq!(analysis.estimated_seconds, Some(2));
    }
}
