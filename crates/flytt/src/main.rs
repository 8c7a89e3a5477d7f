//! The `flytt` command. Library errors become `anyhow` here, at the edge.

mod account;
mod analyze_cmd;
mod batch_cmd;
mod config;
mod directory_cmd;
mod endpoint_cmd;
mod home;

mod sync_cmd;
mod token_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flytt",
    version,
    about = "Migrates mailboxes between mail servers in migration batches"
)]
struct Cli {
    /// Where flytt keeps its state: the secret key, flytt.toml and (without
    /// --database-url) the SQLite database.
    #[arg(long, global = true, env = "FLYTT_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// A PostgreSQL database for the state instead of the data directory's
    /// SQLite file: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE. Every
    /// runner and command of one installation names the same database
    /// (and has the same key: the key file, or FLYTT_SECRET_KEY).
    #[arg(
        long,
        global = true,
        env = "FLYTT_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// How much disk the messages being copied may take in the data
    /// directory's spool/ at once (large messages are kept there between
    /// FETCH and APPEND), e.g. 4GB: a server sending more is waited out
    /// rather than filling the disk.
    #[arg(long, global = true, env = "FLYTT_SPOOL_BUDGET", default_value = "4GB", value_parser = flytt_batch::size::parse_size)]
    spool_budget: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one mailbox from a source to a target server (safe to re-run: incremental).
    Sync(Box<sync_cmd::SyncArgs>),
    /// Migration endpoints: named servers with their concurrency limits.
    #[command(subcommand)]
    Endpoint(Box<endpoint_cmd::EndpointCommand>),
    /// Directories of staged migrations (LDAP or a command hook).
    #[command(subcommand)]
    Directory(directory_cmd::DirectoryCommand),
    /// Migration batches.
    #[command(subcommand)]
    Batch(batch_cmd::BatchCommand),
    /// The users of migration batches.
    #[command(subcommand)]
    User(batch_cmd::UserCommand),
    /// The long-running service: the job runner for started batches and the
    /// HTTP API, until SIGTERM or Ctrl-C (which end it cleanly; a restart resumes).
    Serve(ServeArgs),
    /// The job runner alone, without the HTTP API (e.g. on extra machines);
    /// `flytt worker list` shows the runners sharing the database.
    Worker(WorkerArgs),
    /// Bearer tokens for the HTTP API.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
}

/// How a runner keeps its leases on the users it syncs, and how long it
/// keeps trying a user against a busy server.
#[derive(clap::Args)]
struct LeaseArgs {
    /// How often the runner renews its leases (e.g. 10s).
    #[arg(long, env = "FLYTT_HEARTBEAT", default_value = "10s", value_parser = flytt_batch::parse_duration)]
    heartbeat: u64,
    /// How long a lease lasts without renewal; then another runner may take
    /// the user over (e.g. 30s; more than the heartbeat).
    #[arg(long, env = "FLYTT_LEASE", default_value = "30s", value_parser = flytt_batch::parse_duration)]
    lease: u64,
    /// A user whose sync meets busy, throttling or lost servers is tried
    /// again with backoff while it makes progress; it fails after this long
    /// without any (e.g. 1h, 30m).
    #[arg(long, env = "FLYTT_GIVE_UP_AFTER", default_value = "1h", value_parser = flytt_batch::parse_duration)]
    give_up_after: u64,
    /// The longest a staged user's directory and ManageSieve steps, or a
    /// Sieve script copy, may take before they are given up and tried
    /// again later.
    #[arg(long, default_value = "2m", value_parser = flytt_batch::parse_duration)]
    step_deadline: u64,
}

impl LeaseArgs {
    fn runner_options(&self) -> anyhow::Result<flytt_runner::RunnerOptions> {
        if self.lease <= self.heartbeat {
            anyhow::bail!(
                "--lease ({} s) must be longer than --heartbeat ({} s)",
                self.lease,
                self.heartbeat
            );
        }
        Ok(flytt_runner::RunnerOptions {
            heartbeat: std::time::Duration::from_secs(self.heartbeat),
            lease: std::time::Duration::from_secs(self.lease),
            give_up_after: std::time::Duration::from_secs(self.give_up_after),
            step_deadline: std::time::Duration::from_secs(self.step_deadline.max(1)),
            ..flytt_runner::RunnerOptions::default()
        })
    }
}

#[derive(clap::Args)]
struct WorkerArgs {
    #[command(subcommand)]
    command: Option<WorkerCommand>,
    #[command(flatten)]
    lease: LeaseArgs,
}

#[derive(clap::Subcommand)]
enum WorkerCommand {
    /// The runners sharing this database: id, host, started, last
    /// heartbeat, users held.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where the HTTP API listens (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The config file (SMTP for notification mails); default: flytt.toml in
    /// the data directory, if it is there.
    #[arg(long, env = "FLYTT_CONFIG")]
    config: Option<PathBuf>,
    /// Mark the dashboard's cookies Secure: set this when a TLS proxy
    /// serves flytt (a request with `X-Forwarded-Proto: https` gets them
    /// anyway).
    #[arg(long, env = "FLYTT_SECURE_COOKIES")]
    secure_cookies: bool,
    /// How long an HTTP client may take to send its request headers, and
    /// keep a connection idle between requests.
    #[arg(long, default_value = "30s", value_parser = flytt_batch::parse_duration)]
    header_timeout: u64,
    /// Live event streams (/api/v1/events/stream) open at once at most.
    #[arg(long, default_value_t = 64)]
    max_event_streams: usize,
    #[command(flatten)]
    lease: LeaseArgs,
}

/// Exit codes of `flytt sync` (SPEC §8).
pub const EXIT_COMPLETE: u8 = 0;
pub const EXIT_PARTIAL: u8 = 1;
pub const EXIT_FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let home = home::Home {
        data_dir: cli.data_dir.unwrap_or_else(default_data_dir),
        database_url: cli.database_url.filter(|url| !url.is_empty()),
    };
    let copies_mail = matches!(
        cli.command,
        Command::Sync(_) | Command::Serve(_) | Command::Worker(_)
    );
    if copies_mail
        && let Err(e) = flytt_imap::spool_in(home.data_dir.join("spool"), cli.spool_budget)
    {
        eprintln!(
            "error: cannot make the spool directory in {}: {e}",
            home.data_dir.display()
        );
        return ExitCode::from(EXIT_FAILED);
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Sync(args) => sync_cmd::run(*args, &home).await,
            Command::Endpoint(command) => endpoint_cmd::run(*command, &home).await,
            Command::Batch(command) => batch_cmd::run(command, &home).await,
            Command::Directory(command) => directory_cmd::run(command, &home).await,
            Command::User(command) => batch_cmd::run_user(command, &home).await,
            Command::Serve(args) => {
                let options = args.lease.runner_options();
                serve(&home, Some(args), options).await
            }
            Command::Worker(WorkerArgs {
                command: Some(WorkerCommand::List { json }),
                ..
            }) => worker_list(&home, json).await,
            Command::Worker(args) => serve(&home, None, args.lease.runner_options()).await,
            Command::Token(command) => token_cmd::run(command, &home).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Runs the job runner, and for `serve` the HTTP API and the notification
/// mails, until SIGTERM or Ctrl-C; syncs in flight are abandoned safely and
/// resume on the next start.
async fn serve(
    home: &home::Home,
    serve: Option<ServeArgs>,
    runner_options: anyhow::Result<flytt_runner::RunnerOptions>,
) -> anyhow::Result<u8> {
    use anyhow::Context;
    let runner_options = runner_options?;
    let data_dir = home.data_dir();
    // A bad config stops the start, before anything runs.
    let config = match serve.as_ref().map(|s| &s.config) {
        Some(Some(path)) => config::Config::load(path)?,
        Some(None) if data_dir.join("flytt.toml").exists() => {
            config::Config::load(&data_dir.join("flytt.toml"))?
        }
        _ => config::Config::default(),
    };
    let notifier = match &config.smtp {
        Some(smtp) => Some(flytt_notify::Notifier::new(smtp).context("config file, [smtp]")?),
        None => None,
    };
    let options = flytt_api::ServeOptions {
        dashboard_password: config.dashboard_password()?,
        secure_cookies: serve.as_ref().is_some_and(|s| s.secure_cookies),
        header_read_timeout: std::time::Duration::from_secs(
            serve.as_ref().map_or(30, |s| s.header_timeout.max(1)),
        ),
        max_event_streams: serve.as_ref().map_or(64, |s| s.max_event_streams),
    };
    let listen = serve.map(|s| s.listen);
    let store = home.store().await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let api = match listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?;
            let bound = listener.local_addr()?;
            println!(
                "flytt serve: HTTP API on http://{bound}/ ({})",
                home.describe()
            );
            let control = flytt_control::Control::new(store.clone(), data_dir);
            let shutdown = until_stopped(stopped.clone());
            Some(tokio::spawn(flytt_api::serve(
                listener, control, options, shutdown,
            )))
        }
        None => None,
    };
    let mails = notifier.map(|notifier| {
        tokio::spawn(flytt_notify::run(
            store.clone(),
            notifier,
            until_stopped(stopped.clone()),
        ))
    });
    let runner = flytt_runner::run(store, data_dir, runner_options, until_stopped(stopped)).await;
    signals.abort();
    if let Some(mails) = mails {
        let _ = mails.await;
    }
    if let Some(api) = api {
        api.await?.context("the HTTP API failed")?;
    }
    runner?;
    Ok(EXIT_COMPLETE)
}

/// `flytt worker list`.
async fn worker_list(home: &home::Home, json: bool) -> anyhow::Result<u8> {
    let store = home.store().await?;
    let runners: Vec<flytt_control::views::WorkerView> = store
        .runners()
        .await?
        .iter()
        .map(flytt_control::views::WorkerView::new)
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&runners)?);
        return Ok(EXIT_COMPLETE);
    }
    if runners.is_empty() {
        println!("No runner is registered.");
    }
    for r in &runners {
        println!(
            "{}  host {}  pid {}  started {}  last heartbeat {}  users held {}",
            r.id, r.host, r.pid, r.started_at, r.last_heartbeat, r.users_held
        );
    }
    Ok(EXIT_COMPLETE)
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("flytt");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/flytt"),
        None => PathBuf::from("flytt-data"),
    }
}

/// Logs go to stderr; `FLYTT_LOG` (or `RUST_LOG`) sets the level, warnings by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLYTT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colours for a terminal, plain text for a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
