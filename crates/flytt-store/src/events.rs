//! The event log: what happened to batches and users, in order. Status
//! changes are recorded by the methods that make them (same transaction),
//! so no caller can change a status without a trace; `events` reads the log
//! by id, which is what a live stream needs (give the last id seen).

use sqlx::Row;

use crate::{Result, Store};

/// What an event is about.
pub mod kind {
    pub const BATCH_CREATED: &str = "BatchCreated";
    pub const USERS_ADDED: &str = "UsersAdded";
    pub const BATCH_REMOVED: &str = "BatchRemoved";
    pub const BATCH_STATUS: &str = "BatchStatus";
    pub const USER_STATUS: &str = "UserStatus";
    pub const USER_REMOVED: &str = "UserRemoved";
    /// Something worth knowing that changes no status (e.g. a retry).
    pub const NOTE: &str = "Note";
}

/// One entry of the log. `message` is a reason or a description; it never
/// holds a secret (the callers' error texts never carry passwords).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    /// RFC 3339, UTC, with milliseconds.
    pub at: String,
    pub batch: String,
    pub email: Option<String>,
    pub kind: String,
    pub status: Option<String>,
    pub message: Option<String>,
}

/// Which events `Store::events` returns: all filters apply together.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub batch: Option<String>,
    pub email: Option<String>,
    /// Only events with a greater id (for a stream).
    pub after: Option<i64>,
    /// At most this many, the newest ones (oldest first); none: all.
    pub limit: Option<u32>,
}

impl Store {
    /// Inserts an event within a transaction the caller holds.
    pub(crate) async fn record(
        &self,
        tx: &mut sqlx::AnyConnection,
        batch: &str,
        email: Option<&str>,
        kind: &str,
        status: Option<&str>,
        message: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            self.sql(
                "INSERT INTO event (batch, email, kind, status, message) VALUES (?, ?, ?, ?, ?)",
            ),
        )
        .bind(batch)
        .bind(email)
        .bind(kind)
        .bind(status)
        .bind(message)
        .execute(&mut *tx)
        .await?;
        self.announce_events(tx).await
    }

    /// Announces that the transaction adds events: readers wake at its
    /// commit (PostgreSQL delivers notifications then), or, in this
    /// process, now (a reader woken early reads again at its next look).
    pub(crate) async fn announce_events(&self, tx: &mut sqlx::AnyConnection) -> Result<()> {
        if self.backend == crate::Backend::Postgres {
            sqlx::query(self.sql("SELECT pg_notify(?, '')"))
                .bind(crate::EVENTS_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        self.announce_change();
        Ok(())
    }

    /// Records an event that goes with no status change (a note).
    pub async fn record_event(
        &self,
        batch: &str,
        email: Option<&str>,
        kind: &str,
        message: &str,
    ) -> Result<()> {
        let mut connection = self.pool.acquire().await?;
        self.record(&mut connection, batch, email, kind, None, Some(message))
            .await
    }

    /// Events matching `filter`, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let rows = sqlx::query(self.sql(
            "SELECT id, at, batch, email, kind, status, message FROM event \
             WHERE (?1 IS NULL OR batch = ?1) AND (?2 IS NULL OR lower(email) = lower(?2)) \
             AND id > COALESCE(?3, 0) ORDER BY id DESC LIMIT COALESCE(?4, {no_limit})",
        ))
        .bind(&filter.batch)
        .bind(&filter.email)
        .bind(filter.after)
        .bind(filter.limit.map(i64::from))
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(Event {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    batch: row.try_get("batch")?,
                    email: row.try_get("email")?,
                    kind: row.try_get("kind")?,
                    status: row.try_get("status")?,
                    message: row.try_get("message")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }
}
