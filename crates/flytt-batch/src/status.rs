//! Batch and user statuses (SPEC §3), as stored and shown: one enum each,
//! spelled as the SPEC spells them. A stored text that names no status is
//! an error, never a default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A text that names no status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no such status: {0:?}")]
pub struct UnknownStatus(pub String);

/// Declares a status enum whose variants are spelled as their names.
macro_rules! statuses {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every status, in the order a batch goes through them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(text: &str) -> Result<Self, UnknownStatus> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|s| s.as_str() == text)
                    .ok_or_else(|| UnknownStatus(text.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

statuses!(
    /// Where a batch is.
    BatchStatus {
        Created,
        Syncing,
        Synced,
        SyncedWithErrors,
        Stopped,
        Completing,
        Completed,
        CompletedWithErrors,
    }
);

statuses!(
    /// Where a batch's analysis (`flytt batch analyze`) is.
    AnalysisState {
        /// Asked for; a runner (or the CLI) will take it up.
        Requested,
        Running,
        Done,
        /// Ended before every user was looked at (the reason is kept).
        Failed,
    }
);

statuses!(
    /// Where one user of a batch is.
    UserStatus {
        Queued,
        Syncing,
        Synced,
        IncrementalSyncing,
        Completing,
        Completed,
        Failed,
    }
);

/// What an administrator asks of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchAction {
    Start,
    Stop,
    Complete,
    /// Queue the failed users again.
    Retry,
    /// Add users from another CSV file.
    AddUsers,
}

impl BatchAction {
    /// How the action is named in messages ("it cannot be started").
    pub fn done(self) -> &'static str {
        match self {
            BatchAction::Start => "started",
            BatchAction::Stop => "stopped",
            BatchAction::Complete => "completed",
            BatchAction::Retry => "retried",
            BatchAction::AddUsers => "given more users",
        }
    }
}

impl BatchStatus {
    /// The one table of what an administrator's action does to a batch:
    /// its next status, or none when the action is not allowed from here.
    /// (`Retry` and `AddUsers` also queue users: see flytt-control.)
    pub fn after(self, action: BatchAction) -> Option<BatchStatus> {
        use BatchStatus::*;
        match (action, self) {
            (BatchAction::Start, Created | Stopped | Syncing | Synced | SyncedWithErrors) => {
                Some(Syncing)
            }
            (BatchAction::Stop, Completed | CompletedWithErrors) => None,
            (BatchAction::Stop, _) => Some(Stopped),
            (BatchAction::Complete, Syncing | Synced | SyncedWithErrors) => Some(Completing),
            // Failed users of a synced batch sync again; of a completed
            // one, they get their final sync.
            (BatchAction::Retry, Synced | SyncedWithErrors) => Some(Syncing),
            (BatchAction::Retry, Completed | CompletedWithErrors) => Some(Completing),
            (BatchAction::Retry, _) => Some(self),
            (BatchAction::AddUsers, Completed | CompletedWithErrors) => None,
            (BatchAction::AddUsers, Synced | SyncedWithErrors) => Some(Syncing),
            (BatchAction::AddUsers, _) => Some(self),
            _ => None,
        }
    }

    /// Completed, with or without errors: the batch's users may join
    /// another batch.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed | BatchStatus::CompletedWithErrors
        )
    }
}

impl UserStatus {
    /// A sync of the user is running (it holds a lease).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            UserStatus::Syncing | UserStatus::IncrementalSyncing | UserStatus::Completing
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_written_and_unknown_ones_are_errors() {
        for status in BatchStatus::ALL {
            assert_eq!(status.as_str().parse::<BatchStatus>(), Ok(*status));
        }
        for status in UserStatus::ALL {
            assert_eq!(status.to_string().parse::<UserStatus>(), Ok(*status));
        }
        assert_eq!(
            "Synced ".parse::<UserStatus>(),
            Err(UnknownStatus("Synced ".into()))
        );
        assert_eq!(
            serde_json::to_string(&BatchStatus::SyncedWithErrors).ok(),
            Some("\"SyncedWithErrors\"".into())
        );
    }

    #[test]
    fn a_completed_batch_takes_no_new_users_and_is_not_started_again() {
        assert_eq!(BatchStatus::Completed.after(BatchAction::AddUsers), None);
        assert_eq!(BatchStatus::Completed.after(BatchAction::Start), None);
        assert_eq!(
            BatchStatus::Completed.after(BatchAction::Retry),
            Some(BatchStatus::Completing)
        );
        assert_eq!(
            BatchStatus::Synced.after(BatchAction::Complete),
            Some(BatchStatus::Completing)
        );
        assert_eq!(BatchStatus::Created.after(BatchAction::Complete), None);
    }
}
