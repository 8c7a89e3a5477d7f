//! Directories (for staged migrations) as stored: a name, the settings as
//! JSON (the store does not read them) and the sealed bind password.

use sqlx::Row;

use crate::{Error, Result, Store};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDirectory {
    pub name: String,
    pub settings: String,
    pub bind_password_sealed: Option<String>,
}

impl Store {
    pub async fn create_directory(&self, directory: &StoredDirectory) -> Result<()> {
        let result =
            sqlx::query(self.sql(
                "INSERT INTO directory (name, settings, bind_password_sealed) VALUES (?, ?, ?)",
            ))
            .bind(&directory.name)
            .bind(&directory.settings)
            .bind(&directory.bind_password_sealed)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::DirectoryExists(directory.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a directory's settings, and its sealed bind password when
    /// `directory` has one (none keeps the stored one).
    pub async fn change_directory(&self, directory: &StoredDirectory) -> Result<()> {
        let done = sqlx::query(self.sql(
            "UPDATE directory SET settings = ?, \
             bind_password_sealed = COALESCE(?, bind_password_sealed) WHERE name = ?",
        ))
        .bind(&directory.settings)
        .bind(&directory.bind_password_sealed)
        .bind(&directory.name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchDirectory(directory.name.clone()));
        }
        Ok(())
    }

    pub async fn directory(&self, name: &str) -> Result<StoredDirectory> {
        let row = sqlx::query(
            self.sql("SELECT name, settings, bind_password_sealed FROM directory WHERE name = ?"),
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(Error::NoSuchDirectory(name.to_string()));
        };
        Ok(StoredDirectory {
            name: row.try_get("name")?,
            settings: row.try_get("settings")?,
            bind_password_sealed: row.try_get("bind_password_sealed")?,
        })
    }

    pub async fn directories(&self) -> Result<Vec<StoredDirectory>> {
        let rows = sqlx::query(
            self.sql("SELECT name, settings, bind_password_sealed FROM directory ORDER BY name"),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredDirectory {
                    name: row.try_get("name")?,
                    settings: row.try_get("settings")?,
                    bind_password_sealed: row.try_get("bind_password_sealed")?,
                })
            })
            .collect()
    }

    pub async fn remove_directory(&self, name: &str) -> Result<()> {
        let done = match sqlx::query(self.sql("DELETE FROM directory WHERE name = ?"))
            .bind(name)
            .execute(&self.pool)
            .await
        {
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(Error::DirectoryInUse(name.to_string()));
            }
            other => other?,
        };
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchDirectory(name.to_string()));
        }
        Ok(())
    }
}
