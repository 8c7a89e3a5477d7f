//! The batch's two reports as CSV: one row per user, and one row per
//! skipped or failed item (and per failed user). A spreadsheet is where
//! administrators open them, so no cell may run as a formula.

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

fn stats(user: &BatchUser) -> serde_json::Value {
    user.stats
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
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
            "BytesCopied",
            "LastSyncedAt",
        ])
        .map_err(report_error)?;
    for user in users {
        let stats = stats(user);
        let number = |field: &str| {
            stats[field]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let row = [
            user.email.clone(),
            user.status.to_string(),
            user.error.clone().unwrap_or_default(),
            number("folders"),
            number("messages_found"),
            number("messages_copied"),
            number("messages_matched"),
            number("messages_skipped"),
            number("messages_failed"),
            number("messages_altered"),
            number("bytes_copied"),
            user.last_synced_at
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
        .write_record(["EmailAddress", "Kind", "Folder", "Uid", "Reason"])
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
                ])
                .map_err(report_error)?;
        }
        let stats = stats(user);
        for issue in stats["issues"].as_array().into_iter().flatten() {
            let text = |field: &str| issue[field].as_str().unwrap_or_default().to_string();
            writer
                .write_record([
                    cell(&user.email),
                    cell(&text("kind")),
                    cell(&text("folder")),
                    issue["uid"]
                        .as_u64()
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    cell(&text("reason")),
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
