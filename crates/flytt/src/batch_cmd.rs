//! `flytt batch …` and `flytt user …`: batches created from CSV files, their
//! users and statuses. Starting, stopping and completing batches (the job
//! runner) comes next; a created batch waits in status Created.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flytt_batch::size::parse_size;
use flytt_batch::{
    BadItemLimit, BatchParameters, BatchType, CsvUser, MailboxType, UserOverrides, parse_duration,
    parse_users,
};
use flytt_runner::status;
use flytt_secrets::{Keyring, SecretString};
use flytt_store::{NewBatch, NewBatchUser, Store};

#[derive(Subcommand)]
pub enum BatchCommand {
    /// Create a batch from a CSV file (validated completely first).
    New(Box<NewArgs>),
    /// Check a CSV file for a batch: every problem, with its line number.
    Validate(ValidateArgs),
    /// List the batches with their users per status.
    List(JsonArg),
    /// Show one batch: parameters and users per status.
    Show(ShowArgs),
    /// Remove a batch, its users and their stored passwords (never mail).
    Remove(NameArg),
    /// Start (or resume) a batch; failed users are retried. `flytt worker` runs it.
    Start(NameArg),
    /// Stop a batch: no new syncs start; it can be started again.
    Stop(NameArg),
    /// Complete a batch: a last incremental sync per user, then Completed.
    Complete(NameArg),
    /// Write the batch's reports: one row per user, and one row per skipped or failed item.
    Report(ReportArgs),
    /// Change a batch: add users from another CSV file.
    Set(SetArgs),
}

#[derive(Args)]
pub struct SetArgs {
    name: String,
    /// A CSV file of more users (validated like the first one).
    #[arg(long)]
    add_csv: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReportArgs {
    name: String,
    /// The folder for the two CSV files (default: the current one).
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// List the users of all batches, or of one.
    List(UserListArgs),
    /// Show one user.
    Show(UserShowArgs),
}

#[derive(Args)]
pub struct JsonArg {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NameArg {
    name: String,
}

#[derive(Args)]
pub struct ShowArgs {
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct UserListArgs {
    #[arg(long)]
    batch: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct UserShowArgs {
    email: String,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MailboxTypeArg {
    #[value(name = "PrimaryOnly")]
    PrimaryOnly,
    #[value(name = "ArchiveOnly")]
    ArchiveOnly,
    #[value(name = "PrimaryAndArchive")]
    PrimaryAndArchive,
}

#[derive(Args)]
pub struct NewArgs {
    #[arg(long)]
    name: String,
    #[arg(long = "type", value_enum)]
    batch_type: TypeArg,
    #[arg(long)]
    source_endpoint: String,
    #[arg(long)]
    target_endpoint: String,
    #[arg(long)]
    csv: PathBuf,
    #[arg(long)]
    auto_start: bool,
    #[arg(long)]
    auto_complete: bool,
    /// Start no earlier than this time (RFC 3339, e.g. 2026-12-01T18:00:00+01:00).
    #[arg(long)]
    start_after: Option<String>,
    /// Complete no earlier than this time (RFC 3339).
    #[arg(long)]
    complete_after: Option<String>,
    /// Where status mails go, comma separated.
    #[arg(long, value_delimiter = ',')]
    notification_emails: Vec<String>,
    #[arg(long, value_enum)]
    mailbox_type: Option<MailboxTypeArg>,
    /// Bad items a user may have before failing (a number or Unlimited).
    #[arg(long, value_parser = parse_bad_item_limit)]
    bad_item_limit: Option<BadItemLimit>,
    /// Skip and report messages larger than this (e.g. 35MB).
    #[arg(long, value_parser = parse_size)]
    large_item_limit: Option<u64>,
    #[arg(long, num_args = 1..)]
    exclude_folders: Vec<String>,
    /// Time between incremental syncs (e.g. 24h, 30m).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    incremental_sync_interval: u64,
    #[arg(long)]
    target_delivery_domain: Option<String>,
}

fn parse_bad_item_limit(text: &str) -> Result<BadItemLimit, String> {
    BadItemLimit::parse(text).ok_or_else(|| format!("{text:?} is not a number or Unlimited"))
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TypeArg {
    Imap,
    Staged,
    Onboarding,
    Offboarding,
}

impl From<TypeArg> for BatchType {
    fn from(t: TypeArg) -> BatchType {
        match t {
            TypeArg::Imap => BatchType::Imap,
            TypeArg::Staged => BatchType::Staged,
            TypeArg::Onboarding => BatchType::Onboarding,
            TypeArg::Offboarding => BatchType::Offboarding,
        }
    }
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The batch type the file is for.
    #[arg(long = "type", value_enum)]
    batch_type: TypeArg,
    /// The CSV file (UTF-8, comma or semicolon separated).
    #[arg(long)]
    csv: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Exit code for a file with problems.
const EXIT_INVALID: u8 = 1;

pub async fn run(command: BatchCommand, data_dir: &Path) -> Result<u8> {
    match command {
        BatchCommand::Validate(args) => validate(&args, data_dir).await,
        BatchCommand::New(args) => new_batch(*args, data_dir).await,
        BatchCommand::List(args) => {
            let store = open(data_dir).await?;
            let batches = store.batches().await?;
            if args.json {
                let list: Vec<_> = batches.iter().map(describe_batch).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if batches.is_empty() {
                println!("No batches.");
            } else {
                for b in &batches {
                    let total: u64 = b.user_counts.iter().map(|c| c.1).sum();
                    println!(
                        "{:<24} {:<12} {:<10} {:>6} users",
                        b.name, b.status, b.batch_type, total
                    );
                }
            }
            Ok(0)
        }
        BatchCommand::Show(args) => {
            let store = open(data_dir).await?;
            let batch = store.batch(&args.name).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&describe_batch(&batch))?);
            } else {
                println!("Batch:     {} ({})", batch.name, batch.batch_type);
                println!("Status:    {}", batch.status);
                println!(
                    "Endpoints: {} -> {}",
                    batch.source_endpoint, batch.target_endpoint
                );
                println!("Created:   {}", batch.created_at);
                for (status, n) in &batch.user_counts {
                    println!("  {status:<20} {n}");
                }
            }
            Ok(0)
        }
        BatchCommand::Start(args) => {
            let store = open(data_dir).await?;
            let batch = store.batch(&args.name).await?;
            match batch.status.as_str() {
                status::CREATED
                | status::STOPPED
                | status::FAILED
                | status::SYNCED_WITH_ERRORS
                | status::SYNCED
                | status::SYNCING => {}
                other => anyhow::bail!("batch {} is {other}; it cannot be started", args.name),
            }
            let retried = store
                .move_users(&args.name, status::FAILED, status::QUEUED)
                .await?;
            store.set_batch_status(&args.name, status::SYNCING).await?;
            println!(
                "Batch {} started ({retried} failed users queued again).",
                args.name
            );
            Ok(0)
        }
        BatchCommand::Stop(args) => {
            let store = open(data_dir).await?;
            store.batch(&args.name).await?;
            store.set_batch_status(&args.name, status::STOPPED).await?;
            println!(
                "Batch {} stopped; syncs under way finish, no new ones start.",
                args.name
            );
            Ok(0)
        }
        BatchCommand::Complete(args) => {
            let store = open(data_dir).await?;
            let batch = store.batch(&args.name).await?;
            match batch.status.as_str() {
                status::SYNCED | status::SYNCED_WITH_ERRORS | status::SYNCING => {}
                other => anyhow::bail!(
                    "batch {} is {other}; only a started batch can be completed",
                    args.name
                ),
            }
            store
                .set_batch_status(&args.name, status::COMPLETING)
                .await?;
            println!(
                "Batch {} completing: a last incremental sync per user.",
                args.name
            );
            Ok(0)
        }
        BatchCommand::Set(args) => add_users(args, data_dir).await,
        BatchCommand::Report(args) => {
            let store = open(data_dir).await?;
            store.batch(&args.name).await?;
            let users = store.batch_users(Some(&args.name)).await?;
            let (users_file, errors_file) = write_reports(&args.name, &users, &args.out)?;
            println!("{}\n{}", users_file.display(), errors_file.display());
            Ok(0)
        }
        BatchCommand::Remove(args) => {
            let store = open(data_dir).await?;
            store.remove_batch(&args.name).await?;
            println!(
                "Batch {} removed, with its users and their stored passwords.",
                args.name
            );
            Ok(0)
        }
    }
}

pub async fn run_user(command: UserCommand, data_dir: &Path) -> Result<u8> {
    let store = open(data_dir).await?;
    match command {
        UserCommand::List(args) => {
            if let Some(batch) = &args.batch {
                store.batch(batch).await?;
            }
            let users = store.batch_users(args.batch.as_deref()).await?;
            if args.json {
                let list: Vec<_> = users.iter().map(describe_user).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for u in &users {
                    println!(
                        "{:<40} {:<20} {:<12} {}",
                        u.email,
                        u.batch,
                        u.status,
                        u.error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        UserCommand::Show(args) => {
            let user = store
                .batch_users(None)
                .await?
                .into_iter()
                .find(|u| u.email.eq_ignore_ascii_case(&args.email))
                .ok_or(flytt_store::Error::NoSuchUser(args.email.clone()))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&describe_user(&user))?);
            } else {
                println!("User:   {}", user.email);
                println!("Batch:  {} (CSV line {})", user.batch, user.csv_line);
                println!("Status: {}", user.status);
                if let Some(error) = &user.error {
                    println!("Error:  {error}");
                }
                if let Some(progress) = user
                    .progress
                    .as_deref()
                    .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                {
                    println!(
                        "Now:    {} ({} messages copied so far)",
                        progress["folder"].as_str().unwrap_or(""),
                        progress["messages_copied"]
                    );
                }
            }
        }
    }
    Ok(0)
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
/// carriage return first) gets a leading apostrophe, so it stays text.
fn cell(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    }
}

/// Writes `<batch>-users.csv` and `<batch>-errors.csv` into `dir`.
fn write_reports(
    batch: &str,
    users: &[flytt_store::BatchUser],
    dir: &Path,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let safe: String = batch
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let users_path = dir.join(format!("{safe}-users.csv"));
    let errors_path = dir.join(format!("{safe}-errors.csv"));
    let mut users_csv = csv::Writer::from_path(&users_path)
        .with_context(|| format!("cannot write {}", users_path.display()))?;
    let mut errors_csv = csv::Writer::from_path(&errors_path)
        .with_context(|| format!("cannot write {}", errors_path.display()))?;
    users_csv.write_record([
        "EmailAddress",
        "Status",
        "Error",
        "Folders",
        "ItemsFound",
        "ItemsCopied",
        "ItemsAlreadyThere",
        "ItemsSkipped",
        "ItemsFailed",
        "BytesCopied",
        "LastSyncedAt",
    ])?;
    errors_csv.write_record(["EmailAddress", "Kind", "Folder", "Uid", "Reason"])?;
    for user in users {
        let stats: serde_json::Value = user
            .stats
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let number = |field: &str| {
            stats[field]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let row = [
            user.email.clone(),
            user.status.clone(),
            user.error.clone().unwrap_or_default(),
            number("folders"),
            number("messages_found"),
            number("messages_copied"),
            number("messages_matched"),
            number("messages_skipped"),
            number("messages_failed"),
            number("bytes_copied"),
            user.last_synced_at.clone().unwrap_or_default(),
        ];
        users_csv.write_record(row.iter().map(|v| cell(v)))?;
        if let Some(error) = &user.error {
            errors_csv.write_record([
                cell(&user.email),
                "user".into(),
                String::new(),
                String::new(),
                cell(error),
            ])?;
        }
        for issue in stats["issues"].as_array().into_iter().flatten() {
            let text = |field: &str| issue[field].as_str().unwrap_or_default().to_string();
            errors_csv.write_record([
                cell(&user.email),
                cell(&text("kind")),
                cell(&text("folder")),
                issue["uid"]
                    .as_u64()
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                cell(&text("reason")),
            ])?;
        }
    }
    users_csv.flush()?;
    errors_csv.flush()?;
    Ok((users_path, errors_path))
}

async fn open(data_dir: &Path) -> Result<Store> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    Ok(Store::open(data_dir).await?)
}

fn describe_batch(b: &flytt_store::BatchSummary) -> serde_json::Value {
    let counts: serde_json::Map<String, serde_json::Value> = b
        .user_counts
        .iter()
        .map(|(status, n)| (status.clone(), (*n).into()))
        .collect();
    serde_json::json!({
        "name": b.name,
        "type": b.batch_type,
        "status": b.status,
        "source_endpoint": b.source_endpoint,
        "target_endpoint": b.target_endpoint,
        "created_at": b.created_at,
        "parameters": serde_json::from_str::<serde_json::Value>(&b.parameters).unwrap_or_default(),
        "users": b.user_counts.iter().map(|c| c.1).sum::<u64>(),
        "user_counts": counts,
    })
}

fn describe_user(u: &flytt_store::BatchUser) -> serde_json::Value {
    serde_json::json!({
        "email": u.email,
        "batch": u.batch,
        "csv_line": u.csv_line,
        "user_name": u.user_name,
        "status": u.status,
        "error": u.error,
        "overrides": serde_json::from_str::<serde_json::Value>(&u.overrides).unwrap_or_default(),
        "last_synced_at": u.last_synced_at,
        "statistics": u.stats.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()),
        "progress": u.progress.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()),
    })
}

/// Validates the CSV (with the store's knowledge of active batches), seals
/// the passwords, and stores the batch with its users in one transaction.
async fn new_batch(args: NewArgs, data_dir: &Path) -> Result<u8> {
    for (flag, time) in [
        ("--start-after", &args.start_after),
        ("--complete-after", &args.complete_after),
    ] {
        if let Some(time) = time {
            chrono::DateTime::parse_from_rfc3339(time).with_context(|| {
                format!("{flag} {time:?} is not a time like 2026-12-01T18:00:00+01:00")
            })?;
        }
    }
    let store = open(data_dir).await?;
    let batch_type = BatchType::from(args.batch_type);
    let users = match parse_against_store(&store, &args.csv, batch_type).await? {
        Ok(users) => users,
        Err(errors) => {
            print_errors(&args.csv, &errors, "no batch was created");
            return Ok(EXIT_INVALID);
        }
    };
    let parameters = BatchParameters {
        auto_start: args.auto_start,
        auto_complete: args.auto_complete,
        start_after: args.start_after,
        complete_after: args.complete_after,
        notification_emails: args.notification_emails,
        mailbox_type: args.mailbox_type.map(|m| match m {
            MailboxTypeArg::PrimaryOnly => MailboxType::PrimaryOnly,
            MailboxTypeArg::ArchiveOnly => MailboxType::ArchiveOnly,
            MailboxTypeArg::PrimaryAndArchive => MailboxType::PrimaryAndArchive,
        }),
        bad_item_limit: args.bad_item_limit,
        large_item_limit: args.large_item_limit,
        exclude_folders: args.exclude_folders,
        incremental_sync_interval_secs: args.incremental_sync_interval,
        target_delivery_domain: args.target_delivery_domain,
    };
    let new_users = seal_users(data_dir, &args.name, &users)?;
    store
        .create_batch(&NewBatch {
            name: args.name.clone(),
            batch_type: batch_type.name().to_string(),
            source_endpoint: args.source_endpoint,
            target_endpoint: args.target_endpoint,
            parameters: serde_json::to_string(&parameters)?,
            users: new_users,
        })
        .await?;
    println!(
        "Batch {} created with {} users (status Created).",
        args.name,
        users.len()
    );
    Ok(0)
}

/// Reads and validates a CSV file, knowing which users are already in an
/// active batch.
async fn parse_against_store(
    store: &Store,
    csv: &Path,
    batch_type: BatchType,
) -> Result<Result<Vec<CsvUser>, Vec<flytt_batch::CsvError>>> {
    let bytes = std::fs::read(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    // The CSV check asks synchronously; collect the active users first.
    let active: std::collections::HashMap<String, String> = store
        .active_users()
        .await?
        .into_iter()
        .map(|(email, batch)| (email.to_lowercase(), batch))
        .collect();
    Ok(parse_users(&bytes, batch_type, &|email| {
        active.get(&email.to_lowercase()).cloned()
    }))
}

fn print_errors(csv: &Path, errors: &[flytt_batch::CsvError], consequence: &str) {
    eprintln!(
        "{}: {} problems; {consequence}:",
        csv.display(),
        errors.len()
    );
    for error in errors {
        eprintln!("  {error}");
    }
}

/// The users as stored: passwords sealed, bound to batch, user and column.
fn seal_users(data_dir: &Path, batch: &str, users: &[CsvUser]) -> Result<Vec<NewBatchUser>> {
    let keyring = Keyring::load(data_dir)?;
    let seal = |user: &CsvUser, column: &str, value: Option<&flytt_batch::Password>| {
        value
            .map(|p| {
                keyring.seal(
                    &SecretString::new(p.expose()),
                    &format!("batch/{batch}/user/{}/{column}", user.email),
                )
            })
            .transpose()
    };
    users
        .iter()
        .map(|user| {
            Ok(NewBatchUser {
                email: user.email.clone(),
                csv_line: user.line,
                overrides: serde_json::to_string(&UserOverrides::from(user))?,
                user_name: user.user_name.clone(),
                password_sealed: seal(user, "Password", user.password.as_ref())?,
                target_user_name: user.target_user_name.clone(),
                target_password_sealed: seal(
                    user,
                    "TargetPassword",
                    user.target_password.as_ref(),
                )?,
            })
        })
        .collect()
}

/// `batch set NAME --add-csv FILE`: more users for an existing batch.
async fn add_users(args: SetArgs, data_dir: &Path) -> Result<u8> {
    let store = open(data_dir).await?;
    let batch = store.batch(&args.name).await?;
    let Some(csv) = args.add_csv else {
        anyhow::bail!("nothing to change: give --add-csv FILE");
    };
    let batch_type = BatchType::parse(&batch.batch_type).with_context(|| {
        format!(
            "batch {} has an unknown type {:?}",
            batch.name, batch.batch_type
        )
    })?;
    let users = match parse_against_store(&store, &csv, batch_type).await? {
        Ok(users) => users,
        Err(errors) => {
            print_errors(&csv, &errors, "no user was added");
            return Ok(EXIT_INVALID);
        }
    };
    let new_users = seal_users(data_dir, &batch.name, &users)?;
    store.add_batch_users(&batch.name, &new_users).await?;
    // A batch that had finished its initial syncs has new work.
    if batch.status == status::SYNCED || batch.status == status::SYNCED_WITH_ERRORS {
        store.set_batch_status(&batch.name, status::SYNCING).await?;
    }
    println!("{} users added to batch {}.", users.len(), batch.name);
    Ok(0)
}

async fn validate(args: &ValidateArgs, data_dir: &Path) -> Result<u8> {
    let store = open(data_dir).await?;
    let result = parse_against_store(&store, &args.csv, BatchType::from(args.batch_type)).await?;
    let file = args.csv.display();
    match result {
        Ok(users) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "valid": true, "users": users.len() })
                );
            } else {
                println!("{file}: {} users, no problems.", users.len());
            }
            Ok(0)
        }
        Err(errors) => {
            if args.json {
                let list: Vec<_> = errors
                    .iter()
                    .map(|e| serde_json::json!({ "line": e.line, "message": e.message }))
                    .collect();
                println!("{}", serde_json::json!({ "valid": false, "errors": list }));
            } else {
                eprintln!("{file}: {} problems:", errors.len());
                for error in &errors {
                    eprintln!("  {error}");
                }
            }
            Ok(EXIT_INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn report_cells_never_run_as_formulas() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-2"), "'-2");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("kari@example.org"), "kari@example.org");
        assert_eq!(cell(""), "");
    }
}
