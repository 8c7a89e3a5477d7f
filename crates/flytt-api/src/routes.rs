//! The routes and their handlers. Each handler reads its input, calls
//! flytt-control or the store, and answers with a view from
//! flytt-control's `views` (the same JSON as the CLI's `--json`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flytt_batch::{BatchParameters, BatchType, Parameter, UserAction, UserStatus};
use flytt_control::directories::{DirectoryView, ldap_directory};
use flytt_control::users::{NewLogin, UserOutcome};
use flytt_control::views::{BatchView, EndpointView, EventView, UserView, WorkerView};
use flytt_control::{BatchRequest, Control, reports};
use flytt_secrets::SecretString;
use flytt_store::EventFilter;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::{MAX_BODY_BYTES, OPENAPI, auth, metrics};

type Json = axum::Json<serde_json::Value>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub dashboard: std::sync::Arc<crate::dashboard::DashboardState>,
    /// What the event streams show of the batches, shared.
    pub batches: Arc<SharedBatches>,
    /// One permit per live event stream.
    pub event_streams: Arc<tokio::sync::Semaphore>,
}

impl axum::extract::FromRef<AppState> for Control {
    fn from_ref(state: &AppState) -> Control {
        state.control.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let control = state.control.clone();
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/endpoints", get(list_endpoints).post(create_endpoint))
        .route(
            "/endpoints/{name}",
            get(show_endpoint)
                .patch(change_endpoint)
                .delete(remove_endpoint),
        )
        .route("/endpoints/{name}/test", post(test_endpoint))
        .route("/directories", get(list_directories).post(create_directory))
        .route(
            "/directories/{name}",
            get(show_directory)
                .patch(change_directory)
                .delete(remove_directory),
        )
        .route("/directories/{name}/test", post(test_directory))
        .route("/batches", get(list_batches).post(create_batch))
        .route(
            "/batches/{name}",
            get(show_batch).patch(change_batch).delete(remove_batch),
        )
        .route("/batches/{name}/start", post(start_batch))
        .route("/batches/{name}/stop", post(stop_batch))
        .route("/batches/{name}/complete", post(complete_batch))
        .route("/batches/{name}/retry", post(retry_batch))
        .route("/batches/{name}/users", get(batch_users).post(add_users))
        .route("/batches/{name}/reports/users.csv", get(users_report))
        .route("/batches/{name}/reports/errors.csv", get(errors_report))
        .route(
            "/batches/{name}/analysis",
            get(show_analysis).post(request_analysis),
        )
        .route("/batches/{name}/analysis.csv", get(analysis_report))
        .route(
            "/users/{email}",
            get(show_user).patch(change_user).delete(remove_user),
        )
        .route("/users/{email}/retry", post(retry_user))
        .route("/users/{email}/stop", post(stop_user))
        .route("/users/{email}/move", post(move_user))
        .route("/users/{email}/complete", post(complete_user))
        .route("/events", get(list_events))
        .route("/events/stream", get(stream_events))
        .route("/csv/validate", post(validate_csv))
        .route("/workers", get(list_workers))
        .fallback(no_such_route);
    let protected = Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(prometheus))
        .layer(axum::middleware::from_fn_with_state(
            control.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(protected)
        .merge(crate::dashboard::router())
        .fallback(crate::dashboard::fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn no_such_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// Reads a JSON body, with a clear error for what is not JSON or not the
/// expected shape (axum's own rejections are plain text).
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

fn to_json(value: impl serde::Serialize) -> Result<Json, ApiError> {
    serde_json::to_value(value)
        .map(axum::Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn prometheus(State(control): State<Control>) -> Result<Response, ApiError> {
    let text = metrics::render(control.store()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn list_endpoints(State(control): State<Control>) -> Result<Json, ApiError> {
    let endpoints = control.store().endpoints().await?;
    to_json(endpoints.iter().map(EndpointView::new).collect::<Vec<_>>())
}

async fn show_endpoint(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    to_json(EndpointView::new(&control.store().endpoint(&name).await?))
}

/// `POST /api/v1/endpoints`. The admin password is write-only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpointBody {
    name: String,
    url: String,
    #[serde(default)]
    allow_plaintext: bool,
    ca_file: Option<String>,
    #[serde(default)]
    tls_fingerprints: Vec<String>,
    admin_user: Option<String>,
    admin_mode: Option<flytt_store::AdminMode>,
    admin_password: Option<String>,
    max_concurrent_migrations: Option<u32>,
    max_concurrent_incremental_syncs: Option<u32>,
    connections_per_user: Option<u32>,
    compression: Option<flytt_store::Compression>,
    /// `auto`, `unlimited`, a size (`2500MB`) or a number of bytes.
    download_per_day: Option<NumberOrText>,
    sieve_url: Option<String>,
    dav_url: Option<String>,
    directory: Option<String>,
    oauth: Option<NewOAuthBody>,
}

/// An endpoint's OAuth client; its secrets are write-only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOAuthBody {
    #[serde(default)]
    mechanism: flytt_store::OAuthMechanism,
    token_url: String,
    client_id: String,
    client_secret: Option<String>,
    scope: Option<String>,
    /// A service account's JSON key file's content.
    service_account_key: Option<String>,
}

async fn create_endpoint(
    State(control): State<Control>,
    body: Bytes,
) -> Result<(StatusCode, Json), ApiError> {
    let body: NewEndpointBody = parse_json(&body)?;
    let sealed = match body.admin_password.as_deref() {
        Some(password) => Some(
            control
                .seal_admin_password(&body.name, &flytt_secrets::SecretString::new(password))
                .await?,
        ),
        None => None,
    };
    let oauth = match body.oauth {
        Some(oauth) => Some(
            control
                .seal_oauth(
                    &body.name,
                    flytt_control::endpoints::OAuthSettings {
                        mechanism: oauth.mechanism,
                        token_url: oauth.token_url,
                        client_id: oauth.client_id,
                        client_secret: oauth.client_secret.map(flytt_secrets::SecretString::new),
                        scope: oauth.scope,
                        service_account_key: oauth
                            .service_account_key
                            .map(flytt_secrets::SecretString::new),
                    },
                )
                .await?,
        ),
        None => None,
    };
    let download_limit = body
        .download_per_day
        .map(|limit| limit.text().parse())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("download_per_day {e}")))?
        .unwrap_or_default();
    let migrations = body.max_concurrent_migrations.unwrap_or(20);
    let endpoint = flytt_store::Endpoint {
        name: body.name,
        url: body.url,
        allow_plaintext: body.allow_plaintext,
        ca_file: body.ca_file,
        tls_fingerprints: body.tls_fingerprints,
        admin_user: body.admin_user,
        admin_mode: body.admin_mode.unwrap_or_default(),
        admin_password_sealed: sealed,
        max_concurrent_migrations: migrations,
        max_concurrent_incremental_syncs: body
            .max_concurrent_incremental_syncs
            .unwrap_or(10.min(migrations)),
        connections_per_user: body
            .connections_per_user
            .unwrap_or(flytt_store::DEFAULT_CONNECTIONS_PER_USER),
        compression: body.compression.unwrap_or_default(),
        download_limit,
        sieve_url: body.sieve_url,
        dav_url: body.dav_url,
        directory: body.directory,
        oauth,
        effective_migrations: None,
    };
    control.create_endpoint(&endpoint).await?;
    Ok((StatusCode::CREATED, to_json(EndpointView::new(&endpoint))?))
}

/// `PATCH /api/v1/endpoints/{name}`: what is given changes; an empty
/// text clears an optional setting; the admin password is write-only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointChangeBody {
    url: Option<String>,
    allow_plaintext: Option<bool>,
    ca_file: Option<String>,
    tls_fingerprints: Option<Vec<String>>,
    admin_user: Option<String>,
    admin_mode: Option<flytt_store::AdminMode>,
    admin_password: Option<String>,
    max_concurrent_migrations: Option<u32>,
    max_concurrent_incremental_syncs: Option<u32>,
    connections_per_user: Option<u32>,
    compression: Option<flytt_store::Compression>,
    download_per_day: Option<NumberOrText>,
    sieve_url: Option<String>,
    dav_url: Option<String>,
    directory: Option<String>,
}

async fn change_endpoint(
    State(control): State<Control>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let body: EndpointChangeBody = parse_json(&body)?;
    let admin_password_sealed = match body.admin_password.as_deref() {
        Some(password) => Some(
            control
                .seal_admin_password(&name, &flytt_secrets::SecretString::new(password))
                .await?,
        ),
        None => None,
    };
    let download_limit = body
        .download_per_day
        .map(|limit| limit.text().parse())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("download_per_day {e}")))?;
    let change = flytt_control::endpoints::EndpointChange {
        url: body.url,
        allow_plaintext: body.allow_plaintext,
        ca_file: body.ca_file,
        tls_fingerprints: body.tls_fingerprints,
        admin_user: body.admin_user,
        admin_mode: body.admin_mode,
        admin_password_sealed,
        max_concurrent_migrations: body.max_concurrent_migrations,
        max_concurrent_incremental_syncs: body.max_concurrent_incremental_syncs,
        connections_per_user: body.connections_per_user,
        compression: body.compression,
        download_limit,
        sieve_url: body.sieve_url,
        dav_url: body.dav_url,
        directory: body.directory,
        oauth: None,
    };
    let endpoint = control.change_endpoint(&name, change).await?;
    to_json(EndpointView::new(&endpoint))
}

async fn remove_endpoint(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    control.store().remove_endpoint(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EndpointTestBody {
    /// Also log in as this user through the admin account.
    user: Option<String>,
}

/// `POST /api/v1/endpoints/{name}/test`: the outcome is in the answer
/// (`ok`, `error`), with status 200 either way.
async fn test_endpoint(
    State(control): State<Control>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let body: EndpointTestBody = if body.is_empty() {
        EndpointTestBody::default()
    } else {
        parse_json(&body)?
    };
    to_json(control.test_endpoint(&name, body.user.as_deref()).await?)
}

async fn list_directories(State(control): State<Control>) -> Result<Json, ApiError> {
    let directories = control.store().directories().await?;
    to_json(
        directories
            .iter()
            .map(DirectoryView::new)
            .collect::<Vec<_>>(),
    )
}

async fn show_directory(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    to_json(DirectoryView::new(&control.store().directory(&name).await?))
}

/// `POST /api/v1/directories`: an LDAP directory's settings as `directory
/// show --json` gives them (`kind`: `ldap`); the bind password is
/// write-only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDirectoryBody {
    name: String,
    /// A `Directory`'s settings; an LDAP directory's `name` is the body's.
    settings: serde_json::Map<String, serde_json::Value>,
    bind_password: Option<String>,
}

async fn create_directory(
    State(control): State<Control>,
    body: Bytes,
) -> Result<(StatusCode, Json), ApiError> {
    let body: NewDirectoryBody = parse_json(&body)?;
    let settings = ldap_directory(&body.name, body.settings)?;
    let password = body.bind_password.as_deref().map(SecretString::new);
    control
        .create_directory(&body.name, &settings, password.as_ref())
        .await?;
    Ok((
        StatusCode::CREATED,
        to_json(DirectoryView::new(
            &control.store().directory(&body.name).await?,
        ))?,
    ))
}

/// `PATCH /api/v1/directories/{name}`: an LDAP directory's settings laid
/// over the stored ones; a new bind password (write-only) replaces the
/// stored one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryChangeBody {
    #[serde(default)]
    settings: serde_json::Map<String, serde_json::Value>,
    bind_password: Option<String>,
}

async fn change_directory(
    State(control): State<Control>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let body: DirectoryChangeBody = parse_json(&body)?;
    let password = body.bind_password.as_deref().map(SecretString::new);
    control
        .change_directory(&name, body.settings, password.as_ref())
        .await?;
    to_json(DirectoryView::new(&control.store().directory(&name).await?))
}

async fn remove_directory(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    control.store().remove_directory(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/directories/{name}/test`: bind and read the base; with
/// `user`, look the address up. The outcome is in the answer.
async fn test_directory(
    State(control): State<Control>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let body: EndpointTestBody = if body.is_empty() {
        EndpointTestBody::default()
    } else {
        parse_json(&body)?
    };
    to_json(control.test_directory(&name, body.user.as_deref()).await?)
}

async fn batch_view(control: &Control, name: &str) -> Result<BatchView, ApiError> {
    let batch = control.store().batch(name).await?;
    Ok(BatchView::new(&batch))
}

async fn list_batches(State(control): State<Control>) -> Result<Json, ApiError> {
    let mut views = Vec::new();
    for batch in control.store().batches().await? {
        views.push(BatchView::new(&batch));
    }
    to_json(views)
}

async fn show_batch(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    to_json(batch_view(&control, &name).await?)
}

/// A number or a text (`"35MB"`, `"Unlimited"`), as administrators write them.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    fn text(&self) -> String {
        match self {
            NumberOrText::Number(n) => n.to_string(),
            NumberOrText::Text(t) => t.clone(),
        }
    }
}

/// `POST /api/v1/batches`: the batch's parameters (SPEC §3) and the CSV
/// file's text.
#[derive(Deserialize)]
struct NewBatchBody {
    name: String,
    #[serde(rename = "type")]
    batch_type: String,
    source_endpoint: String,
    target_endpoint: String,
    csv: String,
    /// Every other field is a parameter (`parameter_changes`).
    #[serde(flatten)]
    parameters: serde_json::Map<String, serde_json::Value>,
}

fn batch_type(text: &str) -> Result<BatchType, ApiError> {
    BatchType::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "type {text:?}: use imap, staged, onboarding or offboarding"
        ))
    })
}

/// Batch parameters from a JSON object (`notification_emails`, or as
/// Exchange spells them), as text for the one parser
/// (`BatchParameters::set`): strings as they are, numbers and booleans
/// spelled out, lists one item per line, null the default. A field that
/// names no parameter is refused.
fn parameter_changes(
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(Parameter, String)>, ApiError> {
    use serde_json::Value;
    fields
        .iter()
        .map(|(name, value)| {
            let parameter = Parameter::from_name(name)
                .ok_or_else(|| ApiError::bad_request(format!("unknown field {name:?}")))?;
            let text = match value {
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(format!("{s}\n")),
                        _ => Err(ApiError::bad_request(format!(
                            "{name}: a list of texts is expected"
                        ))),
                    })
                    .collect::<Result<String, ApiError>>()?,
                Value::Object(_) => {
                    return Err(ApiError::bad_request(format!(
                        "{name}: a text, number, true/false or list is expected"
                    )));
                }
            };
            Ok((parameter, text))
        })
        .collect()
}

impl NewBatchBody {
    fn into_request(self) -> Result<(BatchRequest, String), ApiError> {
        let changes = parameter_changes(&self.parameters)?;
        let parameters =
            BatchParameters::from_texts(changes.iter().map(|(p, text)| (*p, text.as_str())))
                .map_err(ApiError::from)?;
        let request = BatchRequest {
            name: self.name,
            batch_type: batch_type(&self.batch_type)?,
            source_endpoint: self.source_endpoint,
            target_endpoint: self.target_endpoint,
            parameters,
        };
        Ok((request, self.csv))
    }
}

/// `PATCH /api/v1/batches/{name}`: parameters to change (what the
/// batch's status allows; all or none).
async fn change_batch(
    State(control): State<Control>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let fields: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    let changes = parameter_changes(&fields)?;
    control.change_parameters(&name, &changes).await?;
    to_json(batch_view(&control, &name).await?)
}

async fn create_batch(
    State(control): State<Control>,
    body: Bytes,
) -> Result<(StatusCode, Json), ApiError> {
    let (request, csv) = parse_json::<NewBatchBody>(&body)?.into_request()?;
    let name = request.name.clone();
    control.create_batch(request, csv.as_bytes()).await?;
    Ok((
        StatusCode::CREATED,
        to_json(batch_view(&control, &name).await?)?,
    ))
}

/// 204 when the batch is gone; 202 when running syncs stop first (the
/// batch is Removing until a runner removes it).
async fn remove_batch(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    Ok(if control.remove(&name).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

async fn start_batch(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    let retried = control.start(&name).await?;
    action_answer(&control, &name, Some(retried)).await
}

async fn stop_batch(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    control.stop(&name).await?;
    action_answer(&control, &name, None).await
}

async fn complete_batch(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    control.complete(&name).await?;
    action_answer(&control, &name, None).await
}

async fn retry_batch(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    let retried = control.retry_failed(&name).await?;
    action_answer(&control, &name, Some(retried)).await
}

/// An action's answer: the batch as it is now, and how many failed users
/// were queued again (for start and retry).
async fn action_answer(
    control: &Control,
    name: &str,
    retried: Option<u64>,
) -> Result<Json, ApiError> {
    let mut answer = serde_json::to_value(batch_view(control, name).await?)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Some(retried) = retried {
        answer["retried"] = retried.into();
    }
    Ok(axum::Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvBody {
    csv: String,
}

async fn add_users(
    State(control): State<Control>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let body: CsvBody = parse_json(&body)?;
    let added = control.add_users(&name, body.csv.as_bytes()).await?;
    let mut answer = serde_json::to_value(batch_view(&control, &name).await?)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    answer["added"] = added.into();
    Ok(axum::Json(answer))
}

/// A page of a batch's users: `limit` of them after `cursor`, those whose
/// address contains `q`, in `status`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    q: Option<String>,
    status: Option<UserStatus>,
}

/// The most users one answer holds when a `limit` is asked for.
const MAX_USERS_PER_PAGE: u32 = 10_000;

async fn batch_users(
    State(control): State<Control>,
    Path(name): Path<String>,
    params: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    if params
        .limit
        .is_some_and(|l| l == 0 || l > MAX_USERS_PER_PAGE)
    {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_USERS_PER_PAGE}"
        )));
    }
    // The cursor is the last CSV line of the previous page.
    let after_line = match &params.cursor {
        Some(cursor) => Some(
            cursor
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("not a cursor this API gave"))?,
        ),
        None => None,
    };
    control.store().batch(&name).await?;
    if params.limit.is_none() {
        return Ok(all_users(
            control,
            name,
            params.status,
            params.q,
            after_line,
        ));
    }
    let users = control
        .store()
        .find_users(&flytt_store::UserFilter {
            batch: Some(&name),
            status: params.status,
            search: params.q.as_deref(),
            after_line,
            limit: params.limit,
            ..flytt_store::UserFilter::default()
        })
        .await?;
    // A full page may have a next one: RFC 8288's Link names it.
    let next = match (params.limit, users.last()) {
        (Some(limit), Some(last)) if users.len() == limit as usize => {
            let mut link = format!(
                "/api/v1/batches/{}/users?limit={limit}&cursor={}",
                utf8_percent_encode(&name, NON_ALPHANUMERIC),
                last.csv_line
            );
            let status = params.status.map(|s| s.to_string());
            for (key, value) in [("q", &params.q), ("status", &status)] {
                if let Some(value) = value {
                    link.push_str(&format!(
                        "&{key}={}",
                        utf8_percent_encode(value, NON_ALPHANUMERIC)
                    ));
                }
            }
            Some(format!("<{link}>; rel=\"next\""))
        }
        _ => None,
    };
    let body = to_json(users.iter().map(UserView::new).collect::<Vec<_>>())?;
    Ok(match next {
        Some(link) => ([(header::LINK, link)], body).into_response(),
        None => body.into_response(),
    })
}

/// Every user of a batch (no `limit`): the JSON array is written a page
/// at a time as the store gives them, so a batch of 50,000 users costs the
/// server a page of memory, not the whole answer.
fn all_users(
    control: Control,
    batch: String,
    status: Option<UserStatus>,
    search: Option<String>,
    after_line: Option<u64>,
) -> Response {
    const PAGE: u32 = 1_000;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut after = after_line;
        let mut first = true;
        if sender.send(Ok(Bytes::from_static(b"["))).await.is_err() {
            return;
        }
        loop {
            let page = control
                .store()
                .find_users(&flytt_store::UserFilter {
                    batch: Some(&batch),
                    status,
                    search: search.as_deref(),
                    after_line: after,
                    limit: Some(PAGE),
                    ..flytt_store::UserFilter::default()
                })
                .await;
            let users = match page {
                Ok(users) => users,
                Err(e) => {
                    // The status line is sent: end the body short, so the
                    // client sees a broken answer, not a complete one.
                    tracing::error!(error = %e, "cannot list a batch's users");
                    let _ = sender.send(Err(std::io::Error::other("store error"))).await;
                    return;
                }
            };
            let mut chunk = Vec::new();
            for user in &users {
                if !first {
                    chunk.push(b',');
                }
                first = false;
                if serde_json::to_writer(&mut chunk, &UserView::new(user)).is_err() {
                    let _ = sender.send(Err(std::io::Error::other("JSON"))).await;
                    return;
                }
            }
            if sender.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            match users.last() {
                Some(last) if users.len() == PAGE as usize => after = Some(last.csv_line),
                _ => break,
            }
        }
        let _ = sender.send(Ok(Bytes::from_static(b"]"))).await;
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn report(
    control: &Control,
    name: &str,
    which: &str,
    make: fn(&[flytt_store::BatchUser]) -> flytt_control::Result<Vec<u8>>,
) -> Result<Response, ApiError> {
    control.store().batch(name).await?;
    let users = control.store().batch_users(Some(name)).await?;
    Ok(csv_download(name, which, make(&users)?))
}

/// A CSV file to download as `<batch>-<which>.csv`.
fn csv_download(name: &str, which: &str, csv: Vec<u8>) -> Response {
    let file = format!("{}-{which}.csv", reports::file_stem(name));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        csv,
    )
        .into_response()
}

/// Asks for an analysis of the batch; a runner does it (202).
async fn request_analysis(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    control.request_analysis(&name).await?;
    let answer = serde_json::json!({ "batch": name, "state": "Requested" });
    Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
}

/// The batch's last analysis as far as it got; 404 when none was asked
/// for.
async fn last_analysis(
    control: &Control,
    name: &str,
) -> Result<flytt_batch::BatchAnalysis, ApiError> {
    control.analysis(name).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "batch {name} has not been analyzed (POST /api/v1/batches/{name}/analysis)"
        ))
    })
}

async fn show_analysis(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    to_json(last_analysis(&control, &name).await?)
}

async fn analysis_report(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let analysis = last_analysis(&control, &name).await?;
    Ok(csv_download(
        &name,
        "analysis",
        reports::analysis_report(&analysis)?,
    ))
}

async fn users_report(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    report(&control, &name, "users", reports::users_report).await
}

async fn errors_report(
    State(control): State<Control>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    report(&control, &name, "errors", reports::errors_report).await
}

async fn list_workers(State(control): State<Control>) -> Result<Json, ApiError> {
    let runners = control.store().runners().await?;
    to_json(runners.iter().map(WorkerView::new).collect::<Vec<_>>())
}

async fn show_user(
    State(control): State<Control>,
    Path(email): Path<String>,
) -> Result<Json, ApiError> {
    let user = control.store().user_by_email(&email).await?;
    let batch = control.store().batch(&user.batch).await?;
    to_json(UserView::new(&user).with_effective(&batch.parameters))
}

/// Which batch a user action means (default: the user's active batch).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    batch: Option<String>,
}

/// The user as it is after an action, and whether its running sync is
/// still to stop (`stopping`).
async fn user_answer(
    control: &Control,
    email: &str,
    batch: &str,
    outcome: &UserOutcome,
) -> Result<Json, ApiError> {
    let user = control
        .store()
        .find_users(&flytt_store::UserFilter {
            batch: Some(batch),
            email: Some(email),
            ..flytt_store::UserFilter::default()
        })
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no user {email:?} in batch {batch:?}")))?;
    let mut answer = serde_json::to_value(UserView::new(&user))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    answer["stopping"] = (*outcome == UserOutcome::Stopping).into();
    Ok(axum::Json(answer))
}

/// Does `action` to the user and answers with it as it is now.
async fn user_route(
    control: &Control,
    email: &str,
    which: Result<Query<UserQuery>, axum::extract::rejection::QueryRejection>,
    action: UserAction,
) -> Result<Json, ApiError> {
    let which = query(which)?;
    let user = control.user(email, which.batch.as_deref()).await?;
    let outcome = control
        .act_on_user(&user.email, Some(&user.batch), action)
        .await?;
    user_answer(control, &user.email, &user.batch, &outcome).await
}

/// `POST /api/v1/users/{email}/retry`: a failed or stopped user is queued.
async fn retry_user(
    State(control): State<Control>,
    Path(email): Path<String>,
    which: Result<Query<UserQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json, ApiError> {
    user_route(&control, &email, which, UserAction::Retry).await
}

/// `POST /api/v1/users/{email}/stop`: Stopped now, or (`stopping`) when
/// its running sync has ended at its next safe point.
async fn stop_user(
    State(control): State<Control>,
    Path(email): Path<String>,
    which: Result<Query<UserQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json, ApiError> {
    user_route(&control, &email, which, UserAction::Stop).await
}

/// `POST /api/v1/users/{email}/complete`: a synced user's final sync
/// before its batch's (`requested` says Complete until it ran).
async fn complete_user(
    State(control): State<Control>,
    Path(email): Path<String>,
    which: Result<Query<UserQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json, ApiError> {
    user_route(&control, &email, which, UserAction::Complete).await
}

/// `DELETE /api/v1/users/{email}`: 204 when removed, 202 when its running
/// sync stops first.
async fn remove_user(
    State(control): State<Control>,
    Path(email): Path<String>,
    which: Result<Query<UserQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let which = query(which)?;
    Ok(
        match control.remove_user(&email, which.batch.as_deref()).await? {
            UserOutcome::Removed => StatusCode::NO_CONTENT,
            _ => StatusCode::ACCEPTED,
        },
    )
}

/// `POST /api/v1/users/{email}/move`'s body: the batch it moves to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    batch: String,
}

/// `POST /api/v1/users/{email}/move`: into another batch of the same type
/// (a running user is refused: stop it first).
async fn move_user(
    State(control): State<Control>,
    Path(email): Path<String>,
    which: Result<Query<UserQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let which = query(which)?;
    let body: MoveBody = parse_json(&body)?;
    let user = control
        .move_user(&email, which.batch.as_deref(), &body.batch)
        .await?;
    let now = UserOutcome::Now(user.status);
    user_answer(&control, &user.email, &user.batch, &now).await
}

/// `PATCH /api/v1/users/{email}`'s body: new sign-in details; passwords
/// are write-only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChangeBody {
    user_name: Option<String>,
    password: Option<String>,
    target_user_name: Option<String>,
    target_password: Option<String>,
}

async fn change_user(
    State(control): State<Control>,
    Path(email): Path<String>,
    which: Result<Query<UserQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let which = query(which)?;
    let body: UserChangeBody = parse_json(&body)?;
    let login = NewLogin {
        user_name: body.user_name,
        password: body.password.as_deref().map(SecretString::new),
        target_user_name: body.target_user_name,
        target_password: body.target_password.as_deref().map(SecretString::new),
    };
    let user = control
        .change_login(&email, which.batch.as_deref(), login)
        .await?;
    let now = UserOutcome::Now(user.status);
    user_answer(&control, &user.email, &user.batch, &now).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    batch: Option<String>,
    email: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

impl EventQuery {
    fn filter(self) -> EventFilter {
        EventFilter {
            batch: self.batch,
            email: self.email,
            after: self.after,
            limit: self.limit,
        }
    }
}

/// Query strings that do not parse get the same JSON error as bodies.
fn query<T>(
    query: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

async fn list_events(
    State(control): State<Control>,
    params: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json, ApiError> {
    let events = control.store().events(&query(params)?.filter()).await?;
    to_json(events.iter().map(EventView::new).collect::<Vec<_>>())
}

/// How often the stream sends the batches' counters (when they moved), and
/// looks for events it was not woken for (another process writing the same
/// SQLite file).
const STREAM_TICK: Duration = Duration::from_secs(1);

/// The batches with their counters, read at most once a tick whatever the
/// number of streams.
#[derive(Default)]
pub struct SharedBatches {
    latest: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<flytt_store::BatchSummary>>)>>,
}

impl SharedBatches {
    async fn get(
        &self,
        store: &flytt_store::Store,
    ) -> flytt_store::Result<Arc<Vec<flytt_store::BatchSummary>>> {
        let mut latest = self.latest.lock().await;
        if let Some((read, batches)) = latest.as_ref()
            && read.elapsed() < STREAM_TICK
        {
            return Ok(batches.clone());
        }
        let batches = Arc::new(store.batches().await?);
        *latest = Some((std::time::Instant::now(), batches.clone()));
        Ok(batches)
    }
}

/// `GET /api/v1/events/stream`: server-sent events. Each log entry is an
/// `event: status` with the entry as JSON (its id as the SSE id, so a
/// client that reconnects can pass `after`); every tick in which a batch's
/// counters moved, an `event: progress` with the batch (status, per-status
/// counts, totals).
async fn stream_events(
    State(state): State<AppState>,
    params: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let AppState {
        control,
        mut stopping,
        batches: shared,
        event_streams,
        ..
    } = state;
    // Each stream holds a task and reads the store every tick: a bounded
    // number of them.
    let permit = event_streams.try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live event streams are open; close one or try again later",
        )
    })?;
    let mut filter = query(params)?.filter();
    filter.limit = None;
    if filter.after.is_none() {
        // Without a starting point, the stream starts now.
        let newest = control
            .store()
            .events(&EventFilter {
                limit: Some(1),
                ..EventFilter::default()
            })
            .await?;
        filter.after = Some(newest.last().map_or(0, |e| e.id));
    }
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        let _permit = permit;
        let mut last_progress: std::collections::HashMap<String, String> = Default::default();
        // Woken when events are written (LISTEN/NOTIFY on PostgreSQL), and
        // once a tick for the counters.
        let mut changes = control.store().changes();
        let mut next_progress = tokio::time::Instant::now();
        // Ids are handed out when an event is written, not when it commits:
        // with several runners on PostgreSQL an event may become visible
        // after one with a higher id. Each read goes back a window of ids
        // and skips those already sent.
        const LATE_WINDOW: i64 = 256;
        let floor = filter.after.unwrap_or(0);
        let mut highest = floor;
        let mut sent = std::collections::BTreeSet::new();
        loop {
            filter.after = Some(floor.max(highest - LATE_WINDOW));
            match control.store().events(&filter).await {
                Ok(events) => {
                    for event in &events {
                        if !sent.insert(event.id) {
                            continue;
                        }
                        highest = highest.max(event.id);
                        let data =
                            serde_json::to_string(&EventView::new(event)).unwrap_or_default();
                        let sse = SseEvent::default()
                            .event("status")
                            .id(event.id.to_string())
                            .data(data);
                        if sender.send(Ok(sse)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event stream cannot read the log"),
            }
            sent = sent.split_off(&(highest - LATE_WINDOW));
            let progress_due = tokio::time::Instant::now() >= next_progress;
            if progress_due {
                next_progress = tokio::time::Instant::now() + STREAM_TICK;
            }
            let batches = match progress_due {
                true => shared.get(control.store()).await.ok(),
                false => None,
            };
            if let Some(batches) = batches {
                for batch in batches.iter() {
                    if filter.batch.as_ref().is_some_and(|b| *b != batch.name) {
                        continue;
                    }
                    let view = BatchView::new(batch);
                    let data = serde_json::json!({
                        "batch": view.name,
                        "status": view.status,
                        "users": view.users,
                        "user_counts": view.user_counts,
                        "totals": view.totals,
                    })
                    .to_string();
                    if last_progress.get(&batch.name) == Some(&data) {
                        continue;
                    }
                    last_progress.insert(batch.name.clone(), data.clone());
                    let sse = SseEvent::default().event("progress").data(data);
                    if sender.send(Ok(sse)).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = sender.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
                Ok(()) = changes.changed() => {}
                _ = tokio::time::sleep_until(next_progress) => {}
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateQuery {
    #[serde(rename = "type")]
    batch_type: String,
}

/// `POST /api/v1/csv/validate?type=imap` with the CSV file as the body:
/// the same check as `batch new`, nothing stored.
async fn validate_csv(
    State(control): State<Control>,
    params: Result<Query<ValidateQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json, ApiError> {
    let batch_type = batch_type(&query(params)?.batch_type)?;
    let users = control.validate_csv(&body, batch_type).await?;
    Ok(axum::Json(
        serde_json::json!({ "valid": true, "users": users.len() }),
    ))
}
