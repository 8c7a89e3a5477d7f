//! The directory a staged migration works with (SPEC §1.1): where the
//! target's users are, whether each is a mail-enabled user (an address
//! whose mail goes elsewhere) or has a mailbox here, and the operations the
//! seed's steps need: make a mail user into a mailbox with a password (and
//! "must change at next login"), set forwarding, and make a mailbox a mail
//! user again.
//!
//! Two implementations: LDAP (`ldap`), with the attributes that mean each
//! thing configurable and defaults for a common schema; and a command hook
//! (`hook`) for systems with other admin interfaces: an executable called
//! per operation with JSON on stdin and JSON on stdout.

pub mod hook;
pub mod ldap;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory {directory}: {detail}")]
    Unreachable { directory: String, detail: String },
    #[error("directory {directory}: {operation} refused: {detail}")]
    Refused {
        directory: String,
        operation: &'static str,
        detail: String,
    },
    #[error("directory {directory}: no user with the address {email}")]
    NoSuchUser { directory: String, email: String },
    #[error("directory {directory}: {email} matches {count} entries; it must match one")]
    Ambiguous {
        directory: String,
        email: String,
        count: usize,
    },
    #[error("directory settings: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, DirectoryError>;

/// What an address is in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Mail-enabled: known here, its mail delivered elsewhere.
    MailUser,
    /// Has a mailbox here.
    Mailbox,
}

/// A user found in the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// The entry's name (an LDAP DN; the hook's own identifier).
    pub id: String,
    pub state: UserState,
    #[serde(default)]
    pub forwarding: Vec<String>,
    #[serde(default)]
    pub must_change_password: bool,
}

/// A configured directory. Its secret (the LDAP bind password) is not
/// part of the stored settings: the caller opens it from the keyring and
/// sets it before use.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Directory {
    Ldap(Box<ldap::LdapSettings>),
    Hook(hook::HookSettings),
}

impl Directory {
    /// Connects (and binds) and reads the base: reachable and in step.
    /// Returns a line saying what was checked.
    pub async fn verify(&self) -> Result<String> {
        match self {
            Directory::Ldap(settings) => settings.connect().await?.verify().await,
            Directory::Hook(settings) => settings.verify().await,
        }
    }

    pub async fn lookup(&self, email: &str) -> Result<Option<DirectoryUser>> {
        match self {
            Directory::Ldap(settings) => settings.connect().await?.lookup(email).await,
            Directory::Hook(settings) => settings.lookup(email).await,
        }
    }

    /// Makes a mail user into a mailbox with `new_password` (none: the
    /// password is left as it is, as for a resource mailbox whose calendars
    /// move but which nobody logs in to), and marks whether the password
    /// must be changed at the next login. A user that is a mailbox already
    /// gets the password and mark again (the seed lets a batch be retried).
    pub async fn make_mailbox(
        &self,
        email: &str,
        new_password: Option<&flytt_secrets::SecretString>,
        force_change: bool,
    ) -> Result<()> {
        match self {
            Directory::Ldap(settings) => {
                settings
                    .connect()
                    .await?
                    .make_mailbox(email, new_password, force_change)
                    .await
            }
            Directory::Hook(settings) => {
                settings
                    .make_mailbox(email, new_password, force_change)
                    .await
            }
        }
    }

    /// Forwards the address's mail to `address` (the seed's TargetAddress).
    pub async fn set_forwarding(&self, email: &str, address: &str) -> Result<()> {
        match self {
            Directory::Ldap(settings) => {
                settings
                    .connect()
                    .await?
                    .set_forwarding(email, address)
                    .await
            }
            Directory::Hook(settings) => settings.set_forwarding(email, address).await,
        }
    }

    /// Makes a mailbox a mail user again, keeping its forwarding.
    pub async fn make_mail_user(&self, email: &str) -> Result<()> {
        match self {
            Directory::Ldap(settings) => settings.connect().await?.make_mail_user(email).await,
            Directory::Hook(settings) => settings.make_mail_user(email).await,
        }
    }
}
