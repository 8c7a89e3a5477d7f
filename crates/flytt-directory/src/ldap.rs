//! The LDAP directory (ldap3): a bind DN and password, a base DN and a
//! filter that finds a user by address, and the attributes that mean "has
//! a mailbox", "must change password" and "forwards to". Passwords are set
//! with the Password Modify extended operation (RFC 3062), so the server
//! hashes them by its own policy; flytt never writes a hash itself.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use flytt_secrets::SecretString;
use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry, ldap_escape};
use serde::{Deserialize, Serialize};

use crate::{DirectoryError, DirectoryUser, Result, UserState};

fn default_filter() -> String {
    "(mail={email})".into()
}
fn default_mailbox_attribute() -> String {
    "mailboxEnabled".into()
}
fn default_true() -> String {
    "TRUE".into()
}
fn default_false() -> String {
    "FALSE".into()
}
fn default_change_attribute() -> String {
    "mustChangePassword".into()
}
fn default_forwarding_attribute() -> String {
    "mailForwardingAddress".into()
}

/// How flytt talks to an LDAP directory. The defaults fit a common mail
/// schema (qmail-style `mailForwardingAddress`, a boolean
/// `mailboxEnabled`, a boolean `mustChangePassword`); each is a setting.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LdapSettings {
    /// A name for messages.
    pub name: String,
    /// `ldap://HOST[:PORT]` (StartTLS; with plaintext allowed, still
    /// StartTLS when the server offers it) or
    /// `ldaps://HOST[:PORT]`.
    pub url: String,
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    pub bind_dn: String,
    pub base_dn: String,
    /// `{email}` stands for the (escaped) address.
    #[serde(default = "default_filter")]
    pub user_filter: String,
    #[serde(default = "default_mailbox_attribute")]
    pub mailbox_attribute: String,
    #[serde(default = "default_true")]
    pub mailbox_value: String,
    #[serde(default = "default_false")]
    pub no_mailbox_value: String,
    /// Empty: the directory has no such mark.
    #[serde(default = "default_change_attribute")]
    pub must_change_attribute: String,
    #[serde(default = "default_forwarding_attribute")]
    pub forwarding_attribute: String,
    /// Opened from the keyring by the caller; never stored here.
    #[serde(skip)]
    pub bind_password: Option<SecretString>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl LdapSettings {
    pub fn new(name: &str, url: &str, bind_dn: &str, base_dn: &str) -> LdapSettings {
        LdapSettings {
            name: name.into(),
            url: url.into(),
            allow_plaintext: false,
            ca_files: Vec::new(),
            bind_dn: bind_dn.into(),
            base_dn: base_dn.into(),
            user_filter: default_filter(),
            mailbox_attribute: default_mailbox_attribute(),
            mailbox_value: default_true(),
            no_mailbox_value: default_false(),
            must_change_attribute: default_change_attribute(),
            forwarding_attribute: default_forwarding_attribute(),
            bind_password: None,
        }
    }

    fn unreachable(&self, detail: impl std::fmt::Display) -> DirectoryError {
        DirectoryError::Unreachable {
            directory: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    /// Connects (TLS as configured) and binds.
    pub async fn connect(&self) -> Result<LdapSession<'_>> {
        let implicit_tls = self.url.starts_with("ldaps://");
        if !implicit_tls && !self.url.starts_with("ldap://") {
            return Err(DirectoryError::Invalid(format!(
                "{:?}: use ldap:// (StartTLS) or ldaps://",
                self.url
            )));
        }
        let plain = LdapConnSettings::new().set_conn_timeout(TIMEOUT);
        let config = flytt_tls::client_config(&flytt_tls::Trust {
            ca_files: self.ca_files.clone(),
            fingerprints: Vec::new(),
        })
        .map_err(|e| self.unreachable(e))?;
        let with_tls = plain.clone().set_config(config).set_starttls(!implicit_tls);
        let connected = match LdapConnAsync::with_settings(with_tls, &self.url).await {
            // Plaintext is allowed, and the server has no StartTLS (it
            // refused the extended operation): only then go on without.
            // A certificate that cannot be verified is never a reason to
            // send the bind password in the clear.
            Err(ldap3::LdapError::LdapResult { result })
                if !implicit_tls && self.allow_plaintext =>
            {
                tracing::info!(directory = %self.name, rc = result.rc, "no StartTLS offered; going on in plaintext as allowed");
                LdapConnAsync::with_settings(plain, &self.url).await
            }
            other => other,
        };
        let (connection, mut ldap) = connected.map_err(|e| self.unreachable(e))?;
        ldap3::drive!(connection);
        ldap.with_timeout(TIMEOUT);
        let password = self
            .bind_password
            .as_ref()
            .map(SecretString::expose)
            .unwrap_or_default();
        ldap.simple_bind(&self.bind_dn, password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.unreachable(format!("bind as {}: {e}", self.bind_dn)))?;
        Ok(LdapSession {
            settings: self,
            ldap,
        })
    }
}

/// A bound connection.
pub struct LdapSession<'a> {
    settings: &'a LdapSettings,
    ldap: Ldap,
}

impl LdapSession<'_> {
    fn refused(&self, operation: &'static str, detail: impl std::fmt::Display) -> DirectoryError {
        DirectoryError::Refused {
            directory: self.settings.name.clone(),
            operation,
            detail: detail.to_string(),
        }
    }

    pub async fn verify(mut self) -> Result<String> {
        let base = self.settings.base_dn.clone();
        let (entries, _) = self
            .ldap
            .search(&base, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.refused("reading the base DN", e))?;
        let _ = self.ldap.unbind().await;
        if entries.is_empty() {
            return Err(self.refused("reading the base DN", format!("{base} not found")));
        }
        Ok(format!(
            "bound as {} and read {base}",
            self.settings.bind_dn
        ))
    }

    fn filter(&self, email: &str) -> String {
        self.settings
            .user_filter
            .replace("{email}", &ldap_escape(email))
    }

    /// The one entry for `email`, with the attributes flytt reads.
    async fn entry(&mut self, email: &str) -> Result<Option<SearchEntry>> {
        let s = self.settings;
        let attributes: Vec<&str> = [
            s.mailbox_attribute.as_str(),
            s.must_change_attribute.as_str(),
            s.forwarding_attribute.as_str(),
        ]
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
        let filter = self.filter(email);
        // One address names one entry; a directory that answers with more
        // is read no further than needed to say so (a hostile or broken
        // server cannot make flytt hold the whole directory).
        const MOST: usize = 16;
        let options = ldap3::SearchOptions::new()
            .sizelimit(MOST as i32 + 1)
            .timelimit(TIMEOUT.as_secs() as i32);
        let mut stream = self
            .ldap
            .with_search_options(options)
            .streaming_search(&s.base_dn, Scope::Subtree, &filter, attributes)
            .await
            .map_err(|e| self.refused("search", e))?;
        let mut entries = Vec::new();
        while entries.len() <= MOST {
            match stream.next().await {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => break,
                Err(e) => return Err(self.refused("search", e)),
            }
        }
        if entries.len() <= MOST {
            stream
                .finish()
                .await
                .success()
                .map_err(|e| self.refused("search", e))?;
        }
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.into_iter().next().map(SearchEntry::construct)),
            count => Err(DirectoryError::Ambiguous {
                directory: s.name.clone(),
                email: email.into(),
                count,
            }),
        }
    }

    async fn required(&mut self, email: &str) -> Result<SearchEntry> {
        self.entry(email)
            .await?
            .ok_or_else(|| DirectoryError::NoSuchUser {
                directory: self.settings.name.clone(),
                email: email.into(),
            })
    }

    pub async fn lookup(mut self, email: &str) -> Result<Option<DirectoryUser>> {
        let entry = self.entry(email).await?;
        let _ = self.ldap.unbind().await;
        let s = self.settings;
        Ok(entry.map(|entry| {
            let first = |attribute: &str| {
                entry
                    .attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
                    .and_then(|(_, v)| v.first().cloned())
            };
            let has_mailbox = first(&s.mailbox_attribute)
                .is_some_and(|v| v.eq_ignore_ascii_case(&s.mailbox_value));
            DirectoryUser {
                id: entry.dn.clone(),
                state: if has_mailbox {
                    UserState::Mailbox
                } else {
                    UserState::MailUser
                },
                forwarding: entry
                    .attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&s.forwarding_attribute))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                must_change_password: !s.must_change_attribute.is_empty()
                    && first(&s.must_change_attribute)
                        .is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
            }
        }))
    }

    async fn replace(&mut self, dn: &str, changes: Vec<(&str, Option<&str>)>) -> Result<()> {
        let mods: Vec<Mod<&str>> = changes
            .into_iter()
            .filter(|(attribute, _)| !attribute.is_empty())
            .map(|(attribute, value)| match value {
                Some(value) => Mod::Replace(attribute, HashSet::from([value])),
                None => Mod::Replace(attribute, HashSet::new()),
            })
            .collect();
        self.ldap
            .modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.refused("modify", e))?;
        Ok(())
    }

    pub async fn make_mailbox(
        mut self,
        email: &str,
        new_password: Option<&SecretString>,
        force_change: bool,
    ) -> Result<()> {
        let entry = self.required(email).await?;
        let s = self.settings;
        if let Some(new_password) = new_password {
            self.ldap
                .extended(PasswordModify {
                    user_id: Some(&entry.dn),
                    old_pass: None,
                    new_pass: Some(new_password.expose()),
                })
                .await
                .and_then(|r| r.success())
                .map_err(|e| self.refused("setting the password", e))?;
        }
        let change = if force_change { "TRUE" } else { "FALSE" };
        self.replace(
            &entry.dn,
            vec![
                (s.mailbox_attribute.as_str(), Some(s.mailbox_value.as_str())),
                (s.must_change_attribute.as_str(), Some(change)),
            ],
        )
        .await?;
        let _ = self.ldap.unbind().await;
        Ok(())
    }

    pub async fn set_forwarding(mut self, email: &str, address: &str) -> Result<()> {
        let entry = self.required(email).await?;
        let attribute = self.settings.forwarding_attribute.clone();
        self.replace(&entry.dn, vec![(attribute.as_str(), Some(address))])
            .await?;
        let _ = self.ldap.unbind().await;
        Ok(())
    }

    pub async fn make_mail_user(mut self, email: &str) -> Result<()> {
        let entry = self.required(email).await?;
        let s = self.settings;
        self.replace(
            &entry.dn,
            vec![(
                s.mailbox_attribute.as_str(),
                Some(s.no_mailbox_value.as_str()),
            )],
        )
        .await?;
        let _ = self.ldap.unbind().await;
        Ok(())
    }
}
