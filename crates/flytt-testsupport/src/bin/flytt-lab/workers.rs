//! `bench-workers`: one batch of many small mailboxes run by 1, 2 and 3
//! `flytt worker` processes sharing one PostgreSQL database (a fresh
//! database and target each time), beside the servers' own ceiling. On
//! one machine the workers share its cores with both servers and the
//! database, so more workers cannot add capacity the servers do not have:
//! what this shows is that sharing the work costs little.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use flytt_testsupport::{Dovecot, Layout, Postgres};

use crate::scale::Runner;
use crate::{BatchShape, LabResult, dovecot_version, master_endpoint, peak_rss_kb, rate};

pub async fn bench_workers(flytt: &Path, args: &[String]) -> LabResult<()> {
    let shape = BatchShape::parse(args, 10_000)?;
    let seeded = shape.seed().await?;
    let (lab, users, total, bytes, ceiling) = (
        &seeded.lab,
        &seeded.users,
        seeded.total,
        seeded.bytes,
        &seeded.ceiling,
    );
    let BatchShape {
        users_n,
        messages,
        size,
        ref out,
        ..
    } = shape;
    let pairs: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.as_str(), "user-password-1"))
        .collect();
    let password = lab.dir.path().join("master-password");
    let mut rows = String::new();
    // One worker on SQLite first: the same shape without a database server.
    for (workers, postgres) in [(1usize, false), (1, true), (2, true), (3, true)] {
        let target = Dovecot::start(Layout::Target, &pairs)?;
        let database = postgres.then(Postgres::start).transpose()?;
        let data = lab.dir.path().join(format!("data-{workers}-{postgres}"));
        let run = Runner {
            flytt,
            data: &data,
            url: database.as_ref().map(Postgres::url),
        };
        for (name, server) in [("gammel", &lab.source), ("ny", &target)] {
            let args = master_endpoint(name, server.url(), server, &password, 20).args();
            run.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        let csv = lab
            .dir
            .path()
            .join(format!("batch-{workers}-{postgres}.csv"));
        run.new_bench_batch(&csv, users)?;
        let started = Instant::now();
        let mut running: Vec<Child> = (0..workers)
            .map(|_| {
                run.command(&["worker"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let outcome = wait_synced(&run, &mut running);
        let elapsed = started.elapsed();
        let peak_mb: Vec<String> = running
            .iter()
            .map(|w| format!("{}", peak_rss_kb(w.id()) / 1024))
            .collect();
        for worker in &mut running {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &worker.id().to_string()])
                .status();
            let _ = worker.wait();
        }
        outcome?;
        let copied = rate(total, bytes, elapsed);
        rows.push_str(&format!(
            "| {workers} flytt worker{} on {} | {:.0} | {:.1} | {:.0}% | {} MB |\n",
            if workers == 1 { "" } else { "s" },
            if postgres {
                "one PostgreSQL"
            } else {
                "SQLite (a data directory)"
            },
            copied.messages,
            copied.mb,
            100.0 * copied.messages / ceiling.messages,
            peak_mb.join(" / ")
        ));
        eprintln!(
            "{workers} workers, PostgreSQL {postgres}: {:.1} s",
            elapsed.as_secs_f64()
        );
    }
    let report = format!(
        "## Workers benchmark: {users_n} users x {messages} messages of ~{size} bytes ({mb:.0} MB), \
         MaxConcurrentMigrations 20 across the workers, Dovecot {version}, PostgreSQL, {cores} cores\n\n\
| what | messages/s | MB/s | of ceiling | peak RSS per worker |\n|---|---:|---:|---:|---:|\n\
| both servers at once (read + MULTIAPPEND ingest, all users, STARTTLS) | {cm:.0} | {cmb:.1} | | |\n{rows}",
        mb = bytes as f64 / 1e6,
        version = dovecot_version(),
        cores = std::thread::available_parallelism().map_or(1, |n| n.get()),
        cm = ceiling.messages,
        cmb = ceiling.mb,
    );
    println!("{report}");
    if let Some(out) = out {
        std::fs::write(out, &report)?;
    }
    Ok(())
}

/// Until the batch is Synced (an error if it is not within 30 minutes, a
/// worker dies, or a user failed).
fn wait_synced(run: &Runner<'_>, workers: &mut [Child]) -> LabResult<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let shown: serde_json::Value =
            serde_json::from_str(&run.ok(&["batch", "show", "bench", "--json"])?)?;
        match shown["status"].as_str() {
            Some("Synced") => return Ok(()),
            Some("SyncedWithErrors") => return Err(format!("users failed: {shown}").into()),
            _ => {}
        }
        for worker in workers.iter_mut() {
            if let Some(status) = worker.try_wait()? {
                return Err(format!("a worker exited: {status}").into());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("not synced in 30 minutes: {shown}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
