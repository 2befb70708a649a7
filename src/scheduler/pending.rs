//! The queued pairs of one model and the order they are served in. Pure: no locks, no threads,
//! and the time is always passed in, so the order can be tested exactly.
//!
//! - **Priority with aging.** A pair's effective priority is its request's priority less one
//!   level per `priority_aging` it has waited (never below 0). The lowest effective level is
//!   served first; a batch holds pairs of that one level only, so urgent work never shares (and
//!   waits for) a batch of bulk work.
//! - **Tenants.** Within a level, pairs are served in the order of their start tags (start-time
//!   fair queuing, the tag form of deficit round-robin): every (priority, tenant) queue charges
//!   each pair its tokens on a virtual clock that starts a newcomer at the current service
//!   point. One tenant's backlog therefore interleaves with a newcomer's pairs token for token
//!   instead of running before them; with one tenant, this is arrival order.
//! - **Eviction.** [`Pending::evict_level`] displaces whole requests of one level, newest
//!   first, to make room for a more urgent one (the queue decides which levels).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{select, BatchLimits, Job, PairError};

/// Batches' worth of pairs, in serving order, among which a batch groups pairs of similar
/// length, each queue within its share of the first batch's worth. Grouping matters: with one
/// batch's worth in strict fair order, two tenants' mixed lengths ran 25% fewer pairs/s than
/// one tenant's grouped (`bench/priority.sh`, phases f and g); without the shares, a newcomer's
/// pairs were passed over for the bulk pairs nearer the first one's length. A pair passed over
/// keeps its start tag, so it leads a batch soon after.
const LOOK_AHEAD: usize = 4;

/// A queue of its own per priority and tenant: arrival order inside.
type Key = (u32, Arc<str>);

#[derive(Default)]
struct Fifo {
    jobs: VecDeque<Job>,
    /// The virtual time at which this queue's last pair finishes.
    finish: u64,
}

#[derive(Default)]
pub struct Pending {
    fifos: BTreeMap<Key, Fifo>,
    /// The service point of the virtual clock: the start tag of the first pair not yet served
    /// at the level last served (a newcomer starts there).
    vtime: u64,
    next_seq: u64,
    pairs: usize,
    tokens: usize,
    /// Pairs queued per tenant.
    by_tenant: HashMap<Arc<str>, usize>,
    /// Pairs evicted per priority, since the queue was made.
    evicted: BTreeMap<u32, u64>,
}

/// A pair that may join the next batch: where it is, and what the choice needs of it.
#[derive(Clone, Copy)]
struct Candidate {
    fifo: usize,
    pos: usize,
    len: usize,
    tag: u64,
    enqueued: Instant,
    deadline: Option<Instant>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.pairs
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pairs == 0
    }

    /// Sum of unpadded tokens queued.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Pairs the tenant has queued.
    pub fn tenant_pairs(&self, tenant: &str) -> usize {
        self.by_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Queues one request's pairs (all of one class), after every pair of its (priority,
    /// tenant) queue, with start tags from the current service point.
    pub fn push(&mut self, jobs: Vec<Job>) {
        let Some(first) = jobs.first() else { return };
        let class = first.sink.class.clone();
        let fifo = self
            .fifos
            .entry((class.priority, class.tenant.clone()))
            .or_default();
        let mut start = fifo.finish.max(self.vtime);
        *self.by_tenant.entry(class.tenant).or_default() += jobs.len();
        self.pairs += jobs.len();
        for mut job in jobs {
            debug_assert_eq!(job.sink.class.priority, class.priority);
            let len = job.encoded.len();
            self.tokens += len;
            job.tag = start;
            job.seq = self.next_seq;
            self.next_seq += 1;
            start += len.max(1) as u64;
            fifo.jobs.push_back(job);
        }
        fifo.finish = start;
    }

    /// The level a pair is served at now: its priority less one per `aging` waited.
    pub fn effective(job: &Job, aging: Duration, now: Instant) -> u32 {
        let priority = job.sink.class.priority;
        if aging.is_zero() {
            return priority;
        }
        let levels = now.saturating_duration_since(job.enqueued).as_nanos() / aging.as_nanos();
        priority.saturating_sub(u32::try_from(levels).unwrap_or(u32::MAX))
    }

    /// The next [`LOOK_AHEAD`] batches' worth of pairs of the most urgent level, in serving
    /// order (start tag, then arrival).
    fn candidates(&self, limits: &BatchLimits, now: Instant) -> Vec<Candidate> {
        let aging = limits.priority_aging;
        let fifos: Vec<&Fifo> = self.fifos.values().collect();
        let level = |j: &Job| Self::effective(j, aging, now);
        let Some(best) = fifos.iter().filter_map(|f| f.jobs.front().map(level)).min() else {
            return Vec::new();
        };
        let at_best = |fifo: usize, pos: usize| {
            fifos[fifo]
                .jobs
                .get(pos)
                .filter(|j| level(j) == best)
                .map(|j| (Reverse((j.tag, j.seq)), fifo, pos))
        };
        let mut heads: BinaryHeap<_> = (0..fifos.len()).filter_map(|f| at_best(f, 0)).collect();
        let max = limits.max_batch_pairs.saturating_mul(LOOK_AHEAD).max(1);
        let mut out = Vec::with_capacity(max.min(self.pairs));
        while out.len() < max {
            let Some((Reverse((tag, _)), fifo, pos)) = heads.pop() else {
                break;
            };
            let job = &fifos[fifo].jobs[pos];
            out.push(Candidate {
                fifo,
                pos,
                len: job.encoded.len(),
                tag,
                enqueued: job.enqueued,
                deadline: job.sink.deadline,
            });
            heads.extend(at_best(fifo, pos + 1));
        }
        out
    }

    /// When the batch the next [`Pending::take`] would make is due: its first pair's
    /// `max_wait` after it was queued, or sooner if a pair it may take has an earlier deadline.
    pub fn due(&self, limits: &BatchLimits, now: Instant) -> Option<Instant> {
        let cands = self.candidates(limits, now);
        let first = cands.first()?;
        let window = first.enqueued + limits.max_wait;
        Some(
            cands
                .iter()
                .filter_map(|c| c.deadline)
                .fold(window, Instant::min),
        )
    }

    /// Takes the next batch: the first pair in serving order, and the pairs of its level
    /// nearest to it in length among the next ones in order (see `candidates`), each (priority,
    /// tenant) queue at most its share of the first batch's worth in that order, within the
    /// batch limits and `share_tokens` real tokens.
    pub fn take(&mut self, limits: &BatchLimits, now: Instant, share_tokens: usize) -> Vec<Job> {
        let cands = self.candidates(limits, now);
        if cands.is_empty() {
            return Vec::new();
        }
        let lengths: Vec<usize> = cands.iter().map(|c| c.len).collect();
        let queues: Vec<usize> = cands.iter().map(|c| c.fifo).collect();
        let chosen = select::choose_shared(&lengths, &queues, limits, share_tokens);
        let mut picked: Vec<Candidate> = chosen.iter().map(|&i| cands[i]).collect();
        // The service point moves to the first pair left behind (pairs passed over for their
        // length keep their place), or past the batch when it took every candidate in order.
        let skipped = (0..cands.len()).find(|i| chosen.binary_search(i).is_err());
        let frontier = match skipped {
            Some(i) => cands[i].tag,
            None => picked.iter().map(|c| c.tag).max().unwrap_or(0),
        };
        self.vtime = self.vtime.max(frontier);
        // Remove from the back of each queue first, so positions stay valid.
        picked.sort_by_key(|c| Reverse((c.fifo, c.pos)));
        let keys: Vec<Key> = self.fifos.keys().cloned().collect();
        let mut batch = Vec::with_capacity(picked.len());
        for c in picked {
            let fifo = self.fifos.get_mut(&keys[c.fifo]).expect("key exists");
            let job = fifo.jobs.remove(c.pos).expect("candidate position exists");
            batch.push(job);
        }
        for job in &batch {
            self.forget(job);
        }
        self.prune();
        batch.sort_by_key(|j| (j.tag, j.seq));
        batch
    }

    /// Removes the pairs whose caller is gone (dropped unanswered: nobody listens), and returns
    /// those whose deadline has passed (the caller answers them: they are never run).
    pub fn sweep(&mut self, now: Instant) -> Vec<Job> {
        let gone = |j: &Job| j.sink.tx.is_closed() || j.sink.deadline.is_some_and(|d| d <= now);
        if !self.fifos.values().any(|f| f.jobs.iter().any(gone)) {
            return Vec::new();
        }
        let mut removed = Vec::new();
        let mut expired = Vec::new();
        for fifo in self.fifos.values_mut() {
            let mut keep = VecDeque::with_capacity(fifo.jobs.len());
            for job in fifo.jobs.drain(..) {
                if job.sink.tx.is_closed() {
                    removed.push(job);
                } else if job.sink.deadline.is_some_and(|d| d <= now) {
                    expired.push(job);
                } else {
                    keep.push_back(job);
                }
            }
            fifo.jobs = keep;
        }
        for job in removed.iter().chain(&expired) {
            self.forget(job);
        }
        self.prune();
        expired
    }

    /// Tokens queued that a new request of `class` cannot pass: those of more urgent priorities
    /// and those of its own (priority, tenant) queue. (Other tenants of its priority interleave
    /// with it; less urgent pairs may age past it, which only adds to its wait.)
    pub fn tokens_ahead(&self, priority: u32, tenant: &str) -> usize {
        self.fifos
            .iter()
            .filter(|((p, t), _)| *p < priority || (*p == priority && &**t == tenant))
            .flat_map(|(_, f)| f.jobs.iter())
            .map(|j| j.encoded.len())
            .sum()
    }

    /// Pairs queued with a priority strictly lower than `priority` (a larger number).
    pub fn below(&self, priority: u32) -> usize {
        self.fifos
            .iter()
            .filter(|((p, _), _)| *p > priority)
            .map(|(_, f)| f.jobs.len())
            .sum()
    }

    /// Priorities strictly lower than `priority` that have pairs queued.
    pub fn levels_below(&self, priority: u32) -> impl Iterator<Item = u32> + '_ {
        self.fifos
            .keys()
            .map(|k| k.0)
            .filter(move |p| *p > priority)
    }

    /// Displaces whole requests of priority `level`, newest first, until `needed` pairs are
    /// freed or none is left; returns the pairs freed. Every displaced pair is answered
    /// [`PairError::Evicted`] naming `by_priority`, the priority of the request that took its place.
    pub fn evict_level(&mut self, level: u32, by_priority: u32, needed: usize) -> usize {
        let mut freed = 0;
        while freed < needed {
            let newest = self
                .fifos
                .iter()
                .filter(|((p, _), f)| *p == level && !f.jobs.is_empty())
                .max_by_key(|(_, f)| f.jobs.back().map(|j| j.seq))
                .map(|(k, f)| (k.clone(), f.jobs.back().expect("not empty").sink.clone()));
            let Some((key, sink)) = newest else { break };
            let fifo = self.fifos.get_mut(&key).expect("key exists");
            let (gone, kept): (Vec<Job>, Vec<Job>) = fifo
                .jobs
                .drain(..)
                .partition(|j| Arc::ptr_eq(&j.sink, &sink));
            fifo.jobs = kept.into();
            freed += gone.len();
            self.note_evicted(level, gone.len());
            for job in gone {
                self.forget(&job);
                job.answer(
                    Err(PairError::Evicted { by_priority }),
                    Duration::ZERO,
                    Duration::ZERO,
                    0,
                );
            }
        }
        self.prune();
        freed
    }

    /// Counts pairs of `level` displaced (queued, or held while being tokenized).
    pub fn note_evicted(&mut self, level: u32, pairs: usize) {
        *self.evicted.entry(level).or_default() += pairs as u64;
    }

    /// Every queued pair, in no particular order; the queue is left empty.
    pub fn drain(&mut self) -> Vec<Job> {
        let jobs: Vec<Job> = std::mem::take(&mut self.fifos)
            .into_values()
            .flat_map(|f| f.jobs)
            .collect();
        self.pairs = 0;
        self.tokens = 0;
        self.by_tenant.clear();
        jobs
    }

    /// (priority, pairs queued, pairs ever evicted) per level with either.
    pub fn levels(&self) -> Vec<(u32, usize, u64)> {
        let mut levels: BTreeMap<u32, (usize, u64)> = BTreeMap::new();
        for ((p, _), f) in &self.fifos {
            levels.entry(*p).or_default().0 += f.jobs.len();
        }
        for (p, n) in &self.evicted {
            levels.entry(*p).or_default().1 = *n;
        }
        levels.into_iter().map(|(p, (d, e))| (p, d, e)).collect()
    }

    /// Accounts for a job leaving the queue.
    fn forget(&mut self, job: &Job) {
        self.pairs -= 1;
        self.tokens -= job.encoded.len();
        let tenant = &job.sink.class.tenant;
        if let Some(n) = self.by_tenant.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.by_tenant.remove(tenant);
            }
        }
    }

    /// Drops empty queues (and with them their virtual finish time: a returning tenant starts
    /// at the service point, with no credit saved up).
    fn prune(&mut self) {
        self.fifos.retain(|_, f| !f.jobs.is_empty());
    }
}
