//! Real servers for tests, the demo and the benchmarks: Dovecot instances on
//! 127.0.0.1, each with its own configuration, data directory, passwd-file
//! users and a master user; an OpenLDAP directory (slapd); PostgreSQL; an SMTP sink
//! (aiosmtpd); a TCP proxy that adds latency; and the test corpus. Nothing here is a mock: the code under test talks to Dovecot.

pub mod corpus;
pub mod cyrus;
pub mod dav;
pub mod dovecot;
pub mod faults;
pub mod gmail;
pub mod oauth;
pub mod postgres;
pub mod proxy;
pub mod server;
pub mod slapd;
pub mod smtp;

pub use cyrus::Cyrus;
pub use dav::{DavFamily, DavServer};
pub use dovecot::{Dovecot, Layout};
pub use faults::{Answer, FaultProxy, Faults};
pub use gmail::GmailProxy;
pub use postgres::Postgres;
pub use server::{EndpointAdmin, Family, NewEndpoint, TestServer};

/// Errors from starting servers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Server(String),
    #[error(transparent)]
    Imap(#[from] flytt_imap::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("read local address"))?
        .port();
    Ok(port)
}

/// Waits until a server process listens on every one of `ports` on
/// 127.0.0.1, or has exited, or 20 s have passed; `log` tells why it failed.
pub(crate) fn wait_listening(
    child: &mut std::process::Child,
    what: &str,
    ports: &[u16],
    log: impl Fn() -> String,
) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if ports
            .iter()
            .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok())
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Server(format!(
                "{what} exited with {status}: {}",
                log()
            )));
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Server(format!(
                "{what} did not listen within 20 s: {}",
                log()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// For crash tests: runs `command` once per threshold and SIGKILLs it as
/// soon as `progress` (what the target holds) reaches that threshold, the
/// run ends by itself, or 120 s have passed.
pub async fn kill_at_progress<F, Fut>(
    mut command: impl FnMut() -> std::process::Command,
    progress: F,
    thresholds: &[u32],
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u32>,
{
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    for threshold in thresholds {
        let mut child = command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the run to kill");
        let deadline = Instant::now() + Duration::from_secs(120);
        while progress().await < *threshold && Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
}

/// Stops a server's master process: SIGTERM lets it stop its children,
/// then it is reaped (killed after 5 s).
pub(crate) fn stop_master(child: &mut std::process::Child) {
    use std::time::{Duration, Instant};
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether the IMAP server on `port` greets with `token`: the server this
/// test started, not another one that took the port between our probe for a
/// free port and its bind (then the start is tried again elsewhere).
pub(crate) fn greets_with(port: u16, token: &str) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut greeting = Vec::new();
    let mut buffer = [0u8; 512];
    while !greeting.ends_with(b"\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => greeting.extend_from_slice(&buffer[..n]),
        }
    }
    // Only a whole greeting without the token is another server's; one
    // that is slow to come (a loaded machine) is not held against it.
    !greeting.ends_with(b"\r\n") || String::from_utf8_lossy(&greeting).contains(token)
}
