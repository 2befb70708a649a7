//! Queue depth and evictions per priority, read from the model queues at scrape time.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::labels::PriorityLabels;
use crate::scheduler::LevelStats;

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
