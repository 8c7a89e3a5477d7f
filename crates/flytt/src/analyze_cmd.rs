//! `flytt batch analyze NAME`: the batch's analysis run here (or, with
//! `--last`, the last one shown), printed as a table, JSON or CSV. The work
//! is flytt-runner's (`analyze_batch`), the same a runner does when the
//! API or the dashboard asks.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use flytt_batch::{BatchAnalysis, UserAnalysis, duration_words};
use flytt_control::{Control, reports};
use indicatif::{ProgressBar, ProgressStyle};

use crate::home::Home;
use crate::sync_cmd::human_bytes;

#[derive(Args)]
pub struct AnalyzeArgs {
    name: String,
    /// Show the last analysis (asked for here, through the API or the
    /// dashboard) instead of running one.
    #[arg(long)]
    last: bool,
    /// Print the analysis as JSON.
    #[arg(long)]
    json: bool,
    /// Also write one row per user to this CSV file.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

/// Exit status: 0 when every user could be looked at, 1 when some could
/// not (their errors say why), 2 when the analysis itself failed.
pub async fn analyze(args: AnalyzeArgs, control: &Control, home: &Home) -> Result<u8> {
    let store = control.store();
    store.batch(&args.name).await?;
    if !args.last {
        run_here(&args.name, control, home, !args.json).await?;
    }
    let Some(analysis) = control.analysis(&args.name).await? else {
        bail!(
            "batch {} has not been analyzed yet (flytt batch analyze {})",
            args.name,
            args.name
        );
    };
    if let Some(path) = &args.csv {
        std::fs::write(path, reports::analysis_report(&analysis)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        print_analysis(&analysis);
    }
    Ok(match analysis.run.state {
        flytt_batch::AnalysisState::Failed => 2,
        _ if analysis.failed > 0 => 1,
        _ => 0,
    })
}

async fn run_here(batch: &str, control: &Control, home: &Home, visible: bool) -> Result<()> {
    let store = control.store();
    let (runner, _, _) = flytt_runner::runner_id();
    if !store.begin_analysis(batch, &runner).await? {
        return Err(flytt_control::ControlError::AnalysisRunning(batch.to_string()).into());
    }
    let keyring = Arc::new(flytt_control::keyring(store, home.data_dir()).await?);
    let progress = Progress::new(visible && std::io::stderr().is_terminal());
    flytt_runner::analyze_batch(store, keyring, batch, &runner, &progress).await?;
    progress.finish();
    Ok(())
}

/// A progress bar over the users, on a terminal.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(visible: bool) -> Progress {
        let bar = visible.then(|| {
            let bar = ProgressBar::new(0);
            let style =
                ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} users  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Progress { bar }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl flytt_runner::AnalysisObserver for Progress {
    fn started(&self, users: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(users);
        }
    }

    fn user_done(&self, result: &UserAnalysis) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(result.email.clone());
        }
    }
}

fn print_analysis(analysis: &BatchAnalysis) {
    let run = &analysis.run;
    println!(
        "Analysis of batch {}: {} ({} of {} users looked at, {} could not be)",
        analysis.batch, run.state, analysis.analyzed, analysis.users, analysis.failed
    );
    if let Some(error) = &run.error {
        println!("Stopped: {error}");
    }
    println!(
        "{:<32} {:>7} {:>9} {:>10} {:>10} {:>6} {:>7}  QUOTA",
        "USER", "FOLDERS", "MESSAGES", "SIZE", "LARGEST", "LARGE", "RENAMED"
    );
    for user in &analysis.user_results {
        if let Some(error) = &user.error {
            println!("{:<32} cannot be analyzed: {error}", user.email);
            continue;
        }
        println!(
            "{:<32} {:>7} {:>9} {:>10} {:>10} {:>6} {:>7}  {}",
            user.email,
            user.folders,
            user.messages,
            human_bytes(user.bytes),
            human_bytes(user.largest_message),
            user.large_items,
            user.renamed_folders.len(),
            quota_words(user),
        );
        for folder in &user.renamed_folders {
            println!("    {}: {}", folder.folder, folder.reason);
        }
        for folder in &user.folder_rules {
            println!(
                "    {} -> {} (rule {})",
                folder.folder, folder.target, folder.rule
            );
        }
    }
    println!(
        "Total: {} messages, {} to copy in {} folders; {} large items skipped; {} users over their target quota.",
        analysis.messages,
        human_bytes(analysis.bytes),
        analysis.folders,
        analysis.large_items,
        analysis.over_quota
    );
    match (&run.probe, analysis.estimated_seconds) {
        (Some(probe), Some(seconds)) => println!(
            "Estimate: about {} with {} users at a time (the source gave {} in {:.1} s to a probe of {} messages).",
            duration_words(seconds),
            run.concurrency,
            human_bytes(probe.bytes),
            probe.seconds,
            probe.messages
        ),
        _ if run.state == flytt_batch::AnalysisState::Done => {
            println!("Estimate: none (no mail to probe the source's rate with).")
        }
        _ => {}
    }
}

/// "120.0 MB of 1.0 GB used, fits" / "no quota".
fn quota_words(user: &UserAnalysis) -> String {
    match (&user.target_quota, user.fits_quota()) {
        (Some(quota), Some(fits)) => format!(
            "{} of {} used, {}",
            human_bytes(quota.used_bytes),
            human_bytes(quota.limit_bytes),
            if fits { "fits" } else { "DOES NOT FIT" }
        ),
        _ => "no quota".to_string(),
    }
}
