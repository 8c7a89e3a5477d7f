//! The batch's two reports as CSV: one row per user, and one row per
//! skipped or failed item (and per failed user). A spreadsheet is where
//! administrators open them, so no cell may run as a formula.

use flytt_batch::{BatchAnalysis, UserStatistics};
use flytt_store::BatchUser;

use crate::{ControlError, Result};

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
/// carriage return first) gets a leading apostrophe, so it stays text.
pub fn cell(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    }
}

fn finish(writer: csv::Writer<Vec<u8>>) -> Result<Vec<u8>> {
    writer
        .into_inner()
        .map_err(|e| ControlError::Report(e.to_string()))
}

fn report_error(e: csv::Error) -> ControlError {
    ControlError::Report(e.to_string())
}

/// One row per user: status, error and statistics.
pub fn users_report(users: &[BatchUser]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "EmailAddress",
            "Status",
            "Error",
            "Folders",
            "ItemsFound",
            "ItemsCopied",
            "ItemsAlreadyThere",
            "ItemsSkipped",
            "ItemsFailed",
            "ItemsAlteredByTarget",
            "ItemsDeleted",
            "BytesCopied",
            "LastSyncedAt",
            "ContactsFound",
            "ContactsCopied",
            "EventsFound",
            "EventsCopied",
            "TasksFound",
            "TasksCopied",
            "ContactsSkipped",
            "EventsSkipped",
            "TasksSkipped",
            "SieveScripts",
            "ItemsExcluded",
            "FirstStartedAt",
        ])
        .map_err(report_error)?;
    for user in users {
        // A user not synced yet has empty cells, not zeros.
        let number = |pick: fn(&UserStatistics) -> u64| {
            user.stats
                .as_ref()
                .map(|stats| pick(stats).to_string())
                .unwrap_or_default()
        };
        // Empty too where the user's endpoints have no DAV server.
        let dav = |pick: fn(&flytt_batch::DavStatistics) -> u64| {
            user.stats
                .as_ref()
                .and_then(|stats| stats.dav.as_ref())
                .map(|dav| pick(dav).to_string())
                .unwrap_or_default()
        };
        let row = [
            user.email.clone(),
            user.status.to_string(),
            user.error.clone().unwrap_or_default(),
            number(|s| s.folders),
            number(|s| s.messages_found),
            number(|s| s.messages_copied),
            number(|s| s.messages_matched),
            number(|s| s.messages_skipped),
            number(|s| s.messages_failed),
            number(|s| s.messages_altered),
            number(|s| s.messages_deleted),
            number(|s| s.bytes_copied),
            user.last_synced_at
                .as_deref()
                .map(crate::views::rfc3339)
                .unwrap_or_default(),
            dav(|d| d.contacts.found),
            dav(|d| d.contacts.copied),
            dav(|d| d.events.found),
            dav(|d| d.events.copied),
            dav(|d| d.tasks.found),
            dav(|d| d.tasks.copied),
            dav(|d| d.contacts.skipped),
            dav(|d| d.events.skipped),
            dav(|d| d.tasks.skipped),
            // Empty where the user's endpoints have no ManageSieve server.
            user.stats
                .as_ref()
                .and_then(|stats| stats.sieve.as_ref())
                .map(|sieve| sieve.copied.len().to_string())
                .unwrap_or_default(),
            number(|s| s.messages_excluded),
            user.first_started_at
                .as_deref()
                .map(crate::views::rfc3339)
                .unwrap_or_default(),
        ];
        writer
            .write_record(row.iter().map(|v| cell(v)))
            .map_err(report_error)?;
    }
    finish(writer)
}

/// One row per failed user and per skipped or failed item, with the reason.
pub fn errors_report(users: &[BatchUser]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "EmailAddress",
            "Kind",
            "Folder",
            "Uid",
            "Reason",
            "Date",
            "Subject",
        ])
        .map_err(report_error)?;
    for user in users {
        if let Some(error) = &user.error {
            writer
                .write_record([
                    cell(&user.email),
                    "user".into(),
                    String::new(),
                    String::new(),
                    cell(error),
                    String::new(),
                    String::new(),
                ])
                .map_err(report_error)?;
        }
        let issues = user.stats.iter().flat_map(|stats| &stats.issues);
        for issue in issues {
            writer
                .write_record([
                    cell(&user.email),
                    cell(&issue.kind),
                    cell(&issue.folder),
                    issue.uid.map(|u| u.to_string()).unwrap_or_default(),
                    cell(&issue.reason),
                    issue.date.as_deref().map(cell).unwrap_or_default(),
                    issue.subject.as_deref().map(cell).unwrap_or_default(),
                ])
                .map_err(report_error)?;
        }
    }
    finish(writer)
}

/// A file name made from a batch name: letters, digits, '-' and '_' only.
pub fn file_stem(batch: &str) -> String {
    batch
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The analysis as CSV: one row per user (`flytt batch analyze --csv`,
/// `GET /api/v1/batches/{name}/analysis.csv`).
pub fn analysis_report(analysis: &BatchAnalysis) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "EmailAddress",
            "Error",
            "Folders",
            "FoldersExcluded",
            "ItemsFound",
            "ItemsToCopy",
            "BytesToCopy",
            "ItemsExcluded",
            "LargestItemBytes",
            "LargeItems",
            "RenamedFolders",
            "FolderRules",
            "QuotaUsedBytes",
            "QuotaLimitBytes",
            "FitsQuota",
            "AppendLimit",
            "SourceCapabilities",
            "TargetCapabilities",
            "Seconds",
        ])
        .map_err(report_error)?;
    for user in &analysis.user_results {
        let optional = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        let quota = user.target_quota.as_ref();
        let row = [
            user.email.clone(),
            user.error.clone().unwrap_or_default(),
            user.folders.to_string(),
            user.folders_excluded.join("; "),
            user.messages_found.to_string(),
            user.messages.to_string(),
            user.bytes.to_string(),
            user.messages_excluded.to_string(),
            user.largest_message.to_string(),
            user.large_items.to_string(),
            user.renamed_folders
                .iter()
                .map(|f| format!("{}: {}", f.folder, f.reason))
                .collect::<Vec<_>>()
                .join("; "),
            user.folder_rules
                .iter()
                .map(|f| format!("{} -> {} ({})", f.folder, f.target, f.rule))
                .collect::<Vec<_>>()
                .join("; "),
            optional(quota.map(|q| q.used_bytes)),
            optional(quota.map(|q| q.limit_bytes)),
            user.fits_quota()
                .map(|fits| if fits { "yes" } else { "no" }.to_string())
                .unwrap_or_default(),
            optional(user.append_limit),
            user.source_capabilities.join(" "),
            user.target_capabilities.join(" "),
            format!("{:.1}", user.seconds),
        ];
        writer
            .write_record(row.iter().map(|value| cell(value)))
            .map_err(report_error)?;
    }
    finish(writer)
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn report_cells_never_run_as_formulas() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-2"), "'-2");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("kari@example.org"), "kari@example.org");
        assert_eq!(cell(""), "");
    }
}
