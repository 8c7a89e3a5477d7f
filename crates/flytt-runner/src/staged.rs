//! The steps a staged batch takes before the copies (SPEC §1.1, step 3):
//! the target's directory makes each user a mailbox with the CSV's
//! Password and ForceChangePassword, and the source's directory forwards
//! mail still arriving there to `user@TargetDeliveryDomain`, so that users
//! can use their new mailboxes at once. This runs for every user of a
//! started batch, outside the endpoints' migration limits (it is a few
//! directory operations, no mailbox access); a user is then "validated",
//! and its initial sync waits its turn like any other. The status mail
//! goes out when every user is validated or failed.
//!
//! An endpoint without a directory skips its step (its mailboxes are made,
//! or its forwarding set, by other means); the event log says so.

use std::collections::HashMap;

use flytt_batch::{
    BatchParameters, BatchStatus, BatchType, Forwarding, SieveStatistics, UserOverrides,
};
use flytt_control::endpoints::sieve_server;
use flytt_directory::UserState;
use flytt_secrets::Keyring;
use flytt_sieve::{install_forward, migrate_scripts};
use flytt_store::{BatchState, Startable, Store, WorkItem, event_kind};

use crate::{Kind, RunnerError};

/// How many users one pass prepares, so that the runner's loop keeps
/// ticking (the rest follow on the next ticks).
const PER_PASS: u32 = 50;

/// Starts the preparation of the queued users of started staged batches
/// that are not prepared yet, each as a task of its own with a deadline
/// (a slow directory never holds up the runner's loop); a failure fails
/// that user alone, with the reason. Each user is leased while it is
/// prepared, like a sync: two runners never prepare the same user, and
/// preparations count against the endpoints' MaxConcurrentMigrations (they
/// use the same servers' directories and ManageSieve), whichever runner
/// does them.
pub(crate) async fn prepare(
    runner: &crate::RunnerContext<'_>,
    batches: &[BatchState],
    running: &mut HashMap<i64, crate::Running>,
    tasks: &mut tokio::task::JoinSet<i64>,
) -> Result<(), RunnerError> {
    for batch in batches {
        if batch.status != BatchStatus::Syncing || batch.batch_type != BatchType::Staged {
            continue;
        }
        let waiting = runner
            .store
            .startable_users(&batch.name, Startable::Preparation, PER_PASS)
            .await?;
        for item in waiting {
            if running.contains_key(&item.user_id) {
                continue;
            }
            // No slot, or another runner was first: the rest wait for the
            // next tick.
            if !crate::start(runner, running, tasks, item, Kind::Preparation).await? {
                break;
            }
        }
    }
    Ok(())
}

/// One user's preparation: the target directory checked (the seed's first
/// check: it answers and holds the base), the mailbox made, the Sieve
/// scripts copied (what was copied returned, for the statistics),
/// forwarding set.
pub(crate) async fn prepare_user(
    store: &Store,
    keyring: &Keyring,
    item: &WorkItem,
    parameters: &BatchParameters,
) -> Result<Option<SieveStatistics>, String> {
    let overrides = &item.overrides;
    if let Some(name) = &item.target.directory {
        let verified = match flytt_control::directories::open_directory(store, keyring, name).await
        {
            Ok(directory) => directory
                .verify()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = verified {
            return Err(format!("the target directory cannot be verified: {reason}"));
        }
    }
    provision(item, overrides, keyring, store).await?;
    let scripts = copy_scripts(item, keyring, store).await?;
    forward(item, parameters, keyring, store).await?;
    Ok(scripts)
}

async fn note(store: &Store, item: &WorkItem, text: &str) {
    if let Err(e) = store
        .record_event(&item.batch, Some(&item.email), event_kind::NOTE, text)
        .await
    {
        tracing::warn!(error = %e, "cannot record an event");
    }
}

/// Makes the user a mailbox in the target's directory. A user missing
/// from the directory fails alone; one that is a mailbox already (a retry)
/// gets its password and mark again.
async fn provision(
    item: &WorkItem,
    overrides: &UserOverrides,
    keyring: &Keyring,
    store: &Store,
) -> Result<(), String> {
    let Some(name) = &item.target.directory else {
        note(
            store,
            item,
            &format!(
                "not provisioned: target endpoint {} has no directory",
                item.target.name
            ),
        )
        .await;
        return Ok(());
    };
    let directory = flytt_control::directories::open_directory(store, keyring, name)
        .await
        .map_err(|e| e.to_string())?;
    // No Password (the seed makes it optional): the mailbox is made
    // without setting one, as for a resource mailbox.
    let password = item
        .password_sealed
        .as_ref()
        .map(|sealed| {
            keyring.open(
                sealed,
                &format!("batch/{}/user/{}/Password", item.batch, item.email),
            )
        })
        .transpose()
        .map_err(|e| format!("the stored Password: {e}"))?;
    let user = directory
        .lookup(&item.email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "not in the target directory {name}: a staged batch needs each user there as a mail user"
            )
        })?;
    let force_change = overrides.force_change_password.unwrap_or(false);
    directory
        .make_mailbox(&item.email, password.as_ref(), force_change)
        .await
        .map_err(|e| e.to_string())?;
    let was = match user.state {
        UserState::MailUser => "mail user",
        UserState::Mailbox => "mailbox already",
    };
    note(
        store,
        item,
        &format!(
            "provisioned in directory {name} (was a {was}; {})",
            match password {
                Some(_) => format!("must change password: {force_change}"),
                None => "no Password in the CSV: its password left as it was".to_string(),
            }
        ),
    )
    .await;
    Ok(())
}

/// Sets forwarding on the source to `user@TargetDeliveryDomain`: in the
/// source's directory, with a Sieve redirect over ManageSieve, or both, as
/// the batch says. Without a TargetDeliveryDomain there is nowhere to
/// forward to (the address itself would loop while MX points at the source).
pub(crate) async fn forward(
    item: &WorkItem,
    parameters: &BatchParameters,
    keyring: &Keyring,
    store: &Store,
) -> Result<(), String> {
    let Some(domain) = &parameters.target_delivery_domain else {
        note(
            store,
            item,
            "no forwarding set: the batch has no TargetDeliveryDomain",
        )
        .await;
        return Ok(());
    };
    let local = item
        .email
        .rsplit_once('@')
        .map_or(item.email.as_str(), |(local, _)| local);
    let address = format!("{local}@{domain}");
    let has_directory = item.source.directory.is_some();
    let has_sieve = item.source.sieve_url.is_some();
    let (by_directory, by_sieve) = match parameters.forwarding {
        Forwarding::Auto => (has_directory, !has_directory && has_sieve),
        Forwarding::Directory => (true, false),
        Forwarding::Sieve => (false, true),
        Forwarding::Both => (true, true),
    };
    if !by_directory && !by_sieve {
        note(
            store,
            item,
            "no forwarding set: the source endpoint has neither a directory nor ManageSieve",
        )
        .await;
        return Ok(());
    }
    if by_directory {
        let Some(name) = &item.source.directory else {
            return Err(format!(
                "forwarding: source endpoint {} has no directory",
                item.source.name
            ));
        };
        let directory = flytt_control::directories::open_directory(store, keyring, name)
            .await
            .map_err(|e| e.to_string())?;
        directory
            .set_forwarding(&item.email, &address)
            .await
            .map_err(|e| format!("forwarding to {address}: {e}"))?;
        note(
            store,
            item,
            &format!("forwarding to {address} set in directory {name}"),
        )
        .await;
    }
    if by_sieve {
        let server = sieve_server(&item.source)?.ok_or_else(|| {
            format!(
                "forwarding: source endpoint {} has no ManageSieve",
                item.source.name
            )
        })?;
        let source = crate::source_account(item, keyring)?;
        let auth = crate::sieve_auth(&source.auth)
            .ok_or("forwarding: OAuth logins cannot open ManageSieve")?;
        let before = install_forward(&server, &auth, &address)
            .await
            .map_err(|e| format!("forwarding to {address} with Sieve: {e}"))?;
        let replaced = before
            .map(|b| format!(" (it replaces the active script {b:?})"))
            .unwrap_or_default();
        note(
            store,
            item,
            &format!("forwarding to {address} set with a Sieve redirect on the source{replaced}"),
        )
        .await;
    }
    Ok(())
}

/// Copies the user's Sieve scripts before forwarding replaces the
/// source's active one (a staged user's scripts move at provisioning).
async fn copy_scripts(
    item: &WorkItem,
    keyring: &Keyring,
    store: &Store,
) -> Result<Option<SieveStatistics>, String> {
    let (Some(from), Some(to)) = (sieve_server(&item.source)?, sieve_server(&item.target)?) else {
        return Ok(None);
    };
    let source = crate::source_account(item, keyring)?;
    let target = crate::target_account(item, keyring)?;
    let (Some(source_auth), Some(target_auth)) = (
        crate::sieve_auth(&source.auth),
        crate::sieve_auth(&target.auth),
    ) else {
        note(
            store,
            item,
            "Sieve scripts not copied: OAuth logins cannot open ManageSieve",
        )
        .await;
        return Ok(None);
    };
    let report = migrate_scripts((&from, &source_auth), (&to, &target_auth))
        .await
        .map_err(|e| format!("copying the Sieve scripts: {e}"))?;
    let mut text = format!("{} Sieve scripts copied", report.copied.len());
    if let Some(active) = &report.active {
        text.push_str(&format!(", {active:?} active"));
    }
    for issue in &report.issues {
        text.push_str(&format!("; {issue}"));
    }
    note(store, item, &text).await;
    Ok(Some(SieveStatistics {
        copied: report.copied,
        active: report.active,
    }))
}

/// After the final sync: the source mailbox becomes a mail user that keeps
/// only its forwarding (SPEC §1.1, step 6).
pub(crate) async fn convert_source(
    item: &WorkItem,
    keyring: &Keyring,
    store: &Store,
) -> Result<(), String> {
    let Some(name) = &item.source.directory else {
        return Err(format!(
            "the source mailbox cannot be converted: source endpoint {} has no directory",
            item.source.name
        ));
    };
    let directory = flytt_control::directories::open_directory(store, keyring, name)
        .await
        .map_err(|e| e.to_string())?;
    directory
        .make_mail_user(&item.email)
        .await
        .map_err(|e| format!("converting the source mailbox: {e}"))?;
    note(
        store,
        item,
        &format!("source mailbox converted to a mail user in directory {name}"),
    )
    .await;
    Ok(())
}
