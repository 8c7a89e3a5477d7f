//! One Dovecot instance. `Layout::Source` stores Maildir++ (hierarchy
//! separator `.`, a "Sendte elementer" sent folder), `Layout::Target` uses
//! the `fs` layout (separator `/`, an English "Sent"), so every test run
//! exercises folder mapping.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flytt_imap::{Auth, Secret, Security, ServerConfig, Session};

use crate::{Error, Result, free_port, io};

/// The master (admin) user every instance has; log in as `user*admin`.
pub const MASTER_USER: &str = "admin";
pub const MASTER_PASSWORD: &str = "master-secret-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Maildir++, separator `.`, Norwegian special-use folder names.
    Source,
    /// Maildir with `LAYOUT=fs`, separator `/`, English folder names.
    Target,
    /// An older server's shape: personal namespace `INBOX.` with the
    /// separator `.`, no LITERAL+, MULTIAPPEND, CONDSTORE or SPECIAL-USE,
    /// Norwegian folder names that no attribute marks.
    Legacy,
    /// Gmail's shape (without its labels, which `gmail::GmailProxy` adds):
    /// separator `/`, `[Gmail]/All Mail` (`\All`), `[Gmail]/Starred`
    /// (`\Flagged`), `[Gmail]/Important` (`\Important`), `[Gmail]/Sent
    /// Mail` and the other special folders under `[Gmail]`.
    Gmail,
}

/// A running Dovecot; stopped and deleted on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub tls_port: u16,
    /// ManageSieve (STARTTLS), with Pigeonhole's scripts per user.
    pub sieve_port: u16,
    /// LMTP delivery (with Sieve).
    pub lmtp_port: u16,
    pub layout: Layout,
    conf: PathBuf,
}

impl Dovecot {
    /// Starts an instance with these users (`name`, `password`).
    pub fn start(layout: Layout, users: &[(&str, &str)]) -> Result<Dovecot> {
        Self::start_with(layout, users, "")
    }

    /// Like `start`, with extra configuration lines appended (e.g. limits
    /// that make the server refuse some messages).
    pub fn start_with(
        layout: Layout,
        users: &[(&str, &str)],
        extra_config: &str,
    ) -> Result<Dovecot> {
        let dir = tempfile::Builder::new()
            .prefix("flytt-dovecot-")
            .tempdir()
            .map_err(io("create Dovecot directory"))?;
        let root = dir.path();
        // Login processes run as another user and must reach the sockets.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod Dovecot directory"))?;
        let (uid, gid, run_as) = mail_owner()?;
        for sub in ["mail", "run", "state", "sieve"] {
            std::fs::create_dir_all(root.join(sub)).map_err(io("create Dovecot subdirectory"))?;
        }
        for owned in ["mail", "sieve"] {
            std::os::unix::fs::chown(root.join(owned), Some(uid), Some(gid))
                .map_err(io("chown mail directory"))?;
        }
        make_certificates(root)?;
        write_passwd_files(root)?;

        for (user, password) in users {
            append_user(root, user, password)?;
        }
        // A free port can be taken by another test between our probe and
        // Dovecot's bind: then start again on other ports.
        let conf = root.join("dovecot.conf");
        let mut attempt = 1;
        let (child, port, tls_port, sieve_port, lmtp_port) = loop {
            let port = free_port()?;
            let tls_port = free_port()?;
            let sieve_port = free_port()?;
            let lmtp_port = free_port()?;
            std::fs::write(
                &conf,
                config(
                    root,
                    layout,
                    Ports {
                        imap: port,
                        imaps: tls_port,
                        sieve: sieve_port,
                        lmtp: lmtp_port,
                    },
                    uid,
                    gid,
                    &run_as,
                ) + extra_config
                    + PROTOCOL_PLUGINS,
            )
            .map_err(io("write dovecot.conf"))?;
            let mut child = Command::new("dovecot")
                .arg("-F")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io("start dovecot (is dovecot-imapd installed?)"))?;
            let log = || std::fs::read_to_string(root.join("dovecot.log")).unwrap_or_default();
            let ports = [port, tls_port, sieve_port, lmtp_port];
            let listening =
                crate::wait_listening(&mut child, "dovecot", &ports, log).and_then(|()| {
                    if crate::greets_with(port, &greeting(root)) {
                        Ok(())
                    } else {
                        Err(Error::Server(format!("another server took port {port}")))
                    }
                });
            match listening {
                Ok(()) => break (child, port, tls_port, sieve_port, lmtp_port),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if attempt == 3 {
                        return Err(e);
                    }
                    attempt += 1;
                }
            }
        };
        Ok(Dovecot {
            child,
            dir,
            port,
            tls_port,
            sieve_port,
            lmtp_port,
            layout,
            conf,
        })
    }

    /// Adds a user (takes effect at once: passwd-file is re-read).
    pub fn add_user(&mut self, user: &str, password: &str) -> Result<()> {
        append_user(self.dir.path(), user, password)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// `imap://127.0.0.1:PORT` (plaintext unless STARTTLS is used).
    pub fn url(&self) -> String {
        format!("imap://127.0.0.1:{}", self.port)
    }

    /// Delivers `message` to `recipient` over LMTP, as an MTA would; the
    /// user's active Sieve script runs.
    pub fn deliver(&self, sender: &str, recipient: &str, message: &str) -> Result<()> {
        use std::io::{BufRead, BufReader};
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.lmtp_port))
            .map_err(io("connect to LMTP"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io("LMTP timeout"))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(io("LMTP stream"))?);
        let mut writer = stream;
        // A reply is its lines up to the one with a space after the code.
        let mut reply = |expect: &str| -> Result<()> {
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).map_err(io("read LMTP"))?;
                if !line.starts_with(expect) {
                    return Err(Error::Server(format!("LMTP answered {line:?}")));
                }
                if line.as_bytes().get(3) == Some(&b' ') {
                    return Ok(());
                }
            }
        };
        reply("220")?;
        let mut send = |text: &str| writer.write_all(text.as_bytes()).map_err(io("write LMTP"));
        send("LHLO flytt-test\r\n")?;
        reply("250")?;
        send(&format!("MAIL FROM:<{sender}>\r\n"))?;
        reply("250")?;
        send(&format!("RCPT TO:<{recipient}>\r\n"))?;
        reply("250")?;
        send("DATA\r\n")?;
        reply("354")?;
        let body = message.replace("\r\n", "\n").replace('\n', "\r\n");
        send(&format!("{body}\r\n.\r\n"))?;
        reply("250")?;
        send("QUIT\r\n")?;
        Ok(())
    }

    /// `sieve://127.0.0.1:PORT` (ManageSieve, STARTTLS).
    pub fn sieve_url(&self) -> String {
        format!("sieve://127.0.0.1:{}", self.sieve_port)
    }

    /// `imaps://127.0.0.1:PORT`.
    pub fn tls_url(&self) -> String {
        format!("imaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the instance's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The instance's certificate and key (for 127.0.0.1), for another
    /// server on the same host (a DAV server) that the same CA file trusts.
    pub fn certificate(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }

    /// Where `user`'s mail is stored (Maildir), for tests that check what
    /// the server made on disk.
    pub fn mail_dir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    pub fn config_path(&self) -> &Path {
        &self.conf
    }

    /// Runs `doveadm` against this instance (e.g. to change a UIDVALIDITY).
    pub fn doveadm(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .map_err(io("run doveadm"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Server(format!(
                "doveadm {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

/// The usual self-signed certificate of an older server, made in `dir`:
/// `openssl req -x509`, so marked as a CA (`CA:TRUE`) and used as the
/// server's own. Returns the configuration lines that make an instance use
/// it (appended after the generated ones, they win) and the PEM file.
pub fn self_signed_certificate(dir: &Path) -> Result<(String, PathBuf)> {
    let (cert, key) = (dir.join("self-signed.pem"), dir.join("self-signed.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .map_err(io("run openssl"))?;
    if !out.status.success() {
        return Err(Error::Server(format!(
            "openssl req -x509: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let config = format!(
        "ssl_cert = <{}\nssl_key = <{}\n",
        cert.display(),
        key.display()
    );
    Ok((config, cert))
}

/// The protocols' own plugins, written after any extra configuration:
/// Dovecot expands `$mail_plugins` where it reads it, so a block written
/// before an extra global `mail_plugins` (the quota of [`max_mail_size`])
/// would leave that plugin out of IMAP.
const PROTOCOL_PLUGINS: &str = "\
# COMPRESS=DEFLATE (RFC 4978), as servers on the internet offer it.
protocol imap {
  mail_plugins = $mail_plugins imap_zlib
}
# Delivery runs the user's active Sieve script (a redirect leaves through
# submission_host, which a test sets to its SMTP sink).
protocol lmtp {
  mail_plugins = $mail_plugins sieve
}
";

/// Configuration that makes a server refuse messages over `size` (e.g.
/// "1M"), with the server's own reason: the quota plugin's max mail size.
pub fn max_mail_size(size: &str) -> String {
    format!(
        "mail_plugins = $mail_plugins quota\nplugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage=0\n  quota_max_mail_size = {size}\n}}\n"
    )
}

/// Configuration that gives every user a storage quota of `limit` (e.g.
/// "1M") that IMAP clients can read (GETQUOTAROOT: the `imap_quota`
/// plugin, before the protocol plugins that `$mail_plugins` extends).
pub fn storage_quota(limit: &str) -> String {
    format!(
        "mail_plugins = $mail_plugins quota\nprotocol imap {{\n  mail_plugins = $mail_plugins imap_quota\n}}\nplugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage={limit}\n}}\n"
    )
}

impl Dovecot {
    /// The hierarchy separator this layout uses.
    pub fn separator(&self) -> char {
        match self.layout {
            Layout::Source | Layout::Legacy => '.',
            Layout::Target | Layout::Gmail => '/',
        }
    }

    /// The folders the layout makes for every user, with their roles
    /// (whether or not the server marks them).
    pub fn role_folders(&self) -> &'static [(&'static str, &'static str)] {
        role_folders(self.layout)
    }

    /// The plaintext connection settings for this instance.
    pub fn server_config(&self) -> ServerConfig {
        let mut config = ServerConfig::new("127.0.0.1", self.port, Security::Plain);
        config.allow_plaintext = true;
        config
    }

    /// STARTTLS connection settings trusting this instance's CA: the way
    /// flytt itself connects.
    pub fn starttls_config(&self) -> ServerConfig {
        let mut config = ServerConfig::new("127.0.0.1", self.port, Security::StartTls);
        config.ca_files = vec![self.ca_file()];
        config
    }

    /// A logged-in session as `user`, through the master user (plaintext).
    pub async fn admin_session(&self, user: &str) -> Result<Session> {
        self.admin_session_with(user, &self.server_config()).await
    }

    /// Like `admin_session`, with the given connection settings.
    pub async fn admin_session_with(&self, user: &str, config: &ServerConfig) -> Result<Session> {
        let mut session = Session::connect(config).await?;
        session
            .login(&Auth::Login {
                user: format!("{user}*{MASTER_USER}"),
                password: Secret::new(MASTER_PASSWORD),
            })
            .await?;
        Ok(session)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        crate::stop_master(&mut self.child);
    }
}

/// Who owns the mail files: the current user, or Dovecot's own system user
/// when running as root (Dovecot refuses to access mail as root).
fn mail_owner() -> Result<(u32, u32, String)> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(io("run id"))?;
    let uid: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| Error::Server("cannot read uid".into()))?;
    if uid != 0 {
        let gid = Command::new("id")
            .arg("-g")
            .output()
            .map_err(io("run id"))?;
        let gid = String::from_utf8_lossy(&gid.stdout)
            .trim()
            .parse()
            .unwrap_or(uid);
        let name = Command::new("id")
            .arg("-un")
            .output()
            .map_err(io("run id"))?;
        return Ok((
            uid,
            gid,
            String::from_utf8_lossy(&name.stdout).trim().to_string(),
        ));
    }
    let uid = Command::new("id")
        .args(["-u", "dovecot"])
        .output()
        .map_err(io("run id"))?;
    let gid = Command::new("id")
        .args(["-g", "dovecot"])
        .output()
        .map_err(io("run id"))?;
    let parse = |b: &[u8]| String::from_utf8_lossy(b).trim().parse::<u32>().ok();
    match (parse(&uid.stdout), parse(&gid.stdout)) {
        (Some(uid), Some(gid)) => Ok((uid, gid, "root".into())),
        _ => Err(Error::Server("the dovecot system user is missing".into())),
    }
}

/// A CA and a certificate for 127.0.0.1/localhost signed by it.
pub(crate) fn make_certificates(root: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .map_err(io("run openssl"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Server(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=flytt test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    std::fs::write(
        root.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(io("write san.ext"))?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ])?;
    Ok(())
}

/// The instance's greeting, which names it (see `greets_with`).
fn greeting(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The ports an instance listens on.
struct Ports {
    imap: u16,
    imaps: u16,
    sieve: u16,
    lmtp: u16,
}

fn config(root: &Path, layout: Layout, ports: Ports, uid: u32, gid: u32, run_as: &str) -> String {
    let greeting = greeting(root);
    let root = root.display();
    let Ports {
        imap: port,
        imaps: tls_port,
        sieve: sieve_port,
        lmtp: lmtp_port,
    } = ports;
    let (location, separator, prefix, capabilities) = match layout {
        Layout::Source => (format!("maildir:{root}/mail/%u"), ".", "", ""),
        Layout::Target | Layout::Gmail => {
            (format!("maildir:{root}/mail/%u:LAYOUT=fs"), "/", "", "")
        }
        Layout::Legacy => (
            format!("maildir:{root}/mail/%u"),
            ".",
            "INBOX.",
            "imap_capability = IMAP4rev1 SASL-IR ID ENABLE IDLE UIDPLUS NAMESPACE CHILDREN UNSELECT\n",
        ),
    };
    let marked = layout != Layout::Legacy;
    let mailboxes: String = role_folders(layout)
        .iter()
        .map(|(name, role)| {
            let special_use = if marked {
                format!("    special_use = {role}\n")
            } else {
                String::new()
            };
            format!("  mailbox \"{name}\" {{\n{special_use}    auto = subscribe\n  }}\n")
        })
        .collect();
    // Non-root runs need Dovecot's service users to be the current user.
    let service_users = if run_as == "root" {
        String::new()
    } else {
        format!("default_login_user = {run_as}\ndefault_internal_user = {run_as}\n")
    };
    format!(
        r#"# Generated by flytt-testsupport for one test server on loopback.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap sieve lmtp
listen = 127.0.0.1
{service_users}ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
disable_plaintext_auth = no
login_greeting = {greeting}
auth_mechanisms = plain login xoauth2 oauthbearer
auth_master_user_separator = *
first_valid_uid = 1
mail_location = {location}
mail_uid = {uid}
mail_gid = {gid}
mail_fsync = never
imap_max_line_length = 1M
{capabilities}namespace inbox {{
  inbox = yes
  prefix = {prefix}
  separator = {separator}
{mailboxes}}}
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {root}/master-passwd
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
  process_min_avail = 1
  # A TLS connection keeps its login process as a proxy: allow as many as
  # the benchmarks open at once.
  process_limit = 1024
}}
service imap {{
  process_limit = 1024
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {sieve_port}
  }}
}}
# Sieve scripts live beside the mail, not in it (a plain directory in an
# fs-layout mail root would be a folder).
plugin {{
  sieve = file:{root}/sieve/%u/scripts;active={root}/sieve/%u/active.sieve
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"#
    )
}

fn role_folders(layout: Layout) -> &'static [(&'static str, &'static str)] {
    match layout {
        Layout::Source => &[
            ("Sendte elementer", "\\Sent"),
            ("Utkast", "\\Drafts"),
            ("Papirkurv", "\\Trash"),
            ("Søppelpost", "\\Junk"),
            ("Arkiv", "\\Archive"),
        ],
        Layout::Target => &[
            ("Sent", "\\Sent"),
            ("Drafts", "\\Drafts"),
            ("Trash", "\\Trash"),
            ("Junk", "\\Junk"),
            ("Archive", "\\Archive"),
        ],
        Layout::Gmail => &[
            ("[Gmail]/All Mail", "\\All"),
            ("[Gmail]/Drafts", "\\Drafts"),
            ("[Gmail]/Important", "\\Important"),
            ("[Gmail]/Sent Mail", "\\Sent"),
            ("[Gmail]/Spam", "\\Junk"),
            ("[Gmail]/Starred", "\\Flagged"),
            ("[Gmail]/Trash", "\\Trash"),
        ],
        Layout::Legacy => &[
            ("Sendte elementer", "\\Sent"),
            ("Kladd", "\\Drafts"),
            ("Slettede elementer", "\\Trash"),
            ("Søppelpost", "\\Junk"),
            ("Arkiv", "\\Archive"),
        ],
    }
}

/// Writes the master user's passwd-file and an empty users' one.
fn write_passwd_files(root: &Path) -> Result<()> {
    std::fs::write(
        root.join("master-passwd"),
        format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n"),
    )
    .map_err(io("write master-passwd"))?;
    std::fs::write(root.join("passwd"), "").map_err(io("write passwd"))
}

fn append_user(root: &Path, user: &str, password: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(root.join("passwd"))
        .map_err(io("open passwd"))?;
    writeln!(file, "{user}:{{PLAIN}}{password}").map_err(io("write passwd"))?;
    Ok(())
}
