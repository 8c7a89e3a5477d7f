//! Endpoints: adding one (checked, its admin password sealed), testing
//! one (connect, capabilities, a login through the admin account), and how
//! an endpoint's settings become a connection and an admin login (shared
//! with the job runner).

use std::path::PathBuf;
use std::time::Duration;

use flytt_imap::{Access, Auth, OAuthToken, Secret, ServerConfig, Session};
use flytt_secrets::{Keyring, SecretString};
use flytt_store::{AdminMode, Endpoint, EndpointOAuth, OAuthMechanism};
use serde::Serialize;

use crate::{Control, ControlError, Result};

/// The AAD binding of an endpoint's sealed admin password.
pub fn admin_password_binding(name: &str) -> String {
    format!("endpoint/{name}/admin-password")
}

/// The endpoint's ManageSieve server, if it has one.
pub fn sieve_server(
    endpoint: &Endpoint,
) -> std::result::Result<Option<flytt_sieve::SieveServer>, String> {
    let Some(url) = &endpoint.sieve_url else {
        return Ok(None);
    };
    let mut server = flytt_sieve::SieveServer::from_url(url).map_err(|e| e.to_string())?;
    server.allow_plaintext = endpoint.allow_plaintext;
    server.ca_files = endpoint.ca_file.iter().map(PathBuf::from).collect();
    server.tls_fingerprints = tls_fingerprints(endpoint)?;
    Ok(Some(server))
}

/// Stands for the user in an endpoint's DAV URL: where each user's
/// principal or home is, for an admin login.
pub const DAV_USER_PLACEHOLDER: &str = "{user}";

/// The endpoint's CardDAV/CalDAV server, where it has one, opened with the
/// IMAP login `auth`: a user's own login as it is; an admin login (a
/// Dovecot master user or SASL PLAIN with an authorization identity) as
/// the admin with HTTP Basic, on the URL with `{user}` replaced by the
/// user, since DAV has no standard way to ask for another user's
/// principal. The admin needs the DAV server's rights to every user's
/// collections.
pub fn dav_account(
    endpoint: &Endpoint,
    auth: &Auth,
) -> std::result::Result<Option<flytt_dav::DavAccount>, String> {
    let Some(template) = &endpoint.dav_url else {
        return Ok(None);
    };
    let (login, password, owner) = match auth {
        Auth::Login { user, password }
        | Auth::Plain {
            user,
            password,
            authorize_as: None,
        } => (user, password, None),
        Auth::Master {
            user,
            admin,
            password,
        } => (admin, password, Some(user)),
        Auth::Plain {
            user,
            password,
            authorize_as: Some(owner),
        } => (user, password, Some(owner)),
        Auth::XOAuth2 { .. } | Auth::OAuthBearer { .. } => {
            return Err(
                "an OAuth login cannot open DAV collections (HTTP Basic needs a password)".into(),
            );
        }
    };
    if owner.is_some() && !template.contains(DAV_USER_PLACEHOLDER) {
        return Err(admin_dav_url_needs_user(template));
    }
    let whose = owner.unwrap_or(login);
    Ok(Some(flytt_dav::DavAccount {
        url: dav_url(&user_dav_url(template, whose), endpoint.allow_plaintext)?,
        user: login.clone(),
        password: password.expose().to_string(),
        owner: owner.cloned(),
        trust: trust(endpoint)?,
    }))
}

/// What the endpoint trusts for TLS beside the system's roots: its CA file
/// and pinned certificates (for the DAV server as for IMAP).
fn trust(endpoint: &Endpoint) -> std::result::Result<flytt_tls::Trust, String> {
    Ok(flytt_tls::Trust {
        ca_files: endpoint.ca_file.iter().map(PathBuf::from).collect(),
        fingerprints: tls_fingerprints(endpoint)?,
    })
}

fn admin_dav_url_needs_user(template: &str) -> String {
    format!(
        "{template}: the endpoint logs in as an admin, so its DAV URL must say where each user's collections are, with {DAV_USER_PLACEHOLDER} (e.g. https://dav.example.org/{DAV_USER_PLACEHOLDER}/)"
    )
}

/// `template` with `{user}` replaced by `user`, encoded as a path segment
/// (an address's `@` kept: servers name principals that way).
fn user_dav_url(template: &str, user: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'@')
        .remove(b'.')
        .remove(b'-')
        .remove(b'_')
        .remove(b'~')
        .remove(b'+');
    template.replace(
        DAV_USER_PLACEHOLDER,
        &percent_encoding::utf8_percent_encode(user, SEGMENT).to_string(),
    )
}

/// A DAV URL: https, or http where the endpoint allows plaintext.
fn dav_url(text: &str, allow_plaintext: bool) -> std::result::Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text}: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_plaintext => Ok(url),
        "http" => Err(format!(
            "{text} is plain HTTP: passwords would cross the network readable (use https, or --allow-plaintext on a trusted network)"
        )),
        other => Err(format!("{text}: {other}: is not http or https")),
    }
}

/// The connection settings of an endpoint.
pub fn server_config(endpoint: &Endpoint) -> std::result::Result<ServerConfig, String> {
    let (mut server, _) = ServerConfig::from_url(&endpoint.url).map_err(|e| e.to_string())?;
    server.allow_plaintext = endpoint.allow_plaintext;
    server.ca_files = endpoint.ca_file.iter().map(PathBuf::from).collect();
    server.tls_fingerprints = tls_fingerprints(endpoint)?;
    server.compression = compression(endpoint.compression);
    Ok(server)
}

/// An endpoint's compression setting as the IMAP client takes it.
pub fn compression(setting: flytt_store::Compression) -> flytt_imap::Compression {
    match setting {
        flytt_store::Compression::Always => flytt_imap::Compression::Always,
        flytt_store::Compression::Never => flytt_imap::Compression::Never,
    }
}

/// The endpoint's pinned certificates.
pub fn tls_fingerprints(
    endpoint: &Endpoint,
) -> std::result::Result<Vec<flytt_tls::Fingerprint>, String> {
    endpoint
        .tls_fingerprints
        .iter()
        .map(|f| f.parse())
        .collect()
}

/// The endpoint's admin login for `user`, if the endpoint has an admin.
pub fn admin_auth(
    endpoint: &Endpoint,
    user: &str,
    keyring: &Keyring,
) -> std::result::Result<Option<Auth>, String> {
    let (Some(admin), Some(sealed)) = (&endpoint.admin_user, &endpoint.admin_password_sealed)
    else {
        return Ok(None);
    };
    let password = keyring
        .open(sealed, &admin_password_binding(&endpoint.name))
        .map_err(|e| format!("the admin password of endpoint {}: {e}", endpoint.name))?;
    let password = Secret::new(password.expose());
    Ok(Some(match endpoint.admin_mode {
        AdminMode::Plain => Auth::Plain {
            user: admin.clone(),
            password,
            authorize_as: Some(user.to_string()),
        },
        AdminMode::Master => Auth::Master {
            user: user.to_string(),
            admin: admin.clone(),
            password,
        },
    }))
}

/// The AAD bindings of an endpoint's sealed OAuth secrets.
pub fn oauth_client_secret_binding(name: &str) -> String {
    format!("endpoint/{name}/oauth-client-secret")
}

pub fn oauth_service_account_binding(name: &str) -> String {
    format!("endpoint/{name}/oauth-service-account")
}

/// How an endpoint opens `user`'s mailbox when the CSV gives no password:
/// its OAuth client (with the user's refresh token from the CSV, if any),
/// else its admin account; `None` when it has neither. The one rule for
/// the runner and `endpoint test`.
pub fn endpoint_auth(
    endpoint: &Endpoint,
    user: &str,
    keyring: &Keyring,
    refresh_token: Option<Secret>,
) -> std::result::Result<Option<Auth>, String> {
    let Some(oauth) = &endpoint.oauth else {
        return admin_auth(endpoint, user, keyring);
    };
    let client = oauth_client(endpoint, oauth, keyring)?;
    let token = OAuthToken::Refreshing(client.tokens(user, refresh_token));
    let user = user.to_string();
    Ok(Some(match oauth.mechanism {
        OAuthMechanism::Xoauth2 => Auth::XOAuth2 { user, token },
        OAuthMechanism::Oauthbearer => Auth::OAuthBearer { user, token },
    }))
}

/// The endpoint's OAuth client, its secrets opened; its token endpoint
/// trusts what the endpoint's IMAP connections trust.
fn oauth_client(
    endpoint: &Endpoint,
    oauth: &EndpointOAuth,
    keyring: &Keyring,
) -> std::result::Result<flytt_oauth::OAuthClient, String> {
    let open = |sealed: &Option<String>, binding: String, what: &str| {
        sealed
            .as_ref()
            .map(|sealed| {
                keyring
                    .open(sealed, &binding)
                    .map_err(|e| format!("the OAuth {what} of endpoint {}: {e}", endpoint.name))
            })
            .transpose()
    };
    let client_secret = open(
        &oauth.client_secret_sealed,
        oauth_client_secret_binding(&endpoint.name),
        "client secret",
    )?;
    let service_account = open(
        &oauth.service_account_sealed,
        oauth_service_account_binding(&endpoint.name),
        "service account key",
    )?
    .map(|key| flytt_oauth::ServiceAccountKey::from_json(key.expose()))
    .transpose()
    .map_err(|e| format!("endpoint {}: {e}", endpoint.name))?;
    flytt_oauth::OAuthClient::new(
        flytt_oauth::ClientSettings {
            token_url: oauth.token_url.clone(),
            client_id: oauth.client_id.clone(),
            client_secret: client_secret.map(|s| Secret::new(s.expose())),
            scope: oauth.scope.clone(),
            trust: flytt_tls::Trust {
                ca_files: endpoint.ca_file.iter().map(PathBuf::from).collect(),
                fingerprints: Vec::new(),
            },
        },
        service_account,
    )
    .map_err(|e| format!("endpoint {}: {e}", endpoint.name))
}

/// An endpoint's OAuth client as given (CLI, API), secrets in the clear;
/// `Control::seal_oauth` checks and seals it.
pub struct OAuthSettings {
    pub mechanism: OAuthMechanism,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub scope: Option<String>,
    /// A service account's JSON key file's content.
    pub service_account_key: Option<SecretString>,
}

/// Sessions per user and server at most: more would look like an attack to
/// most servers (Dovecot allows ten per user and address by default).
pub const MAX_CONNECTIONS_PER_USER: u32 = 16;

/// Settings that cannot work are refused before they are stored.
pub fn check_endpoint(endpoint: &Endpoint) -> Result<()> {
    let invalid = |m: String| Err(ControlError::InvalidParameter(m));
    if endpoint.name.is_empty()
        || endpoint.name.chars().count() > 64
        || endpoint.name.contains(['/', '\\'])
        || endpoint.name.chars().any(char::is_control)
    {
        return invalid(format!(
            "endpoint name {:?}: 1 to 64 characters, no '/' or control characters",
            endpoint.name
        ));
    }
    if let Err(e) = tls_fingerprints(endpoint) {
        return invalid(format!("TLS fingerprint: {e}"));
    }
    if let Err(e) = server_config(endpoint) {
        return invalid(format!("url {:?}: {e}", endpoint.url));
    }
    if endpoint.max_concurrent_migrations == 0 {
        return invalid("MaxConcurrentMigrations must be at least 1".into());
    }
    if endpoint.max_concurrent_incremental_syncs == 0
        || endpoint.max_concurrent_incremental_syncs > endpoint.max_concurrent_migrations
    {
        return invalid(format!(
            "MaxConcurrentIncrementalSyncs must be between 1 and MaxConcurrentMigrations ({})",
            endpoint.max_concurrent_migrations
        ));
    }
    if !(1..=MAX_CONNECTIONS_PER_USER).contains(&endpoint.connections_per_user) {
        return invalid(format!(
            "ConnectionsPerUser must be between 1 and {MAX_CONNECTIONS_PER_USER}"
        ));
    }
    if let Some(sieve) = &endpoint.sieve_url
        && let Err(e) = flytt_sieve::SieveServer::from_url(sieve)
    {
        return invalid(format!("sieve url: {e}"));
    }
    if let Some(dav) = &endpoint.dav_url {
        if let Err(e) = dav_url(&user_dav_url(dav, "user"), endpoint.allow_plaintext) {
            return invalid(format!("dav url: {e}"));
        }
        if endpoint.admin_user.is_some() && !dav.contains(DAV_USER_PLACEHOLDER) {
            return invalid(format!("dav url: {}", admin_dav_url_needs_user(dav)));
        }
    }
    if endpoint.admin_password_sealed.is_some() != endpoint.admin_user.is_some() {
        return invalid("the admin user and the admin password go together".into());
    }
    if let Some(oauth) = &endpoint.oauth {
        if endpoint.admin_user.is_some() {
            return invalid(
                "an endpoint opens users' mailboxes with an admin account or an OAuth client, not both"
                    .into(),
            );
        }
        if oauth.client_id.trim().is_empty() {
            return invalid("the OAuth client id is empty".into());
        }
        let settings = flytt_oauth::ClientSettings {
            token_url: oauth.token_url.clone(),
            client_id: oauth.client_id.clone(),
            client_secret: None,
            scope: None,
            trust: flytt_tls::Trust::default(),
        };
        if let Err(e) = flytt_oauth::TokenEndpoint::new(settings) {
            return invalid(e.to_string());
        }
    }
    Ok(())
}

/// New settings for an endpoint (`endpoint set`, `PATCH
/// /api/v1/endpoints/{name}`): what is `None` stays; an empty text clears
/// an optional setting. Secrets come sealed for the endpoint. The one
/// place where a change is applied, for the CLI and the API alike.
#[derive(Clone, Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub allow_plaintext: Option<bool>,
    pub ca_file: Option<String>,
    pub tls_fingerprints: Option<Vec<String>>,
    pub admin_user: Option<String>,
    pub admin_mode: Option<flytt_store::AdminMode>,
    pub admin_password_sealed: Option<String>,
    pub max_concurrent_migrations: Option<u32>,
    pub max_concurrent_incremental_syncs: Option<u32>,
    pub connections_per_user: Option<u32>,
    pub compression: Option<flytt_store::Compression>,
    pub download_limit: Option<flytt_store::DownloadLimit>,
    pub sieve_url: Option<String>,
    pub dav_url: Option<String>,
    pub directory: Option<String>,
    /// `Some(None)` removes the OAuth client.
    pub oauth: Option<Option<EndpointOAuth>>,
}

impl EndpointChange {
    /// `endpoint` with the change made (checked when stored).
    pub fn apply(self, mut endpoint: Endpoint) -> Endpoint {
        let optional = |text: String| Some(text).filter(|t| !t.trim().is_empty());
        if let Some(url) = self.url {
            endpoint.url = url;
        }
        if let Some(allow) = self.allow_plaintext {
            endpoint.allow_plaintext = allow;
        }
        if let Some(ca) = self.ca_file {
            endpoint.ca_file = optional(ca);
        }
        if let Some(fingerprints) = self.tls_fingerprints {
            endpoint.tls_fingerprints = fingerprints;
        }
        if let Some(user) = self.admin_user {
            endpoint.admin_user = optional(user);
        }
        if let Some(mode) = self.admin_mode {
            endpoint.admin_mode = mode;
        }
        if let Some(sealed) = self.admin_password_sealed {
            endpoint.admin_password_sealed = Some(sealed);
        }
        if let Some(n) = self.max_concurrent_migrations {
            endpoint.max_concurrent_migrations = n;
        }
        if let Some(n) = self.max_concurrent_incremental_syncs {
            endpoint.max_concurrent_incremental_syncs = n;
        }
        if let Some(n) = self.connections_per_user {
            endpoint.connections_per_user = n;
        }
        if let Some(compression) = self.compression {
            endpoint.compression = compression;
        }
        if let Some(limit) = self.download_limit {
            endpoint.download_limit = limit;
        }
        if let Some(sieve) = self.sieve_url {
            endpoint.sieve_url = optional(sieve);
        }
        if let Some(dav) = self.dav_url {
            endpoint.dav_url = optional(dav);
        }
        if let Some(directory) = self.directory {
            endpoint.directory = optional(directory);
        }
        if let Some(oauth) = self.oauth {
            endpoint.oauth = oauth;
        }
        endpoint
    }
}

/// What an endpoint test found.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointTest {
    pub ok: bool,
    pub server: String,
    /// The user the admin account opened, when one was asked for.
    pub logged_in_as: Option<String>,
    pub capabilities: Vec<String>,
    pub capabilities_before_login: Vec<String>,
    /// Why the test failed.
    pub error: Option<String>,
    /// What the test checked, in words (each a sentence).
    pub checked: Vec<String>,
    /// What it did not check, and how to: a green test must not be read
    /// as more than it is.
    pub not_checked: Vec<String>,
    /// The CardDAV/CalDAV server, where the endpoint has one.
    pub dav: Option<DavTest>,
}

/// What an endpoint test found of its CardDAV/CalDAV server.
#[derive(Clone, Debug, Serialize)]
pub struct DavTest {
    pub ok: bool,
    /// The URL asked: the endpoint's DAV URL, up to `{user}` without a user.
    pub url: String,
    /// The DAV classes the server names (OPTIONS), without logging in.
    pub classes: Vec<String>,
    /// With a user: how many address books and calendars the endpoint's
    /// login finds for them.
    pub address_books: Option<usize>,
    pub calendars: Option<usize>,
    /// Why the test failed.
    pub error: Option<String>,
}

/// How long an endpoint test waits for the server.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Control {
    /// Seals an endpoint's admin password for storing.
    pub async fn seal_admin_password(
        &self,
        endpoint: &str,
        password: &SecretString,
    ) -> Result<String> {
        let keyring = crate::keyring(&self.store, &self.data_dir).await?;
        Ok(keyring.seal(password, &admin_password_binding(endpoint))?)
    }

    /// Checks an OAuth client's settings (a service account key must read
    /// as one) and seals its secrets for storing.
    pub async fn seal_oauth(
        &self,
        endpoint: &str,
        settings: OAuthSettings,
    ) -> Result<EndpointOAuth> {
        if let Some(key) = &settings.service_account_key {
            flytt_oauth::ServiceAccountKey::from_json(key.expose())
                .map_err(|e| ControlError::InvalidParameter(e.to_string()))?;
        }
        let keyring = crate::keyring(&self.store, &self.data_dir).await?;
        let seal = |secret: &Option<SecretString>, binding: String| {
            secret
                .as_ref()
                .map(|secret| keyring.seal(secret, &binding))
                .transpose()
        };
        Ok(EndpointOAuth {
            mechanism: settings.mechanism,
            token_url: settings.token_url,
            client_id: settings.client_id,
            client_secret_sealed: seal(
                &settings.client_secret,
                oauth_client_secret_binding(endpoint),
            )?,
            scope: settings.scope,
            service_account_sealed: seal(
                &settings.service_account_key,
                oauth_service_account_binding(endpoint),
            )?,
        })
    }

    /// Checks and stores a new endpoint (its admin password sealed already).
    pub async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        check_endpoint(endpoint)?;
        Ok(self.store.create_endpoint(endpoint).await?)
    }

    /// Checks and stores an endpoint's new settings.
    pub async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        check_endpoint(endpoint)?;
        Ok(self.store.update_endpoint(endpoint).await?)
    }

    /// Makes `change` to the endpoint `name`, checked like a new one;
    /// returns the endpoint as stored now.
    pub async fn change_endpoint(&self, name: &str, change: EndpointChange) -> Result<Endpoint> {
        let endpoint = change.apply(self.store.endpoint(name).await?);
        self.update_endpoint(&endpoint).await?;
        Ok(endpoint)
    }

    /// Connects, reads the capabilities and, given a user, logs in as that
    /// user through the admin account. A failure is in the answer, not an
    /// error: only a missing endpoint or key is.
    pub async fn test_endpoint(&self, name: &str, user: Option<&str>) -> Result<EndpointTest> {
        let endpoint = self.store.endpoint(name).await?;
        let mut test = EndpointTest {
            ok: false,
            server: endpoint.url.clone(),
            logged_in_as: None,
            capabilities: Vec::new(),
            capabilities_before_login: Vec::new(),
            error: None,
            checked: Vec::new(),
            not_checked: Vec::new(),
            dav: None,
        };
        let auth = match user {
            Some(user) => {
                let keyring = crate::keyring(&self.store, &self.data_dir).await?;
                match endpoint_auth(&endpoint, user, &keyring, None) {
                    Ok(Some(auth)) => Some(auth),
                    Ok(None) => {
                        test.error = Some(format!(
                            "endpoint {name} has no admin account or OAuth client to log in with"
                        ));
                        return Ok(test);
                    }
                    Err(e) => {
                        test.error = Some(e);
                        return Ok(test);
                    }
                }
            }
            None => None,
        };
        let mut server = match server_config(&endpoint) {
            Ok(server) => server,
            Err(e) => {
                test.error = Some(e);
                return Ok(test);
            }
        };
        server.timeout = TEST_TIMEOUT;
        test.server = server.display_name();
        let outcome = async {
            let mut session = Session::connect(&server).await?;
            let before = session.capabilities().to_vec();
            let mut inbox = None;
            if let Some(auth) = &auth {
                session.login(auth).await?;
                // Read-only: the test changes nothing, not even \Recent.
                let opened = session.select("INBOX", Access::ReadOnly).await?;
                inbox = Some(opened.exists);
            }
            let after = session.capabilities().to_vec();
            session.logout().await;
            Ok::<_, flytt_imap::Error>((before, after, inbox))
        }
        .await;
        match outcome {
            Ok((before, after, inbox)) => {
                test.ok = true;
                test.logged_in_as = user.map(str::to_string);
                test.capabilities_before_login = before;
                test.capabilities = after;
                test.checked.push(connection_words(&endpoint));
                let (checked, not_checked) = login_words(&endpoint, user, inbox);
                test.checked.extend(checked);
                test.not_checked.extend(not_checked);
            }
            Err(e) => test.error = Some(e.to_string()),
        }
        if let Some(template) = &endpoint.dav_url {
            test.dav = Some(test_dav(&endpoint, template, user.zip(auth.as_ref())).await);
        }
        Ok(test)
    }
}

/// What the connection proved: the server answers, over TLS with a
/// trusted certificate unless the endpoint allows plaintext.
fn connection_words(endpoint: &Endpoint) -> String {
    if endpoint.url.starts_with("imaps://") {
        "the server answers over TLS, and its certificate is trusted".to_string()
    } else if endpoint.allow_plaintext {
        "the server answers (STARTTLS where offered; this endpoint allows plaintext)".to_string()
    } else {
        "the server answers and takes STARTTLS, and its certificate is trusted".to_string()
    }
}

/// What the login part proved and what it left unchecked.
fn login_words(
    endpoint: &Endpoint,
    user: Option<&str>,
    inbox: Option<u32>,
) -> (Vec<String>, Vec<String>) {
    let how = match (&endpoint.oauth, &endpoint.admin_user) {
        (Some(_), _) => "the endpoint's OAuth client".to_string(),
        (None, Some(admin)) => format!("the admin account {admin}"),
        (None, None) => String::new(),
    };
    match (user, inbox) {
        (Some(user), Some(messages)) => (
            vec![
                format!("logged in as {user} through {how}"),
                format!("opened {user}'s INBOX read-only: {messages} messages"),
            ],
            vec!["other users' mailboxes, and writing (the test writes nothing)".to_string()],
        ),
        _ if how.is_empty() => (
            Vec::new(),
            vec![
                "any login: this endpoint has no admin account or OAuth client, so each user logs in with the password from the CSV"
                    .to_string(),
            ],
        ),
        _ => (
            Vec::new(),
            vec![format!(
                "the login through {how}: give a user to log in as (endpoint test {} --user EMAIL, or the user field), and the test opens their INBOX",
                endpoint.name
            )],
        ),
    }
}

/// The endpoint's DAV server: that it answers as one over trusted TLS
/// (OPTIONS, no login); with a user, that the endpoint's login finds the
/// user's address books and calendars.
async fn test_dav(endpoint: &Endpoint, template: &str, user: Option<(&str, &Auth)>) -> DavTest {
    let mut test = DavTest {
        ok: false,
        url: template.to_string(),
        classes: Vec::new(),
        address_books: None,
        calendars: None,
        error: None,
    };
    let outcome = async {
        let (url, account) = match user {
            Some((user, auth)) => {
                let account = dav_account(endpoint, auth)?.ok_or("no DAV server")?;
                test.url = user_dav_url(template, user);
                (account.url.clone(), Some(account))
            }
            // Where a user's part starts, the server without one.
            None => {
                let before_user = template
                    .split(DAV_USER_PLACEHOLDER)
                    .next()
                    .unwrap_or(template);
                test.url = before_user.to_string();
                (dav_url(before_user, endpoint.allow_plaintext)?, None)
            }
        };
        test.classes = flytt_dav::dav_classes(&url, &trust(endpoint)?)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(account) = account {
            let client = flytt_dav::DavClient::new(account).map_err(|e| e.to_string())?;
            let count = async |kind| {
                client
                    .all_collections(kind)
                    .await
                    .map(|found| found.len())
                    .map_err(|e| e.to_string())
            };
            test.address_books = Some(count(flytt_dav::CollectionKind::AddressBook).await?);
            test.calendars = Some(count(flytt_dav::CollectionKind::Calendar).await?);
        }
        Ok::<_, String>(())
    };
    match tokio::time::timeout(TEST_TIMEOUT, outcome).await {
        Ok(Ok(())) => test.ok = true,
        Ok(Err(e)) => test.error = Some(e),
        Err(_) => test.error = Some(format!("no answer within {} s", TEST_TIMEOUT.as_secs())),
    }
    test
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint's compression setting reaches the sessions the runner
    /// opens for it.
    #[test]
    fn the_compression_setting_reaches_the_connection() {
        let mut endpoint = Endpoint::new("gammel", "imaps://old.example.org");
        let config = server_config(&endpoint).expect("config");
        assert_eq!(config.compression, flytt_imap::Compression::Never);
        endpoint.compression = flytt_store::Compression::Always;
        let config = server_config(&endpoint).expect("config");
        assert_eq!(config.compression, flytt_imap::Compression::Always);
    }

    /// A user's own login opens the URL as given; an admin login opens the
    /// user's place in the `{user}` template, as the admin, with the user
    /// as the owner of what it finds; an OAuth login opens nothing.
    #[test]
    fn dav_logins_follow_the_imap_login() {
        let mut endpoint = Endpoint::new("ny", "imaps://new.example.org");
        endpoint.dav_url = Some("https://dav.example.org/{user}/".into());
        let own = Auth::Login {
            user: "anne@example.org".into(),
            password: Secret::new("pw"),
        };
        let account = dav_account(&endpoint, &own).expect("valid").expect("dav");
        assert_eq!(
            account.url.as_str(),
            "https://dav.example.org/anne@example.org/"
        );
        assert_eq!(
            (account.user.as_str(), account.owner),
            ("anne@example.org", None)
        );

        let master = Auth::Master {
            user: "bjørn ås@example.org".into(),
            admin: "admin".into(),
            password: Secret::new("pw"),
        };
        let account = dav_account(&endpoint, &master)
            .expect("valid")
            .expect("dav");
        assert_eq!(
            account.url.as_str(),
            "https://dav.example.org/bj%C3%B8rn%20%C3%A5s@example.org/"
        );
        assert_eq!(account.user, "admin");
        assert_eq!(account.owner.as_deref(), Some("bjørn ås@example.org"));
        let proxy = Auth::Plain {
            user: "proxy".into(),
            password: Secret::new("pw"),
            authorize_as: Some("../x".into()),
        };
        let account = dav_account(&endpoint, &proxy).expect("valid").expect("dav");
        assert_eq!(
            account.url.as_str(),
            "https://dav.example.org/..%2Fx/",
            "a name stays one segment"
        );

        let oauth = Auth::XOAuth2 {
            user: "anne@example.org".into(),
            token: flytt_imap::OAuthToken::Fixed(Secret::new("t")),
        };
        assert!(dav_account(&endpoint, &oauth).is_err());
        endpoint.dav_url = Some("https://dav.example.org/".into());
        let refused = dav_account(&endpoint, &master).expect_err("no {user}");
        assert!(refused.contains("{user}"), "{refused}");
    }

    /// An endpoint with an admin login and a DAV server must say where
    /// each user's collections are: refused when stored, not at the first
    /// sync.
    #[test]
    fn an_admin_endpoints_dav_url_names_the_user() {
        let mut endpoint = Endpoint::new("ny", "imaps://new.example.org");
        endpoint.dav_url = Some("https://dav.example.org/".into());
        assert!(check_endpoint(&endpoint).is_ok());
        endpoint.admin_user = Some("admin".into());
        endpoint.admin_password_sealed = Some("sealed".into());
        let refused = check_endpoint(&endpoint).expect_err("refused");
        assert!(refused.to_string().contains("{user}"), "{refused}");
        endpoint.dav_url = Some("https://dav.example.org/dav/{user}/".into());
        check_endpoint(&endpoint).expect("valid");
        endpoint.dav_url = Some("http://dav.example.org/{user}/".into());
        assert!(check_endpoint(&endpoint).is_err(), "plain HTTP");
    }
}
