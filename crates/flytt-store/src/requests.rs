//! What an administrator asks of running work: a Stopping or Removing
//! batch, a user asked to stop or to be removed while its sync runs, or
//! to complete before its batch (its final sync, started by a runner). The
//! store only records the requests; the runner holding a user sees them
//! (`users_to_stop`), ends the sync at its next safe point and gives the
//! user back, and any runner's next tick carries the requests out
//! (`carry_out_user_requests`) for users nobody holds any more, so a
//! crashed runner's users follow too once their leases expire.

use sqlx::Row;

use flytt_batch::{UserRequest, UserStatus};

use crate::events::kind;
use crate::{Error, Result, Store};

/// One user of a batch, as the administrator's actions find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRef {
    pub id: i64,
    pub batch: String,
    pub email: String,
    pub status: UserStatus,
    /// A runner holds the user now (a sync, or a staged preparation).
    pub running: bool,
    pub requested: Option<UserRequest>,
}

/// New sign-in details or overrides for a user (`user set`): what is
/// `None` stays as it is. Passwords come sealed for this user's row.
#[derive(Clone, Debug, Default)]
pub struct UserChanges {
    pub user_name: Option<String>,
    pub password_sealed: Option<String>,
    pub target_user_name: Option<String>,
    pub target_password_sealed: Option<String>,
    pub refresh_token_sealed: Option<String>,
    pub overrides: Option<flytt_batch::UserOverrides>,
}

impl UserChanges {
    /// Names the changed fields for the event log (never their values).
    fn described(&self) -> String {
        let fields = [
            ("UserName", self.user_name.is_some()),
            ("Password", self.password_sealed.is_some()),
            ("TargetUserName", self.target_user_name.is_some()),
            ("TargetPassword", self.target_password_sealed.is_some()),
            ("RefreshToken", self.refresh_token_sealed.is_some()),
            ("overrides", self.overrides.is_some()),
        ];
        let changed: Vec<&str> = fields.iter().filter(|f| f.1).map(|f| f.0).collect();
        format!("changed by the administrator: {}", changed.join(", "))
    }
}

impl Store {
    /// The user with this address (any case): in `batch` if given, else
    /// in its active batch (not completed), else in its latest one.
    pub async fn user_ref(&self, email: &str, batch: Option<&str>) -> Result<UserRef> {
        let row = sqlx::query(self.sql(
            "SELECT u.id, b.name AS batch, u.email, u.status, u.requested, \
             CASE WHEN u.lease_runner IS NOT NULL AND u.lease_expires_ms >= {now_ms} THEN 1 ELSE 0 END AS running \
             FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE lower(u.email) = lower(?1) AND (?2 IS NULL OR b.name = ?2) \
             ORDER BY CASE WHEN b.status IN ('Completed', 'CompletedWithErrors') THEN 1 ELSE 0 END, b.id DESC \
             LIMIT 1",
        ))
        .bind(email)
        .bind(batch)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(match batch {
                Some(batch) => Error::NoSuchUserInBatch {
                    email: email.to_string(),
                    batch: batch.to_string(),
                },
                None => Error::NoSuchUser(email.to_string()),
            });
        };
        Ok(UserRef {
            id: row.try_get("id")?,
            batch: row.try_get("batch")?,
            email: row.try_get("email")?,
            status: crate::totals::named(&row, "status")?,
            running: row.try_get::<i64, _>("running")? == 1,
            requested: match row.try_get::<Option<String>, _>("requested")? {
                Some(_) => Some(crate::totals::named(&row, "requested")?),
                None => None,
            },
        })
    }

    /// How many users of `batch` a runner holds now.
    pub async fn users_running(&self, batch: &str) -> Result<u64> {
        let row = sqlx::query(self.sql(
            "SELECT COUNT(*) AS n FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE b.name = ? AND u.lease_runner IS NOT NULL AND u.lease_expires_ms >= {now_ms}",
        ))
        .bind(batch)
        .fetch_one(&self.pool)
        .await?;
        Ok(crate::totals::count(row.try_get("n")?))
    }

    /// Of the users `runner` holds, those whose work is to end: asked to
    /// stop or to be removed, or in a batch that is Stopping or Removing.
    pub async fn users_to_stop(&self, runner: &str) -> Result<Vec<i64>> {
        sqlx::query(self.sql(
            "SELECT u.id FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE u.lease_runner = ? AND (u.requested IN ('Stop', 'Remove') OR b.status IN ('Stopping', 'Removing'))",
        ))
        .bind(runner)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok(row.try_get("id")?))
        .collect()
    }

    /// Records what the administrator asked of a running user (logged).
    pub async fn request_for_user(&self, user: &UserRef, request: UserRequest) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(self.sql("UPDATE batch_user SET requested = ? WHERE id = ?"))
            .bind(request.as_str())
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        let message = match request {
            UserRequest::Stop => "asked to stop",
            UserRequest::Remove => "asked to be removed",
            UserRequest::Complete => "asked to complete: its final sync starts when a slot is free",
        };
        self.record(
            &mut tx,
            &user.batch,
            Some(&user.email),
            kind::NOTE,
            None,
            Some(message),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Carries out the requests of users no runner holds any more: Stop
    /// makes them Stopped, Remove takes them out. Returns how many.
    pub async fn carry_out_user_requests(&self) -> Result<u64> {
        let rows = sqlx::query(self.sql(
            "SELECT u.id, b.name AS batch, u.email, u.requested FROM batch_user u \
             JOIN batch b ON b.id = u.batch_id WHERE u.requested IN ('Stop', 'Remove') \
             AND (u.lease_runner IS NULL OR u.lease_expires_ms < {now_ms}) ORDER BY u.id",
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut done = 0;
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let batch: String = row.try_get("batch")?;
            let email: String = row.try_get("email")?;
            let request: UserRequest = crate::totals::named(&row, "requested")?;
            match request {
                UserRequest::Stop => self.stop_user(id).await?,
                UserRequest::Remove => self.remove_user(&batch, &email).await?,
                // Not selected above: a final sync carries it out.
                UserRequest::Complete => continue,
            }
            done += 1;
        }
        Ok(done)
    }

    /// Makes a user no runner holds Stopped, clearing its request (logged).
    pub async fn stop_user(&self, user_id: i64) -> Result<()> {
        self.set_user_status(user_id, UserStatus::Stopped, None, None)
            .await?;
        sqlx::query(self.sql("UPDATE batch_user SET requested = NULL WHERE id = ?"))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes one user out of its batch, with its sealed secrets and its
    /// sync checkpoints' claim on it (the mail on the servers is never
    /// touched; the user may join another batch).
    pub async fn remove_user(&self, batch: &str, email: &str) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let done = sqlx::query(self.sql(
            "DELETE FROM batch_user WHERE lower(email) = lower(?1) \
             AND batch_id = (SELECT id FROM batch WHERE name = ?2)",
        ))
        .bind(email)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchUserInBatch {
                email: email.to_string(),
                batch: batch.to_string(),
            });
        }
        self.record(
            &mut tx,
            batch,
            Some(email),
            kind::USER_REMOVED,
            None,
            Some("removed from the batch with its stored passwords"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A user's sealed secrets (to be sealed anew when it moves).
    pub async fn user_secrets(&self, user: &UserRef) -> Result<UserChanges> {
        let row = sqlx::query(self.sql(
            "SELECT password_sealed, target_password_sealed, refresh_token_sealed \
             FROM batch_user WHERE id = ?",
        ))
        .bind(user.id)
        .fetch_one(&self.pool)
        .await?;
        Ok(UserChanges {
            password_sealed: row.try_get("password_sealed")?,
            target_password_sealed: row.try_get("target_password_sealed")?,
            refresh_token_sealed: row.try_get("refresh_token_sealed")?,
            ..UserChanges::default()
        })
    }

    /// Moves a user no runner holds into batch `to` (its last CSV line),
    /// with its secrets sealed anew for the new row (`secrets`: Password,
    /// TargetPassword, RefreshToken, as `UserChanges` carries them) and its
    /// new status; logged in both batches. Its copies' checkpoints are the
    /// mailboxes', so the next sync goes on where the last one stopped.
    pub async fn move_user(
        &self,
        user: &UserRef,
        to: &str,
        secrets: &UserChanges,
        status: UserStatus,
    ) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let target = sqlx::query(self.sql("SELECT id FROM batch WHERE name = ?"))
            .bind(to)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NoSuchBatch(to.to_string()))?;
        let target_id: i64 = target.try_get("id")?;
        let there = sqlx::query(
            self.sql("SELECT 1 FROM batch_user WHERE batch_id = ? AND lower(email) = lower(?)"),
        )
        .bind(target_id)
        .bind(&user.email)
        .fetch_optional(&mut *tx)
        .await?;
        if there.is_some() {
            return Err(Error::UserInBatch {
                email: user.email.clone(),
                batch: to.to_string(),
            });
        }
        let moved = sqlx::query(self.sql(
            "UPDATE batch_user SET batch_id = ?1, \
             csv_line = (SELECT COALESCE(MAX(csv_line), 0) + 1 FROM batch_user WHERE batch_id = ?1), \
             password_sealed = ?2, target_password_sealed = ?3, refresh_token_sealed = ?4, \
             status = ?5, error = NULL, retry_at_ms = NULL, waiting = NULL \
             WHERE id = ?6 AND (lease_runner IS NULL OR lease_expires_ms < {now_ms})",
        ))
        .bind(target_id)
        .bind(&secrets.password_sealed)
        .bind(&secrets.target_password_sealed)
        .bind(&secrets.refresh_token_sealed)
        .bind(status.as_str())
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Err(Error::UserRunning(user.email.clone()));
        }
        sqlx::query(self.sql("DELETE FROM user_analysis WHERE user_id = ?"))
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        for (batch, message) in [
            (user.batch.as_str(), format!("moved to batch {to}")),
            (to, format!("moved here from batch {}", user.batch)),
        ] {
            self.record(
                &mut tx,
                batch,
                Some(&user.email),
                kind::USER_STATUS,
                Some(status.as_str()),
                Some(&message),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Changes a user's sign-in details or overrides (logged by name,
    /// never by value). A running sync goes on with what it started with.
    pub async fn change_user(&self, user: &UserRef, changes: &UserChanges) -> Result<()> {
        let overrides = changes
            .overrides
            .as_ref()
            .map(|o| crate::totals::to_json("overrides", o))
            .transpose()?;
        let mut tx = self.write_transaction().await?;
        sqlx::query(self.sql(
            "UPDATE batch_user SET user_name = COALESCE(?1, user_name), \
             password_sealed = COALESCE(?2, password_sealed), \
             target_user_name = COALESCE(?3, target_user_name), \
             target_password_sealed = COALESCE(?4, target_password_sealed), \
             refresh_token_sealed = COALESCE(?5, refresh_token_sealed), \
             overrides = COALESCE(?6, overrides) WHERE id = ?7",
        ))
        .bind(&changes.user_name)
        .bind(&changes.password_sealed)
        .bind(&changes.target_user_name)
        .bind(&changes.target_password_sealed)
        .bind(&changes.refresh_token_sealed)
        .bind(overrides)
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
        self.record(
            &mut tx,
            &user.batch,
            Some(&user.email),
            kind::NOTE,
            None,
            Some(&changes.described()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
