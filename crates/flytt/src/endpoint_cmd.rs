//! `flytt endpoint new|set|test|show|list|remove` (SPEC §8): named server
//! connections with their concurrency limits. The admin password is sealed
//! with the data directory's key before it reaches the store, and no command
//! prints it back.

use crate::home::Home;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flytt_control::Control;
use flytt_control::endpoints::EndpointChange;
use flytt_control::views::EndpointView;
use flytt_secrets::SecretString;
use flytt_store::Endpoint;

use crate::account::read_password_file;

#[derive(Subcommand)]
pub enum EndpointCommand {
    /// Add an endpoint.
    New(NewArgs),
    /// Change an endpoint's settings.
    Set(SetArgs),
    /// Connect (and, with --user, log in through the admin account) and show the capabilities.
    Test(TestArgs),
    /// Show one endpoint.
    Show(ShowArgs),
    /// List the endpoints.
    List(ListArgs),
    /// Remove an endpoint (mail is never touched).
    Remove(NameArg),
}

/// How the admin account opens a user's mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AdminMode {
    /// LOGIN as `user*admin` (Dovecot master users).
    Master,
    /// AUTHENTICATE PLAIN as the admin, with the user as authorization identity.
    Plain,
}

impl From<AdminMode> for flytt_store::AdminMode {
    fn from(mode: AdminMode) -> Self {
        match mode {
            AdminMode::Master => flytt_store::AdminMode::Master,
            AdminMode::Plain => flytt_store::AdminMode::Plain,
        }
    }
}

#[derive(Args)]
pub struct NameArg {
    name: String,
}

#[derive(Args)]
pub struct NewArgs {
    name: String,
    /// imaps://HOST:PORT (TLS) or imap://HOST:PORT (STARTTLS).
    #[arg(long)]
    url: String,
    /// An admin account that can open every user's mailbox.
    #[arg(long)]
    admin_user: Option<String>,
    /// File holding the admin password.
    #[arg(long)]
    admin_password_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "master")]
    admin_mode: AdminMode,
    /// Users migrated at once through this endpoint, across all batches.
    #[arg(long, default_value_t = 20)]
    max_concurrent_migrations: u32,
    /// Incremental syncs at once (default 10, at most --max-concurrent-migrations).
    #[arg(long)]
    max_concurrent_incremental_syncs: Option<u32>,
    /// Sessions one user's migration opens to this server at most, to copy
    /// folders in parallel (1 to 16; a sync uses the smaller of its two
    /// endpoints' figures).
    #[arg(long, default_value_t = flytt_store::DEFAULT_CONNECTIONS_PER_USER)]
    connections_per_user: u32,
    /// COMPRESS=DEFLATE where the server offers it: for a slow link (below
    /// about 100 Mbit/s); on a fast one it only costs the servers CPU.
    #[arg(long, default_value = "never", value_name = "never|always",
          value_parser = crate::account::parse_compression)]
    compression: flytt_store::Compression,
    /// As a source: how much one mailbox may read in a day (auto: Gmail's
    /// 2500 MB on a Gmail source, else no limit; unlimited; or a size).
    #[arg(long, default_value = "auto", value_name = "auto|unlimited|SIZE")]
    download_per_day: flytt_store::DownloadLimit,
    /// Go on without TLS when an imap:// server offers no STARTTLS.
    #[arg(long)]
    allow_plaintext: bool,
    /// A PEM file of CA certificates to trust for this server, or the
    /// server's own (self-signed) certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Trust the server certificate with this SHA-256 fingerprint
    /// (sha256:HEX, colons allowed; repeatable).
    #[arg(long, value_name = "sha256:HEX")]
    tls_fingerprint: Vec<flytt_tls::Fingerprint>,
    /// The server's ManageSieve (sieve://HOST[:PORT]): users' Sieve scripts
    /// move too when both endpoints have one.
    #[arg(long)]
    sieve_url: Option<String>,
    /// The server's CardDAV/CalDAV (https://HOST[:PORT][/path]): users'
    /// address books and calendars move too when both endpoints have one.
    /// With an admin login, {user} says where each user's collections are
    /// (https://dav.example.org/{user}/): the admin opens them there.
    #[arg(long)]
    dav_url: Option<String>,
    /// The directory of this server's users (`flytt directory new`), for
    /// staged migrations.
    #[arg(long)]
    directory: Option<String>,
    #[command(flatten)]
    oauth: OAuthArgs,
}

/// An OAuth client that opens users' mailboxes instead of an admin
/// account: each user's token by their RefreshToken from the CSV, else by
/// the service account's assertion, else by the client's credentials.
#[derive(Args)]
pub struct OAuthArgs {
    /// The token endpoint (https; e.g. https://oauth2.googleapis.com/token).
    #[arg(long, value_name = "URL", requires = "oauth_client_id")]
    oauth_token_url: Option<String>,
    #[arg(long, value_name = "ID", requires = "oauth_token_url")]
    oauth_client_id: Option<String>,
    /// File holding the client secret.
    #[arg(long, value_name = "FILE", requires = "oauth_token_url")]
    oauth_client_secret_file: Option<PathBuf>,
    /// Space-separated scopes (e.g. https://mail.google.com/).
    #[arg(long, value_name = "SCOPE", requires = "oauth_token_url")]
    oauth_scope: Option<String>,
    /// A service account's JSON key file (Google Workspace domain-wide
    /// delegation: a token per user).
    #[arg(long, value_name = "FILE", requires = "oauth_token_url")]
    oauth_service_account_file: Option<PathBuf>,
    /// The SASL mechanism that carries the token.
    #[arg(long, value_enum, default_value = "xoauth2")]
    oauth_mechanism: OAuthMechanismArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OAuthMechanismArg {
    Xoauth2,
    Oauthbearer,
}

#[derive(Args)]
pub struct SetArgs {
    name: String,
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    admin_user: Option<String>,
    #[arg(long)]
    admin_password_file: Option<PathBuf>,
    #[arg(long, value_enum)]
    admin_mode: Option<AdminMode>,
    #[arg(long)]
    max_concurrent_migrations: Option<u32>,
    #[arg(long)]
    max_concurrent_incremental_syncs: Option<u32>,
    /// Sessions one user's migration opens to this server at most (1 to 16).
    #[arg(long)]
    connections_per_user: Option<u32>,
    /// COMPRESS=DEFLATE: never or always.
    #[arg(long, value_name = "never|always", value_parser = crate::account::parse_compression)]
    compression: Option<flytt_store::Compression>,
    /// As a source: how much one mailbox may read in a day (auto,
    /// unlimited or a size).
    #[arg(long, value_name = "auto|unlimited|SIZE")]
    download_per_day: Option<flytt_store::DownloadLimit>,
    #[arg(long)]
    allow_plaintext: Option<bool>,
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Pinned certificate fingerprints (replace the endpoint's; repeatable).
    #[arg(long, value_name = "sha256:HEX")]
    tls_fingerprint: Vec<flytt_tls::Fingerprint>,
    /// Remove the endpoint's pinned fingerprints.
    #[arg(long, conflicts_with = "tls_fingerprint")]
    clear_tls_fingerprints: bool,
    /// The ManageSieve server (an empty value removes it).
    #[arg(long)]
    sieve_url: Option<String>,
    /// The CardDAV/CalDAV server, with {user} where an admin login opens
    /// each user's collections (an empty value removes it).
    #[arg(long)]
    dav_url: Option<String>,
    /// The directory of this server's users (an empty value removes it).
    #[arg(long)]
    directory: Option<String>,
    /// A new OAuth client (replaces the endpoint's; flags as for `new`).
    #[command(flatten)]
    oauth: OAuthArgs,
    /// Remove the endpoint's OAuth client.
    #[arg(long, conflicts_with = "oauth_token_url")]
    no_oauth: bool,
}

#[derive(Args)]
pub struct TestArgs {
    name: String,
    /// Also log in as this user through the admin account.
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    json: bool,
}

pub async fn run(command: EndpointCommand, home: &Home) -> Result<u8> {
    let control = home.control().await?;
    let store = control.store();
    match command {
        EndpointCommand::New(args) => {
            let sealed =
                seal_admin_password(&control, &args.name, args.admin_password_file.as_deref())
                    .await?;
            let oauth = seal_oauth(&control, &args.name, &args.oauth).await?;
            let endpoint = Endpoint {
                name: args.name,
                url: args.url,
                allow_plaintext: args.allow_plaintext,
                ca_file: args.ca_file.map(|p| p.display().to_string()),
                tls_fingerprints: args.tls_fingerprint.iter().map(|f| f.to_string()).collect(),
                admin_user: args.admin_user,
                admin_mode: args.admin_mode.into(),
                admin_password_sealed: sealed,
                max_concurrent_migrations: args.max_concurrent_migrations,
                max_concurrent_incremental_syncs: args
                    .max_concurrent_incremental_syncs
                    .unwrap_or(10.min(args.max_concurrent_migrations)),
                connections_per_user: args.connections_per_user,
                compression: args.compression,
                download_limit: args.download_per_day,
                sieve_url: args.sieve_url,
                dav_url: args.dav_url,
                directory: args.directory,
                oauth,
                effective_migrations: None,
            };
            control.create_endpoint(&endpoint).await?;
            println!("Endpoint {} created.", endpoint.name);
        }
        EndpointCommand::Set(args) => {
            let admin_password_sealed = match args.admin_password_file.as_deref() {
                Some(file) => seal_admin_password(&control, &args.name, Some(file)).await?,
                None => None,
            };
            let oauth = if args.no_oauth {
                Some(None)
            } else {
                seal_oauth(&control, &args.name, &args.oauth)
                    .await?
                    .map(Some)
            };
            let tls_fingerprints = if args.clear_tls_fingerprints {
                Some(Vec::new())
            } else if args.tls_fingerprint.is_empty() {
                None
            } else {
                Some(args.tls_fingerprint.iter().map(|f| f.to_string()).collect())
            };
            let change = EndpointChange {
                url: args.url,
                allow_plaintext: args.allow_plaintext,
                ca_file: args.ca_file.map(|ca| ca.display().to_string()),
                tls_fingerprints,
                admin_user: args.admin_user,
                admin_mode: args.admin_mode.map(Into::into),
                admin_password_sealed,
                max_concurrent_migrations: args.max_concurrent_migrations,
                max_concurrent_incremental_syncs: args.max_concurrent_incremental_syncs,
                connections_per_user: args.connections_per_user,
                compression: args.compression,
                download_limit: args.download_per_day,
                sieve_url: args.sieve_url,
                dav_url: args.dav_url,
                directory: args.directory,
                oauth,
            };
            let endpoint = control.change_endpoint(&args.name, change).await?;
            println!("Endpoint {} updated.", endpoint.name);
        }
        EndpointCommand::Test(args) => return test(&control, &args).await,
        EndpointCommand::Show(args) => {
            let endpoint = store.endpoint(&args.name).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&describe(&endpoint))?);
            } else {
                print_endpoint(&endpoint);
            }
        }
        EndpointCommand::List(args) => {
            let endpoints = store.endpoints().await?;
            if args.json {
                let list: Vec<_> = endpoints.iter().map(describe).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if endpoints.is_empty() {
                println!("No endpoints.");
            } else {
                for endpoint in &endpoints {
                    println!(
                        "{:<20} {:<40} migrations {:>3}  incremental {:>3}",
                        endpoint.name,
                        endpoint.url,
                        endpoint.max_concurrent_migrations,
                        endpoint.max_concurrent_incremental_syncs
                    );
                }
            }
        }
        EndpointCommand::Remove(args) => {
            store.remove_endpoint(&args.name).await?;
            println!("Endpoint {} removed.", args.name);
        }
    }
    Ok(0)
}

/// The OAuth client the flags give, checked and its secrets sealed.
async fn seal_oauth(
    control: &flytt_control::Control,
    endpoint: &str,
    args: &OAuthArgs,
) -> Result<Option<flytt_store::EndpointOAuth>> {
    let Some(token_url) = &args.oauth_token_url else {
        return Ok(None);
    };
    let read = |path: &Option<PathBuf>, flag: &str| -> Result<Option<SecretString>> {
        path.as_deref()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("--{flag} {}", p.display()))?;
                Ok(SecretString::new(text.trim_end_matches(['\r', '\n'])))
            })
            .transpose()
    };
    let settings = flytt_control::endpoints::OAuthSettings {
        mechanism: match args.oauth_mechanism {
            OAuthMechanismArg::Xoauth2 => flytt_store::OAuthMechanism::Xoauth2,
            OAuthMechanismArg::Oauthbearer => flytt_store::OAuthMechanism::Oauthbearer,
        },
        token_url: token_url.clone(),
        client_id: args.oauth_client_id.clone().unwrap_or_default(),
        client_secret: read(&args.oauth_client_secret_file, "oauth-client-secret-file")?,
        scope: args.oauth_scope.clone(),
        service_account_key: read(
            &args.oauth_service_account_file,
            "oauth-service-account-file",
        )?,
    };
    Ok(Some(control.seal_oauth(endpoint, settings).await?))
}

fn describe(endpoint: &Endpoint) -> serde_json::Value {
    serde_json::to_value(EndpointView::new(endpoint)).unwrap_or_default()
}

fn print_endpoint(endpoint: &Endpoint) {
    println!("Name:                           {}", endpoint.name);
    println!("URL:                            {}", endpoint.url);
    println!(
        "Admin:                          {} ({}, password {})",
        endpoint.admin_user.as_deref().unwrap_or("none"),
        endpoint.admin_mode,
        if endpoint.admin_password_sealed.is_some() {
            "set"
        } else {
            "not set"
        }
    );
    if let Some(oauth) = &endpoint.oauth {
        let grant = if oauth.service_account_sealed.is_some() {
            "each user's RefreshToken from the CSV, else the service account's assertion"
        } else {
            "each user's RefreshToken from the CSV, else the client's credentials"
        };
        println!(
            "OAuth:                          {:?} at {}, client {} ({grant}; secret {})",
            oauth.mechanism,
            oauth.token_url,
            oauth.client_id,
            if oauth.client_secret_sealed.is_some() {
                "set"
            } else {
                "not set"
            }
        );
    }
    println!(
        "MaxConcurrentMigrations:        {}",
        endpoint.max_concurrent_migrations
    );
    if endpoint.migration_limit() < endpoint.max_concurrent_migrations {
        println!(
            "  in force now:                 {} (the server refused or throttled; good syncs raise it again)",
            endpoint.migration_limit()
        );
    }
    println!(
        "MaxConcurrentIncrementalSyncs:  {}",
        endpoint.max_concurrent_incremental_syncs
    );
    println!(
        "Connections per user:           {}",
        endpoint.connections_per_user
    );
    println!("Compression:                    {}", endpoint.compression);
    println!(
        "Download per day:               {}",
        flytt_control::views::download_limit_words(endpoint.download_limit)
    );
    println!(
        "Allow plaintext:                {}",
        endpoint.allow_plaintext
    );
    if let Some(ca) = &endpoint.ca_file {
        println!("CA file:                        {ca}");
    }
    for fingerprint in &endpoint.tls_fingerprints {
        println!("Pinned certificate:             {fingerprint}");
    }
    if let Some(sieve) = &endpoint.sieve_url {
        println!("ManageSieve:                    {sieve}");
    }
    if let Some(dav) = &endpoint.dav_url {
        println!("CardDAV/CalDAV:                 {dav}");
    }
    if let Some(directory) = &endpoint.directory {
        println!("Directory:                      {directory}");
    }
}

async fn seal_admin_password(
    control: &Control,
    name: &str,
    file: Option<&Path>,
) -> Result<Option<String>> {
    let Some(file) = file else { return Ok(None) };
    let password = read_password_file(file)?;
    Ok(Some(
        control
            .seal_admin_password(name, &SecretString::new(password.expose()))
            .await?,
    ))
}

/// The test: connect, show what the server offers, and log in as a user
/// through the admin account when asked; the same for the DAV server.
/// Exit 2 when anything fails.
async fn test(control: &Control, args: &TestArgs) -> Result<u8> {
    let test = control
        .test_endpoint(&args.name, args.user.as_deref())
        .await?;
    if args.json {
        println!("{}", serde_json::to_string(&test)?);
    }
    if let Some(error) = &test.error {
        eprintln!("error: {error}");
        return Ok(crate::EXIT_FAILED);
    }
    if !args.json {
        println!("Connected to {} ({}).", args.name, test.server);
        for checked in &test.checked {
            println!("Checked: {checked}.");
        }
        for unchecked in &test.not_checked {
            println!("Not checked: {unchecked}.");
        }
        println!("Capabilities: {}", test.capabilities.join(" "));
    }
    let Some(dav) = &test.dav else {
        return Ok(0);
    };
    if let Some(error) = &dav.error {
        eprintln!("error: CardDAV/CalDAV {}: {error}", dav.url);
        return Ok(crate::EXIT_FAILED);
    }
    if !args.json {
        println!(
            "CardDAV/CalDAV {} answers (DAV: {}).",
            dav.url,
            dav.classes.join(", ")
        );
        if let (Some(user), Some(books), Some(calendars)) =
            (&test.logged_in_as, dav.address_books, dav.calendars)
        {
            println!("{user} has {books} address books and {calendars} calendars there.");
        }
    }
    Ok(0)
}
