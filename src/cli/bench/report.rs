//! What a benchmark run saw: latencies by outcome, pairs scored, CPU time spent, and the report
//! printed as text or JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::host::Host;

/// What the server says when it evicts a queued request for higher-priority work
/// (RESOURCE_EXHAUSTED; src/engine's message for `PairError::Evicted`).
pub const DISPLACED: &str = "displaced by higher-priority work";

/// Outcomes recorded by one client; merged at the end.
#[derive(Default)]
pub struct Tally {
    /// Latencies of successful requests.
    pub(super) ok: Vec<Duration>,
    /// Pairs in successful requests.
    pub(super) pairs: u64,
    /// Tokens the server fed the model for successful gRPC Score and Rerank requests (their
    /// `usage.tokens`).
    pub tokens: u64,
    /// Failed requests by code.
    pub(super) errors: BTreeMap<String, Failures>,
    /// (corpus index, first score) of pairs scored by Score requests, when asked for.
    pub scores: Vec<(usize, f32)>,
}

/// A failed request: its gRPC code name (`RESOURCE_EXHAUSTED`) or HTTP status (`HTTP 429`), or
/// what failed on the client's side (`TIMEOUT`, `CONNECTION`, `BAD_ANSWER`), and a message.
#[derive(Debug)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self {
            code: code_name(status.code()),
            message: status.message().to_owned(),
        }
    }
}

#[derive(Default)]
pub(super) struct Failures {
    pub(super) latencies: Vec<Duration>,
    /// Of them, RESOURCE_EXHAUSTED calls evicted for higher-priority work ([`DISPLACED`]).
    pub(super) displaced: u64,
    pub(super) example: String,
}

impl Failures {
    pub(super) fn report(self) -> ErrorReport {
        ErrorReport {
            count: self.latencies.len() as u64,
            displaced: self.displaced,
            latency_ms: Percentiles::of(self.latencies),
            example: self.example,
        }
    }
}

impl Tally {
    pub fn ok(&mut self, latency: Duration, pairs: usize) {
        self.ok.push(latency);
        self.pairs += pairs as u64;
    }

    pub fn error(&mut self, latency: Duration, failure: Failure) {
        let displaced = failure.code == "RESOURCE_EXHAUSTED" && failure.message.contains(DISPLACED);
        let entry = self.errors.entry(failure.code).or_default();
        entry.latencies.push(latency);
        entry.displaced += u64::from(displaced);
        if entry.example.is_empty() {
            entry.example = failure.message;
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.ok.extend(other.ok);
        self.pairs += other.pairs;
        self.tokens += other.tokens;
        self.scores.extend(other.scores);
        for (code, f) in other.errors {
            let entry = self.errors.entry(code).or_default();
            entry.latencies.extend(f.latencies);
            entry.displaced += f.displaced;
            if entry.example.is_empty() {
                entry.example = f.example;
            }
        }
    }

    pub fn report(self, setup: Setup, elapsed: Duration, cpu: CpuTime, host: Host) -> Report {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let requests_ok = self.ok.len() as u64;
        let errors: BTreeMap<String, ErrorReport> = self
            .errors
            .into_iter()
            .map(|(code, f)| (code, f.report()))
            .collect();
        let requests_failed = errors.values().map(|e| e.count).sum();
        Report {
            setup,
            seconds,
            requests_ok,
            requests_failed,
            pairs: self.pairs,
            pairs_per_s: self.pairs as f64 / seconds,
            tokens: self.tokens,
            tokens_per_s: self.tokens as f64 / seconds,
            requests_per_s: requests_ok as f64 / seconds,
            latency_ms: Percentiles::of(self.ok),
            errors,
            cpu: cpu.report(self.pairs),
            host,
        }
    }
}

/// CPU seconds (user + system) spent over the measured part of a run.
pub struct CpuTime {
    /// The server's, with `--server-pid`.
    pub server: Option<f64>,
    /// The bench process's own.
    pub client: f64,
}

impl CpuTime {
    pub(super) fn report(self, pairs: u64) -> CpuReport {
        let per_pair = |s: f64| (pairs > 0).then(|| s * 1e6 / pairs as f64);
        CpuReport {
            server_s: self.server,
            server_us_per_pair: self.server.and_then(per_pair),
            client_s: self.client,
            client_us_per_pair: per_pair(self.client),
        }
    }
}

#[derive(Serialize)]
pub struct CpuReport {
    pub server_s: Option<f64>,
    /// Server CPU per pair of successful requests, in microseconds.
    pub server_us_per_pair: Option<f64>,
    pub client_s: f64,
    pub client_us_per_pair: Option<f64>,
}

/// What was run: echoed in the report so a JSON file stands on its own.
#[derive(Serialize, Clone)]
pub struct Setup {
    /// `grpc` or `http`.
    pub protocol: String,
    pub shape: String,
    pub model: String,
    /// Pairs per Score request, documents per Rerank or RerankStream request.
    pub size: u32,
    pub concurrency: u32,
    pub corpus_seed: u64,
    pub corpus_size: usize,
    /// `longest-first` or `chunk`.
    pub truncation: String,
    /// Corpus passages per document.
    pub doc_passages: u32,
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
    /// Model tokens (special tokens included, padding excluded) of successful gRPC Score and
    /// Rerank requests, as the server counted them (0 for other shapes and HTTP).
    pub tokens: u64,
    pub tokens_per_s: f64,
    pub requests_per_s: f64,
    /// Latency of successful requests.
    pub latency_ms: Option<Percentiles>,
    /// Failed requests by gRPC code or HTTP status.
    pub errors: BTreeMap<String, ErrorReport>,
    /// Over the measured part (after the warm-up).
    pub cpu: CpuReport,
    pub host: Host,
}

#[derive(Serialize)]
pub struct ErrorReport {
    pub count: u64,
    /// Of them, calls evicted from a full queue by higher-priority work (RESOURCE_EXHAUSTED
    /// only; left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub displaced: u64,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Percentiles {
    /// Nearest-rank percentiles in milliseconds; `None` for no samples.
    pub(super) fn of(mut samples: Vec<Duration>) -> Option<Self> {
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

    pub(super) fn line(&self) -> String {
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
            "{} x{} over {} on model {:?}, {} clients, {:.1} s (corpus seed {}, {} pairs; \
             truncation {}, {} passages a document)\n",
            s.shape,
            s.size,
            s.protocol,
            s.model,
            s.concurrency,
            self.seconds,
            s.corpus_seed,
            s.corpus_size,
            s.truncation,
            s.doc_passages
        );
        out += &format!(
            "  throughput  {:.1} pairs/s  {:.2} requests/s  {:.0} tokens/s\n",
            self.pairs_per_s, self.requests_per_s, self.tokens_per_s
        );
        out += &format!(
            "  requests    {} ok  {} failed\n",
            self.requests_ok, self.requests_failed
        );
        if let Some(p) = &self.latency_ms {
            out += &format!("  latency     {}\n", p.line());
        }
        for (code, e) in &self.errors {
            out += &e.line(code);
        }
        out += &self.cpu.line();
        out += &self.host.line();
        out
    }
}

impl ErrorReport {
    pub(super) fn line(&self, code: &str) -> String {
        let latency = self.latency_ms.as_ref().map(Percentiles::line);
        let displaced = match self.displaced {
            0 => String::new(),
            n => format!(" ({n} {DISPLACED})"),
        };
        format!(
            "  error       {code} x{}{displaced}  {}\n              e.g. {}\n",
            self.count,
            latency.unwrap_or_default(),
            self.example
        )
    }
}

impl CpuReport {
    pub(super) fn line(&self) -> String {
        let per_pair = |us: Option<f64>| us.map_or("-".into(), |us| format!("{us:.1}"));
        let server = match self.server_s {
            Some(s) => format!(
                "server {} us/pair ({s:.2} s)",
                per_pair(self.server_us_per_pair)
            ),
            None => "server - (give --server-pid)".into(),
        };
        format!(
            "  cpu         {server}  client {} us/pair ({:.2} s)\n",
            per_pair(self.client_us_per_pair),
            self.client_s
        )
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
