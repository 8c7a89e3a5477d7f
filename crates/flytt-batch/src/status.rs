//! Batch and user statuses (SPEC §3), as stored and shown.

pub const CREATED: &str = "Created";
pub const SYNCING: &str = "Syncing";
pub const SYNCED: &str = "Synced";
pub const SYNCED_WITH_ERRORS: &str = "SyncedWithErrors";
pub const COMPLETING: &str = "Completing";
pub const COMPLETED: &str = "Completed";
pub const COMPLETED_WITH_ERRORS: &str = "CompletedWithErrors";
pub const STOPPED: &str = "Stopped";
pub const FAILED: &str = "Failed";
pub const QUEUED: &str = "Queued";
pub const INCREMENTAL_SYNCING: &str = "IncrementalSyncing";

/// Every status a user can have.
pub const USER_STATUSES: &[&str] = &[
    QUEUED,
    SYNCING,
    SYNCED,
    INCREMENTAL_SYNCING,
    COMPLETING,
    COMPLETED,
    FAILED,
];
