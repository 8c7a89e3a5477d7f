//! `flytt directory …`: the directories of staged migrations (LDAP or a
//! command hook), named by endpoints (`flytt endpoint set E --directory D`).

use crate::home::Home;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use flytt_control::directories::DirectoryView;
use flytt_directory::Directory;
use flytt_directory::hook::HookSettings;
use flytt_directory::ldap::LdapSettings;
use flytt_secrets::SecretString;

use crate::account::read_password_file;

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Add a directory: LDAP (--ldap-url …) or a command hook (--hook PROGRAM).
    New(Box<NewArgs>),
    /// Change an LDAP directory's settings (what is not given stays).
    Set(Box<SetArgs>),
    /// Bind and read the base; with --user, look that address up.
    Test(TestArgs),
    List(JsonArg),
    Show(NameJsonArgs),
    Remove(NameArg),
}

#[derive(Args)]
pub struct NewArgs {
    name: String,
    /// ldap://HOST[:PORT] (StartTLS) or ldaps://HOST[:PORT].
    #[arg(long, conflicts_with = "hook")]
    ldap_url: Option<String>,
    #[arg(long, requires = "ldap_url")]
    bind_dn: Option<String>,
    #[arg(long, requires = "ldap_url")]
    bind_password_file: Option<PathBuf>,
    /// Where users are searched.
    #[arg(long, requires = "ldap_url")]
    base_dn: Option<String>,
    /// How to find a user; {email} stands for the address.
    #[arg(long, default_value = "(mail={email})")]
    user_filter: String,
    /// The attribute that says "has a mailbox here", and its two values.
    #[arg(long, default_value = "mailboxEnabled")]
    mailbox_attribute: String,
    #[arg(long, default_value = "TRUE")]
    mailbox_value: String,
    #[arg(long, default_value = "FALSE")]
    no_mailbox_value: String,
    /// The attribute that says "must change the password at next login" (empty: none).
    #[arg(long, default_value = "mustChangePassword")]
    must_change_attribute: String,
    /// The attribute that holds the forwarding address (the seed's TargetAddress).
    #[arg(long, default_value = "mailForwardingAddress")]
    forwarding_attribute: String,
    /// Go on without TLS when an ldap:// server offers no StartTLS.
    #[arg(long)]
    allow_plaintext: bool,
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// An executable called per operation with JSON on stdin and stdout.
    #[arg(long)]
    hook: Option<PathBuf>,
}

#[derive(Args)]
pub struct SetArgs {
    name: String,
    #[arg(long)]
    ldap_url: Option<String>,
    #[arg(long)]
    bind_dn: Option<String>,
    /// A file holding the new bind password (sealed; the old one goes).
    #[arg(long)]
    bind_password_file: Option<PathBuf>,
    #[arg(long)]
    base_dn: Option<String>,
    #[arg(long)]
    user_filter: Option<String>,
    #[arg(long)]
    mailbox_attribute: Option<String>,
    #[arg(long)]
    mailbox_value: Option<String>,
    #[arg(long)]
    no_mailbox_value: Option<String>,
    #[arg(long)]
    must_change_attribute: Option<String>,
    #[arg(long)]
    forwarding_attribute: Option<String>,
    #[arg(long)]
    allow_plaintext: Option<bool>,
    /// The CA file (empty: the usual roots only).
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

impl SetArgs {
    /// The flags given, as settings to lay over the stored ones.
    fn changes(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut changes = serde_json::Map::new();
        for (key, value) in [
            ("url", &self.ldap_url),
            ("bind_dn", &self.bind_dn),
            ("base_dn", &self.base_dn),
            ("user_filter", &self.user_filter),
            ("mailbox_attribute", &self.mailbox_attribute),
            ("mailbox_value", &self.mailbox_value),
            ("no_mailbox_value", &self.no_mailbox_value),
            ("must_change_attribute", &self.must_change_attribute),
            ("forwarding_attribute", &self.forwarding_attribute),
        ] {
            if let Some(value) = value {
                changes.insert(key.into(), value.clone().into());
            }
        }
        if let Some(allow) = self.allow_plaintext {
            changes.insert("allow_plaintext".into(), allow.into());
        }
        if let Some(ca) = &self.ca_file {
            let files: Vec<serde_json::Value> = if ca.as_os_str().is_empty() {
                Vec::new()
            } else {
                vec![ca.display().to_string().into()]
            };
            changes.insert("ca_files".into(), files.into());
        }
        changes
    }
}

#[derive(Args)]
pub struct TestArgs {
    name: String,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct JsonArg {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NameJsonArgs {
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NameArg {
    name: String,
}

pub async fn run(command: DirectoryCommand, home: &Home) -> Result<u8> {
    let control = home.control().await?;
    match command {
        DirectoryCommand::New(args) => {
            let (directory, password) = settings(args.name.clone(), &args)?;
            control
                .create_directory(&args.name, &directory, password.as_ref())
                .await?;
            println!("Directory {} created.", args.name);
        }
        DirectoryCommand::Set(args) => {
            let password = match &args.bind_password_file {
                Some(file) => Some(SecretString::new(read_password_file(file)?.expose())),
                None => None,
            };
            let changes = args.changes();
            if changes.is_empty() && password.is_none() {
                bail!("nothing to change: give at least one setting");
            }
            control
                .change_directory(&args.name, changes, password.as_ref())
                .await?;
            println!("Directory {} changed.", args.name);
        }
        DirectoryCommand::Test(args) => {
            let test = control
                .test_directory(&args.name, args.user.as_deref())
                .await?;
            if args.json {
                println!("{}", serde_json::to_string(&test)?);
            }
            if let Some(error) = &test.error {
                eprintln!("error: {error}");
                return Ok(crate::EXIT_FAILED);
            }
            if !args.json {
                println!("{}: {}", args.name, test.checked.as_deref().unwrap_or("ok"));
                if let Some(email) = &args.user {
                    match &test.user {
                        Some(user) => println!(
                            "{email}: {} ({}), forwarding {}",
                            user.id,
                            match user.state {
                                flytt_directory::UserState::MailUser => "a mail user",
                                flytt_directory::UserState::Mailbox => "a mailbox",
                            },
                            if user.forwarding.is_empty() {
                                "none".to_string()
                            } else {
                                user.forwarding.join(", ")
                            }
                        ),
                        None => println!("{email}: not in the directory"),
                    }
                }
            }
        }
        DirectoryCommand::List(args) => {
            let views: Vec<_> = control
                .store()
                .directories()
                .await?
                .iter()
                .map(DirectoryView::new)
                .collect();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!("No directories.");
            } else {
                for view in views {
                    println!(
                        "{:<20} {}",
                        view.name,
                        view.settings["kind"].as_str().unwrap_or("")
                    );
                }
            }
        }
        DirectoryCommand::Show(args) => {
            let view = DirectoryView::new(&control.store().directory(&args.name).await?);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&view.settings)?);
                println!("bind password set: {}", view.bind_password_set);
            }
        }
        DirectoryCommand::Remove(args) => {
            control.store().remove_directory(&args.name).await?;
            println!("Directory {} removed.", args.name);
        }
    }
    Ok(0)
}

/// The directory's settings from the flags, and its bind password.
fn settings(name: String, args: &NewArgs) -> Result<(Directory, Option<SecretString>)> {
    if let Some(program) = &args.hook {
        return Ok((
            Directory::Hook(HookSettings {
                name,
                program: program.clone(),
                timeout_secs: 30,
            }),
            None,
        ));
    }
    let (Some(url), Some(bind_dn), Some(base_dn)) = (&args.ldap_url, &args.bind_dn, &args.base_dn)
    else {
        bail!(
            "give --ldap-url, --bind-dn and --base-dn (with --bind-password-file), or --hook PROGRAM"
        );
    };
    if !args.user_filter.contains("{email}") {
        bail!("--user-filter must contain {{email}}");
    }
    let mut settings = LdapSettings::new(&name, url, bind_dn, base_dn);
    settings.user_filter = args.user_filter.clone();
    settings.mailbox_attribute = args.mailbox_attribute.clone();
    settings.mailbox_value = args.mailbox_value.clone();
    settings.no_mailbox_value = args.no_mailbox_value.clone();
    settings.must_change_attribute = args.must_change_attribute.clone();
    settings.forwarding_attribute = args.forwarding_attribute.clone();
    settings.allow_plaintext = args.allow_plaintext;
    settings.ca_files = args.ca_file.iter().cloned().collect();
    let password = match &args.bind_password_file {
        Some(file) => Some(SecretString::new(read_password_file(file)?.expose())),
        None => None,
    };
    Ok((Directory::Ldap(Box::new(settings)), password))
}
