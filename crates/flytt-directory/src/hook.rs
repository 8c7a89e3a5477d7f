//! The command hook: for directories flytt cannot reach over LDAP, an
//! executable the administrator provides, called once per operation with
//! a JSON request on stdin and a JSON answer on stdout:
//!
//! ```text
//! → {"operation": "verify"}
//! → {"operation": "lookup", "email": "kari@example.org"}
//! → {"operation": "make_mailbox", "email": "…", "password": "…" (null: leave it as it is), "force_change_password": true}
//! → {"operation": "set_forwarding", "email": "…", "address": "kari@target.example"}
//! → {"operation": "make_mail_user", "email": "…"}
//! ← {"ok": true, "user": {"id": "…", "state": "mail_user" | "mailbox", "forwarding": […]}}
//!   (lookup; "user": null when the address is unknown)
//! ← {"ok": false, "error": "why"}
//! ```
//!
//! Passwords go on stdin, never in arguments or the environment, where
//! other local users could see them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use flytt_secrets::SecretString;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::{DirectoryError, DirectoryUser, Result};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HookSettings {
    pub name: String,
    pub program: PathBuf,
    /// How long one call may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    30
}

/// The environment variables a hook inherits; everything else is cleared.
const HOOK_ENVIRONMENT: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// What a hook wrote for people to read, as it may reach an error message
/// (`user show`, the API, the reports): without the request's secrets (a
/// hook that echoes its input must not leak a password), at most 500
/// characters.
fn redacted(text: &str, request: &serde_json::Value) -> String {
    fn secrets<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, value) in fields {
                    match value {
                        serde_json::Value::String(secret)
                            if name.contains("password") && !secret.is_empty() =>
                        {
                            out.push(secret)
                        }
                        other => secrets(other, out),
                    }
                }
            }
            serde_json::Value::Array(values) => values.iter().for_each(|v| secrets(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    secrets(request, &mut found);
    let mut text = text.trim().to_string();
    for secret in found {
        text = text.replace(secret, "***");
    }
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    user: Option<DirectoryUser>,
}

impl HookSettings {
    async fn call(&self, operation: &'static str, request: serde_json::Value) -> Result<Answer> {
        let unreachable = |detail: String| DirectoryError::Unreachable {
            directory: self.name.clone(),
            detail,
        };
        let mut command = tokio::process::Command::new(&self.program);
        // The hook gets what a program needs to run, and nothing of flytt's
        // own environment (FLYTT_SECRET_KEY, database URLs, tokens).
        command.env_clear();
        for (name, value) in std::env::vars_os() {
            if name
                .to_str()
                .is_some_and(|name| HOOK_ENVIRONMENT.contains(&name))
            {
                command.env(name, value);
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| unreachable(format!("cannot run {}: {e}", self.program.display())))?;
        let input = request.to_string();
        if let Some(mut stdin) = child.stdin.take() {
            // A hook may answer without reading its request (e.g. `verify`):
            // then the pipe is closed, and its answer still counts.
            match stdin.write_all(input.as_bytes()).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(unreachable(format!("writing to the hook: {e}")));
                }
                _ => {}
            }
        }
        let output = tokio::time::timeout(
            Duration::from_secs(self.timeout_secs),
            child.wait_with_output(),
        )
        .await
        .map_err(|_| {
            unreachable(format!(
                "{operation}: no answer within {} s",
                self.timeout_secs
            ))
        })?
        .map_err(|e| unreachable(format!("{operation}: {e}")))?;
        let answer: Answer = serde_json::from_slice(&output.stdout).map_err(|e| {
            unreachable(format!(
                "{operation}: the hook's answer is not the expected JSON ({e}); exit {}, stderr: {}",
                output.status,
                redacted(&String::from_utf8_lossy(&output.stderr), &request)
            ))
        })?;
        if !answer.ok {
            return Err(DirectoryError::Refused {
                directory: self.name.clone(),
                operation,
                detail: redacted(
                    answer.error.as_deref().unwrap_or("no reason given"),
                    &request,
                ),
            });
        }
        Ok(answer)
    }

    pub async fn verify(&self) -> Result<String> {
        self.call("verify", serde_json::json!({"operation": "verify"}))
            .await?;
        Ok(format!("the hook {} answered", self.program.display()))
    }

    pub async fn lookup(&self, email: &str) -> Result<Option<DirectoryUser>> {
        Ok(self
            .call(
                "lookup",
                serde_json::json!({"operation": "lookup", "email": email}),
            )
            .await?
            .user)
    }

    pub async fn make_mailbox(
        &self,
        email: &str,
        password: Option<&SecretString>,
        force_change: bool,
    ) -> Result<()> {
        self.call(
            "make_mailbox",
            serde_json::json!({"operation": "make_mailbox", "email": email,
                               "password": password.map(SecretString::expose),
                               "force_change_password": force_change}),
        )
        .await?;
        Ok(())
    }

    pub async fn set_forwarding(&self, email: &str, address: &str) -> Result<()> {
        self.call(
            "set_forwarding",
            serde_json::json!({"operation": "set_forwarding", "email": email, "address": address}),
        )
        .await?;
        Ok(())
    }

    pub async fn make_mail_user(&self, email: &str) -> Result<()> {
        self.call(
            "make_mail_user",
            serde_json::json!({"operation": "make_mail_user", "email": email}),
        )
        .await?;
        Ok(())
    }
}
