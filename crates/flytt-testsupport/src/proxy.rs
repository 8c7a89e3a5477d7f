//! A TCP proxy on loopback that delays every chunk by a fixed time in each
//! direction, to measure how the copy holds up over a long round trip
//! (kernel traffic shaping is not available here).

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
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("bind proxy"))?;
        let port = listener.local_addr().map_err(io("proxy address"))?.port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pipe(cr, sw, delay), pipe(sr, cw, delay));
                    }
                });
            }
        });
        Ok(LatencyProxy { port, task })
    }
}

/// Copies one direction; each chunk is released `delay` after it was read,
/// so throughput is kept and only latency is added.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
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
