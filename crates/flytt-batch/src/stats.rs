//! A user's statistics, as the runner records them after each sync and the
//! store keeps them: the counts, and the issues that say what was not
//! copied as it is on the source (or was changed by the target).

use serde::{Deserialize, Serialize};

/// A user's statistics over all its syncs. Counts a field-by-field older
/// record lacks read as zero; anything else the sync reported (the folder
/// map, the excluded folders) is kept as written, in `details`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserStatistics {
    pub folders: u64,
    pub messages_found: u64,
    pub messages_copied: u64,
    pub bytes_copied: u64,
    /// Found on the target already (a resume) and not copied again.
    pub messages_matched: u64,
    pub messages_skipped: u64,
    pub messages_failed: u64,
    /// Copied, but kept altered by the target.
    pub messages_altered: u64,
    pub flags_updated: u64,
    /// Copies expunged on the target because the source deleted the
    /// message (deletion sync), over all syncs.
    pub messages_deleted: u64,
    /// Messages in the folders left out (exclude patterns, MailboxType),
    /// as the last sync counted them.
    pub messages_excluded: u64,
    /// Seconds, every sync together.
    pub duration: f64,
    pub issues: Vec<StatisticsIssue>,
    /// Each source folder's counts (its user page lists them).
    pub folder_counts: Vec<FolderCount>,
    /// Contacts and calendars, when both endpoints have a DAV server.
    pub dav: Option<DavStatistics>,
    /// The Sieve scripts, when both endpoints have a ManageSieve server.
    pub sieve: Option<SieveStatistics>,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// One source folder's messages: found by the last sync that looked at
/// it, copied by all syncs together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderCount {
    /// The folder's path as people see it (decoded, `/` between levels).
    pub folder: String,
    pub found: u64,
    pub copied: u64,
}

impl FolderCount {
    /// The counts of `folder` in `counts`, added when not there yet.
    pub fn of<'a>(counts: &'a mut Vec<FolderCount>, folder: &str) -> &'a mut FolderCount {
        match counts.iter().position(|c| c.folder == folder) {
            Some(i) => &mut counts[i],
            None => {
                counts.push(FolderCount {
                    folder: folder.to_string(),
                    ..FolderCount::default()
                });
                let last = counts.len() - 1;
                &mut counts[last]
            }
        }
    }

    /// `latest` after `earlier`: copies add up; a folder the latest sync
    /// did not list keeps its earlier counts (a sync that stopped before
    /// it), so a folder's row never goes back to nothing.
    pub fn then(earlier: &[FolderCount], latest: Vec<FolderCount>) -> Vec<FolderCount> {
        let mut counts = earlier.to_vec();
        for now in latest {
            let count = FolderCount::of(&mut counts, &now.folder);
            count.found = now.found;
            count.copied += now.copied;
        }
        counts
    }
}

/// A user's contacts and calendar items (CardDAV/CalDAV), by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DavStatistics {
    pub collections_created: u64,
    pub contacts: ItemCounts,
    pub events: ItemCounts,
    pub tasks: ItemCounts,
    pub journals: ItemCounts,
    /// Stored other than they were sent (the target re-serialised them).
    pub rewritten: u64,
}

/// A user's Sieve scripts (ManageSieve), as the last sync that copied
/// them left them. What could not be copied is in the issues (`sieve`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SieveStatistics {
    /// The scripts now on the target, by name.
    pub copied: Vec<String>,
    /// The script active on the target, if the source had one.
    pub active: Option<String>,
}

/// Found / copied / updated / already on the target, for one kind of
/// contact or calendar item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemCounts {
    pub found: u64,
    pub copied: u64,
    /// Changed on the source since an earlier sync, and updated on the target.
    pub updated: u64,
    /// On the target already, unchanged since (an earlier sync).
    pub already_there: u64,
    /// Deleted on the source since they were copied, and so on the target
    /// (deletion sync).
    pub deleted: u64,
    /// Not copied: refused by the target, or changed on both sides (the
    /// target's version kept). Tried again on the next sync; the issues
    /// say why.
    pub skipped: u64,
}

impl DavStatistics {
    /// After one more sync: copies, updates, deletions, collections made
    /// and rewrites add up; what was found (and found there already) is the
    /// latest.
    pub fn then(&self, latest: &DavStatistics) -> DavStatistics {
        let add = |before: &ItemCounts, now: &ItemCounts| ItemCounts {
            copied: before.copied + now.copied,
            updated: before.updated + now.updated,
            deleted: before.deleted + now.deleted,
            ..*now
        };
        DavStatistics {
            collections_created: self.collections_created + latest.collections_created,
            contacts: add(&self.contacts, &latest.contacts),
            events: add(&self.events, &latest.events),
            tasks: add(&self.tasks, &latest.tasks),
            journals: add(&self.journals, &latest.journals),
            rewritten: self.rewritten + latest.rewritten,
        }
    }
}

/// One message or folder that was not copied as it is, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatisticsIssue {
    /// `large`, `bad`, `folder`, `renamed`, `flag`, `altered`, `sieve`.
    pub kind: String,
    pub folder: String,
    pub uid: Option<u32>,
    pub reason: String,
    /// A skipped or failed message's date (its INTERNALDATE, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Its subject, where the batch asked for subjects (ReportSubjects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl UserStatistics {
    /// The statistics after one more sync (`latest`): what was copied adds
    /// up, and so do the copies the target altered (with their issues,
    /// which say what changed); what describes the mailbox now (found,
    /// skipped, failed, the other issues) is the latest.
    pub fn then(&self, mut latest: UserStatistics) -> UserStatistics {
        latest.messages_copied += self.messages_copied;
        latest.bytes_copied += self.bytes_copied;
        latest.messages_matched += self.messages_matched;
        latest.messages_altered += self.messages_altered;
        latest.flags_updated += self.flags_updated;
        latest.messages_deleted += self.messages_deleted;
        latest.duration += self.duration;
        latest.dav = match (&self.dav, &latest.dav) {
            (Some(before), Some(now)) => Some(before.then(now)),
            // A sync without DAV (a DAV step that failed) keeps the counts.
            (before, None) => *before,
            (None, now) => *now,
        };
        // Syncs that leave the scripts (incrementals) keep the last copy's.
        if latest.sieve.is_none() {
            latest.sieve = self.sieve.clone();
        }
        let mut issues: Vec<StatisticsIssue> = self
            .issues
            .iter()
            .filter(|issue| issue.kind == "altered")
            .cloned()
            .collect();
        issues.append(&mut latest.issues);
        latest.issues = issues;
        latest.folder_counts = FolderCount::then(
            &self.folder_counts,
            std::mem::take(&mut latest.folder_counts),
        );
        latest
    }
}

impl UserStatistics {
    /// The statistics with what a sync that stopped early (a lost or busy
    /// server) did added: its copies, and the earlier copies it found on
    /// the target. They are recorded, and the next sync will neither copy
    /// nor find them again, so they count now.
    pub fn with_partial(&self, partial: &PartialSync) -> UserStatistics {
        let mut folder_counts = self.folder_counts.clone();
        for now in &partial.folders {
            let count = FolderCount::of(&mut folder_counts, &now.folder);
            count.copied += now.copied;
            if now.found > 0 {
                count.found = now.found;
            }
        }
        UserStatistics {
            messages_copied: self.messages_copied + partial.messages_copied,
            bytes_copied: self.bytes_copied + partial.bytes_copied,
            messages_matched: self.messages_matched + partial.messages_matched,
            folder_counts,
            ..self.clone()
        }
    }
}

/// What a sync that stopped early did before it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialSync {
    pub messages_copied: u64,
    pub bytes_copied: u64,
    pub messages_matched: u64,
    /// Its copies per folder, and what the folders it opened held (zero
    /// for those it did not reach).
    pub folders: Vec<FolderCount>,
}

impl PartialSync {
    /// Whether it moved the user on at all.
    pub fn progressed(&self) -> bool {
        self.messages_copied + self.messages_matched > 0
    }
}

/// What a running sync is doing, as `user show`, the API and the dashboard
/// show it (Get-MigrationUserStatistics' PercentComplete and estimate):
/// written by the runner twice a second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncProgress {
    /// The folder being copied (decoded path).
    pub folder: String,
    pub messages_copied: u64,
    pub bytes_copied: u64,
    /// Found on the target already (a resume) in this sync.
    pub messages_matched: u64,
    /// About how many messages this sync has to copy: each folder's count
    /// less the copies made before (known once the folders are listed).
    pub messages_to_copy: Option<u64>,
    /// Of those, how many are done (copied or found there), in per cent;
    /// never 100 before the sync has ended.
    pub percent: Option<u8>,
    /// Seconds left at this sync's rate so far.
    pub eta_seconds: Option<u64>,
    /// This sync's rate so far, in bytes of mail a second.
    pub bytes_per_second: Option<u64>,
}

impl SyncProgress {
    /// The percentage and the time left from the counts and how long the
    /// sync has run.
    pub fn estimate(mut self, elapsed: std::time::Duration) -> SyncProgress {
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.bytes_per_second = Some((self.bytes_copied as f64 / seconds) as u64);
        }
        let Some(total) = self.messages_to_copy else {
            return self;
        };
        let done = self.messages_copied + self.messages_matched;
        if total == 0 {
            self.percent = Some(99);
            self.eta_seconds = Some(0);
            return self;
        }
        let share = done.min(total) as f64 / total as f64;
        self.percent = Some((share * 100.0).floor().min(99.0) as u8);
        if done > 0 && seconds > 0.0 {
            let rate = done as f64 / seconds;
            self.eta_seconds = Some((total.saturating_sub(done) as f64 / rate).ceil() as u64);
        }
        self
    }

    /// "1.2 MB/s", "350 KB/s" (decimal units, as the dashboard's other
    /// megabytes; empty before the sync has a rate).
    pub fn rate_words(&self) -> String {
        match self.bytes_per_second {
            None => String::new(),
            Some(rate) if rate >= 1_000_000 => format!("{:.1} MB/s", rate as f64 / 1e6),
            Some(rate) => format!("{} KB/s", (rate as f64 / 1e3).round()),
        }
    }

    /// ", 40 % done, about 3 min left" (empty before the sync knows).
    pub fn in_words(&self) -> String {
        let Some(percent) = self.percent else {
            return String::new();
        };
        match self.eta_seconds {
            Some(seconds) => format!(", {percent} % done, about {} left", duration_words(seconds)),
            None => format!(", {percent} % done"),
        }
    }
}

/// "45 s", "3 min", "2 h 10 min".
pub fn duration_words(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(folder: &str, found: u64, copied: u64) -> FolderCount {
        FolderCount {
            folder: folder.into(),
            found,
            copied,
        }
    }

    /// A folder's copies add up over syncs, a stopped one's too; what it
    /// holds is the latest that was seen; a folder the latest sync did not
    /// reach keeps its row.
    #[test]
    fn folder_counts_add_up_over_syncs() {
        let first = UserStatistics {
            folder_counts: vec![count("INBOX", 10, 10), count("Arkiv", 5, 5)],
            ..UserStatistics::default()
        };
        let stopped = first.with_partial(&PartialSync {
            messages_copied: 3,
            folders: vec![count("INBOX", 13, 3), count("Ny", 0, 0)],
            ..PartialSync::default()
        });
        assert_eq!(stopped.messages_copied, 3);
        assert_eq!(
            stopped.folder_counts,
            [
                count("INBOX", 13, 13),
                count("Arkiv", 5, 5),
                count("Ny", 0, 0)
            ]
        );
        let next = stopped.then(UserStatistics {
            folder_counts: vec![count("INBOX", 12, 0), count("Ny", 4, 4)],
            ..UserStatistics::default()
        });
        assert_eq!(
            next.folder_counts,
            [
                count("INBOX", 12, 13),
                count("Arkiv", 5, 5),
                count("Ny", 4, 4)
            ]
        );
    }

    #[test]
    fn progress_estimates_percent_and_time_left() {
        let progress = |copied, matched, to_copy| SyncProgress {
            messages_copied: copied,
            messages_matched: matched,
            messages_to_copy: to_copy,
            ..SyncProgress::default()
        };
        let ten_seconds = std::time::Duration::from_secs(10);
        let half = progress(40, 10, Some(100)).estimate(ten_seconds);
        assert_eq!((half.percent, half.eta_seconds), (Some(50), Some(10)));
        // Not listed yet: nothing to say.
        let early = progress(0, 0, None).estimate(ten_seconds);
        assert_eq!((early.percent, early.eta_seconds), (None, None));
        // Nothing done yet: a percentage, no time.
        let start = progress(0, 0, Some(100)).estimate(ten_seconds);
        assert_eq!((start.percent, start.eta_seconds), (Some(0), None));
        // The estimate was low (mail arrived meanwhile): 99 %, never 100.
        let over = progress(120, 0, Some(100)).estimate(ten_seconds);
        assert_eq!((over.percent, over.eta_seconds), (Some(99), Some(0)));
        assert_eq!(half.in_words(), ", 50 % done, about 10 s left");
        assert_eq!(early.in_words(), "");
        let moving = SyncProgress {
            bytes_copied: 31_500_000,
            ..SyncProgress::default()
        };
        assert_eq!(moving.estimate(ten_seconds).rate_words(), "3.1 MB/s");
        assert_eq!(early.rate_words(), "0 KB/s");
        assert_eq!(SyncProgress::default().rate_words(), "");
        assert_eq!(
            progress(1, 0, Some(10_000))
                .estimate(ten_seconds)
                .in_words(),
            ", 0 % done, about 27 h 46 min left"
        );
        let round_trip: SyncProgress =
            serde_json::from_str(&serde_json::to_string(&half).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(round_trip, half);
    }

    #[test]
    fn contacts_copied_add_up_and_what_is_found_is_the_latest() {
        let first: UserStatistics = serde_json::from_value(serde_json::json!({
            "dav": {"collections_created": 2, "contacts": {"found": 4, "copied": 4}}
        }))
        .expect("parses");
        let second: UserStatistics = serde_json::from_value(serde_json::json!({
            "dav": {"contacts": {"found": 5, "copied": 1, "updated": 1, "already_there": 3}}
        }))
        .expect("parses");
        let both = first.then(second).dav.expect("dav");
        assert_eq!(both.collections_created, 2);
        assert_eq!(
            both.contacts,
            ItemCounts {
                found: 5,
                copied: 5,
                updated: 1,
                already_there: 3,
                deleted: 0,
                skipped: 0
            }
        );
        // A sync without a DAV step keeps the counts.
        let kept = first.then(UserStatistics::default()).dav.expect("dav");
        assert_eq!(kept.contacts.copied, 4);
    }

    /// The scripts a staged user's provisioning copied stay counted through
    /// the syncs that leave the scripts; a later copy replaces them.
    #[test]
    fn sieve_scripts_are_the_last_copys() {
        let prepared: UserStatistics = serde_json::from_value(serde_json::json!({
            "sieve": {"copied": ["ferie", "filter"], "active": "ferie"}
        }))
        .expect("parses");
        let synced = prepared.then(UserStatistics::default());
        assert_eq!(synced.sieve, prepared.sieve);
        let recopied = UserStatistics {
            sieve: Some(SieveStatistics::default()),
            ..UserStatistics::default()
        };
        assert_eq!(
            synced.then(recopied).sieve,
            Some(SieveStatistics::default())
        );
    }

    #[test]
    fn statistics_add_up_over_syncs_and_keep_what_they_do_not_know() {
        let first: UserStatistics = serde_json::from_value(serde_json::json!({
            "messages_copied": 40, "bytes_copied": 1000, "messages_found": 40, "duration": 1.5,
            "issues": [{"kind": "altered", "folder": "INBOX", "uid": 3, "reason": "8-bit header"},
                       {"kind": "large", "folder": "INBOX", "uid": 4, "reason": "too big"}],
            "folder_map": [{"source": "INBOX", "target": "INBOX"}]
        }))
        .expect("statistics");
        let second: UserStatistics = serde_json::from_value(serde_json::json!({
            "messages_copied": 2, "bytes_copied": 50, "messages_found": 42, "duration": 0.5
        }))
        .expect("statistics");
        let total = first.then(second);
        assert_eq!(total.messages_copied, 42);
        assert_eq!(total.bytes_copied, 1050);
        assert_eq!(total.messages_found, 42);
        assert_eq!(total.duration, 2.0);
        assert_eq!(
            total.issues.len(),
            1,
            "altered copies stay, the rest is the latest"
        );
        let written = serde_json::to_value(&first).expect("JSON");
        assert_eq!(written["folder_map"][0]["target"], "INBOX");
        assert!(serde_json::from_str::<UserStatistics>("{\"messages_copied\": \"many\"}").is_err());
    }
}
