//! Which of a batch's notification mails have gone out. A sender claims a
//! mail before sending it (one conditional update, so of several processes
//! only one wins) and releases the claim when the send failed.

use crate::{Result, Store};

/// A batch's notification mails (SPEC §1.1, in the order they go out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchMail {
    /// Every user has started (or failed): how many migrate, who failed.
    Status,
    /// Every user's initial sync is done: the report.
    InitialSync,
    /// The batch completed.
    Completion,
}

impl BatchMail {
    /// (claim, release) statements: column names cannot be bound.
    fn statements(self) -> (&'static str, &'static str) {
        match self {
            BatchMail::Status => (
                "UPDATE batch SET status_mail_at = {now} WHERE name = ? AND status_mail_at IS NULL",
                "UPDATE batch SET status_mail_at = NULL WHERE name = ?",
            ),
            BatchMail::InitialSync => (
                "UPDATE batch SET initial_sync_mail_at = {now} WHERE name = ? AND initial_sync_mail_at IS NULL",
                "UPDATE batch SET initial_sync_mail_at = NULL WHERE name = ?",
            ),
            BatchMail::Completion => (
                "UPDATE batch SET completion_mail_at = {now} WHERE name = ? AND completion_mail_at IS NULL",
                "UPDATE batch SET completion_mail_at = NULL WHERE name = ?",
            ),
        }
    }
}

impl Store {
    /// Claims `mail` of `batch` for sending: true for the one caller that
    /// may send it, false when it was claimed (or sent) before.
    pub async fn claim_mail(&self, batch: &str, mail: BatchMail) -> Result<bool> {
        let done = sqlx::query(self.sql(mail.statements().0))
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a claim back after a failed send, so it is tried again.
    pub async fn release_mail(&self, batch: &str, mail: BatchMail) -> Result<()> {
        sqlx::query(self.sql(mail.statements().1))
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
