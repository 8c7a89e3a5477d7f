//! What an administrator does with batches: create one from a CSV file, add
//! users, start, stop, complete, retry the failed users, remove; and how
//! batches, users and events are shown and reported.
//!
//! The CLI and the HTTP API both call this crate and nothing else to change
//! batches, so both apply the same rules (which status allows which action,
//! the same CSV validation) and give the same answers. The job runner then
//! acts on what is stored.

pub mod directories;
pub mod endpoints;
pub mod reports;
pub mod users;
pub mod views;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flytt_batch::{
    BatchAction, BatchParameters, BatchStatus, BatchType, CsvError, CsvUser, Parameter, Password,
    UserOverrides, UserStatus, parse_users,
};
use flytt_secrets::{Keyring, SecretString};
use flytt_store::{NewBatch, NewBatchUser, Store};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] flytt_store::Error),
    #[error(
        "the stored passwords are sealed with key {stored}, but this machine's key is {here}: \
         every machine of an installation needs the same key (FLYTT_SECRET_KEY, or the same \
         secret.key in its data directory)"
    )]
    OtherKey { stored: String, here: String },
    #[error("secrets: {0}")]
    Secrets(#[from] flytt_secrets::Error),
    #[error("the CSV file has {}", problems(.0.len()))]
    InvalidCsv(Vec<CsvError>),
    #[error("{0}")]
    InvalidParameter(String),
    #[error(transparent)]
    Parameter(#[from] flytt_batch::ParameterError),
    #[error("batch {batch} is {status}; its {parameter} cannot change now")]
    ParameterLocked {
        batch: String,
        status: BatchStatus,
        parameter: flytt_batch::Parameter,
    },
    #[error("batch {batch} is {status}; it cannot be {action}")]
    WrongState {
        batch: String,
        status: BatchStatus,
        action: &'static str,
    },
    #[error("user {email} is {status}; it cannot be {action}")]
    UserWrongState {
        email: String,
        status: UserStatus,
        action: &'static str,
    },
    #[error("cannot write the report: {0}")]
    Report(String),
    #[error(
        "an analysis of batch {0} is running; see its results as they come (batch analyze {0} --last)"
    )]
    AnalysisRunning(String),
}

pub type Result<T> = std::result::Result<T, ControlError>;

/// "1 problem", "3 problems".
pub fn problems(count: usize) -> String {
    if count == 1 {
        "1 problem".to_string()
    } else {
        format!("{count} problems")
    }
}

/// A new batch, apart from its CSV file.
#[derive(Clone, Debug)]
pub struct BatchRequest {
    pub name: String,
    pub batch_type: BatchType,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub parameters: BatchParameters,
}

/// The data directory's key (or `FLYTT_SECRET_KEY`), once it is known to
/// be the key the store's secrets are sealed with. Machines sharing a
/// database with different keys would each seal what the others cannot
/// open, and fail every user they pick: they are stopped here instead.
pub async fn keyring(store: &Store, data_dir: &Path) -> Result<Keyring> {
    let sealed = store.some_sealed_secret().await?;
    let sealed_with = sealed.as_deref().and_then(Keyring::sealed_with);
    let keyring = Keyring::load_for(data_dir, sealed_with)?;
    if let Some(stored) = sealed_with
        && stored != keyring.id()
    {
        return Err(ControlError::OtherKey {
            stored: stored.to_string(),
            here: keyring.id().to_string(),
        });
    }
    Ok(keyring)
}

/// The administrator's operations over one store.
#[derive(Clone, Debug)]
pub struct Control {
    store: Store,
    data_dir: PathBuf,
}

impl Control {
    /// `data_dir` holds the secret key (created on first use) that seals
    /// the CSV's passwords.
    pub fn new(store: Store, data_dir: &Path) -> Control {
        Control {
            store,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks a CSV file for a batch of this type, knowing which users are
    /// already in an active batch: the users, or every problem found.
    pub async fn validate_csv(&self, csv: &[u8], batch_type: BatchType) -> Result<Vec<CsvUser>> {
        // The CSV check asks synchronously; collect the active users first.
        let active: HashMap<String, String> = self
            .store
            .active_users()
            .await?
            .into_iter()
            .map(|(email, batch)| (email.to_lowercase(), batch))
            .collect();
        parse_users(csv, batch_type, &|email| {
            active.get(&email.to_lowercase()).cloned()
        })
        .map_err(ControlError::InvalidCsv)
    }

    /// Validates everything, seals the passwords, and stores the batch with
    /// its users in one transaction (status Created). Returns the number of
    /// users.
    pub async fn create_batch(&self, request: BatchRequest, csv: &[u8]) -> Result<usize> {
        check_name(&request.name)?;
        check_parameters(&request.parameters)?;
        request.parameters.check_fits(request.batch_type)?;
        if request.source_endpoint == request.target_endpoint {
            return Err(ControlError::InvalidParameter(format!(
                "the source and the target endpoint are both {:?}: a batch moves mailboxes from one server to another",
                request.source_endpoint
            )));
        }
        for endpoint in [&request.source_endpoint, &request.target_endpoint] {
            self.store.endpoint(endpoint).await?;
        }
        if self.store.batch(&request.name).await.is_ok() {
            return Err(flytt_store::Error::BatchExists(request.name).into());
        }
        let users = self.validate_csv(csv, request.batch_type).await?;
        self.check_refresh_tokens(&request.source_endpoint, &users)
            .await?;
        let sealed = self.seal_users(&request.name, &users).await?;
        self.store
            .create_batch(&NewBatch {
                name: request.name,
                batch_type: request.batch_type,
                source_endpoint: request.source_endpoint,
                target_endpoint: request.target_endpoint,
                parameters: request.parameters,
                users: sealed,
            })
            .await?;
        Ok(users.len())
    }

    /// More users for an existing batch, validated like the first ones. A
    /// batch that had finished its initial syncs syncs again.
    pub async fn add_users(&self, name: &str, csv: &[u8]) -> Result<usize> {
        let batch = self.store.batch(name).await?;
        let next = allowed(&batch, BatchAction::AddUsers)?;
        let users = self.validate_csv(csv, batch.batch_type).await?;
        self.check_refresh_tokens(&batch.source_endpoint, &users)
            .await?;
        let sealed = self.seal_users(name, &users).await?;
        self.store.add_batch_users(name, &sealed).await?;
        self.store.set_batch_status(name, next).await?;
        Ok(users.len())
    }

    /// Starts (or resumes) a batch; its failed users are queued again.
    /// Returns how many were.
    pub async fn start(&self, name: &str) -> Result<u64> {
        let batch = self.store.batch(name).await?;
        let next = allowed(&batch, BatchAction::Start)?;
        let retried = self
            .store
            .move_users(name, UserStatus::Failed, UserStatus::Queued)
            .await?;
        self.store.set_batch_status(name, next).await?;
        Ok(retried)
    }

    /// Stops a batch: no new sync starts, and those under way end at their
    /// next safe point (after the chunk they are copying is confirmed and
    /// recorded); the batch is Stopping until they have, then Stopped.
    /// Returns the status it has now.
    pub async fn stop(&self, name: &str) -> Result<BatchStatus> {
        let batch = self.store.batch(name).await?;
        let next = self
            .unless_idle(name, allowed(&batch, BatchAction::Stop)?)
            .await?;
        self.store.set_batch_status(name, next).await?;
        Ok(next)
    }

    /// `status` (Stopping, Removing), or where it leads at once when none
    /// of the batch's users is running.
    async fn unless_idle(&self, name: &str, status: BatchStatus) -> Result<BatchStatus> {
        Ok(if self.store.users_running(name).await? == 0 {
            status.when_idle()
        } else {
            status
        })
    }

    /// Completes a batch: a last incremental sync per user, then Completed.
    pub async fn complete(&self, name: &str) -> Result<()> {
        let batch = self.store.batch(name).await?;
        let next = allowed(&batch, BatchAction::Complete)?;
        self.store.set_batch_status(name, next).await?;
        Ok(())
    }

    /// Queues the failed users of a batch again. In a batch that had
    /// finished its initial syncs they get one now; in a completed batch,
    /// the final sync. Returns how many were queued.
    pub async fn retry_failed(&self, name: &str) -> Result<u64> {
        let batch = self.store.batch(name).await?;
        let next = allowed(&batch, BatchAction::Retry)?;
        let retried = self
            .store
            .move_users(name, UserStatus::Failed, UserStatus::Queued)
            .await?;
        if retried > 0 {
            self.store.set_batch_status(name, next).await?;
        }
        Ok(retried)
    }

    /// What is wrong with `name` for a new batch (its form checks it as
    /// the administrator types): against the naming rule, or taken.
    pub async fn batch_name_problem(&self, name: &str) -> Result<Option<String>> {
        if let Err(e) = check_name(name) {
            return Ok(Some(e.to_string()));
        }
        match self.store.batch(name).await {
            Ok(_) => Ok(Some(format!("a batch named {name:?} exists already"))),
            Err(flytt_store::Error::NoSuchBatch(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `batch set`: changes parameters, each from its text by the one
    /// parser, all or none, where the batch's status allows
    /// (`Parameter::may_change`). Syncs that start after use them.
    /// Returns the parameters now.
    pub async fn change_parameters(
        &self,
        name: &str,
        changes: &[(Parameter, String)],
    ) -> Result<BatchParameters> {
        let batch = self.store.batch(name).await?;
        if changes.is_empty() {
            return Err(ControlError::InvalidParameter(
                "nothing to change: give at least one parameter".into(),
            ));
        }
        let mut parameters = batch.parameters.clone();
        for (parameter, text) in changes {
            if !parameter.may_change(batch.status) {
                return Err(ControlError::ParameterLocked {
                    batch: batch.name.clone(),
                    status: batch.status,
                    parameter: *parameter,
                });
            }
            parameters.set(*parameter, text)?;
            parameters.check_fit(*parameter, batch.batch_type)?;
        }
        let names: Vec<&str> = changes.iter().map(|(p, _)| p.name()).collect();
        self.store
            .set_batch_parameters(name, &parameters, &names.join(", "))
            .await?;
        Ok(parameters)
    }

    /// Asks for an analysis of a batch (any status: it changes nothing);
    /// a runner (`flytt serve`, `flytt worker`) does it. The last one's
    /// results are cleared.
    pub async fn request_analysis(&self, name: &str) -> Result<()> {
        if self.store.request_analysis(name).await? {
            Ok(())
        } else {
            Err(ControlError::AnalysisRunning(name.to_string()))
        }
    }

    /// The batch's last analysis, as far as it got; `None` if none was
    /// asked for.
    pub async fn analysis(&self, name: &str) -> Result<Option<flytt_batch::BatchAnalysis>> {
        Ok(self.store.analysis(name).await?)
    }

    /// Removes a batch, its users and their sealed passwords; mail on the
    /// servers is never touched. With syncs running the batch is Removing
    /// until they have stopped at a safe point; a runner then removes it.
    /// Returns whether it is gone already.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let batch = self.store.batch(name).await?;
        let next = allowed(&batch, BatchAction::Remove)?;
        if self.store.users_running(name).await? == 0 {
            self.store.remove_batch(name).await?;
            return Ok(true);
        }
        self.store.set_batch_status(name, next).await?;
        Ok(false)
    }

    /// A RefreshToken in the CSV is the source's: its endpoint must have
    /// an OAuth client to use it with.
    async fn check_refresh_tokens(&self, source: &str, users: &[CsvUser]) -> Result<()> {
        let with_token = users.iter().find(|u| u.refresh_token.is_some());
        if let Some(user) = with_token
            && self.store.endpoint(source).await?.oauth.is_none()
        {
            return Err(ControlError::InvalidParameter(format!(
                "line {}: a RefreshToken needs an OAuth client on the source endpoint {source} (endpoint set {source} --oauth-token-url ...)",
                user.line
            )));
        }
        Ok(())
    }

    /// The users as stored: passwords sealed, bound to batch, user and column.
    async fn seal_users(&self, batch: &str, users: &[CsvUser]) -> Result<Vec<NewBatchUser>> {
        let keyring = keyring(&self.store, &self.data_dir).await?;
        let seal = |user: &CsvUser, column: &str, value: Option<&Password>| {
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
                    overrides: UserOverrides::from(user),
                    user_name: user.user_name.clone(),
                    password_sealed: seal(user, "Password", user.password.as_ref())?,
                    target_user_name: user.target_user_name.clone(),
                    target_password_sealed: seal(
                        user,
                        "TargetPassword",
                        user.target_password.as_ref(),
                    )?,
                    refresh_token_sealed: seal(user, "RefreshToken", user.refresh_token.as_ref())?,
                })
            })
            .collect()
    }
}

/// The batch's status after `action`, or why the action is refused in its
/// status (`BatchStatus::after` is the table).
fn allowed(batch: &flytt_store::BatchSummary, action: BatchAction) -> Result<BatchStatus> {
    batch
        .status
        .after(action)
        .ok_or_else(|| ControlError::WrongState {
            batch: batch.name.clone(),
            status: batch.status,
            action: action.done(),
        })
}

/// Batch names appear in file names, URLs and the secrets' bindings: keep
/// them to what reads well in all three.
fn check_name(name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
        && !name.starts_with(['.', ' '])
        && !name.ends_with(' ')
        // The dashboard's page for a new batch is /batches/new.
        && !name.eq_ignore_ascii_case("new");
    if fine {
        Ok(())
    } else {
        Err(ControlError::InvalidParameter(format!(
            "batch name {name:?}: use 1 to 64 letters, digits, spaces, '-', '_' or '.', not starting with '.' or a space (and not \"new\")"
        )))
    }
}

fn check_parameters(parameters: &BatchParameters) -> Result<()> {
    Ok(parameters.check()?)
}
