//! `flytt sync`: one mailbox, like imapsync; safe to re-run.

use crate::home::Home;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use clap::Args;
use flytt_store::Store;
use flytt_sync::{Issue, MailboxScope, Observer, Report, SyncOptions, sync_mailbox};
use indicatif::{ProgressBar, ProgressStyle};

use crate::account::{AuthMethod, OAuthFlags, Side, account};
use crate::{EXIT_COMPLETE, EXIT_FAILED, EXIT_PARTIAL};
use flytt_batch::FolderMapping;
use flytt_batch::size::parse_size;

#[derive(Args)]
pub struct SyncArgs {
    /// Source server: imaps://HOST:PORT (TLS) or imap://HOST:PORT (STARTTLS).
    #[arg(long)]
    source: String,
    /// Source login (or put it in the URL). May be an admin/master login such as user@example.org*admin.
    #[arg(long)]
    source_user: Option<String>,
    /// File holding the source password (or OAuth token).
    #[arg(long)]
    source_password_file: Option<PathBuf>,
    /// Environment variable holding the source password.
    #[arg(long, value_name = "VAR")]
    source_password_env: Option<String>,
    /// How to log in to the source.
    #[arg(long, value_enum, default_value = "login")]
    source_auth: AuthMethod,
    /// With --source-auth plain: open this user's mailbox with the admin's credentials.
    #[arg(long, value_name = "USER")]
    source_authorize_as: Option<String>,
    /// OAuth: the token endpoint the source's access tokens come from,
    /// renewed as they expire (with --source-auth xoauth2 or oauthbearer;
    /// no password file then). The grant: --source-oauth-refresh-token-file,
    /// else --source-oauth-service-account-file, else client credentials.
    #[arg(long, value_name = "URL", requires = "source_oauth_client_id")]
    source_oauth_token_url: Option<String>,
    /// OAuth client id.
    #[arg(long, value_name = "ID")]
    source_oauth_client_id: Option<String>,
    /// File holding the OAuth client secret.
    #[arg(long, value_name = "FILE")]
    source_oauth_client_secret_file: Option<PathBuf>,
    /// OAuth scopes, space-separated (e.g. https://mail.google.com/).
    #[arg(long, value_name = "SCOPE")]
    source_oauth_scope: Option<String>,
    /// File holding the user's OAuth refresh token.
    #[arg(long, value_name = "FILE")]
    source_oauth_refresh_token_file: Option<PathBuf>,
    /// A service account's JSON key file (Google Workspace domain-wide
    /// delegation: a token per user).
    #[arg(long, value_name = "FILE")]
    source_oauth_service_account_file: Option<PathBuf>,

    /// Target server: imaps://HOST:PORT (TLS) or imap://HOST:PORT (STARTTLS).
    #[arg(long)]
    target: String,
    /// Target login (or put it in the URL). May be an admin/master login.
    #[arg(long)]
    target_user: Option<String>,
    /// File holding the target password (or OAuth token).
    #[arg(long)]
    target_password_file: Option<PathBuf>,
    /// Environment variable holding the target password.
    #[arg(long, value_name = "VAR")]
    target_password_env: Option<String>,
    /// How to log in to the target (see --source-auth).
    #[arg(long, value_enum, default_value = "login")]
    target_auth: AuthMethod,
    /// With --target-auth plain: open this user's mailbox with the admin's credentials.
    #[arg(long, value_name = "USER")]
    target_authorize_as: Option<String>,
    /// OAuth: the token endpoint the target's access tokens come from,
    /// renewed as they expire (with --target-auth xoauth2 or oauthbearer;
    /// no password file then). The grant: --target-oauth-refresh-token-file,
    /// else --target-oauth-service-account-file, else client credentials.
    #[arg(long, value_name = "URL", requires = "target_oauth_client_id")]
    target_oauth_token_url: Option<String>,
    /// OAuth client id.
    #[arg(long, value_name = "ID")]
    target_oauth_client_id: Option<String>,
    /// File holding the OAuth client secret.
    #[arg(long, value_name = "FILE")]
    target_oauth_client_secret_file: Option<PathBuf>,
    /// OAuth scopes, space-separated (e.g. https://mail.google.com/).
    #[arg(long, value_name = "SCOPE")]
    target_oauth_scope: Option<String>,
    /// File holding the user's OAuth refresh token.
    #[arg(long, value_name = "FILE")]
    target_oauth_refresh_token_file: Option<PathBuf>,
    /// A service account's JSON key file (Google Workspace domain-wide
    /// delegation: a token per user).
    #[arg(long, value_name = "FILE")]
    target_oauth_service_account_file: Option<PathBuf>,

    /// Go on without TLS when an imap:// server offers no STARTTLS.
    #[arg(long)]
    allow_plaintext: bool,
    /// Extra CA certificates (PEM) to trust, for servers with a private CA,
    /// or a server's own self-signed certificate (repeatable).
    #[arg(long)]
    ca_file: Vec<PathBuf>,
    /// Trust the server certificate with this SHA-256 fingerprint
    /// (sha256:HEX, colons allowed; repeatable).
    #[arg(long, value_name = "sha256:HEX")]
    tls_fingerprint: Vec<flytt_tls::Fingerprint>,
    /// Seconds to wait for a server's answer before giving up.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// COMPRESS=DEFLATE where a server offers it: for a slow link (below
    /// about 100 Mbit/s); on a fast one it only costs the servers CPU.
    #[arg(long, default_value = "never", value_name = "never|always",
          value_parser = crate::account::parse_compression)]
    compression: flytt_store::Compression,

    /// List what would be copied; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Read every copy back and compare its content with the source's
    /// (without it: every copy's size, and the content of copies with raw
    /// 8-bit header bytes).
    #[arg(long)]
    verify: bool,
    /// Deletion sync: messages deleted on the source since an earlier run
    /// copied them are expunged on the target too (only those copies;
    /// needs UIDPLUS on the target).
    #[arg(long)]
    deletion_sync: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Folders not to copy: glob patterns over the folder path with "/" (e.g. Junk, "Arkiv/**").
    #[arg(long, num_args = 1.., value_name = "PATTERN")]
    exclude_folders: Vec<String>,
    /// Where source folders go when not by their own path: rules such as
    /// '"Sendte elementer" -> "Gammelt/Sendt"' or 'Arkiv/* -> Archive/*'
    /// (paths with "/", `*` within a name, `**` for any folders; separated
    /// by ";"), applied before the special-use mapping; the first that
    /// matches a folder decides. Repeatable.
    #[arg(long, value_name = "RULES", value_parser = FolderMapping::parse)]
    folder_mapping: Vec<FolderMapping>,
    /// Report skipped and failed messages with their subjects (their dates
    /// always): subjects are personal data.
    #[arg(long)]
    report_subjects: bool,
    /// A Gmail source's labels: a folder per label (a message with two
    /// labels in both), or each message once with its labels as keywords.
    #[arg(long, default_value = "folders", value_name = "folders|keywords")]
    gmail_labels: flytt_batch::GmailLabels,
    /// How much the source mailbox may read in a day (auto: Gmail's 2500 MB
    /// on a Gmail source, else no limit; unlimited; or a size). Over it the
    /// sync stops, keeping what it copied, and says when to run again.
    #[arg(long, default_value = "auto", value_name = "auto|unlimited|SIZE")]
    source_download_per_day: flytt_store::DownloadLimit,
    /// Primary mailbox, archive (the tree under the \Archive folder), or both.
    #[arg(long, value_enum, default_value = "PrimaryAndArchive")]
    mailbox_type: ScopeArg,
    /// Skip and report messages larger than this (e.g. 35MB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    large_item_limit: Option<u64>,
    /// Messages per FETCH and MULTIAPPEND.
    #[arg(long, default_value_t = 50, hide = true)]
    batch_messages: usize,
    /// Commands in flight per connection.
    #[arg(long, default_value_t = 8, hide = true)]
    window: usize,
    /// Sessions to each server at most, to copy folders in parallel (1 to 16).
    #[arg(long, default_value_t = flytt_store::DEFAULT_CONNECTIONS_PER_USER,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    connections: u32,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    #[value(name = "PrimaryAndArchive")]
    PrimaryAndArchive,
    #[value(name = "PrimaryOnly")]
    PrimaryOnly,
    #[value(name = "ArchiveOnly")]
    ArchiveOnly,
}

pub async fn run(args: SyncArgs, home: &Home) -> Result<u8> {
    let source_oauth = args
        .source_oauth_token_url
        .clone()
        .map(|token_url| OAuthFlags {
            token_url,
            client_id: args.source_oauth_client_id.clone().unwrap_or_default(),
            client_secret_file: args.source_oauth_client_secret_file.clone(),
            scope: args.source_oauth_scope.clone(),
            refresh_token_file: args.source_oauth_refresh_token_file.clone(),
            service_account_file: args.source_oauth_service_account_file.clone(),
        });
    let target_oauth = args
        .target_oauth_token_url
        .clone()
        .map(|token_url| OAuthFlags {
            token_url,
            client_id: args.target_oauth_client_id.clone().unwrap_or_default(),
            client_secret_file: args.target_oauth_client_secret_file.clone(),
            scope: args.target_oauth_scope.clone(),
            refresh_token_file: args.target_oauth_refresh_token_file.clone(),
            service_account_file: args.target_oauth_service_account_file.clone(),
        });
    let source = account(&Side {
        name: "source",
        url: &args.source,
        user: args.source_user.as_deref(),
        password_file: args.source_password_file.as_deref(),
        password_env: args.source_password_env.as_deref(),
        auth: args.source_auth,
        authorize_as: args.source_authorize_as.as_deref(),
        allow_plaintext: args.allow_plaintext,
        ca_files: &args.ca_file,
        tls_fingerprints: &args.tls_fingerprint,
        timeout_secs: args.timeout,
        compression: args.compression,
        oauth: source_oauth.as_ref(),
    })?;
    let target = account(&Side {
        name: "target",
        url: &args.target,
        user: args.target_user.as_deref(),
        password_file: args.target_password_file.as_deref(),
        password_env: args.target_password_env.as_deref(),
        auth: args.target_auth,
        authorize_as: args.target_authorize_as.as_deref(),
        allow_plaintext: args.allow_plaintext,
        ca_files: &args.ca_file,
        tls_fingerprints: &args.tls_fingerprint,
        timeout_secs: args.timeout,
        compression: args.compression,
        oauth: target_oauth.as_ref(),
    })?;
    // A dry run reads the state of earlier runs (so it lists only what is
    // new) but copies nothing and creates no state of its own.
    let store = if args.dry_run && home.database_url.is_none() && !Store::exists(home.data_dir()) {
        Store::in_memory().await?
    } else {
        home.store().await?
    };
    let options = SyncOptions {
        exclude: args.exclude_folders.clone(),
        large_item_limit: args.large_item_limit,
        mailbox_scope: match args.mailbox_type {
            ScopeArg::PrimaryAndArchive => MailboxScope::PrimaryAndArchive,
            ScopeArg::PrimaryOnly => MailboxScope::PrimaryOnly,
            ScopeArg::ArchiveOnly => MailboxScope::ArchiveOnly,
        },
        dry_run: args.dry_run,
        verify: args.verify,
        batch_messages: args.batch_messages.max(1),
        fetch_window: args.window.clamp(1, 64),
        append_window: args.window.clamp(1, 64),
        connections: args.connections as usize,
        delete_removed: args.deletion_sync,
        folder_mapping: args.folder_mapping.iter().cloned().collect(),
        report_subjects: args.report_subjects,
        gmail_labels: args.gmail_labels,
        download_limit: args.source_download_per_day,
        ..SyncOptions::default()
    };
    let progress = Progress::new(!args.json && std::io::stderr().is_terminal());
    let result = sync_mailbox(&source, &target, &store, &options, &progress).await;
    progress.finish();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            if args.json {
                // Stopped by the source's download limit: what was copied
                // is kept, and a run after `resume_in_seconds` goes on.
                let json = match &e {
                    flytt_sync::SyncError::DownloadLimit { resume_in, .. } => serde_json::json!({
                        "status": "paused",
                        "error": e.to_string(),
                        "resume_in_seconds": resume_in.as_secs(),
                    }),
                    _ => serde_json::json!({ "status": "failed", "error": e.to_string() }),
                };
                println!("{json}");
            }
            eprintln!("error: {e}");
            return Ok(EXIT_FAILED);
        }
    };
    let status = if report.has_skips() {
        "completed_with_skips"
    } else {
        "completed"
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("status".into(), status.into());
            object.insert(
                "messages_per_second".into(),
                report.messages_per_second().into(),
            );
            object.insert(
                "megabytes_per_second".into(),
                report.megabytes_per_second().into(),
            );
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_summary(&report);
    }
    Ok(if report.has_skips() {
        EXIT_PARTIAL
    } else {
        EXIT_COMPLETE
    })
}

fn print_summary(report: &Report) {
    if report.dry_run {
        println!("Dry run: nothing was changed.");
        for (folder, messages, bytes) in &report.plan {
            if *messages > 0 {
                let mapped = report.folder_map.iter().find(|m| &m.source == folder);
                let to = mapped.map_or(folder.as_str(), |m| m.target.as_str());
                let rule = mapped
                    .and_then(|m| m.rule.as_deref())
                    .map(|rule| format!(" (by the rule {rule})"))
                    .unwrap_or_default();
                println!(
                    "  would copy {messages:>7} messages ({}) from {folder} to {to}{rule}",
                    human_bytes(*bytes)
                );
            }
        }
        let total: u64 = report.plan.iter().map(|p| p.1).sum();
        println!(
            "Would copy {total} messages; {} flag updates.",
            report.flags_updated
        );
    }
    println!(
        "Folders:   {} ({} created, {} empty or unchanged, {} excluded with {} messages)",
        report.folders,
        report.folders_created,
        report.folders_unchanged,
        report.folders_excluded.len(),
        report.messages_excluded
    );
    println!(
        "Messages:  {} found, {} copied, {} already there, {} skipped, {} failed, {} flag updates",
        report.messages_found,
        report.messages_copied,
        report.messages_matched,
        report.messages_skipped,
        report.messages_failed,
        report.flags_updated
    );
    if report.messages_altered > 0 {
        println!(
            "Altered:   {} copies are kept altered by the target (see the issues below)",
            report.messages_altered
        );
    }
    println!(
        "Data:      {} in {:.1} s ({:.1} msgs/s, {:.2} MB/s)",
        human_bytes(report.bytes_copied),
        report.duration.as_secs_f64(),
        report.messages_per_second(),
        report.megabytes_per_second()
    );
    for issue in &report.issues {
        let uid = issue.uid.map(|u| format!(" UID {u}")).unwrap_or_default();
        let what = [issue.date.as_deref(), issue.subject.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let uid = if what.is_empty() {
            uid
        } else {
            format!("{uid} ({what})")
        };
        println!(
            "  {:?}: {}{uid}: {}",
            issue.kind, issue.folder, issue.reason
        );
    }
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on a terminal; nothing when output is piped.
struct Progress {
    bar: Option<ProgressBar>,
    messages: AtomicU64,
    bytes: AtomicU64,
    /// About how many messages the sync copies, once it knows.
    to_copy: std::sync::OnceLock<u64>,
}

impl Progress {
    fn new(visible: bool) -> Progress {
        let bar = visible.then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{spinner} {prefix:30!} [{bar:20}] {pos}/{len} folders  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Progress {
            bar,
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            to_copy: std::sync::OnceLock::new(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn sized(&self, messages_to_copy: u64) {
        let _ = self.to_copy.set(messages_to_copy);
    }

    fn planned(&self, folders: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(folders);
        }
    }

    fn folder_started(&self, folder: &str) {
        if let Some(bar) = &self.bar {
            bar.set_prefix(folder.to_string());
        }
    }

    fn folder_done(&self, _folder: &str) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn copied(&self, _folder: &str, messages: u64, bytes: u64) {
        let total_bytes = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let total = self.messages.fetch_add(messages, Ordering::Relaxed) + messages;
        if let Some(bar) = &self.bar {
            let secs = bar.elapsed().as_secs_f64().max(0.001);
            let estimate = flytt_batch::SyncProgress {
                messages_copied: total,
                messages_to_copy: self.to_copy.get().copied(),
                ..flytt_batch::SyncProgress::default()
            }
            .estimate(bar.elapsed());
            bar.set_message(format!(
                "{total} msgs copied ({:.0}/s), {} ({:.1} MB/s){}",
                total as f64 / secs,
                human_bytes(total_bytes),
                total_bytes as f64 / secs / 1e6,
                estimate.in_words()
            ));
        }
    }

    fn issue(&self, issue: &Issue) {
        if let Some(bar) = &self.bar {
            bar.println(format!(
                "{:?}: {}: {}",
                issue.kind, issue.folder, issue.reason
            ));
        }
    }
}
