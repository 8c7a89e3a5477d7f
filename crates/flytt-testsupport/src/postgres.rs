//! A PostgreSQL server of the test's own: Debian's `postgresql` binaries,
//! a cluster made by `initdb` in a temporary directory, listening on a free
//! port of 127.0.0.1 only, trusting local connections (it is reachable from
//! this machine only, and lives as long as the test). Durability is off:
//! the tests kill runners, never this server.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{Error, Result, free_port, io};

/// The superuser the cluster is made with, and the database flytt uses.
const USER: &str = "flytt";

pub struct Postgres {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

/// Where the server's programs are: `FLYTT_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLYTT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| {
        Error::Server("PostgreSQL is not installed (run scripts/install-deps)".into())
    })?;
    versions
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::Server("no /usr/lib/postgresql/N/bin/postgres".into()))
}

/// PostgreSQL refuses to run as root: as root, it runs as `postgres` (the
/// account Debian's package makes).
fn run_as() -> Result<Option<(u32, u32)>> {
    let me = Command::new("id")
        .arg("-u")
        .output()
        .map_err(io("run id"))?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(io("run id postgres"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| Error::Server("no postgres account (install postgresql)".into()))
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

impl Postgres {
    /// Makes a cluster with a database `flytt` and starts it.
    pub fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let owner = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("flytt-pg-")
            .tempdir()
            .map_err(io("create PostgreSQL directory"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(io("chown PostgreSQL directory"))?;
        }
        let data = dir.path().join("data");
        let init = command(&bin.join("initdb"), owner)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .map_err(io("run initdb"))?;
        if !init.status.success() {
            return Err(Error::Server(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            )));
        }
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let log = std::fs::File::create(dir.path().join("postgres.log"))
                .map_err(io("create postgres.log"))?;
            if let Some((uid, gid)) = owner {
                let path = dir.path().join("postgres.log");
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(io("chown postgres.log"))?;
            }
            // Its own process group: stopping it stops its workers too.
            let mut child = command(&bin.join("postgres"), owner)
                .process_group(0)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(io("start postgres"))?;
            let log =
                || std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
            let ready = crate::wait_listening(&mut child, "postgres", &[port], log)
                .and_then(|()| create_database(&bin, port));
            match ready {
                Ok(()) => return Ok(Postgres { dir, child, port }),
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

    /// `postgres://flytt@127.0.0.1:PORT/flytt`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{USER}", self.port)
    }

    /// The database's whole content as SQL text (pg_dump), to check what
    /// is stored.
    pub fn dump(&self) -> Result<String> {
        let out = Command::new(bin_dir()?.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                USER,
            ])
            .output()
            .map_err(io("run pg_dump"))?;
        if !out.status.success() {
            return Err(Error::Server(format!(
                "pg_dump failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

/// `createdb flytt`, which also proves the server is the one just started
/// (another server on a reused port would not trust the user).
fn create_database(bin: &Path, port: u16) -> Result<()> {
    let out = Command::new(bin.join("createdb"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, USER])
        .output()
        .map_err(io("run createdb"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Server(format!(
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl Drop for Postgres {
    /// A fast shutdown (SIGINT: clients are disconnected, not waited for);
    /// the whole group is killed if that takes more than 5 s.
    fn drop(&mut self) {
        use std::time::{Duration, Instant};
        let signal = |signal: &str, target: String| {
            let _ = Command::new("kill").args([signal, "--", &target]).status();
        };
        signal("-INT", self.child.id().to_string());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal("-KILL", format!("-{}", self.child.id()));
        let _ = self.child.wait();
    }
}
