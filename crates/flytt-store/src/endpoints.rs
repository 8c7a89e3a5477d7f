//! Migration endpoints: named servers with their concurrency limits.

use sqlx::Row;

use crate::{Error, Result, Store, to_u32};

/// Sessions per user and server unless the endpoint says otherwise. More
/// than one are opened only over a long round trip (see flytt-sync): there
/// a mailbox of 21 folders through 40 ms copied at 20 % of its loopback rate
/// with one session, 48 % with four and 58 % with eight
/// (docs/performance.md). Eight stays under the connection limits servers
/// keep per user (Dovecot: ten per user and address by default; Gmail:
/// fifteen per account).
pub const DEFAULT_CONNECTIONS_PER_USER: u32 = 8;

/// A migration endpoint as stored. The store keeps the URL as text and the
/// admin password sealed; it interprets neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub allow_plaintext: bool,
    pub ca_file: Option<String>,
    /// Pinned certificate fingerprints (`sha256:HEX`); flytt-tls reads them.
    pub tls_fingerprints: Vec<String>,
    pub admin_user: Option<String>,
    /// How the admin account opens a user's mailbox.
    pub admin_mode: AdminMode,
    pub admin_password_sealed: Option<String>,
    pub max_concurrent_migrations: u32,
    pub max_concurrent_incremental_syncs: u32,
    /// Sessions one user's migration may open to this server at most (its
    /// folders are copied in parallel over them); a sync uses the smaller
    /// of its two endpoints' figures.
    pub connections_per_user: u32,
    /// Whether sessions to this server are compressed.
    pub compression: Compression,
    /// As a source: how much one mailbox may read in a day (Gmail stops
    /// an account's IMAP downloads at about 2.5 GB a day).
    pub download_limit: DownloadLimit,
    /// The ManageSieve server (`sieve://HOST[:PORT]`), if scripts move too.
    pub sieve_url: Option<String>,
    /// The CardDAV/CalDAV server (`https://HOST[:PORT][/path]`), if
    /// contacts and calendars move too.
    pub dav_url: Option<String>,
    /// The directory of the endpoint's users (staged migrations).
    pub directory: Option<String>,
    /// An OAuth client that opens users' mailboxes (XOAUTH2 or
    /// OAUTHBEARER) instead of an admin password.
    pub oauth: Option<EndpointOAuth>,
    /// Below `max_concurrent_migrations` while the server refuses or
    /// throttles (see `Store::lower_endpoint_limit`); kept by the runners,
    /// never written by `create_endpoint` or `update_endpoint`.
    pub effective_migrations: Option<u32>,
}

impl Endpoint {
    /// An endpoint with the defaults of SPEC §8: no admin account (master
    /// mode when one is set), 20 concurrent migrations, 10 incremental syncs.
    pub fn new(name: &str, url: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            url: url.into(),
            allow_plaintext: false,
            ca_file: None,
            tls_fingerprints: Vec::new(),
            admin_user: None,
            admin_mode: AdminMode::Master,
            admin_password_sealed: None,
            max_concurrent_migrations: 20,
            max_concurrent_incremental_syncs: 10,
            connections_per_user: DEFAULT_CONNECTIONS_PER_USER,
            compression: Compression::Never,
            download_limit: DownloadLimit::Auto,
            sieve_url: None,
            dav_url: None,
            directory: None,
            oauth: None,
            effective_migrations: None,
        }
    }

    /// How many migrations may run on the endpoint now: the configured
    /// maximum, or less while the server pushes back.
    pub fn migration_limit(&self) -> u32 {
        self.effective_migrations
            .map_or(self.max_concurrent_migrations, |effective| {
                effective.min(self.max_concurrent_migrations)
            })
    }
}

/// An endpoint's OAuth client: where each user's access tokens come from
/// (the grant: a user's refresh token from the CSV, else the service
/// account's assertion for the user, else the client's credentials).
/// Stored as JSON; its secrets sealed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointOAuth {
    pub mechanism: OAuthMechanism,
    pub token_url: String,
    pub client_id: String,
    pub client_secret_sealed: Option<String>,
    /// Space-separated scopes; none: the token endpoint's default.
    pub scope: Option<String>,
    /// A service account's JSON key (Google), sealed.
    pub service_account_sealed: Option<String>,
}

/// Which SASL mechanism carries the token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthMechanism {
    /// XOAUTH2 (Gmail, Microsoft 365, Dovecot).
    #[default]
    Xoauth2,
    /// OAUTHBEARER (RFC 7628).
    Oauthbearer,
}

/// How an endpoint's admin account opens a user's mailbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminMode {
    /// LOGIN as `user*admin` (Dovecot master users).
    #[default]
    Master,
    /// AUTHENTICATE PLAIN as the admin, with the user as authorization
    /// identity (Cyrus, most servers with an admin account).
    Plain,
}

impl AdminMode {
    /// As stored and shown: `master` or `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminMode::Master => "master",
            AdminMode::Plain => "plain",
        }
    }
}

impl std::str::FromStr for AdminMode {
    type Err = ();

    fn from_str(text: &str) -> std::result::Result<Self, ()> {
        match text {
            "master" => Ok(AdminMode::Master),
            "plain" => Ok(AdminMode::Plain),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for AdminMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether sessions to an endpoint are compressed with COMPRESS=DEFLATE
/// (where the server offers it): for a slow link; off by default, as on a
/// fast one it only costs both servers CPU (see `flytt_imap::Compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Never,
    Always,
}

impl Compression {
    /// As stored and shown: `never` or `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Never => "never",
            Compression::Always => "always",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = ();

    fn from_str(text: &str) -> std::result::Result<Self, ()> {
        match text {
            "never" => Ok(Compression::Never),
            "always" => Ok(Compression::Always),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much one source mailbox may read in a day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DownloadLimit {
    /// Gmail's (about 2.5 GB a day) where the source is Gmail (it offers
    /// X-GM-EXT-1), else none.
    #[default]
    Auto,
    Unlimited,
    /// At most this many bytes a day.
    PerDay(u64),
}

impl DownloadLimit {
    /// Gmail's limit on what an account downloads over IMAP in a day
    /// (2500 MB).
    pub const GMAIL_PER_DAY: u64 = 2500 << 20;

    /// The bytes per day the limit means for a source, `None` for no
    /// limit: `Auto` is Gmail's where the source is Gmail.
    pub fn bytes_per_day(self, gmail: bool) -> Option<u64> {
        match self {
            DownloadLimit::Auto => gmail.then_some(Self::GMAIL_PER_DAY),
            DownloadLimit::Unlimited => None,
            DownloadLimit::PerDay(bytes) => Some(bytes),
        }
    }
}

impl std::str::FromStr for DownloadLimit {
    type Err = String;

    /// `auto`, `unlimited` or a size (`2500MB`, `2.5GB`).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DownloadLimit::Auto),
            "unlimited" | "none" => Ok(DownloadLimit::Unlimited),
            size => match flytt_batch::size::parse_size(size) {
                Ok(0) => Ok(DownloadLimit::Unlimited),
                Ok(n) => Ok(DownloadLimit::PerDay(n)),
                Err(_) => Err(format!(
                    "{text:?}: use auto, unlimited or a size such as 2500MB"
                )),
            },
        }
    }
}

impl std::fmt::Display for DownloadLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownloadLimit::Auto => f.write_str("auto"),
            DownloadLimit::Unlimited => f.write_str("unlimited"),
            DownloadLimit::PerDay(n) => write!(f, "{n}"),
        }
    }
}

/// `SELECT <every endpoint column> FROM endpoint <tail>`, as a static string
/// (sqlx takes only those, against injection).
macro_rules! select_endpoints {
    ($tail:literal) => {
        concat!(
            "SELECT name, url, allow_plaintext, ca_file, admin_user, admin_mode, admin_password_sealed, ",
            "max_concurrent_migrations, max_concurrent_incremental_syncs, sieve_url, directory, tls_fingerprints, ",
            "effective_migrations, connections_per_user, compression, dav_url, oauth, download_per_day FROM endpoint ",
            $tail
        )
    };
}

fn endpoint_from_row(row: &sqlx::any::AnyRow) -> Result<Endpoint> {
    Ok(Endpoint {
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        allow_plaintext: row.try_get::<i64, _>("allow_plaintext")? != 0,
        ca_file: row.try_get("ca_file")?,
        admin_user: row.try_get("admin_user")?,
        admin_mode: crate::totals::named(row, "admin_mode")?,
        admin_password_sealed: row.try_get("admin_password_sealed")?,
        max_concurrent_migrations: to_u32(
            "max_concurrent_migrations",
            row.try_get("max_concurrent_migrations")?,
        )?,
        max_concurrent_incremental_syncs: to_u32(
            "max_concurrent_incremental_syncs",
            row.try_get("max_concurrent_incremental_syncs")?,
        )?,
        sieve_url: row.try_get("sieve_url")?,
        directory: row.try_get("directory")?,
        tls_fingerprints: row
            .try_get::<String, _>("tls_fingerprints")?
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        effective_migrations: row
            .try_get::<Option<i64>, _>("effective_migrations")?
            .map(|n| to_u32("effective_migrations", n))
            .transpose()?,
        connections_per_user: to_u32("connections_per_user", row.try_get("connections_per_user")?)?,
        compression: crate::totals::named(row, "compression")?,
        dav_url: row.try_get("dav_url")?,
        oauth: crate::totals::optional_json(row, "oauth")?,
        download_limit: match row.try_get::<Option<i64>, _>("download_per_day")? {
            None => DownloadLimit::Auto,
            Some(0) => DownloadLimit::Unlimited,
            Some(n) => DownloadLimit::PerDay(crate::to_u64("download_per_day", n)?),
        },
    })
}

/// The limit as the database keeps it: NULL for the automatic one, 0 for
/// none.
fn download_per_day(endpoint: &Endpoint) -> Option<i64> {
    match endpoint.download_limit {
        DownloadLimit::Auto => None,
        DownloadLimit::Unlimited => Some(0),
        DownloadLimit::PerDay(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

fn oauth_json(endpoint: &Endpoint) -> Result<Option<String>> {
    endpoint
        .oauth
        .as_ref()
        .map(|oauth| crate::totals::to_json("oauth", oauth))
        .transpose()
}

impl Store {
    /// Adds an endpoint; its name must be new.
    pub async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let result = sqlx::query(self.sql(
            "INSERT INTO endpoint (name, url, allow_plaintext, ca_file, admin_user, admin_mode, admin_password_sealed, \
             max_concurrent_migrations, max_concurrent_incremental_syncs, sieve_url, directory, tls_fingerprints, \
             connections_per_user, compression, dav_url, oauth, download_per_day) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&endpoint.name)
        .bind(&endpoint.url)
        .bind(i64::from(endpoint.allow_plaintext))
        .bind(&endpoint.ca_file)
        .bind(&endpoint.admin_user)
        .bind(endpoint.admin_mode.as_str())
        .bind(&endpoint.admin_password_sealed)
        .bind(i64::from(endpoint.max_concurrent_migrations))
        .bind(i64::from(endpoint.max_concurrent_incremental_syncs))
        .bind(&endpoint.sieve_url)
        .bind(&endpoint.directory)
        .bind(endpoint.tls_fingerprints.join(" "))
        .bind(i64::from(endpoint.connections_per_user))
        .bind(endpoint.compression.as_str())
        .bind(&endpoint.dav_url)
        .bind(oauth_json(endpoint)?)
        .bind(download_per_day(endpoint))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::EndpointExists(endpoint.name.clone()))
            }
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(
                Error::NoSuchDirectory(endpoint.directory.clone().unwrap_or_default()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an endpoint's settings (found by name).
    pub async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let done = sqlx::query(self.sql(
            "UPDATE endpoint SET url = ?, allow_plaintext = ?, ca_file = ?, admin_user = ?, admin_mode = ?, \
             admin_password_sealed = ?, max_concurrent_migrations = ?, max_concurrent_incremental_syncs = ?, \
             sieve_url = ?, directory = ?, tls_fingerprints = ?, connections_per_user = ?, \
             compression = ?, dav_url = ?, oauth = ?, download_per_day = ? WHERE name = ?",
        ))
        .bind(&endpoint.url)
        .bind(i64::from(endpoint.allow_plaintext))
        .bind(&endpoint.ca_file)
        .bind(&endpoint.admin_user)
        .bind(endpoint.admin_mode.as_str())
        .bind(&endpoint.admin_password_sealed)
        .bind(i64::from(endpoint.max_concurrent_migrations))
        .bind(i64::from(endpoint.max_concurrent_incremental_syncs))
        .bind(&endpoint.sieve_url)
        .bind(&endpoint.directory)
        .bind(endpoint.tls_fingerprints.join(" "))
        .bind(i64::from(endpoint.connections_per_user))
        .bind(endpoint.compression.as_str())
        .bind(&endpoint.dav_url)
        .bind(oauth_json(endpoint)?)
        .bind(download_per_day(endpoint))
        .bind(&endpoint.name)
        .execute(&self.pool)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(e) if e.is_foreign_key_violation() => {
                Error::NoSuchDirectory(endpoint.directory.clone().unwrap_or_default())
            }
            e => e.into(),
        })?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchEndpoint(endpoint.name.clone()));
        }
        Ok(())
    }

    pub async fn endpoint(&self, name: &str) -> Result<Endpoint> {
        let row = sqlx::query(self.sql(select_endpoints!("WHERE name = ?")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => endpoint_from_row(&row),
            None => Err(Error::NoSuchEndpoint(name.to_string())),
        }
    }

    /// Every endpoint, by name.
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let rows = sqlx::query(self.sql(select_endpoints!("ORDER BY name")))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// One sealed secret of the store's, if it has any (to tell which key
    /// they are sealed with).
    pub async fn some_sealed_secret(&self) -> Result<Option<String>> {
        for sql in [
            "SELECT admin_password_sealed AS sealed FROM endpoint WHERE admin_password_sealed IS NOT NULL LIMIT 1",
            "SELECT password_sealed AS sealed FROM batch_user WHERE password_sealed IS NOT NULL LIMIT 1",
            "SELECT bind_password_sealed AS sealed FROM directory WHERE bind_password_sealed IS NOT NULL LIMIT 1",
        ] {
            if let Some(row) = sqlx::query(self.sql(sql))
                .fetch_optional(&self.pool)
                .await?
            {
                return Ok(Some(row.try_get("sealed")?));
            }
        }
        Ok(None)
    }

    pub async fn remove_endpoint(&self, name: &str) -> Result<()> {
        let done = match sqlx::query(self.sql("DELETE FROM endpoint WHERE name = ?"))
            .bind(name)
            .execute(&self.pool)
            .await
        {
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(Error::EndpointInUse(name.to_string()));
            }
            other => other?,
        };
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchEndpoint(name.to_string()));
        }
        Ok(())
    }

    /// The endpoint refused a connection or throttled: its effective limit
    /// of concurrent migrations drops to three quarters (at least 1), at
    /// most once per `cooldown` however many users met the refusal at once.
    /// Returns the limit now in force, if it changed.
    pub async fn lower_endpoint_limit(
        &self,
        name: &str,
        cooldown: std::time::Duration,
    ) -> Result<Option<u32>> {
        let row = sqlx::query(self.sql(
            "UPDATE endpoint SET limit_changed_ms = {now_ms}, effective_migrations = \
             CASE WHEN COALESCE(effective_migrations, max_concurrent_migrations) * 3 / 4 < 1 THEN 1 \
             ELSE COALESCE(effective_migrations, max_concurrent_migrations) * 3 / 4 END \
             WHERE name = ? AND (limit_changed_ms IS NULL OR limit_changed_ms <= {now_ms} - ?) \
             RETURNING effective_migrations",
        ))
        .bind(name)
        .bind(crate::totals::db(cooldown.as_millis() as u64))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| to_u32("effective_migrations", row.try_get("effective_migrations")?))
            .transpose()
    }

    /// A sync on the endpoint went well: an effective limit grows by one
    /// (additive increase), no sooner than `cooldown` after it was lowered,
    /// and is gone once it reaches the configured maximum.
    pub async fn raise_endpoint_limit(
        &self,
        name: &str,
        cooldown: std::time::Duration,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE endpoint SET effective_migrations = \
             CASE WHEN effective_migrations + 1 >= max_concurrent_migrations THEN NULL \
             ELSE effective_migrations + 1 END \
             WHERE name = ? AND effective_migrations IS NOT NULL AND limit_changed_ms <= {now_ms} - ?",
        ))
        .bind(name)
        .bind(crate::totals::db(cooldown.as_millis() as u64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
