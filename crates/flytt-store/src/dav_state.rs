//! The DAV copy's checkpoints: per pair of DAV accounts (a `mailbox_pair`
//! whose keys name the DAV servers and users), which source resources are
//! on the target, and the source's ETag when they were copied; and each
//! source collection's sync-collection token (RFC 6578).

use sqlx::Row;

use crate::{PairId, Result, Store};

/// One source resource on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DavCopied {
    /// The source resource's path.
    pub source_href: String,
    /// Its ETag when copied: another one now means it changed.
    pub source_etag: Option<String>,
    /// The target resource's path.
    pub target_href: String,
    /// The target's ETag after the copy, for a conditional update.
    pub target_etag: Option<String>,
    /// What it holds (`contact`, `event`, `task`, `journal`), so that an
    /// unchanged resource is counted without reading it again.
    pub kind: String,
}

impl Store {
    /// Every resource of the pair known to be on the target.
    pub async fn dav_copied(&self, pair: PairId) -> Result<Vec<DavCopied>> {
        let rows = sqlx::query(self.sql(
            "SELECT source_href, source_etag, target_href, target_etag, kind FROM dav_copied WHERE pair_id = ?",
        ))
        .bind(pair.id())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DavCopied {
                    source_href: row.try_get("source_href")?,
                    source_etag: row.try_get("source_etag")?,
                    target_href: row.try_get("target_href")?,
                    target_etag: row.try_get("target_etag")?,
                    kind: row.try_get("kind")?,
                })
            })
            .collect()
    }

    /// Records a resource as on the target (a copy, or an update of one).
    pub async fn record_dav_copied(&self, pair: PairId, copied: &DavCopied) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO dav_copied (pair_id, source_href, source_etag, target_href, target_etag, kind) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pair_id, source_href) DO UPDATE \
             SET source_etag = excluded.source_etag, target_href = excluded.target_href, \
             target_etag = excluded.target_etag, kind = excluded.kind",
        ))
        .bind(pair.id())
        .bind(&copied.source_href)
        .bind(&copied.source_etag)
        .bind(&copied.target_href)
        .bind(&copied.target_etag)
        .bind(&copied.kind)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a resource: deleted on the target because it was on the
    /// source (deletion sync).
    pub async fn forget_dav_copied(&self, pair: PairId, source_href: &str) -> Result<()> {
        sqlx::query(self.sql("DELETE FROM dav_copied WHERE pair_id = ? AND source_href = ?"))
            .bind(pair.id())
            .bind(source_href)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The sync token a source collection's changes were last copied up to.
    pub async fn dav_sync_token(&self, pair: PairId, collection: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            self.sql("SELECT token FROM dav_sync_token WHERE pair_id = ? AND collection = ?"),
        )
        .bind(pair.id())
        .bind(collection)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("token")).transpose()?)
    }

    /// Records that a source collection's changes up to `token` are copied.
    pub async fn set_dav_sync_token(
        &self,
        pair: PairId,
        collection: &str,
        token: &str,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO dav_sync_token (pair_id, collection, token) VALUES (?, ?, ?) \
             ON CONFLICT (pair_id, collection) DO UPDATE SET token = excluded.token",
        ))
        .bind(pair.id())
        .bind(collection)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
