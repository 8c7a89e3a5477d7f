//! The one parser of batch parameters and the rules of when they may
//! change. The CLI's flags, the API's JSON fields and the dashboard's form
//! fields all arrive as text and go through `BatchParameters::set`, so a
//! value means the same, and is refused with the same words, whichever
//! way it came; `Parameter::may_change` says which may change in which
//! status (`batch set`, `PATCH /api/v1/batches/{name}`).

use std::fmt;

use crate::csv_import::{BadItemLimit, BatchType, Column, MailboxType};
use crate::folder_mapping::FolderMapping;
use crate::params::{BatchParameters, Forwarding, GmailLabels, parse_duration};
use crate::size::parse_size;
use crate::status::BatchStatus;

/// A batch parameter, by the name administrators know from Exchange's
/// New-MigrationBatch (the API spells it in snake case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Parameter {
    AutoStart,
    AutoComplete,
    StartAfter,
    CompleteAfter,
    NotificationEmails,
    MailboxType,
    BadItemLimit,
    LargeItemLimit,
    ExcludeFolders,
    IncrementalSyncInterval,
    TargetDeliveryDomain,
    ConvertSourceOnComplete,
    Forwarding,
    Verify,
    DeletionSync,
    FolderMapping,
    ReportSubjects,
    GmailLabels,
}

/// A value a parameter does not take, or a change its batch's status does
/// not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct ParameterError {
    pub parameter: Parameter,
    pub message: String,
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Parameter {
    pub const ALL: &'static [Parameter] = &[
        Parameter::AutoStart,
        Parameter::AutoComplete,
        Parameter::StartAfter,
        Parameter::CompleteAfter,
        Parameter::NotificationEmails,
        Parameter::MailboxType,
        Parameter::BadItemLimit,
        Parameter::LargeItemLimit,
        Parameter::ExcludeFolders,
        Parameter::IncrementalSyncInterval,
        Parameter::TargetDeliveryDomain,
        Parameter::ConvertSourceOnComplete,
        Parameter::Forwarding,
        Parameter::Verify,
        Parameter::DeletionSync,
        Parameter::FolderMapping,
        Parameter::ReportSubjects,
        Parameter::GmailLabels,
    ];

    /// As Exchange spells it: `NotificationEmails`.
    pub fn name(self) -> &'static str {
        match self {
            Parameter::AutoStart => "AutoStart",
            Parameter::AutoComplete => "AutoComplete",
            Parameter::StartAfter => "StartAfter",
            Parameter::CompleteAfter => "CompleteAfter",
            Parameter::NotificationEmails => "NotificationEmails",
            Parameter::MailboxType => "MailboxType",
            Parameter::BadItemLimit => "BadItemLimit",
            Parameter::LargeItemLimit => "LargeItemLimit",
            Parameter::ExcludeFolders => "ExcludeFolders",
            Parameter::IncrementalSyncInterval => "IncrementalSyncInterval",
            Parameter::TargetDeliveryDomain => "TargetDeliveryDomain",
            Parameter::ConvertSourceOnComplete => "ConvertSourceOnComplete",
            Parameter::Forwarding => "Forwarding",
            Parameter::Verify => "Verify",
            Parameter::DeletionSync => "DeletionSync",
            Parameter::FolderMapping => "FolderMapping",
            Parameter::ReportSubjects => "ReportSubjects",
            Parameter::GmailLabels => "GmailLabels",
        }
    }

    /// As the API and the dashboard's forms spell it: `notification_emails`.
    pub fn field(self) -> String {
        let mut field = String::new();
        for (i, c) in self.name().chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                field.push('_');
            }
            field.push(c.to_ascii_lowercase());
        }
        field
    }

    /// The parameter of a name, in either spelling, any case.
    pub fn from_name(text: &str) -> Option<Parameter> {
        let wanted: String = text
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Parameter::ALL
            .iter()
            .copied()
            .find(|p| p.name().to_ascii_lowercase() == wanted)
    }

    /// Whether the parameter may change while the batch is in `status`
    /// (as Set-MigrationBatch): nothing once it is completed or being
    /// removed; what shapes the initial copy (mailbox scope, folders,
    /// Gmail labels) only before it started, so that no user's mail
    /// is split between two rules; StartAfter and AutoStart only before
    /// it started; the rest (limits, notifications, completion, the
    /// interval, checks) at any time in between.
    pub fn may_change(self, status: BatchStatus) -> bool {
        use BatchStatus::*;
        if status.is_completed() || matches!(status, Completing | Removing) {
            return false;
        }
        match self {
            Parameter::AutoStart
            | Parameter::StartAfter
            | Parameter::MailboxType
            | Parameter::ExcludeFolders
            | Parameter::FolderMapping
            | Parameter::GmailLabels
            | Parameter::Forwarding
            | Parameter::TargetDeliveryDomain => status == Created,
            _ => true,
        }
    }

    /// Whether the parameter does anything in a batch of `batch_type`:
    /// converting the source mailboxes is the staged flow's last step;
    /// forwarding (and the domain it forwards to) is set by staged
    /// migrations and remote moves, not by an IMAP batch; the mailbox
    /// scope is what the type's CSV may override (a staged batch moves
    /// whole mailboxes). The new batch form offers only these, and a batch
    /// refuses the others set to anything but their default.
    pub fn fits(self, batch_type: BatchType) -> bool {
        match self {
            Parameter::ConvertSourceOnComplete => batch_type == BatchType::Staged,
            Parameter::Forwarding | Parameter::TargetDeliveryDomain => {
                batch_type != BatchType::Imap
            }
            Parameter::MailboxType => batch_type.allowed().contains(&Column::MailboxType),
            _ => true,
        }
    }

    /// The batch types it fits, by name (`imap staged`), for the form.
    pub fn types(self) -> String {
        BatchType::ALL
            .iter()
            .filter(|t| self.fits(**t))
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn error(self, message: impl Into<String>) -> ParameterError {
        ParameterError {
            parameter: self,
            message: message.into(),
        }
    }
}

impl BatchParameters {
    /// Sets `parameter` from its text: the one parser of batch parameters
    /// for the CLI, the API and the dashboard. Empty text is the
    /// parameter's default (off, none, 24 h).
    pub fn set(&mut self, parameter: Parameter, text: &str) -> Result<(), ParameterError> {
        let text = text.trim();
        let flag = || {
            parse_flag(text).ok_or_else(|| parameter.error(format!("{text:?}: use true or false")))
        };
        let optional = || Some(text.to_string()).filter(|t| !t.is_empty());
        match parameter {
            Parameter::AutoStart => self.auto_start = flag()?,
            Parameter::AutoComplete => self.auto_complete = flag()?,
            Parameter::ConvertSourceOnComplete => self.convert_source_on_complete = flag()?,
            Parameter::Verify => self.verify = flag()?,
            Parameter::DeletionSync => self.deletion_sync = flag()?,
            Parameter::ReportSubjects => self.report_subjects = flag()?,
            Parameter::StartAfter => self.start_after = time(parameter, text)?,
            Parameter::CompleteAfter => self.complete_after = time(parameter, text)?,
            Parameter::NotificationEmails => {
                self.notification_emails = addresses(parameter, text)?;
            }
            Parameter::MailboxType => {
                self.mailbox_type = match text {
                    "" => None,
                    m => Some(MailboxType::parse(m).ok_or_else(|| {
                        parameter.error(format!(
                            "{m:?}: use PrimaryOnly, ArchiveOnly or PrimaryAndArchive"
                        ))
                    })?),
                };
            }
            Parameter::BadItemLimit => {
                self.bad_item_limit = match text {
                    "" => None,
                    l => Some(BadItemLimit::parse(l).ok_or_else(|| {
                        parameter.error(format!("{l:?}: use a number or Unlimited"))
                    })?),
                };
            }
            Parameter::LargeItemLimit => {
                self.large_item_limit = match text {
                    "" => None,
                    l => Some(parse_size(l).map_err(|e| parameter.error(e))?),
                };
            }
            Parameter::ExcludeFolders => self.exclude_folders = patterns(text),
            Parameter::IncrementalSyncInterval => {
                self.incremental_sync_interval_secs = match text {
                    "" => DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS,
                    i => parse_duration(i).map_err(|e| parameter.error(e))?,
                };
            }
            Parameter::TargetDeliveryDomain => {
                let domain = optional();
                if let Some(d) = &domain
                    && (!d.contains('.') || d.contains(['@', ' ', '/']))
                {
                    return Err(parameter.error(format!("{d:?} is not a mail domain")));
                }
                self.target_delivery_domain = domain;
            }
            Parameter::Forwarding => {
                self.forwarding = match text {
                    "" => Forwarding::Auto,
                    f => Forwarding::parse(f).ok_or_else(|| {
                        parameter.error(format!("{f:?}: use auto, directory, sieve or both"))
                    })?,
                };
            }
            Parameter::FolderMapping => {
                self.folder_mapping =
                    FolderMapping::parse(text).map_err(|e| parameter.error(e.to_string()))?;
            }
            Parameter::GmailLabels => {
                self.gmail_labels = match text {
                    "" => GmailLabels::default(),
                    g => g.parse().map_err(|e: String| parameter.error(e))?,
                };
            }
        }
        Ok(())
    }

    /// `parameter`'s value as text that `set` reads back to the same value
    /// (a form's current value; lists one item per line).
    pub fn text(&self, parameter: Parameter) -> String {
        let lines = |items: &[String]| items.join("\n");
        match parameter {
            Parameter::AutoStart => self.auto_start.to_string(),
            Parameter::AutoComplete => self.auto_complete.to_string(),
            Parameter::ConvertSourceOnComplete => self.convert_source_on_complete.to_string(),
            Parameter::Verify => self.verify.to_string(),
            Parameter::DeletionSync => self.deletion_sync.to_string(),
            Parameter::ReportSubjects => self.report_subjects.to_string(),
            Parameter::StartAfter => self.start_after.clone().unwrap_or_default(),
            Parameter::CompleteAfter => self.complete_after.clone().unwrap_or_default(),
            Parameter::NotificationEmails => self.notification_emails.join(", "),
            Parameter::MailboxType => self
                .mailbox_type
                .map(|m| m.name().to_string())
                .unwrap_or_default(),
            Parameter::BadItemLimit => match self.bad_item_limit {
                None => String::new(),
                Some(BadItemLimit::Count(n)) => n.to_string(),
                Some(BadItemLimit::Unlimited) => "Unlimited".to_string(),
            },
            Parameter::LargeItemLimit => self
                .large_item_limit
                .map(crate::size::human_size)
                .unwrap_or_default(),
            Parameter::ExcludeFolders => lines(&self.exclude_folders),
            Parameter::IncrementalSyncInterval => {
                duration_text(self.incremental_sync_interval_secs)
            }
            Parameter::TargetDeliveryDomain => {
                self.target_delivery_domain.clone().unwrap_or_default()
            }
            Parameter::Forwarding => format!("{:?}", self.forwarding).to_lowercase(),
            Parameter::FolderMapping => lines(&self.folder_mapping.rules()),
            Parameter::GmailLabels => self.gmail_labels.as_str().to_string(),
        }
    }

    /// Parameters from their texts, over the defaults.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (Parameter, &'a str)>,
    ) -> Result<BatchParameters, ParameterError> {
        let mut parameters = BatchParameters {
            incremental_sync_interval_secs: DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS,
            ..BatchParameters::default()
        };
        for (parameter, text) in texts {
            parameters.set(parameter, text)?;
        }
        Ok(parameters)
    }

    /// Checks values that arrived typed (the stored JSON of an older
    /// flytt, a caller that built the struct) by the same rules `set`
    /// applies to text.
    /// Refuses a parameter set (to anything but its default) in a batch
    /// of a type where it does nothing (`Parameter::fits`).
    pub fn check_fits(&self, batch_type: BatchType) -> Result<(), ParameterError> {
        Parameter::ALL
            .iter()
            .try_for_each(|&parameter| self.check_fit(parameter, batch_type))
    }

    /// `check_fits` for one parameter (`batch set` checks only what it
    /// changes).
    pub fn check_fit(
        &self,
        parameter: Parameter,
        batch_type: BatchType,
    ) -> Result<(), ParameterError> {
        if parameter.fits(batch_type)
            || self.text(parameter) == BatchParameters::default().text(parameter)
        {
            return Ok(());
        }
        Err(parameter.error(format!(
            "does nothing in {} batch (it fits {} batches); leave it out",
            article(batch_type.name()),
            parameter.types().replace(' ', ", ")
        )))
    }

    pub fn check(&self) -> Result<(), ParameterError> {
        for (parameter, value) in [
            (Parameter::StartAfter, &self.start_after),
            (Parameter::CompleteAfter, &self.complete_after),
        ] {
            if let Some(value) = value {
                time(parameter, value)?;
            }
        }
        addresses(
            Parameter::NotificationEmails,
            &self.notification_emails.join(","),
        )?;
        if self.incremental_sync_interval_secs == 0 {
            return Err(Parameter::IncrementalSyncInterval.error("must be longer than 0"));
        }
        Ok(())
    }
}

/// `an imap`, `a staged`.
fn article(word: &str) -> String {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {word}")
    } else {
        format!("a {word}")
    }
}

/// A day: what a batch waits between incremental syncs unless told.
pub const DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS: u64 = 86_400;

/// A duration as `parse_duration` reads it: `1h30m`, `2d`, `90s`.
fn duration_text(seconds: u64) -> String {
    let mut text = String::new();
    let mut left = seconds;
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if left >= size {
            text.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    text
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "off" | "0" => Some(false),
        "true" | "yes" | "on" | "1" => Some(true),
        _ => None,
    }
}

/// A comma (or line) separated list, empty entries left out.
fn list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Folder patterns: one per line where there are lines (a name may hold
/// a comma: the CLI and the API send their lists so), else comma separated
/// (the dashboard's field).
fn patterns(text: &str) -> Vec<String> {
    let separator = if text.contains('\n') { '\n' } else { ',' };
    text.split(separator)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// An RFC 3339 time with its offset, or none.
fn time(parameter: Parameter, text: &str) -> Result<Option<String>, ParameterError> {
    if text.is_empty() {
        return Ok(None);
    }
    let fine = chrono::DateTime::parse_from_rfc3339(text).is_ok();
    if fine {
        Ok(Some(text.to_string()))
    } else {
        Err(parameter.error(format!(
            "{text:?} is not a time like 2026-12-01T18:00:00+01:00"
        )))
    }
}

fn addresses(parameter: Parameter, text: &str) -> Result<Vec<String>, ParameterError> {
    let addresses = list(text);
    for address in &addresses {
        let fine = address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !address.chars().any(|c| c.is_whitespace() || c.is_control());
        if !fine {
            return Err(parameter.error(format!("{address:?} is not an email address")));
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_both_spellings() {
        for parameter in Parameter::ALL {
            assert_eq!(Parameter::from_name(parameter.name()), Some(*parameter));
            assert_eq!(Parameter::from_name(&parameter.field()), Some(*parameter));
        }
        assert_eq!(Parameter::NotificationEmails.field(), "notification_emails");
        assert_eq!(
            Parameter::from_name("complete-after"),
            Some(Parameter::CompleteAfter)
        );
        assert_eq!(Parameter::from_name("Colour"), None);
    }

    #[test]
    fn one_parser_with_clear_refusals() {
        let parameters = BatchParameters::from_texts([
            (Parameter::NotificationEmails, "a@x.org, b@y.org"),
            (Parameter::LargeItemLimit, "35MB"),
            (Parameter::BadItemLimit, "unlimited"),
            (Parameter::IncrementalSyncInterval, "1h30m"),
            (Parameter::CompleteAfter, "2026-12-01T18:00:00+01:00"),
            (Parameter::AutoComplete, "true"),
        ]);
        let parameters = parameters.expect("parameters");
        assert_eq!(parameters.notification_emails, ["a@x.org", "b@y.org"]);
        assert_eq!(parameters.large_item_limit, Some(35 * 1024 * 1024));
        assert_eq!(parameters.bad_item_limit, Some(BadItemLimit::Unlimited));
        assert_eq!(parameters.incremental_sync_interval_secs, 5_400);
        assert!(parameters.auto_complete);
        assert_eq!(parameters.check(), Ok(()));
        let mut folders = BatchParameters::default();
        let set = folders.set(Parameter::ExcludeFolders, "Privat, gammelt\nSpam");
        assert_eq!(set, Ok(()));
        assert_eq!(folders.exclude_folders, ["Privat, gammelt", "Spam"]);
        let defaults = BatchParameters::from_texts([]).expect("defaults");
        assert_eq!(defaults.incremental_sync_interval_secs, 86_400);

        for (parameter, text, says) in [
            (
                Parameter::NotificationEmails,
                "nobody",
                "is not an email address",
            ),
            (Parameter::CompleteAfter, "tomorrow", "is not a time"),
            (Parameter::MailboxType, "Everything", "PrimaryOnly"),
            (Parameter::IncrementalSyncInterval, "0h", "not a duration"),
            (Parameter::AutoStart, "perhaps", "true or false"),
            (
                Parameter::TargetDeliveryDomain,
                "a@b.org",
                "not a mail domain",
            ),
        ] {
            let refused = BatchParameters::default().set(parameter, text);
            let message = refused.map_err(|e| e.to_string()).err().unwrap_or_default();
            assert!(
                message.starts_with(parameter.name()) && message.contains(says),
                "{parameter} {text:?}: {message}"
            );
        }
    }

    /// What `text` writes, `set` reads back to the same parameters.
    #[test]
    fn texts_read_back() {
        let parameters = BatchParameters::from_texts([
            (Parameter::NotificationEmails, "a@x.org, b@y.org"),
            (Parameter::LargeItemLimit, "35MB"),
            (Parameter::BadItemLimit, "unlimited"),
            (Parameter::IncrementalSyncInterval, "1h30m"),
            (Parameter::ExcludeFolders, "Privat, gammelt\nSpam"),
            (Parameter::FolderMapping, "Arkiv/* -> Archive/*"),
            (Parameter::MailboxType, "ArchiveOnly"),
            (Parameter::Forwarding, "sieve"),
            (Parameter::GmailLabels, "keywords"),
            (Parameter::Verify, "true"),
        ])
        .expect("parameters");
        let mut again = BatchParameters::default();
        for parameter in Parameter::ALL {
            let text = parameters.text(*parameter);
            assert_eq!(
                again.set(*parameter, &text),
                Ok(()),
                "{parameter}: {text:?}"
            );
        }
        assert_eq!(again, parameters);
    }

    #[test]
    fn what_may_change_when() {
        assert!(Parameter::NotificationEmails.may_change(BatchStatus::Syncing));
        assert!(Parameter::CompleteAfter.may_change(BatchStatus::SyncedWithErrors));
        assert!(Parameter::MailboxType.may_change(BatchStatus::Created));
        assert!(!Parameter::MailboxType.may_change(BatchStatus::Syncing));
        assert!(!Parameter::StartAfter.may_change(BatchStatus::Stopped));
        assert!(!Parameter::NotificationEmails.may_change(BatchStatus::Completed));
        assert!(!Parameter::LargeItemLimit.may_change(BatchStatus::Completing));
    }

    /// What does nothing in a type is refused there when set, and only
    /// then: a parameter left at its default passes in any batch.
    #[test]
    fn what_fits_which_type() {
        assert_eq!(Parameter::ConvertSourceOnComplete.types(), "staged");
        assert_eq!(
            Parameter::TargetDeliveryDomain.types(),
            "staged onboarding offboarding"
        );
        assert_eq!(
            Parameter::MailboxType.types(),
            "imap onboarding offboarding"
        );
        assert_eq!(
            Parameter::LargeItemLimit.types(),
            "imap staged onboarding offboarding"
        );
        let untouched = BatchParameters::default();
        for batch_type in BatchType::ALL {
            assert_eq!(untouched.check_fits(batch_type), Ok(()));
        }
        let mut forwarding = BatchParameters::default();
        forwarding
            .set(Parameter::TargetDeliveryDomain, "ny.example.org")
            .expect("a domain");
        assert_eq!(forwarding.check_fits(BatchType::Staged), Ok(()));
        let refused = forwarding
            .check_fits(BatchType::Imap)
            .expect_err("no forwarding in an IMAP batch");
        assert_eq!(refused.parameter, Parameter::TargetDeliveryDomain);
        assert_eq!(
            refused.to_string(),
            "TargetDeliveryDomain: does nothing in an imap batch (it fits staged, onboarding, offboarding batches); leave it out"
        );
        let mut archive = BatchParameters::default();
        archive
            .set(Parameter::MailboxType, "ArchiveOnly")
            .expect("a scope");
        assert!(archive.check_fits(BatchType::Staged).is_err());
        assert_eq!(archive.check_fits(BatchType::Onboarding), Ok(()));
    }
}
