//! Migration batches. This first part is the CSV import: one row per user,
//! validated completely before a batch exists, every problem reported at
//! once with its line number (SPEC §1.2, §4.1).

pub mod analysis;
pub mod csv_import;
pub mod folder_mapping;
pub mod parameter;
pub mod params;
pub mod size;
pub mod stats;
pub mod status;

pub use analysis::{
    AnalysisRun, BatchAnalysis, ProbeRate, QuotaUse, RenamedFolder, RuledFolder, UserAnalysis,
};
pub use csv_import::{
    BadItemLimit, BatchType, Column, CsvError, CsvUser, MailboxType, Password, UnknownBatchType,
    parse_users,
};
pub use folder_mapping::{FolderMapping, FolderMappingError, Mapped};
pub use parameter::{DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS, Parameter, ParameterError};
pub use params::{
    BatchParameters, Effective, Forwarding, GmailLabels, Origin, UserOverrides, parse_duration,
};
pub use stats::{
    DavStatistics, FolderCount, ItemCounts, PartialSync, SieveStatistics, StatisticsIssue,
    SyncProgress, UserStatistics, duration_words,
};
pub use status::{
    AnalysisState, BatchAction, BatchStatus, UnknownStatus, UserAction, UserChange, UserRequest,
    UserStatus,
};
