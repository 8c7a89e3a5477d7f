//! `flytt-lab`: the demo and the benchmark, on local Dovecot servers.
//!
//!   flytt-lab demo  FLYTT_BINARY
//!   flytt-lab bench-batch FLYTT_BINARY [--users N] [--messages N] [--size BYTES] [--out FILE]
//!   flytt-lab bench-legacy FLYTT_BINARY [--messages N] [--size BYTES]
//!   flytt-lab bench-scale FLYTT_BINARY [--users N] [--out FILE]
//!   flytt-lab bench-workers FLYTT_BINARY [--users N] [--messages N] [--size BYTES] [--out FILE]
//!   flytt-lab bench-peers FLYTT_BINARY [--users N] [--messages N] [--parallel N]
//!                   [--large-users N] [--large N] [--latency-ms N] [--out FILE]
//!   flytt-lab bench-faults FLYTT_BINARY [--users N] [--messages N] [--size BYTES] [--out FILE]
//!   flytt-lab bench FLYTT_BINARY [--users N] [--messages N] [--size BYTES]
//!                   [--single N] [--large N] [--large-size BYTES] [--latency-ms N]
//!                   [--out FILE]
//!
//! Both start a source and a target Dovecot on 127.0.0.1, fill the source,
//! run the real `flytt` binary against them and check the result.

mod faults;
mod peers;
mod scale;
mod workers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flytt_dav::{DavAccount, DavClient};
use flytt_imap::{Access, AppendMessage, Body, Flag, ServerResponse, Session};
use flytt_testsupport::corpus::{self, CorpusMessage};
use flytt_testsupport::dav::{self, DavFamily, DavServer};
use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
use flytt_testsupport::proxy::LatencyProxy;
use flytt_testsupport::slapd::{
    ADMIN_DN as LDAP_ADMIN_DN, ADMIN_PASSWORD as LDAP_ADMIN_PASSWORD, BASE_DN as LDAP_BASE_DN,
    PEOPLE_DN, Slapd,
};
use flytt_testsupport::{Cyrus, Dovecot, EndpointAdmin, Layout, NewEndpoint, TestServer};

type LabResult<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") if args.len() >= 2 => demo(Path::new(&args[1])).await,
        Some("bench") if args.len() >= 2 => bench(Path::new(&args[1]), &args[2..]).await,
        Some("bench-batch") if args.len() >= 2 => {
            bench_batch(Path::new(&args[1]), &args[2..]).await
        }
        Some("bench-legacy") if args.len() >= 2 => {
            bench_legacy(Path::new(&args[1]), &args[2..]).await
        }
        Some("bench-scale") if args.len() >= 2 => {
            scale::bench_scale(Path::new(&args[1]), &args[2..]).await
        }
        Some("bench-workers") if args.len() >= 2 => {
            workers::bench_workers(Path::new(&args[1]), &args[2..]).await
        }
        Some("bench-peers") if args.len() >= 2 => {
            peers::bench_peers(Path::new(&args[1]), &args[2..]).await
        }
        Some("bench-faults") if args.len() >= 2 => {
            faults::bench_faults(Path::new(&args[1]), &args[2..]).await
        }
        _ => {
            eprintln!(
                "usage: flytt-lab demo FLYTT_BINARY | flytt-lab bench FLYTT_BINARY [options] | flytt-lab bench-batch FLYTT_BINARY [--users N] [--messages N] [--size BYTES] [--out FILE]"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("flytt-lab: {e}");
        std::process::exit(1);
    }
}

struct Lab {
    source: Dovecot,
    target: Dovecot,
    dir: tempfile::TempDir,
}

impl Lab {
    fn start(users: &[String]) -> LabResult<Lab> {
        Self::start_with_target(users, Layout::Target)
    }

    fn start_with_target(users: &[String], target: Layout) -> LabResult<Lab> {
        let pairs: Vec<(&str, &str)> = users
            .iter()
            .map(|u| (u.as_str(), "user-password-1"))
            .collect();
        let source = Dovecot::start_with(Layout::Source, &pairs, &lab_dovecot_config())?;
        let target = Dovecot::start_with(target, &pairs, &lab_dovecot_config())?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("master-password"), MASTER_PASSWORD)?;
        Ok(Lab {
            source,
            target,
            dir,
        })
    }

    /// `flytt sync` for one user, master logins, through the given ports.
    fn sync_command(
        &self,
        flytt: &Path,
        user: &str,
        source_port: u16,
        target_port: u16,
    ) -> Command {
        let password = self.dir.path().join("master-password");
        let mut cmd = Command::new(flytt);
        cmd.arg("sync")
            .arg("--source")
            .arg(format!("imap://127.0.0.1:{source_port}"))
            .arg("--source-user")
            .arg(format!("{user}*{MASTER_USER}"))
            .arg("--source-password-file")
            .arg(&password)
            .arg("--target")
            .arg(format!("imap://127.0.0.1:{target_port}"))
            .arg("--target-user")
            .arg(format!("{user}*{MASTER_USER}"))
            .arg("--target-password-file")
            .arg(&password)
            .arg("--ca-file")
            .arg(self.source.ca_file())
            .arg("--ca-file")
            .arg(self.target.ca_file())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(extra_flytt_args())
            .stdin(Stdio::null());
        cmd
    }
}

/// Extra configuration for the benchmarks' Dovecot servers, for
/// experiments (`FLYTT_LAB_DOVECOT_CONFIG`).
fn lab_dovecot_config() -> String {
    std::env::var("FLYTT_LAB_DOVECOT_CONFIG").unwrap_or_default()
}

/// Extra `flytt sync` arguments for experiments (`FLYTT_LAB_ARGS="--window 8"`).
fn extra_flytt_args() -> Vec<String> {
    std::env::var("FLYTT_LAB_ARGS")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

async fn demo(flytt: &Path) -> LabResult<()> {
    let user = "kari@example.org".to_string();
    println!(
        "== Starting two Dovecot servers on 127.0.0.1 (source: Maildir++ with '.', target: '/')"
    );
    let batch_users = ["ola@example.org", "nora@example.org", "emil@example.org"];
    let all_users: Vec<String> = std::iter::once(user.clone())
        .chain(batch_users.iter().map(|u| u.to_string()))
        .collect();
    let lab = Lab::start(&all_users)?;
    println!(
        "   source {}  target {}",
        lab.source.url(),
        lab.target.url()
    );
    let folders = corpus::functional(true);
    let total: usize = folders.iter().map(|f| f.messages.len()).sum();
    println!(
        "== Filling the source mailbox of {user}: {} folders, {total} messages (one of 25 MB)",
        folders.len()
    );
    let mut session = lab.source.admin_session(&user).await?;
    corpus::seed(&mut session, '.', &folders).await?;

    println!("\n== flytt sync (initial)\n");
    let status = lab
        .sync_command(flytt, &user, lab.source.port, lab.target.port)
        .status()?;
    println!("   exit code {}", status.code().unwrap_or(-1));

    println!(
        "\n== New mail and a changed flag on the source, then flytt sync again (incremental)\n"
    );
    let new: Vec<CorpusMessage> = (1000..1003u32)
        .map(|n| CorpusMessage {
            bytes: corpus::generated_message(n, Some(&format!("demo-{n}@kilde.example")), 4_000),
            flags: vec![],
            date: corpus::spread_date(n),
        })
        .collect();
    corpus::append_all(&mut session, "INBOX", &new).await?;
    session.select("INBOX", Access::ReadWrite).await?;
    session
        .uid_store(&[1], true, &[Flag::parse("\\Flagged").ok_or("flag")?])
        .await?;
    let status = lab
        .sync_command(flytt, &user, lab.source.port, lab.target.port)
        .status()?;
    println!("   exit code {}", status.code().unwrap_or(-1));

    let source = corpus::snapshot(&mut lab.source.admin_session(&user).await?).await?;
    let target = corpus::snapshot(&mut lab.target.admin_session(&user).await?).await?;
    let mut checked = 0;
    for (path, messages) in &source {
        let mapped = corpus::expected_target_path(path);
        if target.get(&mapped) != Some(messages) {
            return Err(format!("{path} differs on the target ({mapped})").into());
        }
        checked += messages.len();
    }
    println!(
        "\n== Verified: the target holds all {checked} messages byte for byte, with flags and dates."
    );
    batch_demo(flytt, &lab, &batch_users).await
}

/// The batch part of the demo: a staged migration as the seed describes
/// it, with real directories (two OpenLDAP servers): the target's users are
/// mail users until flytt makes them mailboxes with the CSV's passwords,
/// the source's forward to the new addresses, and on completion the source
/// mailboxes become mail users. Endpoints, directories, a batch from a CSV
/// file, the service, and the batch through to Completed.
async fn batch_demo(flytt: &Path, lab: &Lab, users: &[&str]) -> LabResult<()> {
    println!(
        "\n== A staged migration batch: {} users from a CSV file",
        users.len()
    );
    let target_directory = Slapd::start()?;
    let source_directory = Slapd::start()?;
    for user in users {
        let uid = user.split('@').next().unwrap_or(user);
        target_directory.add_mail_user(uid, user)?;
        source_directory.add_mail_user(uid, user)?;
        source_directory.add(&format!(
            "dn: uid={uid},{PEOPLE_DN}\nchangetype: modify\nreplace: mailboxEnabled\nmailboxEnabled: TRUE\n"
        ))?;
    }
    for (i, user) in users.iter().enumerate() {
        let mut session = lab.source.admin_session(user).await?;
        let messages: Vec<CorpusMessage> = (0..40 + 10 * i as u32)
            .map(|n| CorpusMessage {
                bytes: corpus::generated_message(n, Some(&format!("{n}.{user}")), 3_000),
                flags: if n % 3 == 0 {
                    vec!["\\Seen".into()]
                } else {
                    vec![]
                },
                date: corpus::spread_date(n),
            })
            .collect();
        corpus::append_all(&mut session, "INBOX", &messages).await?;
    }
    let data = lab.dir.path().join("data");
    let password = lab.dir.path().join("master-password");
    let run = |args: &[&str]| -> LabResult<()> {
        println!("\n$ flytt {}", args.join(" "));
        flytt_command(flytt, &data, args, true)
    };
    add_endpoints(flytt, &data, &lab.source, &lab.target, &password, 2, true)?;
    let dav = DemoDav::start(lab, users).await?;
    for (endpoint, server) in [("gammel", &dav.source), ("ny", &dav.target)] {
        run(&[
            "endpoint",
            "set",
            endpoint,
            "--dav-url",
            &server.url_template()?,
        ])?;
    }
    let bind_password = lab.dir.path().join("ldap-bind-password");
    std::fs::write(&bind_password, LDAP_ADMIN_PASSWORD)?;
    for (name, directory, endpoint) in [
        ("ny-katalog", &target_directory, "ny"),
        ("gammel-katalog", &source_directory, "gammel"),
    ] {
        run(&[
            "directory",
            "new",
            name,
            "--ldap-url",
            &directory.url(),
            "--bind-dn",
            LDAP_ADMIN_DN,
            "--bind-password-file",
            &bind_password.display().to_string(),
            "--base-dn",
            LDAP_BASE_DN,
            "--ca-file",
            &directory.ca_file().display().to_string(),
        ])?;
        run(&["endpoint", "set", endpoint, "--directory", name])?;
    }
    run(&["directory", "test", "ny-katalog", "--user", users[0]])?;
    let csv = lab.dir.path().join("bolge-1.csv");
    // Semicolons and CRLF, as Excel writes it in a Norwegian locale; an
    // empty cell takes the batch's value, a filled one overrides it.
    let mut text = String::from("EmailAddress;Password;ForceChangePassword;LargeItemLimit\r\n");
    for (i, user) in users.iter().enumerate() {
        let limit = if i == 0 { "50MB" } else { "" };
        text.push_str(&format!("{user};Velkommen-{i}-2026;True;{limit}\r\n"));
    }
    std::fs::write(&csv, &text)?;
    println!("\n{}:\n{text}", csv.display());
    run(&[
        "batch",
        "new",
        "--name",
        "Bølge 1",
        "--type",
        "staged",
        "--source-endpoint",
        "gammel",
        "--target-endpoint",
        "ny",
        "--csv",
        &csv.display().to_string(),
        "--target-delivery-domain",
        "ny.example.org",
        "--convert-source-on-complete",
        "--auto-start",
        "--auto-complete",
    ])?;
    println!("\n$ flytt serve   (in the background until the batch is Completed)");
    run_serve_until(
        flytt,
        &data,
        "Bølge 1",
        &["Completed", "CompletedWithErrors"],
        &[],
        Duration::from_secs(120),
    )?;
    run(&["batch", "show", "Bølge 1"])?;
    run(&["user", "list", "--batch", "Bølge 1"])?;
    run(&["batch", "events", "Bølge 1", "--user", users[0]])?;
    println!("\nThe directories afterwards ({}):", users[0]);
    let uid = users[0].split('@').next().unwrap_or(users[0]);
    let filter = format!("(uid={uid})");
    for (side, directory, attribute) in [
        ("target", &target_directory, "mailboxEnabled"),
        ("target", &target_directory, "mustChangePassword"),
        ("source", &source_directory, "mailboxEnabled"),
        ("source", &source_directory, "mailForwardingAddress"),
    ] {
        println!(
            "  {side:<6} {attribute:<22} {}",
            directory.values(&filter, attribute)?.join(", ")
        );
    }
    let reports = lab.dir.path().join("reports");
    run(&[
        "batch",
        "report",
        "Bølge 1",
        "--out",
        &reports.display().to_string(),
    ])?;
    println!(
        "\n{}",
        std::fs::read_to_string(reports.join("Bølge_1-users.csv"))?
    );
    dav.verify(users).await
}

/// The demo's contacts and calendars: a Radicale beside each Dovecot (on
/// its certificate, so the endpoints' CA file trusts it too) whose admin is
/// the endpoints' master user, and an address book and a calendar for each
/// user on the source.
struct DemoDav {
    source: DavServer,
    target: DavServer,
    trust: flytt_tls::Trust,
}

impl DemoDav {
    async fn start(lab: &Lab, users: &[&str]) -> LabResult<DemoDav> {
        let logins: Vec<(&str, &str)> = users.iter().map(|u| (*u, "dav-demo-1")).collect();
        let start = |server: &Dovecot| {
            let (certificate, key) = server.certificate();
            DavServer::start_with_admin(
                DavFamily::Radicale,
                (MASTER_USER, MASTER_PASSWORD),
                &logins,
                Some((&certificate, &key)),
            )
        };
        let demo = DemoDav {
            source: start(&lab.source)?,
            target: start(&lab.target)?,
            trust: flytt_tls::Trust {
                ca_files: vec![lab.source.ca_file(), lab.target.ca_file()],
                fingerprints: Vec::new(),
            },
        };
        let mut items = 0;
        for user in users {
            items += dav::seed(&demo.client(&demo.source, user)?).await?;
        }
        println!(
            "\n== Contacts and calendars: two Radicale servers, {items} contacts, events and tasks on the source"
        );
        Ok(demo)
    }

    /// The admin's view of `user`'s collections on `server`.
    fn client(&self, server: &DavServer, user: &str) -> LabResult<DavClient> {
        let url = server.url_template()?.replace("{user}", user);
        Ok(DavClient::new(DavAccount {
            url: url::Url::parse(&url)?,
            user: MASTER_USER.into(),
            password: MASTER_PASSWORD.into(),
            owner: Some(user.to_string()),
            trust: self.trust.clone(),
        })?)
    }

    /// Every user's contacts and calendar items are on the target.
    async fn verify(&self, users: &[&str]) -> LabResult<()> {
        let mut checked = 0;
        for user in users {
            let on_source = dav::contents(&self.client(&self.source, user)?).await?;
            let on_target = dav::contents(&self.client(&self.target, user)?).await?;
            if on_source != on_target {
                return Err(format!("{user}'s contacts and calendars differ on the target").into());
            }
            checked += on_source.len();
        }
        println!(
            "== Verified: the target has all {checked} contacts, events and tasks (compared after Radicale's own normalisation)."
        );
        Ok(())
    }
}

struct BenchOptions {
    users: usize,
    messages: usize,
    size: usize,
    large: usize,
    large_size: usize,
    latency_ms: u64,
    single: usize,
    out: Option<PathBuf>,
}

fn parse_bench(args: &[String]) -> LabResult<BenchOptions> {
    let mut o = BenchOptions {
        users: 20,
        messages: 2_000,
        size: 25_000,
        large: 8,
        large_size: 20 * 1024 * 1024,
        latency_ms: 20,
        single: 10_000,
        out: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--users" => o.users = value.parse()?,
            "--messages" => o.messages = value.parse()?,
            "--size" => o.size = value.parse()?,
            "--large" => o.large = value.parse()?,
            "--large-size" => o.large_size = value.parse()?,
            "--latency-ms" => o.latency_ms = value.parse()?,
            "--single" => o.single = value.parse()?,
            "--out" => o.out = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(o)
}

fn bench_message(user: usize, n: usize, size: usize) -> AppendMessage {
    AppendMessage {
        flags: if n.is_multiple_of(2) {
            Flag::parse("\\Seen").into_iter().collect()
        } else {
            Vec::new()
        },
        internal_date: Some(corpus::spread_date(n as u32)),
        body: Body::Memory(Bytes::from(corpus::generated_message(
            (user * 100_000 + n) as u32,
            Some(&format!("bench-{user}-{n}@kilde.example")),
            size,
        ))),
    }
}

/// Pipelined MULTIAPPEND of 50 messages per command, 4 commands in flight:
/// what the server can ingest at best.
async fn ingest(
    session: &mut Session,
    mailbox: &str,
    messages: Vec<AppendMessage>,
) -> LabResult<()> {
    let mut batches = messages
        .chunks(50)
        .map(<[AppendMessage]>::to_vec)
        .collect::<Vec<_>>()
        .into_iter();
    let mut in_flight = 0;
    loop {
        while in_flight < 4 {
            let Some(batch) = batches.next() else { break };
            let builder = flytt_imap::append(mailbox, &batch, session.literal_plus());
            session.send(builder).await?;
            in_flight += 1;
        }
        if in_flight == 0 {
            return Ok(());
        }
        if let ServerResponse::Tagged(done) = session.next().await? {
            if done.status != flytt_imap::CompletionStatus::Ok {
                return Err(format!("APPEND refused: {}", done.text).into());
            }
            in_flight -= 1;
        }
    }
}

/// Appends to every user's INBOX at once. `tls`: over STARTTLS, as flytt
/// connects (for ceilings); otherwise plaintext (for seeding).
async fn seed_users(
    server: &Dovecot,
    users: &[String],
    tls: bool,
    make: impl Fn(usize) -> Vec<AppendMessage>,
) -> LabResult<Duration> {
    seed_users_at_once(server, users, tls, users.len(), None, make).await
}

/// Like `seed_users`, with at most `at_once` users appending at a time
/// (their sessions all opened before the clock starts); `start`, if
/// given, is waited at once the sessions are open.
async fn seed_users_at_once(
    server: &Dovecot,
    users: &[String],
    tls: bool,
    at_once: usize,
    start: Option<&tokio::sync::Barrier>,
    make: impl Fn(usize) -> Vec<AppendMessage>,
) -> LabResult<Duration> {
    let config = if tls {
        server.starttls_config()
    } else {
        server.server_config()
    };
    // Messages and logins are ready before the clock starts: only the
    // server's ingest is timed.
    let mut sessions = Vec::new();
    for (i, user) in users.iter().enumerate() {
        sessions.push((server.admin_session_with(user, &config).await?, make(i)));
    }
    if let Some(start) = start {
        start.wait().await;
    }
    let turns = std::sync::Arc::new(tokio::sync::Semaphore::new(at_once.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut session, messages) in sessions {
        let turns = turns.clone();
        tasks.push(tokio::spawn(async move {
            let _turn = turns.acquire_owned().await.map_err(|e| e.to_string())?;
            ingest(&mut session, "INBOX", messages)
                .await
                .map_err(|e| e.to_string())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// Lists every user's folders and asks for each one's STATUS, as the
/// users' mail clients would have long before a migration: the server
/// then has the folders it creates for every user (`auto = subscribe`)
/// and their indexes. Without this, the first copy would pay for making
/// them, which no mailbox in use costs.
async fn open_like_a_mail_client(server: &Dovecot, users: &[String]) -> LabResult<()> {
    for user in users {
        let mut session = server.admin_session(user).await?;
        let folders: Vec<String> = session
            .list_all()
            .await?
            .into_iter()
            .filter(|m| !m.attributes.iter().any(|a| a == "\\noselect"))
            .map(|m| m.name)
            .collect();
        session.statuses(&folders).await?;
        session.logout().await;
    }
    Ok(())
}

/// Reads every body of every user, concurrently, over STARTTLS as flytt
/// does: what the source can serve.
async fn read_all(server: &Dovecot, users: &[String]) -> LabResult<(Duration, u64)> {
    read_all_at_once(server, users, users.len(), None).await
}

/// Like `read_all`, with at most `at_once` users reading at a time (their
/// sessions all opened before the clock starts); `start`, if given, is
/// waited at once the sessions are open.
async fn read_all_at_once(
    server: &Dovecot,
    users: &[String],
    at_once: usize,
    start: Option<&tokio::sync::Barrier>,
) -> LabResult<(Duration, u64)> {
    let mut sessions = Vec::new();
    for user in users {
        sessions.push(
            server
                .admin_session_with(user, &server.starttls_config())
                .await?,
        );
    }
    if let Some(start) = start {
        start.wait().await;
    }
    let turns = std::sync::Arc::new(tokio::sync::Semaphore::new(at_once.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut session in sessions {
        let turns = turns.clone();
        tasks.push(tokio::spawn(async move {
            let _turn = turns.acquire_owned().await.map_err(|e| e.to_string())?;
            session
                .select("INBOX", Access::ReadOnly)
                .await
                .map_err(|e| e.to_string())?;
            let fetched = session
                .uid_fetch("1:*", "UID BODY.PEEK[]")
                .await
                .map_err(|e| e.to_string())?;
            Ok::<u64, String>(
                fetched
                    .iter()
                    .map(|m| m.body.as_ref().map_or(0, Body::len))
                    .sum(),
            )
        }));
    }
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await??;
    }
    Ok((started.elapsed(), bytes))
}

/// Runs one `flytt sync` per user, all at once; returns the wall time and
/// the largest peak RSS (kB) among them.
fn run_flytt(
    lab: &Lab,
    flytt: &Path,
    users: &[String],
    source_port: u16,
    target_port: u16,
) -> LabResult<(Duration, u64)> {
    let started = Instant::now();
    let mut children = Vec::new();
    for user in users {
        children.push(
            lab.sync_command(flytt, user, source_port, target_port)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?,
        );
    }
    let mut peak_kb = 0;
    let mut running = children.len();
    while running > 0 {
        running = 0;
        for child in &mut children {
            if child.try_wait()?.is_none() {
                running += 1;
                peak_kb = peak_kb.max(peak_rss_kb(child.id()));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("flytt sync failed: {status}").into());
        }
    }
    Ok((started.elapsed(), peak_kb))
}

fn peak_rss_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "VmHWM:")
}

/// A process's memory figure from /proc (`VmHWM:` peak, `VmRSS:` now), in
/// kB; 0 when the process is gone.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Rate {
    messages: f64,
    mb: f64,
}

fn rate(messages: usize, bytes: u64, elapsed: Duration) -> Rate {
    let secs = elapsed.as_secs_f64().max(1e-9);
    Rate {
        messages: messages as f64 / secs,
        mb: bytes as f64 / secs / 1e6,
    }
}

async fn bench(flytt: &Path, args: &[String]) -> LabResult<()> {
    let o = parse_bench(args)?;
    let users: Vec<String> = (0..o.users)
        .map(|i| format!("user{i:03}@example.org"))
        .collect();
    let ceiling_users: Vec<String> = users.iter().map(|u| format!("ceiling-{u}")).collect();
    let together_users: Vec<String> = users.iter().map(|u| format!("together-{u}")).collect();
    let all: Vec<String> = users
        .iter()
        .chain(&ceiling_users)
        .chain(&together_users)
        .cloned()
        .chain([
            "large@example.org".to_string(),
            "single@example.org".to_string(),
        ])
        .collect();
    let lab = Lab::start(&all)?;
    let (messages, size) = (o.messages, o.size);
    let total_messages = o.users * o.messages;
    eprintln!(
        "seeding {} users x {} messages of ~{} bytes ...",
        o.users, o.messages, o.size
    );
    seed_users(&lab.source, &users, false, move |u| {
        (0..messages).map(|n| bench_message(u, n, size)).collect()
    })
    .await?;

    // Ceilings.
    let (read_time, total_bytes) = read_all(&lab.source, &users).await?;
    let ingest_time = seed_users(&lab.target, &ceiling_users, true, move |u| {
        (0..messages).map(|n| bench_message(u, n, size)).collect()
    })
    .await?;
    let read = rate(total_messages, total_bytes, read_time);
    let write = rate(total_messages, total_bytes, ingest_time);
    // Both at once, as a copy makes them work: on one machine the servers
    // share the cores, so neither reaches its rate measured alone.
    let (together_read, together_ingest) = tokio::join!(
        read_all(&lab.source, &users),
        seed_users(&lab.target, &together_users, true, move |u| {
            (0..messages).map(|n| bench_message(u, n, size)).collect()
        })
    );
    let together_time = together_read?.0.max(together_ingest?);
    let together = rate(total_messages, total_bytes, together_time);

    // flytt, all users at once.
    let (flytt_time, flytt_peak) =
        run_flytt(&lab, flytt, &users, lab.source.port, lab.target.port)?;
    let copied = rate(total_messages, total_bytes, flytt_time);
    let ceiling = write.messages.min(read.messages);

    // One mailbox: loopback, then through the latency proxy on both sides.
    let single_messages = o.single;
    let single = vec!["single@example.org".to_string()];
    seed_users(&lab.source, &single, false, move |u| {
        (0..single_messages)
            .map(|n| bench_message(1_000 + u, n, size))
            .collect()
    })
    .await?;
    let single_bytes: u64 = (0..single_messages)
        .map(|n| bench_message(1_000, n, size).body.len())
        .sum();
    let (single_time, _) = run_flytt(&lab, flytt, &single, lab.source.port, lab.target.port)?;
    let single_rate = rate(single_messages, single_bytes, single_time);
    // The same mailbox again, through the proxies.
    let proxied_user = vec!["single@example.org".to_string()];
    let delay = Duration::from_millis(o.latency_ms);
    let source_proxy = LatencyProxy::start(lab.source.port, delay).await?;
    let target_proxy = LatencyProxy::start(lab.target.port, delay).await?;
    // Remove the copied mailbox's state and target messages so the proxied
    // run copies everything again.
    std::fs::remove_dir_all(lab.dir.path().join("data"))?;
    let mut target = lab.target.admin_session("single@example.org").await?;
    target.select("INBOX", Access::ReadWrite).await?;
    target
        .run(
            target
                .builder("STORE")
                .raw("UID STORE 1:* +FLAGS.SILENT (\\Deleted)"),
        )
        .await?;
    target.run(target.builder("EXPUNGE").raw("EXPUNGE")).await?;
    let (proxied_time, _) = run_flytt(
        &lab,
        flytt,
        &proxied_user,
        source_proxy.port,
        target_proxy.port,
    )?;
    let proxied = rate(single_messages, single_bytes, proxied_time);

    // Large messages: bounded memory.
    let (large, large_size) = (o.large, o.large_size);
    let large_user = vec!["large@example.org".to_string()];
    seed_users(&lab.source, &large_user, false, move |_| {
        (0..large)
            .map(|n| AppendMessage {
                flags: Vec::new(),
                internal_date: Some(corpus::spread_date(n as u32)),
                body: Body::Memory(Bytes::from(corpus::large_message(n as u32, large_size))),
            })
            .collect()
    })
    .await?;
    let (large_time, large_peak) =
        run_flytt(&lab, flytt, &large_user, lab.source.port, lab.target.port)?;
    let large_rate = rate(large, (large * large_size) as u64, large_time);

    let report = format!(
        "## Benchmark: {users} users x {messages} messages of ~{size} bytes ({total_mb:.0} MB), Dovecot {version} on 127.0.0.1, {cores} cores\n\n\
| what | messages/s | MB/s |\n|---|---:|---:|\n\
| source read ceiling (FETCH BODY.PEEK[] 1:*, all users at once, STARTTLS) | {rm:.0} | {rmb:.1} |\n\
| target ingest ceiling (MULTIAPPEND x50, 4 in flight, all users at once, STARTTLS) | {wm:.0} | {wmb:.1} |\n\
| **flytt sync, one process per user, all at once (STARTTLS both sides)** | **{fm:.0}** | **{fmb:.1}** |\n\
| flytt / min(ceilings) | {ratio:.0}% | |\n\
| both servers at once (the read and the ingest above, run together) | {tm:.0} | {tmb:.1} |\n\
| flytt / both at once | {together_ratio:.0}% | |\n\
| one mailbox of {single} messages, loopback | {sm:.0} | {smb:.1} |\n\
| one mailbox, {lat} ms added each way (proxy on both servers) | {pm:.0} | {pmb:.1} |\n\
| latency / loopback (one mailbox) | {lratio:.0}% | |\n\
| large messages: {large} x {large_mb:.0} MB | {lgm:.2} | {lgmb:.1} |\n\n\
Peak resident memory of one flytt process: {fpeak} MB on the small-message corpus, {lpeak} MB on the large-message corpus.\n",
        users = o.users,
        messages = o.messages,
        size = o.size,
        total_mb = total_bytes as f64 / 1e6,
        version = dovecot_version(),
        cores = std::thread::available_parallelism().map_or(1, |n| n.get()),
        rm = read.messages,
        rmb = read.mb,
        wm = write.messages,
        wmb = write.mb,
        fm = copied.messages,
        fmb = copied.mb,
        ratio = 100.0 * copied.messages / ceiling,
        tm = together.messages,
        tmb = together.mb,
        together_ratio = 100.0 * copied.messages / together.messages,
        single = o.single,
        sm = single_rate.messages,
        smb = single_rate.mb,
        lat = o.latency_ms,
        pm = proxied.messages,
        pmb = proxied.mb,
        lratio = 100.0 * proxied.messages / single_rate.messages,
        large = o.large,
        large_mb = o.large_size as f64 / 1e6,
        lgm = large_rate.messages,
        lgmb = large_rate.mb,
        fpeak = flytt_peak / 1024,
        lpeak = large_peak / 1024,
    );
    println!("{report}");
    if let Some(out) = o.out {
        std::fs::write(out, &report)?;
    }
    Ok(())
}

fn dovecot_version() -> String {
    Command::new("dovecot")
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or_else(|| "?".into())
}

/// Every user's logins alone, `at_once` users at a time: a STARTTLS
/// connection, a login and a LOGOUT on each server, as every sync pays
/// them before its first message (Dovecot starts a login process and an
/// IMAP process per connection). What a batch of small mailboxes costs the
/// servers beyond the ceiling's reading and writing.
async fn login_floor(
    source: &Dovecot,
    target: &Dovecot,
    users: &[String],
    at_once: usize,
) -> LabResult<Duration> {
    let configs = std::sync::Arc::new((source.starttls_config(), target.starttls_config()));
    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for user in users {
        if in_flight.len() >= at_once
            && let Some(done) = in_flight.join_next().await
        {
            done??;
        }
        let (configs, login) = (configs.clone(), format!("{user}*{MASTER_USER}"));
        in_flight.spawn(async move {
            let log_in = |config| {
                let login = login.clone();
                async move {
                    let mut session = Session::connect(config).await?;
                    session
                        .login(&flytt_imap::Auth::Login {
                            user: login,
                            password: flytt_imap::Secret::new(MASTER_PASSWORD),
                        })
                        .await?;
                    session.logout().await;
                    Ok::<(), flytt_imap::Error>(())
                }
            };
            let (source, target) = tokio::join!(log_in(&configs.0), log_in(&configs.1));
            source.and(target).map_err(|e| e.to_string())
        });
    }
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Runs `flytt serve` on DATA until `batch` reaches one of `done` (one of
/// `failed`, or the timeout, is an error), then stops it. Returns the time
/// taken and the worker's peak resident memory in kB.
fn run_serve_until(
    flytt: &Path,
    data: &Path,
    batch: &str,
    done: &[&str],
    failed: &[&str],
    timeout: Duration,
) -> LabResult<ServeRun> {
    let started = Instant::now();
    let busy_before = machine_busy_ticks()?;
    let mut worker = Command::new(flytt)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let mut peak_kb = 0;
    let mut last_check = Instant::now();
    let outcome = loop {
        peak_kb = peak_kb.max(peak_rss_kb(worker.id()));
        if last_check.elapsed() > Duration::from_millis(200) {
            last_check = Instant::now();
            let shown = Command::new(flytt)
                .args(["batch", "show", batch, "--json"])
                .arg("--data-dir")
                .arg(data)
                .output()?;
            let status: serde_json::Value =
                serde_json::from_slice(&shown.stdout).unwrap_or_default();
            let now = status["status"].as_str().unwrap_or_default();
            if done.contains(&now) {
                break Ok(());
            }
            if failed.contains(&now) || started.elapsed() > timeout {
                break Err(format!("batch {batch} did not reach {done:?}: {status}"));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let serve_ticks = scale::cpu_ticks(worker.id())?;
    let busy_ticks = machine_busy_ticks()? - busy_before;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(worker.id().to_string())
        .status();
    let _ = worker.wait();
    outcome?;
    Ok(ServeRun {
        elapsed,
        peak_kb,
        serve_cpu: ticks_to_seconds(serve_ticks),
        machine_busy: ticks_to_seconds(busy_ticks),
    })
}

/// What one `flytt serve` run until a batch status cost.
struct ServeRun {
    elapsed: Duration,
    /// The service's peak resident memory.
    peak_kb: u64,
    /// The service's own CPU time (user and system), in seconds.
    serve_cpu: f64,
    /// CPU time every process on the machine spent meanwhile (the
    /// servers, the service, the status polls), in seconds: how close the
    /// run came to the cores' limit.
    machine_busy: f64,
}

/// /proc's clock ticks, 100 per second on Linux.
fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / 100.0
}

/// Busy clock ticks of all cores since boot: /proc/stat's first line less
/// idle and iowait.
fn machine_busy_ticks() -> LabResult<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().ok_or("empty /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Ok(fields.iter().take(8).sum::<u64>() - idle)
}

/// A process's CPU time in clock ticks from /proc/PID/stat (`self` for
/// this one): its own (user and system), and its children's that ended
/// and were waited for (for this process: the copying tools it ran).
pub(crate) fn process_cpu_ticks(pid: &str) -> LabResult<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: the fields start after ')'.
    let rest = stat.rsplit_once(')').ok_or("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) … utime(11) stime(12) cutime(13) cstime(14).
    let number =
        |i: usize| -> LabResult<u64> { Ok(fields.get(i).ok_or("short /proc stat")?.parse()?) };
    Ok((number(11)? + number(12)?, number(13)? + number(14)?))
}

/// Where the machine's CPU time went while something ran: to this
/// process (the benchmark's own clients), to the copying tools it ran as
/// children, and to everything else (the servers).
#[derive(Clone, Copy)]
pub(crate) struct CpuSplit {
    pub own: f64,
    pub children: f64,
    pub servers: f64,
}

impl CpuSplit {
    /// Starts counting: the function returned gives the split since.
    pub fn start() -> impl Fn() -> CpuSplit {
        let machine = machine_busy_ticks().unwrap_or(0);
        let (own, children) = process_cpu_ticks("self").unwrap_or_default();
        move || {
            let (own_now, children_now) = process_cpu_ticks("self").unwrap_or_default();
            let own = own_now.saturating_sub(own);
            let children = children_now.saturating_sub(children);
            let machine = machine_busy_ticks().unwrap_or(0).saturating_sub(machine);
            CpuSplit {
                own: ticks_to_seconds(own),
                children: ticks_to_seconds(children),
                servers: ticks_to_seconds(machine.saturating_sub(own + children)),
            }
        }
    }
}

/// Runs `flytt ARGS --data-dir DATA`; `show` lets its output through.
fn flytt_command(flytt: &Path, data: &Path, args: &[&str], show: bool) -> LabResult<()> {
    let mut command = Command::new(flytt);
    command.args(args).arg("--data-dir").arg(data);
    if !show {
        command.stdout(Stdio::null());
    }
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("flytt {} failed: {status}", args.join(" ")).into())
    }
}

/// Endpoints `gammel` (source) and `ny` (target) with the master user as
/// admin and the given migration limit.
fn add_endpoints(
    flytt: &Path,
    data: &Path,
    source: &Dovecot,
    target: &Dovecot,
    password: &Path,
    limit: u32,
    show: bool,
) -> LabResult<()> {
    for (name, server) in [("gammel", source), ("ny", target)] {
        let args = master_endpoint(name, server.url(), server, password, limit).args();
        if show {
            println!("\n$ flytt {}", args.join(" "));
        }
        flytt_command(
            flytt,
            data,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            show,
        )?;
    }
    Ok(())
}

/// `flytt endpoint new NAME` to `url` (a Dovecot's, or a proxy's before
/// it) with its master user as admin and `limit` migrations at once.
pub(crate) fn master_endpoint<'a>(
    name: &'a str,
    url: String,
    server: &Dovecot,
    password: &'a Path,
    limit: u32,
) -> NewEndpoint<'a> {
    NewEndpoint {
        name,
        url,
        ca_file: server.ca_file(),
        admin: Some(EndpointAdmin::dovecot_master(password)),
        max_migrations: limit,
        allow_plaintext: false,
    }
}

/// The shape of a batch benchmark (`--users`, `--messages`, `--size`,
/// `--out`).
pub(crate) struct BatchShape {
    pub users_n: usize,
    pub messages: usize,
    pub size: usize,
    pub out: Option<PathBuf>,
    /// bench-batch: the MaxConcurrentMigrations rows (`--limits 1,5,20`).
    pub limits: Vec<u32>,
    /// bench-batch: whether the peers (doveadm, a flytt sync per user)
    /// run too (`--peers no` to profile one row).
    pub peers: bool,
}

/// A source seeded with the shape's users, and the two servers' ceiling
/// measured with as many other users.
pub(crate) struct Seeded {
    pub lab: Lab,
    pub users: Vec<String>,
    pub total: usize,
    pub bytes: u64,
    pub ceiling: Rate,
    /// The servers' CPU seconds in the ceiling's measurement.
    pub ceiling_cpu: f64,
}

impl BatchShape {
    pub fn parse(args: &[String], default_size: usize) -> LabResult<BatchShape> {
        let mut shape = BatchShape {
            users_n: 200,
            messages: 100,
            size: default_size,
            out: None,
            limits: vec![1, 5, 20],
            peers: true,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--users" => shape.users_n = value.parse()?,
                "--messages" => shape.messages = value.parse()?,
                "--size" => shape.size = value.parse()?,
                "--out" => shape.out = Some(PathBuf::from(value)),
                "--limits" => {
                    shape.limits = value.split(',').map(str::parse).collect::<Result<_, _>>()?
                }
                "--peers" => shape.peers = value != "no",
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(shape)
    }

    /// Seeds the source, then reads it all while the target ingests the
    /// same amount for other users: the ceiling a copy on this machine
    /// can reach.
    pub async fn seed(&self) -> LabResult<Seeded> {
        let (users_n, messages, size) = (self.users_n, self.messages, self.size);
        let users: Vec<String> = (0..users_n)
            .map(|i| format!("u{i:03}@example.org"))
            .collect();
        let ceiling_users: Vec<String> = users.iter().map(|u| format!("ceiling-{u}")).collect();
        let peer_users = users.iter().flat_map(|u| peers::batch_peer_users(u));
        let all: Vec<String> = users
            .iter()
            .chain(&ceiling_users)
            .cloned()
            .chain(peer_users)
            .collect();
        let lab = Lab::start(&all)?;
        eprintln!("seeding {users_n} users x {messages} messages of ~{size} bytes ...");
        seed_users(&lab.source, &users, false, move |u| {
            (0..messages).map(|n| bench_message(u, n, size)).collect()
        })
        .await?;
        open_like_a_mail_client(&lab.source, &users).await?;
        let total = users_n * messages;
        // Four hundred sessions moving mail at once on two cores end
        // when their slowest does, and that varied by half from run to
        // run; the ceiling is the best of three measurements: all users
        // at once, and twice twenty at a time (as a batch copies).
        let mut best: Option<(Duration, u64, f64)> = None;
        for at_once in [users_n, 20, 20] {
            // The servers' CPU from when both sides' sessions are open.
            let start = tokio::sync::Barrier::new(3);
            let (together_read, together_ingest, cpu_since_start) = tokio::join!(
                read_all_at_once(&lab.source, &users, at_once, Some(&start)),
                seed_users_at_once(
                    &lab.target,
                    &ceiling_users,
                    true,
                    at_once,
                    Some(&start),
                    move |u| { (0..messages).map(|n| bench_message(u, n, size)).collect() }
                ),
                async {
                    start.wait().await;
                    CpuSplit::start()
                }
            );
            let cpu = cpu_since_start().servers;
            let (read_time, bytes) = together_read?;
            let elapsed = read_time.max(together_ingest?);
            eprintln!(
                "the servers together, {at_once} users at a time: {:.2} s, {cpu:.1} CPU seconds",
                elapsed.as_secs_f64()
            );
            if best.is_none_or(|(fastest, _, _)| elapsed < fastest) {
                best = Some((elapsed, bytes, cpu));
            }
        }
        let (elapsed, bytes, ceiling_cpu) = best.ok_or("no ceiling measured")?;
        let ceiling = rate(total, bytes, elapsed);
        Ok(Seeded {
            lab,
            users,
            total,
            bytes,
            ceiling,
            ceiling_cpu,
        })
    }
}

/// A batch through `flytt serve`: one batch of many small mailboxes, run
/// with MaxConcurrentMigrations 1, 5 and 20 (a fresh target each time),
/// against the servers' own ceiling; the worker's peak memory.
async fn bench_batch(flytt: &Path, args: &[String]) -> LabResult<()> {
    let shape = BatchShape::parse(args, 25_000)?;
    let BatchShape {
        users_n,
        messages,
        size,
        ..
    } = shape;
    let out = shape.out.clone();
    let seeded = shape.seed().await?;
    let (lab, users, total, bytes, ceiling) = (
        &seeded.lab,
        &seeded.users,
        seeded.total,
        seeded.bytes,
        &seeded.ceiling,
    );

    let user_pairs: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.as_str(), "user-password-1"))
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = String::new();
    for &limit in &shape.limits {
        let target = Dovecot::start_with(Layout::Target, &user_pairs, &lab_dovecot_config())?;
        let data = lab.dir.path().join(format!("data-{limit}"));
        let password = lab.dir.path().join("master-password");
        add_endpoints(flytt, &data, &lab.source, &target, &password, limit, false)?;
        let csv = lab.dir.path().join(format!("batch-{limit}.csv"));
        let run = scale::Runner {
            flytt,
            data: &data,
            url: None,
        };
        run.new_bench_batch(&csv, users)?;
        let cpu = CpuSplit::start();
        let logins = login_floor(&lab.source, &target, users, limit as usize).await?;
        let logins_cpu = cpu().servers;
        // The service and the status polls (`flytt batch show`) are this
        // process's children: what is left is the servers'.
        let cpu = CpuSplit::start();
        let served = run_serve_until(
            flytt,
            &data,
            "bench",
            &["Synced"],
            &["SyncedWithErrors"],
            Duration::from_secs(1800),
        )?;
        let servers_cpu = cpu().servers;
        let copied = rate(total, bytes, served.elapsed);
        // The ceiling's time plus the logins': what the servers need at
        // the least for the batch, logins included.
        let floor = total as f64 / ceiling.messages + logins.as_secs_f64();
        rows.push_str(&format!(
            "| flytt serve, MaxConcurrentMigrations {limit} | {:.0} | {:.1} | {:.0}% | {:.1} s ({logins_cpu:.1} s) | {:.0}% | {} MB | {:.1} s | {servers_cpu:.1} s | {:.0}% |\n",
            copied.messages,
            copied.mb,
            100.0 * copied.messages / ceiling.messages,
            logins.as_secs_f64(),
            100.0 * floor / served.elapsed.as_secs_f64(),
            served.peak_kb / 1024,
            served.serve_cpu,
            100.0 * served.machine_busy / (served.elapsed.as_secs_f64() * cores as f64),
        ));
    }
    if shape.peers {
        rows.push_str(
            &peers::batch_peer_rows(lab, flytt, users, 20, (total, bytes, ceiling.messages))
                .await?,
        );
    }
    let report = format!(
        "## Batch benchmark: {users_n} users x {messages} messages of ~{size} bytes ({mb:.0} MB), Dovecot {version}, {cores} cores\n\n\
| what | messages/s | MB/s | of ceiling | logins alone (servers' CPU) | of ceiling + logins | serve peak RSS | serve CPU | servers' CPU | cores busy |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
| both servers at once (read + MULTIAPPEND ingest, sessions open, STARTTLS; best of 3) | {cm:.0} | {cmb:.1} | | | | | | {ccpu:.1} s | |\n{rows}",
        mb = bytes as f64 / 1e6,
        version = dovecot_version(),
        cm = ceiling.messages,
        cmb = ceiling.mb,
        ccpu = seeded.ceiling_cpu,
    );
    println!("{report}");
    if let Some(out) = out {
        std::fs::write(out, &report)?;
    }
    Ok(())
}

/// Into a target without LITERAL+ or MULTIAPPEND (every APPEND waits for the
/// server's `+` before its message): flytt against the naive copy, one
/// FETCH and one APPEND at a time, both over STARTTLS, same mailbox. The
/// target is the older-server Dovecot layout, or with `--target cyrus` a
/// Cyrus with those capabilities suppressed.
async fn bench_legacy(flytt: &Path, args: &[String]) -> LabResult<()> {
    let mut messages = 2_000usize;
    let mut size = 5_000usize;
    let mut cyrus = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--messages" => messages = value.parse()?,
            "--size" => size = value.parse()?,
            "--target" => cyrus = value == "cyrus",
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let users = ["naive@example.org", "flytt@example.org"];
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (*u, "user-password-1")).collect();
    let source = Dovecot::start(Layout::Source, &pairs)?;
    let target = if cyrus {
        TestServer::Cyrus(
            Cyrus::start_with(
                &pairs,
                "suppress_capabilities: LITERAL+ LITERAL- MULTIAPPEND CONDSTORE\n",
            )
            .await?,
        )
    } else {
        TestServer::Dovecot(Dovecot::start(Layout::Legacy, &pairs)?)
    };
    let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    eprintln!("seeding 2 users x {messages} messages of ~{size} bytes ...");
    seed_users(&source, &users, false, move |_| {
        (0..messages).map(|n| bench_message(7, n, size)).collect()
    })
    .await?;

    let probe = target.admin_session(&users[0]).await?;
    if probe.literal_plus() || probe.has("MULTIAPPEND") {
        return Err("the target offers LITERAL+ or MULTIAPPEND".into());
    }
    drop(probe);
    let naive_time = naive_copy(&source, &target, &users[0]).await?;

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("source-admin"), MASTER_PASSWORD)?;
    std::fs::write(dir.path().join("target-admin"), target.admin_password())?;
    let started = Instant::now();
    let output = Command::new(flytt)
        .arg("sync")
        .args(TestServer::Dovecot(source).admin_login_args(
            "source",
            &users[1],
            &dir.path().join("source-admin"),
        ))
        .args(target.admin_login_args("target", &users[1], &dir.path().join("target-admin")))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .output()?;
    let flytt_time = started.elapsed();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
    }
    for user in &users {
        let mut session = target.admin_session(user).await?;
        let copied = session.select("INBOX", Access::ReadOnly).await?.exists as usize;
        if copied != messages {
            return Err(format!("{user}: {copied} of {messages} messages on the target").into());
        }
    }
    let per_second = |d: Duration| messages as f64 / d.as_secs_f64();
    println!("| into {} | time | messages/s |", target.family().name());
    println!("|---|---|---|");
    println!(
        "| one FETCH + one APPEND at a time | {:.2} s | {:.0} |",
        naive_time.as_secs_f64(),
        per_second(naive_time)
    );
    println!(
        "| flytt sync | {:.2} s | {:.0} |",
        flytt_time.as_secs_f64(),
        per_second(flytt_time)
    );
    println!(
        "\nflytt / one-at-a-time: {:.2}x the rate",
        naive_time.as_secs_f64() / flytt_time.as_secs_f64()
    );
    Ok(())
}

/// The naive copy: for each message, FETCH it, then APPEND it and wait.
async fn naive_copy(source: &Dovecot, target: &TestServer, user: &str) -> LabResult<Duration> {
    let mut source = source
        .admin_session_with(user, &source.starttls_config())
        .await?;
    let mut target = target.admin_session(user).await?;
    let started = Instant::now();
    source.select("INBOX", Access::ReadOnly).await?;
    let uids = source.uid_search_all().await?;
    for uid in uids {
        let fetched = source
            .uid_fetch(&uid.to_string(), "UID FLAGS INTERNALDATE BODY.PEEK[]")
            .await?;
        for m in fetched {
            let Some(body) = m.body else { continue };
            let message = AppendMessage {
                flags: m.flags.unwrap_or_default(),
                internal_date: m.internal_date,
                body,
            };
            let append = flytt_imap::append("INBOX", &[message], target.literal_plus());
            target.run(append).await?;
        }
    }
    Ok(started.elapsed())
}
