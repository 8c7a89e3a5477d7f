//! How failures answer: a status code and `{"error": "..."}`, with the
//! CSV's problems (line and message) when a file was refused. Internal
//! failures are logged and answered without detail.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flytt_control::ControlError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct Problem {
    line: u64,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[Problem]>::is_empty")]
    problems: &'a [Problem],
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized")
    }

    fn internal(error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server's log has the details",
        )
    }
}

impl From<flytt_store::Error> for ApiError {
    fn from(error: flytt_store::Error) -> ApiError {
        use flytt_store::Error::*;
        match error {
            NoSuchBatch(_)
            | NoSuchEndpoint(_)
            | NoSuchUser(_)
            | NoSuchUserInBatch { .. }
            | NoSuchDirectory(_)
            | NoSuchToken(_) => ApiError::not_found(error.to_string()),
            BatchExists(_)
            | EndpointExists(_)
            | EndpointInUse(_)
            | TokenExists(_)
            | UserInBatch { .. }
            | UserRunning(_)
            | DirectoryExists(_)
            | DirectoryInUse(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            other => ApiError::internal(&other),
        }
    }
}

impl From<flytt_batch::ParameterError> for ApiError {
    fn from(e: flytt_batch::ParameterError) -> ApiError {
        ApiError::bad_request(format!("{}: {}", e.parameter.field(), e.message))
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        match error {
            ControlError::Store(e) => e.into(),
            ControlError::InvalidCsv(errors) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("the CSV file has {}", flytt_control::problems(errors.len())),
                problems: errors
                    .into_iter()
                    .map(|e| Problem {
                        line: e.line,
                        message: e.message,
                    })
                    .collect(),
            },
            ControlError::InvalidParameter(message) => ApiError::bad_request(message),
            // Named as the API spells it.
            ControlError::Parameter(e) => ApiError::from(e),
            e @ (ControlError::WrongState { .. }
            | ControlError::UserWrongState { .. }
            | ControlError::ParameterLocked { .. }
            | ControlError::AnalysisRunning(_)) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            e @ (ControlError::Secrets(_)
            | ControlError::Report(_)
            | ControlError::OtherKey { .. }) => ApiError::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            problems: &self.problems,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
