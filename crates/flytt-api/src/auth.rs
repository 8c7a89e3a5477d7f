//! Bearer-token check in front of every route but the health check. A
//! wrong or missing token gets 401 and nothing else: no hint whether the
//! token existed.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use flytt_control::Control;

use crate::error::ApiError;
use crate::tokens;

pub async fn require_token(
    State(control): State<Control>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(tokens::PREFIX));
    let Some(token) = presented else {
        return Err(ApiError::unauthorized());
    };
    match control.store().token_by_hash(&tokens::hash(token)).await {
        Ok(Some(_name)) => Ok(next.run(request).await),
        Ok(None) => Err(ApiError::unauthorized()),
        Err(e) => Err(e.into()),
    }
}
