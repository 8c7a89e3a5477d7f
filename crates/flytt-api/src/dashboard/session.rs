//! Dashboard sessions and CSRF tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::tokens;

pub const SESSION_COOKIE: &str = "flytt_session";
pub const LOGIN_CSRF_COOKIE: &str = "flytt_login_csrf";
/// A session ends after this long without a request,
const IDLE: Duration = Duration::from_secs(2 * 3600);
/// and this long after sign-in in any case.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins one client address may make per `SIGN_IN_WINDOW`.
const SIGN_IN_FAILURES: u32 = 10;
const SIGN_IN_WINDOW: Duration = Duration::from_secs(300);

/// A message for the next page (after a redirect).
#[derive(Clone, Debug)]
pub struct Flash {
    pub class: &'static str,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub csrf: String,
    /// The hash of the API token signed in with (none: the admin
    /// password): the session ends when the token is removed.
    pub token_hash: Option<String>,
    started: Instant,
    last_seen: Instant,
    flash: Option<Flash>,
}

impl Session {
    fn live(&self) -> bool {
        self.last_seen.elapsed() < IDLE && self.started.elapsed() < LIFETIME
    }
}

/// Failed sign-ins per client address, so that guessing a token or the
/// password from one address stops after a few tries.
#[derive(Default)]
pub struct SignInLimit {
    failures: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
}

impl SignInLimit {
    /// How long `address` must wait before its next try, if it is over the
    /// limit.
    pub fn wait(&self, address: std::net::IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().ok()?;
        let (since, count) = failures.get(&address)?;
        let left = SIGN_IN_WINDOW.saturating_sub(since.elapsed());
        (*count >= SIGN_IN_FAILURES && !left.is_zero()).then_some(left)
    }

    pub fn failed(&self, address: std::net::IpAddr) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.retain(|_, (since, _)| since.elapsed() < SIGN_IN_WINDOW);
            let entry = failures.entry(address).or_insert((Instant::now(), 0));
            entry.1 += 1;
        }
    }

    pub fn succeeded(&self, address: std::net::IpAddr) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&address);
        }
    }
}

/// Sessions by the hash of their id (the id itself is only in the cookie).
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

/// A random token for ids and CSRF: 256 bits, URL-safe.
pub fn random_token() -> Option<String> {
    tokens::generate().ok()
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Equal, without a timing that tells how much of it matched.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Starts a session (signed in with the API token whose hash is
    /// `token_hash`, or the password): (cookie value, session).
    pub fn start(&self, token_hash: Option<String>) -> Option<(String, Session)> {
        let id = random_token()?;
        let session = Session {
            csrf: random_token()?,
            token_hash,
            started: Instant::now(),
            last_seen: Instant::now(),
            flash: None,
        };
        let mut sessions = self.sessions.lock().ok()?;
        sessions.retain(|_, s| s.live());
        sessions.insert(tokens::hash(&id), session.clone());
        Some((id, session))
    }

    /// The session the request's cookie names, if it is live; its flash
    /// message is taken (shown once).
    pub fn current(&self, headers: &HeaderMap) -> Option<(Session, Option<Flash>)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        let key = tokens::hash(&id);
        let session = sessions.get_mut(&key)?;
        if !session.live() {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = Instant::now();
        let flash = session.flash.take();
        Some((session.clone(), flash))
    }

    pub fn set_flash(&self, headers: &HeaderMap, flash: Flash) {
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return;
        };
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(session) = sessions.get_mut(&tokens::hash(&id))
        {
            session.flash = Some(flash);
        }
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut sessions)) =
            (cookie(headers, SESSION_COOKIE), self.sessions.lock())
        {
            sessions.remove(&tokens::hash(&id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_and_compared_in_constant_time() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; flytt_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let sessions = Sessions::default();
        let (id, session) = sessions.start(None).expect("session");
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("{SESSION_COOKIE}={id}").parse().expect("header"),
        );
        let (found, _) = sessions.current(&headers).expect("live");
        assert_eq!(found.csrf, session.csrf);
        sessions.end(&headers);
        assert!(sessions.current(&headers).is_none());
    }
}
