//! A user's statistics as numbers: what the runner records as JSON (the
//! statistics of its syncs, the progress of a running one) the store also
//! keeps as columns, so that a batch's totals are a sum in the database.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Error, Result};

/// Statistics added up over a batch's users; a running sync's copies so
/// far count towards what is copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub folders: u64,
    pub messages_found: u64,
    pub messages_copied: u64,
    pub messages_matched: u64,
    pub messages_skipped: u64,
    pub messages_failed: u64,
    /// Copied, but kept altered by the target (see the error report).
    pub messages_altered: u64,
    pub bytes_copied: u64,
    /// Contacts and calendar items (CardDAV/CalDAV).
    pub contacts_found: u64,
    pub contacts_copied: u64,
    pub events_found: u64,
    pub events_copied: u64,
    pub tasks_found: u64,
    pub tasks_copied: u64,
    /// Refused by the target, or changed on both sides (see the error
    /// report).
    pub contacts_skipped: u64,
    pub events_skipped: u64,
    pub tasks_skipped: u64,
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(column: &'static str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::BadJson {
        column,
        reason: e.to_string(),
    })
}

pub(crate) fn to_json<T: Serialize>(column: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::BadJson {
        column,
        reason: e.to_string(),
    })
}

/// A stored name (a status, a batch type) read back; one that names
/// nothing is an error, never a default.
pub(crate) fn named<T: std::str::FromStr>(row: &AnyRow, column: &'static str) -> Result<T> {
    let text: String = row.try_get(column)?;
    text.parse().map_err(|_| Error::Unknown {
        column,
        value: text,
    })
}

/// Stored JSON that may be absent (statistics) read back as its type.
pub(crate) fn optional_json<T: for<'de> Deserialize<'de>>(
    row: &AnyRow,
    column: &'static str,
) -> Result<Option<T>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| parse(column, &text)).transpose()
}

/// Stored JSON (parameters, overrides) read back as its type.
pub(crate) fn json<T: for<'de> Deserialize<'de>>(row: &AnyRow, column: &'static str) -> Result<T> {
    let text: String = row.try_get(column)?;
    parse(column, &text)
}

/// A count as the databases keep it (a signed 64-bit integer).
pub(crate) fn db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored sum back as a count (never negative: the columns are counts).
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Totals {
    pub(crate) fn add(&mut self, other: &Totals) {
        self.folders += other.folders;
        self.messages_found += other.messages_found;
        self.messages_copied += other.messages_copied;
        self.messages_matched += other.messages_matched;
        self.messages_skipped += other.messages_skipped;
        self.messages_failed += other.messages_failed;
        self.messages_altered += other.messages_altered;
        self.bytes_copied += other.bytes_copied;
        self.contacts_found += other.contacts_found;
        self.contacts_copied += other.contacts_copied;
        self.events_found += other.events_found;
        self.events_copied += other.events_copied;
        self.tasks_found += other.tasks_found;
        self.tasks_copied += other.tasks_copied;
        self.contacts_skipped += other.contacts_skipped;
        self.events_skipped += other.events_skipped;
        self.tasks_skipped += other.tasks_skipped;
    }
}
