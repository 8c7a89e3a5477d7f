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
        /// Stopped by the administrator while syncs ran: they end at their
        /// next safe point, then the batch is Stopped.
        Stopping,
        Stopped,
        Completing,
        Completed,
        CompletedWithErrors,
        /// Removed by the administrator while syncs ran: they end at their
        /// next safe point, then the batch and its users are gone.
        Removing,
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
        /// Stopped by the administrator (`user stop`): no sync starts until
        /// it is retried.
        Stopped,
        Failed,
    }
);

statuses!(
    /// What an administrator asked of a user whose sync was running: the
    /// runner ends the sync at its next safe point, then does it.
    UserRequest {
        /// Then the user is Stopped.
        Stop,
        /// Then the user is taken out of its batch.
        Remove,
        /// A synced user's final sync, now, before its batch completes
        /// (then it is Completed).
        Complete,
    }
);

impl UserRequest {
    /// Whether the request ends a running sync first (Complete starts one).
    pub fn ends_the_sync(self) -> bool {
        matches!(self, UserRequest::Stop | UserRequest::Remove)
    }
}

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
    /// Take the batch and its users out of the store.
    Remove,
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
            BatchAction::Remove => "removed",
        }
    }
}

impl BatchStatus {
    /// The one table of what an administrator's action does to a batch:
    /// its next status, or none when the action is not allowed from here.
    /// (`Retry` and `AddUsers` also queue users: see flytt-control.) Stop
    /// and Remove go through Stopping and Removing: a batch whose syncs
    /// have all ended goes on at once (`when_idle`).
    pub fn after(self, action: BatchAction) -> Option<BatchStatus> {
        use BatchStatus::*;
        match (action, self) {
            (BatchAction::Remove, _) => Some(Removing),
            (_, Removing) => None,
            (
                BatchAction::Start,
                Created | Stopping | Stopped | Syncing | Synced | SyncedWithErrors,
            ) => Some(Syncing),
            (BatchAction::Stop, Completed | CompletedWithErrors | Stopped) => None,
            (BatchAction::Stop, _) => Some(Stopping),
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

    /// Where the batch is once none of its users' syncs runs any more: a
    /// Stopping batch is Stopped (a Removing one is removed by the caller).
    pub fn when_idle(self) -> BatchStatus {
        match self {
            BatchStatus::Stopping => BatchStatus::Stopped,
            other => other,
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

/// What an administrator asks of one user (Exchange's Start-, Stop-,
/// Complete- and Remove-MigrationUser).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// Queue a failed or stopped user again.
    Retry,
    Stop,
    Remove,
    /// A synced user's final sync now (Complete-MigrationUser).
    Complete,
}

impl UserAction {
    /// How the action is named in messages ("it cannot be stopped").
    pub fn done(self) -> &'static str {
        match self {
            UserAction::Retry => "retried",
            UserAction::Stop => "stopped",
            UserAction::Remove => "removed",
            UserAction::Complete => "completed",
        }
    }
}

/// What a user action does, as `UserStatus::after` decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserChange {
    /// The user's status becomes this now.
    Now(UserStatus),
    /// Recorded as a request: carried out at once if no runner holds the
    /// user, else when its sync has ended at its next safe point.
    Request(UserRequest),
}

impl UserStatus {
    /// The one table of what an administrator's action does to a user;
    /// none when it is not allowed from here.
    pub fn after(self, action: UserAction) -> Option<UserChange> {
        use UserStatus::*;
        match (action, self) {
            (UserAction::Retry, Failed | Stopped) => Some(UserChange::Now(Queued)),
            (UserAction::Retry, _) => None,
            (UserAction::Stop, Completed | Stopped | Failed) => None,
            (UserAction::Stop, _) => Some(UserChange::Request(UserRequest::Stop)),
            (UserAction::Remove, _) => Some(UserChange::Request(UserRequest::Remove)),
            (UserAction::Complete, Synced) => Some(UserChange::Request(UserRequest::Complete)),
            (UserAction::Complete, _) => None,
        }
    }

    /// Whether the user counts as done badly in its batch's outcome
    /// (SyncedWithErrors, CompletedWithErrors).
    pub fn is_unsuccessful(self) -> bool {
        matches!(self, UserStatus::Failed | UserStatus::Stopped)
    }

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

    #[test]
    fn stop_and_remove_wait_for_running_syncs() {
        assert_eq!(
            BatchStatus::Syncing.after(BatchAction::Stop),
            Some(BatchStatus::Stopping)
        );
        assert_eq!(BatchStatus::Stopping.when_idle(), BatchStatus::Stopped);
        assert_eq!(BatchStatus::Stopped.after(BatchAction::Stop), None);
        assert_eq!(
            BatchStatus::Stopping.after(BatchAction::Start),
            Some(BatchStatus::Syncing)
        );
        assert_eq!(
            BatchStatus::Completed.after(BatchAction::Remove),
            Some(BatchStatus::Removing)
        );
        assert_eq!(BatchStatus::Removing.after(BatchAction::Start), None);
        assert_eq!(
            UserStatus::Syncing.after(UserAction::Stop),
            Some(UserChange::Request(UserRequest::Stop))
        );
        assert_eq!(UserStatus::Completed.after(UserAction::Stop), None);
        assert_eq!(
            UserStatus::Stopped.after(UserAction::Retry),
            Some(UserChange::Now(UserStatus::Queued))
        );
        assert_eq!(UserStatus::Synced.after(UserAction::Retry), None);
        assert_eq!(
            UserStatus::Completed.after(UserAction::Remove),
            Some(UserChange::Request(UserRequest::Remove))
        );
        assert_eq!(
            UserStatus::Synced.after(UserAction::Complete),
            Some(UserChange::Request(UserRequest::Complete))
        );
        assert_eq!(UserStatus::Queued.after(UserAction::Complete), None);
    }
}
