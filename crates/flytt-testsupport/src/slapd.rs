//! A real OpenLDAP server for the directory tests: `slapd` on 127.0.0.1
//! with its own configuration, an mdb database under `dc=example,dc=org`,
//! `ou=people` for users, and a small mail schema (`data/flytt-mail.schema`:
//! mailboxEnabled, mailForwardingAddress, mustChangePassword).

use std::io::Write;

use base64::Engine;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{Error, Result, free_port, io};

pub const BASE_DN: &str = "dc=example,dc=org";
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "ldap-admin-secret-1";

const SCHEMA: &str = include_str!("../data/flytt-mail.schema");

pub struct Slapd {
    child: Child,
    pub port: u16,
    /// ldaps:// (TLS from the first byte).
    pub tls_port: u16,
    dir: tempfile::TempDir,
}

impl Slapd {
    pub fn start() -> Result<Slapd> {
        let dir = tempfile::Builder::new()
            .prefix("flytt-slapd-")
            .tempdir()
            .map_err(io("create the slapd directory"))?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("db")).map_err(io("create the slapd database"))?;
        std::fs::write(root.join("flytt-mail.schema"), SCHEMA).map_err(io("write the schema"))?;
        // TLS (StartTLS on ldap://, and ldaps://) with the same kind of
        // private CA as the test Dovecot servers.
        crate::dovecot::make_certificates(root)?;
        let conf = root.join("slapd.conf");
        std::fs::write(&conf, config(root)).map_err(io("write slapd.conf"))?;
        let base = root.join("base.ldif");
        std::fs::write(
            &base,
            format!(
                "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
                 dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n"
            ),
        )
        .map_err(io("write base.ldif"))?;
        let loaded = Command::new("slapadd")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&base)
            .output()
            .map_err(io("run slapadd (is slapd installed?)"))?;
        if !loaded.status.success() {
            return Err(Error::Server(format!(
                "slapadd failed: {}",
                String::from_utf8_lossy(&loaded.stderr)
            )));
        }
        // A port taken between the probe and slapd's bind: try others.
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let tls_port = free_port()?;
            let mut child = Command::new("slapd")
                .arg("-f")
                .arg(&conf)
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io("start slapd"))?;
            match crate::wait_listening(&mut child, "slapd", &[port, tls_port], String::new) {
                Ok(()) => {
                    return Ok(Slapd {
                        child,
                        port,
                        tls_port,
                        dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if attempt == 3 {
                        return Err(e);
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn tls_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Adds entries (LDIF) as the directory's administrator.
    pub fn add(&self, ldif: &str) -> Result<()> {
        self.ldap_tool("ldapadd", &[], ldif).map(|_| ())
    }

    /// The values of `attribute` of the entry that `filter` finds.
    pub fn values(&self, filter: &str, attribute: &str) -> Result<Vec<String>> {
        let out = self.ldap_tool(
            "ldapsearch",
            &[
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-b",
                BASE_DN,
                filter,
                attribute,
            ],
            "",
        )?;
        // `attr: text`, or `attr:: base64` for values that are not plain text.
        let plain = format!("{attribute}: ");
        let encoded = format!("{attribute}:: ");
        Ok(out
            .lines()
            .filter_map(|l| {
                if let Some(value) = l.strip_prefix(&plain) {
                    return Some(value.to_string());
                }
                let value = l.strip_prefix(&encoded)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .ok()?;
                Some(String::from_utf8_lossy(&bytes).into_owned())
            })
            .collect())
    }

    /// Whether `dn` can bind with `password`.
    pub fn can_bind(&self, dn: &str, password: &str) -> bool {
        Command::new("ldapwhoami")
            .args(["-x", "-H", &self.url(), "-D", dn, "-w", password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A user as a mail-enabled account without a mailbox here yet.
    pub fn add_mail_user(&self, uid: &str, mail: &str) -> Result<()> {
        self.add(&format!(
            "dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nobjectClass: flyttMailAccount\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {mail}\nmailboxEnabled: FALSE\n"
        ))
    }

    fn ldap_tool(&self, tool: &str, args: &[&str], input: &str) -> Result<String> {
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("run {tool} (is ldap-utils installed?)")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(io(format!("write to {tool}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(io(format!("wait for {tool}")))?;
        if !out.status.success() {
            return Err(Error::Server(format!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(root: &Path) -> String {
    let root = root.display();
    format!(
        r#"# Generated by flytt-testsupport for one test directory on loopback.
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {root}/flytt-mail.schema
pidfile {root}/slapd.pid
TLSCACertificateFile {root}/ca.pem
TLSCertificateFile {root}/server.pem
TLSCertificateKeyFile {root}/server.key
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {root}/db
maxsize 104857600
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"#
    )
}
