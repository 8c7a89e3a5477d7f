//! `flytt-lab bench-peers`: flytt beside its peers on realistic mailboxes.
//!
//! Users of ~20 folders of mixed messages (70 % ~4 KB, 25 % ~40 KB, 5 %
//! ~200 KB, flags and keywords), copied a few users at a time by the
//! MULTIAPPEND ceiling (read everything, then append 50 per command),
//! `doveadm backup` through imapc, mbsync and `flytt sync`, each into users
//! of its own on the same target server, in one run. Every copy is read
//! back and compared with the source (bytes, flags, INTERNALDATE). Then an
//! incremental pass (1 % new messages, 5 % flag changes), large messages,
//! and one mailbox through a 40 ms round trip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flytt_imap::{Access, AppendMessage, Body, Flag, Session};
use flytt_testsupport::Dovecot;
use flytt_testsupport::corpus::{self, Snapshot};
use flytt_testsupport::dovecot::{MASTER_PASSWORD, MASTER_USER};
use flytt_testsupport::proxy::LatencyProxy;

use crate::{CpuSplit, Lab, LabResult, ingest, peak_rss_kb};

/// `flytt-lab bench-peers FLYTT_BINARY [options]`.
#[derive(clap::Parser)]
#[command(name = "bench-peers")]
struct Options {
    /// Mailboxes of the mixed corpus.
    #[arg(long, default_value_t = 10)]
    users: usize,
    /// Messages per mixed mailbox.
    #[arg(long, default_value_t = 2_000)]
    messages: usize,
    /// Mailboxes copied at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Mailboxes of large messages.
    #[arg(long, default_value_t = 2)]
    large_users: usize,
    /// Large messages per mailbox.
    #[arg(long, default_value_t = 12)]
    large: usize,
    /// Delay added each way by the latency proxies.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The bandwidth of each server's link in the bandwidth part, in
    /// Mbit/s each way.
    #[arg(long, default_value_t = 50)]
    mbit: u64,
    /// One part only.
    #[arg(long, value_parser = ["mixed", "large", "latency", "bandwidth"])]
    only: Option<String>,
    /// The rows of the initial, incremental and large tables (all by
    /// default; mbsync only where it is installed), e.g. `--tools flytt`
    /// to profile one tool.
    #[arg(long, value_enum, value_delimiter = ',')]
    tools: Vec<Tool>,
    /// Also write the tables to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The folders of a mixed mailbox (Unicode paths, `/` between levels) and
/// their share of its messages.
const FOLDERS: [(&str, u32); 21] = [
    ("INBOX", 26),
    ("Sendte elementer", 6),
    ("Arkiv", 3),
    ("Arkiv/2021", 6),
    ("Arkiv/2022", 7),
    ("Arkiv/2023", 8),
    ("Prosjekter", 2),
    ("Prosjekter/Alfa", 5),
    ("Prosjekter/Beta", 4),
    ("Kunder", 2),
    ("Kunder/Nord", 4),
    ("Kunder/Sør", 4),
    ("Lister", 1),
    ("Lister/rust-users", 6),
    ("Lister/dovecot", 3),
    ("Kvitteringer", 3),
    ("Reiser", 2),
    ("Familie", 3),
    ("Styret", 2),
    ("Gammelt", 3),
    ("Diverse", 2),
];

/// A small deterministic hash, so every run builds the same corpus.
fn mix(n: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 29)
}

fn folder_of(n: usize) -> usize {
    let total: u32 = FOLDERS.iter().map(|(_, w)| w).sum();
    let mut pick = (mix(n as u64) % u64::from(total)) as u32;
    for (i, (_, weight)) in FOLDERS.iter().enumerate() {
        if pick < *weight {
            return i;
        }
        pick -= weight;
    }
    0
}

fn mixed_message(user: usize, n: usize) -> AppendMessage {
    let body_bytes = match mix(n as u64 + 7) % 20 {
        0 => 200_000,
        1..=5 => 40_000,
        _ => 4_000,
    };
    let mut flags = Vec::new();
    for (every, flag) in [
        (2, "\\Seen"),
        (7, "\\Flagged"),
        (11, "\\Answered"),
        (13, "$Arbeid"),
    ] {
        if n.is_multiple_of(every) {
            flags.extend(Flag::parse(flag));
        }
    }
    AppendMessage {
        flags,
        internal_date: Some(corpus::spread_date(n as u32)),
        body: Body::Memory(Bytes::from(corpus::realistic_message(
            (user * 100_000 + n) as u32,
            &format!("mixed-{user}-{n}@kilde.example"),
            body_bytes,
        ))),
    }
}

/// A folder's name on a server with the given separator (FOLDERS' paths
/// are written with `/`).
fn server_name(path: &str, separator: char) -> String {
    let parts: Vec<String> = path.split('/').map(str::to_string).collect();
    corpus::server_name(&parts, separator)
}

/// Fills one source user with the mixed corpus: messages `from..to`.
async fn seed_mixed(
    source: &Dovecot,
    user: &str,
    index: usize,
    from: usize,
    to: usize,
) -> LabResult<()> {
    let mut session = source.admin_session(user).await?;
    let mut by_folder: BTreeMap<usize, Vec<AppendMessage>> = BTreeMap::new();
    for n in from..to {
        by_folder
            .entry(folder_of(n))
            .or_default()
            .push(mixed_message(index, n));
    }
    for (folder, messages) in by_folder {
        let name = server_name(FOLDERS[folder].0, source.separator());
        if name != "INBOX" {
            session.create(&name).await?;
            session.subscribe(&name).await?;
        }
        ingest(&mut session, &name, messages).await?;
    }
    session.logout().await;
    Ok(())
}

/// Every non-empty folder of a mailbox by path, its messages sorted.
async fn contents(server: &Dovecot, user: &str) -> LabResult<BTreeMap<String, Vec<Snapshot>>> {
    let mut session = server.admin_session(user).await?;
    let mut snapshot = corpus::snapshot(&mut session).await?;
    session.logout().await;
    snapshot.retain(|_, messages| !messages.is_empty());
    Ok(snapshot)
}

/// Messages that differ between a source and a copy (missing, extra, or
/// altered in bytes, flags or date), across all folders. flytt puts
/// special folders where the target has them (`Sendte elementer` into
/// `Sent`); the peers keep the source's names.
fn differences(
    tool: Tool,
    source: &BTreeMap<String, Vec<Snapshot>>,
    copy: &BTreeMap<String, Vec<Snapshot>>,
) -> usize {
    let source: BTreeMap<String, Vec<Snapshot>> = source
        .iter()
        .map(|(path, messages)| {
            let path = match tool {
                Tool::Flytt | Tool::FlyttOnePair => corpus::expected_target_path(path),
                _ => path.clone(),
            };
            (path, messages.clone())
        })
        .collect();
    let source = &source;
    let empty = Vec::new();
    let mut count = 0;
    for path in source
        .keys()
        .chain(copy.keys().filter(|k| !source.contains_key(*k)))
    {
        let (a, b) = (
            source.get(path).unwrap_or(&empty),
            copy.get(path).unwrap_or(&empty),
        );
        let mut b_left: Vec<&Snapshot> = b.iter().collect();
        for m in a {
            match b_left.iter().position(|x| *x == m) {
                Some(i) => {
                    b_left.swap_remove(i);
                }
                None => count += 1,
            }
        }
        count += b_left.len();
    }
    count
}

/// A copying tool, as the benchmark runs it for one user.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Tool {
    Ceiling,
    Doveadm,
    Mbsync,
    Flytt,
    FlyttOnePair,
}

impl Tool {
    fn prefix(self) -> &'static str {
        match self {
            Tool::Ceiling => "ce",
            Tool::Doveadm => "dv",
            Tool::Mbsync => "mb",
            Tool::Flytt => "fl",
            Tool::FlyttOnePair => "f1",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tool::Ceiling => "MULTIAPPEND ceiling (read all, then append 50 per command)",
            Tool::Doveadm => "`doveadm backup` through imapc",
            Tool::Mbsync => "mbsync",
            Tool::Flytt => "**flytt sync**",
            Tool::FlyttOnePair => "flytt sync --connections 1",
        }
    }
}

/// Where the benchmark's files go and how it reaches the servers.
struct Bench<'a> {
    lab: &'a Lab,
    flytt: &'a Path,
    /// The tools compared, in this order.
    tools: Vec<Tool>,
    /// Users copied at once.
    parallel: usize,
}

impl Bench<'_> {
    fn target_user(tool: Tool, user: &str) -> String {
        format!("{}-{user}", tool.prefix())
    }

    /// The command that copies `user` with `tool` (not for the ceiling),
    /// through the given source and target ports.
    fn command(&self, tool: Tool, user: &str, ports: (u16, u16)) -> LabResult<Command> {
        self.command_into(tool, user, &Self::target_user(tool, user), ports)
    }

    /// Runs a copy: its time and its peak resident memory (MB).
    fn time_run(&self, mut command: Command, user: &str) -> LabResult<(f64, u64)> {
        let started = Instant::now();
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).spawn()?;
        let mut peak_kb = 0;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            peak_kb = peak_kb.max(peak_rss_kb(child.id()));
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            return Err(format!("the copy of {user}: {status}").into());
        }
        Ok((started.elapsed().as_secs_f64(), peak_kb / 1024))
    }

    fn command_into(
        &self,
        tool: Tool,
        user: &str,
        target_user: &str,
        ports: (u16, u16),
    ) -> LabResult<Command> {
        let dir = self.lab.dir.path();
        Ok(match tool {
            Tool::Flytt | Tool::FlyttOnePair => {
                let password = dir.join("master-password");
                let mut cmd = Command::new(self.flytt);
                cmd.arg("sync")
                    .args(["--source", &format!("imap://127.0.0.1:{}", ports.0)])
                    .args(["--source-user", &format!("{user}*{MASTER_USER}")])
                    .arg("--source-password-file")
                    .arg(&password)
                    .args(["--target", &format!("imap://127.0.0.1:{}", ports.1)])
                    .args(["--target-user", &format!("{target_user}*{MASTER_USER}")])
                    .arg("--target-password-file")
                    .arg(&password)
                    .arg("--ca-file")
                    .arg(self.lab.source.ca_file())
                    .arg("--ca-file")
                    .arg(self.lab.target.ca_file())
                    .arg("--data-dir")
                    .arg(dir.join("data"));
                if tool == Tool::FlyttOnePair {
                    cmd.args(["--connections", "1"]);
                } else {
                    cmd.args(crate::extra_flytt_args());
                }
                cmd
            }
            Tool::Doveadm => {
                let mut cmd = Command::new("doveadm");
                cmd.arg("-c")
                    .arg(self.lab.target.config_path())
                    .args(["-o", "imapc_host=127.0.0.1"])
                    .args(["-o", &format!("imapc_port={}", ports.0)])
                    .args(["-o", &format!("imapc_user={user}")])
                    .args(["-o", &format!("imapc_master_user={MASTER_USER}")])
                    .args(["-o", &format!("imapc_password={MASTER_PASSWORD}")])
                    .args(["-o", "imapc_ssl=starttls"])
                    .arg("-o")
                    .arg(format!(
                        "ssl_client_ca_file={}",
                        self.lab.source.ca_file().display()
                    ))
                    .args(["-o", "imapc_features=rfc822.size fetch-headers modseq"])
                    .args(["backup", "-R", "-u", target_user, "imapc:"]);
                cmd
            }
            Tool::Mbsync => {
                let config = dir.join(format!("mbsync-{user}.rc"));
                // The target's own empty special folders, which the source
                // lacks: mbsync would try to open them there and fail.
                let patterns: String = self
                    .lab
                    .target
                    .role_folders()
                    .iter()
                    .map(|(name, _)| format!(" !{name}"))
                    .collect();
                let state = dir.join(format!("mbsync-state-{user}/"));
                std::fs::create_dir_all(&state)?;
                std::fs::write(
                    &config,
                    format!(
                        "IMAPAccount far\nHost localhost\nPort {}\nUser {user}*{MASTER_USER}\nPass {MASTER_PASSWORD}\nSSLType STARTTLS\nCertificateFile {ca_far}\nAuthMechs LOGIN\n\n\
IMAPStore far\nAccount far\n\n\
IMAPAccount near\nHost localhost\nPort {}\nUser {target_user}*{MASTER_USER}\nPass {MASTER_PASSWORD}\nSSLType STARTTLS\nCertificateFile {ca_near}\nAuthMechs LOGIN\n\n\
IMAPStore near\nAccount near\n\n\
Channel copy\nFar :far:\nNear :near:\nPatterns *{patterns}\nCreate Near\nSync Pull\nExpunge None\nCopyArrivalDate yes\nSyncState {}\n",
                        ports.0,
                        ports.1,
                        state.display(),
                        ca_far = self.lab.source.ca_file().display(),
                        ca_near = self.lab.target.ca_file().display(),
                    ),
                )?;
                let mut cmd = Command::new("mbsync");
                cmd.arg("-q").arg("-c").arg(&config).arg("-a");
                cmd
            }
            Tool::Ceiling => return Err("the ceiling is not a command".into()),
        })
    }

    /// Copies every user with `tool`, `parallel` at a time; the wall time
    /// and the largest peak resident memory of one process (kB).
    async fn run(&self, tool: Tool, users: &[String], parallel: usize) -> LabResult<Run> {
        let started = Instant::now();
        let cpu = CpuSplit::start();
        if tool == Tool::Ceiling {
            self.ceiling(users, parallel).await?;
            let cpu = cpu();
            return Ok(Run {
                elapsed: started.elapsed(),
                peak_kb: 0,
                tool_cpu: cpu.own,
                servers_cpu: cpu.servers + cpu.children,
            });
        }
        let ports = (self.lab.source.port, self.lab.target.port);
        let mut waiting = users.iter();
        let mut running: Vec<(String, Child)> = Vec::new();
        let mut peak_kb = 0;
        loop {
            while running.len() < parallel.max(1) {
                let Some(user) = waiting.next() else { break };
                let child = self
                    .command(tool, user, ports)?
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()?;
                running.push((user.clone(), child));
            }
            if running.is_empty() {
                break;
            }
            let mut still = Vec::new();
            for (user, mut child) in running {
                match child.try_wait()? {
                    None => {
                        peak_kb = peak_kb.max(peak_rss_kb(child.id()));
                        still.push((user, child));
                    }
                    Some(status) if status.success() => {}
                    Some(status) => {
                        return Err(format!("{} for {user}: {status}", tool.label()).into());
                    }
                }
            }
            running = still;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cpu = cpu();
        Ok(Run {
            elapsed: started.elapsed(),
            peak_kb,
            tool_cpu: cpu.children,
            // The benchmark's own polling is counted with the servers.
            servers_cpu: cpu.servers + cpu.own,
        })
    }

    /// Reads each user's folders whole, then appends them to the ceiling
    /// user with MULTIAPPEND: what the two servers do at best.
    async fn ceiling(&self, users: &[String], parallel: usize) -> LabResult<()> {
        let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
        let mut tasks = Vec::new();
        for user in users {
            let source = self.lab.source.starttls_config();
            let target = self.lab.target.starttls_config();
            let source_session = self.lab.source.admin_session_with(user, &source).await?;
            let target_user = Self::target_user(Tool::Ceiling, user);
            let target_session = self
                .lab
                .target
                .admin_session_with(&target_user, &target)
                .await?;
            let (separator, target_separator) =
                (self.lab.source.separator(), self.lab.target.separator());
            let limit = limit.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = limit.acquire_owned().await.map_err(|e| e.to_string())?;
                copy_all(source_session, target_session, separator, target_separator)
                    .await
                    .map_err(|e| e.to_string())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    }
}

async fn copy_all(
    mut source: Session,
    mut target: Session,
    separator: char,
    target_separator: char,
) -> LabResult<()> {
    for (path, _) in FOLDERS {
        let name = server_name(path, separator);
        let status = match source.select(&name, Access::ReadOnly).await {
            Ok(status) => status,
            // Not in this mailbox (the large ones have INBOX only).
            Err(flytt_imap::Error::Rejected { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if status.exists == 0 {
            continue;
        }
        let fetched = source
            .uid_fetch("1:*", "UID FLAGS INTERNALDATE BODY.PEEK[]")
            .await?;
        let messages: Vec<AppendMessage> = fetched
            .into_iter()
            .map(|m| AppendMessage {
                flags: m
                    .flags
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f.as_str() != Flag::RECENT)
                    .collect(),
                internal_date: m.internal_date,
                body: m.body.unwrap_or(Body::Memory(Bytes::new())),
            })
            .collect();
        let target_name = server_name(path, target_separator);
        if target_name != "INBOX" {
            target.create(&target_name).await?;
        }
        ingest(&mut target, &target_name, messages).await?;
    }
    source.logout().await;
    target.logout().await;
    Ok(())
}

/// One table row: a tool's time, its exactness and memory.
struct Row {
    label: String,
    seconds: f64,
    differences: Option<usize>,
    peak_mb: u64,
    tool_cpu: f64,
    servers_cpu: f64,
}

/// One tool's copy of some users.
struct Run {
    elapsed: Duration,
    /// The largest peak resident memory of one of the tool's processes.
    peak_kb: u64,
    /// The tool's CPU seconds (all its processes).
    tool_cpu: f64,
    /// Everything else's CPU seconds meanwhile: the two servers.
    servers_cpu: f64,
}

fn table(title: &str, rows: &[Row], messages: usize, bytes: u64, flytt_seconds: f64) -> String {
    let mut out = format!(
        "| {title} | time | msgs/s | MB/s | vs flytt | differing messages | peak RSS | CPU: tool | CPU: servers |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.2} s | {:.0} | {:.1} | {:.2} | {} | {} | {:.1} s | {:.1} s |\n",
            row.label,
            row.seconds,
            messages as f64 / row.seconds.max(1e-9),
            bytes as f64 / row.seconds.max(1e-9) / 1e6,
            row.seconds / flytt_seconds.max(1e-9),
            row.differences.map_or("—".to_string(), |d| d.to_string()),
            if row.peak_mb == 0 {
                "—".to_string()
            } else {
                format!("{} MB", row.peak_mb)
            },
            row.tool_cpu,
            row.servers_cpu,
        ));
    }
    out
}

pub async fn bench_peers(flytt: &Path, args: &[String]) -> LabResult<()> {
    let o = <Options as clap::Parser>::try_parse_from(
        std::iter::once("bench-peers".to_string()).chain(args.iter().cloned()),
    )?;
    let tools = if o.tools.is_empty() {
        let mut tools = vec![Tool::Ceiling, Tool::Doveadm];
        if Command::new("mbsync").arg("-v").output().is_ok() {
            tools.push(Tool::Mbsync);
        }
        tools.extend([Tool::Flytt, Tool::FlyttOnePair]);
        tools
    } else {
        o.tools.clone()
    };
    let users: Vec<String> = (0..o.users)
        .map(|i| format!("mixed{i:02}@example.org"))
        .collect();
    let large_users: Vec<String> = (0..o.large_users)
        .map(|i| format!("large{i:02}@example.org"))
        .collect();
    let latency_user = "far@example.org".to_string();
    let bandwidth_user = "slow@example.org".to_string();
    let mut all: Vec<String> = Vec::new();
    for user in users
        .iter()
        .chain(&large_users)
        .chain([&latency_user, &bandwidth_user])
    {
        all.push(user.clone());
        for tool in [
            Tool::Ceiling,
            Tool::Doveadm,
            Tool::Mbsync,
            Tool::Flytt,
            Tool::FlyttOnePair,
        ] {
            all.push(Bench::target_user(tool, user));
        }
        all.push(format!("near-{user}"));
    }
    let lab = Lab::start(&all)?;
    let bench = Bench {
        lab: &lab,
        flytt,
        tools,
        parallel: o.parallel,
    };
    let wanted = |part: &str| o.only.as_deref().is_none_or(|only| only == part);
    let mut report = format!(
        "## Peers (`flytt-lab bench-peers`): every tool over STARTTLS to both servers, Dovecot {}, {} cores\n\n",
        crate::dovecot_version(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    if wanted("mixed") {
        report.push_str(&mixed(&bench, &users, &o).await?);
    }
    if wanted("large") {
        report.push_str(&large(&bench, &large_users, o.large).await?);
    }
    if wanted("latency") {
        report.push_str(&latency_rows(&bench, &latency_user, o.messages, o.latency_ms).await?);
    }
    if wanted("bandwidth") {
        report.push_str(&bandwidth_rows(&bench, &bandwidth_user, &o).await?);
    }
    println!("{report}");
    if let Some(out) = o.out {
        std::fs::write(out, &report)?;
    }
    Ok(())
}

/// Peers for `bench-batch`: every user copied by `doveadm backup` and by a
/// `flytt sync` process of its own, `parallel` at a time, into users of
/// their own on the lab's target (see `batch_peer_users`). Rows in
/// bench-batch's columns, the rate against the batch's `ceiling` rate.
pub(crate) async fn batch_peer_rows(
    lab: &Lab,
    flytt: &Path,
    users: &[String],
    parallel: usize,
    (total, bytes, ceiling): (usize, u64, f64),
) -> LabResult<String> {
    let tools = vec![Tool::Doveadm, Tool::Flytt];
    let bench = Bench {
        lab,
        flytt,
        tools: tools.clone(),
        parallel,
    };
    let mut rows = String::new();
    for tool in tools {
        let run = bench.run(tool, users, parallel).await?;
        let copied = crate::rate(total, bytes, run.elapsed);
        rows.push_str(&format!(
            "| {}, {parallel} at a time | {:.0} | {:.1} | {:.0}% | | | {} MB | {:.1} s | {:.1} s | |\n",
            tool.label().trim_matches('*'),
            copied.messages,
            copied.mb,
            100.0 * copied.messages / ceiling,
            run.peak_kb / 1024,
            run.tool_cpu,
            run.servers_cpu,
        ));
    }
    Ok(rows)
}

/// The target users `batch_peer_rows` copies `user` into.
pub(crate) fn batch_peer_users(user: &str) -> [String; 2] {
    [
        Bench::target_user(Tool::Doveadm, user),
        Bench::target_user(Tool::Flytt, user),
    ]
}

/// Every user's non-empty folders, as the source has them now.
async fn source_contents(
    lab: &Lab,
    users: &[String],
) -> LabResult<Vec<BTreeMap<String, Vec<Snapshot>>>> {
    let mut sources = Vec::new();
    for user in users {
        sources.push(contents(&lab.source, user).await?);
    }
    Ok(sources)
}

impl Bench<'_> {
    /// Copies `users` with each tool in turn, each into its own target
    /// users, and compares every copy with the source.
    async fn rows(
        &self,
        tools: impl Iterator<Item = Tool>,
        users: &[String],
        part: &str,
    ) -> LabResult<(Vec<Row>, f64)> {
        let sources = source_contents(self.lab, users).await?;
        let mut rows = Vec::new();
        let mut flytt_seconds = 1.0;
        for tool in tools {
            eprintln!("{part}: {}", tool.label());
            let run = self.run(tool, users, self.parallel).await?;
            let mut diff = 0;
            for (user, source) in users.iter().zip(&sources) {
                let copy = contents(&self.lab.target, &Bench::target_user(tool, user)).await?;
                diff += differences(tool, source, &copy);
            }
            if tool == Tool::Flytt {
                flytt_seconds = run.elapsed.as_secs_f64();
            }
            rows.push(Row {
                label: tool.label().into(),
                seconds: run.elapsed.as_secs_f64(),
                differences: Some(diff),
                peak_mb: run.peak_kb / 1024,
                tool_cpu: run.tool_cpu,
                servers_cpu: run.servers_cpu,
            });
        }
        Ok((rows, flytt_seconds))
    }
}

/// The mixed corpus: the initial copy, then an incremental pass after 1 %
/// new messages and flag changes on every 20th message.
async fn mixed(bench: &Bench<'_>, users: &[String], o: &Options) -> LabResult<String> {
    let lab = bench.lab;
    eprintln!(
        "seeding {} users x {} mixed messages in {} folders ...",
        o.users,
        o.messages,
        FOLDERS.len()
    );
    for (i, user) in users.iter().enumerate() {
        seed_mixed(&lab.source, user, i, 0, o.messages).await?;
    }
    let total_bytes: u64 = source_contents(lab, users)
        .await?
        .iter()
        .flat_map(|s| s.values().flatten())
        .map(|m| m.bytes.len() as u64)
        .sum();
    let (initial, flytt_initial) = bench
        .rows(bench.tools.iter().copied(), users, "initial")
        .await?;

    let new = (o.messages / 100).max(1);
    for (i, user) in users.iter().enumerate() {
        seed_mixed(&lab.source, user, i, o.messages, o.messages + new).await?;
        let mut session = lab.source.admin_session(user).await?;
        for (path, _) in FOLDERS {
            let name = server_name(path, lab.source.separator());
            let status = session.select(&name, Access::ReadWrite).await?;
            let step = 20;
            if status.exists >= step {
                let set: Vec<String> = (1..=status.exists)
                    .step_by(step as usize)
                    .map(|n| n.to_string())
                    .collect();
                session
                    .run(session.builder("STORE").raw(&format!(
                        "STORE {} +FLAGS.SILENT (\\Flagged $Neste)",
                        set.join(",")
                    )))
                    .await?;
            }
        }
        session.logout().await;
    }
    let peers = bench.tools.iter().copied().filter(|t| *t != Tool::Ceiling);
    let (incremental, flytt_incremental) = bench.rows(peers, users, "incremental").await?;
    Ok(format!(
        "{users} users x {messages} mixed messages in {folders} folders ({mb:.0} MB), {parallel} users at a time:\n\n\
{initial}\n\
Incremental: {new} new messages per user and flags changed on every 20th message.\n\n\
{incremental}\n",
        users = o.users,
        messages = o.messages,
        folders = FOLDERS.len(),
        mb = total_bytes as f64 / 1e6,
        parallel = o.parallel,
        initial = table(
            "initial copy",
            &initial,
            o.users * o.messages,
            total_bytes,
            flytt_initial
        ),
        incremental = table(
            "incremental",
            &incremental,
            o.users * new,
            0,
            flytt_incremental
        ),
    ))
}

/// Mailboxes of large messages, 10 to 25 MB each.
async fn large(bench: &Bench<'_>, users: &[String], per_user: usize) -> LabResult<String> {
    let mut large_bytes = 0u64;
    for (i, user) in users.iter().enumerate() {
        let mut session = bench.lab.source.admin_session(user).await?;
        let messages: Vec<AppendMessage> = (0..per_user)
            .map(|n| {
                let size = 10_000_000 + (mix((i * 1000 + n) as u64) % 15_000_000) as usize;
                AppendMessage {
                    flags: Vec::new(),
                    internal_date: Some(corpus::spread_date(n as u32)),
                    body: Body::Memory(Bytes::from(corpus::large_message(
                        (i * 1000 + n) as u32,
                        size,
                    ))),
                }
            })
            .collect();
        large_bytes += messages.iter().map(|m| m.body.len()).sum::<u64>();
        ingest(&mut session, "INBOX", messages).await?;
        session.logout().await;
    }
    let (rows, flytt_seconds) = bench
        .rows(bench.tools.iter().copied(), users, "large")
        .await?;
    Ok(format!(
        "Large messages: {} users x {per_user} messages of 10 to 25 MB ({:.0} MB).\n\n{}\n",
        users.len(),
        large_bytes as f64 / 1e6,
        table(
            "large messages",
            &rows,
            users.len() * per_user,
            large_bytes,
            flytt_seconds
        ),
    ))
}

/// One mailbox of the mixed shape: flytt on loopback, then through the
/// latency proxy with four pairs and with one, and an unchanged
/// incremental through the proxy against the time a login takes there.
async fn latency_rows(
    bench: &Bench<'_>,
    user: &str,
    messages: usize,
    latency_ms: u64,
) -> LabResult<String> {
    let lab = bench.lab;
    seed_mixed(&lab.source, user, 99, 0, messages).await?;
    let delay = Duration::from_millis(latency_ms);
    let source_proxy = LatencyProxy::start(lab.source.port, delay).await?;
    let target_proxy = LatencyProxy::start(lab.target.port, delay).await?;
    let proxied = (source_proxy.port, target_proxy.port);
    let direct = (lab.source.port, lab.target.port);
    let time = |tool: Tool, target_user: &str, ports: (u16, u16)| {
        bench.time_run(bench.command_into(tool, user, target_user, ports)?, user)
    };
    // Each copy into a fresh target user, with fresh state.
    let fresh_state = || std::fs::remove_dir_all(lab.dir.path().join("data"));
    let (loopback, _) = time(Tool::Flytt, &format!("fl-{user}"), direct)?;
    fresh_state()?;
    let (loopback_one, _) = time(Tool::FlyttOnePair, &format!("f1-{user}"), direct)?;
    fresh_state()?;
    let (far_one, peak_one) = time(Tool::FlyttOnePair, &format!("dv-{user}"), proxied)?;
    fresh_state()?;
    let (far, peak) = time(Tool::Flytt, &format!("near-{user}"), proxied)?;
    // Unchanged: the last copy again through the proxy.
    let (unchanged, _) = time(Tool::Flytt, &format!("near-{user}"), proxied)?;
    // A login through the proxy, as flytt makes it (STARTTLS, master user).
    let login = {
        let mut config = lab.source.starttls_config();
        config.port = source_proxy.port;
        let started = Instant::now();
        let session = lab.source.admin_session_with(user, &config).await?;
        let elapsed = started.elapsed().as_secs_f64();
        session.logout().await;
        elapsed
    };
    let rtt = 2.0 * latency_ms as f64 / 1000.0;
    Ok(format!(
        "One mailbox of {messages} mixed messages in {folders} folders, {latency_ms} ms added each way on both servers ({rtt_ms} ms round trip):\n\n\
| flytt sync | loopback | {rtt_ms} ms round trip | of loopback rate | peak RSS there |\n|---|---:|---:|---:|---:|\n\
| default (one connection pair on loopback, more over the long round trip) | {loopback:.2} s | {far:.2} s | {r4:.0}% | {peak} MB |\n\
| `--connections 1` | {loopback_one:.2} s | {far_one:.2} s | {r1:.0}% | {peak_one} MB |\n\n\
Unchanged incremental through the {rtt_ms} ms link: {unchanged:.2} s; one STARTTLS login there takes {login:.2} s, so {beyond:.1} round trips of waiting beyond the login.\n",
        folders = FOLDERS.len(),
        rtt_ms = 2 * latency_ms,
        r4 = 100.0 * loopback / far,
        r1 = 100.0 * loopback_one / far_one,
        beyond = (unchanged - login) / rtt,
    ))
}

/// One mailbox of the mixed shape through a slow link on both servers
/// (`--mbit` each way, shared by all connections, and the latency proxy's
/// delay): flytt with `--compression always` against the default
/// (uncompressed), each into a fresh target user.
async fn bandwidth_rows(bench: &Bench<'_>, user: &str, o: &Options) -> LabResult<String> {
    let lab = bench.lab;
    let (index, messages) = (98, o.messages);
    seed_mixed(&lab.source, user, index, 0, messages).await?;
    let bytes: u64 = (0..messages)
        .map(|n| mixed_message(index, n).body.len())
        .sum();
    let delay = Duration::from_millis(o.latency_ms);
    let rate = o.mbit * 1_000_000 / 8;
    let source_proxy = LatencyProxy::start_shaped(lab.source.port, delay, rate).await?;
    let target_proxy = LatencyProxy::start_shaped(lab.target.port, delay, rate).await?;
    let proxied = (source_proxy.port, target_proxy.port);
    let fresh_state = || std::fs::remove_dir_all(lab.dir.path().join("data"));
    let mut rows = String::new();
    for (label, compression, target_user) in [
        ("default (uncompressed)", "never", format!("fl-{user}")),
        ("`--compression always`", "always", format!("dv-{user}")),
    ] {
        let mut command = bench.command_into(Tool::Flytt, user, &target_user, proxied)?;
        command.args(["--compression", compression]);
        let (seconds, peak) = bench.time_run(command, user)?;
        fresh_state()?;
        rows.push_str(&format!(
            "| {label} | {seconds:.2} s | {mb:.1} MB/s | {share:.0}% | {peak} MB |\n",
            mb = bytes as f64 / 1e6 / seconds,
            share = 100.0 * bytes as f64 / seconds / rate as f64,
        ));
    }
    Ok(format!(
        "\nOne mailbox of {messages} mixed messages ({mb:.0} MB: text, and base64 attachments of incompressible data) through a {mbit} Mbit/s link each way on both servers, {latency} ms added each way:\n\n\
| flytt sync | time | mail moved | of the link's rate | peak RSS |\n|---|---:|---:|---:|---:|\n{rows}\n",
        mb = bytes as f64 / 1e6,
        mbit = o.mbit,
        latency = o.latency_ms,
    ))
}
