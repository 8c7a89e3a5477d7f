//! The sync engine's checkpoints: per mailbox pair and folder, the
//! UIDVALIDITYs, the marks of the last complete pass, and which source
//! messages are on the target (ARCHITECTURE.md, invariants).

use sqlx::Row;

use crate::{Result, Store, to_u32};

/// Identifies a (source mailbox, target mailbox) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairId(i64);

impl PairId {
    pub(crate) fn id(self) -> i64 {
        self.0
    }
}

/// A folder's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderState {
    pub source_folder: String,
    pub target_folder: String,
    pub source_uidvalidity: u32,
    pub target_uidvalidity: u32,
    pub highest_modseq: Option<u64>,
    pub uid_next: Option<u32>,
    /// The pass that recorded these marks carried every deletion up to
    /// them over to the target (deletion sync): the next pass may learn
    /// the deletions since from QRESYNC's VANISHED alone.
    pub deletions_synced: bool,
}

/// APPENDs a dead run left in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptedAppends {
    /// The target folder's UIDNEXT before them (unknown from older versions).
    pub target_uid_next: Option<u32>,
}

/// One copied message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedMessage {
    pub source_uid: u32,
    pub target_uid: Option<u32>,
    /// Space-separated, sorted.
    pub flags: String,
}

/// What a source mailbox has read in its current day (a source endpoint's
/// `download_per_day`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadWindow {
    /// When the day began: milliseconds since the Unix epoch.
    pub started_ms: i64,
    pub bytes: u64,
}

impl Store {
    /// What the source mailbox `source_key` has read in its current day, if
    /// it has read anything under a download limit.
    pub async fn download_window(&self, source_key: &str) -> Result<Option<DownloadWindow>> {
        let row = sqlx::query(
            self.sql("SELECT started_ms, bytes FROM download_window WHERE source_key = ?"),
        )
        .bind(source_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(DownloadWindow {
                started_ms: row.try_get("started_ms")?,
                bytes: crate::to_u64("bytes", row.try_get("bytes")?)?,
            })
        })
        .transpose()
    }

    /// Records what the source mailbox has read in its current day.
    pub async fn save_download_window(
        &self,
        source_key: &str,
        window: DownloadWindow,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO download_window (source_key, started_ms, bytes) VALUES (?, ?, ?) \
             ON CONFLICT (source_key) DO UPDATE SET started_ms = excluded.started_ms, \
             bytes = excluded.bytes",
        ))
        .bind(source_key)
        .bind(window.started_ms)
        .bind(i64::try_from(window.bytes).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pair's id, created on first use. Keys name the mailboxes
    /// (`user@host:port`); they hold no secret. When the pair is new and
    /// `legacy` names the same pair under the keys of an earlier version,
    /// that state is renamed to the new keys (an upgrade without loss).
    pub async fn mailbox_pair(
        &self,
        source_key: &str,
        target_key: &str,
        legacy: Option<(String, String)>,
    ) -> Result<PairId> {
        let mut tx = self.write_transaction().await?;
        let exists = sqlx::query(
            self.sql("SELECT id FROM mailbox_pair WHERE source_key = ? AND target_key = ?"),
        )
        .bind(source_key)
        .bind(target_key)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if !exists && let Some((old_source, old_target)) = legacy {
            sqlx::query(self.sql(
                "UPDATE mailbox_pair SET source_key = ?, target_key = ? \
                 WHERE source_key = ? AND target_key = ?",
            ))
            .bind(source_key)
            .bind(target_key)
            .bind(&old_source)
            .bind(&old_target)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(self.sql(
            "INSERT INTO mailbox_pair (source_key, target_key) VALUES (?, ?) \
             ON CONFLICT (source_key, target_key) DO NOTHING",
        ))
        .bind(source_key)
        .bind(target_key)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            self.sql("SELECT id FROM mailbox_pair WHERE source_key = ? AND target_key = ?"),
        )
        .bind(source_key)
        .bind(target_key)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PairId(row.try_get("id")?))
    }

    /// Every folder of the pair that a pass has begun.
    pub async fn folder_states(&self, pair: PairId) -> Result<Vec<FolderState>> {
        let rows = sqlx::query(self.sql(
            "SELECT source_folder FROM folder_state WHERE pair_id = ? ORDER BY source_folder",
        ))
        .bind(pair.0)
        .fetch_all(&self.pool)
        .await?;
        let mut states = Vec::new();
        for row in rows {
            let folder: String = row.try_get("source_folder")?;
            if let Some(state) = self.folder_state(pair, &folder).await? {
                states.push(state);
            }
        }
        Ok(states)
    }

    /// Forgets a folder the source no longer has: its checkpoint and its
    /// copies' map, in one transaction (deletion sync, once the target's
    /// copies are gone).
    pub async fn forget_folder(&self, pair: PairId, source_folder: &str) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        for sql in [
            "DELETE FROM message_map WHERE pair_id = ? AND source_folder = ?",
            "DELETE FROM folder_state WHERE pair_id = ? AND source_folder = ?",
        ] {
            sqlx::query(self.sql(sql))
                .bind(pair.0)
                .bind(source_folder)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn folder_state(
        &self,
        pair: PairId,
        source_folder: &str,
    ) -> Result<Option<FolderState>> {
        let row = sqlx::query(self.sql(
            "SELECT source_folder, target_folder, source_uidvalidity, target_uidvalidity, \
             highest_modseq, uid_next, deletions_synced FROM folder_state \
             WHERE pair_id = ? AND source_folder = ?",
        ))
        .bind(pair.0)
        .bind(source_folder)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<FolderState> {
            Ok(FolderState {
                source_folder: row.try_get("source_folder")?,
                target_folder: row.try_get("target_folder")?,
                source_uidvalidity: to_u32(
                    "source_uidvalidity",
                    row.try_get("source_uidvalidity")?,
                )?,
                target_uidvalidity: to_u32(
                    "target_uidvalidity",
                    row.try_get("target_uidvalidity")?,
                )?,
                highest_modseq: row
                    .try_get::<Option<i64>, _>("highest_modseq")?
                    .map(|v| v as u64),
                uid_next: row
                    .try_get::<Option<i64>, _>("uid_next")?
                    .map(|v| to_u32("uid_next", v))
                    .transpose()?,
                deletions_synced: row.try_get::<i64, _>("deletions_synced")? != 0,
            })
        })
        .transpose()
    }

    /// Starts or restarts a folder's checkpoint. When either UIDVALIDITY
    /// differs from the stored one, the folder's UID map is dropped: its
    /// UIDs no longer name the same messages.
    pub async fn begin_folder(&self, pair: PairId, state: &FolderState) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let existing = sqlx::query(self.sql(
            "SELECT source_uidvalidity, target_uidvalidity, target_folder FROM folder_state \
             WHERE pair_id = ? AND source_folder = ?",
        ))
        .bind(pair.0)
        .bind(&state.source_folder)
        .fetch_optional(&mut *tx)
        .await?;
        let same_epoch = match &existing {
            Some(row) => {
                row.try_get::<i64, _>("source_uidvalidity")? == i64::from(state.source_uidvalidity)
                    && row.try_get::<i64, _>("target_uidvalidity")?
                        == i64::from(state.target_uidvalidity)
                    && row.try_get::<String, _>("target_folder")? == state.target_folder
            }
            None => false,
        };
        if !same_epoch {
            sqlx::query(
                self.sql("DELETE FROM message_map WHERE pair_id = ? AND source_folder = ?"),
            )
            .bind(pair.0)
            .bind(&state.source_folder)
            .execute(&mut *tx)
            .await?;
            sqlx::query(self.sql(
                "INSERT INTO folder_state (pair_id, source_folder, target_folder, source_uidvalidity, \
                 target_uidvalidity, highest_modseq, uid_next) VALUES (?, ?, ?, ?, ?, NULL, NULL) \
                 ON CONFLICT (pair_id, source_folder) DO UPDATE SET target_folder = excluded.target_folder, \
                 source_uidvalidity = excluded.source_uidvalidity, target_uidvalidity = excluded.target_uidvalidity, \
                 highest_modseq = NULL, uid_next = NULL, deletions_synced = 0",
            ))
            .bind(pair.0)
            .bind(&state.source_folder)
            .bind(&state.target_folder)
            .bind(i64::from(state.source_uidvalidity))
            .bind(i64::from(state.target_uidvalidity))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that a pass over the folder completed up to these marks.
    /// `deletions_synced`: the pass carried every deletion up to these
    /// marks over to the target.
    pub async fn finish_folder(
        &self,
        pair: PairId,
        source_folder: &str,
        highest_modseq: Option<u64>,
        uid_next: Option<u32>,
        deletions_synced: bool,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE folder_state SET highest_modseq = ?, uid_next = ?, deletions_synced = ? \
             WHERE pair_id = ? AND source_folder = ?",
        ))
        .bind(highest_modseq.map(|v| v as i64))
        .bind(uid_next.map(i64::from))
        .bind(i64::from(deletions_synced))
        .bind(pair.0)
        .bind(source_folder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks that APPENDs for the folder are in flight, into a target
    /// folder whose UIDNEXT was `target_uid_next` when they began.
    pub async fn begin_appending(
        &self,
        pair: PairId,
        source_folder: &str,
        target_uid_next: Option<u32>,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE folder_state SET appending = 1, appending_from_uid = ? \
             WHERE pair_id = ? AND source_folder = ?",
        ))
        .bind(target_uid_next.map(i64::from))
        .bind(pair.0)
        .bind(source_folder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks that no APPEND for the folder is in flight any more.
    pub async fn end_appending(&self, pair: PairId, source_folder: &str) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE folder_state SET appending = 0, appending_from_uid = NULL \
             WHERE pair_id = ? AND source_folder = ?",
        ))
        .bind(pair.0)
        .bind(source_folder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the last run died with APPENDs for the folder in flight, and
    /// from which target UID on its copies may be.
    pub async fn interrupted_appends(
        &self,
        pair: PairId,
        source_folder: &str,
    ) -> Result<Option<InterruptedAppends>> {
        let row = sqlx::query(self.sql(
            "SELECT appending, appending_from_uid FROM folder_state \
             WHERE pair_id = ? AND source_folder = ?",
        ))
        .bind(pair.0)
        .bind(source_folder)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<i64, _>("appending")? == 0 {
            return Ok(None);
        }
        Ok(Some(InterruptedAppends {
            target_uid_next: row
                .try_get::<Option<i64>, _>("appending_from_uid")?
                .map(|v| to_u32("appending_from_uid", v))
                .transpose()?,
        }))
    }

    /// How many messages of each source folder the map holds copies of:
    /// what a sync need not copy again, for its progress estimate.
    pub async fn copy_counts(
        &self,
        pair: PairId,
    ) -> Result<std::collections::HashMap<String, u64>> {
        let rows = sqlx::query(self.sql(
            "SELECT source_folder, COUNT(*) AS copies FROM message_map \
             WHERE pair_id = ? GROUP BY source_folder",
        ))
        .bind(pair.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let copies: i64 = row.try_get("copies")?;
                Ok((
                    row.try_get("source_folder")?,
                    u64::try_from(copies).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Every copied message of a folder.
    pub async fn copied(&self, pair: PairId, source_folder: &str) -> Result<Vec<CopiedMessage>> {
        let rows = sqlx::query(self.sql(
            "SELECT source_uid, target_uid, flags FROM message_map \
             WHERE pair_id = ? AND source_folder = ? ORDER BY source_uid",
        ))
        .bind(pair.0)
        .bind(source_folder)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(CopiedMessage {
                    source_uid: to_u32("source_uid", row.try_get("source_uid")?)?,
                    target_uid: row
                        .try_get::<Option<i64>, _>("target_uid")?
                        .map(|v| to_u32("target_uid", v))
                        .transpose()?,
                    flags: row.try_get("flags")?,
                })
            })
            .collect()
    }

    /// Forgets copies whose source message is gone and whose target copy
    /// was expunged (deletion sync), in one transaction.
    pub async fn forget_copied(
        &self,
        pair: PairId,
        source_folder: &str,
        source_uids: &[u32],
    ) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        for uid in source_uids {
            sqlx::query(self.sql(
                "DELETE FROM message_map WHERE pair_id = ? AND source_folder = ? AND source_uid = ?",
            ))
            .bind(pair.0)
            .bind(source_folder)
            .bind(i64::from(*uid))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records copies the target confirmed, in one transaction; a row that
    /// exists is replaced (its target UID became known, or flags changed).
    pub async fn record_copied(
        &self,
        pair: PairId,
        source_folder: &str,
        messages: &[CopiedMessage],
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_transaction().await?;
        for m in messages {
            sqlx::query(self.sql(
                "INSERT INTO message_map (pair_id, source_folder, source_uid, target_uid, flags) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (pair_id, source_folder, source_uid) DO UPDATE \
                 SET target_uid = excluded.target_uid, flags = excluded.flags",
            ))
            .bind(pair.0)
            .bind(source_folder)
            .bind(i64::from(m.source_uid))
            .bind(m.target_uid.map(i64::from))
            .bind(&m.flags)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
