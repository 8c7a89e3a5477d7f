//! A user's Sieve scripts from the source to the target: every script
//! copied as it is, the source's active script made active on the target.
//! Exchange loses vacation replies in this step; flytt keeps them, since
//! they are Sieve scripts like any other.

use serde::Serialize;

use crate::client::{SieveAuth, SieveServer, SieveSession};
use crate::{Error, Result};

/// The script flytt installs on a source to forward its mail (staged
/// batches): never copied to the target.
pub const FORWARD_SCRIPT: &str = "flytt-forward";

/// Installs and activates a script on the source that redirects every
/// message to `address`: mail that still arrives there reaches the new
/// mailbox. Returns the script that was active before, if any (the event
/// log keeps it, to restore by hand).
pub async fn install_forward(
    server: &SieveServer,
    auth: &SieveAuth<'_>,
    address: &str,
) -> Result<Option<String>> {
    if address.contains(['"', '\\', '\r', '\n']) {
        return Err(Error::InvalidArgument(format!(
            "{address:?} is not an address to redirect to"
        )));
    }
    let mut session = SieveSession::connect(server).await?;
    session.authenticate(auth).await?;
    let before = session
        .list_scripts()
        .await?
        .into_iter()
        .find(|(name, active)| *active && name != FORWARD_SCRIPT)
        .map(|(name, _)| name);
    let script = format!(
        "# Installed by flytt: this mailbox has moved; its mail goes to the new one.\r\nredirect \"{address}\";\r\n"
    );
    session
        .put_script(FORWARD_SCRIPT, script.as_bytes())
        .await?;
    session.set_active(FORWARD_SCRIPT).await?;
    session.logout().await;
    Ok(before)
}

/// What a script migration did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SieveReport {
    /// Scripts now on the target.
    pub copied: Vec<String>,
    /// The script made active on the target, if the source had one.
    pub active: Option<String>,
    /// What could not be done, with the server's reason: a script the
    /// target refused (e.g. an extension it lacks), a source without
    /// ManageSieve. None of these fails the user.
    pub issues: Vec<String>,
}

/// Copies every script of a user. Connection failures on the target, and
/// refused logins, are errors; what the source lacks or the target refuses
/// per script is reported.
pub async fn migrate_scripts(
    source: (&SieveServer, &SieveAuth<'_>),
    target: (&SieveServer, &SieveAuth<'_>),
) -> Result<SieveReport> {
    let mut report = SieveReport::default();
    let mut from = match SieveSession::connect(source.0).await {
        Ok(session) => session,
        Err(e @ (Error::Connect { .. } | Error::Unsupported { .. })) => {
            report
                .issues
                .push(format!("the source's Sieve scripts were not copied: {e}"));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    from.authenticate(source.1).await?;
    let listed = from.list_scripts().await?;
    let mut scripts = Vec::new();
    // flytt's own forwarding script stays on the source.
    for (name, active) in listed.into_iter().filter(|(n, _)| n != FORWARD_SCRIPT) {
        let body = from.get_script(&name).await?;
        scripts.push((name, active, body));
    }
    from.logout().await;
    if scripts.is_empty() {
        return Ok(report);
    }

    let mut to = SieveSession::connect(target.0).await?;
    to.authenticate(target.1).await?;
    for (name, active, body) in &scripts {
        match to.put_script(name, body).await {
            Ok(()) => {
                report.copied.push(name.clone());
                if *active {
                    match to.set_active(name).await {
                        Ok(()) => report.active = Some(name.clone()),
                        Err(e @ Error::Refused { .. }) => report
                            .issues
                            .push(format!("script {name:?} could not be made active: {e}")),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e @ Error::Refused { .. }) => {
                report
                    .issues
                    .push(format!("the target refused script {name:?}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    to.logout().await;
    Ok(report)
}
