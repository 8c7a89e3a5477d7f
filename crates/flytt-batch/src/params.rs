//! A batch's parameters (SPEC §3) and a user's overrides of them, as stored.

use serde::{Deserialize, Serialize};

use crate::csv_import::{BadItemLimit, CsvUser, MailboxType};
use crate::folder_mapping::FolderMapping;

/// What a batch was created with. Per-user CSV values override the
/// matching fields (`UserOverrides`). A field missing from stored JSON
/// (written by an older flytt) takes its default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchParameters {
    pub auto_start: bool,
    pub auto_complete: bool,
    /// RFC 3339 times.
    pub start_after: Option<String>,
    pub complete_after: Option<String>,
    pub notification_emails: Vec<String>,
    pub mailbox_type: Option<MailboxType>,
    pub bad_item_limit: Option<BadItemLimit>,
    pub large_item_limit: Option<u64>,
    pub exclude_folders: Vec<String>,
    pub incremental_sync_interval_secs: u64,
    pub target_delivery_domain: Option<String>,
    /// Staged batches: on completion, make the source mailboxes mail users
    /// that keep only their forwarding (SPEC §1.1, step 6).
    pub convert_source_on_complete: bool,
    /// Staged batches: how mail still arriving at the source is forwarded.
    pub forwarding: Forwarding,
    /// Compare the content of every copy with the source's (read back and
    /// hashed) on every sync; final syncs always do.
    pub verify: bool,
    /// Deletion sync: what the source deleted since a sync copied it is
    /// deleted on the target too: messages (flytt's own copies, where the
    /// target has UIDPLUS), contacts and calendar items (if unchanged on
    /// the target). Off by default.
    pub deletion_sync: bool,
    /// Where source folders go on the target when not by their own path
    /// (`"Old/Path" -> "New/Path"` rules, applied before special-use
    /// mapping).
    pub folder_mapping: FolderMapping,
    /// Skipped and failed messages are reported with their subjects (their
    /// dates always): subjects are personal data, so off by default.
    pub report_subjects: bool,
    /// How a Gmail source's labels arrive: a folder per label (a message
    /// with two labels in both), or each message once with its other
    /// labels as keywords.
    pub gmail_labels: GmailLabels,
}

/// How a Gmail source's labels arrive on the target (sources that offer
/// X-GM-EXT-1; others have no labels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GmailLabels {
    /// Each label a folder, a message in the folder of each of its labels,
    /// as the user saw it in Gmail.
    #[default]
    Folders,
    /// Each message once, in its first label's folder (INBOX, Sent,
    /// Drafts, then the user's labels by name; the archive without one),
    /// its user labels as keywords.
    Keywords,
}

impl std::str::FromStr for GmailLabels {
    type Err = String;

    fn from_str(text: &str) -> Result<GmailLabels, String> {
        match text.to_ascii_lowercase().as_str() {
            "folders" => Ok(GmailLabels::Folders),
            "keywords" => Ok(GmailLabels::Keywords),
            _ => Err(format!("{text:?}: use folders or keywords")),
        }
    }
}

impl GmailLabels {
    pub fn as_str(self) -> &'static str {
        match self {
            GmailLabels::Folders => "folders",
            GmailLabels::Keywords => "keywords",
        }
    }
}

/// Where a staged batch sets forwarding on the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// The directory's forwarding attribute if the source endpoint has a
    /// directory, else a Sieve redirect if it has ManageSieve.
    #[default]
    Auto,
    Directory,
    Sieve,
    Both,
}

impl Forwarding {
    pub fn parse(text: &str) -> Option<Forwarding> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Some(Forwarding::Auto),
            "directory" => Some(Forwarding::Directory),
            "sieve" => Some(Forwarding::Sieve),
            "both" => Some(Forwarding::Both),
            _ => None,
        }
    }
}

/// A user's own values, from the CSV row; `None` takes the batch's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOverrides {
    pub mailbox_type: Option<MailboxType>,
    pub bad_item_limit: Option<BadItemLimit>,
    pub large_item_limit: Option<u64>,
    pub force_change_password: Option<bool>,
    #[serde(default)]
    pub deletion_sync: Option<bool>,
    /// The row's own folder mapping rules, tried before the batch's.
    #[serde(default)]
    pub folder_mapping: Option<FolderMapping>,
}

impl UserOverrides {
    /// Whether deletion sync is on for this user: the CSV row's
    /// DeletionSync, else the batch's.
    pub fn deletion_sync(&self, batch: &BatchParameters) -> bool {
        self.deletion_sync.unwrap_or(batch.deletion_sync)
    }

    /// This user's folder mapping rules: the CSV row's FolderMapping
    /// first, then the batch's, so a row's rule wins where both match.
    pub fn folder_mapping(&self, batch: &BatchParameters) -> FolderMapping {
        match &self.folder_mapping {
            Some(own) => batch.folder_mapping.after(own),
            None => batch.folder_mapping.clone(),
        }
    }
}

/// Where a user's effective value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The user's CSV row.
    Csv,
    /// The batch's parameters.
    Batch,
    /// Neither set it: flytt's default.
    Default,
}

/// One parameter as it applies to a user, and where that comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub parameter: &'static str,
    pub value: String,
    pub origin: Origin,
}

impl UserOverrides {
    /// What this user gets of each parameter a CSV row may override, and
    /// from where: the row, else the batch, else the default (the same
    /// rules the runner applies: `sync_options`).
    pub fn effective(&self, batch: &BatchParameters) -> Vec<Effective> {
        fn pick<T: Clone>(row: &Option<T>, batch: &Option<T>) -> (Option<T>, Origin) {
            match (row, batch) {
                (Some(v), _) => (Some(v.clone()), Origin::Csv),
                (None, Some(v)) => (Some(v.clone()), Origin::Batch),
                (None, None) => (None, Origin::Default),
            }
        }
        let (mailbox_type, mailbox_origin) = pick(&self.mailbox_type, &batch.mailbox_type);
        let (bad_items, bad_origin) = pick(&self.bad_item_limit, &batch.bad_item_limit);
        let (large, large_origin) = pick(&self.large_item_limit, &batch.large_item_limit);
        let deletion_origin = if self.deletion_sync.is_some() {
            Origin::Csv
        } else {
            Origin::Batch
        };
        let mapping = self.folder_mapping(batch);
        let mapping_origin = match (&self.folder_mapping, batch.folder_mapping.is_empty()) {
            (Some(_), _) => Origin::Csv,
            (None, false) => Origin::Batch,
            (None, true) => Origin::Default,
        };
        vec![
            Effective {
                parameter: "MailboxType",
                value: mailbox_type
                    .unwrap_or(MailboxType::PrimaryAndArchive)
                    .name()
                    .to_string(),
                origin: mailbox_origin,
            },
            Effective {
                parameter: "BadItemLimit",
                value: match bad_items.unwrap_or(BadItemLimit::Count(0)) {
                    BadItemLimit::Count(n) => n.to_string(),
                    BadItemLimit::Unlimited => "Unlimited".to_string(),
                },
                origin: bad_origin,
            },
            Effective {
                parameter: "LargeItemLimit",
                value: large.map_or("none".to_string(), crate::size::human_size),
                origin: large_origin,
            },
            Effective {
                parameter: "DeletionSync",
                value: self.deletion_sync(batch).to_string(),
                origin: deletion_origin,
            },
            Effective {
                parameter: "FolderMapping",
                value: if mapping.is_empty() {
                    "none".to_string()
                } else {
                    mapping.rules().join("; ")
                },
                origin: mapping_origin,
            },
        ]
    }
}

impl From<&CsvUser> for UserOverrides {
    fn from(user: &CsvUser) -> Self {
        UserOverrides {
            mailbox_type: user.mailbox_type,
            bad_item_limit: user.bad_item_limit,
            large_item_limit: user.large_item_limit,
            force_change_password: user.force_change_password,
            deletion_sync: user.deletion_sync,
            folder_mapping: user.folder_mapping.clone(),
        }
    }
}

/// Durations as administrators write them: `24h`, `30m`, `2d`, `90s`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(format!("{text:?} is not a duration (e.g. 24h, 30m, 2d)")),
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (e.g. 24h, 30m, 2d)"))?;
        total = total.saturating_add(value.saturating_mul(unit));
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit || total == 0 {
        return Err(format!("{text:?} is not a duration (e.g. 24h, 30m, 2d)"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("24").is_err());
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    /// A row's DeletionSync wins; an empty cell takes the batch's.
    #[test]
    fn deletion_sync_is_the_rows_else_the_batchs() {
        let batch = BatchParameters {
            deletion_sync: true,
            ..BatchParameters::default()
        };
        let row = |deletion_sync| UserOverrides {
            deletion_sync,
            ..UserOverrides::default()
        };
        assert!(row(None).deletion_sync(&batch));
        assert!(!row(Some(false)).deletion_sync(&batch));
        assert!(row(Some(true)).deletion_sync(&BatchParameters::default()));
        assert!(!row(None).deletion_sync(&BatchParameters::default()));
    }

    /// The seed's example: a batch of ArchiveOnly, a row with an empty
    /// MailboxType cell: the user gets ArchiveOnly, from the batch.
    #[test]
    fn effective_values_say_where_they_come_from() {
        let batch = BatchParameters {
            mailbox_type: Some(MailboxType::ArchiveOnly),
            large_item_limit: Some(35 << 20),
            ..BatchParameters::default()
        };
        let row = UserOverrides {
            large_item_limit: Some(50 << 20),
            ..UserOverrides::default()
        };
        let effective = row.effective(&batch);
        let of = |name: &str| {
            effective
                .iter()
                .find(|e| e.parameter == name)
                .map(|e| (e.value.clone(), e.origin))
        };
        assert_eq!(
            of("MailboxType"),
            Some(("ArchiveOnly".into(), Origin::Batch))
        );
        assert_eq!(of("LargeItemLimit"), Some(("50 MB".into(), Origin::Csv)));
        assert_eq!(of("BadItemLimit"), Some(("0".into(), Origin::Default)));
        assert_eq!(of("FolderMapping"), Some(("none".into(), Origin::Default)));
    }

    #[test]
    fn overrides_round_trip_as_json() {
        let overrides = UserOverrides {
            mailbox_type: Some(MailboxType::ArchiveOnly),
            bad_item_limit: Some(BadItemLimit::Unlimited),
            large_item_limit: Some(1 << 20),
            force_change_password: None,
            deletion_sync: Some(true),
            folder_mapping: FolderMapping::parse("Arkiv/* -> Archive/*").ok(),
        };
        let json = serde_json::to_string(&overrides).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<UserOverrides>(&json).ok(),
            Some(overrides)
        );
    }
}
