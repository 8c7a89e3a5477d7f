//! The directories' pages: the list with a form for a new LDAP directory,
//! and one directory's page with its settings, the endpoints that name it,
//! its test and its removal. A command hook is a program this server would
//! run, so it is added only with the server's CLI
//! (`flytt_control::directories::ldap_directory` is the rule, shared with
//! the API).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use flytt_control::ControlError;
use flytt_control::directories::{DirectoryTest, DirectoryView, UserState, ldap_directory};
use flytt_secrets::SecretString;
use flytt_store::{Endpoint, StoredDirectory};

use super::endpoint_pages::{flash_to, is_internal, removal_said};
use super::pages::{Page, failure, form_session, link, render, signed_in, to_login};
use crate::routes::AppState;

/// A directory as the pages show it.
struct DirectoryRow {
    name: String,
    link: String,
    /// `ldap` or `hook`.
    kind: String,
    /// The LDAP server's URL, or the hook's program.
    location: String,
    /// Its settings but the kind and name, as `setting: value` lines.
    settings: Vec<(String, String)>,
    bind_password_set: bool,
    /// The endpoints that name it.
    used_by: Vec<String>,
}

impl DirectoryRow {
    fn new(stored: &StoredDirectory, endpoints: &[Endpoint]) -> DirectoryRow {
        let view = DirectoryView::new(stored);
        let setting = |key: &str| {
            view.settings
                .get(key)
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        let kind = setting("kind");
        let location = if kind == "ldap" {
            setting("url")
        } else {
            setting("program")
        };
        let settings = view
            .settings
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| !matches!(key.as_str(), "kind" | "name"))
            .map(|(key, value)| {
                let text = value
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| value.to_string());
                (key.clone(), text)
            })
            .collect();
        DirectoryRow {
            link: link(&view.name),
            kind,
            location,
            settings,
            bind_password_set: view.bind_password_set,
            used_by: endpoints
                .iter()
                .filter(|e| e.directory.as_deref() == Some(view.name.as_str()))
                .map(|e| e.name.clone())
                .collect(),
            name: view.name,
        }
    }
}

/// The new LDAP directory form, as sent (its bind password never).
#[derive(Clone, Debug, Default)]
struct DirectoryForm {
    name: String,
    url: String,
    bind_dn: String,
    base_dn: String,
    user_filter: String,
    ca_file: String,
    allow_plaintext: bool,
    mailbox_attribute: String,
    forwarding_attribute: String,
    must_change_attribute: String,
}

impl DirectoryForm {
    fn read(fields: &HashMap<String, String>) -> DirectoryForm {
        let text = |key: &str| {
            fields
                .get(key)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        DirectoryForm {
            name: text("name"),
            url: text("url"),
            bind_dn: text("bind_dn"),
            base_dn: text("base_dn"),
            user_filter: text("user_filter"),
            ca_file: text("ca_file"),
            allow_plaintext: fields.contains_key("allow_plaintext"),
            mailbox_attribute: text("mailbox_attribute"),
            forwarding_attribute: text("forwarding_attribute"),
            must_change_attribute: text("must_change_attribute"),
        }
    }

    /// The form of a stored directory's settings.
    fn of(stored: &StoredDirectory) -> DirectoryForm {
        let settings: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&stored.settings).unwrap_or_default();
        let text = |key: &str| {
            settings
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        DirectoryForm {
            name: stored.name.clone(),
            url: text("url"),
            bind_dn: text("bind_dn"),
            base_dn: text("base_dn"),
            user_filter: text("user_filter"),
            ca_file: settings
                .get("ca_files")
                .and_then(|v| v.get(0))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            allow_plaintext: settings
                .get("allow_plaintext")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            mailbox_attribute: text("mailbox_attribute"),
            forwarding_attribute: text("forwarding_attribute"),
            must_change_attribute: text("must_change_attribute"),
        }
    }

    /// The settings as the API takes them: a field left empty takes the
    /// directory's default (a new one) or keeps what is stored (a change).
    fn settings(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut settings = self.changes();
        settings.insert("kind".into(), "ldap".into());
        settings
    }

    /// The settings to lay over a stored directory's.
    fn changes(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut settings = serde_json::Map::new();
        settings.insert("allow_plaintext".into(), self.allow_plaintext.into());
        for (key, value) in [
            ("url", &self.url),
            ("bind_dn", &self.bind_dn),
            ("base_dn", &self.base_dn),
            ("user_filter", &self.user_filter),
            ("mailbox_attribute", &self.mailbox_attribute),
            ("forwarding_attribute", &self.forwarding_attribute),
            ("must_change_attribute", &self.must_change_attribute),
        ] {
            if !value.is_empty() {
                settings.insert(key.into(), value.clone().into());
            }
        }
        if !self.ca_file.is_empty() {
            settings.insert("ca_files".into(), vec![self.ca_file.clone()].into());
        }
        settings
    }
}

#[derive(Template)]
#[template(path = "directories.html")]
struct DirectoriesPage {
    page: Page,
    directories: Vec<DirectoryRow>,
    form: DirectoryForm,
    error: Option<String>,
}

async fn directories_page(
    state: &AppState,
    page: Page,
    form: DirectoryForm,
    error: Option<String>,
) -> Response {
    let store = state.control.store();
    let listed = async {
        Ok::<_, flytt_store::Error>((store.directories().await?, store.endpoints().await?))
    };
    match listed.await {
        Ok((directories, endpoints)) => {
            let mut response = render(&DirectoriesPage {
                page,
                directories: directories
                    .iter()
                    .map(|d| DirectoryRow::new(d, &endpoints))
                    .collect(),
                form,
                error: error.clone(),
            });
            if error.is_some() {
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            response
        }
        Err(e) => failure(e),
    }
}

/// `GET /directories`.
pub async fn directories(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((session, flash)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let form = DirectoryForm {
        user_filter: "(mail={email})".into(),
        ..DirectoryForm::default()
    };
    let page = Page::new(&session, flash, "directories");
    directories_page(&state, page, form, None).await
}

/// `POST /directories`: an LDAP directory created, or the list again with
/// the form as sent and what is wrong.
pub async fn create_directory(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let session = match form_session(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let sent = DirectoryForm::read(&form);
    let created = async {
        if sent.name.is_empty() {
            return Err(ControlError::InvalidParameter(
                "give the directory a name".into(),
            ));
        }
        let directory = ldap_directory(&sent.name, sent.settings())?;
        let password = form
            .get("bind_password")
            .filter(|p| !p.is_empty())
            .map(SecretString::new);
        state
            .control
            .create_directory(&sent.name, &directory, password.as_ref())
            .await
    };
    match created.await {
        Ok(()) => {
            let text = format!(
                "Directory {} created. Test it with an address, then name it on the endpoints whose users it holds.",
                sent.name
            );
            let to = format!("/directories/{}", link(&sent.name));
            flash_to(&state, &headers, "ok", text, &to)
        }
        Err(e) if !is_internal(&e) => {
            let page = Page::new(&session, None, "directories");
            directories_page(&state, page, sent, Some(e.to_string())).await
        }
        Err(e) => failure(e),
    }
}

#[derive(Template)]
#[template(path = "directory.html")]
struct DirectoryPage {
    page: Page,
    d: DirectoryRow,
    user: String,
    test: Option<DirectoryTest>,
    /// The change form: the stored settings.
    form: DirectoryForm,
    /// What the test found of the address asked about, in a sentence.
    lookup: Option<String>,
}

/// What a test found of `user`, in a sentence (nothing without one).
fn lookup_words(user: &str, test: &DirectoryTest) -> Option<String> {
    if user.is_empty() || !test.ok {
        return None;
    }
    Some(match &test.user {
        None => format!("{user} is not in the directory."),
        Some(found) => {
            let state = match found.state {
                UserState::Mailbox => "it has a mailbox",
                UserState::MailUser => "a mail user (no mailbox yet)",
            };
            let forwarding = if found.forwarding.is_empty() {
                String::new()
            } else {
                format!(", forwarding to {}", found.forwarding.join(", "))
            };
            format!("{user} is {}: {state}{forwarding}.", found.id)
        }
    })
}

async fn directory_page(
    state: &AppState,
    page: Page,
    name: &str,
    test: Option<(String, DirectoryTest)>,
) -> Response {
    let store = state.control.store();
    let found = async {
        Ok::<_, flytt_store::Error>((store.directory(name).await?, store.endpoints().await?))
    };
    match found.await {
        Ok((directory, endpoints)) => {
            let (user, test) = match test {
                Some((user, test)) => (user, Some(test)),
                None => (String::new(), None),
            };
            render(&DirectoryPage {
                page,
                d: DirectoryRow::new(&directory, &endpoints),
                lookup: test.as_ref().and_then(|t| lookup_words(&user, t)),
                form: DirectoryForm::of(&directory),
                user,
                test,
            })
        }
        Err(e) => failure(e),
    }
}

/// `GET /directories/{name}`.
pub async fn directory(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some((session, flash)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let page = Page::new(&session, flash, "directories");
    directory_page(&state, page, &name, None).await
}

/// `POST /directories/{name}/test`: connect, bind and read the base; with
/// an address, look it up. The outcome is shown on the page.
pub async fn test_directory(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let session = match form_session(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let user = form
        .get("user")
        .map(|u| u.trim().to_string())
        .unwrap_or_default();
    let asked = (!user.is_empty()).then_some(user.as_str());
    match state.control.test_directory(&name, asked).await {
        Ok(test) => {
            let page = Page::new(&session, None, "directories");
            directory_page(&state, page, &name, Some((user, test))).await
        }
        Err(e) => failure(e),
    }
}

/// `POST /directories/{name}/change`: an LDAP directory's settings
/// changed (an empty field keeps the stored value; a new bind password is
/// sealed), said on its page either way.
pub async fn change_directory(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = form_session(&state, &headers, &form).await {
        return refused;
    }
    let sent = DirectoryForm::read(&form);
    let password = form
        .get("bind_password")
        .filter(|p| !p.is_empty())
        .map(SecretString::new);
    let here = format!("/directories/{}", link(&name));
    match state
        .control
        .change_directory(&name, sent.changes(), password.as_ref())
        .await
    {
        Ok(()) => {
            let text = format!("Directory {name} changed; test it to check the new settings.");
            flash_to(&state, &headers, "ok", text, &here)
        }
        Err(e) if !is_internal(&e) => flash_to(&state, &headers, "error", e.to_string(), &here),
        Err(e) => failure(e),
    }
}

/// `POST /directories/{name}/remove`: removed unless an endpoint names it.
pub async fn remove_directory(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = form_session(&state, &headers, &form).await {
        return refused;
    }
    let outcome = state.control.store().remove_directory(&name).await;
    let page = format!("/directories/{}", link(&name));
    removal_said(
        &state,
        &headers,
        outcome,
        &format!("Directory {name}"),
        "/directories",
        &page,
    )
}
