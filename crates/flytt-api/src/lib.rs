//! flytt's HTTP surface (SPEC §9): `GET /healthz`, `GET /metrics`, the JSON
//! API under `/api/v1/` described by `/api/v1/openapi.json` (the file
//! `openapi.json` beside this crate, kept true by a test that calls every
//! documented route), and the web dashboard at `/` (module `dashboard`).
//!
//! Every request but the health check carries `Authorization: Bearer
//! TOKEN`; tokens are made by `flytt token new` and kept hashed. Every change
//! goes through flytt-control, so the API and the CLI follow the same rules;
//! the job runner, in the same process (`flytt serve`) or another, acts on
//! what is stored. Passwords are write-only: no answer contains one.

mod auth;
mod dashboard;
mod error;
mod metrics;
mod routes;
pub mod tokens;

use std::future::Future;

use flytt_control::Control;

pub use dashboard::DashboardConfig;
pub use error::ApiError;

/// What `serve` needs besides the store.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// The dashboard's admin password (besides API tokens), if configured.
    pub dashboard_password: Option<String>,
}

/// The largest request body: a CSV file of 50,000 rows with long values.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The API's routes over `control`'s store; `stopping` turns true when the
/// server shuts down (live streams end then).
pub fn router(
    control: Control,
    options: &ServeOptions,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> axum::Router {
    routes::router(routes::AppState {
        control,
        stopping,
        dashboard: dashboard::DashboardState::new(options.dashboard_password.clone()),
        batches: Default::default(),
    })
}

/// How long requests under way get to finish after `shutdown`.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the API on `listener` until `shutdown` resolves; requests under
/// way get a few seconds to finish, live streams end at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Control,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let server = axum::serve(listener, router(control, &options, stopping.clone()))
        .with_graceful_shutdown(until(stopping.clone()));
    let deadline = async {
        until(stopping).await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        served = server => served,
        _ = deadline => Ok(()),
    }
}
