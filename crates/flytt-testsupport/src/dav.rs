//! Real CardDAV/CalDAV servers on 127.0.0.1, from Debian's packages:
//! Radicale (one process, htpasswd users, each user's collections under
//! `/USER/`) and Xandikos (no authentication and one principal per
//! process: `DavServer::start` runs one instance per user).
//! `DavServer::start_with_admin` adds an administrator who may open every
//! user's collections: a Radicale rights file, or one Xandikos whose
//! principal is the admin's with the users' collections under `/USER/`.
//!
//! Both re-serialise what they store (Radicale vCards and iCalendar,
//! Xandikos iCalendar), so tests compare after `normalise`. `contacts` and `calendar_items` are the
//! corpus the DAV tests copy.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use flytt_dav::{Collection, CollectionKind, DavClient, Put, Resource};
use url::Url;

use crate::{Error, Result, free_port, io, wait_listening};

/// Makes an address book (`kontakter/`) and a calendar (`kalender/`) in
/// the home `client` writes to, with `contacts` and `calendar_items` in
/// them; how many items.
pub async fn seed(client: &DavClient) -> Result<usize> {
    let mut count = 0;
    for (kind, name, items, mime) in [
        (
            CollectionKind::AddressBook,
            "kontakter/",
            contacts(),
            "text/vcard",
        ),
        (
            CollectionKind::Calendar,
            "kalender/",
            calendar_items(),
            "text/calendar",
        ),
    ] {
        let home = client.home_for_writing(kind).await.map_err(dav_error)?;
        let url = home.join(name).map_err(|e| Error::Server(e.to_string()))?;
        let like = Collection {
            url: url.clone(),
            kind,
            props: flytt_dav::xml::Props {
                display_name: Some(format!("Min {kind}")),
                ..Default::default()
            },
        };
        client
            .make_collection(&url, &like)
            .await
            .map_err(dav_error)?;
        for (file, body) in items {
            let resource = Resource {
                body,
                content_type: Some(mime.into()),
                etag: None,
            };
            let item = url.join(&file).map_err(|e| Error::Server(e.to_string()))?;
            match client.put_new(&item, &resource).await.map_err(dav_error)? {
                Put::Created { .. } => count += 1,
                other => return Err(Error::Server(format!("PUT {file}: {other:?}"))),
            }
        }
    }
    Ok(count)
}

/// Every resource `client` sees, normalised, by collection and file name.
pub async fn contents(client: &DavClient) -> Result<Vec<(String, String, Vec<String>)>> {
    let name = |u: &Url| {
        u.path()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let mut found = Vec::new();
    for kind in [CollectionKind::AddressBook, CollectionKind::Calendar] {
        for collection in client.all_collections(kind).await.map_err(dav_error)? {
            for listed in client.resources(&collection.url).await.map_err(dav_error)? {
                let body = client.get(&listed.url).await.map_err(dav_error)?.body;
                found.push((name(&collection.url), name(&listed.url), normalise(&body)));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn dav_error(e: flytt_dav::Error) -> Error {
    Error::Server(e.to_string())
}

/// Which DAV server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DavFamily {
    Radicale,
    Xandikos,
}

impl DavFamily {
    pub fn name(self) -> &'static str {
        match self {
            DavFamily::Radicale => "Radicale",
            DavFamily::Xandikos => "Xandikos",
        }
    }
}

/// A running DAV server (or, for Xandikos, one per user) for `users`.
pub struct DavServer {
    family: DavFamily,
    /// `https` with a certificate, else `http`.
    scheme: &'static str,
    /// The port each user reaches their collections on.
    ports: BTreeMap<String, u16>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl DavServer {
    /// Starts `family` for `users` (address, password).
    pub fn start(family: DavFamily, users: &[(&str, &str)]) -> Result<DavServer> {
        let dir = tempfile::tempdir().map_err(io("create the DAV server's directory"))?;
        let mut server = DavServer {
            family,
            scheme: "http",
            ports: BTreeMap::new(),
            children: Vec::new(),
            dir,
        };
        match family {
            DavFamily::Radicale => server.start_radicale(users, None, None)?,
            DavFamily::Xandikos => {
                for (user, _) in users {
                    server.start_xandikos(user)?;
                }
            }
        }
        Ok(server)
    }

    /// Radicale over HTTPS with `certificate` (a PEM certificate and its
    /// key, e.g. a Dovecot's: one CA file then trusts both servers).
    pub fn start_radicale_tls(
        users: &[(&str, &str)],
        certificate: (&Path, &Path),
    ) -> Result<DavServer> {
        let dir = tempfile::tempdir().map_err(io("create the DAV server's directory"))?;
        let mut server = DavServer {
            family: DavFamily::Radicale,
            scheme: "https",
            ports: BTreeMap::new(),
            children: Vec::new(),
            dir,
        };
        server.start_radicale(users, None, Some(certificate))?;
        Ok(server)
    }

    /// Starts `family` for `users` and an administrator `admin` (name,
    /// password) with rights to every user's collections, over HTTPS with
    /// `certificate` where one is given (Radicale only). Each user's
    /// collections are at `url_template()` with the user in it.
    pub fn start_with_admin(
        family: DavFamily,
        admin: (&str, &str),
        users: &[(&str, &str)],
        certificate: Option<(&Path, &Path)>,
    ) -> Result<DavServer> {
        let dir = tempfile::tempdir().map_err(io("create the DAV server's directory"))?;
        let mut server = DavServer {
            family,
            scheme: if certificate.is_some() {
                "https"
            } else {
                "http"
            },
            ports: BTreeMap::new(),
            children: Vec::new(),
            dir,
        };
        match (family, certificate) {
            (DavFamily::Radicale, _) => server.start_radicale(users, Some(admin), certificate)?,
            (DavFamily::Xandikos, None) => {
                server.start_xandikos(admin.0)?;
                let port = server.ports[admin.0];
                for (user, _) in users {
                    server.ports.insert(user.to_string(), port);
                }
            }
            (DavFamily::Xandikos, Some(_)) => {
                return Err(Error::Server(
                    "the test Xandikos serves plain HTTP only".into(),
                ));
            }
        }
        Ok(server)
    }

    fn start_radicale(
        &mut self,
        users: &[(&str, &str)],
        admin: Option<(&str, &str)>,
        certificate: Option<(&Path, &Path)>,
    ) -> Result<()> {
        let root = self.dir.path();
        let htpasswd: String = users
            .iter()
            .chain(&admin)
            .map(|(u, p)| format!("{u}:{p}\n"))
            .collect();
        std::fs::write(root.join("users"), htpasswd).map_err(io("write Radicale's users"))?;
        let rights = match admin {
            // Each user their own collections, the admin everyone's.
            Some((admin, _)) => {
                let file = root.join("rights");
                std::fs::write(
                    &file,
                    format!(
                        "[admin]\nuser: {admin}\ncollection: .*\npermissions: RrWw\n\n\
                         [owner]\nuser: .+\ncollection: {{user}}(/.*)?\npermissions: RrWw\n\n\
                         [root]\nuser: .+\ncollection:\npermissions: R\n"
                    ),
                )
                .map_err(io("write Radicale's rights"))?;
                format!("type = from_file\nfile = {}\n", file.display())
            }
            None => "type = owner_only\n".to_string(),
        };
        let port = free_port()?;
        let tls = match certificate {
            Some((cert, key)) => format!(
                "ssl = True\ncertificate = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "[server]\nhosts = 127.0.0.1:{port}\n{tls}\
[auth]\ntype = htpasswd\nhtpasswd_filename = {users}\nhtpasswd_encryption = plain\n\
[storage]\nfilesystem_folder = {storage}\n\
[rights]\n{rights}\
[web]\ntype = none\n\
[logging]\nlevel = warning\n",
            users = root.join("users").display(),
            storage = root.join("collections").display(),
        );
        let config_path = root.join("radicale.conf");
        std::fs::write(&config_path, config).map_err(io("write Radicale's configuration"))?;
        let mut command = Command::new("radicale");
        command.arg("--config").arg(&config_path);
        self.spawn(command, "radicale", port, &root.join("radicale.log"))?;
        for (user, _) in users {
            self.ports.insert(user.to_string(), port);
        }
        Ok(())
    }

    fn start_xandikos(&mut self, user: &str) -> Result<()> {
        let root = self.dir.path().join(user);
        std::fs::create_dir_all(&root).map_err(io("make Xandikos's directory"))?;
        let port = free_port()?;
        let mut command = Command::new("xandikos");
        command
            .arg("-d")
            .arg(&root)
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .arg("--autocreate")
            .args(["--current-user-principal", &format!("/{user}/")]);
        self.spawn(command, "xandikos", port, &root.join("xandikos.log"))?;
        self.ports.insert(user.to_string(), port);
        Ok(())
    }

    /// Starts `program` (a Debian package of that name), its stderr in
    /// `log`, and waits until it listens on `port`.
    fn spawn(&mut self, mut command: Command, program: &str, port: u16, log: &Path) -> Result<()> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(log)?)
            .spawn()
            .map_err(io(format!("start {program} (Debian package {program})")))?;
        self.children.push(child);
        let child = self
            .children
            .last_mut()
            .ok_or_else(|| Error::Server("no child".into()))?;
        wait_listening(child, program, &[port], || read_log(log))
    }

    pub fn family(&self) -> DavFamily {
        self.family
    }

    /// Where each user's collections are, for an admin login: the URL
    /// with `{user}` (as an endpoint's DAV URL takes it).
    pub fn url_template(&self) -> Result<String> {
        let port = self
            .ports
            .values()
            .next()
            .ok_or_else(|| Error::Server("the DAV server has no users".into()))?;
        Ok(format!("{}://127.0.0.1:{port}/{{user}}/", self.scheme))
    }

    /// The URL `user` is given: the server's root, from which discovery
    /// finds the principal and the homes.
    pub fn url(&self, user: &str) -> Result<String> {
        let port = self
            .ports
            .get(user)
            .ok_or_else(|| Error::Server(format!("{user} is not a user of this DAV server")))?;
        Ok(format!("{}://127.0.0.1:{port}/", self.scheme))
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).map_err(io("create a DAV server's log"))
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// vCards as address books hold them: 3.0 and 4.0, non-ASCII names, a
/// photo, a group. (file name, content)
pub fn contacts() -> Vec<(String, String)> {
    let photo = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        (0u16..600).map(|n| (n % 251) as u8).collect::<Vec<u8>>(),
    );
    let cards = [
        (
            "ola-nordmann.vcf",
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ola-nordmann\r\nFN:Ola Nordmann\r\nN:Nordmann;Ola;;;\r\nEMAIL;TYPE=INTERNET:ola@example.org\r\nTEL;TYPE=CELL:+47 912 34 567\r\nEND:VCARD\r\n".to_string(),
        ),
        (
            "bjorn-aeroe.vcf",
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\r\nFN:Bjørn Ærøe\r\nN:Ærøe;Bjørn;;;\r\nEMAIL;TYPE=work:bjorn@example.org\r\nADR;TYPE=home:;;Storgata 1;Tromsø;;9008;Norge\r\nNOTE:Møtes på kontoret\\, tirsdager\r\nEND:VCARD\r\n".to_string(),
        ),
        (
            "kari-photo.vcf",
            format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:kari-photo\r\nFN:Kari Foto\r\nN:Foto;Kari;;;\r\nPHOTO;ENCODING=b;TYPE=PNG:{photo}\r\nEND:VCARD\r\n"),
        ),
        (
            "styret.vcf",
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:group-styret\r\nKIND:group\r\nFN:Styret\r\nMEMBER:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\r\nEND:VCARD\r\n".to_string(),
        ),
    ];
    cards.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

const OSLO: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Oslo\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n";

/// iCalendar objects as calendars hold them: a weekly meeting in a time
/// zone with a moved occurrence, attendees and an alarm; an all-day event;
/// a task with a due date. (file name, content)
pub fn calendar_items() -> Vec<(String, String)> {
    let head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//flytt//test corpus//EN\r\n";
    let items = [
        (
            "weekly.ics",
            format!(
                "{head}{OSLO}BEGIN:VEVENT\r\nUID:weekly-1@example.org\r\nDTSTAMP:20260101T090000Z\r\nDTSTART;TZID=Europe/Oslo:20260105T100000\r\nDTEND;TZID=Europe/Oslo:20260105T110000\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nSUMMARY:Ukemøte\r\nORGANIZER:mailto:ola@example.org\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:bjorn@example.org\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Ukemøte\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:weekly-1@example.org\r\nDTSTAMP:20260101T090000Z\r\nRECURRENCE-ID;TZID=Europe/Oslo:20260112T100000\r\nDTSTART;TZID=Europe/Oslo:20260112T140000\r\nDTEND;TZID=Europe/Oslo:20260112T150000\r\nSUMMARY:Ukemøte (flyttet)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            ),
        ),
        (
            "17-mai.ics",
            format!(
                "{head}BEGIN:VEVENT\r\nUID:17-mai@example.org\r\nDTSTAMP:20260101T090000Z\r\nDTSTART;VALUE=DATE:20260517\r\nDTEND;VALUE=DATE:20260518\r\nSUMMARY:Grunnlovsdag\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            ),
        ),
        (
            "task.ics",
            format!(
                "{head}BEGIN:VTODO\r\nUID:task-1@example.org\r\nDTSTAMP:20260101T090000Z\r\nDUE:20260301T170000Z\r\nSUMMARY:Lever årsrapport\r\nSTATUS:NEEDS-ACTION\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
            ),
        ),
    ];
    items.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// A vCard or iCalendar object as a comparable set of lines: folded lines
/// joined, property names and parameters upper-cased, a recurrence rule's
/// parts sorted, the lines that
/// servers add or rewrite on their own (PRODID, REV, DTSTAMP)
/// left out, sorted. Two objects with the same lines hold the
/// same data.
pub fn normalise(body: &str) -> Vec<String> {
    let mut unfolded: Vec<String> = Vec::new();
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(rest) = line.strip_prefix([' ', '\t'])
            && let Some(last) = unfolded.last_mut()
        {
            last.push_str(rest);
            continue;
        }
        if !line.is_empty() {
            unfolded.push(line.to_string());
        }
    }
    let mut lines: Vec<String> = unfolded
        .into_iter()
        .map(|line| match line.split_once(':') {
            // The parts of a recurrence rule in any order (Xandikos
            // reorders them).
            Some((name, value)) if name.eq_ignore_ascii_case("RRULE") => {
                let mut parts: Vec<&str> = value.split(';').collect();
                parts.sort_unstable();
                format!("RRULE:{}", parts.join(";"))
            }
            Some((name, value)) => format!("{}:{value}", name.to_ascii_uppercase()),
            None => line,
        })
        .filter(|line| {
            !["PRODID", "REV", "DTSTAMP"]
                .iter()
                .any(|p| line.starts_with(p))
        })
        .collect();
    lines.sort();
    lines
}
