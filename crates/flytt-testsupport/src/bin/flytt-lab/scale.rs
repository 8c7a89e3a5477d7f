//! `bench-scale`: what a large batch costs when little of it moves. On
//! SQLite and on PostgreSQL: the import of N users; with the N users
//! queued, `flytt serve`'s CPU and memory, the scheduler's tick, /metrics,
//! the batch in the API, a page of its users and its dashboard page, first
//! with the batch created, then started with its source limited to one
//! migration (a server that never answers holds that one).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flytt_testsupport::Postgres;

use crate::{LabResult, peak_rss_kb, proc_status_kb};

struct Options {
    users: usize,
    out: Option<std::path::PathBuf>,
}

fn options(args: &[String]) -> LabResult<Options> {
    let mut o = Options {
        users: 50_000,
        out: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--users" => o.users = value.parse()?,
            "--out" => o.out = Some(value.into()),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(o)
}

/// One backend's figures.
struct Figures {
    backend: &'static str,
    /// The users per status at the end.
    counts: String,
    import: Duration,
    idle_cpu: f64,
    idle_rss_mb: u64,
    idle_tick: Ticks,
    started_cpu: f64,
    started_tick: Ticks,
    metrics: Duration,
    batch_api: Duration,
    users_page: Duration,
    all_users: (Duration, usize),
    dashboard: Duration,
    peak_rss_mb: u64,
}

#[derive(Default)]
struct Ticks {
    median_ms: f64,
    max_ms: f64,
    count: usize,
}

pub async fn bench_scale(flytt: &Path, args: &[String]) -> LabResult<()> {
    let o = options(args)?;
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("users.csv");
    let mut text = String::from("EmailAddress,UserName,Password\n");
    for i in 0..o.users {
        text.push_str(&format!("u{i:05}@example.org,u{i:05},passord-{i}\n"));
    }
    std::fs::write(&csv, text)?;
    // A server that accepts and never greets: the one user the source's
    // limit lets start waits on it for the whole measurement.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let silent_port = silent.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let mut all = Vec::new();
    for backend in ["SQLite", "PostgreSQL"] {
        let database = (backend == "PostgreSQL")
            .then(Postgres::start)
            .transpose()?;
        let data = dir.path().join(format!("data-{backend}"));
        let run = Runner {
            flytt,
            data: &data,
            url: database.as_ref().map(Postgres::url),
        };
        all.push(measure(&run, backend, &csv, o.users, silent_port).await?);
    }
    let report = report(&all, o.users);
    println!("{report}");
    if let Some(out) = o.out {
        std::fs::write(out, &report)?;
    }
    Ok(())
}

/// Runs the `flytt` binary on one data directory and, given a URL, one
/// PostgreSQL database.
pub(crate) struct Runner<'a> {
    pub flytt: &'a Path,
    pub data: &'a Path,
    pub url: Option<String>,
}

impl Runner<'_> {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.flytt);
        command.args(args).arg("--data-dir").arg(self.data);
        if let Some(url) = &self.url {
            command.arg("--database-url").arg(url);
        }
        command
    }

    /// The staged batch `bench` from `gammel` to `ny` with `users` (its CSV
    /// written to `csv`), starting by itself.
    pub fn new_bench_batch(&self, csv: &Path, users: &[String]) -> LabResult<()> {
        std::fs::write(csv, format!("EmailAddress\n{}\n", users.join("\n")))?;
        self.ok(&[
            "batch",
            "new",
            "--name",
            "bench",
            "--type",
            "staged",
            "--source-endpoint",
            "gammel",
            "--target-endpoint",
            "ny",
            "--csv",
            &csv.display().to_string(),
            "--auto-start",
        ])?;
        Ok(())
    }

    pub fn ok(&self, args: &[&str]) -> LabResult<String> {
        let out = self.command(args).output()?;
        if !out.status.success() {
            return Err(format!(
                "flytt {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

async fn measure(
    run: &Runner<'_>,
    backend: &'static str,
    csv: &Path,
    users: usize,
    silent_port: u16,
) -> LabResult<Figures> {
    let url = format!("imap://127.0.0.1:{silent_port}");
    let password = run.data.with_extension("admin-password");
    std::fs::write(&password, "admin-password-1")?;
    let password = password.display().to_string();
    for (name, admin) in [("gammel", None), ("ny", Some("admin"))] {
        let mut args = vec![
            "endpoint",
            "new",
            name,
            "--url",
            &url,
            "--allow-plaintext",
            "--max-concurrent-migrations",
            "1",
        ];
        if let Some(admin) = admin {
            args.extend(["--admin-user", admin, "--admin-password-file", &password]);
        }
        run.ok(&args)?;
    }
    let csv = csv.display().to_string();
    let started = Instant::now();
    run.ok(&[
        "batch",
        "new",
        "--name",
        "stor",
        "--type",
        "imap",
        "--source-endpoint",
        "gammel",
        "--target-endpoint",
        "ny",
        "--csv",
        &csv,
    ])?;
    let import = started.elapsed();
    let token = run
        .ok(&["token", "new", "--name", "bench"])?
        .trim()
        .to_string();
    let log = run.data.join("serve.log");
    let mut serve = run
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("FLYTT_LOG", "warn,flytt_runner=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let base = first_address(&mut serve)?;
    let measured = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (idle_cpu, idle_tick) = watch(&serve, &log, Duration::from_secs(10))?;
        let idle_rss_mb = proc_status_kb(serve.id(), "VmRSS:") / 1024;
        let http = Http::new(&base, &token, run.data)?;
        let metrics = http.time("/metrics")?;
        let batch_api = http.time("/api/v1/batches/stor")?;
        let users_page = http.time("/api/v1/batches/stor/users?limit=100")?;
        let all_users = http.time_size("/api/v1/batches/stor/users")?;
        let dashboard = http.time_page("/batches/stor")?;
        run.ok(&["batch", "start", "stor"])?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (started_cpu, started_tick) = watch(&serve, &log, Duration::from_secs(10))?;
        let shown: serde_json::Value =
            serde_json::from_str(&run.ok(&["batch", "show", "stor", "--json"])?)?;
        let counts = shown["user_counts"].to_string();
        Ok::<_, Box<dyn std::error::Error>>(Figures {
            counts,
            backend,
            import,
            idle_cpu,
            idle_rss_mb,
            idle_tick,
            started_cpu,
            started_tick,
            metrics,
            batch_api,
            users_page,
            all_users,
            dashboard,
            peak_rss_mb: peak_rss_kb(serve.id()) / 1024,
        })
    }
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    let figures = measured?;
    eprintln!("{backend}: {users} users measured");
    Ok(figures)
}

/// `flytt serve`'s first line names its address.
fn first_address(serve: &mut Child) -> LabResult<String> {
    let stdout = serve.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches('/').to_string())
        .ok_or_else(|| format!("no address in {line:?}").into())
}

/// CPU use (share of one core) over `window`, and the ticks the runner
/// logged meanwhile.
fn watch(serve: &Child, log: &Path, window: Duration) -> LabResult<(f64, Ticks)> {
    let before_log = std::fs::read_to_string(log)?.len();
    let before = cpu_ticks(serve.id())?;
    std::thread::sleep(window);
    let after = cpu_ticks(serve.id())?;
    // Clock ticks are 1/100 s on Linux.
    let cpu = (after - before) as f64 / 100.0 / window.as_secs_f64();
    let text = std::fs::read_to_string(log)?;
    let mut ms: Vec<f64> = text[before_log..]
        .lines()
        .filter(|l| l.contains(" tick"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("elapsed_ms="))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let ticks = Ticks {
        median_ms: ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        count: ms.len(),
    };
    Ok((cpu, ticks))
}

pub(crate) fn cpu_ticks(pid: u32) -> LabResult<u64> {
    Ok(crate::process_cpu_ticks(&pid.to_string())?.0)
}

/// Requests by curl, timed by curl (median of five), with a token or a
/// dashboard session.
struct Http<'a> {
    base: &'a str,
    token: &'a str,
    jar: std::path::PathBuf,
}

impl<'a> Http<'a> {
    fn new(base: &'a str, token: &'a str, dir: &Path) -> LabResult<Http<'a>> {
        let http = Http {
            base,
            token,
            jar: dir.join("cookies"),
        };
        http.sign_in()?;
        Ok(http)
    }

    fn curl(&self, args: &[&str]) -> LabResult<String> {
        let out = Command::new("curl")
            .args(["-sS", "-b"])
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "curl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The dashboard's sign-in with the API token (double-submit CSRF).
    fn sign_in(&self) -> LabResult<()> {
        let page = self.curl(&[&format!("{}/login", self.base)])?;
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or("no CSRF field on the sign-in page")?;
        self.curl(&[
            "-o",
            "/dev/null",
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            &format!("secret={}", self.token),
            &format!("{}/login", self.base),
        ])?;
        Ok(())
    }

    fn timed(&self, path: &str, auth: bool) -> LabResult<(Duration, usize)> {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            let header = format!("Authorization: Bearer {}", self.token);
            let url = format!("{}{path}", self.base);
            let mut args = vec![
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{time_total} %{size_download}",
            ];
            if auth {
                args.extend(["-H", &header]);
            }
            args.push(&url);
            let out = self.curl(&args)?;
            let mut fields = out.split_whitespace();
            let code = fields.next().unwrap_or_default();
            if code != "200" {
                return Err(format!("{path}: HTTP {code}").into());
            }
            let seconds: f64 = fields.next().unwrap_or("0").parse()?;
            size = fields.next().unwrap_or("0").parse()?;
            times.push(Duration::from_secs_f64(seconds));
        }
        times.sort();
        Ok((times[times.len() / 2], size))
    }

    fn time(&self, path: &str) -> LabResult<Duration> {
        Ok(self.timed(path, true)?.0)
    }

    fn time_size(&self, path: &str) -> LabResult<(Duration, usize)> {
        self.timed(path, true)
    }

    fn time_page(&self, path: &str) -> LabResult<Duration> {
        Ok(self.timed(path, false)?.0)
    }
}

fn report(all: &[Figures], users: usize) -> String {
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "## Scale benchmark: one IMAP batch of {users} users, {cores} cores\n\n\
         Created: imported, not started. Started: the source limited to one migration, held by a \
         server that never answers, so {queued} users stay queued while the runner ticks (every 500 ms).\n\n\
         | | {} |\n|---|{}\n",
        all.iter()
            .map(|f| f.backend)
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(all.len()),
        cores = std::thread::available_parallelism().map_or(1, |n| n.get()),
        queued = users.saturating_sub(1),
    );
    let mut row = |label: &str, value: &dyn Fn(&Figures) -> String| {
        out.push_str(&format!(
            "| {label} | {} |\n",
            all.iter().map(value).collect::<Vec<_>>().join(" | ")
        ));
    };
    row("import (`flytt batch new`)", &|f| ms(f.import));
    row("serve CPU, created (share of a core)", &|f| {
        format!("{:.1} %", f.idle_cpu * 100.0)
    });
    row("serve resident memory, created", &|f| {
        format!("{} MB", f.idle_rss_mb)
    });
    row("scheduler tick, created (median / max)", &|f| {
        format!(
            "{:.1} / {:.1} ms ({} ticks)",
            f.idle_tick.median_ms, f.idle_tick.max_ms, f.idle_tick.count
        )
    });
    row("GET /metrics", &|f| ms(f.metrics));
    row("GET /api/v1/batches/NAME", &|f| ms(f.batch_api));
    row("GET …/users?limit=100", &|f| ms(f.users_page));
    row("GET …/users (all, no limit)", &|f| {
        format!(
            "{} ({:.1} MB)",
            ms(f.all_users.0),
            f.all_users.1 as f64 / 1e6
        )
    });
    row("dashboard batch page", &|f| ms(f.dashboard));
    row("serve CPU, started", &|f| {
        format!("{:.1} %", f.started_cpu * 100.0)
    });
    row("scheduler tick, started (median / max)", &|f| {
        format!(
            "{:.1} / {:.1} ms ({} ticks)",
            f.started_tick.median_ms, f.started_tick.max_ms, f.started_tick.count
        )
    });
    row("serve peak resident memory", &|f| {
        format!("{} MB", f.peak_rss_mb)
    });
    row("users per status at the end", &|f| {
        f.counts.replace('|', "/")
    });
    out
}
