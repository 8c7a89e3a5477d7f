//! `bench-faults`: a batch through a busy, flaky source (issue 11's
//! measure). The source takes at most 4 connections at once (the next is
//! greeted with `* BYE [UNAVAILABLE]`) and cuts every connection after
//! 3–12 s, with the endpoint's limit left at 10; beside it, the same batch
//! through the same proxy without faults at a limit of 4 (what an
//! administrator who knew the cap would set). Both are plaintext through
//! the proxy, which reads the protocol. Goal: the faulty run takes at most
//! 1.5 times the other.

use std::path::Path;
use std::time::Duration;

use flytt_testsupport::{Dovecot, FaultProxy, Faults, Layout, NewEndpoint};

use crate::scale::Runner;
use crate::{BatchShape, LabResult, dovecot_version, master_endpoint, rate, run_serve_until};

pub async fn bench_faults(flytt: &Path, args: &[String]) -> LabResult<()> {
    let mut shape = BatchShape::parse(args, 10_000)?;
    if !args.iter().any(|a| a == "--users") {
        shape.users_n = 10;
    }
    if !args.iter().any(|a| a == "--messages") {
        shape.messages = 3_000;
    }
    let seeded = shape.seed().await?;
    let (lab, users, total, bytes) = (&seeded.lab, &seeded.users, seeded.total, seeded.bytes);
    let pairs: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.as_str(), "user-password-1"))
        .collect();
    let password = lab.dir.path().join("master-password");
    let runs = [
        ("no faults, MaxConcurrentMigrations 4", Faults::default(), 4),
        (
            "at most 4 connections, each cut after 3–12 s; MaxConcurrentMigrations 10",
            Faults {
                max_connections: Some(4),
                cut_after: Some((Duration::from_secs(3), Duration::from_secs(12))),
                ..Faults::default()
            },
            10,
        ),
    ];
    let mut rows = String::new();
    let mut times = Vec::new();
    for (index, (what, faults, limit)) in runs.into_iter().enumerate() {
        let target = Dovecot::start(Layout::Target, &pairs)?;
        let proxy = FaultProxy::start(lab.source.port, faults).await?;
        let data = lab.dir.path().join(format!("data-faults-{index}"));
        let run = Runner {
            flytt,
            data: &data,
            url: None,
        };
        let source = NewEndpoint {
            allow_plaintext: true,
            ..master_endpoint(
                "gammel",
                format!("imap://127.0.0.1:{}", proxy.port),
                &lab.source,
                &password,
                limit,
            )
        };
        let destination = master_endpoint("ny", target.url(), &target, &password, 20);
        for endpoint in [source, destination] {
            let args = endpoint.args();
            run.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        run.new_bench_batch(&lab.dir.path().join(format!("faults-{index}.csv")), users)?;
        let served = run_serve_until(
            flytt,
            &data,
            "bench",
            &["Synced"],
            &["SyncedWithErrors"],
            Duration::from_secs(3600),
        )?;
        let counts = &proxy.counts;
        let copied = rate(total, bytes, served.elapsed);
        use std::sync::atomic::Ordering::Relaxed;
        rows.push_str(&format!(
            "| {what} | {:.1} s | {:.0} | {:.1} | {} | {} | {} | {} MB |\n",
            served.elapsed.as_secs_f64(),
            copied.messages,
            copied.mb,
            counts.most_at_once.load(Relaxed),
            counts.refused.load(Relaxed),
            counts.cut.load(Relaxed),
            served.peak_kb / 1024
        ));
        times.push(served.elapsed.as_secs_f64());
        eprintln!("{what}: {:.1} s", served.elapsed.as_secs_f64());
    }
    let ratio = times[1] / times[0];
    let report = format!(
        "## Busy-source benchmark: {users} users x {messages} messages of ~{size} bytes ({mb:.0} MB), Dovecot {version}, {cores} cores\n\n\
| source | time to Synced | messages/s | MB/s | connections at once (most) | refused | cut | peak RSS |\n\
|---|---:|---:|---:|---:|---:|---:|---:|\n{rows}\n\
The faulty source took {ratio:.2} times as long (goal: at most 1.5).\n",
        users = shape.users_n,
        messages = shape.messages,
        size = shape.size,
        mb = bytes as f64 / 1e6,
        version = dovecot_version(),
        cores = std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!("{report}");
    if let Some(out) = &shape.out {
        std::fs::write(out, &report)?;
    }
    Ok(())
}
