//! A source's download limit per mailbox and day.
//!
//! Gmail stops an account's IMAP downloads for the rest of the day after
//! about 2.5 GB; going on meets refusals and, in the end, a blocked
//! account. So a sync reads message bodies within the day's allowance: each
//! FETCH chunk is taken from it before it is sent (its size from
//! RFC822.SIZE), and what was taken is kept in the store
//! (`download_window`, by source mailbox), so later syncs and other runners
//! see it. When the allowance is used up, the sync stops at a safe point
//! (the chunks in flight are appended and recorded, the folder's pass stays
//! unfinished) with `SyncError::DownloadLimit`, which says when the next
//! day begins: the runner waits until then, `flytt sync` says so.
//!
//! The day is a fixed window from the first read under the limit. A
//! first chunk of a day is taken whatever its size, so that a message
//! larger than the whole allowance still moves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flytt_store::{DownloadWindow, Store};
use tokio::sync::Mutex;

use crate::SyncError;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// One sync's view of its source mailbox's day (shared by its connection
/// pairs).
pub(crate) struct DownloadBudget {
    per_day: u64,
    source_key: String,
    window: Mutex<Option<DownloadWindow>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl DownloadBudget {
    pub(crate) async fn open(
        store: &Store,
        source_key: String,
        per_day: u64,
    ) -> Result<DownloadBudget, SyncError> {
        let window = store.download_window(&source_key).await?;
        Ok(DownloadBudget {
            per_day,
            source_key,
            window: Mutex::new(window),
        })
    }

    /// Takes `bytes` from the day's allowance, if they fit (and records
    /// it); `false`: the allowance is used up.
    pub(crate) async fn take(&self, store: &Store, bytes: u64) -> Result<bool, SyncError> {
        let mut window = self.window.lock().await;
        let now = now_ms();
        let today = match *window {
            Some(w) if now.saturating_sub(w.started_ms) < DAY.as_millis() as i64 => w,
            _ => DownloadWindow {
                started_ms: now,
                bytes: 0,
            },
        };
        if today.bytes > 0 && today.bytes.saturating_add(bytes) > self.per_day {
            *window = Some(today);
            return Ok(false);
        }
        let taken = DownloadWindow {
            bytes: today.bytes.saturating_add(bytes),
            ..today
        };
        store.save_download_window(&self.source_key, taken).await?;
        *window = Some(taken);
        Ok(true)
    }

    /// The error that stops the sync: the limit, and when the next day
    /// begins.
    pub(crate) async fn used_up(&self) -> SyncError {
        let started = self.window.lock().await.map_or(now_ms(), |w| w.started_ms);
        let ends = started.saturating_add(DAY.as_millis() as i64);
        let resume_in = Duration::from_millis(u64::try_from(ends - now_ms()).unwrap_or(0));
        SyncError::DownloadLimit {
            per_day: self.per_day,
            resume_in,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_day_allows_its_bytes_and_the_next_run_sees_them() {
        let store = Store::in_memory().await.expect("store");
        let budget = DownloadBudget::open(&store, "kari@gmail".into(), 1000)
            .await
            .expect("budget");
        // The first chunk of a day goes whatever its size.
        assert!(budget.take(&store, 600).await.expect("take"));
        assert!(budget.take(&store, 400).await.expect("take"));
        assert!(!budget.take(&store, 1).await.expect("take"));
        let again = DownloadBudget::open(&store, "kari@gmail".into(), 1000)
            .await
            .expect("budget");
        assert!(!again.take(&store, 1).await.expect("take"));
        match again.used_up().await {
            SyncError::DownloadLimit { per_day, resume_in } => {
                assert_eq!(per_day, 1000);
                assert!(resume_in > DAY - Duration::from_secs(60) && resume_in <= DAY);
            }
            other => panic!("{other}"),
        }
        // Another mailbox has its own day; a day over is forgotten.
        let other = DownloadBudget::open(&store, "ola@gmail".into(), 1000)
            .await
            .expect("budget");
        assert!(other.take(&store, 2000).await.expect("take"));
        store
            .save_download_window(
                "kari@gmail",
                DownloadWindow {
                    started_ms: now_ms() - DAY.as_millis() as i64 - 1,
                    bytes: 1000,
                },
            )
            .await
            .expect("save");
        let next_day = DownloadBudget::open(&store, "kari@gmail".into(), 1000)
            .await
            .expect("budget");
        assert!(next_day.take(&store, 900).await.expect("take"));
    }
}
