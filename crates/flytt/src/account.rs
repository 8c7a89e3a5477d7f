//! Turns URLs, user flags and password sources into `Account`s.
//!
//! `imaps://HOST:PORT` is TLS from the start, `imap://HOST:PORT` is
//! STARTTLS, refused if the server does not offer it unless plaintext was
//! allowed explicitly. A user may be in the URL
//! (`imap://user%40example.org@HOST:PORT`) or given by flag. Passwords come
//! from a file, an environment variable or a prompt, never from the
//! command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flytt_imap::{Auth, OAuthToken, Secret, ServerConfig};
use flytt_sync::Account;

/// How to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// LOGIN (works with Dovecot master users as `user*admin`).
    Login,
    /// AUTHENTICATE PLAIN (with --*-authorize-as: the admin form).
    Plain,
    /// AUTHENTICATE XOAUTH2; the "password" is an OAuth access token.
    Xoauth2,
    /// AUTHENTICATE OAUTHBEARER; the "password" is an OAuth access token.
    Oauthbearer,
}

/// One side's command-line settings.
pub struct Side<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub user: Option<&'a str>,
    pub password_file: Option<&'a Path>,
    pub password_env: Option<&'a str>,
    pub auth: AuthMethod,
    pub authorize_as: Option<&'a str>,
    pub allow_plaintext: bool,
    pub ca_files: &'a [PathBuf],
    pub tls_fingerprints: &'a [flytt_tls::Fingerprint],
    pub timeout_secs: u64,
    pub compression: flytt_store::Compression,
    /// With an OAuth login: where its tokens come from, instead of a
    /// token in the password file.
    pub oauth: Option<&'a OAuthFlags>,
}

/// One side's OAuth client flags (`--source-oauth-*`).
pub struct OAuthFlags {
    pub token_url: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    pub scope: Option<String>,
    pub refresh_token_file: Option<PathBuf>,
    pub service_account_file: Option<PathBuf>,
}

pub fn account(side: &Side<'_>) -> Result<Account> {
    let (server, url_user) = server_config(
        side.url,
        side.allow_plaintext,
        side.ca_files,
        side.timeout_secs,
    )
    .with_context(|| format!("--{}", side.name))?;
    let mut server = server;
    server.tls_fingerprints = side.tls_fingerprints.to_vec();
    server.compression = flytt_control::endpoints::compression(side.compression);
    let user = match (side.user, url_user) {
        (Some(flag), _) => flag.to_string(),
        (None, Some(url_user)) => url_user,
        (None, None) => bail!(
            "no user for the {}: give --{}-user or put it in the URL",
            side.name,
            side.name
        ),
    };
    if let Some(oauth) = side.oauth {
        return oauth_account(side, oauth, server, user);
    }
    let secret = password(side, &user)?;
    let auth = match side.auth {
        AuthMethod::Login => Auth::Login {
            user,
            password: secret,
        },
        AuthMethod::Plain => Auth::Plain {
            user,
            password: secret,
            authorize_as: side.authorize_as.map(str::to_string),
        },
        AuthMethod::Xoauth2 => Auth::XOAuth2 {
            user,
            token: OAuthToken::Fixed(secret),
        },
        AuthMethod::Oauthbearer => Auth::OAuthBearer {
            user,
            token: OAuthToken::Fixed(secret),
        },
    };
    Ok(Account { server, auth })
}

/// An account whose OAuth tokens come from a token endpoint, renewed as
/// they expire (flytt-oauth).
fn oauth_account(
    side: &Side<'_>,
    flags: &OAuthFlags,
    server: ServerConfig,
    user: String,
) -> Result<Account> {
    let name = side.name;
    let read = |path: &Option<PathBuf>, flag: &str| -> Result<Option<Secret>> {
        path.as_deref()
            .map(|p| read_password_file(p).with_context(|| format!("--{name}-oauth-{flag}")))
            .transpose()
    };
    let service_account = match &flags.service_account_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("--{name}-oauth-service-account-file {}", path.display())
            })?;
            Some(
                flytt_oauth::ServiceAccountKey::from_json(&text)
                    .with_context(|| format!("--{name}-oauth-service-account-file"))?,
            )
        }
        None => None,
    };
    let client = flytt_oauth::OAuthClient::new(
        flytt_oauth::ClientSettings {
            token_url: flags.token_url.clone(),
            client_id: flags.client_id.clone(),
            client_secret: read(&flags.client_secret_file, "client-secret-file")?,
            scope: flags.scope.clone(),
            trust: flytt_tls::Trust {
                ca_files: side.ca_files.to_vec(),
                fingerprints: Vec::new(),
            },
        },
        service_account,
    )
    .with_context(|| format!("--{name}-oauth-token-url"))?;
    let tokens = client.tokens(
        &user,
        read(&flags.refresh_token_file, "refresh-token-file")?,
    );
    let token = OAuthToken::Refreshing(tokens);
    let auth = match side.auth {
        AuthMethod::Xoauth2 => Auth::XOAuth2 { user, token },
        AuthMethod::Oauthbearer => Auth::OAuthBearer { user, token },
        AuthMethod::Login | AuthMethod::Plain => {
            bail!("--{name}-oauth-token-url needs --{name}-auth xoauth2 or oauthbearer")
        }
    };
    Ok(Account { server, auth })
}

/// Connection settings from a server URL, and the user named in it, if any.
pub fn server_config(
    text: &str,
    allow_plaintext: bool,
    ca_files: &[PathBuf],
    timeout_secs: u64,
) -> Result<(ServerConfig, Option<String>)> {
    let (mut server, user) = ServerConfig::from_url(text)?;
    server.allow_plaintext = allow_plaintext;
    server.ca_files = ca_files.to_vec();
    server.timeout = std::time::Duration::from_secs(timeout_secs.max(1));
    Ok((server, user))
}

/// `--compression never|always`, for `flytt sync` and endpoints.
pub fn parse_compression(text: &str) -> std::result::Result<flytt_store::Compression, String> {
    text.parse()
        .map_err(|()| format!("{text:?}: use never or always"))
}

/// Reads a password file: one trailing line break is the file's, not the
/// password's.
pub fn read_password_file(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(Secret::new(text))
}

fn password(side: &Side<'_>, user: &str) -> Result<Secret> {
    if let Some(path) = side.password_file {
        return read_password_file(path).with_context(|| format!("--{}-password-file", side.name));
    }
    if let Some(var) = side.password_env {
        let value =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        return Ok(Secret::new(value));
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let value =
            rpassword::prompt_password(format!("Password for {user} on the {}: ", side.name))
                .context("cannot read the password")?;
        return Ok(Secret::new(value));
    }
    bail!(
        "no password for the {}: give --{}-password-file or --{}-password-env",
        side.name,
        side.name,
        side.name
    )
}
