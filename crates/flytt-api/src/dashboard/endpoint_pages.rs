//! The endpoints' pages: the list with a form for a new endpoint, and one
//! endpoint's page with its test, a form to change it and its removal.
//! Endpoints change through flytt-control (`create_endpoint`,
//! `change_endpoint`) by the same rules as the CLI and the API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flytt_control::ControlError;
use flytt_control::endpoints::{EndpointChange, EndpointTest};
use flytt_control::views::{EndpointView, WorkerView};
use flytt_secrets::SecretString;
use flytt_store::{AdminMode, Endpoint};

use super::pages::{Page, failure, form_session, link, render, signed_in, to_login};
use super::session::Flash;
use crate::routes::AppState;

/// An endpoint as the pages show it.
struct EndpointRow {
    name: String,
    link: String,
    url: String,
    admin: String,
    /// "20", or "7 of 20" while the server refuses or throttles.
    migrations: String,
    incremental: u32,
    connections_per_user: u32,
    compression: flytt_store::Compression,
    /// As a source, per mailbox and day, in words.
    download_per_day: String,
    /// The CardDAV/CalDAV server, or "none".
    dav: String,
}

impl EndpointRow {
    fn new(view: &EndpointView) -> EndpointRow {
        EndpointRow {
            name: view.name.clone(),
            link: link(&view.name),
            url: view.url.clone(),
            admin: match (&view.admin_user, &view.oauth) {
                (Some(admin), _) => format!("{admin} ({})", view.admin_mode),
                (None, Some(oauth)) => format!(
                    "OAuth client {} ({:?} at {})",
                    oauth.client_id, oauth.mechanism, oauth.token_url
                ),
                (None, None) => "none (CSV credentials)".into(),
            },
            migrations: if view.effective_concurrent_migrations < view.max_concurrent_migrations {
                format!(
                    "{} of {} (server pushing back)",
                    view.effective_concurrent_migrations, view.max_concurrent_migrations
                )
            } else {
                view.max_concurrent_migrations.to_string()
            },
            incremental: view.max_concurrent_incremental_syncs,
            connections_per_user: view.connections_per_user,
            compression: view.compression,
            download_per_day: view
                .download_per_day
                .parse()
                .map(flytt_control::views::download_limit_words)
                .unwrap_or_else(|_| view.download_per_day.clone()),
            dav: view.dav_url.clone().unwrap_or_else(|| "none".into()),
        }
    }
}

#[derive(Template)]
#[template(path = "endpoints.html")]
struct EndpointsPage {
    page: Page,
    endpoints: Vec<EndpointRow>,
    /// The runners sharing the database (they sync with the endpoints).
    workers: Vec<WorkerView>,
    /// The new endpoint form, as sent (its password never).
    form: EndpointForm,
    error: Option<String>,
}

pub async fn endpoints(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((session, flash)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let form = EndpointForm {
        max_concurrent_migrations: "20".into(),
        ..EndpointForm::default()
    };
    endpoints_page(&state, Page::new(&session, flash, "endpoints"), form, None).await
}

async fn endpoints_page(
    state: &AppState,
    page: Page,
    form: EndpointForm,
    error: Option<String>,
) -> Response {
    let store = state.control.store();
    let listed =
        async { Ok::<_, flytt_store::Error>((store.endpoints().await?, store.runners().await?)) };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    match listed.await {
        Ok((endpoints, runners)) => {
            let mut response = render(&EndpointsPage {
                page,
                endpoints: endpoints
                    .iter()
                    .map(|e| EndpointRow::new(&EndpointView::new(e)))
                    .collect(),
                workers: runners.iter().map(WorkerView::new).collect(),
                form,
                error,
            });
            *response.status_mut() = status;
            response
        }
        Err(e) => failure(e),
    }
}

/// An endpoint's settings as a form sends them (text, as typed).
#[derive(Clone, Debug, Default)]
struct EndpointForm {
    name: String,
    url: String,
    ca_file: String,
    admin_user: String,
    /// `master` or `plain`.
    admin_mode: String,
    max_concurrent_migrations: String,
    max_concurrent_incremental_syncs: String,
    allow_plaintext: bool,
    /// The directory of its users (staged migrations); empty: none.
    directory: String,
    sieve_url: String,
    dav_url: String,
}

impl EndpointForm {
    fn read(fields: &HashMap<String, String>) -> EndpointForm {
        let text = |key: &str| {
            fields
                .get(key)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        EndpointForm {
            name: text("name"),
            url: text("url"),
            ca_file: text("ca_file"),
            admin_user: text("admin_user"),
            admin_mode: text("admin_mode"),
            max_concurrent_migrations: text("max_concurrent_migrations"),
            max_concurrent_incremental_syncs: text("max_concurrent_incremental_syncs"),
            allow_plaintext: fields.contains_key("allow_plaintext"),
            directory: text("directory"),
            sieve_url: text("sieve_url"),
            dav_url: text("dav_url"),
        }
    }

    fn of(endpoint: &Endpoint) -> EndpointForm {
        EndpointForm {
            name: endpoint.name.clone(),
            url: endpoint.url.clone(),
            ca_file: endpoint.ca_file.clone().unwrap_or_default(),
            admin_user: endpoint.admin_user.clone().unwrap_or_default(),
            admin_mode: endpoint.admin_mode.to_string(),
            max_concurrent_migrations: endpoint.max_concurrent_migrations.to_string(),
            max_concurrent_incremental_syncs: endpoint.max_concurrent_incremental_syncs.to_string(),
            allow_plaintext: endpoint.allow_plaintext,
            directory: endpoint.directory.clone().unwrap_or_default(),
            sieve_url: endpoint.sieve_url.clone().unwrap_or_default(),
            dav_url: endpoint.dav_url.clone().unwrap_or_default(),
        }
    }

    /// The form as a change: every field, an empty one clearing an
    /// optional setting (a number left empty stays).
    fn change(&self) -> Result<EndpointChange, String> {
        let number = |text: &str, what: &str| -> Result<Option<u32>, String> {
            match text {
                "" => Ok(None),
                n => n
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{what}: {n:?} is not a number")),
            }
        };
        let admin_mode = match self.admin_mode.as_str() {
            "" => None,
            mode => Some(
                mode.parse::<AdminMode>()
                    .map_err(|()| format!("admin login {mode:?}: use master or plain"))?,
            ),
        };
        Ok(EndpointChange {
            url: Some(self.url.clone()).filter(|u| !u.is_empty()),
            allow_plaintext: Some(self.allow_plaintext),
            ca_file: Some(self.ca_file.clone()),
            admin_user: Some(self.admin_user.clone()),
            admin_mode,
            max_concurrent_migrations: number(
                &self.max_concurrent_migrations,
                "max concurrent migrations",
            )?,
            max_concurrent_incremental_syncs: number(
                &self.max_concurrent_incremental_syncs,
                "max incremental syncs",
            )?,
            directory: Some(self.directory.clone()),
            sieve_url: Some(self.sieve_url.clone()),
            dav_url: Some(self.dav_url.clone()),
            ..EndpointChange::default()
        })
    }
}

/// The password field: sealed for the endpoint when given; empty keeps
/// the one stored.
async fn sealed_password(
    state: &AppState,
    name: &str,
    fields: &HashMap<String, String>,
) -> Result<Option<String>, ControlError> {
    match fields.get("admin_password").filter(|p| !p.is_empty()) {
        Some(password) => Ok(Some(
            state
                .control
                .seal_admin_password(name, &SecretString::new(password))
                .await?,
        )),
        None => Ok(None),
    }
}

/// The new endpoint form: created, or the list again with the form as it
/// was sent and what is wrong.
pub async fn create_endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let session = match form_session(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let sent = EndpointForm::read(&form);
    let created = async {
        if sent.name.is_empty() || sent.url.is_empty() {
            return Err(ControlError::InvalidParameter(
                "give the endpoint a name and a URL".into(),
            ));
        }
        let mut change = sent.change().map_err(ControlError::InvalidParameter)?;
        change.admin_password_sealed = sealed_password(&state, &sent.name, &form).await?;
        let mut endpoint = change.apply(Endpoint::new(&sent.name, &sent.url));
        // Incremental syncs default to half the migrations, at most 10.
        if sent.max_concurrent_incremental_syncs.is_empty() {
            endpoint.max_concurrent_incremental_syncs = endpoint.max_concurrent_migrations.min(10);
        }
        state.control.create_endpoint(&endpoint).await
    };
    match created.await {
        Ok(()) => {
            let text = format!(
                "Endpoint {} created. Test it with a user to check the admin login.",
                sent.name
            );
            flash_to(
                &state,
                &headers,
                "ok",
                text,
                &format!("/endpoints/{}", link(&sent.name)),
            )
        }
        Err(e) if !is_internal(&e) => {
            let page = Page::new(&session, None, "endpoints");
            endpoints_page(&state, page, sent, Some(e.to_string())).await
        }
        Err(e) => failure(e),
    }
}

/// The change form: changed, or the page again with what is wrong.
pub async fn change_endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let session = match form_session(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let sent = EndpointForm::read(&form);
    let changed = async {
        let mut change = sent.change().map_err(ControlError::InvalidParameter)?;
        change.admin_password_sealed = sealed_password(&state, &name, &form).await?;
        state.control.change_endpoint(&name, change).await
    };
    match changed.await {
        Ok(_) => {
            let text = format!("Endpoint {name} changed; syncs that start from now on use it.");
            flash_to(
                &state,
                &headers,
                "ok",
                text,
                &format!("/endpoints/{}", link(&name)),
            )
        }
        Err(e) if !is_internal(&e) => {
            let page = Page::new(&session, None, "endpoints");
            endpoint_page(&state, page, &name, Some(sent), Some(e.to_string()), None).await
        }
        Err(e) => failure(e),
    }
}

/// Removes an endpoint no batch uses (a batch that does keeps it).
pub async fn remove_endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = form_session(&state, &headers, &form).await {
        return refused;
    }
    let outcome = state.control.store().remove_endpoint(&name).await;
    let page = format!("/endpoints/{}", link(&name));
    removal_said(
        &state,
        &headers,
        outcome,
        &format!("Endpoint {name}"),
        "/endpoints",
        &page,
    )
}

/// A removal's outcome said on the next page: the list when `what` is
/// gone; its own page when something still uses it.
pub(super) fn removal_said(
    state: &AppState,
    headers: &HeaderMap,
    outcome: flytt_store::Result<()>,
    what: &str,
    list: &str,
    page: &str,
) -> Response {
    match outcome {
        Ok(()) => flash_to(state, headers, "ok", format!("{what} removed."), list),
        Err(e @ (flytt_store::Error::EndpointInUse(_) | flytt_store::Error::DirectoryInUse(_))) => {
            flash_to(state, headers, "error", e.to_string(), page)
        }
        Err(e) => failure(e),
    }
}

/// Says `text` on the next page, which is `to`.
pub(super) fn flash_to(
    state: &AppState,
    headers: &HeaderMap,
    class: &'static str,
    text: String,
    to: &str,
) -> Response {
    state
        .dashboard
        .sessions
        .set_flash(headers, Flash { class, text });
    Redirect::to(to).into_response()
}

/// An error the administrator can mend on the form (not the database's).
pub(super) fn is_internal(error: &ControlError) -> bool {
    match error {
        ControlError::Store(e) => e.is_internal(),
        ControlError::Secrets(_) | ControlError::OtherKey { .. } | ControlError::Report(_) => true,
        _ => false,
    }
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct EndpointPage {
    page: Page,
    e: EndpointRow,
    user: String,
    test: Option<EndpointTest>,
    /// The change form: the endpoint's settings, or what was sent.
    form: EndpointForm,
    error: Option<String>,
    /// The directories it may name.
    directories: Vec<String>,
}

/// One endpoint's page; `form` is what a refused change sent (else the
/// endpoint's settings), `test` a test's outcome (with the user it asked
/// for).
async fn endpoint_page(
    state: &AppState,
    page: Page,
    name: &str,
    form: Option<EndpointForm>,
    error: Option<String>,
    test: Option<(String, EndpointTest)>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let store = state.control.store();
    let found = async {
        Ok::<_, flytt_store::Error>((store.endpoint(name).await?, store.directories().await?))
    };
    match found.await {
        Ok((endpoint, directories)) => {
            let (user, test) = match test {
                Some((user, test)) => (user, Some(test)),
                None => (String::new(), None),
            };
            let mut response = render(&EndpointPage {
                page,
                e: EndpointRow::new(&EndpointView::new(&endpoint)),
                user,
                test,
                form: form.unwrap_or_else(|| EndpointForm::of(&endpoint)),
                error,
                directories: directories.into_iter().map(|d| d.name).collect(),
            });
            *response.status_mut() = status;
            response
        }
        Err(e) => failure(e),
    }
}

pub async fn endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some((session, flash)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let page = Page::new(&session, flash, "endpoints");
    endpoint_page(&state, page, &name, None, None, None).await
}

pub async fn test_endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let session = match form_session(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let user = form
        .get("user")
        .map(|u| u.trim().to_string())
        .unwrap_or_default();
    let asked = (!user.is_empty()).then_some(user.as_str());
    match state.control.test_endpoint(&name, asked).await {
        Ok(test) => {
            let page = Page::new(&session, None, "endpoints");
            endpoint_page(&state, page, &name, None, None, Some((user, test))).await
        }
        Err(e) => failure(e),
    }
}
