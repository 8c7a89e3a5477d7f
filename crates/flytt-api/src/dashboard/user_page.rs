//! One user's page: where it is in words, what it gets of each parameter
//! and from where (CSV row, batch, default), its statistics, the items
//! it left behind with their reasons, its last events, and the actions
//! its status allows (the same as on its batch's page).

use askama::Template;
use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use flytt_batch::{Effective, Origin, StatisticsIssue};
use flytt_control::users::NewLogin;
use flytt_control::views::{EventView, UserView, status_words};
use flytt_secrets::SecretString;
use flytt_store::{EventFilter, UserFilter};

use super::endpoint_pages::{flash_to, is_internal};
use super::pages::{
    Page, UserButton, failure, form_session, link, not_found, render, signed_in, to_login,
};
use crate::routes::AppState;

/// How many of a user's newest events its page shows.
const EVENTS: u32 = 20;
/// How many skipped or failed items its page lists (the error report has
/// them all).
const ISSUES: usize = 50;

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    page: Page,
    batch: String,
    batch_link: String,
    user: UserView,
    user_link: String,
    status_text: String,
    /// Where it is, in a sentence.
    now: String,
    actions: Vec<UserButton>,
    effective: Vec<(Effective, &'static str)>,
    megabytes: String,
    issues: Vec<StatisticsIssue>,
    more_issues: usize,
    events: Vec<EventView>,
    /// The batch's users log in on the source with their CSV row's
    /// UserName (IMAP batches); the others' rows have only a password.
    has_user_name: bool,
}

/// `GET /batches/{name}/users/{email}`.
pub async fn user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((batch, email)): Path<(String, String)>,
) -> Response {
    let Some((session, flash)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let store = state.control.store();
    let found = async {
        let summary = store.batch(&batch).await?;
        let user = store
            .find_users(&UserFilter {
                batch: Some(&batch),
                email: Some(&email),
                ..UserFilter::default()
            })
            .await?
            .pop();
        let events = store
            .events(&EventFilter {
                batch: Some(batch.clone()),
                email: Some(email.clone()),
                after: None,
                limit: Some(EVENTS),
            })
            .await?;
        Ok::<_, flytt_store::Error>((summary, user, events))
    };
    let (summary, user, events) = match found.await {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let Some(user) = user else {
        return not_found().await;
    };
    let view = UserView::new(&user).with_effective(&summary.parameters);
    let stats = view.statistics.clone().unwrap_or_default();
    let progress = view.progress.clone().unwrap_or_default();
    let issues: Vec<StatisticsIssue> = stats.issues.iter().take(ISSUES).cloned().collect();
    render(&UserPage {
        page: Page::new(&session, flash, "batches"),
        batch_link: link(&batch),
        batch,
        user_link: link(&view.email),
        status_text: status_words(view.status.as_str()),
        now: sentence(&view),
        actions: UserButton::for_user(&view),
        effective: view
            .effective_parameters
            .iter()
            .flatten()
            .map(|e| (e.clone(), origin_words(e.origin)))
            .collect(),
        megabytes: format!(
            "{:.1}",
            (stats.bytes_copied + progress.bytes_copied) as f64 / 1e6
        ),
        more_issues: stats.issues.len().saturating_sub(ISSUES),
        issues,
        events: events.iter().rev().map(EventView::new).collect(),
        has_user_name: summary.batch_type == flytt_batch::BatchType::Imap,
        user: view,
    })
}

/// Where the user is, in a sentence for the administrator.
fn sentence(user: &UserView) -> String {
    use flytt_batch::UserStatus::*;
    match user.requested {
        Some(flytt_batch::UserRequest::Complete) => {
            return "Asked to complete: its final sync starts when a slot is free, then it is Completed.".into();
        }
        Some(request) => {
            return format!(
                "Asked to {}: its sync ends at its next safe point.",
                request.as_str().to_lowercase()
            );
        }
        None => {}
    }
    if let Some(waiting) = &user.waiting {
        return format!("Between tries: {}.", waiting.sentence());
    }
    match user.status {
        Queued => "Waiting for a free slot on its endpoints to start its initial sync.".into(),
        Syncing | IncrementalSyncing | Completing => match &user.progress {
            Some(p) if !p.folder.is_empty() => {
                let rate = match p.rate_words() {
                    rate if rate.is_empty() => rate,
                    rate => format!(" at {rate}"),
                };
                format!(
                    "Copying {}: {} messages so far{}{rate}.",
                    p.folder,
                    p.messages_copied,
                    p.in_words()
                )
            }
            _ => "Logging in and comparing the folders.".into(),
        },
        Synced => {
            "Its mail is across; incremental syncs keep it current until the batch completes."
                .into()
        }
        Completed => "Done: its final sync ran and it is Completed.".into(),
        Stopped => "Stopped by an administrator: nothing runs until it is retried.".into(),
        Failed => format!(
            "Failed: {}. Mend the cause (a wrong password: correct it below), then retry it.",
            user.error.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

fn origin_words(origin: Origin) -> &'static str {
    match origin {
        Origin::Csv => "its CSV row",
        Origin::Batch => "the batch",
        Origin::Default => "the default",
    }
}

/// `POST /batches/{name}/users/{email}/login`: the row's sign-in details
/// corrected (a password sealed like the CSV's, never shown again; an
/// empty field keeps what is stored). A failed user is then retried.
pub async fn change_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((batch, email)): Path<(String, String)>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = form_session(&state, &headers, &form).await {
        return refused;
    }
    let given = |key: &str| form.get(key).filter(|v| !v.trim().is_empty());
    let login = NewLogin {
        user_name: given("user_name").map(|v| v.trim().to_string()),
        password: given("password").map(SecretString::new),
        target_user_name: given("target_user_name").map(|v| v.trim().to_string()),
        target_password: given("target_password").map(SecretString::new),
    };
    let here = format!("/batches/{}/users/{}", link(&batch), link(&email));
    match state
        .control
        .change_login(&email, Some(&batch), login)
        .await
    {
        Ok(_) => {
            let text = format!(
                "{email}'s sign-in changed; the next sync uses it (retry a failed user to start one)."
            );
            flash_to(&state, &headers, "ok", text, &here)
        }
        Err(e) if !is_internal(&e) => flash_to(&state, &headers, "error", e.to_string(), &here),
        Err(e) => failure(e),
    }
}
