//! The dashboard's pages and the forms they post.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use flytt_batch::{
    BatchAction, BatchParameters, BatchStatus, BatchType, Parameter, UserAction, UserRequest,
    UserStatus,
};
use flytt_control::users::UserOutcome;
use flytt_control::views::{BatchView, UserView, count_of, status_words};
use flytt_control::{BatchRequest, ControlError, reports};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::session::{Flash, LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session, cookie, same};
use crate::routes::AppState;
use crate::tokens;

/// What every page's frame needs.
pub struct Page {
    pub signed_in: bool,
    pub csrf: String,
    pub here: &'static str,
    pub version: &'static str,
    pub flash: Option<Flash>,
}

impl Page {
    pub(super) fn new(session: &Session, flash: Option<Flash>, here: &'static str) -> Page {
        Page {
            signed_in: true,
            csrf: session.csrf.clone(),
            here,
            version: env!("CARGO_PKG_VERSION"),
            flash,
        }
    }

    fn anonymous(csrf: String) -> Page {
        Page {
            signed_in: false,
            csrf,
            here: "",
            version: env!("CARGO_PKG_VERSION"),
            flash: None,
        }
    }
}

pub(super) fn link(name: &str) -> String {
    utf8_percent_encode(name, NON_ALPHANUMERIC).to_string()
}

pub(super) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    title: String,
    message: String,
}

pub(super) fn error_page(
    status: StatusCode,
    title: &str,
    message: String,
    signed_in: bool,
) -> Response {
    let mut page = Page::anonymous(String::new());
    page.signed_in = signed_in;
    let mut response = render(&ErrorPage {
        page,
        title: title.into(),
        message,
    });
    *response.status_mut() = status;
    response
}

pub async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.".into(),
        false,
    )
}

/// A failure shown to a signed-in user: what went wrong, without internals.
pub(super) fn failure(error: impl Into<ControlError>) -> Response {
    let error = error.into();
    let status = match &error {
        ControlError::Store(
            flytt_store::Error::NoSuchBatch(_)
            | flytt_store::Error::NoSuchEndpoint(_)
            | flytt_store::Error::NoSuchUser(_)
            | flytt_store::Error::NoSuchUserInBatch { .. },
        ) => StatusCode::NOT_FOUND,
        ControlError::Store(e) if e.is_internal() => StatusCode::INTERNAL_SERVER_ERROR,
        ControlError::Secrets(_) | ControlError::Report(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "dashboard request failed");
        return error_page(
            status,
            "Something went wrong",
            "The server could not do this; its log has the details.".into(),
            true,
        );
    }
    error_page(status, "Cannot do that", error.to_string(), true)
}

/// The signed-in session and its flash message, if there is a session and
/// the API token it was started with still exists (removing a token ends
/// its sessions).
pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Option<(Session, Option<Flash>)> {
    let (session, flash) = state.dashboard.sessions.current(headers)?;
    if let Some(token_hash) = &session.token_hash
        && !matches!(
            state.control.store().token_by_hash(token_hash).await,
            Ok(Some(_))
        )
    {
        state.dashboard.sessions.end(headers);
        return None;
    }
    Some((session, flash))
}

pub(super) fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// Whether a POSTed form carries the session's CSRF token.
pub(super) fn csrf_ok(session: &Session, form: &HashMap<String, String>) -> bool {
    form.get("csrf")
        .is_some_and(|token| same(token, &session.csrf))
}

/// The session a POSTed form comes from, or the answer that refuses it:
/// signed out (to the sign-in page) or without the session's CSRF token.
pub(super) async fn form_session(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Session, Response> {
    let Some((session, _)) = signed_in(state, headers).await else {
        return Err(to_login());
    };
    if !csrf_ok(&session, form) {
        return Err(csrf_refused());
    }
    Ok(session)
}

pub(super) fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "The form was not sent from this session. Reload the page and try again.".into(),
        true,
    )
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Page,
    error: Option<String>,
    /// Where to go once signed in (a path of this site).
    next: String,
}

/// A path of this site to return to after signing in; anything else (an
/// absolute or protocol-relative URL: an open redirect) is dropped.
fn local_path(next: Option<&String>) -> String {
    next.filter(|n| {
        n.starts_with('/')
            && !n.starts_with("//")
            && !n.contains('\\')
            && !n.chars().any(char::is_control)
    })
    .cloned()
    .unwrap_or_else(|| "/".to_string())
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    error: Option<String>,
    status: StatusCode,
    next: String,
) -> Response {
    let Some(csrf) = super::session::random_token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    let mut response = render(&LoginPage {
        page: Page::anonymous(csrf.clone()),
        error,
        next,
    });
    *response.status_mut() = status;
    if let Some(value) = state
        .dashboard
        .cookie(headers, LOGIN_CSRF_COOKIE, &csrf, "/login", 3600)
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let next = local_path(query.get("next"));
    login_form(&state, &headers, None, StatusCode::OK, next)
}

pub async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let address = peer.map(|axum::Extension(axum::extract::ConnectInfo(p))| p.ip());
    let next = local_path(form.get("next"));
    if let Some(wait) = address.and_then(|a| state.dashboard.sign_ins.wait(a)) {
        return login_form(
            &state,
            &headers,
            Some(format!(
                "Too many failed sign-ins from your address; try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            )),
            StatusCode::TOO_MANY_REQUESTS,
            next,
        );
    }
    let double_submit = cookie(&headers, LOGIN_CSRF_COOKIE);
    let csrf_ok = matches!((double_submit, form.get("csrf")), (Some(c), Some(f)) if same(&c, f));
    if !csrf_ok {
        return login_form(
            &state,
            &headers,
            Some("The sign-in form expired; try again.".into()),
            StatusCode::FORBIDDEN,
            next,
        );
    }
    let secret = form.get("secret").map(|s| s.trim()).unwrap_or_default();
    let by_password = state
        .dashboard
        .admin_password
        .as_deref()
        .is_some_and(|p| !secret.is_empty() && same(&tokens::hash(p), &tokens::hash(secret)));
    let by_token = secret.starts_with(tokens::PREFIX)
        && matches!(
            state
                .control
                .store()
                .token_by_hash(&tokens::hash(secret))
                .await,
            Ok(Some(_))
        );
    if !(by_password || by_token) {
        if let Some(address) = address {
            state.dashboard.sign_ins.failed(address);
        }
        return login_form(
            &state,
            &headers,
            Some("That is not a valid token or password.".into()),
            StatusCode::UNAUTHORIZED,
            next,
        );
    }
    if let Some(address) = address {
        state.dashboard.sign_ins.succeeded(address);
    }
    let token_hash = (by_token && !by_password).then(|| tokens::hash(secret));
    let Some((id, _)) = state.dashboard.sessions.start(token_hash) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot start a session").into_response();
    };
    let mut response = Redirect::to(&next).into_response();
    if let Some(value) = state.dashboard.cookie(
        &headers,
        SESSION_COOKIE,
        &id,
        "/",
        super::session::LIFETIME.as_secs(),
    ) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    if let Some((session, _)) = signed_in(&state, &headers).await {
        if !csrf_ok(&session, &form) {
            return csrf_refused();
        }
        state.dashboard.sessions.end(&headers);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Some(value) = state.dashboard.cookie(&headers, SESSION_COOKIE, "", "/", 0) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// One row of the batch list.
struct BatchRow {
    name: String,
    link: String,
    status: String,
    /// The status in words ("Synced with errors").
    status_text: String,
    batch_type: String,
    users: u64,
    syncing: u64,
    synced: u64,
    completed: u64,
    failed: u64,
    percent: u64,
}

impl BatchRow {
    fn new(view: &BatchView) -> BatchRow {
        // Users whose mail is across: a failed or stopped user is not,
        // and keeps the batch under 100 %.
        let across = view.count(UserStatus::Synced)
            + view.count(UserStatus::IncrementalSyncing)
            + view.count(UserStatus::Completing)
            + view.count(UserStatus::Completed);
        BatchRow {
            name: view.name.clone(),
            link: link(&view.name),
            status: view.status.to_string(),
            status_text: status_words(view.status.as_str()),
            batch_type: view.batch_type.clone(),
            users: view.users,
            syncing: view.count(UserStatus::Syncing)
                + view.count(UserStatus::IncrementalSyncing)
                + view.count(UserStatus::Completing),
            synced: view.count(UserStatus::Synced),
            completed: view.count(UserStatus::Completed),
            failed: view.count(UserStatus::Failed),
            percent: (across * 100).checked_div(view.users).unwrap_or(0),
        }
    }
}

/// How many batches the list shows at a time.
const BATCHES_PER_PAGE: usize = 25;

/// The batch list's query: the name contains, the status is, in this
/// order (newest first unless asked), which page.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    /// `newest` (the default), `oldest` or `name`.
    #[serde(default)]
    sort: String,
    #[serde(default)]
    page: usize,
}

impl BatchListQuery {
    /// This list's query string, on page `page`.
    fn query(&self, page: usize) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("q", &self.q),
            ("status", &self.status),
            ("sort", &self.sort),
        ] {
            if !value.is_empty() {
                parts.push(format!(
                    "{key}={}",
                    utf8_percent_encode(value, NON_ALPHANUMERIC)
                ));
            }
        }
        if page > 0 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// One page of the batch list, and the links around it.
struct BatchList {
    rows: Vec<BatchRow>,
    /// "26–50 of 35", or empty when all fit.
    showing: String,
    previous: Option<String>,
    next: Option<String>,
    /// This page's query string (the live refresh asks for the same).
    query: String,
}

async fn batch_list(state: &AppState, asked: &BatchListQuery) -> Result<BatchList, ControlError> {
    let store = state.control.store();
    let needle = asked.q.trim().to_lowercase();
    let mut views: Vec<BatchView> = store
        .batches()
        .await?
        .iter()
        .map(BatchView::new)
        .filter(|v| needle.is_empty() || v.name.to_lowercase().contains(&needle))
        .filter(|v| asked.status.is_empty() || v.status.as_str() == asked.status)
        .collect();
    match asked.sort.as_str() {
        "name" => views.sort_by_key(|a| a.name.to_lowercase()),
        // Batches made within one second (the times' resolution) by
        // name, so that a scripted series reads in order.
        "oldest" => views.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name))),
        _ => views.sort_by(|a, b| (&b.created_at, &b.name).cmp(&(&a.created_at, &a.name))),
    }
    let total = views.len();
    let pages = total.div_ceil(BATCHES_PER_PAGE).max(1);
    let page = asked.page.min(pages - 1);
    let first = page * BATCHES_PER_PAGE;
    let rows: Vec<BatchRow> = views
        .iter()
        .skip(first)
        .take(BATCHES_PER_PAGE)
        .map(BatchRow::new)
        .collect();
    Ok(BatchList {
        showing: if pages > 1 {
            format!("{}–{} of {total}", first + 1, first + rows.len())
        } else {
            String::new()
        },
        previous: (page > 0).then(|| asked.query(page - 1)),
        next: (page + 1 < pages).then(|| asked.query(page + 1)),
        query: asked.query(page),
        rows,
    })
}

#[derive(Template)]
#[template(path = "batches.html")]
struct BatchesPage {
    page: Page,
    list: BatchList,
    asked: BatchListQuery,
    statuses: &'static [BatchStatus],
}

#[derive(Template)]
#[template(path = "batch_rows.html")]
struct BatchRowsPartial {
    list: BatchList,
}

pub async fn batches(
    State(state): State<AppState>,
    headers: HeaderMap,
    asked: Result<axum::extract::Query<BatchListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some((session, flash)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let Ok(axum::extract::Query(asked)) = asked else {
        return bad_page_query();
    };
    match batch_list(&state, &asked).await {
        Ok(list) => render(&BatchesPage {
            page: Page::new(&session, flash, "batches"),
            list,
            asked,
            statuses: BatchStatus::ALL,
        }),
        Err(e) => failure(e),
    }
}

pub async fn batch_rows(
    State(state): State<AppState>,
    headers: HeaderMap,
    asked: Result<axum::extract::Query<BatchListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if signed_in(&state, &headers).await.is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(axum::extract::Query(asked)) = asked else {
        return bad_page_query();
    };
    match batch_list(&state, &asked).await {
        Ok(list) => render(&BatchRowsPartial { list }),
        Err(e) => failure(e),
    }
}

/// One row of a batch's users.
struct UserRow {
    email: String,
    /// The address as a path segment.
    link: String,
    status: String,
    status_text: String,
    copied: u64,
    skipped: u64,
    megabytes: String,
    last_sync: String,
    detail: String,
    /// The actions the user's status allows (`UserStatus::after`).
    actions: Vec<UserButton>,
}

impl UserRow {
    /// A Queued user of a batch that was never started waits for the
    /// batch, not for a slot: said so.
    fn in_batch(mut self, batch: BatchStatus) -> UserRow {
        if batch == BatchStatus::Created && self.status == UserStatus::Queued.as_str() {
            self.status_text = "Not started".to_string();
            if self.detail.is_empty() {
                self.detail = "starts when the batch is started".to_string();
            }
        }
        self
    }
}

/// One user's action button.
pub(super) struct UserButton {
    pub(super) path: &'static str,
    pub(super) label: &'static str,
    pub(super) confirm: &'static str,
}

impl UserButton {
    /// The buttons for a user: what its status allows, and not what a
    /// request already asked for.
    pub(super) fn for_user(user: &UserView) -> Vec<UserButton> {
        if user.requested.is_some() {
            return Vec::new();
        }
        [
            (UserAction::Retry, "retry", "Retry", ""),
            (
                UserAction::Complete,
                "complete",
                "Complete",
                "Complete this user now? It gets its final sync and is then Completed; this cannot be undone.",
            ),
            (UserAction::Stop, "stop", "Stop", ""),
            (
                UserAction::Remove,
                "remove",
                "Remove",
                "Remove this user from the batch with its stored passwords? Its mail on the servers is not touched.",
            ),
        ]
        .into_iter()
        .filter(|(action, ..)| user.status.after(*action).is_some())
        .map(|(_, path, label, confirm)| UserButton {
            path,
            label,
            confirm,
        })
        .collect()
    }
}

impl UserRow {
    fn new(user: &UserView) -> UserRow {
        let stats = user.statistics.clone().unwrap_or_default();
        let progress = user.progress.clone().unwrap_or_default();
        let copied = stats.messages_copied + progress.messages_copied;
        let bytes = stats.bytes_copied + progress.bytes_copied;
        let detail = match (&user.error, &user.waiting) {
            _ if user.requested == Some(UserRequest::Complete) => {
                "completing: its final sync starts when a slot is free".to_string()
            }
            _ if user.requested.is_some() => {
                "stopping: the sync ends at its next safe point".to_string()
            }
            (Some(error), _) => error.clone(),
            (None, Some(waiting)) => waiting.sentence(),
            (None, None) if !progress.folder.is_empty() => {
                format!("copying {}{}", progress.folder, progress.in_words())
            }
            _ => String::new(),
        };
        UserRow {
            email: user.email.clone(),
            link: link(&user.email),
            status: user.status.to_string(),
            status_text: status_words(user.status.as_str()),
            copied,
            skipped: stats.messages_skipped + stats.messages_failed,
            megabytes: format!("{:.1}", bytes as f64 / 1e6),
            last_sync: user
                .last_synced_at
                .clone()
                .unwrap_or_else(|| "–".to_string()),
            detail,
            actions: UserButton::for_user(user),
        }
    }
}

/// "copied of found" for contacts, events and tasks, and how many were
/// skipped if any; empty when the batch found none (its endpoints have no
/// DAV server).
fn dav_fact(totals: &flytt_store::Totals) -> String {
    if totals.contacts_found + totals.events_found + totals.tasks_found == 0 {
        return String::new();
    }
    let skipped = totals.contacts_skipped + totals.events_skipped + totals.tasks_skipped;
    format!(
        "{} of {} / {} of {} / {} of {}{}",
        totals.contacts_copied,
        totals.contacts_found,
        totals.events_copied,
        totals.events_found,
        totals.tasks_copied,
        totals.tasks_found,
        if skipped > 0 {
            format!(" ({skipped} skipped: see the error report)")
        } else {
            String::new()
        }
    )
}

/// A batch's live part: its buttons (they follow the status), facts and
/// users.
struct Live {
    link: String,
    csrf: String,
    actions: Vec<Action>,
    status: String,
    status_text: String,
    users: u64,
    synced: u64,
    failed: u64,
    copied: u64,
    skipped: u64,
    bad: u64,
    altered: u64,
    /// Contacts / events / tasks copied, empty where the batch moves none.
    dav: String,
    megabytes: String,
    speed: String,
    endpoints: String,
    batch_type: String,
    created_at: String,
    rows: Vec<UserRow>,
    /// This page's query string (the live updates ask for the same page).
    query: String,
    /// The first page's query string, when this is a later page.
    first: Option<String>,
    /// The next page's query string, if there are more users.
    next: Option<String>,
    /// The batch's last analysis, if one was asked for.
    analysis: Option<AnalysisPanel>,
}

/// How many users a batch page shows at a time.
const USERS_PER_PAGE: u32 = 100;

/// Which of a batch's users its page shows: a search in the addresses, a
/// status, and where the page starts (after a CSV line).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPage {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    after: Option<u64>,
}

impl UserPage {
    /// The query string that shows this page (empty for the first, unfiltered one).
    fn query(&self, after: Option<u64>) -> String {
        let mut parts = Vec::new();
        if !self.q.is_empty() {
            parts.push(format!(
                "q={}",
                utf8_percent_encode(&self.q, NON_ALPHANUMERIC)
            ));
        }
        if !self.status.is_empty() {
            parts.push(format!(
                "status={}",
                utf8_percent_encode(&self.status, NON_ALPHANUMERIC)
            ));
        }
        if let Some(after) = after {
            parts.push(format!("after={after}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

async fn live_of(
    state: &AppState,
    session: &Session,
    name: &str,
    page: &UserPage,
) -> Result<Live, ControlError> {
    let store = state.control.store();
    let batch = store.batch(name).await?;
    let view = BatchView::new(&batch);
    let status = match page.status.as_str() {
        "" => None,
        text => Some(
            text.parse::<UserStatus>()
                .map_err(|e| ControlError::InvalidParameter(e.to_string()))?,
        ),
    };
    // One more than a page: whether there is a next one.
    let mut users = store
        .find_users(&flytt_store::UserFilter {
            batch: Some(name),
            status,
            search: Some(page.q.as_str()).filter(|q| !q.is_empty()),
            after_line: page.after,
            limit: Some(USERS_PER_PAGE + 1),
            ..flytt_store::UserFilter::default()
        })
        .await?;
    let next = if users.len() > USERS_PER_PAGE as usize {
        users.truncate(USERS_PER_PAGE as usize);
        users.last().map(|u| page.query(Some(u.csv_line)))
    } else {
        None
    };
    Ok(Live {
        link: link(name),
        csrf: session.csrf.clone(),
        actions: actions_for(&view),
        status: view.status.to_string(),
        status_text: status_words(view.status.as_str()),
        users: view.users,
        synced: view.count(UserStatus::Synced) + view.count(UserStatus::Completed),
        failed: view.count(UserStatus::Failed),
        copied: view.totals.messages_copied,
        skipped: view.totals.messages_skipped,
        bad: view.totals.messages_failed,
        altered: view.totals.messages_altered,
        dav: dav_fact(&view.totals),
        megabytes: format!("{:.1}", view.totals.bytes_copied as f64 / 1e6),
        speed: view.throughput.as_ref().map_or_else(
            || "–".to_string(),
            |t| format!("{:.0} msg/s", t.messages_per_second),
        ),
        endpoints: format!("{} → {}", view.source_endpoint, view.target_endpoint),
        batch_type: view.batch_type.clone(),
        created_at: view.created_at.clone(),
        rows: users
            .iter()
            .map(|u| UserRow::new(&UserView::new(u)).in_batch(view.status))
            .collect(),
        analysis: state
            .control
            .analysis(name)
            .await?
            .map(|analysis| AnalysisPanel::new(&analysis)),
        query: page.query(page.after),
        first: page.after.map(|_| page.query(None)),
        next,
    })
}

fn bad_page_query() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Cannot do that",
        "The address asks for a page of users that does not exist (q, status, after).".into(),
        true,
    )
}

/// The batch's last analysis on its page: what it found in words, and the
/// first users' results (the CSV has them all).
struct AnalysisPanel {
    state: String,
    summary: String,
    estimate: String,
    rows: Vec<AnalysisRow>,
    /// Users beyond the rows shown.
    more: usize,
}

struct AnalysisRow {
    email: String,
    folders: u64,
    messages: u64,
    megabytes: String,
    largest: String,
    large: u64,
    /// The folders the target cannot take as they are, and why, and those
    /// the mapping rules place.
    renamed: String,
    quota: String,
    error: String,
}

/// Users' results shown on the batch page.
const ANALYSIS_ROWS: usize = 50;

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl AnalysisPanel {
    fn new(analysis: &flytt_batch::BatchAnalysis) -> AnalysisPanel {
        let run = &analysis.run;
        let summary = format!(
            "{} of {} users looked at ({} could not be): {} messages, {} to copy in {} folders; {} large items skipped; {} folders renamed; {} users over their target quota.",
            analysis.analyzed,
            analysis.users,
            analysis.failed,
            analysis.messages,
            megabytes(analysis.bytes),
            analysis.folders,
            analysis.large_items,
            analysis.renamed_folders,
            analysis.over_quota,
        );
        let estimate = match (analysis.estimated_seconds, &run.probe) {
            (Some(seconds), Some(probe)) => format!(
                "About {} with {} users at a time (the source gave {} in {:.1} s to a probe).",
                flytt_batch::duration_words(seconds),
                run.concurrency,
                megabytes(probe.bytes),
                probe.seconds
            ),
            _ => run.error.clone().unwrap_or_default(),
        };
        let rows = analysis
            .user_results
            .iter()
            .take(ANALYSIS_ROWS)
            .map(|u| AnalysisRow {
                email: u.email.clone(),
                folders: u.folders,
                messages: u.messages,
                megabytes: megabytes(u.bytes),
                largest: megabytes(u.largest_message),
                large: u.large_items,
                renamed: u
                    .renamed_folders
                    .iter()
                    .map(|f| format!("{} ({})", f.folder, f.reason))
                    .chain(
                        u.folder_rules
                            .iter()
                            .map(|f| format!("{} → {} (by rule)", f.folder, f.target)),
                    )
                    .collect::<Vec<_>>()
                    .join("; "),
                quota: match (&u.target_quota, u.fits_quota()) {
                    (Some(q), Some(fits)) => format!(
                        "{} of {}{}",
                        megabytes(q.used_bytes),
                        megabytes(q.limit_bytes),
                        if fits { "" } else { ": does not fit" }
                    ),
                    _ => "–".into(),
                },
                error: u.error.clone().unwrap_or_default(),
            })
            .collect();
        AnalysisPanel {
            state: run.state.to_string(),
            summary,
            estimate,
            rows,
            more: analysis.user_results.len().saturating_sub(ANALYSIS_ROWS),
        }
    }
}

/// A button on the batch page.
struct Action {
    path: &'static str,
    label: &'static str,
    class: &'static str,
    confirm: bool,
    confirm_text: &'static str,
}

fn actions_for(view: &BatchView) -> Vec<Action> {
    let button = |path, label, class| Action {
        path,
        label,
        class,
        confirm: false,
        confirm_text: "",
    };
    let mut actions = Vec::new();
    let s = view.status;
    if s == BatchStatus::Removing {
        return actions;
    }
    // Start only where it changes something: a Syncing or Synced batch
    // syncs by itself.
    match s {
        BatchStatus::Created => actions.push(button("start", "Start", "")),
        BatchStatus::Stopped | BatchStatus::Stopping => actions.push(button("start", "Resume", "")),
        _ => {}
    }
    if s.after(BatchAction::Complete).is_some() {
        // The primary action of a synced batch; it cannot be undone.
        let synced = matches!(s, BatchStatus::Synced | BatchStatus::SyncedWithErrors);
        actions.push(Action {
            path: "complete",
            label: "Complete",
            class: if synced { "" } else { "secondary" },
            confirm: true,
            confirm_text: "Complete this batch? Every user gets a last incremental sync and the batch is then Completed; this cannot be undone.",
        });
    }
    if s.after(BatchAction::Stop).is_some()
        && !matches!(s, BatchStatus::Stopping | BatchStatus::Created)
    {
        actions.push(button("stop", "Stop", "secondary"));
    }
    if view.count(UserStatus::Failed) > 0 {
        actions.push(button("retry", "Retry failed users", "secondary"));
    }
    actions.push(button("analyze", "Analyze", "secondary"));
    actions.push(Action {
        path: "remove",
        label: "Remove",
        class: "danger",
        confirm: true,
        confirm_text: "Remove this batch, its users and their stored passwords? Running syncs stop first. Mail on the servers is not touched.",
    });
    actions
}

#[derive(Template)]
#[template(path = "batch.html")]
struct BatchPage {
    page: Page,
    name: String,
    link: String,
    live: Live,
    filter: UserPage,
    statuses: &'static [UserStatus],
    /// The parameters the batch's status lets change, with their values.
    parameters: Vec<ParameterField>,
}

/// One parameter in the batch page's change form, as text for the one
/// parser.
struct ParameterField {
    name: &'static str,
    field: String,
    value: String,
    /// One item per line.
    multiline: bool,
    /// The values it takes, where they are few.
    choices: &'static [&'static str],
}

/// The parameters `batch`'s status lets change (`Parameter::may_change`)
/// and that do something in a batch of its type (`Parameter::fits`).
fn parameter_fields(batch: &flytt_store::BatchSummary) -> Vec<ParameterField> {
    Parameter::ALL
        .iter()
        .filter(|p| p.may_change(batch.status) && p.fits(batch.batch_type))
        .map(|&parameter| ParameterField {
            name: parameter.name(),
            field: parameter.field(),
            value: batch.parameters.text(parameter),
            multiline: matches!(
                parameter,
                Parameter::ExcludeFolders | Parameter::FolderMapping
            ),
            choices: match parameter {
                Parameter::AutoStart
                | Parameter::AutoComplete
                | Parameter::ConvertSourceOnComplete
                | Parameter::Verify
                | Parameter::DeletionSync
                | Parameter::ReportSubjects => &["false", "true"],
                Parameter::MailboxType => &["", "PrimaryAndArchive", "PrimaryOnly", "ArchiveOnly"],
                Parameter::Forwarding => &["auto", "directory", "sieve", "both"],
                Parameter::GmailLabels => &["folders", "keywords"],
                _ => &[],
            },
        })
        .collect()
}

/// The change form's parameters that differ from the batch's now: only
/// what the administrator changed is sent to the rule book.
fn parameter_changes(
    batch: &flytt_store::BatchSummary,
    form: &HashMap<String, String>,
) -> Vec<(Parameter, String)> {
    Parameter::ALL
        .iter()
        .filter_map(|&parameter| {
            let sent = form.get(&parameter.field())?.replace("\r\n", "\n");
            (sent.trim() != batch.parameters.text(parameter).trim()).then_some((parameter, sent))
        })
        .collect()
}

#[derive(Template)]
#[template(path = "batch_live.html")]
struct BatchLivePartial {
    live: Live,
}

pub async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    page: Result<axum::extract::Query<UserPage>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some((session, flash)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let Ok(axum::extract::Query(filter)) = page else {
        return bad_page_query();
    };
    let batch = match state.control.store().batch(&name).await {
        Ok(batch) => batch,
        Err(e) => return failure(e),
    };
    match live_of(&state, &session, &name, &filter).await {
        Ok(live) => render(&BatchPage {
            page: Page::new(&session, flash, "batches"),
            link: link(&name),
            name,
            live,
            filter,
            statuses: UserStatus::ALL,
            parameters: parameter_fields(&batch),
        }),
        Err(e) => failure(e),
    }
}

pub async fn batch_live(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    page: Result<axum::extract::Query<UserPage>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some((session, _)) = signed_in(&state, &headers).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(axum::extract::Query(filter)) = page else {
        return bad_page_query();
    };
    match live_of(&state, &session, &name, &filter).await {
        Ok(live) => render(&BatchLivePartial { live }),
        Err(e) => failure(e),
    }
}

/// A user action as the dashboard's paths name it.
fn user_action_named(name: &str) -> Option<UserAction> {
    match name {
        "retry" => Some(UserAction::Retry),
        "stop" => Some(UserAction::Stop),
        "remove" => Some(UserAction::Remove),
        "complete" => Some(UserAction::Complete),
        _ => None,
    }
}

/// What an action did to a user, in a sentence.
fn outcome_words(email: &str, outcome: &UserOutcome) -> String {
    match outcome {
        UserOutcome::Now(status) => format!("{email} is {status}."),
        UserOutcome::Stopping => format!("{email}: its sync ends at its next safe point."),
        UserOutcome::Removed => {
            format!("{email} removed from the batch; its mail is untouched.")
        }
        UserOutcome::Completing => {
            format!("{email}: its final sync starts when a slot is free; then it is Completed.")
        }
    }
}

/// A user's action from its batch's page or its own.
pub async fn user_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, email, action)): Path<(String, String, String)>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = form_session(&state, &headers, &form).await {
        return refused;
    }
    let Some(action) = user_action_named(&action) else {
        return not_found().await;
    };
    let flash = match state.control.act_on_user(&email, Some(&name), action).await {
        Ok(outcome) => Flash {
            class: "ok",
            text: outcome_words(&email, &outcome),
        },
        Err(e @ ControlError::UserWrongState { .. }) => Flash {
            class: "error",
            text: e.to_string(),
        },
        Err(e) => return failure(e),
    };
    state.dashboard.sessions.set_flash(&headers, flash);
    // From the user's own page, back there (unless it is gone).
    let back = if form.get("from").is_some_and(|f| f == "user") && action != UserAction::Remove {
        format!("/batches/{}/users/{}", link(&name), link(&email))
    } else {
        format!("/batches/{}", link(&name))
    };
    Redirect::to(&back).into_response()
}

/// The same action for the users ticked on the batch page: each by the
/// rules; what a user's status refused is said, the others go on.
pub async fn bulk_user_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: axum::Form<Vec<(String, String)>>,
) -> Response {
    let Some((session, _)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let value = |key: &str| {
        form.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let csrf: HashMap<String, String> = [("csrf".to_string(), value("csrf"))].into();
    if !csrf_ok(&session, &csrf) {
        return csrf_refused();
    }
    let Some(action) = user_action_named(&value("action")) else {
        return not_found().await;
    };
    let users: Vec<&String> = form
        .iter()
        .filter(|(k, _)| k == "user")
        .map(|(_, v)| v)
        .collect();
    let mut done = 0;
    let mut refused = Vec::new();
    for email in &users {
        match state.control.act_on_user(email, Some(&name), action).await {
            Ok(_) => done += 1,
            Err(e @ (ControlError::UserWrongState { .. } | ControlError::Store(_))) => {
                refused.push(e.to_string());
            }
            Err(e) => return failure(e),
        }
    }
    let mut text = format!("{}: {}.", count_of(done, "user"), action.done());
    if users.is_empty() {
        text = "No user was ticked.".to_string();
    }
    if !refused.is_empty() {
        text.push_str(&format!(" Refused: {}", refused.join("; ")));
    }
    let class = if refused.is_empty() && !users.is_empty() {
        "ok"
    } else {
        "error"
    };
    state
        .dashboard
        .sessions
        .set_flash(&headers, Flash { class, text });
    Redirect::to(&format!("/batches/{}", link(&name))).into_response()
}

pub async fn batch_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = form_session(&state, &headers, &form).await {
        return refused;
    }
    let control = &state.control;
    let outcome = match action.as_str() {
        "start" => control
            .start(&name)
            .await
            .map(|n| format!("Batch started ({} queued again).", count_of(n, "failed user"))),
        "stop" => control.stop(&name).await.map(|status| match status {
            BatchStatus::Stopped => "Batch stopped.".to_string(),
            _ => "Batch stopping: running syncs end at their next safe point, then it is Stopped; no new ones start.".to_string(),
        }),
        "complete" => control
            .complete(&name)
            .await
            .map(|()| "Batch completing: a last incremental sync per user.".to_string()),
        "retry" => control
            .retry_failed(&name)
            .await
            .map(|n| format!("{} queued again.", count_of(n, "failed user"))),
        "set" => match control.store().batch(&name).await {
            Ok(batch) => {
                let changes = parameter_changes(&batch, &form);
                let names: Vec<&str> = changes.iter().map(|(p, _)| p.name()).collect();
                control
                    .change_parameters(&name, &changes)
                    .await
                    .map(|_| format!("Changed: {}; syncs that start from now on use it.", names.join(", ")))
            }
            Err(e) => Err(e.into()),
        },
        "analyze" => control.request_analysis(&name).await.map(|()| {
            "Analysis asked for: a runner logs in for every user and plans the copy without changing anything; the results appear below.".to_string()
        }),
        "remove" => {
            return match control.remove(&name).await {
                Ok(gone) => {
                    let text = if gone {
                        format!("Batch {name} removed; mail on the servers is untouched.")
                    } else {
                        format!(
                            "Batch {name} removing: running syncs end at their next safe point, then it is removed; mail on the servers is untouched."
                        )
                    };
                    state
                        .dashboard
                        .sessions
                        .set_flash(&headers, Flash { class: "ok", text });
                    Redirect::to("/").into_response()
                }
                Err(e) => failure(e),
            };
        }
        _ => return not_found().await,
    };
    let flash = match outcome {
        Ok(text) => Flash { class: "ok", text },
        Err(
            e @ (ControlError::WrongState { .. }
            | ControlError::AnalysisRunning(_)
            | ControlError::Parameter(_)
            | ControlError::ParameterLocked { .. }
            | ControlError::InvalidParameter(_)),
        ) => Flash {
            class: "error",
            text: e.to_string(),
        },
        Err(e) => return failure(e),
    };
    state.dashboard.sessions.set_flash(&headers, flash);
    Redirect::to(&format!("/batches/{}", link(&name))).into_response()
}

pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    if signed_in(&state, &headers).await.is_none() {
        return to_login();
    }
    let csv = match report_csv(&state.control, &name, &file).await {
        Ok(Some(csv)) => csv,
        Ok(None) => return not_found().await,
        Err(e) => return failure(e),
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}-{file}\"",
                    reports::file_stem(&name)
                ),
            ),
        ],
        csv,
    )
        .into_response()
}

/// The batch's report `file`: the users or errors report, or the last
/// analysis; `None` for a file there is not.
async fn report_csv(
    control: &flytt_control::Control,
    name: &str,
    file: &str,
) -> Result<Option<Vec<u8>>, ControlError> {
    let store = control.store();
    store.batch(name).await?;
    let make = match file {
        "users.csv" => reports::users_report,
        "errors.csv" => reports::errors_report,
        "analysis.csv" => {
            return match control.analysis(name).await? {
                Some(analysis) => reports::analysis_report(&analysis).map(Some),
                None => Ok(None),
            };
        }
        _ => return Ok(None),
    };
    make(&store.batch_users(Some(name)).await?).map(Some)
}

/// An option of a select.
struct Choice {
    value: String,
    selected: bool,
}

fn choices(values: &[String], selected: &str) -> Vec<Choice> {
    values
        .iter()
        .map(|v| Choice {
            value: v.clone(),
            selected: v == selected,
        })
        .collect()
}

/// What the new-batch form holds (kept when the form comes back with errors).
#[derive(Default)]
struct BatchForm {
    name: String,
    batch_type: String,
    source_endpoint: String,
    target_endpoint: String,
    auto_start: bool,
    auto_complete: bool,
    start_after: String,
    complete_after: String,
    notification_emails: String,
    mailbox_type: String,
    bad_item_limit: String,
    large_item_limit: String,
    exclude_folders: String,
    folder_mapping: String,
    incremental_sync_interval: String,
    target_delivery_domain: String,
    forwarding: String,
    gmail_labels: String,
    convert_source_on_complete: bool,
    verify: bool,
    deletion_sync: bool,
    report_subjects: bool,
    /// The CSV file's text sent with a form that was refused for another
    /// reason (a name taken, a bad parameter): kept, so the administrator
    /// need not choose the file again.
    kept_csv: String,
}

struct Problem {
    line: u64,
    message: String,
}

#[derive(Template)]
#[template(path = "new_batch.html")]
struct NewBatchPage {
    page: Page,
    form: BatchForm,
    error: Option<String>,
    problems: Vec<Problem>,
    type_options: Vec<Choice>,
    source_options: Vec<Choice>,
    target_options: Vec<Choice>,
    mailbox_options: Vec<Choice>,
    forwarding_options: Vec<Choice>,
    gmail_label_options: Vec<Choice>,
    /// Each batch type's CSV columns: (type, required, optional).
    columns: Vec<(&'static str, String, String)>,
    fits: Fits,
}

/// Each batch type's CSV columns, for the form's help.
fn csv_columns() -> Vec<(&'static str, String, String)> {
    BatchType::ALL
        .into_iter()
        .map(|t| {
            let required = t.required();
            let names = |columns: Vec<&flytt_batch::Column>| {
                columns
                    .into_iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let optional = t
                .allowed()
                .iter()
                .filter(|c| !required.contains(c))
                .collect();
            (t.name(), names(required.iter().collect()), names(optional))
        })
        .collect()
}

/// `GET /csv-template/{type}`: a CSV file with the type's columns, its
/// required ones filled in an example row.
pub async fn csv_template(Path(batch_type): Path<String>) -> Response {
    let Some(batch_type) = BatchType::parse(&batch_type) else {
        return not_found().await;
    };
    let allowed = batch_type.allowed();
    let required = batch_type.required();
    let header: Vec<&str> = allowed.iter().map(|c| c.name()).collect();
    let example: Vec<&str> = allowed
        .iter()
        .map(|c| match c.name() {
            _ if !required.contains(c) => "",
            "EmailAddress" | "UserName" => "kari.nordmann@example.org",
            "Password" => "the-source-password",
            _ => "",
        })
        .collect();
    let body = format!("{}\r\n{}\r\n", header.join(","), example.join(","));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"flytt-{}.csv\"", batch_type.name()),
            ),
        ],
        body,
    )
        .into_response()
}

async fn new_batch_form(
    state: &AppState,
    session: &Session,
    form: BatchForm,
    error: Option<String>,
    problems: Vec<Problem>,
) -> Response {
    let endpoints: Vec<String> = match state.control.store().endpoints().await {
        Ok(endpoints) => endpoints.into_iter().map(|e| e.name).collect(),
        Err(e) => return failure(e),
    };
    let types: Vec<String> = BatchType::ALL.map(|t| t.name().to_string()).to_vec();
    let mailbox_types: Vec<String> = ["", "PrimaryAndArchive", "PrimaryOnly", "ArchiveOnly"]
        .map(String::from)
        .to_vec();
    let target_default = if form.target_endpoint.is_empty() {
        endpoints.get(1).cloned().unwrap_or_default()
    } else {
        form.target_endpoint.clone()
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut response = render(&NewBatchPage {
        page: Page::new(session, None, "new"),
        type_options: choices(&types, &form.batch_type),
        source_options: choices(&endpoints, &form.source_endpoint),
        target_options: choices(&endpoints, &target_default),
        mailbox_options: choices(&mailbox_types, &form.mailbox_type),
        forwarding_options: choices(
            &["auto", "directory", "sieve", "both"].map(String::from),
            &form.forwarding,
        ),
        gmail_label_options: choices(
            &["folders", "keywords"].map(String::from),
            &form.gmail_labels,
        ),
        columns: csv_columns(),
        fits: Fits::new(),
        form,
        error,
        problems,
    });
    *response.status_mut() = status;
    response
}

#[derive(serde::Deserialize)]
pub struct NameQuery {
    #[serde(default)]
    name: String,
}

/// `GET /partials/batch-name?name=…`: what is wrong with the name typed
/// into the new batch form, or that it is free (by the rule that
/// `create_batch` applies).
pub async fn batch_name_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(asked): axum::extract::Query<NameQuery>,
) -> Response {
    if signed_in(&state, &headers).await.is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let name = asked.name.trim();
    if name.is_empty() {
        return Html(String::new()).into_response();
    }
    let (class, text) = match state.control.batch_name_problem(name).await {
        Ok(None) => ("ok", format!("{name:?} is free.")),
        Ok(Some(problem)) => ("error", problem),
        Err(e) => return failure(e),
    };
    let text = askama::filters::escape(text, askama::filters::Html)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Html(format!("<span class=\"{class}\">{text}</span>")).into_response()
}

/// The batch types each type-dependent parameter of the new batch form
/// fits (`Parameter::fits`): the form shows a field only for these.
struct Fits {
    mailbox_type: String,
    target_delivery_domain: String,
    forwarding: String,
    convert_source_on_complete: String,
}

impl Fits {
    fn new() -> Fits {
        Fits {
            mailbox_type: Parameter::MailboxType.types(),
            target_delivery_domain: Parameter::TargetDeliveryDomain.types(),
            forwarding: Parameter::Forwarding.types(),
            convert_source_on_complete: Parameter::ConvertSourceOnComplete.types(),
        }
    }
}

pub async fn new_batch_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((session, _)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let form = BatchForm {
        batch_type: "imap".into(),
        incremental_sync_interval: "24h".into(),
        forwarding: "auto".into(),
        gmail_labels: "folders".into(),
        ..BatchForm::default()
    };
    new_batch_form(&state, &session, form, None, Vec::new()).await
}

/// Reads the multipart form: its text fields, and the CSV file's bytes.
async fn read_multipart(
    mut multipart: Multipart,
) -> Result<(HashMap<String, String>, Vec<u8>), String> {
    let mut fields = HashMap::new();
    let mut csv = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| format!("the upload broke off: {e}"))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| format!("the upload broke off: {e}"))?;
        if name == "csv" {
            csv = bytes.to_vec();
        } else {
            fields.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok((fields, csv))
}

/// The form as a batch request, or what is wrong with it.
fn batch_request(form: &BatchForm) -> Result<BatchRequest, String> {
    let batch_type = BatchType::parse(form.batch_type.as_str())
        .ok_or_else(|| format!("unknown batch type {:?}", form.batch_type))?;
    let flag = |on: bool| if on { "true" } else { "false" };
    let texts = [
        (Parameter::AutoStart, flag(form.auto_start)),
        (Parameter::AutoComplete, flag(form.auto_complete)),
        (Parameter::StartAfter, form.start_after.as_str()),
        (Parameter::CompleteAfter, form.complete_after.as_str()),
        (
            Parameter::NotificationEmails,
            form.notification_emails.as_str(),
        ),
        (Parameter::MailboxType, form.mailbox_type.as_str()),
        (Parameter::BadItemLimit, form.bad_item_limit.as_str()),
        (Parameter::LargeItemLimit, form.large_item_limit.as_str()),
        (Parameter::ExcludeFolders, form.exclude_folders.as_str()),
        (Parameter::FolderMapping, form.folder_mapping.as_str()),
        (
            Parameter::IncrementalSyncInterval,
            form.incremental_sync_interval.as_str(),
        ),
        (
            Parameter::TargetDeliveryDomain,
            form.target_delivery_domain.as_str(),
        ),
        (Parameter::Forwarding, form.forwarding.as_str()),
        (Parameter::GmailLabels, form.gmail_labels.as_str()),
        (
            Parameter::ConvertSourceOnComplete,
            flag(form.convert_source_on_complete),
        ),
        (Parameter::Verify, flag(form.verify)),
        (Parameter::DeletionSync, flag(form.deletion_sync)),
        (Parameter::ReportSubjects, flag(form.report_subjects)),
    ];
    let parameters = BatchParameters::from_texts(texts).map_err(|e| e.to_string())?;
    Ok(BatchRequest {
        name: form.name.trim().to_string(),
        batch_type,
        source_endpoint: form.source_endpoint.clone(),
        target_endpoint: form.target_endpoint.clone(),
        parameters,
    })
}

pub async fn create_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let Some((session, _)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let (fields, csv) = match read_multipart(multipart).await {
        Ok(read) => read,
        Err(message) => {
            return error_page(StatusCode::BAD_REQUEST, "Upload failed", message, true);
        }
    };
    if !csrf_ok(&session, &fields) {
        return csrf_refused();
    }
    let text = |key: &str| fields.get(key).cloned().unwrap_or_default();
    let form = BatchForm {
        name: text("name"),
        batch_type: text("type"),
        source_endpoint: text("source_endpoint"),
        target_endpoint: text("target_endpoint"),
        auto_start: fields.contains_key("auto_start"),
        auto_complete: fields.contains_key("auto_complete"),
        start_after: text("start_after"),
        complete_after: text("complete_after"),
        notification_emails: text("notification_emails"),
        mailbox_type: text("mailbox_type"),
        bad_item_limit: text("bad_item_limit"),
        large_item_limit: text("large_item_limit"),
        exclude_folders: text("exclude_folders"),
        folder_mapping: text("folder_mapping"),
        incremental_sync_interval: text("incremental_sync_interval"),
        target_delivery_domain: text("target_delivery_domain"),
        forwarding: text("forwarding"),
        gmail_labels: text("gmail_labels"),
        convert_source_on_complete: fields.contains_key("convert_source_on_complete"),
        verify: fields.contains_key("verify"),
        deletion_sync: fields.contains_key("deletion_sync"),
        report_subjects: fields.contains_key("report_subjects"),
        kept_csv: String::new(),
    };
    // A file chosen now, else the one kept from a refused try.
    let csv = if csv.is_empty() {
        text("kept_csv").into_bytes()
    } else {
        csv
    };
    let form = BatchForm {
        kept_csv: String::from_utf8(csv.clone()).unwrap_or_default(),
        ..form
    };
    let request = match batch_request(&form) {
        Ok(request) => request,
        Err(message) => {
            return new_batch_form(&state, &session, form, Some(message), Vec::new()).await;
        }
    };
    let name = request.name.clone();
    match state.control.create_batch(request, &csv).await {
        Ok(users) => {
            state.dashboard.sessions.set_flash(
                &headers,
                Flash {
                    class: "ok",
                    text: format!("Batch {name} created with {users} users."),
                },
            );
            Redirect::to(&format!("/batches/{}", link(&name))).into_response()
        }
        Err(ControlError::InvalidCsv(errors)) => {
            let message = format!(
                "The CSV file has {}.",
                flytt_control::problems(errors.len())
            );
            let problems = errors
                .into_iter()
                .map(|e| Problem {
                    line: e.line,
                    message: e.message,
                })
                .collect();
            // The file itself is wrong: it is chosen again, corrected.
            let form = BatchForm {
                kept_csv: String::new(),
                ..form
            };
            new_batch_form(&state, &session, form, Some(message), problems).await
        }
        Err(
            e @ (ControlError::InvalidParameter(_)
            | ControlError::Parameter(_)
            | ControlError::Store(
                flytt_store::Error::BatchExists(_) | flytt_store::Error::NoSuchEndpoint(_),
            )),
        ) => new_batch_form(&state, &session, form, Some(e.to_string()), Vec::new()).await,
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch page's contacts fact: nothing without DAV, copied of
    /// found with it, and the skipped ones where there are any.
    #[test]
    fn the_dav_fact_counts_what_was_skipped() {
        let mut totals = flytt_store::Totals::default();
        assert_eq!(dav_fact(&totals), "");
        totals.contacts_found = 4;
        totals.contacts_copied = 3;
        totals.events_found = 2;
        totals.events_copied = 2;
        assert_eq!(dav_fact(&totals), "3 of 4 / 2 of 2 / 0 of 0");
        totals.contacts_skipped = 1;
        assert_eq!(
            dav_fact(&totals),
            "3 of 4 / 2 of 2 / 0 of 0 (1 skipped: see the error report)"
        );
    }
}
