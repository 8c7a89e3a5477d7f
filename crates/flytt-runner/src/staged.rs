//! The steps a staged batch adds around a user's initial sync (SPEC §1.1):
//! before it, the target's directory makes the user a mailbox with the
//! CSV's Password and ForceChangePassword; after it, the source's directory
//! forwards mail still arriving there to `user@TargetDeliveryDomain`.
//!
//! An endpoint without a directory skips its step (its mailboxes are made,
//! or its forwarding set, by other means); the event log says so.

use flytt_batch::{BatchParameters, UserOverrides};
use flytt_directory::UserState;
use flytt_secrets::{Keyring, SecretString};
use flytt_store::{Store, WorkItem, event_kind};

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
pub(crate) async fn provision(
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
    let Some(sealed) = &item.password_sealed else {
        return Err("the CSV gave no Password for the new mailbox".into());
    };
    let password = keyring
        .open(
            sealed,
            &format!("batch/{}/user/{}/Password", item.batch, item.email),
        )
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
        .make_mailbox(
            &item.email,
            &SecretString::new(password.expose()),
            force_change,
        )
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
            "provisioned in directory {name} (was a {was}; must change password: {force_change})"
        ),
    )
    .await;
    Ok(())
}

/// Forwards the source address to `user@TargetDeliveryDomain` in the
/// source's directory.
pub(crate) async fn forward(
    item: &WorkItem,
    parameters: &BatchParameters,
    keyring: &Keyring,
    store: &Store,
) -> Result<(), String> {
    let (Some(name), Some(domain)) = (&item.source.directory, &parameters.target_delivery_domain)
    else {
        note(
            store,
            item,
            "no forwarding set: it needs a directory on the source endpoint and a TargetDeliveryDomain",
        )
        .await;
        return Ok(());
    };
    let local = item
        .email
        .rsplit_once('@')
        .map_or(item.email.as_str(), |(local, _)| local);
    let address = format!("{local}@{domain}");
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
    Ok(())
}
