//! Notification mails (SPEC §1.1): to a batch's NotificationEmails, the
//! status mail once every user has started (how many migrate, who failed
//! and why), the report when the initial sync of every user is done (the
//! batch report attached), and the completion report.
//!
//! Mails are rendered from templates an administrator can read and adjust
//! (`templates/*.txt` here are the defaults; a directory in the config
//! overrides them file by file) and sent over SMTP with lettre. Each mail
//! is claimed in the store before it is sent, so it goes out once even with
//! several `flytt serve` processes; a failed send is tried again later.

mod config;
mod render;

use std::future::Future;
use std::time::Duration;

use flytt_batch::BatchStatus;
use flytt_control::reports;
use flytt_control::views::BatchView;
use flytt_store::{BatchMail, Store};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub use config::{ConfigError, SmtpConfig};
pub use render::{Rendered, Templates};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] flytt_store::Error),
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("cannot build the mail: {0}")]
    Build(String),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Sends a batch's mails through one SMTP relay.
pub struct Notifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    dashboard_url: String,
    templates: Templates,
}

impl Notifier {
    pub fn new(config: &SmtpConfig) -> Result<Notifier, NotifyError> {
        Ok(Notifier {
            transport: config.transport()?,
            from: config.from()?,
            dashboard_url: config.dashboard_url.trim_end_matches('/').to_string(),
            templates: Templates::load(config.templates.as_deref())?,
        })
    }

    /// Sends every mail that is due, in order; returns how many went out.
    pub async fn send_due(&self, store: &Store) -> Result<usize, NotifyError> {
        let mut sent = 0;
        for batch in store.batches().await? {
            let parameters = &batch.parameters;
            if parameters.notification_emails.is_empty() {
                continue;
            }
            let view = BatchView::new(&batch);
            let mails: Vec<BatchMail> = due(&view, batch.users_not_validated)
                .into_iter()
                .filter(|mail| !batch.mails_claimed.contains(mail))
                .collect();
            if mails.is_empty() {
                continue;
            }
            // The mails list and attach the users: read them only now.
            let users = store.batch_users(Some(&batch.name)).await?;
            for mail in mails {
                if !store.claim_mail(&batch.name, mail).await? {
                    continue;
                }
                let outcome = self
                    .send(mail, &view, &users, &parameters.notification_emails)
                    .await;
                match outcome {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        store.release_mail(&batch.name, mail).await?;
                        return Err(e);
                    }
                }
            }
        }
        Ok(sent)
    }

    async fn send(
        &self,
        mail: BatchMail,
        batch: &BatchView,
        users: &[flytt_store::BatchUser],
        recipients: &[String],
    ) -> Result<(), NotifyError> {
        let rendered = self
            .templates
            .render(mail, batch, users, &self.dashboard_url)?;
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(rendered.subject);
        for recipient in recipients {
            let mailbox: Mailbox = recipient
                .parse()
                .map_err(|e| NotifyError::Build(format!("{recipient:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let text = SinglePart::plain(rendered.body);
        let message = if mail == BatchMail::Status {
            builder.singlepart(text)
        } else {
            let report =
                reports::users_report(users).map_err(|e| NotifyError::Build(e.to_string()))?;
            let name = format!("{}-users.csv", reports::file_stem(&batch.name));
            let csv = ContentType::parse("text/csv; charset=utf-8")
                .map_err(|e| NotifyError::Build(e.to_string()))?;
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(text)
                    .singlepart(Attachment::new(name).body(report, csv)),
            )
        }
        .map_err(|e| NotifyError::Build(e.to_string()))?;
        self.transport.send(message).await?;
        tracing::info!(batch = %batch.name, ?mail, "notification mail sent");
        Ok(())
    }
}

/// The mails a batch is due, in the order they go out (those already sent
/// are skipped by their claim). The status mail waits until every user is
/// validated (logged in on both sides) or failed.
/// The mails a batch is due, sent or not: `not_validated` users are still
/// neither validated nor failed.
fn due(batch: &BatchView, not_validated: u64) -> Vec<BatchMail> {
    let mut mails = Vec::new();
    let everyone_started =
        batch.started_at.is_some() && batch.status != BatchStatus::Stopped && not_validated == 0;
    if everyone_started {
        mails.push(BatchMail::Status);
    }
    if batch.initial_sync_done_at.is_some() {
        mails.push(BatchMail::InitialSync);
    }
    if batch.completed_at.is_some() {
        mails.push(BatchMail::Completion);
    }
    mails
}

/// How often `run` looks for mails that are due.
const TICK: Duration = Duration::from_secs(1);

/// Sends due mails until `shutdown`; a failure (SMTP down) is logged and
/// tried again on a later tick, backing off to a minute.
pub async fn run(store: Store, notifier: Notifier, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut pause = TICK;
    loop {
        match notifier.send_due(&store).await {
            Ok(_) => pause = TICK,
            Err(e) => {
                tracing::warn!(error = %e, "notification mails not sent; trying again later");
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
