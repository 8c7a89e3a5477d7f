//! `flytt token new|list|remove`: bearer tokens for the HTTP API. A new
//! token is printed once; only its hash is stored.

use crate::home::Home;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (once: it is not stored, only its hash).
    New(NewArgs),
    /// List the tokens by name, with when each was made and last used.
    List,
    /// Remove a token: requests carrying it are refused from now on.
    Remove(NameArg),
}

#[derive(Args)]
pub struct NewArgs {
    /// What the token is for (default: token-N).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args)]
pub struct NameArg {
    name: String,
}

pub async fn run(command: TokenCommand, home: &Home) -> Result<u8> {
    let store = home.store().await?;
    match command {
        TokenCommand::New(args) => {
            let name = match args.name {
                Some(name) => name,
                None => format!("token-{}", store.tokens().await?.len() + 1),
            };
            let token = flytt_api::tokens::generate()
                .map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
            store
                .create_token(&name, &flytt_api::tokens::hash(&token))
                .await?;
            eprintln!("Token {name} (shown once; keep it like a password):");
            println!("{token}");
        }
        TokenCommand::List => {
            for token in store.tokens().await? {
                println!(
                    "{:<24} made {}  last used {}",
                    token.name,
                    token.created_at,
                    token.last_used_at.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::Remove(args) => {
            store.remove_token(&args.name).await?;
            println!("Token {} removed.", args.name);
        }
    }
    Ok(0)
}
