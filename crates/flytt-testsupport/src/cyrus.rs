//! One Cyrus IMAP instance: the second server family of the tests.
//!
//! Cyrus differs from Dovecot where migrations break: its personal
//! namespace is `INBOX.` with the separator `.` (folders are created as
//! `INBOX.Sent`; `Sent` alone is refused), an administrator opens a user's
//! mailbox by SASL PLAIN with the user as authorization identity, and it
//! rewrites some messages on APPEND (raw 8-bit header bytes are replaced,
//! `munge8bit` at its default). It offers CREATE-SPECIAL-USE.
//!
//! Debian's `cyrus-imapd` conflicts with `dovecot-imapd` as packages, so
//! `scripts/install-deps` extracts it (`dpkg -x`) under
//! `/opt/flytt-cyrus` (or `FLYTT_CYRUS_ROOT`); each instance runs its own
//! `master` with its own configuration, port and directories.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use flytt_imap::{Auth, Secret, Security, ServerConfig, Session};

use crate::dovecot::make_certificates;
use crate::{Error, Result, free_port, io};

/// The administrator every instance has.
pub const ADMIN_USER: &str = "cyrusadmin";
pub const ADMIN_PASSWORD: &str = "cyrus-admin-secret-1";

/// A running Cyrus; stopped and deleted on drop.
pub struct Cyrus {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

/// Where the extracted packages are.
pub fn install_root() -> PathBuf {
    std::env::var_os("FLYTT_CYRUS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/flytt-cyrus"))
}

impl Cyrus {
    /// Starts an instance whose mailboxes are these users' (`name`,
    /// `password`), each made by the administrator.
    pub async fn start(users: &[(&str, &str)]) -> Result<Cyrus> {
        Self::start_with(users, "").await
    }

    /// Like `start`, with extra `imapd.conf` lines (e.g.
    /// `suppress_capabilities: LITERAL+ MULTIAPPEND`).
    pub async fn start_with(users: &[(&str, &str)], extra_config: &str) -> Result<Cyrus> {
        let install = install_root();
        let bin = install.join("usr/lib/cyrus/bin");
        if !bin.join("master").exists() {
            return Err(Error::Server(format!(
                "Cyrus is not installed under {} (run scripts/install-deps)",
                install.display()
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("flytt-cyrus-")
            .tempdir()
            .map_err(io("create Cyrus directory"))?;
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod Cyrus directory"))?;
        for sub in ["conf", "spool", "run", "sock"] {
            std::fs::create_dir_all(root.join(sub)).map_err(io("create Cyrus subdirectory"))?;
        }
        make_certificates(root)?;
        let runs_as = cyrus_user()?;
        let conf = root.join("imapd.conf");
        std::fs::write(&conf, imapd_conf(root, &runs_as) + extra_config)
            .map_err(io("write imapd.conf"))?;
        set_password(root, ADMIN_USER, ADMIN_PASSWORD)?;
        for (user, password) in users {
            set_password(root, user, password)?;
        }
        if runs_as != current_user()? {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{runs_as}:"))
                .arg(root)
                .status()
                .map_err(io("chown Cyrus directory"))?;
            if !status.success() {
                return Err(Error::Server("chown of the Cyrus directory failed".into()));
            }
        }
        let mut attempt = 1;
        let (child, port) = loop {
            let port = free_port()?;
            let services = root.join("cyrus.conf");
            std::fs::write(&services, cyrus_conf(root, &bin, port))
                .map_err(io("write cyrus.conf"))?;
            let log =
                std::fs::File::create(root.join("master.log")).map_err(io("create master.log"))?;
            // A process group of its own: a stopping master signals its whole
            // group, which would otherwise be every server of the test run.
            let mut child = Command::new(bin.join("master"))
                .process_group(0)
                .arg("-C")
                .arg(&conf)
                .arg("-M")
                .arg(&services)
                .arg("-p")
                .arg(root.join("run/master.pid"))
                .env("LD_LIBRARY_PATH", install.join("usr/lib/x86_64-linux-gnu"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(io("start Cyrus master"))?;
            let log = || std::fs::read_to_string(root.join("master.log")).unwrap_or_default();
            let token = instance_name(root);
            let listening =
                crate::wait_listening(&mut child, "cyrus", &[port], log).and_then(|()| {
                    if crate::greets_with(port, &token) {
                        Ok(())
                    } else {
                        Err(Error::Server(format!("another server took port {port}")))
                    }
                });
            match listening {
                Ok(()) => break (child, port),
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
        let cyrus = Cyrus { dir, child, port };
        let names: Vec<&str> = users.iter().map(|(user, _)| *user).collect();
        cyrus.make_mailboxes(&names).await?;
        Ok(cyrus)
    }

    /// Makes `user`'s mailbox (and its SASL password).
    pub async fn add_user(&mut self, user: &str, password: &str) -> Result<()> {
        set_password(self.dir.path(), user, password)?;
        self.make_mailboxes(&[user]).await
    }

    /// The administrator makes the users' mailboxes, in one session.
    ///
    /// Why one session and no preforked services (`prefork=0`): Cyrus 3.6
    /// makes a mailbox's id, which names its directory, from a generator
    /// that processes forked from one master share; two processes creating
    /// mailboxes at once made the same id, and two users shared a mailbox.
    async fn make_mailboxes(&self, users: &[&str]) -> Result<()> {
        let mut session = Session::connect(&self.server_config()).await?;
        session
            .login(&Auth::Login {
                user: ADMIN_USER.into(),
                password: Secret::new(ADMIN_PASSWORD),
            })
            .await?;
        for user in users {
            session.create(&format!("user.{user}")).await?;
        }
        session.logout().await;
        Ok(())
    }

    /// `imap://127.0.0.1:PORT` (STARTTLS, or plaintext where allowed).
    pub fn url(&self) -> String {
        format!("imap://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the instance's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// What the master wrote (Cyrus logs to syslog otherwise).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default()
    }

    /// The plaintext connection settings for this instance.
    pub fn server_config(&self) -> ServerConfig {
        let mut config = ServerConfig::new("127.0.0.1", self.port, Security::Plain);
        config.allow_plaintext = true;
        config
    }

    /// The administrator's login opening `user`'s mailbox.
    pub fn admin_auth(user: &str) -> Auth {
        Auth::Plain {
            user: ADMIN_USER.into(),
            password: Secret::new(ADMIN_PASSWORD),
            authorize_as: Some(user.into()),
        }
    }

    /// A logged-in session in `user`'s mailbox, through the administrator.
    pub async fn admin_session(&self, user: &str) -> Result<Session> {
        let mut session = Session::connect(&self.server_config()).await?;
        session.login(&Self::admin_auth(user)).await?;
        Ok(session)
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        crate::stop_master(&mut self.child);
    }
}

fn current_user() -> Result<String> {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .map_err(io("run id"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Cyrus refuses to run as root: as root, its services run as `daemon`.
fn cyrus_user() -> Result<String> {
    let me = current_user()?;
    Ok(if me == "root" { "daemon".into() } else { me })
}

/// Adds or changes a SASL password (sasldb, as `user@domain`).
fn set_password(root: &Path, user: &str, password: &str) -> Result<()> {
    use std::io::Write;
    // A user without a domain is in the server's own realm, its servername.
    let (local, realm) = match user.split_once('@') {
        Some((local, domain)) => (local, domain.to_string()),
        None => (user, instance_name(root)),
    };
    let mut command = Command::new("saslpasswd2");
    command.args(["-p", "-c", "-f"]).arg(root.join("sasldb2"));
    command.args(["-u", &realm]);
    let mut child = command
        .arg(local)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("run saslpasswd2 (is sasl2-bin installed?)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(password.as_bytes())
            .map_err(io("write to saslpasswd2"))?;
    }
    let out = child.wait_with_output().map_err(io("run saslpasswd2"))?;
    if !out.status.success() {
        return Err(Error::Server(format!(
            "saslpasswd2 {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // The services read it as the Cyrus user.
    std::fs::set_permissions(root.join("sasldb2"), std::fs::Permissions::from_mode(0o644))
        .map_err(io("chmod sasldb2"))
}

/// The instance's servername: its greeting names it (see `greets_with`),
/// and it is the SASL realm of users without a domain.
fn instance_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

fn imapd_conf(root: &Path, runs_as: &str) -> String {
    let name = instance_name(root);
    let root = root.display();
    format!(
        "# Generated by flytt-testsupport for one test server on loopback.
configdirectory: {root}/conf
partition-default: {root}/spool
admins: {ADMIN_USER}
cyrus_user: {runs_as}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {root}/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
virtdomains: userid
altnamespace: no
unixhierarchysep: no
tls_server_cert: {root}/server.pem
tls_server_key: {root}/server.key
idlesocket: {root}/sock/idle
lmtpsocket: {root}/sock/lmtp
notifysocket: {root}/sock/notify
syslog_prefix: flytt-cyrus
servername: {name}
"
    )
}

fn cyrus_conf(root: &Path, bin: &Path, port: u16) -> String {
    let root = root.display();
    let bin = bin.display();
    format!(
        "START {{
  recover cmd=\"{bin}/ctl_cyrusdb -C {root}/imapd.conf -r\"
}}
SERVICES {{
  imap cmd=\"{bin}/imapd -C {root}/imapd.conf\" listen=\"127.0.0.1:{port}\" prefork=0 maxchild=200
}}
EVENTS {{
}}
DAEMON {{
}}
"
    )
}
