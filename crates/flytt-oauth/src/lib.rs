//! OAuth 2.0 access tokens for IMAP logins (XOAUTH2, OAUTHBEARER).
//!
//! Gmail and Microsoft 365 take an access token instead of a password, and
//! a token lives about an hour, far less than a migration. A
//! `MailboxTokens` is one mailbox's token source (`flytt_imap::TokenSource`):
//! it asks the token endpoint for a token when a login needs one, keeps it
//! while it is valid, asks again a little before it expires or when the
//! server refused it. Three grants, as administrators have them:
//!
//! - **client credentials** (RFC 6749 §4.4): the application's own token,
//!   for servers that let an application open every mailbox (Microsoft
//!   365's app-only access);
//! - **a service account's signed assertion** (RFC 7523): a JWT signed with
//!   the account's private key whose `sub` is the user, one token per
//!   mailbox (Google Workspace's domain-wide delegation);
//! - **the user's refresh token** (RFC 6749 §6), from the batch's CSV.
//!
//! Secrets (client secret, private key, refresh and access tokens) never
//! reach a message: errors carry only what the token endpoint said about
//! them. A token endpoint is spoken to over HTTPS (plain HTTP only on the
//! loopback interface), trusting what the endpoint's TLS settings say.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flytt_imap::{Secret, TokenError, TokenFuture, TokenSource};
use serde::{Deserialize, Serialize};
use url::Url;

/// How long a token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a token endpoint's answer that is read.
const MAX_ANSWER: usize = 64 * 1024;
/// A token is renewed this long before it expires (at most a quarter of
/// its lifetime), so a login never presents one about to lapse.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A token endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("token URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("token endpoint TLS: {0}")]
    Tls(String),
    #[error("service account key: {0}")]
    Key(String),
}

/// Where and as which client flytt asks for tokens.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// The token endpoint (`https://oauth2.googleapis.com/token`,
    /// `https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`).
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Space-separated scopes (`https://mail.google.com/`,
    /// `https://outlook.office365.com/.default`); none: the endpoint's
    /// default.
    pub scope: Option<String>,
    pub trust: flytt_tls::Trust,
}

/// A token endpoint and the client flytt is there.
pub struct TokenEndpoint {
    url: Url,
    client_id: String,
    client_secret: Option<Secret>,
    scope: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    pub fn new(settings: ClientSettings) -> Result<TokenEndpoint, OAuthError> {
        let bad = |reason: &str| OAuthError::Url {
            url: settings.token_url.clone(),
            reason: reason.into(),
        };
        let url = Url::parse(&settings.token_url).map_err(|e| bad(&e.to_string()))?;
        let loopback = matches!(
            url.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || url.host_str() == Some("localhost");
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(bad(
                    "must be https (the client secret and tokens would cross the network in clear)",
                ));
            }
            _ => return Err(bad("must be an https URL")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not hold a user or password"));
        }
        let tls = flytt_tls::client_config(&settings.trust).map_err(OAuthError::Tls)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OAuthError::Tls(e.to_string()))?;
        Ok(TokenEndpoint {
            url,
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            scope: settings.scope,
            http,
        })
    }

    /// Asks for a token with `grant`'s form fields.
    async fn request(&self, grant: Vec<(&str, String)>) -> Result<Answer, TokenError> {
        let mut form = grant;
        form.push(("client_id", self.client_id.clone()));
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.expose().to_string()));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        let endpoint = self.url.as_str();
        let response = self
            .http
            .post(self.url.clone())
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError {
                // reqwest's errors name the URL, never the form.
                reason: format!("cannot reach the token endpoint {endpoint}: {e}"),
                transient: true,
            })?;
        let status = response.status();
        let body = read_limited(response).await.map_err(|reason| TokenError {
            reason: format!("the token endpoint {endpoint}: {reason}"),
            transient: true,
        })?;
        if status.is_success() {
            return serde_json::from_slice::<Answer>(&body).map_err(|e| TokenError {
                reason: format!("the token endpoint {endpoint} answered without a token: {e}"),
                transient: false,
            });
        }
        // RFC 6749 §5.2: `error` and `error_description`.
        let refusal: Refusal = serde_json::from_slice(&body).unwrap_or_default();
        let said = match (refusal.error, refusal.error_description) {
            (Some(error), Some(description)) => format!("{error} ({description})"),
            (Some(error), None) => error,
            _ => format!("HTTP {status}"),
        };
        let transient = status.is_server_error() || status.as_u16() == 429;
        Err(TokenError {
            reason: format!("the token endpoint {endpoint} refused: {said}"),
            transient,
        })
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("an answer of more than {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    /// Seconds; an endpoint that does not say is taken to give an hour.
    expires_in: Option<u64>,
    /// A new refresh token, where the endpoint rotates them.
    refresh_token: Option<String>,
}

#[derive(Default, Deserialize)]
struct Refusal {
    error: Option<String>,
    error_description: Option<String>,
}

/// How a mailbox's tokens are had.
#[derive(Clone)]
pub enum Grant {
    /// The application's own token (client credentials).
    ClientCredentials,
    /// A service account's assertion for the user (RFC 7523).
    ServiceAccount(Arc<ServiceAccountKey>),
    /// The user's refresh token.
    RefreshToken(Secret),
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grant::ClientCredentials => "ClientCredentials",
            Grant::ServiceAccount(_) => "ServiceAccount",
            Grant::RefreshToken(_) => "RefreshToken(***)",
        })
    }
}

/// A service account's key, as Google hands it out (a JSON file with
/// `client_email`, `private_key` in PEM, `private_key_id`).
pub struct ServiceAccountKey {
    client_email: String,
    key_id: Option<String>,
    key: jsonwebtoken::EncodingKey,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
}

impl ServiceAccountKey {
    /// Reads Google's JSON key file.
    pub fn from_json(text: &str) -> Result<ServiceAccountKey, OAuthError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| {
            // serde's message may quote the file; say only where it broke.
            OAuthError::Key(format!(
                "not a service account key file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|_| OAuthError::Key("private_key is not an RSA key in PEM".into()))?;
        Ok(ServiceAccountKey {
            client_email: file.client_email,
            key_id: file.private_key_id,
            key,
        })
    }

    /// The assertion that asks `audience` (the token endpoint) for a token
    /// for `user`'s mailbox with `scope`, valid for an hour.
    fn assertion(&self, audience: &str, scope: Option<&str>, user: &str) -> Result<String, String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            scope: Option<&'a str>,
            iat: u64,
            exp: u64,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.client_email,
            sub: user,
            aud: audience,
            scope,
            iat: now,
            exp: now + 3600,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| e.to_string())
    }
}

/// One mailbox's tokens: fetched when a login needs one, kept while
/// valid, renewed before they expire or when a server refused one.
pub struct MailboxTokens {
    endpoint: Arc<TokenEndpoint>,
    grant: Grant,
    user: String,
    state: tokio::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    token: Option<(Secret, Instant)>,
    /// The refresh token the endpoint gave last, where it rotates them.
    rotated: Option<Secret>,
}

impl MailboxTokens {
    pub fn new(endpoint: Arc<TokenEndpoint>, grant: Grant, user: &str) -> MailboxTokens {
        MailboxTokens {
            endpoint,
            grant,
            user: user.to_string(),
            state: tokio::sync::Mutex::new(Held::default()),
        }
    }

    async fn fetch(&self, held: &mut Held) -> Result<Secret, TokenError> {
        let fields = match &self.grant {
            Grant::ClientCredentials => vec![("grant_type", "client_credentials".to_string())],
            Grant::RefreshToken(token) => {
                let token = held.rotated.as_ref().unwrap_or(token);
                vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", token.expose().to_string()),
                ]
            }
            Grant::ServiceAccount(key) => {
                let assertion = key
                    .assertion(
                        self.endpoint.url.as_str(),
                        self.endpoint.scope.as_deref(),
                        &self.user,
                    )
                    .map_err(|e| TokenError {
                        reason: format!("cannot sign the assertion: {e}"),
                        transient: false,
                    })?;
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                    ),
                    ("assertion", assertion),
                ]
            }
        };
        let answer = self.endpoint.request(fields).await?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let renew_at = Instant::now() + lifetime - RENEW_BEFORE.min(lifetime / 4);
        let token = Secret::new(answer.access_token);
        if let Some(rotated) = answer.refresh_token {
            held.rotated = Some(Secret::new(rotated));
        }
        held.token = Some((token.clone(), renew_at));
        tracing::debug!(user = %self.user, grant = ?self.grant, seconds = lifetime.as_secs(), "new OAuth access token");
        Ok(token)
    }
}

impl TokenSource for MailboxTokens {
    fn token(&self, renew: bool) -> TokenFuture<'_> {
        Box::pin(async move {
            // One request at a time per mailbox: the connections of one
            // sync share the token.
            let mut held = self.state.lock().await;
            if !renew
                && let Some((token, renew_at)) = &held.token
                && Instant::now() < *renew_at
            {
                return Ok(token.clone());
            }
            self.fetch(&mut held).await
        })
    }
}

/// An OAuth client as an endpoint or `flytt sync` configures it: the token
/// endpoint, and the service account's key where it has one. Which grant
/// a mailbox's tokens come by is decided here, once: the user's own
/// refresh token where there is one, else the service account's assertion
/// for the user, else the client's credentials.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    endpoint: Arc<TokenEndpoint>,
    service_account: Option<Arc<ServiceAccountKey>>,
}

impl OAuthClient {
    pub fn new(
        settings: ClientSettings,
        service_account: Option<ServiceAccountKey>,
    ) -> Result<OAuthClient, OAuthError> {
        Ok(OAuthClient {
            endpoint: Arc::new(TokenEndpoint::new(settings)?),
            service_account: service_account.map(Arc::new),
        })
    }

    /// The token source for `user`'s mailbox.
    pub fn tokens(&self, user: &str, refresh_token: Option<Secret>) -> Arc<MailboxTokens> {
        let grant = match (refresh_token, &self.service_account) {
            (Some(token), _) => Grant::RefreshToken(token),
            (None, Some(key)) => Grant::ServiceAccount(key.clone()),
            (None, None) => Grant::ClientCredentials,
        };
        Arc::new(MailboxTokens::new(self.endpoint.clone(), grant, user))
    }
}
