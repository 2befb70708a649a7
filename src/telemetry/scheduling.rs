//! Metrics by priority and tenant: queue depth and evictions per priority (read from the model
//! queues at scrape time into `levels::QueueLevels`), queue wait per priority, and pairs scored
//! and requests refused per tenant. The label sets stay bounded: priorities by `max_priority`,
//! and tenants by the listed ones (`--metric-tenant`, at most 64): every other tenant is counted
//! as `(other)`, and calls without a tenant as `(none)`
//! ([`ListedTenants`](super::labels::ListedTenants)).

use std::time::Duration;

use super::labels::{ModelLabel, PriorityLabels, TenantLabels, TenantReasonLabels};
use super::metrics::Metrics;
use crate::scheduler::LevelStats;

impl Metrics {
    /// Lists the tenants whose counts carry their name (the configuration's; a server sets
    /// them once at start).
    pub fn set_metric_tenants(&self, names: &[String]) {
        self.listed_tenants.set(names);
    }

    /// The priority levels of every ready model, read at scrape time.
    pub fn set_queue_levels(&self, levels: Vec<(String, LevelStats)>) {
        self.queue_levels.set(levels);
    }

    /// `pairs` scored for `tenant` on `model`.
    pub fn tenant_scored(&self, model: &str, tenant: &str, pairs: usize) {
        let labels = TenantLabels {
            model: model.into(),
            tenant: self.listed_tenants.label(tenant),
        };
        self.tenant_pairs
            .get_or_create(&labels)
            .inc_by(pairs as u64);
    }

    /// A request of `tenant` refused or displaced on `model` for `reason`.
    pub fn tenant_rejected(&self, model: &str, tenant: &str, reason: &str) {
        let labels = TenantReasonLabels {
            model: model.into(),
            tenant: self.listed_tenants.label(tenant),
            reason: reason.into(),
        };
        self.tenant_rejections.get_or_create(&labels).inc();
    }

    /// How long the pairs of one batch waited in `model`'s queue, each with its request's
    /// priority: into `queue_wait_seconds` and `queue_wait_by_priority_seconds`.
    pub fn queue_waits(&self, model: &str, waits: impl Iterator<Item = (u32, Duration)>) {
        let mut waits: Vec<(u32, f64)> = waits.map(|(p, d)| (p, d.as_secs_f64())).collect();
        let all = self.queue_wait.get_or_create(&ModelLabel {
            model: model.into(),
        });
        for (_, wait) in &waits {
            all.observe(*wait);
        }
        drop(all);
        // One look-up per priority in the batch, not one per pair.
        waits.sort_by_key(|(p, _)| *p);
        for level in waits.chunk_by(|a, b| a.0 == b.0) {
            let labels = PriorityLabels {
                model: model.into(),
                priority: level[0].0,
            };
            let histogram = self.queue_wait_by_priority.get_or_create(&labels);
            for (_, wait) in level {
                histogram.observe(*wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::metrics;

    fn level(priority: u32, depth: usize, evicted_pairs: u64) -> LevelStats {
        LevelStats {
            priority,
            depth,
            evicted_pairs,
        }
    }

    /// The levels of the last scrape are served as they are; levels that are gone disappear.
    #[test]
    fn queue_levels_are_encoded_as_set() {
        let m = metrics();
        m.set_queue_levels(vec![
            ("unit-levels".into(), level(0, 3, 0)),
            ("unit-levels".into(), level(5, 40, 12)),
        ]);
        let text = m.encode();
        for sample in [
            "crossrank_queue_depth_by_priority_pairs{model=\"unit-levels\",priority=\"0\"} 3",
            "crossrank_queue_depth_by_priority_pairs{model=\"unit-levels\",priority=\"5\"} 40",
            "crossrank_evicted_pairs_total{model=\"unit-levels\",priority=\"5\"} 12",
            "# TYPE crossrank_evicted_pairs_total counter",
        ] {
            assert!(text.contains(sample), "{sample} not in\n{text}");
        }
        assert!(
            !text.contains("crossrank_evicted_pairs_total{model=\"unit-levels\",priority=\"0\"}")
        );
        m.set_queue_levels(vec![("unit-levels".into(), level(5, 0, 12))]);
        let text = m.encode();
        let gone = "crossrank_queue_depth_by_priority_pairs{model=\"unit-levels\",priority=\"0\"}";
        assert!(!text.contains(gone), "{text}");
        assert!(
            text.contains("crossrank_evicted_pairs_total{model=\"unit-levels\",priority=\"5\"} 12")
        );
        m.set_queue_levels(Vec::new());
    }

    #[test]
    fn queue_waits_go_to_both_histograms() {
        let ms = Duration::from_millis;
        let waits = [(3, ms(10)), (0, ms(2)), (3, ms(30)), (0, ms(4))];
        metrics().queue_waits("unit-waits", waits.into_iter());
        let text = metrics().encode();
        for sample in [
            "crossrank_queue_wait_seconds_count{model=\"unit-waits\"} 4",
            "crossrank_queue_wait_by_priority_seconds_count{model=\"unit-waits\",priority=\"0\"} 2",
            "crossrank_queue_wait_by_priority_seconds_count{model=\"unit-waits\",priority=\"3\"} 2",
        ] {
            assert!(text.contains(sample), "{sample} not in\n{text}");
        }
    }
}
