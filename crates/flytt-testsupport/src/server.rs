//! Any of the test servers, so that one test runs across server families:
//! Dovecot in its three layouts and Cyrus.

use std::path::{Path, PathBuf};

use flytt_imap::Session;

use crate::Result;
use crate::cyrus::{self, Cyrus};
use crate::dovecot::{self, Dovecot, Layout};

/// Which server, and how it is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Dovecot(Layout),
    Cyrus,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Dovecot(Layout::Source) => "Dovecot (Maildir++)",
            Family::Dovecot(Layout::Target) => "Dovecot (fs layout)",
            Family::Dovecot(Layout::Legacy) => "Dovecot (INBOX. prefix, few extensions)",
            Family::Dovecot(Layout::Gmail) => "Dovecot (Gmail's folders)",
            Family::Cyrus => "Cyrus",
        }
    }
}

/// A running test server of any family.
pub enum TestServer {
    Dovecot(Dovecot),
    Cyrus(Cyrus),
}

impl TestServer {
    /// Starts a server of `family` with these users (`name`, `password`).
    pub async fn start(family: Family, users: &[(&str, &str)]) -> Result<TestServer> {
        Ok(match family {
            Family::Dovecot(layout) => TestServer::Dovecot(Dovecot::start(layout, users)?),
            Family::Cyrus => TestServer::Cyrus(Cyrus::start(users).await?),
        })
    }

    pub fn family(&self) -> Family {
        match self {
            TestServer::Dovecot(d) => Family::Dovecot(d.layout),
            TestServer::Cyrus(_) => Family::Cyrus,
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestServer::Dovecot(d) => d.url(),
            TestServer::Cyrus(c) => c.url(),
        }
    }

    /// The loopback port of its IMAP service.
    pub fn port(&self) -> u16 {
        match self {
            TestServer::Dovecot(d) => d.port,
            TestServer::Cyrus(c) => c.port,
        }
    }

    /// The administrator's login for `flytt endpoint new`, its password in
    /// `password_file`: Dovecot's master user, Cyrus's admin by SASL PLAIN.
    pub fn admin<'a>(&self, password_file: &'a Path) -> EndpointAdmin<'a> {
        let (user, mode) = match self {
            TestServer::Dovecot(_) => (dovecot::MASTER_USER, "master"),
            TestServer::Cyrus(_) => (cyrus::ADMIN_USER, "plain"),
        };
        EndpointAdmin {
            user,
            mode,
            password_file,
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        match self {
            TestServer::Dovecot(d) => d.ca_file(),
            TestServer::Cyrus(c) => c.ca_file(),
        }
    }

    pub fn separator(&self) -> char {
        match self {
            TestServer::Dovecot(d) => d.separator(),
            TestServer::Cyrus(_) => '.',
        }
    }

    /// The administrator's password.
    pub fn admin_password(&self) -> &'static str {
        match self {
            TestServer::Dovecot(_) => dovecot::MASTER_PASSWORD,
            TestServer::Cyrus(_) => cyrus::ADMIN_PASSWORD,
        }
    }

    /// The top-level folders that have a role from the start: (name, role).
    pub fn role_folders(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            TestServer::Dovecot(d) => d.role_folders(),
            TestServer::Cyrus(_) => &[],
        }
    }

    /// A session in `user`'s mailbox, through the administrator.
    pub async fn admin_session(&self, user: &str) -> Result<Session> {
        match self {
            TestServer::Dovecot(d) => d.admin_session(user).await,
            TestServer::Cyrus(c) => c.admin_session(user).await,
        }
    }

    /// `flytt sync`'s flags for one side (`source` or `target`) opening
    /// `user`'s mailbox as the administrator, whose password is in
    /// `password_file`: Dovecot's master login, or Cyrus's SASL PLAIN with
    /// the user as authorization identity.
    pub fn admin_login_args(&self, side: &str, user: &str, password_file: &Path) -> Vec<String> {
        let mut args = vec![format!("--{side}"), self.url()];
        match self {
            TestServer::Dovecot(_) => {
                args.extend([
                    format!("--{side}-user"),
                    format!("{user}*{}", dovecot::MASTER_USER),
                ]);
            }
            TestServer::Cyrus(_) => args.extend([
                format!("--{side}-user"),
                cyrus::ADMIN_USER.to_string(),
                format!("--{side}-auth"),
                "plain".into(),
                format!("--{side}-authorize-as"),
                user.to_string(),
            ]),
        }
        args.extend([
            format!("--{side}-password-file"),
            password_file.display().to_string(),
            "--ca-file".into(),
            self.ca_file().display().to_string(),
        ]);
        args
    }
}

/// An endpoint's admin login, as `flytt endpoint new` takes it.
#[derive(Clone, Copy, Debug)]
pub struct EndpointAdmin<'a> {
    pub user: &'a str,
    /// `master` (Dovecot's `user*admin`) or `plain` (SASL PLAIN with the
    /// user as authorization identity).
    pub mode: &'a str,
    pub password_file: &'a Path,
}

impl EndpointAdmin<'_> {
    /// Dovecot's master user, its password in `password_file`.
    pub fn dovecot_master(password_file: &Path) -> EndpointAdmin<'_> {
        EndpointAdmin {
            user: dovecot::MASTER_USER,
            mode: "master",
            password_file,
        }
    }
}

/// `flytt endpoint new` for a test server (or a proxy in front of one).
#[derive(Clone, Debug)]
pub struct NewEndpoint<'a> {
    pub name: &'a str,
    pub url: String,
    pub ca_file: PathBuf,
    pub admin: Option<EndpointAdmin<'a>>,
    pub max_migrations: u32,
    /// For a proxy that reads the protocol: no TLS through it.
    pub allow_plaintext: bool,
}

impl NewEndpoint<'_> {
    /// The command's arguments (after `flytt`).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "endpoint",
            "new",
            self.name,
            "--url",
            &self.url,
            "--ca-file",
            &self.ca_file.display().to_string(),
            "--max-concurrent-migrations",
            &self.max_migrations.to_string(),
        ]
        .map(str::to_string)
        .to_vec();
        if let Some(admin) = &self.admin {
            args.extend(
                [
                    "--admin-user",
                    admin.user,
                    "--admin-mode",
                    admin.mode,
                    "--admin-password-file",
                    &admin.password_file.display().to_string(),
                ]
                .map(str::to_string),
            );
        }
        if self.allow_plaintext {
            args.push("--allow-plaintext".into());
        }
        args
    }
}
