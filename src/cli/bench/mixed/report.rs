//! What a mixed run saw, per group and in all: requests sent and how they ended (ok, evicted for
//! higher-priority work, refused, other errors), latency of the ok ones and pairs per second;
//! printed as a table or written as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::super::host::Host;
use super::super::report::{CpuReport, ErrorReport, Percentiles, Tally};
use super::spec::{GroupSpec, Load};

const RESOURCE_EXHAUSTED: &str = "RESOURCE_EXHAUSTED";

#[derive(Serialize)]
pub struct MixedReport {
    /// `mixed`, telling this report from the single mode's.
    pub mode: &'static str,
    pub protocol: &'static str,
    pub model: String,
    pub corpus_seed: u64,
    pub corpus_size: usize,
    /// Per-request deadline.
    pub timeout_ms: u64,
    /// From the start until every group's last answer.
    pub seconds: f64,
    pub requests: u64,
    /// Pairs in successful requests of all groups.
    pub pairs: u64,
    pub pairs_per_s: f64,
    pub groups: Vec<GroupReport>,
    /// Over the measured part (after the warm-up).
    pub cpu: CpuReport,
    pub host: Host,
}

#[derive(Serialize)]
pub struct GroupReport {
    pub name: String,
    pub priority: u32,
    /// Sent as `x-crossrank-tenant` ("": none sent).
    pub tenant: String,
    pub shape: String,
    /// Pairs per Score request, documents per Rerank or RerankStream request.
    pub docs: u32,
    /// Requests per second of an open-loop group, else null.
    pub rate: Option<f64>,
    /// Clients of a closed-loop group, else null.
    pub concurrency: Option<u32>,
    /// From the start until the group's last answer.
    pub seconds: f64,
    /// Requests the group sent (a rate group's also those it did not send, `NOT_SENT`):
    /// `ok + evicted + refused + errors`.
    pub requests: u64,
    pub ok: u64,
    /// RESOURCE_EXHAUSTED: displaced from a full queue by higher-priority work.
    pub evicted: u64,
    /// RESOURCE_EXHAUSTED for any other reason (queue full, tenant quota).
    pub refused: u64,
    /// Failed with any other code.
    pub errors: u64,
    /// Pairs in successful requests.
    pub pairs: u64,
    pub pairs_per_s: f64,
    /// Latency of successful requests (of a rate group: from each request's due time).
    pub latency_ms: Option<Percentiles>,
    /// Failed requests by gRPC code (or the bench's own: `TIMEOUT`, `NOT_SENT`, ...).
    pub failures: BTreeMap<String, ErrorReport>,
}

impl GroupReport {
    pub fn new(spec: &GroupSpec, tally: Tally, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let failures: BTreeMap<String, ErrorReport> = tally
            .errors
            .into_iter()
            .map(|(code, f)| (code, f.report()))
            .collect();
        let exhausted = failures.get(RESOURCE_EXHAUSTED);
        let evicted = exhausted.map_or(0, |e| e.displaced);
        let refused = exhausted.map_or(0, |e| e.count - e.displaced);
        let failed: u64 = failures.values().map(|e| e.count).sum();
        let ok = tally.ok.len() as u64;
        let (rate, concurrency) = match spec.load {
            Load::Rate(r) => (Some(r), None),
            Load::Clients(c) => (None, Some(c)),
        };
        Self {
            name: spec.name.clone(),
            priority: spec.priority,
            tenant: spec.tenant.clone(),
            shape: format!("{:?}", spec.shape).to_lowercase(),
            docs: spec.docs,
            rate,
            concurrency,
            seconds,
            requests: ok + failed,
            ok,
            evicted,
            refused,
            errors: failed - evicted - refused,
            pairs: tally.pairs,
            pairs_per_s: tally.pairs as f64 / seconds,
            latency_ms: Percentiles::of(tally.ok),
            failures,
        }
    }

    fn load(&self) -> String {
        match (self.rate, self.concurrency) {
            (Some(r), _) => format!("{r}/s"),
            (None, Some(c)) => format!("{c} clients"),
            (None, None) => "-".into(),
        }
    }

    fn row(&self, name_width: usize, tenant_width: usize) -> String {
        let ms = |f: fn(&Percentiles) -> f64| {
            self.latency_ms
                .as_ref()
                .map_or("-".into(), |p| format!("{:.1}", f(p)))
        };
        format!(
            "  {:<name_width$}  {:>4}  {:<tenant_width$}  {:<10}  {:<13}  {:>6}  {:>6}  {:>7}  \
             {:>7}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8.1}\n",
            self.name,
            self.priority,
            self.tenant,
            self.load(),
            format!("{} x{}", self.shape, self.docs),
            self.requests,
            self.ok,
            self.evicted,
            self.refused,
            self.errors,
            ms(|p| p.p50),
            ms(|p| p.p90),
            ms(|p| p.p99),
            ms(|p| p.max),
            self.pairs_per_s
        )
    }
}

impl MixedReport {
    pub fn text(&self) -> String {
        let mut out = format!(
            "mixed load over {} on model {:?}, {} groups, {:.1} s (corpus seed {}, {} pairs)\n",
            self.protocol,
            self.model,
            self.groups.len(),
            self.seconds,
            self.corpus_seed,
            self.corpus_size
        );
        let name_width = self.groups.iter().map(|g| g.name.len()).fold(5, usize::max);
        let tenant_width = self
            .groups
            .iter()
            .map(|g| g.tenant.len())
            .fold(6, usize::max);
        out +=
            &format!(
            "  {:<name_width$}  {:>4}  {:<tenant_width$}  {:<10}  {:<13}  {:>6}  {:>6}  {:>7}  \
             {:>7}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}\n",
            "group", "prio", "tenant", "load", "request", "sent", "ok", "evicted", "refused",
            "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "pairs/s"
        );
        for g in &self.groups {
            out += &g.row(name_width, tenant_width);
        }
        out += &format!(
            "  total: {} requests, {:.1} pairs/s\n",
            self.requests, self.pairs_per_s
        );
        for g in &self.groups {
            for (code, e) in &g.failures {
                out += &format!("  [{}]", g.name);
                out += &e.line(code);
            }
        }
        out += &self.cpu.line();
        out += &self.host.line();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::report::{Failure, DISPLACED};
    use super::*;

    /// Evicted and refused are both RESOURCE_EXHAUSTED, told apart by the server's message;
    /// every request is counted once.
    #[test]
    fn failures_are_split_by_kind() {
        let spec: GroupSpec = "name=bulk,priority=5,tenant=t,docs=10,concurrency=2"
            .parse()
            .unwrap();
        let mut tally = Tally::default();
        let ms = Duration::from_millis;
        tally.ok(ms(5), 10);
        tally.ok(ms(7), 10);
        let evicted = format!("{DISPLACED}: the model's queue was full and ...");
        for message in [evicted.as_str(), "queue full", evicted.as_str()] {
            tally.error(ms(1), Failure::new(RESOURCE_EXHAUSTED, message));
        }
        tally.error(ms(2), Failure::new("DEADLINE_EXCEEDED", "late"));
        tally.error(ms(3), Failure::new("UNAVAILABLE", "gone"));
        let g = GroupReport::new(&spec, tally, Duration::from_secs(2));
        assert_eq!(
            (g.requests, g.ok, g.evicted, g.refused, g.errors),
            (7, 2, 2, 1, 2)
        );
        assert_eq!((g.pairs, g.pairs_per_s), (20, 10.0));
        assert_eq!((g.rate, g.concurrency), (None, Some(2)));
        assert_eq!(g.failures[RESOURCE_EXHAUSTED].count, 3);
        assert_eq!(g.latency_ms.as_ref().unwrap().max, 7.0);
        assert!(g.row(5, 6).contains("2 clients"));
    }
}
