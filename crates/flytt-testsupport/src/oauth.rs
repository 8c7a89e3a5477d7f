//! An OAuth authorization server on loopback: a token endpoint (`POST
//! /token`: refresh tokens, client credentials, RFC 7523 JWT assertions)
//! that issues short-lived access tokens, and the token-introspection
//! endpoint Dovecot's `oauth2` passdb asks (`GET /tokeninfo?access_token=`:
//! `{"email": USER}` for a token it issued that has not expired or been
//! revoked, 401 otherwise). So XOAUTH2 and OAUTHBEARER logins, expiry and
//! renewal are checked by a real server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Result, io};

/// What the token endpoint accepts.
#[derive(Clone, Debug, Default)]
pub struct Issuer {
    pub client_id: String,
    pub client_secret: String,
    /// How long an access token lives.
    pub lifetime: Duration,
    /// Refresh tokens and whose mailbox their access tokens open.
    pub refresh_tokens: Vec<(String, String)>,
    /// Client credentials: whose mailbox the application's token opens
    /// (Dovecot compares the token's user with the login's).
    pub app_user: Option<String>,
    /// A service account: its `client_email` and its public key (PEM);
    /// an assertion's `sub` is the user.
    pub service_account: Option<(String, String)>,
}

#[derive(Default)]
struct State {
    issuer: Issuer,
    /// Access token → (user, expiry; `None`: never).
    access: HashMap<String, (String, Option<Instant>)>,
    issued: usize,
    /// Every token request's grant type, in order.
    grants: Vec<String>,
}

/// A running server; stops when dropped.
pub struct TokenServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    /// Knows one access token, forever, and issues none.
    pub async fn start(token: &str, user: &str) -> Result<TokenServer> {
        let server = Self::issuing(Issuer::default()).await?;
        server
            .lock()
            .access
            .insert(token.to_string(), (user.to_string(), None));
        Ok(server)
    }

    /// Issues access tokens as `issuer` says.
    pub async fn issuing(issuer: Issuer) -> Result<TokenServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind token server"))?;
        let port = listener
            .local_addr()
            .map_err(io("token server address"))?
            .port();
        let state = Arc::new(Mutex::new(State {
            issuer,
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, state).await;
                });
            }
        });
        Ok(TokenServer { port, state, task })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// How many access tokens were issued.
    pub fn issued(&self) -> usize {
        self.lock().issued
    }

    /// The grant types asked for, in order.
    pub fn grants(&self) -> Vec<String> {
        self.lock().grants.clone()
    }

    /// Forgets every access token issued so far (as a provider does when
    /// it revokes a session): the next login with one is refused.
    pub fn revoke_access_tokens(&self) {
        self.lock().access.clear();
    }

    /// Forgets a refresh token: asking with it is `invalid_grant`.
    pub fn revoke_refresh_token(&self, token: &str) {
        self.lock()
            .issuer
            .refresh_tokens
            .retain(|(t, _)| t != token);
    }

    /// Dovecot configuration using this endpoint; `dir` receives the
    /// oauth2 settings file.
    pub fn dovecot_config(&self, dir: &std::path::Path) -> Result<String> {
        let file = dir.join("dovecot-oauth2.conf.ext");
        std::fs::write(
            &file,
            format!(
                "tokeninfo_url = http://127.0.0.1:{}/tokeninfo?access_token=\nusername_attribute = email\n",
                self.port
            ),
        )
        .map_err(io("write oauth2 settings"))?;
        Ok(format!(
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
            file.display()
        ))
    }
}

/// Reads one request (headers and a Content-Length body) and answers it.
async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let (head, body) = loop {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..n]);
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&request[..end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        if request.len() >= end + 4 + length {
            let body = request[end + 4..end + 4 + length].to_vec();
            break (head, body);
        }
    };
    let line = head.lines().next().unwrap_or_default().to_string();
    let (status, answer) = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if line.starts_with("POST /token ") {
            token_request(&mut state, &body)
        } else {
            introspect(&state, &line)
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

fn introspect(state: &State, line: &str) -> (&'static str, String) {
    let token = line
        .split_once("access_token=")
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or_default();
    match state.access.get(token) {
        Some((user, expiry)) if expiry.is_none_or(|e| Instant::now() < e) => (
            "200 OK",
            serde_json::json!({"email": user, "active": true}).to_string(),
        ),
        _ => (
            "401 Unauthorized",
            "{\"error\":\"invalid_token\"}".to_string(),
        ),
    }
}

fn token_request(state: &mut State, body: &[u8]) -> (&'static str, String) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let refuse = |status: &'static str, error: &str, description: &str| {
        (
            status,
            serde_json::json!({"error": error, "error_description": description}).to_string(),
        )
    };
    state.grants.push(field("grant_type").to_string());
    let issuer = &state.issuer;
    if field("client_id") != issuer.client_id || field("client_secret") != issuer.client_secret {
        return refuse("401 Unauthorized", "invalid_client", "unknown client");
    }
    let user = match field("grant_type") {
        "refresh_token" => issuer
            .refresh_tokens
            .iter()
            .find(|(t, _)| t == field("refresh_token"))
            .map(|(_, user)| user.clone()),
        "client_credentials" => issuer.app_user.clone(),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => issuer
            .service_account
            .as_ref()
            .and_then(|(email, key)| asserted_user(field("assertion"), email, key, "/token")),
        _ => return refuse("400 Bad Request", "unsupported_grant_type", ""),
    };
    let Some(user) = user else {
        return refuse(
            "400 Bad Request",
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    };
    state.issued += 1;
    let token = format!("ya29.test-{}-{}", state.issued, std::process::id());
    let lifetime = state.issuer.lifetime;
    state
        .access
        .insert(token.clone(), (user, Some(Instant::now() + lifetime)));
    (
        "200 OK",
        serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
        })
        .to_string(),
    )
}

/// The `sub` of an RS256 assertion signed by `key` whose issuer is `email`
/// and whose audience ends with `audience_path`.
fn asserted_user(assertion: &str, email: &str, key: &str, audience_path: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
        sub: String,
        aud: String,
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(key.as_bytes()).ok()?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
        .ok()?
        .claims;
    (claims.iss == email && claims.aud.ends_with(audience_path)).then_some(claims.sub)
}
