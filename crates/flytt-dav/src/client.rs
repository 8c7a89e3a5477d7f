//! One user's session with a CardDAV/CalDAV server: HTTP with Basic
//! authentication over flytt's TLS (`flytt-tls`: verification always on),
//! discovery (RFC 6764 and `current-user-principal`), collections, and
//! resources with their ETags.

use std::fmt;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_MATCH, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::xml::{self, MAX_ANSWER_BYTES, Multistatus, Props};
use crate::{Error, Result};

/// How long one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and as whom to log in.
#[derive(Clone)]
pub struct DavAccount {
    /// The server's URL as the administrator gave it: its root, or the
    /// user's principal or home on it. For an admin login (`owner`), the
    /// owner's principal or home.
    pub url: Url,
    /// The login name (HTTP Basic).
    pub user: String,
    pub password: String,
    /// Whose collections, when `user` is an admin or proxy opening another
    /// user's: `current-user-principal` names the admin's own, so discovery
    /// starts from `url` instead. `None`: the login's own.
    pub owner: Option<String>,
    pub trust: flytt_tls::Trust,
}

impl fmt::Debug for DavAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DavAccount")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .field("owner", &self.owner)
            .field("password", &"***")
            .finish()
    }
}

/// Address books or calendars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CollectionKind {
    AddressBook,
    Calendar,
}

impl CollectionKind {
    fn well_known(self) -> &'static str {
        match self {
            CollectionKind::AddressBook => "/.well-known/carddav",
            CollectionKind::Calendar => "/.well-known/caldav",
        }
    }

    fn home_property(self) -> &'static str {
        match self {
            CollectionKind::AddressBook => "card:addressbook-home-set",
            CollectionKind::Calendar => "cal:calendar-home-set",
        }
    }
}

impl fmt::Display for CollectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CollectionKind::AddressBook => "address book",
            CollectionKind::Calendar => "calendar",
        })
    }
}

/// An address book or calendar and the properties it is made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub url: Url,
    pub kind: CollectionKind,
    pub props: Props,
}

/// A resource (a vCard, an iCalendar object) as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRef {
    pub url: Url,
    pub etag: Option<String>,
}

/// What changed in a collection since a sync token (RFC 6578).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// Members new or changed since (every member, without a token), with
    /// their ETags.
    pub changed: Vec<ResourceRef>,
    /// Members removed since.
    pub removed: Vec<Url>,
    /// The token to ask with next time.
    pub token: String,
}

/// A resource's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub body: String,
    pub content_type: Option<String>,
    pub etag: Option<String>,
}

/// When a PUT or DELETE may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Only where nothing is (`If-None-Match: *`).
    New,
    /// Only over the resource with this ETag (`If-Match`): not over a
    /// change made on the target meanwhile.
    Matching(String),
    /// Over whatever is there.
    Any,
}

/// What a PUT came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Stored; the target's ETag if it said.
    Created { etag: Option<String> },
    /// The precondition failed (412): for `New`, the target has a
    /// resource of that name already; for `Matching`, it changed there.
    Exists,
    /// The target would not store it: its status and reason.
    Refused { status: u16, reason: String },
}

/// What a DELETE came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delete {
    Deleted,
    /// The precondition failed (412): it changed there.
    Changed,
    /// Nothing was there (404, 410).
    Gone,
    /// The server would not delete it: its status and reason.
    Refused {
        status: u16,
        reason: String,
    },
}

/// A session with one server as one user.
pub struct DavClient {
    http: reqwest::Client,
    account: DavAccount,
}

impl DavClient {
    pub fn new(account: DavAccount) -> Result<DavClient> {
        let http = http_client(&account.url, &account.trust)?;
        Ok(DavClient { http, account })
    }

    /// The server, for messages: `host:port`.
    pub fn server(&self) -> String {
        server_of(&self.account.url)
    }

    /// The URL the account was given.
    pub fn base_url(&self) -> &Url {
        &self.account.url
    }

    /// Names the account for the store's checkpoints: `dav:USER@HOST:PORT/PATH`
    /// (no secret), USER being whose collections they are: another admin
    /// opening the same user finds the same checkpoints.
    pub fn account_key(&self) -> String {
        format!(
            "dav:{}@{}{}",
            self.account.owner.as_deref().unwrap_or(&self.account.user),
            self.server(),
            self.account.url.path()
        )
    }

    /// The user's home sets of `kind`. Empty when the user has none on
    /// this server (for an admin login: nothing at the URL given yet).
    pub async fn homes(&self, kind: CollectionKind) -> Result<Vec<Url>> {
        match self.account.owner {
            Some(_) => self.owner_homes(kind).await,
            None => self.own_homes(kind).await,
        }
    }

    /// Where new collections of `kind` go: the first home; for an admin
    /// login where the user has nothing yet, the URL given, made a plain
    /// collection (as Radicale makes a principal at a user's first login).
    pub async fn home_for_writing(&self, kind: CollectionKind) -> Result<Url> {
        if let Some(home) = self.homes(kind).await?.into_iter().next() {
            return Ok(home);
        }
        if self.account.owner.is_none() {
            return Err(Error::Discovery {
                server: self.server(),
                detail: format!("the user has no {kind} home"),
            });
        }
        let url = &self.account.url;
        let (status, _, answer) = self
            .send(dav_method("MKCOL"), url, HeaderMap::new(), None)
            .await?;
        if !status.is_success() || status == StatusCode::MULTI_STATUS {
            return Err(self.status_error("MKCOL", url, status, &answer));
        }
        Ok(url.clone())
    }

    /// The login's own homes: `current-user-principal` asked of the URL
    /// given, then of the well-known URL (RFC 6764 §5), then the home set
    /// asked of the principal.
    async fn own_homes(&self, kind: CollectionKind) -> Result<Vec<Url>> {
        let principal = match self.principal(&self.account.url).await? {
            Some(principal) => principal,
            None => {
                let well_known = self.resolve(&self.account.url, kind.well_known())?;
                self.principal(&well_known).await?.ok_or_else(|| Error::Discovery {
                    server: self.server(),
                    detail: "neither the URL given nor the well-known one names the user's principal (current-user-principal)".into(),
                })?
            }
        };
        let answer = self
            .propfind(&principal, "0", &xml::propfind(&[kind.home_property()]))
            .await?;
        self.home_sets(&principal, answer, kind)
    }

    /// An admin login's view of the owner's homes: the home sets of the
    /// URL given if it is a principal, else the URL itself as the home
    /// (a plain collection the collections are in); none if nothing is
    /// there, answered as a 404 or, as Xandikos does, a 207 holding one.
    async fn owner_homes(&self, kind: CollectionKind) -> Result<Vec<Url>> {
        let url = &self.account.url;
        let answer = match self
            .propfind(url, "0", &xml::propfind(&[kind.home_property()]))
            .await
        {
            Err(Error::Status { status: 404, .. }) => return Ok(Vec::new()),
            answer => answer?,
        };
        if answer.responses.iter().any(|r| r.status == Some(404)) {
            return Ok(Vec::new());
        }
        let homes = self.home_sets(url, answer, kind)?;
        Ok(if homes.is_empty() {
            vec![url.clone()]
        } else {
            homes
        })
    }

    fn home_sets(
        &self,
        principal: &Url,
        answer: Multistatus,
        kind: CollectionKind,
    ) -> Result<Vec<Url>> {
        let homes = answer.responses.into_iter().flat_map(|r| match kind {
            CollectionKind::AddressBook => r.props.addressbook_home_set,
            CollectionKind::Calendar => r.props.calendar_home_set,
        });
        homes.map(|href| self.resolve(principal, &href)).collect()
    }

    async fn principal(&self, url: &Url) -> Result<Option<Url>> {
        let body = xml::propfind(&["d:current-user-principal"]);
        let answer = match self.propfind(url, "0", &body).await {
            Ok(answer) => answer,
            Err(Error::Status { status, .. }) if status != 401 && status != 403 => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let href = answer
            .responses
            .into_iter()
            .find_map(|r| r.props.current_user_principal);
        href.map(|href| self.resolve(url, &href)).transpose()
    }

    /// Every collection of `kind` the user has, in all their homes.
    pub async fn all_collections(&self, kind: CollectionKind) -> Result<Vec<Collection>> {
        let mut found = Vec::new();
        for home in self.homes(kind).await? {
            found.extend(self.collections(&home, kind).await?);
        }
        Ok(found)
    }

    /// The collections of `kind` in `home`.
    pub async fn collections(&self, home: &Url, kind: CollectionKind) -> Result<Vec<Collection>> {
        let answer = self.propfind(home, "1", &collection_propfind()).await?;
        let mut found = Vec::new();
        for response in answer.responses {
            let of_kind = match kind {
                CollectionKind::AddressBook => response.props.resource_type.addressbook,
                CollectionKind::Calendar => response.props.resource_type.calendar,
            };
            if of_kind {
                found.push(Collection {
                    url: self.resolve(home, &response.href)?,
                    kind,
                    props: response.props,
                });
            }
        }
        Ok(found)
    }

    /// The resources in a collection, with their ETags.
    pub async fn resources(&self, collection: &Url) -> Result<Vec<ResourceRef>> {
        let body = xml::propfind(&["d:resourcetype", "d:getetag"]);
        let answer = self.propfind(collection, "1", &body).await?;
        let mut found = Vec::new();
        for response in answer.responses {
            if response.props.resource_type.collection || response.status == Some(404) {
                continue;
            }
            found.push(ResourceRef {
                url: self.resolve(collection, &response.href)?,
                etag: response.props.etag,
            });
        }
        Ok(found)
    }

    /// The changes in a collection since `token` (every member for
    /// `None`): a sync-collection REPORT (RFC 6578). `None` where the
    /// server cannot say: it has no sync-collection, or no longer knows
    /// the token (403 or 409 with `valid-sync-token`); then the caller
    /// lists the collection.
    pub async fn changes(&self, collection: &Url, token: Option<&str>) -> Result<Option<Changes>> {
        let (status, _, answer) = self
            .send(
                dav_method("REPORT"),
                collection,
                xml_headers(Some("0")),
                Some(xml::sync_collection(token)),
            )
            .await?;
        if status.is_server_error() || status == StatusCode::UNAUTHORIZED {
            return Err(self.status_error("REPORT", collection, status, &answer));
        }
        if status != StatusCode::MULTI_STATUS {
            tracing::debug!(
                server = self.server(),
                url = collection.path(),
                status = status.as_u16(),
                "no changes since the token: the collection is listed"
            );
            return Ok(None);
        }
        let answer = xml::parse_multistatus(&answer).map_err(|e| self.xml_error(collection, e))?;
        let Some(token) = answer.sync_token else {
            return Ok(None);
        };
        let mut changes = Changes {
            changed: Vec::new(),
            removed: Vec::new(),
            token,
        };
        for response in answer.responses {
            let url = self.resolve(collection, &response.href)?;
            if url.path() == collection.path() || response.props.resource_type.collection {
                continue;
            }
            if response.status == Some(404) {
                changes.removed.push(url);
            } else {
                changes.changed.push(ResourceRef {
                    url,
                    etag: response.props.etag,
                });
            }
        }
        Ok(Some(changes))
    }

    pub async fn get(&self, url: &Url) -> Result<Resource> {
        let (status, headers, body) = self.send(Method::GET, url, HeaderMap::new(), None).await?;
        if !status.is_success() {
            return Err(self.status_error("GET", url, status, &body));
        }
        Ok(Resource {
            body,
            content_type: header(&headers, CONTENT_TYPE.as_str()),
            etag: header(&headers, ETAG.as_str()),
        })
    }

    /// Stores a new resource at `url`, never over one already there.
    pub async fn put_new(&self, url: &Url, resource: &Resource) -> Result<Put> {
        self.put(url, resource, &Precondition::New).await
    }

    /// Stores `resource` at `url` if `condition` holds.
    pub async fn put(
        &self,
        url: &Url,
        resource: &Resource,
        condition: &Precondition,
    ) -> Result<Put> {
        let mut headers = precondition_headers(condition);
        let content_type = resource
            .content_type
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok());
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, content_type);
        }
        let (status, headers, body) = self
            .send(Method::PUT, url, headers, Some(resource.body.clone()))
            .await?;
        Ok(match status {
            StatusCode::PRECONDITION_FAILED => Put::Exists,
            // A 2xx that is not a success: the failure is inside.
            StatusCode::MULTI_STATUS => Put::Refused {
                status: status.as_u16(),
                reason: reason(&body),
            },
            s if s.is_success() => Put::Created {
                etag: header(&headers, ETAG.as_str()),
            },
            s if s.is_server_error() || s == StatusCode::UNAUTHORIZED => {
                return Err(self.status_error("PUT", url, status, &body));
            }
            s => Put::Refused {
                status: s.as_u16(),
                reason: reason(&body),
            },
        })
    }

    /// Deletes the resource at `url` if `condition` holds.
    pub async fn delete(&self, url: &Url, condition: &Precondition) -> Result<Delete> {
        let headers = precondition_headers(condition);
        let (status, _, body) = self.send(Method::DELETE, url, headers, None).await?;
        Ok(match status {
            StatusCode::PRECONDITION_FAILED => Delete::Changed,
            StatusCode::NOT_FOUND | StatusCode::GONE => Delete::Gone,
            // A 207 names the members that could not be deleted.
            StatusCode::MULTI_STATUS => Delete::Refused {
                status: status.as_u16(),
                reason: reason(&body),
            },
            s if s.is_success() => Delete::Deleted,
            s if s.is_server_error() || s == StatusCode::UNAUTHORIZED => {
                return Err(self.status_error("DELETE", url, status, &body));
            }
            s => Delete::Refused {
                status: s.as_u16(),
                reason: reason(&body),
            },
        })
    }

    /// Makes a collection like `like` at `url`: MKCALENDAR for a calendar,
    /// an extended MKCOL (RFC 5689) for an address book, with its
    /// properties. Setting them is all or nothing (RFC 5689 §3): if the
    /// server refuses one, the collection is made without them, and
    /// `keep_properties` sets what it can one by one.
    pub async fn make_collection(&self, url: &Url, like: &Collection) -> Result<()> {
        match self.make_collection_with(url, like, &like.props).await {
            Ok(()) => Ok(()),
            Err(Error::Status { status, .. }) if status != 401 && status < 500 => {
                tracing::debug!(
                    server = self.server(),
                    url = url.path(),
                    status,
                    "collection refused with its properties; making it bare"
                );
                self.make_collection_with(url, like, &Props::default())
                    .await
            }
            Err(e) => Err(e),
        }
    }

    async fn make_collection_with(
        &self,
        url: &Url,
        like: &Collection,
        props: &Props,
    ) -> Result<()> {
        let calendar = like.kind == CollectionKind::Calendar;
        let method = if calendar { "MKCALENDAR" } else { "MKCOL" };
        let body = xml::collection_properties(props, calendar);
        let (status, _, answer) = self
            .send(dav_method(method), url, xml_headers(None), Some(body))
            .await?;
        // A 207 is not a success (RFC 5689 §5.2): the failures are inside.
        if !status.is_success() || status == StatusCode::MULTI_STATUS {
            return Err(self.status_error(method, url, status, &answer));
        }
        Ok(())
    }

    /// A collection's properties as the server has them now.
    pub async fn collection_props(&self, url: &Url) -> Result<Props> {
        let answer = self.propfind(url, "0", &collection_propfind()).await?;
        Ok(answer
            .responses
            .into_iter()
            .next()
            .map(|r| r.props)
            .unwrap_or_default())
    }

    /// Sets a collection's properties (PROPPATCH). Whether the server kept
    /// them is for the caller to read back: servers answer a property they
    /// ignore in different ways.
    pub async fn set_properties(&self, url: &Url, props: &Props, calendar: bool) -> Result<()> {
        let body = xml::proppatch(props, calendar);
        let (status, _, answer) = self
            .send(dav_method("PROPPATCH"), url, xml_headers(None), Some(body))
            .await?;
        if status.is_server_error() || status == StatusCode::UNAUTHORIZED {
            return Err(self.status_error("PROPPATCH", url, status, &answer));
        }
        Ok(())
    }

    async fn propfind(&self, url: &Url, depth: &'static str, body: &str) -> Result<Multistatus> {
        let (status, _, answer) = self
            .send(
                dav_method("PROPFIND"),
                url,
                xml_headers(Some(depth)),
                Some(body.to_string()),
            )
            .await?;
        if status != StatusCode::MULTI_STATUS {
            return Err(self.status_error("PROPFIND", url, status, &answer));
        }
        xml::parse_multistatus(&answer).map_err(|e| self.xml_error(url, e))
    }

    /// Sends a request and reads at most `MAX_ANSWER_BYTES` of its answer.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<String>,
    ) -> Result<(StatusCode, HeaderMap, String)> {
        let mut request = self
            .http
            .request(method, url.clone())
            .headers(headers)
            .basic_auth(&self.account.user, Some(&self.account.password));
        if let Some(body) = body {
            request = request.body(body);
        }
        let mut response = request.send().await.map_err(|e| self.http_error(e))?;
        let (status, headers) = (response.status(), response.headers().clone());
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.http_error(e))? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Error::TooLarge {
                    server: self.server(),
                    url: url.path().to_string(),
                    limit: MAX_ANSWER_BYTES,
                });
            }
            answer.extend_from_slice(&chunk);
        }
        let answer = String::from_utf8(answer).map_err(|_| Error::Protocol {
            server: self.server(),
            detail: format!("the answer for {} is not UTF-8", url.path()),
        })?;
        Ok((status, headers, answer))
    }

    /// An href from an answer, made absolute against `base`. Only hrefs on
    /// the same server are taken: a server naming another host would send
    /// the user's password there.
    fn resolve(&self, base: &Url, href: &str) -> Result<Url> {
        let url = base.join(href).map_err(|e| Error::Protocol {
            server: self.server(),
            detail: format!("bad href {href:?}: {e}"),
        })?;
        if url.origin() != self.account.url.origin() {
            return Err(Error::Protocol {
                server: self.server(),
                detail: format!("{href} is on another server"),
            });
        }
        Ok(url)
    }

    fn status_error(&self, method: &str, url: &Url, status: StatusCode, body: &str) -> Error {
        Error::Status {
            server: self.server(),
            request: format!("{method} {}", url.path()),
            status: status.as_u16(),
            reason: reason(body),
        }
    }

    fn http_error(&self, e: reqwest::Error) -> Error {
        Error::Http {
            server: self.server(),
            // Without the URL: it may carry a user name.
            detail: e.without_url().to_string(),
        }
    }

    fn xml_error(&self, url: &Url, e: xml::XmlError) -> Error {
        Error::Protocol {
            server: self.server(),
            detail: format!("{}: {e}", url.path()),
        }
    }
}

/// An HTTP client for the server at `url` that trusts what `trust` says.
fn http_client(url: &Url, trust: &flytt_tls::Trust) -> Result<reqwest::Client> {
    let tls = flytt_tls::client_config(trust).map_err(|detail| Error::Tls {
        server: server_of(url),
        detail,
    })?;
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| Error::Http {
            server: server_of(url),
            detail: e.to_string(),
        })
}

/// What the server at `url` says it speaks, without logging in: the DAV
/// classes of its OPTIONS answer (`1`, `3`, `addressbook`,
/// `calendar-access`, …). Shows that it answers, over TLS flytt trusts.
pub async fn dav_classes(url: &Url, trust: &flytt_tls::Trust) -> Result<Vec<String>> {
    let server = server_of(url);
    let response = http_client(url, trust)?
        .request(Method::OPTIONS, url.clone())
        .send()
        .await
        .map_err(|e| Error::Http {
            server: server.clone(),
            detail: e.without_url().to_string(),
        })?;
    let classes: Vec<String> = response
        .headers()
        .get_all("DAV")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|class| class.trim().to_string())
        .filter(|class| !class.is_empty())
        .collect();
    if classes.is_empty() {
        return Err(Error::Protocol {
            server,
            detail: format!(
                "{} answered OPTIONS {} without a DAV header: not a WebDAV server",
                response.status().as_u16(),
                url.path()
            ),
        });
    }
    Ok(classes)
}

/// A PROPFIND for what a collection is and the properties flytt copies.
fn collection_propfind() -> String {
    xml::propfind(&[
        "d:resourcetype",
        "d:displayname",
        "card:addressbook-description",
        "cal:calendar-description",
        "ical:calendar-color",
        "cal:calendar-timezone",
        "cal:supported-calendar-component-set",
        "d:sync-token",
    ])
}

/// The headers that make a write conditional.
fn precondition_headers(condition: &Precondition) -> HeaderMap {
    let mut headers = HeaderMap::new();
    match condition {
        Precondition::New => {
            headers.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        }
        Precondition::Matching(etag) => {
            if let Ok(etag) = HeaderValue::from_str(etag) {
                headers.insert(IF_MATCH, etag);
            }
        }
        Precondition::Any => {}
    }
    headers
}

fn dav_method(name: &'static str) -> Method {
    // Extension methods are valid tokens; this cannot fail for the
    // constant names used here.
    Method::from_bytes(name.as_bytes()).unwrap_or(Method::GET)
}

fn xml_headers(depth: Option<&'static str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    if let Some(depth) = depth {
        headers.insert("Depth", HeaderValue::from_static(depth));
    }
    headers
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A server's reason, from an error answer's body: its text without
/// markup, on one line, cut at 300 characters.
fn reason(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(300).collect()
}

fn server_of(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => url.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_text_on_one_line() {
        assert_eq!(
            reason("<html><body><h1>Forbidden</h1>\n<p>no   rights</p></body></html>"),
            "Forbidden no rights"
        );
        assert_eq!(reason(&"x".repeat(1000)).len(), 300);
    }
}
