//! `flytt batch …` and `flytt user …`: batches created from CSV files, their
//! users, statuses, events and reports. The rules live in flytt-control
//! (shared with the HTTP API); this module reads arguments and prints.

use crate::home::Home;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flytt_batch::{BatchParameters, BatchStatus, BatchType, Parameter, UserStatus};
use flytt_control::users::{NewLogin, UserOutcome};
use flytt_control::views::{BatchView, EventView, UserView};
use flytt_control::{BatchRequest, Control, ControlError, reports};
use flytt_secrets::SecretString;

use crate::account::read_password_file;
use flytt_store::EventFilter;

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
    /// Remove a batch, its users and their stored passwords (never mail); running syncs stop first.
    Remove(NameArg),
    /// Start (or resume) a batch; failed users are retried. `flytt serve` runs it.
    Start(NameArg),
    /// Stop a batch: running syncs end at their next safe point, no new ones start; it can be started again.
    Stop(NameArg),
    /// Complete a batch: a last incremental sync per user, then Completed.
    Complete(NameArg),
    /// Write the batch's reports: one row per user, and one row per skipped or failed item.
    Report(ReportArgs),
    /// Change a batch's parameters (what its status allows) or add users from another CSV file.
    Set(Box<SetArgs>),
    /// Queue the failed users of a batch again.
    Retry(NameArg),
    /// The batch's event log: status changes with their reasons.
    Events(EventsArgs),
    /// Look at every user before anything moves, changing nothing: logins, folders, messages,
    /// sizes, large items, folder names the target cannot take, quota, capabilities, an estimate.
    Analyze(crate::analyze_cmd::AnalyzeArgs),
}

#[derive(Args)]
pub struct EventsArgs {
    name: String,
    /// Only this user's events.
    #[arg(long)]
    user: Option<String>,
    /// Only the newest N events.
    #[arg(long)]
    limit: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SetArgs {
    name: String,
    /// A CSV file of more users (validated like the first one).
    #[arg(long)]
    add_csv: Option<PathBuf>,
    /// Where status mails go, comma separated (empty: none).
    #[arg(long)]
    notification_emails: Option<String>,
    /// Start no earlier than this time (RFC 3339; empty: none). Before the batch starts.
    #[arg(long)]
    start_after: Option<String>,
    /// Complete no earlier than this time (RFC 3339; empty: none).
    #[arg(long)]
    complete_after: Option<String>,
    /// true or false. Before the batch starts.
    #[arg(long, value_name = "true|false")]
    auto_start: Option<String>,
    /// true or false.
    #[arg(long, value_name = "true|false")]
    auto_complete: Option<String>,
    /// A number or Unlimited (empty: none).
    #[arg(long)]
    bad_item_limit: Option<String>,
    /// A size such as 35MB (empty: none).
    #[arg(long)]
    large_item_limit: Option<String>,
    /// Such as 24h or 30m.
    #[arg(long)]
    incremental_sync_interval: Option<String>,
    /// true or false.
    #[arg(long, value_name = "true|false")]
    verify: Option<String>,
    /// true or false.
    #[arg(long, value_name = "true|false")]
    deletion_sync: Option<String>,
    /// true or false.
    #[arg(long, value_name = "true|false")]
    report_subjects: Option<String>,
    /// Any batch parameter by its name, e.g. MailboxType=ArchiveOnly; repeatable. Until a
    /// batch starts, every parameter may change; while it runs, all but AutoStart, StartAfter,
    /// MailboxType, ExcludeFolders, FolderMapping, GmailLabels, Forwarding and
    /// TargetDeliveryDomain; once it is completing, none.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
}

impl SetArgs {
    /// The parameters to change, as text for the one parser.
    fn changes(&self) -> Result<Vec<(Parameter, String)>> {
        let mut changes: Vec<(Parameter, String)> = [
            (Parameter::NotificationEmails, &self.notification_emails),
            (Parameter::StartAfter, &self.start_after),
            (Parameter::CompleteAfter, &self.complete_after),
            (Parameter::AutoStart, &self.auto_start),
            (Parameter::AutoComplete, &self.auto_complete),
            (Parameter::BadItemLimit, &self.bad_item_limit),
            (Parameter::LargeItemLimit, &self.large_item_limit),
            (
                Parameter::IncrementalSyncInterval,
                &self.incremental_sync_interval,
            ),
            (Parameter::Verify, &self.verify),
            (Parameter::DeletionSync, &self.deletion_sync),
            (Parameter::ReportSubjects, &self.report_subjects),
        ]
        .into_iter()
        .filter_map(|(parameter, text)| text.clone().map(|t| (parameter, t)))
        .collect();
        for pair in &self.parameters {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--parameter {pair:?}: use NAME=VALUE"))?;
            let parameter = Parameter::from_name(name.trim()).with_context(|| {
                let names: Vec<&str> = Parameter::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "--parameter {name:?}: no such parameter ({})",
                    names.join(", ")
                )
            })?;
            changes.push((parameter, value.to_string()));
        }
        Ok(changes)
    }
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
    /// Queue a failed or stopped user again (its batch syncs again if it had finished).
    Retry(UserActionArgs),
    /// Stop one user: a running sync ends at its next safe point; none starts until a retry.
    Stop(UserActionArgs),
    /// Take one user out of its batch, with its stored passwords (never mail).
    Remove(UserActionArgs),
    /// Complete one synced user before its batch: its final sync, then Completed.
    Complete(UserActionArgs),
    /// Change a user's sign-in details (passwords sealed like the CSV's); retry it to use them.
    Set(UserSetArgs),
    /// Move a user (not syncing) into another batch of the same type.
    Move(UserMoveArgs),
}

#[derive(Args)]
pub struct UserMoveArgs {
    email: String,
    /// The batch it moves to.
    #[arg(long)]
    to: String,
    /// The batch it is in (default: its active batch, else its latest).
    #[arg(long)]
    batch: Option<String>,
}

#[derive(Args)]
pub struct UserActionArgs {
    email: String,
    /// The user's batch (default: its active batch, else its latest).
    #[arg(long)]
    batch: Option<String>,
}

#[derive(Args)]
pub struct UserSetArgs {
    email: String,
    /// The user's batch (default: its active batch, else its latest).
    #[arg(long)]
    batch: Option<String>,
    /// The source login (the CSV's UserName).
    #[arg(long)]
    user_name: Option<String>,
    /// A file holding the source password (the CSV's Password).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The target login (the CSV's TargetUserName).
    #[arg(long)]
    target_user_name: Option<String>,
    /// A file holding the target password (the CSV's TargetPassword).
    #[arg(long)]
    target_password_file: Option<PathBuf>,
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
    #[arg(long)]
    notification_emails: Option<String>,
    /// PrimaryOnly, ArchiveOnly or PrimaryAndArchive.
    #[arg(long)]
    mailbox_type: Option<String>,
    /// Bad items a user may have before failing (a number or Unlimited).
    #[arg(long)]
    bad_item_limit: Option<String>,
    /// Skip and report messages larger than this (e.g. 35MB).
    #[arg(long)]
    large_item_limit: Option<String>,
    #[arg(long, num_args = 1..)]
    exclude_folders: Vec<String>,
    /// Where source folders go when not by their own path: rules such as
    /// '"Sendte elementer" -> "Gammelt/Sendt"' or 'Arkiv/* -> Archive/*'
    /// (see `flytt sync --help`); a CSV row's FolderMapping is tried first.
    /// Repeatable.
    #[arg(long, value_name = "RULES")]
    folder_mapping: Vec<String>,
    /// Report skipped and failed messages with their subjects (their dates
    /// always) in the statistics and the errors report: subjects are
    /// personal data.
    #[arg(long)]
    report_subjects: bool,
    /// A Gmail source's labels: a folder per label (a message with two
    /// labels in both), or each message once with its labels as keywords.
    #[arg(long, value_name = "folders|keywords")]
    gmail_labels: Option<String>,
    /// Time between incremental syncs (e.g. 24h, 30m; default 24h).
    #[arg(long)]
    incremental_sync_interval: Option<String>,
    #[arg(long)]
    target_delivery_domain: Option<String>,
    /// Staged batches: on completion, make the source mailboxes mail users
    /// that keep only their forwarding.
    #[arg(long)]
    convert_source_on_complete: bool,
    /// Read every copy back and compare its content with the source's on
    /// every sync (final syncs always do).
    #[arg(long)]
    verify: bool,
    /// Deletion sync: messages, contacts and calendar items deleted on the
    /// source since they were copied are deleted on the target too (only
    /// flytt's own copies; contacts and items only if unchanged there).
    #[arg(long)]
    deletion_sync: bool,
    /// Staged batches: where forwarding is set on the source: auto (the
    /// directory if the endpoint has one, else a Sieve redirect), directory,
    /// sieve or both.
    #[arg(long)]
    forwarding: Option<String>,
}

impl NewArgs {
    /// The batch's parameters, each from its text by the one parser
    /// (`BatchParameters::set`), as the API and the dashboard read theirs.
    fn parameters(&self) -> Result<BatchParameters, flytt_batch::ParameterError> {
        let flag = |on: bool| if on { "true" } else { "false" };
        // One per line (a trailing one too), so a name with a comma stays whole.
        let exclude: String = self
            .exclude_folders
            .iter()
            .map(|f| f.clone() + "\n")
            .collect();
        let mapping = self.folder_mapping.join("\n");
        let texts = [
            (Parameter::AutoStart, Some(flag(self.auto_start))),
            (Parameter::AutoComplete, Some(flag(self.auto_complete))),
            (Parameter::StartAfter, self.start_after.as_deref()),
            (Parameter::CompleteAfter, self.complete_after.as_deref()),
            (
                Parameter::NotificationEmails,
                self.notification_emails.as_deref(),
            ),
            (Parameter::MailboxType, self.mailbox_type.as_deref()),
            (Parameter::BadItemLimit, self.bad_item_limit.as_deref()),
            (Parameter::LargeItemLimit, self.large_item_limit.as_deref()),
            (Parameter::ExcludeFolders, Some(exclude.as_str())),
            (Parameter::FolderMapping, Some(mapping.as_str())),
            (Parameter::ReportSubjects, Some(flag(self.report_subjects))),
            (Parameter::GmailLabels, self.gmail_labels.as_deref()),
            (
                Parameter::IncrementalSyncInterval,
                self.incremental_sync_interval.as_deref(),
            ),
            (
                Parameter::TargetDeliveryDomain,
                self.target_delivery_domain.as_deref(),
            ),
            (
                Parameter::ConvertSourceOnComplete,
                Some(flag(self.convert_source_on_complete)),
            ),
            (Parameter::Verify, Some(flag(self.verify))),
            (Parameter::DeletionSync, Some(flag(self.deletion_sync))),
            (Parameter::Forwarding, self.forwarding.as_deref()),
        ];
        BatchParameters::from_texts(
            texts
                .into_iter()
                .filter_map(|(parameter, text)| Some((parameter, text?))),
        )
    }
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

pub async fn run(command: BatchCommand, home: &Home) -> Result<u8> {
    let control = home.control().await?;
    let store = control.store();
    match command {
        BatchCommand::Validate(args) => validate(&args, &control).await,
        BatchCommand::New(args) => new_batch(*args, &control).await,
        BatchCommand::List(args) => {
            let mut views = Vec::new();
            for batch in store.batches().await? {
                views.push(BatchView::new(&batch));
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!("No batches.");
            } else {
                println!(
                    "{:<24} {:<20} {:<11} {:>6} {:>8} {:>8} {:>9} {:>7}",
                    "NAME", "STATUS", "TYPE", "USERS", "SYNCING", "SYNCED", "COMPLETED", "FAILED"
                );
                for b in &views {
                    println!(
                        "{:<24} {:<20} {:<11} {:>6} {:>8} {:>8} {:>9} {:>7}",
                        b.name,
                        b.status,
                        b.batch_type,
                        b.users,
                        b.count(UserStatus::Syncing) + b.count(UserStatus::IncrementalSyncing),
                        b.count(UserStatus::Synced),
                        b.count(UserStatus::Completed),
                        b.count(UserStatus::Failed),
                    );
                }
            }
            Ok(0)
        }
        BatchCommand::Show(args) => {
            let batch = store.batch(&args.name).await?;
            let view = BatchView::new(&batch);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_batch(&view);
            }
            Ok(0)
        }
        BatchCommand::Start(args) => {
            let retried = control.start(&args.name).await?;
            println!(
                "Batch {} started ({} queued again).",
                args.name,
                flytt_control::views::count_of(retried, "failed user")
            );
            Ok(0)
        }
        BatchCommand::Stop(args) => {
            match control.stop(&args.name).await? {
                BatchStatus::Stopped => println!("Batch {} stopped.", args.name),
                _ => println!(
                    "Batch {} stopping: running syncs end at their next safe point (after the messages they are copying are confirmed), then it is Stopped; no new ones start.",
                    args.name
                ),
            }
            Ok(0)
        }
        BatchCommand::Complete(args) => {
            control.complete(&args.name).await?;
            println!(
                "Batch {} completing: a last incremental sync per user.",
                args.name
            );
            Ok(0)
        }
        BatchCommand::Retry(args) => {
            let retried = control.retry_failed(&args.name).await?;
            println!(
                "{} of batch {} queued again.",
                flytt_control::views::count_of(retried, "failed user"),
                args.name
            );
            Ok(0)
        }
        BatchCommand::Set(args) => set(*args, &control).await,
        BatchCommand::Analyze(args) => crate::analyze_cmd::analyze(args, &control, home).await,
        BatchCommand::Report(args) => {
            store.batch(&args.name).await?;
            let users = store.batch_users(Some(&args.name)).await?;
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("cannot create {}", args.out.display()))?;
            let stem = reports::file_stem(&args.name);
            for (suffix, report) in [
                ("users", reports::users_report(&users)?),
                ("errors", reports::errors_report(&users)?),
            ] {
                let path = args.out.join(format!("{stem}-{suffix}.csv"));
                std::fs::write(&path, report)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", path.display());
            }
            Ok(0)
        }
        BatchCommand::Events(args) => {
            // A removed batch's log stays readable: no check that it exists.
            let events = store
                .events(&EventFilter {
                    batch: Some(args.name.clone()),
                    email: args.user.clone(),
                    after: None,
                    limit: args.limit,
                })
                .await?;
            if args.json {
                let views: Vec<_> = events.iter().map(EventView::new).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if events.is_empty() {
                println!("No events for batch {}.", args.name);
            } else {
                for e in &events {
                    println!(
                        "{}  {:<12} {:<32} {}",
                        e.at,
                        e.kind,
                        e.email.as_deref().unwrap_or("-"),
                        e.message.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(0)
        }
        BatchCommand::Remove(args) => {
            if control.remove(&args.name).await? {
                println!(
                    "Batch {} removed, with its users and their stored passwords.",
                    args.name
                );
            } else {
                println!(
                    "Batch {} removing: running syncs end at their next safe point, then a runner removes it with its users and their stored passwords.",
                    args.name
                );
            }
            Ok(0)
        }
    }
}

fn print_batch(view: &BatchView) {
    println!("Batch:     {} ({})", view.name, view.batch_type);
    println!("Status:    {}", view.status);
    println!(
        "Endpoints: {} -> {}",
        view.source_endpoint, view.target_endpoint
    );
    let parameters = &view.parameters;
    if !parameters.exclude_folders.is_empty() {
        println!("Excluded:  {}", parameters.exclude_folders.join(", "));
    }
    if !parameters.folder_mapping.is_empty() {
        println!("Mapping:   {}", parameters.folder_mapping);
    }
    if parameters.gmail_labels != flytt_batch::GmailLabels::Folders {
        println!("Gmail:     labels as {}", parameters.gmail_labels.as_str());
    }
    println!("Created:   {}", view.created_at);
    if let Some(started) = &view.started_at {
        println!("Started:   {started}");
    }
    if let Some(done) = &view.initial_sync_done_at {
        println!("Synced:    {done} (initial sync of every user)");
    }
    if let Some(completed) = &view.completed_at {
        println!("Completed: {completed}");
    }
    println!("Users:     {}", view.users);
    for (status, n) in &view.user_counts {
        println!("  {status:<20} {n}");
    }
    let t = &view.totals;
    println!(
        "Messages:  {} found, {} copied, {} already there, {} skipped, {} failed, {} altered by the target",
        t.messages_found,
        t.messages_copied,
        t.messages_matched,
        t.messages_skipped,
        t.messages_failed,
        t.messages_altered
    );
    if t.contacts_found + t.events_found + t.tasks_found > 0 {
        for (what, found, copied, skipped) in [
            (
                "Contacts:",
                t.contacts_found,
                t.contacts_copied,
                t.contacts_skipped,
            ),
            ("Events:", t.events_found, t.events_copied, t.events_skipped),
            ("Tasks:", t.tasks_found, t.tasks_copied, t.tasks_skipped),
        ] {
            println!("{what:<10} {found} found, {copied} copied, {skipped} skipped");
        }
    }
    println!("Copied:    {:.1} MB", t.bytes_copied as f64 / 1e6);
    if let Some(speed) = &view.throughput {
        println!(
            "Speed:     {:.0} messages/s, {:.2} MB/s over {:.1} s of initial sync",
            speed.messages_per_second,
            speed.bytes_per_second / 1e6,
            speed.seconds
        );
    }
}

pub async fn run_user(command: UserCommand, home: &Home) -> Result<u8> {
    let store = home.store().await?;
    match command {
        UserCommand::Retry(args) => {
            let control = home.control().await?;
            let outcome = control
                .retry_user(&args.email, args.batch.as_deref())
                .await?;
            print_user_outcome(&args.email, &outcome);
        }
        UserCommand::Stop(args) => {
            let control = home.control().await?;
            let outcome = control
                .stop_user(&args.email, args.batch.as_deref())
                .await?;
            print_user_outcome(&args.email, &outcome);
        }
        UserCommand::Complete(args) => {
            let control = home.control().await?;
            let outcome = control
                .complete_user(&args.email, args.batch.as_deref())
                .await?;
            print_user_outcome(&args.email, &outcome);
        }
        UserCommand::Remove(args) => {
            let control = home.control().await?;
            let outcome = control
                .remove_user(&args.email, args.batch.as_deref())
                .await?;
            print_user_outcome(&args.email, &outcome);
        }
        UserCommand::Move(args) => {
            let control = home.control().await?;
            let user = control
                .move_user(&args.email, args.batch.as_deref(), &args.to)
                .await?;
            println!(
                "User {} moved to batch {} ({}).",
                user.email, user.batch, user.status
            );
        }
        UserCommand::Set(args) => {
            let control = home.control().await?;
            let secret = |file: Option<&Path>| -> Result<Option<SecretString>> {
                file.map(|f| Ok(SecretString::new(read_password_file(f)?.expose())))
                    .transpose()
            };
            let login = NewLogin {
                user_name: args.user_name,
                password: secret(args.password_file.as_deref())?,
                target_user_name: args.target_user_name,
                target_password: secret(args.target_password_file.as_deref())?,
            };
            let user = control
                .change_login(&args.email, args.batch.as_deref(), login)
                .await?;
            println!(
                "User {} of batch {} changed; its next sync uses it ({}).",
                user.email,
                user.batch,
                match user.status {
                    UserStatus::Failed | UserStatus::Stopped => format!(
                        "it is {}: flytt user retry {} starts it",
                        user.status, user.email
                    ),
                    status => format!("it is {status}"),
                }
            );
        }
        UserCommand::List(args) => {
            if let Some(batch) = &args.batch {
                store.batch(batch).await?;
            }
            let users = store.batch_users(args.batch.as_deref()).await?;
            if args.json {
                let list: Vec<_> = users.iter().map(UserView::new).collect();
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
            let user = store.user_by_email(&args.email).await?;
            let batch = store.batch(&user.batch).await?;
            let view = UserView::new(&user).with_effective(&batch.parameters);
            let events = store
                .events(&EventFilter {
                    batch: Some(user.batch.clone()),
                    email: Some(user.email.clone()),
                    after: None,
                    limit: Some(10),
                })
                .await?;
            if args.json {
                let mut json = serde_json::to_value(&view)?;
                json["events"] =
                    serde_json::to_value(events.iter().map(EventView::new).collect::<Vec<_>>())?;
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else {
                print_user(&view, &events);
            }
        }
    }
    Ok(0)
}

fn print_user_outcome(email: &str, outcome: &UserOutcome) {
    match outcome {
        UserOutcome::Now(status) => println!("User {email} is {status}."),
        UserOutcome::Stopping => println!(
            "User {email}: its running sync ends at its next safe point (after the messages it is copying are confirmed); then it is done."
        ),
        UserOutcome::Removed => {
            println!("User {email} removed from its batch, with its stored passwords.")
        }
        UserOutcome::Completing => println!(
            "User {email}: its final sync starts when a slot is free (flytt serve); then it is Completed."
        ),
    }
}

fn print_user(user: &UserView, events: &[flytt_store::Event]) {
    println!("User:   {}", user.email);
    println!("Batch:  {} (CSV line {})", user.batch, user.csv_line);
    match user.requested {
        Some(flytt_batch::UserRequest::Stop) => {
            println!(
                "Status: {} (stopping at the sync's next safe point)",
                user.status
            )
        }
        Some(flytt_batch::UserRequest::Remove) => println!(
            "Status: {} (to be removed at the sync's next safe point)",
            user.status
        ),
        Some(flytt_batch::UserRequest::Complete) => println!(
            "Status: {} (completing: its final sync starts when a slot is free)",
            user.status
        ),
        None => println!("Status: {}", user.status),
    }
    if let Some(error) = &user.error {
        println!("Error:  {error}");
    }
    if let Some(waiting) = &user.waiting {
        println!("Now:    {}", waiting.sentence());
    }
    if let Some(progress) = &user.progress {
        let rate = match progress.rate_words() {
            rate if rate.is_empty() => rate,
            rate => format!(", {rate}"),
        };
        println!(
            "Now:    {} ({} messages copied so far{}{rate})",
            progress.folder,
            progress.messages_copied,
            progress.in_words()
        );
    }
    if let Some(first) = &user.first_started_at {
        println!("First started: {first}");
    }
    for effective in user.effective_parameters.iter().flatten() {
        let origin = match effective.origin {
            flytt_batch::Origin::Csv => "from the CSV row",
            flytt_batch::Origin::Batch => "from the batch",
            flytt_batch::Origin::Default => "the default",
        };
        println!(
            "{:<15} {} ({origin})",
            format!("{}:", effective.parameter),
            effective.value
        );
    }
    if let Some(stats) = &user.statistics {
        println!(
            "Items:  {} found in {} folders, {} copied, {} already there, {} skipped, {} failed, {} altered by the target",
            stats.messages_found,
            stats.folders,
            stats.messages_copied,
            stats.messages_matched,
            stats.messages_skipped,
            stats.messages_failed,
            stats.messages_altered
        );
        println!("Bytes:  {} copied", stats.bytes_copied);
        for folder in &stats.folder_counts {
            println!(
                "Folder: {} ({} found, {} copied)",
                folder.folder, folder.found, folder.copied
            );
        }
        if stats.messages_excluded > 0 {
            println!(
                "Excluded: {} messages in folders left out (exclude patterns, MailboxType)",
                stats.messages_excluded
            );
        }
        if stats.messages_deleted > 0 {
            println!(
                "Deleted: {} copies whose source message was deleted (deletion sync)",
                stats.messages_deleted
            );
        }
        if let Some(dav) = &stats.dav {
            for (what, counts) in [
                ("Contacts:", &dav.contacts),
                ("Events:", &dav.events),
                ("Tasks:", &dav.tasks),
                ("Journals:", &dav.journals),
            ] {
                println!(
                    "{what:<10} {} found, {} copied, {} updated, {} already there, {} skipped, {} deleted",
                    counts.found,
                    counts.copied,
                    counts.updated,
                    counts.already_there,
                    counts.skipped,
                    counts.deleted
                );
            }
        }
        if let Some(sieve) = &stats.sieve {
            println!(
                "Sieve:  {} scripts copied{}",
                sieve.copied.len(),
                sieve
                    .active
                    .as_deref()
                    .map(|a| format!(", {a:?} active"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(last) = &user.last_synced_at {
        println!("Last good sync: {last}");
    }
    if !events.is_empty() {
        println!("Events:");
        for e in events {
            println!("  {}  {}", e.at, e.message.as_deref().unwrap_or(&e.kind));
        }
    }
}

/// Prints a CSV file's problems (or returns any other error).
fn report_invalid(csv: &Path, error: ControlError, consequence: &str) -> Result<u8> {
    match error {
        ControlError::InvalidCsv(errors) => {
            eprintln!(
                "{}: {}; {consequence}:",
                csv.display(),
                flytt_control::problems(errors.len())
            );
            for error in errors {
                eprintln!("  {error}");
            }
            Ok(EXIT_INVALID)
        }
        other => Err(other.into()),
    }
}

fn read_csv(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Validates the CSV (with the store's knowledge of active batches), seals
/// the passwords, and stores the batch with its users in one transaction.
async fn new_batch(args: NewArgs, control: &Control) -> Result<u8> {
    let csv = read_csv(&args.csv)?;
    let parameters = args.parameters()?;
    let request = BatchRequest {
        name: args.name.clone(),
        batch_type: BatchType::from(args.batch_type),
        source_endpoint: args.source_endpoint,
        target_endpoint: args.target_endpoint,
        parameters,
    };
    match control.create_batch(request, &csv).await {
        Ok(users) => {
            println!(
                "Batch {} created with {users} users (status Created).",
                args.name
            );
            Ok(0)
        }
        Err(e) => report_invalid(&args.csv, e, "no batch was created"),
    }
}

/// `batch set`: parameters first (all or none), then more users.
async fn set(args: SetArgs, control: &Control) -> Result<u8> {
    let changes = args.changes()?;
    if changes.is_empty() && args.add_csv.is_none() {
        anyhow::bail!("nothing to change: give a parameter (see --help) or --add-csv FILE");
    }
    if !changes.is_empty() {
        control.change_parameters(&args.name, &changes).await?;
        let names: Vec<&str> = changes.iter().map(|(p, _)| p.name()).collect();
        println!(
            "Batch {} changed: {}; syncs that start from now on use it.",
            args.name,
            names.join(", ")
        );
    }
    let Some(path) = args.add_csv else {
        return Ok(0);
    };
    let csv = read_csv(&path)?;
    match control.add_users(&args.name, &csv).await {
        Ok(users) => {
            println!("{users} users added to batch {}.", args.name);
            Ok(0)
        }
        Err(e) => report_invalid(&path, e, "no user was added"),
    }
}

async fn validate(args: &ValidateArgs, control: &Control) -> Result<u8> {
    let csv = read_csv(&args.csv)?;
    let file = args.csv.display();
    match control
        .validate_csv(&csv, BatchType::from(args.batch_type))
        .await
    {
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
        Err(ControlError::InvalidCsv(errors)) if args.json => {
            let list: Vec<_> = errors
                .iter()
                .map(|e| serde_json::json!({ "line": e.line, "message": e.message }))
                .collect();
            println!("{}", serde_json::json!({ "valid": false, "errors": list }));
            Ok(EXIT_INVALID)
        }
        Err(e) => report_invalid(&args.csv, e, "the file cannot be used"),
    }
}
