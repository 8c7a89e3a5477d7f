//! The XML a DAV server answers with (a WebDAV `multistatus`, RFC 4918
//! §13), read into typed values, and the request bodies flytt sends.
//!
//! Bounded like the IMAP parser: an answer is read only up to
//! `MAX_ANSWER_BYTES` (the client stops reading there), the document tree
//! only up to `MAX_NODES` nodes, and roxmltree expands entities only to a
//! fixed depth, so a hostile server cannot make flytt hold more than that.
//! Anything flytt does not know is skipped, never an error: servers add
//! their own properties.

use roxmltree::{Document, Node, ParsingOptions};

/// The most bytes of one answer flytt reads.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// The most nodes of one answer's document tree.
const MAX_NODES: u32 = 1_000_000;

const DAV: &str = "DAV:";
const CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";
const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
const APPLE_ICAL: &str = "http://apple.com/ns/ical/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the answer is not XML: {0}")]
    Malformed(String),
    #[error("the answer is not a WebDAV multistatus (its root is <{0}>)")]
    NotMultistatus(String),
}

/// A `multistatus` answer: one `Response` per resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multistatus {
    pub responses: Vec<Response>,
    /// The new token of a sync-collection report (RFC 6578).
    pub sync_token: Option<String>,
}

/// One resource's part of a multistatus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// As the server wrote it: a path or an absolute URL, percent-encoded.
    pub href: String,
    /// The status of the whole resource (a removed member of a
    /// sync-collection report is 404), where given instead of propstats.
    pub status: Option<u16>,
    /// The properties the server answered with 2xx.
    pub props: Props,
    /// Properties the server refused (propstat with a non-2xx status):
    /// their local names and the status.
    pub refused: Vec<(String, u16)>,
    /// The server's description of what went wrong, if it gave one.
    pub description: Option<String>,
}

/// The properties flytt asks for; all optional, since every server answers
/// a different subset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    pub resource_type: ResourceType,
    pub display_name: Option<String>,
    /// CARDDAV:addressbook-description or CALDAV:calendar-description.
    pub description: Option<String>,
    /// Apple's calendar-color, the colour clients show.
    pub color: Option<String>,
    /// CALDAV:calendar-timezone: a VCALENDAR with one VTIMEZONE.
    pub timezone: Option<String>,
    /// CALDAV:supported-calendar-component-set: VEVENT, VTODO, VJOURNAL…
    pub components: Vec<String>,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub sync_token: Option<String>,
    pub current_user_principal: Option<String>,
    pub addressbook_home_set: Vec<String>,
    pub calendar_home_set: Vec<String>,
}

/// What a resource is, from DAV:resourcetype.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceType {
    pub collection: bool,
    pub addressbook: bool,
    pub calendar: bool,
}

/// Reads a multistatus answer.
pub fn parse_multistatus(text: &str) -> Result<Multistatus, XmlError> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc = Document::parse_with_options(text, options)
        .map_err(|e| XmlError::Malformed(e.to_string()))?;
    let root = doc.root_element();
    if !is(root, DAV, "multistatus") {
        return Err(XmlError::NotMultistatus(root.tag_name().name().to_string()));
    }
    let mut multistatus = Multistatus::default();
    for child in root.children().filter(Node::is_element) {
        if is(child, DAV, "response") {
            multistatus.responses.push(response(child));
        } else if is(child, DAV, "sync-token") {
            multistatus.sync_token = text_of(child);
        }
    }
    Ok(multistatus)
}

fn response(node: Node) -> Response {
    let mut response = Response::default();
    for child in node.children().filter(Node::is_element) {
        if is(child, DAV, "href") {
            response.href = text_of(child).unwrap_or_default();
        } else if is(child, DAV, "status") {
            response.status = text_of(child).as_deref().and_then(status_code);
        } else if is(child, DAV, "responsedescription") {
            response.description = text_of(child);
        } else if is(child, DAV, "propstat") {
            propstat(child, &mut response);
        }
    }
    response
}

fn propstat(node: Node, response: &mut Response) {
    let status = node
        .children()
        .find(|c| is(*c, DAV, "status"))
        .and_then(text_of)
        .as_deref()
        .and_then(status_code)
        .unwrap_or(0);
    let Some(prop) = node.children().find(|c| is(*c, DAV, "prop")) else {
        return;
    };
    for property in prop.children().filter(Node::is_element) {
        if (200..300).contains(&status) {
            read_property(property, &mut response.props);
        } else {
            let name = property.tag_name().name().to_string();
            response.refused.push((name, status));
        }
    }
    if !(200..300).contains(&status) && response.description.is_none() {
        response.description = node
            .children()
            .find(|c| is(*c, DAV, "responsedescription"))
            .and_then(text_of);
    }
}

fn read_property(node: Node, props: &mut Props) {
    let tag = node.tag_name();
    match (tag.namespace().unwrap_or(""), tag.name()) {
        (DAV, "resourcetype") => {
            for kind in node.children().filter(Node::is_element) {
                props.resource_type.collection |= is(kind, DAV, "collection");
                props.resource_type.addressbook |= is(kind, CARDDAV, "addressbook");
                props.resource_type.calendar |= is(kind, CALDAV, "calendar");
            }
        }
        (DAV, "displayname") => props.display_name = text_of(node),
        (CARDDAV, "addressbook-description") | (CALDAV, "calendar-description") => {
            props.description = text_of(node);
        }
        (APPLE_ICAL, "calendar-color") => props.color = text_of(node),
        (CALDAV, "calendar-timezone") => props.timezone = text_of(node),
        (CALDAV, "supported-calendar-component-set") => {
            props.components = node
                .children()
                .filter(|c| is(*c, CALDAV, "comp"))
                .filter_map(|c| c.attribute("name").map(str::to_string))
                .collect();
        }
        (DAV, "getetag") => props.etag = text_of(node),
        (DAV, "getcontenttype") => props.content_type = text_of(node),
        (DAV, "sync-token") => props.sync_token = text_of(node),
        (DAV, "current-user-principal") => props.current_user_principal = first_href(node),
        (CARDDAV, "addressbook-home-set") => props.addressbook_home_set = hrefs(node),
        (CALDAV, "calendar-home-set") => props.calendar_home_set = hrefs(node),
        _ => {}
    }
}

fn is(node: Node, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node.tag_name().namespace() == Some(namespace)
}

/// The element's text, trimmed; `None` when empty.
fn text_of(node: Node) -> Option<String> {
    let text: String = node
        .descendants()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn hrefs(node: Node) -> Vec<String> {
    node.children()
        .filter(|c| is(*c, DAV, "href"))
        .filter_map(text_of)
        .collect()
}

fn first_href(node: Node) -> Option<String> {
    hrefs(node).into_iter().next()
}

/// `HTTP/1.1 404 Not Found` → 404.
fn status_code(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Escapes text for an XML element's content or an attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

const NAMESPACES: &str = r#"xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav" xmlns:cal="urn:ietf:params:xml:ns:caldav" xmlns:ical="http://apple.com/ns/ical/""#;

/// A PROPFIND body asking for the given properties (`d:displayname`…).
pub fn propfind(properties: &[&str]) -> String {
    let props: String = properties.iter().map(|p| format!("<{p}/>")).collect();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:propfind {NAMESPACES}><d:prop>{props}</d:prop></d:propfind>"#
    )
}

/// A sync-collection REPORT body (RFC 6578 §3.2): the members changed or
/// removed since `token`, every member for none, with their ETags.
pub fn sync_collection(token: Option<&str>) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection {NAMESPACES}><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/><d:resourcetype/></d:prop></d:sync-collection>"#,
        escape(token.unwrap_or(""))
    )
}

/// The properties a collection is made with (extended MKCOL, RFC 5689, or
/// MKCALENDAR, RFC 4791 §5.3.1): a `d:set` of the ones given.
pub fn collection_properties(props: &Props, calendar: bool) -> String {
    let set = property_set(props, calendar);
    let (root, resource_type) = if calendar {
        ("cal:mkcalendar", "")
    } else {
        (
            "d:mkcol",
            "<d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>",
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><{root} {NAMESPACES}><d:set><d:prop>{resource_type}{set}</d:prop></d:set></{root}>"#
    )
}

/// A PROPPATCH body setting the given properties of a collection.
pub fn proppatch(props: &Props, calendar: bool) -> String {
    let set = property_set(props, calendar);
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:propertyupdate {NAMESPACES}><d:set><d:prop>{set}</d:prop></d:set></d:propertyupdate>"#
    )
}

/// The collection properties flytt copies, as `<d:prop>` content.
fn property_set(props: &Props, calendar: bool) -> String {
    let mut set = String::new();
    if let Some(name) = &props.display_name {
        set.push_str(&format!("<d:displayname>{}</d:displayname>", escape(name)));
    }
    if let Some(description) = &props.description {
        let element = if calendar {
            "cal:calendar-description"
        } else {
            "card:addressbook-description"
        };
        set.push_str(&format!("<{element}>{}</{element}>", escape(description)));
    }
    if let Some(color) = &props.color {
        set.push_str(&format!(
            "<ical:calendar-color>{}</ical:calendar-color>",
            escape(color)
        ));
    }
    if calendar {
        if let Some(timezone) = &props.timezone {
            set.push_str(&format!(
                "<cal:calendar-timezone>{}</cal:calendar-timezone>",
                escape(timezone)
            ));
        }
        if !props.components.is_empty() {
            let comps: String = props
                .components
                .iter()
                .map(|c| format!(r#"<cal:comp name="{}"/>"#, escape(c)))
                .collect();
            set.push_str(&format!(
                "<cal:supported-calendar-component-set>{comps}</cal:supported-calendar-component-set>"
            ));
        }
    }
    set
}

/// The collection properties `wanted` has that `have` lacks or holds
/// otherwise, by name: what a target did not keep. Components only for
/// calendars, in any order.
pub fn missing_properties(wanted: &Props, have: &Props, calendar: bool) -> Props {
    let differs = |a: &Option<String>, b: &Option<String>| a.is_some() && a != b;
    let mut missing = Props::default();
    if differs(&wanted.display_name, &have.display_name) {
        missing.display_name = wanted.display_name.clone();
    }
    if differs(&wanted.description, &have.description) {
        missing.description = wanted.description.clone();
    }
    if differs(&wanted.color, &have.color) {
        missing.color = wanted.color.clone();
    }
    if calendar {
        if differs(&wanted.timezone, &have.timezone) {
            missing.timezone = wanted.timezone.clone();
        }
        let sorted = |c: &[String]| {
            let mut c = c.to_vec();
            c.sort();
            c
        };
        if !wanted.components.is_empty() && sorted(&wanted.components) != sorted(&have.components) {
            missing.components = wanted.components.clone();
        }
    }
    missing
}

/// The names of the collection properties set in `props`.
pub fn property_names(props: &Props, calendar: bool) -> Vec<&'static str> {
    let mut names = Vec::new();
    if props.display_name.is_some() {
        names.push("displayname");
    }
    if props.description.is_some() {
        names.push(if calendar {
            "calendar-description"
        } else {
            "addressbook-description"
        });
    }
    if props.color.is_some() {
        names.push("calendar-color");
    }
    if calendar && props.timezone.is_some() {
        names.push("calendar-timezone");
    }
    if calendar && !props.components.is_empty() {
        names.push("supported-calendar-component-set");
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_collections_with_their_properties() {
        let answer = r#"<?xml version="1.0"?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:I="http://apple.com/ns/ical/">
  <response>
    <href>/alice/work/</href>
    <propstat>
      <prop>
        <resourcetype><collection/><C:calendar/></resourcetype>
        <displayname>Arbeid &amp; møter</displayname>
        <C:calendar-description>Team</C:calendar-description>
        <I:calendar-color>#ff0000ff</I:calendar-color>
        <C:supported-calendar-component-set><C:comp name="VEVENT"/><C:comp name="VTODO"/></C:supported-calendar-component-set>
        <sync-token>http://x/sync/7</sync-token>
      </prop>
      <status>HTTP/1.1 200 OK</status>
    </propstat>
    <propstat>
      <prop><C:calendar-timezone/></prop>
      <status>HTTP/1.1 404 Not Found</status>
    </propstat>
  </response>
</multistatus>"#;
        let parsed = parse_multistatus(answer).expect("parses");
        let response = &parsed.responses[0];
        assert_eq!(response.href, "/alice/work/");
        let props = &response.props;
        assert!(props.resource_type.collection && props.resource_type.calendar);
        assert!(!props.resource_type.addressbook);
        assert_eq!(props.display_name.as_deref(), Some("Arbeid & møter"));
        assert_eq!(props.description.as_deref(), Some("Team"));
        assert_eq!(props.color.as_deref(), Some("#ff0000ff"));
        assert_eq!(props.components, ["VEVENT", "VTODO"]);
        assert_eq!(props.sync_token.as_deref(), Some("http://x/sync/7"));
        assert_eq!(props.timezone, None);
        assert_eq!(response.refused, [("calendar-timezone".to_string(), 404)]);
    }

    #[test]
    fn reads_a_sync_collection_report_with_removed_members() {
        let answer = r#"<d:multistatus xmlns:d="DAV:">
  <d:response><d:href>/a/b/1.vcf</d:href><d:propstat><d:prop><d:getetag>"e1"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
  <d:response><d:href>/a/b/2.vcf</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>
  <d:sync-token>tok-2</d:sync-token>
</d:multistatus>"#;
        let parsed = parse_multistatus(answer).expect("parses");
        assert_eq!(parsed.sync_token.as_deref(), Some("tok-2"));
        assert_eq!(parsed.responses[0].props.etag.as_deref(), Some("\"e1\""));
        assert_eq!(parsed.responses[1].status, Some(404));
    }

    #[test]
    fn refuses_what_is_not_a_multistatus() {
        assert!(matches!(
            parse_multistatus("<html><body>login</body></html>"),
            Err(XmlError::NotMultistatus(root)) if root == "html"
        ));
        assert!(matches!(
            parse_multistatus("<d:multistatus xmlns:d=\"DAV:\">"),
            Err(XmlError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_entity_expansion() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><d:multistatus xmlns:d="DAV:"><d:response><d:href>&b;</d:href></d:response></d:multistatus>"#;
        assert!(matches!(
            parse_multistatus(bomb),
            Err(XmlError::Malformed(_))
        ));
    }

    #[test]
    fn request_bodies_escape_what_they_carry() {
        let props = Props {
            display_name: Some("A <b> & \"c\"".into()),
            components: vec!["VEVENT".into()],
            ..Props::default()
        };
        let body = collection_properties(&props, true);
        assert!(body.contains("<d:displayname>A &lt;b&gt; &amp; &quot;c&quot;</d:displayname>"));
        assert!(body.starts_with(r#"<?xml version="1.0" encoding="utf-8"?><cal:mkcalendar "#));
        // What flytt sends, it can read back.
        Document::parse(&body).expect("well-formed");
        Document::parse(&propfind(&["d:getetag", "cal:calendar-timezone"])).expect("well-formed");
    }

    proptest::proptest! {
        #[test]
        fn any_answer_is_read_or_refused_without_panicking(text in "\\PC{0,400}") {
            let _ = parse_multistatus(&text);
        }

        #[test]
        fn any_text_survives_escaping(text in "\\PC{0,100}") {
            let xml = format!("<d:displayname xmlns:d=\"DAV:\">{}</d:displayname>", escape(&text));
            let doc = Document::parse(&xml).expect("well-formed");
            let read = doc.root_element().text().unwrap_or("").to_string();
            proptest::prop_assert_eq!(read, text);
        }
    }
}
