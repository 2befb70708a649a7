//! Metrics by priority and tenant: queue depth and evictions per priority (read from the model
//! queues at scrape time into [`QueueLevels`]), queue wait per priority, and pairs scored and
//! requests refused per tenant. The label sets stay bounded: priorities by `max_priority`, and
//! tenants by the listed ones (`--metric-tenant`, at most 64): every other tenant is counted as
//! `(other)`, and calls without a tenant as `(none)`.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::metrics::{Metrics, ModelLabel};
use crate::scheduler::LevelStats;

/// The label of calls that name no tenant.
pub const NO_TENANT: &str = "(none)";
/// The label of tenants that are not listed.
pub const OTHER_TENANT: &str = "(other)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub model: String,
    pub priority: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub model: String,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantReasonLabels {
    pub model: String,
    pub tenant: String,
    pub reason: String,
}

/// Each ready model's priority levels as of the last scrape, encoded as the gauge
/// `queue_depth_by_priority_pairs` and the counter `evicted_pairs_total`. The counts are the
/// queue's own (cumulative since the model loaded), so they are set, not added to; a reloaded
/// model starts again from 0, which Prometheus reads as a counter reset. Levels of models that
/// are gone are gone from the next scrape.
#[derive(Debug, Default)]
pub struct QueueLevels(Mutex<Vec<(String, LevelStats)>>);

impl QueueLevels {
    pub fn set(&self, levels: Vec<(String, LevelStats)>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = levels;
    }
}

impl Collector for QueueLevels {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let levels = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if levels.is_empty() {
            return Ok(());
        }
        let labels = |model: &String, l: &LevelStats| PriorityLabels {
            model: model.clone(),
            priority: l.priority,
        };
        let mut depth = encoder.encode_descriptor(
            "queue_depth_by_priority_pairs",
            "Pairs waiting in the model's queue, by their request's priority",
            None,
            MetricType::Gauge,
        )?;
        for (model, l) in levels.iter() {
            let gauge = ConstGauge::new(l.depth as i64);
            gauge.encode(depth.encode_family(&labels(model, l))?)?;
        }
        let evicted: Vec<_> = levels.iter().filter(|(_, l)| l.evicted_pairs > 0).collect();
        if evicted.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "evicted_pairs",
            "Pairs displaced from a full queue by higher-priority work, by their priority",
            None,
            MetricType::Counter,
        )?;
        for (model, l) in evicted {
            let counter = ConstCounter::new(l.evicted_pairs);
            counter.encode(family.encode_family(&labels(model, l))?)?;
        }
        Ok(())
    }
}

/// The tenants counted under their own name.
#[derive(Debug, Default)]
pub struct ListedTenants(RwLock<HashSet<String>>);

impl ListedTenants {
    fn set(&self, names: &[String]) {
        let mut listed = self.0.write().unwrap_or_else(|e| e.into_inner());
        *listed = names.iter().cloned().collect();
    }

    /// The label of `tenant`: its name when listed, else `(other)`; `(none)` for "".
    pub fn label(&self, tenant: &str) -> String {
        if tenant.is_empty() {
            return NO_TENANT.into();
        }
        let listed = self.0.read().unwrap_or_else(|e| e.into_inner());
        match listed.contains(tenant) {
            true => tenant.into(),
            false => OTHER_TENANT.into(),
        }
    }
}

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
    fn tenants_are_labelled_by_name_only_when_listed() {
        let listed = ListedTenants::default();
        listed.set(&["team-a".into()]);
        assert_eq!(listed.label("team-a"), "team-a");
        assert_eq!(listed.label("team-b"), "(other)");
        assert_eq!(listed.label(""), "(none)");
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
