//! Directories: stored with their bind password sealed, opened with it for
//! use, and tested (bind, read the base, look a user up).

use flytt_directory::DirectoryUser;
pub use flytt_directory::{Directory, UserState};
use flytt_secrets::{Keyring, SecretString};
use flytt_store::{Store, StoredDirectory};
use serde::Serialize;

use crate::{Control, ControlError, Result};

fn binding(name: &str) -> String {
    format!("directory/{name}/bind-password")
}

/// What a directory test found.
#[derive(Clone, Debug, Serialize)]
pub struct DirectoryTest {
    pub ok: bool,
    /// What was checked.
    pub checked: Option<String>,
    /// The user asked about: null when the address is not in the directory.
    pub user: Option<DirectoryUser>,
    pub error: Option<String>,
}

/// What may be shown of a directory: its settings, never the password.
#[derive(Clone, Debug, Serialize)]
pub struct DirectoryView {
    pub name: String,
    pub settings: serde_json::Value,
    pub bind_password_set: bool,
}

impl DirectoryView {
    pub fn new(stored: &StoredDirectory) -> DirectoryView {
        DirectoryView {
            name: stored.name.clone(),
            settings: serde_json::from_str(&stored.settings).unwrap_or_default(),
            bind_password_set: stored.bind_password_sealed.is_some(),
        }
    }
}

/// A stored directory, ready to use: its bind password opened with
/// `keyring` (the job runner holds one open).
pub async fn open_directory(store: &Store, keyring: &Keyring, name: &str) -> Result<Directory> {
    let stored = store.directory(name).await?;
    let mut directory: Directory = serde_json::from_str(&stored.settings).map_err(|e| {
        ControlError::InvalidParameter(format!("directory {name}: stored settings: {e}"))
    })?;
    if let (Directory::Ldap(settings), Some(sealed)) =
        (&mut directory, &stored.bind_password_sealed)
    {
        settings.bind_password = Some(keyring.open(sealed, &binding(name))?);
    }
    Ok(directory)
}

/// An LDAP directory from its settings as `directory show --json` gives
/// them (`kind`: `ldap`; an LDAP directory's `name` is `name`), as the API
/// and the dashboard take them. A command hook is a program this server
/// would run: only its own administrator adds one (`flytt directory new
/// --hook`), never a request.
pub fn ldap_directory(
    name: &str,
    mut settings: serde_json::Map<String, serde_json::Value>,
) -> Result<Directory> {
    if settings.get("kind").and_then(|k| k.as_str()) != Some("ldap") {
        return Err(ControlError::InvalidParameter(
            "settings.kind: over HTTP only LDAP directories (\"ldap\") are added; a command hook is added on the server with flytt directory new --hook".into(),
        ));
    }
    settings.insert("name".into(), name.into());
    let directory: Directory = serde_json::from_value(settings.into())
        .map_err(|e| ControlError::InvalidParameter(format!("settings: {e}")))?;
    if let Directory::Ldap(ldap) = &directory {
        if !(ldap.url.starts_with("ldap://") || ldap.url.starts_with("ldaps://")) {
            return Err(ControlError::InvalidParameter(format!(
                "settings.url {:?}: use ldap://HOST (StartTLS) or ldaps://HOST",
                ldap.url
            )));
        }
        if !ldap.user_filter.contains("{email}") {
            return Err(ControlError::InvalidParameter(format!(
                "settings.user_filter {:?}: it must contain {{email}}",
                ldap.user_filter
            )));
        }
    }
    Ok(directory)
}

impl Control {
    /// Stores a directory; its bind password (LDAP) is sealed.
    pub async fn create_directory(
        &self,
        name: &str,
        directory: &Directory,
        bind_password: Option<&SecretString>,
    ) -> Result<()> {
        if name.is_empty() || name.contains(['/', '\\']) || name.chars().any(char::is_control) {
            return Err(ControlError::InvalidParameter(format!(
                "directory name {name:?}: no '/' or control characters"
            )));
        }
        let sealed = self.seal_bind_password(name, bind_password).await?;
        let settings = serde_json::to_string(directory)
            .map_err(|e| ControlError::InvalidParameter(e.to_string()))?;
        self.store
            .create_directory(&StoredDirectory {
                name: name.into(),
                settings,
                bind_password_sealed: sealed,
            })
            .await?;
        Ok(())
    }

    /// Changes an LDAP directory: `changes` are settings as `ldap_directory`
    /// takes them, laid over the stored ones (the rest stay); a new bind
    /// password is sealed like the first, none keeps the stored one. A
    /// command hook changes only on the server (`flytt directory`).
    pub async fn change_directory(
        &self,
        name: &str,
        changes: serde_json::Map<String, serde_json::Value>,
        bind_password: Option<&SecretString>,
    ) -> Result<()> {
        let stored = self.store.directory(name).await?;
        let mut settings: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&stored.settings).map_err(|e| {
                ControlError::InvalidParameter(format!("directory {name}: stored settings: {e}"))
            })?;
        if settings.get("kind").and_then(|k| k.as_str()) != Some("ldap") {
            return Err(ControlError::InvalidParameter(format!(
                "directory {name} is a command hook: change it on the server with flytt directory"
            )));
        }
        if changes.contains_key("kind") || changes.contains_key("name") {
            return Err(ControlError::InvalidParameter(
                "a directory's kind and name do not change: add a new one".into(),
            ));
        }
        settings.extend(changes);
        let directory = ldap_directory(name, settings)?;
        let sealed = self.seal_bind_password(name, bind_password).await?;
        let settings = serde_json::to_string(&directory)
            .map_err(|e| ControlError::InvalidParameter(e.to_string()))?;
        self.store
            .change_directory(&StoredDirectory {
                name: name.into(),
                settings,
                bind_password_sealed: sealed,
            })
            .await?;
        Ok(())
    }

    /// A directory's bind password sealed for it (none: none).
    async fn seal_bind_password(
        &self,
        name: &str,
        password: Option<&SecretString>,
    ) -> Result<Option<String>> {
        let Some(password) = password else {
            return Ok(None);
        };
        Ok(Some(
            crate::keyring(&self.store, &self.data_dir)
                .await?
                .seal(password, &binding(name))?,
        ))
    }

    /// A stored directory, ready to use (its bind password opened).
    pub async fn open_directory(&self, name: &str) -> Result<Directory> {
        open_directory(
            &self.store,
            &crate::keyring(&self.store, &self.data_dir).await?,
            name,
        )
        .await
    }

    /// Connects and reads the base, and looks `user` up when given. A
    /// failure is in the answer; only a missing directory is an error.
    pub async fn test_directory(&self, name: &str, user: Option<&str>) -> Result<DirectoryTest> {
        let directory = self.open_directory(name).await?;
        let mut test = DirectoryTest {
            ok: false,
            checked: None,
            user: None,
            error: None,
        };
        match directory.verify().await {
            Ok(checked) => test.checked = Some(checked),
            Err(e) => {
                test.error = Some(e.to_string());
                return Ok(test);
            }
        }
        if let Some(email) = user {
            match directory.lookup(email).await {
                Ok(found) => test.user = found,
                Err(e) => {
                    test.error = Some(e.to_string());
                    return Ok(test);
                }
            }
        }
        test.ok = true;
        Ok(test)
    }
}
