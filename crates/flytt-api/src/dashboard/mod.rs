//! The web dashboard: server-rendered pages (askama templates in
//! `templates/`), live tables refreshed by htmx (vendored in `static/`), no
//! JavaScript build. It changes batches through flytt-control like the CLI
//! and the API.
//!
//! Sign-in takes an API token or the admin password from the config file
//! and starts a session (an HttpOnly, SameSite=Strict cookie naming a
//! random id; sessions live in memory, so a restart signs everyone out).
//! Every form carries the session's CSRF token, and every POST checks it;
//! the sign-in form uses a double-submit cookie instead.

mod directory_pages;
mod endpoint_pages;
mod pages;
mod session;
mod user_page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use session::Sessions;

use crate::routes::AppState;

/// The dashboard's settings (the `[dashboard]` section of the config file).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// A file holding the admin password, accepted at sign-in besides API
    /// tokens.
    pub password_file: Option<std::path::PathBuf>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/", get(pages::batches))
        .route("/partials/batches", get(pages::batch_rows))
        .route(
            "/batches/new",
            get(pages::new_batch_page).post(pages::create_batch),
        )
        .route("/partials/batch-name", get(pages::batch_name_check))
        .route("/csv-template/{batch_type}", get(pages::csv_template))
        .route("/batches/{name}", get(pages::batch))
        .route("/partials/batches/{name}", get(pages::batch_live))
        .route("/batches/{name}/{action}", post(pages::batch_action))
        .route("/batches/{name}/users/{email}", get(user_page::user))
        .route(
            "/batches/{name}/selected-users",
            post(pages::bulk_user_action),
        )
        .route(
            "/batches/{name}/users/{email}/{action}",
            post(pages::user_action),
        )
        .route(
            "/batches/{name}/users/{email}/login",
            post(user_page::change_login),
        )
        .route("/batches/{name}/reports/{file}", get(pages::report))
        .route(
            "/endpoints",
            get(endpoint_pages::endpoints).post(endpoint_pages::create_endpoint),
        )
        .route("/endpoints/{name}", get(endpoint_pages::endpoint))
        .route(
            "/endpoints/{name}/test",
            post(endpoint_pages::test_endpoint),
        )
        .route(
            "/endpoints/{name}/change",
            post(endpoint_pages::change_endpoint),
        )
        .route(
            "/endpoints/{name}/remove",
            post(endpoint_pages::remove_endpoint),
        )
        .route(
            "/directories",
            get(directory_pages::directories).post(directory_pages::create_directory),
        )
        .route("/directories/{name}", get(directory_pages::directory))
        .route(
            "/directories/{name}/test",
            post(directory_pages::test_directory),
        )
        .route(
            "/directories/{name}/change",
            post(directory_pages::change_directory),
        )
        .route(
            "/directories/{name}/remove",
            post(directory_pages::remove_directory),
        )
        .route("/static/{file}", get(asset))
}

const CSS: &str = include_str!("../../static/flytt.css");
const HTMX: &str = include_str!("../../static/htmx-2.0.11.min.js");
const SCRIPT: &str = include_str!("../../static/flytt.js");

/// The vendored assets: no CDN, nothing fetched by the browser elsewhere.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "flytt.css" => (CSS, "text/css; charset=utf-8"),
        "htmx-2.0.11.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "flytt.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return pages::not_found().await,
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's part of the server state.
pub struct DashboardState {
    pub sessions: Sessions,
    pub admin_password: Option<String>,
    /// Cookies are `Secure` (the dashboard is served behind TLS).
    pub secure_cookies: bool,
    /// Failed sign-ins per client address.
    pub sign_ins: session::SignInLimit,
}

impl DashboardState {
    pub fn new(admin_password: Option<String>, secure_cookies: bool) -> Arc<DashboardState> {
        Arc::new(DashboardState {
            sessions: Sessions::default(),
            admin_password,
            secure_cookies,
            sign_ins: session::SignInLimit::default(),
        })
    }

    /// A `Set-Cookie` value: HttpOnly and SameSite=Strict always, `Secure`
    /// when configured or when the request came over TLS through a proxy
    /// (`X-Forwarded-Proto: https`).
    pub fn cookie(
        &self,
        request: &axum::http::HeaderMap,
        name: &str,
        value: &str,
        path: &str,
        max_age_secs: u64,
    ) -> Option<axum::http::HeaderValue> {
        let over_tls = request
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        let secure = if self.secure_cookies || over_tls {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        )
        .parse()
        .ok()
    }
}

/// Unknown pages: an HTML page for people, not JSON.
pub async fn fallback(State(_state): State<AppState>) -> Response {
    let mut response = pages::not_found().await;
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
