//! The HTTP API's bearer tokens, kept as hashes (the caller hashes).

use sqlx::Row;

use crate::{Error, Result, Store};

/// A token as listed: never the token itself, which is not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl Store {
    pub async fn create_token(&self, name: &str, sha256: &str) -> Result<()> {
        let result = sqlx::query(self.sql("INSERT INTO api_token (name, sha256) VALUES (?, ?)"))
            .bind(name)
            .bind(sha256)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::TokenExists(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The name of the token with this hash, if there is one; its use is
    /// stamped (at most once a minute, to spare the writer).
    pub async fn token_by_hash(&self, sha256: &str) -> Result<Option<String>> {
        let row = sqlx::query(self.sql("SELECT name FROM api_token WHERE sha256 = ?"))
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        sqlx::query(self.sql(
            "UPDATE api_token SET last_used_at = {now} WHERE sha256 = ? \
             AND (last_used_at IS NULL OR last_used_at < {minute_ago})",
        ))
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(Some(row.try_get("name")?))
    }

    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            self.sql("SELECT name, created_at, last_used_at FROM api_token ORDER BY name"),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiToken {
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    pub async fn remove_token(&self, name: &str) -> Result<()> {
        let done = sqlx::query(self.sql("DELETE FROM api_token WHERE name = ?"))
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchToken(name.to_string()));
        }
        Ok(())
    }
}
