//! What the CLI tests share: running `flytt`, reading its JSON, endpoints
//! on test servers, seeding mailboxes, and a worker that stops with the test.
#![allow(dead_code)] // each test file uses its own part

pub mod browser;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use flytt_testsupport::corpus::{self, CorpusMessage};
use flytt_testsupport::dovecot::MASTER_USER;
use flytt_testsupport::{Dovecot, Postgres};

/// Where a test keeps flytt's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The data directory's SQLite file.
    Sqlite,
    /// A PostgreSQL server of the test's own (see `keep_state_in`).
    Postgres,
}

/// Puts the state of the data directory `data` where `backend` says: for
/// PostgreSQL, starts a server and notes its URL beside the data directory,
/// where `flytt_command` finds it. Keep the server until the test ends.
pub fn keep_state_in(backend: Backend, data: &Path) -> Option<Postgres> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let server = Postgres::start().expect("start PostgreSQL");
            std::fs::write(database_url_file(data), server.url()).expect("write the URL");
            Some(server)
        }
    }
}

fn database_url_file(data: &Path) -> std::path::PathBuf {
    data.with_file_name("database.url")
}

/// `flytt ARGS --data-dir DATA`, with `--database-url` when the test keeps
/// its state in PostgreSQL.
pub fn flytt_command(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flytt"));
    command.args(args).arg("--data-dir").arg(data);
    if let Ok(url) = std::fs::read_to_string(database_url_file(data)) {
        command.arg("--database-url").arg(url);
    }
    command
}

/// Runs `flytt ARGS --data-dir DATA`.
pub fn flytt(data: &Path, args: &[&str]) -> Output {
    flytt_command(data, args).output().expect("run flytt")
}

/// Runs `flytt` and insists on exit code 0.
pub fn flytt_ok(data: &Path, args: &[&str]) -> Output {
    let out = flytt(data, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "flytt {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// `flytt endpoint new NAME` for a test server, with its CA and, given a
/// password file, the master user as admin; `extra` adds flags.
pub fn add_endpoint(
    data: &Path,
    name: &str,
    server: &Dovecot,
    admin_password: Option<&Path>,
    extra: &[&str],
) {
    let url = server.url();
    let ca = server.ca_file().display().to_string();
    let mut args = vec!["endpoint", "new", name, "--url", &url, "--ca-file", &ca];
    let password = admin_password.map(|p| p.display().to_string());
    if let Some(password) = &password {
        args.extend([
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            password,
        ]);
    }
    args.extend(extra);
    flytt_ok(data, &args);
}

/// `count` generated messages of about `size` bytes in `user`'s INBOX.
pub async fn seed_inbox(server: &Dovecot, user: &str, count: u32, size: usize) {
    let mut session = server.admin_session(user).await.expect("login");
    let messages: Vec<CorpusMessage> = (0..count)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("{n}-{user}")), size),
            flags: if n % 3 == 0 {
                vec!["\\Seen".into()]
            } else {
                vec![]
            },
            date: corpus::spread_date(n),
        })
        .collect();
    corpus::append_many(&mut session, "INBOX", &messages)
        .await
        .expect("seed");
}

/// `flytt serve` on DATA, on a free loopback port, sent SIGTERM when
/// dropped.
pub struct Worker(pub Child);

impl Worker {
    pub fn start(data: &Path) -> Worker {
        Worker::serve(data).0
    }

    /// The service and its API's base address (`http://127.0.0.1:PORT`).
    pub fn serve(data: &Path) -> (Worker, String) {
        Worker::serve_with(data, &[])
    }

    /// Like `serve`, with more of `serve`'s flags.
    pub fn serve_with(data: &Path, extra: &[&str]) -> (Worker, String) {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let mut child = flytt_command(data, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("flytt serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)
            .expect("the first line of flytt serve");
        // "flytt serve: HTTP API on http://127.0.0.1:PORT/ (…)"
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches('/').to_string())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        (Worker(child), base)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// The source password of the lab's users.
pub const USER_PASSWORD: &str = "kilde-passord-1";
/// A user whose CSV row has a wrong password: it fails alone.
pub const FAILING_USER: &str = "per@example.org";

/// A real Dovecot pair with `users` (plus `FAILING_USER`), each seeded
/// with `counts[i]` messages of about `size` bytes, and a data directory
/// with the endpoints `gammel` (the source, CSV credentials) and `ny` (the
/// target, through its master user).
pub struct Lab {
    pub source: Dovecot,
    pub target: Dovecot,
    pub dir: tempfile::TempDir,
    pub data: std::path::PathBuf,
    /// The PostgreSQL server holding the state, if not the data directory.
    pub database: Option<Postgres>,
}

impl Lab {
    pub async fn start(users: &[&str], counts: &[u32], size: usize) -> Lab {
        Self::start_with(users, counts, size, "").await
    }

    /// Like `start`, with the state kept by `backend`.
    pub async fn start_on(backend: Backend, users: &[&str], counts: &[u32], size: usize) -> Lab {
        Self::start_full(backend, users, counts, size, "", "").await
    }

    /// Like `start`, with extra configuration for the source server.
    pub async fn start_with(
        users: &[&str],
        counts: &[u32],
        size: usize,
        source_extra: &str,
    ) -> Lab {
        Self::start_configured(users, counts, size, source_extra, "").await
    }

    /// Like `start`, with extra configuration for either server.
    pub async fn start_configured(
        users: &[&str],
        counts: &[u32],
        size: usize,
        source_extra: &str,
        target_extra: &str,
    ) -> Lab {
        Self::start_full(
            Backend::Sqlite,
            users,
            counts,
            size,
            source_extra,
            target_extra,
        )
        .await
    }

    async fn start_full(
        backend: Backend,
        users: &[&str],
        counts: &[u32],
        size: usize,
        source_extra: &str,
        target_extra: &str,
    ) -> Lab {
        let mut pairs: Vec<(&str, &str)> = users.iter().map(|u| (*u, USER_PASSWORD)).collect();
        pairs.push((FAILING_USER, USER_PASSWORD));
        let source = Dovecot::start_with(flytt_testsupport::Layout::Source, &pairs, source_extra)
            .expect("source");
        let target = Dovecot::start_with(flytt_testsupport::Layout::Target, &pairs, target_extra)
            .expect("target");
        for (user, count) in users.iter().zip(counts) {
            seed_inbox(&source, user, *count, size).await;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let database = keep_state_in(backend, &data);
        let admin_pw = dir.path().join("admin.pw");
        std::fs::write(&admin_pw, flytt_testsupport::dovecot::MASTER_PASSWORD).expect("write");
        add_endpoint(&data, "gammel", &source, None, &[]);
        add_endpoint(&data, "ny", &target, Some(&admin_pw), &[]);
        Lab {
            source,
            target,
            dir,
            data,
            database,
        }
    }

    /// An IMAP batch's CSV: `users` with their passwords, and
    /// `FAILING_USER` with a wrong one.
    pub fn csv(users: &[&str]) -> String {
        let mut csv = String::from("EmailAddress,UserName,Password\n");
        for user in users {
            csv.push_str(&format!("{user},{user},{USER_PASSWORD}\n"));
        }
        csv.push_str(&format!("{FAILING_USER},{FAILING_USER},feil-passord\n"));
        csv
    }

    /// How many messages `user`'s INBOX has on the target.
    pub async fn target_inbox(&self, user: &str) -> u32 {
        let mut session = self.target.admin_session(user).await.expect("login");
        session
            .select("INBOX", flytt_imap::Access::ReadOnly)
            .await
            .expect("select")
            .exists
    }
}

/// `flytt token new --name NAME`: the token it prints.
pub fn new_token(data: &Path, name: &str) -> String {
    let out = flytt_ok(data, &["token", "new", "--name", name]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Counts the source's logged-in users (`doveadm who`, one line per user
/// whatever its sessions: a migration may open several) until `stop`; the
/// most seen at once.
pub fn count_users(
    config: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut most = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(out) = Command::new("doveadm")
                .arg("-c")
                .arg(&config)
                .arg("who")
                .output()
            {
                let lines = String::from_utf8_lossy(&out.stdout).lines().count();
                most = most.max(lines.saturating_sub(1));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        most
    })
}

/// The CSRF token of the sign-in form, with the cookie that goes with it.
pub async fn login_form(http: &reqwest::Client, base: &str) -> (String, String) {
    let form = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("GET /login");
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("flytt_login_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("the sign-in CSRF cookie")
        .to_string();
    let html = form.text().await.expect("html");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF token")
        .to_string();
    (cookie, csrf)
}

/// Waits (90 s at most) for `batch` to reach `status`, and returns what
/// `batch show` said then; the batch's events go with a failure.
pub async fn wait_for_batch(data: &Path, batch: &str, status: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let shown = json(&flytt_ok(data, &["batch", "show", batch, "--json"]));
        if shown["status"] == status {
            return shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{shown}\n{}",
            String::from_utf8_lossy(&flytt(data, &["batch", "events", batch]).stdout)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A vacation reply, as users have them.
pub const VACATION: &str = "require \"vacation\";\r\nvacation :days 3 \"Borte.\";\r\n";

/// `dovecot`'s ManageSieve server, trusted through its CA file.
pub fn sieve_server(dovecot: &Dovecot) -> flytt_sieve::SieveServer {
    let mut server = flytt_sieve::SieveServer::from_url(&dovecot.sieve_url()).expect("url");
    server.ca_files = vec![dovecot.ca_file()];
    server
}

/// Uploads `scripts` (name, text) as `user` with their own login; the
/// first is made active, as a user's vacation reply would be.
pub async fn upload_sieve_scripts(dovecot: &Dovecot, user: &str, scripts: &[(&str, &str)]) {
    let mut session = flytt_sieve::SieveSession::connect(&sieve_server(dovecot))
        .await
        .expect("connect");
    session
        .authenticate(&flytt_sieve::SieveAuth {
            authorize_as: None,
            user,
            password: USER_PASSWORD,
        })
        .await
        .expect("login");
    for (name, text) in scripts {
        session
            .put_script(name, text.as_bytes())
            .await
            .expect("upload");
    }
    if let Some((active, _)) = scripts.first() {
        session.set_active(active).await.expect("activate");
    }
    session.logout().await;
}

/// A dashboard session signed in with an API token: the client (which
/// does not follow redirects) and the session cookie.
pub async fn sign_in(base: &str, token: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (cookie, csrf) = login_form(&http, base).await;
    let signed_in = http
        .post(format!("{base}/login"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("secret", token)])
        .send()
        .await
        .expect("sign in");
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("flytt_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    (http, session)
}
