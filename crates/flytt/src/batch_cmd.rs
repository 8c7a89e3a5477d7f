//! `flytt batch …`. For now: `validate`, which checks a CSV file exactly as
//! `batch new` will, without creating anything.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flytt_batch::{BatchType, parse_users};

#[derive(Subcommand)]
pub enum BatchCommand {
    /// Check a CSV file for a batch: every problem, with its line number.
    Validate(ValidateArgs),
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

pub fn run(command: BatchCommand, _data_dir: &Path) -> Result<u8> {
    match command {
        BatchCommand::Validate(args) => validate(&args),
    }
}

fn validate(args: &ValidateArgs) -> Result<u8> {
    let bytes =
        std::fs::read(&args.csv).with_context(|| format!("cannot read {}", args.csv.display()))?;
    let batch_type = BatchType::from(args.batch_type);
    // No batches exist yet in this version, so no user is in another one.
    let result = parse_users(&bytes, batch_type, &|_| None);
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
