//! The mails' text, from templates: `Subject: …`, a blank line, the body.
//! The defaults are compiled in; a templates directory overrides any of
//! them by file name (`status.txt`, `initial-sync.txt`, `completion.txt`).

use std::path::Path;

use flytt_batch::UserStatus;
use flytt_control::views::BatchView;
use flytt_store::{BatchMail, BatchUser};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::NotifyError;

const DEFAULTS: [(&str, &str); 3] = [
    ("status.txt", include_str!("../templates/status.txt")),
    (
        "initial-sync.txt",
        include_str!("../templates/initial-sync.txt"),
    ),
    (
        "completion.txt",
        include_str!("../templates/completion.txt"),
    ),
];

fn file_name(mail: BatchMail) -> &'static str {
    match mail {
        BatchMail::Status => "status.txt",
        BatchMail::InitialSync => "initial-sync.txt",
        BatchMail::Completion => "completion.txt",
    }
}

pub struct Templates {
    environment: minijinja::Environment<'static>,
}

/// A rendered mail.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

impl Templates {
    /// The defaults, with the files of `dir` (if given) in their place.
    /// Every template is checked now, so a broken one stops `serve` at
    /// start rather than a mail later.
    pub fn load(dir: Option<&Path>) -> Result<Templates, NotifyError> {
        let mut environment = minijinja::Environment::new();
        // Plain-text mail: nothing to escape.
        environment.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        environment.set_keep_trailing_newline(true);
        for (name, default) in DEFAULTS {
            let text = match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(|e| NotifyError::Template {
                        name: path.display().to_string(),
                        message: e.to_string(),
                    })?
                }
                None => default.to_string(),
            };
            if !text.starts_with("Subject:") {
                return Err(NotifyError::Template {
                    name: name.into(),
                    message: "must start with a \"Subject:\" line".into(),
                });
            }
            environment
                .add_template_owned(name, text)
                .map_err(|e| NotifyError::Template {
                    name: name.into(),
                    message: e.to_string(),
                })?;
        }
        Ok(Templates { environment })
    }

    pub fn render(
        &self,
        mail: BatchMail,
        batch: &BatchView,
        users: &[BatchUser],
        dashboard_url: &str,
    ) -> Result<Rendered, NotifyError> {
        let name = file_name(mail);
        let failed: Vec<serde_json::Value> = users
            .iter()
            .filter(|u| u.status == UserStatus::Failed)
            .map(|u| serde_json::json!({"email": u.email, "error": u.error}))
            .collect();
        let encoded = utf8_percent_encode(&batch.name, NON_ALPHANUMERIC).to_string();
        let migrating = batch.users - batch.count(UserStatus::Failed);
        let context = minijinja::context! {
            batch => minijinja::Value::from_serialize(batch),
            failed => failed,
            migrating => migrating,
            synced => batch.count(UserStatus::Synced) + batch.count(UserStatus::Completed),
            completed => batch.count(UserStatus::Completed),
            megabytes => format!("{:.1}", batch.totals.bytes_copied as f64 / 1e6),
            links => minijinja::context! {
                batch => format!("{dashboard_url}/batches/{encoded}"),
                errors => format!("{dashboard_url}/batches/{encoded}/reports/errors.csv"),
                users => format!("{dashboard_url}/batches/{encoded}/reports/users.csv"),
            },
        };
        let text = self
            .environment
            .get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|e| NotifyError::Template {
                name: name.into(),
                message: e.to_string(),
            })?;
        let (head, body) = text.split_once('\n').unwrap_or((&text, ""));
        let subject = head.trim_start_matches("Subject:").trim().to_string();
        Ok(Rendered {
            subject,
            body: body.trim_start_matches(['\r', '\n']).to_string(),
        })
    }
}
