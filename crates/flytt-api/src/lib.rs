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
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The dashboard's admin password (besides API tokens), if configured.
    pub dashboard_password: Option<String>,
    /// Mark the dashboard's cookies `Secure` (served behind a TLS proxy);
    /// also done for a request that says `X-Forwarded-Proto: https`.
    pub secure_cookies: bool,
    /// How long a client may take to send a request's headers, and how
    /// long a kept-alive connection may sit idle before its next request.
    pub header_read_timeout: std::time::Duration,
    /// Live event streams (`/api/v1/events/stream`) open at once at most.
    pub max_event_streams: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            dashboard_password: None,
            secure_cookies: false,
            header_read_timeout: std::time::Duration::from_secs(30),
            max_event_streams: 64,
        }
    }
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
        dashboard: dashboard::DashboardState::new(
            options.dashboard_password.clone(),
            options.secure_cookies,
        ),
        batches: Default::default(),
        event_streams: std::sync::Arc::new(tokio::sync::Semaphore::new(options.max_event_streams)),
    })
}

/// How long requests under way get to finish after `shutdown`.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the API on `listener` until `shutdown` resolves; requests under
/// way get a few seconds to finish, live streams end at once.
///
/// Each connection is served by hyper's HTTP/1 server with a timer, so a
/// client that sends its headers too slowly, or keeps a connection idle,
/// is cut off after `header_read_timeout` (a connection is not a free
/// resource). The peer's address goes with each request (`ConnectInfo`)
/// for the sign-in rate limit.
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
    let app = router(control, &options, stopping.clone());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, or a connection reset before it
                // was accepted: wait a little rather than spin or stop.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = until(stopping.clone()) => break,
        };
        while connections.try_join_next().is_some() {}
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), request)
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
        let stopping = stopping.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = until(stopping) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(GRACE, connection).await;
                }
            }
        });
    }
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
