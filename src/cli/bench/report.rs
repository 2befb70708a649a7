//! What a benchmark run saw: latencies by outcome, pairs scored, and the report printed as text
//! or JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Outcomes recorded by one client; merged at the end.
#[derive(Default)]
pub struct Tally {
    ok: Vec<Duration>,
    pairs: u64,
    errors: BTreeMap<String, Failures>,
    /// (corpus index, first score) of pairs scored by Score requests, when asked for.
    pub scores: Vec<(usize, f32)>,
}

#[derive(Default)]
struct Failures {
    latencies: Vec<Duration>,
    example: String,
}

impl Tally {
    pub fn ok(&mut self, latency: Duration, pairs: usize) {
        self.ok.push(latency);
        self.pairs += pairs as u64;
    }

    pub fn error(&mut self, latency: Duration, status: &tonic::Status) {
        let entry = self.errors.entry(code_name(status.code())).or_default();
        entry.latencies.push(latency);
        if entry.example.is_empty() {
            entry.example = status.message().to_string();
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.ok.extend(other.ok);
        self.pairs += other.pairs;
        self.scores.extend(other.scores);
        for (code, f) in other.errors {
            let entry = self.errors.entry(code).or_default();
            entry.latencies.extend(f.latencies);
            if entry.example.is_empty() {
                entry.example = f.example;
            }
        }
    }

    pub fn report(self, setup: Setup, elapsed: Duration) -> Report {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let requests_ok = self.ok.len() as u64;
        let errors: BTreeMap<String, ErrorReport> = self
            .errors
            .into_iter()
            .map(|(code, f)| {
                let report = ErrorReport {
                    count: f.latencies.len() as u64,
                    latency_ms: Percentiles::of(f.latencies),
                    example: f.example,
                };
                (code, report)
            })
            .collect();
        let requests_failed = errors.values().map(|e| e.count).sum();
        Report {
            setup,
            seconds,
            requests_ok,
            requests_failed,
            pairs: self.pairs,
            pairs_per_s: self.pairs as f64 / seconds,
            requests_per_s: requests_ok as f64 / seconds,
            latency_ms: Percentiles::of(self.ok),
            errors,
        }
    }
}

/// What was run: echoed in the report so a JSON file stands on its own.
#[derive(Serialize, Clone)]
pub struct Setup {
    pub shape: String,
    pub model: String,
    /// Pairs per Score request, documents per Rerank or RerankStream request.
    pub size: u32,
    pub concurrency: u32,
    pub corpus_seed: u64,
    pub corpus_size: usize,
}

#[derive(Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub setup: Setup,
    pub seconds: f64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Pairs in successful requests.
    pub pairs: u64,
    pub pairs_per_s: f64,
    pub requests_per_s: f64,
    /// Latency of successful requests.
    pub latency_ms: Option<Percentiles>,
    /// Failed requests by gRPC code.
    pub errors: BTreeMap<String, ErrorReport>,
}

#[derive(Serialize)]
pub struct ErrorReport {
    pub count: u64,
    pub latency_ms: Option<Percentiles>,
    /// The first message seen with this code.
    pub example: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles in milliseconds; `None` for no samples.
    fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let rank = |q: f64| {
            let i = (q * samples.len() as f64).ceil() as usize;
            ms(samples[i.clamp(1, samples.len()) - 1])
        };
        let total: f64 = samples.iter().map(|&d| ms(d)).sum();
        Some(Self {
            mean: total / samples.len() as f64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: rank(1.0),
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  mean {:.1} ms",
            self.p50, self.p90, self.p99, self.max, self.mean
        )
    }
}

impl Report {
    pub fn text(&self) -> String {
        let s = &self.setup;
        let mut out = format!(
            "{} x{} on model {:?}, {} clients, {:.1} s (corpus seed {}, {} pairs)\n",
            s.shape, s.size, s.model, s.concurrency, self.seconds, s.corpus_seed, s.corpus_size
        );
        out += &format!(
            "  throughput  {:.1} pairs/s  {:.2} requests/s\n",
            self.pairs_per_s, self.requests_per_s
        );
        out += &format!(
            "  requests    {} ok  {} failed\n",
            self.requests_ok, self.requests_failed
        );
        if let Some(p) = &self.latency_ms {
            out += &format!("  latency     {}\n", p.line());
        }
        for (code, e) in &self.errors {
            let latency = e.latency_ms.as_ref().map(Percentiles::line);
            out += &format!(
                "  error       {code} x{}  {}\n              e.g. {}\n",
                e.count,
                latency.unwrap_or_default(),
                e.example
            );
        }
        out
    }
}

/// `ResourceExhausted` → `RESOURCE_EXHAUSTED`, the name gRPC documents.
fn code_name(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        assert_eq!(Percentiles::of(vec![]), None);
    }

    #[test]
    fn grpc_code_names() {
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            code_name(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
    }
}
