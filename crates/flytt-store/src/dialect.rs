//! One SQL text for both backends.
//!
//! The store's queries are written once, in SQLite's syntax with `?` and
//! `?N` parameters, plus a few named fragments in braces for what the two
//! databases spell differently (clocks, row locks). `translate` turns such a
//! text into the backend's own: fragments are replaced, and for PostgreSQL
//! the parameters become `$N`. The texts are static and few, so each
//! translation is made once and kept for the process's life (sqlx takes
//! static strings, which keeps values out of SQL text).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Which database the store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The embedded default: a file in the data directory.
    Sqlite,
    /// A server that several runners on several machines share.
    Postgres,
}

/// `{name}` -> (SQLite, PostgreSQL). Timestamps are kept as UTC text in
/// both (`YYYY-MM-DD HH:MM:SS`, which sorts as it reads), so the two
/// backends hand out the same values.
const FRAGMENTS: &[(&str, &str, &str)] = &[
    (
        "{now_ms}",
        "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    ),
    (
        "{now}",
        "CURRENT_TIMESTAMP",
        "to_char(CURRENT_TIMESTAMP AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
    ),
    (
        "{now_fine}",
        "strftime('%Y-%m-%d %H:%M:%f', 'now')",
        "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')",
    ),
    (
        "{minute_ago}",
        "datetime('now', '-1 minute')",
        "to_char(CURRENT_TIMESTAMP AT TIME ZONE 'UTC' - INTERVAL '1 minute', 'YYYY-MM-DD HH24:MI:SS')",
    ),
    (
        "{seconds_since_last_sync}",
        "CAST(strftime('%s', 'now') - strftime('%s', u.last_synced_at) AS INTEGER)",
        "CAST(EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') - CAST(u.last_synced_at AS TIMESTAMP)) AS BIGINT)",
    ),
    ("{no_limit}", "-1", "NULL"),
    // SQLite's write transaction holds the whole file; PostgreSQL locks
    // the rows a transaction reads before it writes them.
    ("{for_update}", "", " FOR UPDATE"),
    ("{for_update_of_u}", "", " FOR UPDATE OF u"),
    ("{skip_locked}", "", " FOR UPDATE SKIP LOCKED"),
];

/// The text of `sql` for `backend`.
pub(crate) fn translate(backend: Backend, sql: &'static str) -> &'static str {
    if backend == Backend::Sqlite && !sql.contains('{') {
        return sql;
    }
    static CACHE: OnceLock<Mutex<HashMap<(Backend, &'static str), &'static str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry((backend, sql))
        // Leaked once per distinct static text: a fixed, small set.
        .or_insert_with(|| Box::leak(rewrite(backend, sql).into_boxed_str()))
}

fn rewrite(backend: Backend, sql: &str) -> String {
    let mut text = sql.to_string();
    for (name, sqlite, postgres) in FRAGMENTS {
        let with = match backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        text = text.replace(name, with);
    }
    match backend {
        Backend::Sqlite => text,
        Backend::Postgres => dollar_parameters(&text),
    }
}

/// `?` and `?N` -> `$N`, numbered as SQLite numbers them (a bare `?` is one
/// more than the largest number so far), outside quoted text.
fn dollar_parameters(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut highest = 0u32;
    let mut quoted: Option<char> = None;
    while let Some(c) = chars.next() {
        match quoted {
            Some(q) => {
                out.push(c);
                if c == q {
                    quoted = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quoted = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let number = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => highest + 1,
                };
                highest = highest.max(number);
                out.push('$');
                out.push_str(&number.to_string());
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_as_sqlite_numbers_them() {
        assert_eq!(
            dollar_parameters("a = ? AND b = ? AND c = '?' AND d = ?"),
            "a = $1 AND b = $2 AND c = '?' AND d = $3"
        );
        assert_eq!(
            dollar_parameters("?2 = x OR ?1 = y OR ?2 IS NULL AND z = ?"),
            "$2 = x OR $1 = y OR $2 IS NULL AND z = $3"
        );
    }

    #[test]
    fn fragments_differ_by_backend_and_are_kept() {
        let sql = "UPDATE runner SET at = {now_ms} WHERE id = ?";
        let sqlite = translate(Backend::Sqlite, sql);
        assert!(sqlite.contains("julianday") && sqlite.ends_with("id = ?"));
        let postgres = translate(Backend::Postgres, sql);
        assert!(postgres.contains("clock_timestamp") && postgres.ends_with("id = $1"));
        assert!(std::ptr::eq(postgres, translate(Backend::Postgres, sql)));
        let plain = "SELECT 1";
        assert!(std::ptr::eq(plain, translate(Backend::Sqlite, plain)));
    }
}
