//! What an administrator does with one user of a batch, as Exchange's
//! Start-, Stop-, Complete-, Remove- and Set-MigrationUser: retry a failed
//! or stopped user, stop one, complete one before its batch, remove one,
//! change its sign-in details, move it to another batch. The table of
//! which status allows which action is `UserStatus::after`; a running
//! user's stop or removal is a request the runner holding it carries out
//! at the sync's next safe point.

use flytt_batch::{BatchAction, UserAction, UserChange, UserStatus};
use flytt_secrets::SecretString;
use flytt_store::{UserChanges, UserRef};

use crate::{Control, ControlError, Result, keyring};

/// New sign-in details for a user (`user set`); what is `None` stays.
#[derive(Default)]
pub struct NewLogin {
    pub user_name: Option<String>,
    pub password: Option<SecretString>,
    pub target_user_name: Option<String>,
    pub target_password: Option<SecretString>,
}

/// Where a user is after an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserOutcome {
    /// Its status now.
    Now(UserStatus),
    /// Its sync is running and stops at its next safe point; then it is
    /// Stopped, or removed.
    Stopping,
    /// Taken out of its batch.
    Removed,
    /// Its final sync starts when a slot is free; then it is Completed.
    Completing,
}

impl Control {
    /// The user with this address, in `batch` if given, else in its active
    /// batch.
    pub async fn user(&self, email: &str, batch: Option<&str>) -> Result<UserRef> {
        Ok(self.store.user_ref(email, batch).await?)
    }

    /// Does `action` to the user (the one dispatch for the API's and the
    /// dashboard's per-user routes).
    pub async fn act_on_user(
        &self,
        email: &str,
        batch: Option<&str>,
        action: UserAction,
    ) -> Result<UserOutcome> {
        match action {
            UserAction::Retry => self.retry_user(email, batch).await,
            UserAction::Stop => self.stop_user(email, batch).await,
            UserAction::Complete => self.complete_user(email, batch).await,
            UserAction::Remove => self.remove_user(email, batch).await,
        }
    }

    /// Queues a failed or stopped user again; its batch syncs again if it
    /// had finished (a completed batch gives it its final sync).
    pub async fn retry_user(&self, email: &str, batch: Option<&str>) -> Result<UserOutcome> {
        let user = self.user(email, batch).await?;
        let summary = self.store.batch(&user.batch).await?;
        self.carry_out(&user, UserAction::Retry).await?;
        if let Some(batch_next) = summary.status.after(BatchAction::Retry) {
            self.store.set_batch_status(&user.batch, batch_next).await?;
        }
        let now = self.store.user_ref(&user.email, Some(&user.batch)).await?;
        Ok(UserOutcome::Now(now.status))
    }

    /// Stops one user: no sync of it starts until it is retried; a running
    /// one ends at its next safe point.
    pub async fn stop_user(&self, email: &str, batch: Option<&str>) -> Result<UserOutcome> {
        let user = self.user(email, batch).await?;
        self.carry_out(&user, UserAction::Stop).await?;
        let now = self.store.user_ref(&user.email, Some(&user.batch)).await?;
        Ok(if now.requested.is_some() {
            UserOutcome::Stopping
        } else {
            UserOutcome::Now(now.status)
        })
    }

    /// Completes one synced user before its batch (Complete-MigrationUser):
    /// a runner gives it its final sync when a slot is free, then it is
    /// Completed; the rest of the batch goes on.
    pub async fn complete_user(&self, email: &str, batch: Option<&str>) -> Result<UserOutcome> {
        let user = self.user(email, batch).await?;
        self.carry_out(&user, UserAction::Complete).await?;
        Ok(UserOutcome::Completing)
    }

    /// Takes one user out of its batch with its stored passwords (mail on
    /// the servers is never touched); a running sync ends first.
    pub async fn remove_user(&self, email: &str, batch: Option<&str>) -> Result<UserOutcome> {
        let user = self.user(email, batch).await?;
        self.carry_out(&user, UserAction::Remove).await?;
        Ok(
            match self.store.user_ref(&user.email, Some(&user.batch)).await {
                Ok(_) => UserOutcome::Stopping,
                Err(flytt_store::Error::NoSuchUserInBatch { .. }) => UserOutcome::Removed,
                Err(e) => return Err(e.into()),
            },
        )
    }

    /// Changes a user's sign-in details: passwords are sealed like the
    /// CSV's, for this user's row. The next sync uses them (retry a failed
    /// user to start it).
    pub async fn change_login(
        &self,
        email: &str,
        batch: Option<&str>,
        login: NewLogin,
    ) -> Result<UserRef> {
        let user = self.user(email, batch).await?;
        if login.user_name.is_none()
            && login.password.is_none()
            && login.target_user_name.is_none()
            && login.target_password.is_none()
        {
            return Err(ControlError::InvalidParameter(
                "nothing to change: give a user name, a password, a target user name or a target password".into(),
            ));
        }
        for name in [&login.user_name, &login.target_user_name]
            .into_iter()
            .flatten()
        {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return Err(ControlError::InvalidParameter(format!(
                    "{name:?} is not a user name"
                )));
            }
        }
        let keyring = keyring(&self.store, &self.data_dir).await?;
        let seal = |secret: Option<&SecretString>, column: &str| {
            secret
                .map(|s| {
                    keyring.seal(
                        s,
                        &format!("batch/{}/user/{}/{column}", user.batch, user.email),
                    )
                })
                .transpose()
        };
        let changes = UserChanges {
            password_sealed: seal(login.password.as_ref(), "Password")?,
            target_password_sealed: seal(login.target_password.as_ref(), "TargetPassword")?,
            user_name: login.user_name,
            target_user_name: login.target_user_name,
            ..UserChanges::default()
        };
        self.store.change_user(&user, &changes).await?;
        Ok(user)
    }

    /// Moves a user (not running) into batch `to` of the same type, as
    /// Exchange's New-MigrationBatch with a user from another: its secrets
    /// are sealed anew for the new batch, its overrides go with it; a
    /// completed user is queued to migrate again. The batch it joins
    /// syncs again if it had finished.
    pub async fn move_user(&self, email: &str, batch: Option<&str>, to: &str) -> Result<UserRef> {
        let user = self.user(email, batch).await?;
        let from = self.store.batch(&user.batch).await?;
        let target = self.store.batch(to).await?;
        if from.batch_type != target.batch_type {
            return Err(ControlError::InvalidParameter(format!(
                "batch {to} is a {} batch and {} a {} one: a user moves only between batches of one type",
                target.batch_type.name(),
                from.name,
                from.batch_type.name()
            )));
        }
        let joined =
            target
                .status
                .after(BatchAction::AddUsers)
                .ok_or_else(|| ControlError::WrongState {
                    batch: target.name.clone(),
                    status: target.status,
                    action: BatchAction::AddUsers.done(),
                })?;
        let status = match user.status {
            UserStatus::Completed => UserStatus::Queued,
            other if other.is_running() => {
                return Err(flytt_store::Error::UserRunning(user.email.clone()).into());
            }
            other => other,
        };
        let keyring = keyring(&self.store, &self.data_dir).await?;
        let sealed = self.store.user_secrets(&user).await?;
        let reseal = |secret: &Option<String>, column: &str| {
            secret
                .as_ref()
                .map(|sealed| {
                    let secret = keyring.open(
                        sealed,
                        &format!("batch/{}/user/{}/{column}", user.batch, user.email),
                    )?;
                    keyring.seal(&secret, &format!("batch/{to}/user/{}/{column}", user.email))
                })
                .transpose()
        };
        let secrets = UserChanges {
            password_sealed: reseal(&sealed.password_sealed, "Password")?,
            target_password_sealed: reseal(&sealed.target_password_sealed, "TargetPassword")?,
            refresh_token_sealed: reseal(&sealed.refresh_token_sealed, "RefreshToken")?,
            ..UserChanges::default()
        };
        self.store.move_user(&user, to, &secrets, status).await?;
        self.store.set_batch_status(to, joined).await?;
        Ok(self.store.user_ref(&user.email, Some(to)).await?)
    }

    /// Does what `action` does to the user by the table: a new status
    /// now, or a request (stop, removal) carried out at once where no
    /// runner holds the user (else the runner does, after the sync).
    async fn carry_out(&self, user: &UserRef, action: UserAction) -> Result<()> {
        match self.user_allowed(user, action)? {
            UserChange::Request(request) => {
                self.store.request_for_user(user, request).await?;
                self.store.carry_out_user_requests().await?;
            }
            UserChange::Now(status) => {
                self.store
                    .set_user_status(user.id, status, None, None)
                    .await?;
            }
        }
        Ok(())
    }

    fn user_allowed(&self, user: &UserRef, action: UserAction) -> Result<UserChange> {
        user.status
            .after(action)
            .ok_or_else(|| ControlError::UserWrongState {
                email: user.email.clone(),
                status: user.status,
                action: action.done(),
            })
    }
}
