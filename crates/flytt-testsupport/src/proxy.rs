//! A TCP proxy on loopback that delays every chunk by a fixed time in each
//! direction, and optionally holds each direction to a bandwidth shared by
//! all its connections: to measure how the copy holds up over a long round
//! trip and a slow link (kernel traffic shaping is not available here).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{Result, io};

/// A running proxy; stops when dropped.
pub struct LatencyProxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LatencyProxy {
    /// Forwards 127.0.0.1:`port` (chosen here) to 127.0.0.1:`upstream`,
    /// delaying data by `delay` each way.
    pub async fn start(upstream: u16, delay: Duration) -> Result<LatencyProxy> {
        Self::start_link(upstream, delay, None).await
    }

    /// Like `start`, each direction also held to `bytes_per_second` across
    /// all connections: a link of that bandwidth with a router buffer of
    /// `BUFFERED` (a sender further ahead waits, as TCP makes it).
    pub async fn start_shaped(
        upstream: u16,
        delay: Duration,
        bytes_per_second: u64,
    ) -> Result<LatencyProxy> {
        Self::start_link(upstream, delay, Some(bytes_per_second)).await
    }

    async fn start_link(
        upstream: u16,
        delay: Duration,
        bytes_per_second: Option<u64>,
    ) -> Result<LatencyProxy> {
        let up = bytes_per_second.map(Wire::new);
        let down = bytes_per_second.map(Wire::new);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind proxy"))?;
        let port = listener.local_addr().map_err(io("proxy address"))?.port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (up, down) = (up.clone(), down.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pipe(cr, sw, delay, up), pipe(sr, cw, delay, down));
                    }
                });
            }
        });
        Ok(LatencyProxy { port, task })
    }
}

/// How much a shaped link holds before its sender must wait: a router's
/// buffer.
const BUFFERED: Duration = Duration::from_millis(50);

/// One direction of a shaped link, shared by its connections: when the
/// wire is free again.
#[derive(Clone)]
struct Wire {
    bytes_per_second: u64,
    free_at: Arc<Mutex<Instant>>,
}

impl Wire {
    fn new(bytes_per_second: u64) -> Wire {
        Wire {
            bytes_per_second: bytes_per_second.max(1),
            free_at: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Puts `bytes` on the wire behind what is already on it: when they
    /// have left, and how long the wire is busy from now on.
    fn send(&self, bytes: usize) -> (Instant, Duration) {
        let now = Instant::now();
        let mut free_at = self.free_at.lock().unwrap_or_else(PoisonError::into_inner);
        let start = (*free_at).max(now);
        *free_at = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        (*free_at, *free_at - now)
    }
}

/// Copies one direction; each chunk is released `delay` after it was read
/// (after it has crossed the `wire`, if shaped), so only latency is added
/// where there is no wire.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    wire: Option<Wire>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        // Small chunks on a shaped wire, so connections take turns on it.
        let mut buf = vec![0u8; if wire.is_some() { 16 * 1024 } else { 64 * 1024 }];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let (sent, busy) = match &wire {
                        Some(wire) => wire.send(n),
                        None => (Instant::now(), Duration::ZERO),
                    };
                    if tx.send((sent + delay, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                    if busy > BUFFERED {
                        tokio::time::sleep(busy - BUFFERED).await;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
