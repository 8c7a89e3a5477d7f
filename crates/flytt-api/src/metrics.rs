//! `/metrics` in Prometheus' text format, read from the store at each
//! scrape: the store is the truth that every worker process writes, so the
//! figures are the same whichever `flytt serve` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;

use flytt_store::Store;

/// A label value as the text format wants it: backslash, quote and
/// newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, u64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: u64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        self.samples.push((labels.join(","), value));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", self.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
            }
        }
    }
}

pub async fn render(store: &Store) -> Result<String, flytt_store::Error> {
    let mut users = Family::new("flytt_users", "gauge", "Users of each batch, per status.");
    let mut copied = Family::new(
        "flytt_messages_copied_total",
        "counter",
        "Messages copied to the target, per batch.",
    );
    let mut bytes = Family::new(
        "flytt_bytes_copied_total",
        "counter",
        "Bytes copied to the target, per batch.",
    );
    let mut skipped = Family::new(
        "flytt_items_skipped",
        "gauge",
        "Messages skipped (too large, excluded), per batch.",
    );
    let mut failed = Family::new(
        "flytt_items_failed",
        "gauge",
        "Messages the target refused (bad items), per batch.",
    );
    let mut in_flight = Family::new(
        "flytt_syncs_in_flight",
        "gauge",
        "Syncs running now, per endpoint (a sync counts on its source and its target).",
    );
    let mut limit = Family::new(
        "flytt_endpoint_migration_limit",
        "gauge",
        "Migrations an endpoint takes at once now: its MaxConcurrentMigrations, or less while the server refuses or throttles.",
    );
    let endpoints = store.endpoints().await?;
    for endpoint in &endpoints {
        limit.add(
            &[("endpoint", &endpoint.name)],
            u64::from(endpoint.migration_limit()),
        );
    }
    let mut running_per_endpoint: BTreeMap<String, u64> =
        endpoints.into_iter().map(|e| (e.name, 0)).collect();
    for batch in store.batches().await? {
        for (user_status, n) in &batch.user_counts {
            users.add(
                &[("batch", &batch.name), ("status", user_status.as_str())],
                *n,
            );
        }
        let totals = &batch.totals;
        copied.add(&[("batch", &batch.name)], totals.messages_copied);
        bytes.add(&[("batch", &batch.name)], totals.bytes_copied);
        skipped.add(&[("batch", &batch.name)], totals.messages_skipped);
        failed.add(&[("batch", &batch.name)], totals.messages_failed);
        let running: u64 = batch
            .user_counts
            .iter()
            .filter(|(s, _)| s.is_running())
            .map(|c| c.1)
            .sum();
        *running_per_endpoint
            .entry(batch.source_endpoint.clone())
            .or_default() += running;
        if batch.target_endpoint != batch.source_endpoint {
            *running_per_endpoint
                .entry(batch.target_endpoint.clone())
                .or_default() += running;
        }
    }
    for (endpoint, n) in &running_per_endpoint {
        in_flight.add(&[("endpoint", endpoint)], *n);
    }
    let mut out = String::new();
    for family in [
        &users, &copied, &bytes, &skipped, &failed, &in_flight, &limit,
    ] {
        family.write(&mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{label, render};

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    /// The limit in force, lowered after a refusal, is what the metric says.
    #[tokio::test]
    async fn the_endpoint_limit_in_force_is_a_metric() {
        let store = flytt_store::Store::in_memory().await.expect("store");
        let mut endpoint = flytt_store::Endpoint::new("busy", "imaps://mail.example.org");
        endpoint.max_concurrent_migrations = 8;
        store.create_endpoint(&endpoint).await.expect("endpoint");
        let before = render(&store).await.expect("metrics");
        assert!(
            before.contains("flytt_endpoint_migration_limit{endpoint=\"busy\"} 8"),
            "{before}"
        );
        store
            .lower_endpoint_limit("busy", std::time::Duration::from_secs(10))
            .await
            .expect("lower");
        let after = render(&store).await.expect("metrics");
        assert!(
            after.contains("flytt_endpoint_migration_limit{endpoint=\"busy\"} 6"),
            "{after}"
        );
    }
}
