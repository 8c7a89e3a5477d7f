//! Where an OAuth login's access token comes from.
//!
//! An access token lives about an hour; a migration, many. A login made
//! with `OAuthToken::Refreshing` asks its `TokenSource` for a token at each
//! login (every new connection, every reconnection after a cut), so a
//! token that expired in the middle of a sync is never presented again,
//! and one the server refuses is renewed once and the login tried again.
//! Getting tokens (HTTP, client secrets, signed assertions) is the
//! implementor's business: see the flytt-oauth crate.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::types::Secret;

/// An OAuth login's access token.
#[derive(Clone)]
pub enum OAuthToken {
    /// A token given as is (`flytt sync --source-auth xoauth2` with a
    /// token file): used until the server refuses it.
    Fixed(Secret),
    /// Tokens fetched, cached and renewed by a token source.
    Refreshing(Arc<dyn TokenSource>),
}

impl OAuthToken {
    /// A token to present; `renew` when the server refused the last one.
    pub(crate) async fn get(&self, renew: bool) -> Result<Secret, TokenError> {
        match self {
            OAuthToken::Fixed(token) => Ok(token.clone()),
            OAuthToken::Refreshing(source) => source.token(renew).await,
        }
    }

    /// Whether a refused token may be replaced by another.
    pub(crate) fn renews(&self) -> bool {
        matches!(self, OAuthToken::Refreshing(_))
    }
}

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OAuthToken::Fixed(_) => f.write_str("OAuthToken::Fixed(***)"),
            OAuthToken::Refreshing(_) => f.write_str("OAuthToken::Refreshing"),
        }
    }
}

/// A future returned by `TokenSource::token`.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Secret, TokenError>> + Send + 'a>>;

/// Something that hands out access tokens for one mailbox.
pub trait TokenSource: Send + Sync {
    /// A token that is still valid for a while; with `renew`, a new one
    /// whatever the cache holds (the server refused the last).
    fn token(&self, renew: bool) -> TokenFuture<'_>;
}

/// No token could be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TokenError {
    /// What the token endpoint said, or why it could not be asked; never
    /// a secret.
    pub reason: String,
    /// Whether a later try may succeed (an unreachable or busy token
    /// endpoint), as opposed to a refused grant (a revoked refresh token,
    /// a wrong client secret).
    pub transient: bool,
}
