//! Per-model queue and micro-batcher.
//!
//! Every pair is queued on its own, so pairs of different requests share batches. Admission is
//! whole-request: a request that does not fit under `max_queue_pairs` displaces queued requests
//! of lower priority if that makes room, and is refused at once otherwise; a tenant over its
//! `tenant_max_queue_pairs` is refused. The order pairs are served in (priority with aging,
//! tenants fairly within a priority) is [`pending`]'s. Device worker threads pull batches
//! ([`Queue::next_batch`]); a batch closes on a padded-token budget, a pair cap, or when its
//! first pair has waited `max_wait` (sooner if a deadline in it comes first); while other
//! replicas are idle, a batch takes only its equal share of the queued tokens, so one large
//! request runs on all replicas at once. Pairs whose caller is gone or whose deadline passed
//! are dropped before the model sees them.

mod job;
mod pace;
mod pending;
mod select;
#[cfg(test)]
mod tests_order;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[cfg(test)]
pub(crate) use job::{test_jobs, test_request};
pub use job::{Class, Job, PairError, PairResult, Rejected, Sink};
use pending::Pending;

/// Batching and admission limits of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Padded tokens per batch: longest pair × pairs.
    pub max_batch_tokens: usize,
    pub max_batch_pairs: usize,
    /// How long the oldest queued pair may wait for company.
    pub max_wait: Duration,
    /// Queued pairs beyond which requests are refused (or lower-priority pairs displaced).
    pub max_queue_pairs: usize,
    /// A waiting pair's effective priority improves one level per this much waiting (zero: no
    /// aging).
    pub priority_aging: Duration,
    /// Pairs one tenant may have queued (with what it has being tokenized).
    pub tenant_max_queue_pairs: Option<usize>,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_batch_tokens: 16_384,
            max_batch_pairs: 64,
            max_wait: Duration::from_millis(2),
            max_queue_pairs: 4_096,
            priority_aging: Duration::from_millis(100),
            tenant_max_queue_pairs: None,
        }
    }
}

#[derive(Default)]
struct State {
    pending: Pending,
    /// Pairs admitted but still being tokenized ([`Reservation`]s): in all, per tenant, and
    /// each reservation by its id (in the order they were made).
    reserved: usize,
    reserved_by_tenant: HashMap<Arc<str>, usize>,
    holds: BTreeMap<u64, Hold>,
    next_hold: u64,
    pace: pace::Pace,
    /// Replica threads waiting in [`Queue::next_batch`].
    idle: usize,
    closed: bool,
    /// Why the model stopped serving, once a replica died.
    failed: Option<String>,
    next_batch_id: u64,
}

impl State {
    fn refusal(&self) -> Rejected {
        match self.failed {
            Some(_) => Rejected::Failed,
            None => Rejected::Closed,
        }
    }

    /// Gives a reservation's room back; false if it was displaced already (its room was given
    /// back then).
    fn unreserve(&mut self, id: u64) -> bool {
        let Some(hold) = self.holds.remove(&id) else {
            return false;
        };
        self.reserved -= hold.pairs;
        if let Some(n) = self.reserved_by_tenant.get_mut(&hold.tenant) {
            *n -= hold.pairs;
            if *n == 0 {
                self.reserved_by_tenant.remove(&hold.tenant);
            }
        }
        true
    }

    /// Frees room for `needed` pairs of `priority`, displacing strictly lower priorities: the
    /// lowest level first, and in a level the requests being tokenized (newest first) before
    /// the queued ones (newest first). Displaces nothing and returns false when even all of
    /// them would not make room.
    fn make_room(&mut self, priority: u32, needed: usize) -> bool {
        let held: usize = self
            .holds
            .values()
            .filter(|h| h.priority > priority)
            .map(|h| h.pairs)
            .sum();
        if held + self.pending.below(priority) < needed {
            return false;
        }
        let mut levels: Vec<u32> = self.pending.levels_below(priority).collect();
        levels.extend(
            self.holds
                .values()
                .map(|h| h.priority)
                .filter(|p| *p > priority),
        );
        levels.sort_unstable();
        levels.dedup();
        let mut freed = 0;
        for level in levels.into_iter().rev() {
            let ids: Vec<u64> = self
                .holds
                .iter()
                .rev()
                .filter(|(_, h)| h.priority == level)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if freed >= needed {
                    return true;
                }
                let hold = self.holds.get(&id).expect("listed hold").clone();
                self.unreserve(id);
                hold.displaced
                    .store(priority.saturating_add(1), Ordering::Release);
                self.pending.note_evicted(level, hold.pairs);
                freed += hold.pairs;
            }
            if freed < needed {
                freed += self.pending.evict_level(level, priority, needed - freed);
            }
            if freed >= needed {
                return true;
            }
        }
        freed >= needed
    }

    /// Why a request with these pairs cannot start before its deadline, if it cannot: the
    /// work queued ahead of it takes longer than the time left, even at the fastest recent pace.
    fn late(&self, jobs: &[Job], now: Instant) -> Option<Rejected> {
        let sink = &jobs.first()?.sink;
        let left = sink.deadline?.saturating_duration_since(now);
        let ahead = self
            .pending
            .tokens_ahead(sink.class.priority, &sink.class.tenant);
        let least = self.pace.least_time(ahead)?;
        (least > left).then_some(Rejected::Late {
            ahead_tokens: ahead,
            least,
            left,
        })
    }

    /// Room for `pairs` more pairs of `class`: within the tenant's quota, and within the queue's
    /// bound once strictly lower priorities are displaced if that can make room.
    fn make_way(
        &mut self,
        limits: &BatchLimits,
        pairs: usize,
        class: &Class,
    ) -> Result<(), Rejected> {
        if let Some(quota) = limits.tenant_max_queue_pairs {
            let held = self.tenant_load(&class.tenant);
            if held + pairs > quota {
                return Err(Rejected::TenantQuota {
                    tenant: class.tenant.clone(),
                    queued: held,
                    asked: pairs,
                    limit: quota,
                });
            }
        }
        let (queued, limit) = (self.pending.len() + self.reserved, limits.max_queue_pairs);
        if queued + pairs > limit && !self.make_room(class.priority, queued + pairs - limit) {
            return Err(Rejected::Full {
                queued,
                asked: pairs,
                limit,
            });
        }
        Ok(())
    }

    /// Pairs the tenant has queued or being tokenized.
    fn tenant_load(&self, tenant: &str) -> usize {
        self.pending.tenant_pairs(tenant)
            + self.reserved_by_tenant.get(tenant).copied().unwrap_or(0)
    }
}

/// The queue of one model, shared by the request side and its replica threads.
pub struct Queue {
    state: Mutex<State>,
    /// Signalled when jobs arrive or the queue closes; replica threads wait on it.
    wake: Condvar,
    limits: BatchLimits,
    /// Batches handed to replicas, and the pairs in them (their ratio is the mean batch size).
    batches: AtomicU64,
    batched_pairs: AtomicU64,
}

/// The queue's record of a [`Reservation`].
#[derive(Clone)]
struct Hold {
    priority: u32,
    pairs: usize,
    tenant: Arc<str>,
    /// 0 while it holds its room; 1 + the displacing priority once displaced.
    displaced: Arc<AtomicU32>,
}

/// Room held in a queue for one request while it is tokenized; released if dropped unused.
/// A more urgent request may displace it: [`Reservation::submit`] then refuses.
pub struct Reservation {
    queue: Arc<Queue>,
    id: u64,
    pairs: usize,
    displaced: Arc<AtomicU32>,
}

impl Reservation {
    /// Queues `jobs` (at most the reserved number, all of the reserving class) in the room held.
    pub fn submit(mut self, jobs: Vec<Job>) -> Result<(), Rejected> {
        debug_assert!(jobs.len() <= self.pairs);
        let mut st = self.queue.lock();
        self.pairs = 0;
        if !st.unreserve(self.id) {
            let by = self.displaced.load(Ordering::Acquire).saturating_sub(1);
            return Err(Rejected::Displaced { by_priority: by });
        }
        if st.closed {
            return Err(st.refusal());
        }
        if let Some(late) = st.late(&jobs, Instant::now()) {
            return Err(late);
        }
        st.pending.push(jobs);
        drop(st);
        self.queue.wake.notify_all();
        Ok(())
    }
}

impl Reservation {
    /// Holds room for `more` pairs besides those held (a chunked request knows its windows only
    /// once tokenized), admitted like [`Queue::reserve`]; on refusal the room held is kept.
    pub fn grow(&mut self, more: usize, class: &Class) -> Result<(), Rejected> {
        if more == 0 {
            return Ok(());
        }
        let mut st = self.queue.lock();
        if !st.holds.contains_key(&self.id) {
            let by = self.displaced.load(Ordering::Acquire).saturating_sub(1);
            return Err(Rejected::Displaced { by_priority: by });
        }
        if st.closed {
            return Err(st.refusal());
        }
        st.make_way(&self.queue.limits, more, class)?;
        st.reserved += more;
        *st.reserved_by_tenant
            .entry(class.tenant.clone())
            .or_default() += more;
        if let Some(hold) = st.holds.get_mut(&self.id) {
            hold.pairs += more;
        }
        self.pairs += more;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.pairs > 0 {
            self.queue.lock().unreserve(self.id);
        }
    }
}

/// Cumulative batching counters of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub depth: usize,
    pub batches: u64,
    pub batched_pairs: u64,
    /// Per priority that has pairs queued or ever had pairs evicted, lowest number first.
    pub by_priority: Vec<LevelStats>,
}

/// One priority level of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelStats {
    pub priority: u32,
    /// Pairs of this (request) priority queued now.
    pub depth: usize,
    /// Pairs of this priority displaced by higher-priority work, since the model loaded.
    pub evicted_pairs: u64,
}

/// What a replica gets from [`Queue::next_batch`].
pub struct Batch {
    pub id: u64,
    /// The pairs to run (may be empty when only `expired` has pairs).
    pub jobs: Vec<Job>,
    /// Pairs whose deadline passed while queued: to be answered, never run.
    pub expired: Vec<Job>,
}

impl Queue {
    pub fn new(limits: BatchLimits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            limits,
            batches: AtomicU64::new(0),
            batched_pairs: AtomicU64::new(0),
        })
    }

    /// Holds room for `pairs` pairs of `class`, or refuses at once: admission is decided
    /// before any tokenization work, so a refusal under overload costs microseconds. Over the
    /// tenant's quota the request is refused; in a full queue, whole requests of strictly
    /// lower priority are displaced to make room if they can, else the request is refused.
    pub fn reserve(self: &Arc<Self>, pairs: usize, class: &Class) -> Result<Reservation, Rejected> {
        let mut st = self.lock();
        if st.closed {
            return Err(st.refusal());
        }
        st.make_way(&self.limits, pairs, class)?;
        st.reserved += pairs;
        *st.reserved_by_tenant
            .entry(class.tenant.clone())
            .or_default() += pairs;
        let id = st.next_hold;
        st.next_hold += 1;
        let displaced = Arc::new(AtomicU32::new(0));
        let hold = Hold {
            priority: class.priority,
            pairs,
            tenant: class.tenant.clone(),
            displaced: displaced.clone(),
        };
        st.holds.insert(id, hold);
        Ok(Reservation {
            queue: self.clone(),
            id,
            pairs,
            displaced,
        })
    }

    /// The model has this many replicas (for the estimate of how long queued work takes).
    pub fn set_replicas(&self, replicas: usize) {
        self.lock().pace.set_replicas(replicas);
    }

    /// A replica ran a batch of `tokens` real tokens in `took`.
    pub fn record_batch(&self, tokens: usize, took: Duration) {
        self.lock().pace.record(tokens, took);
    }

    /// Pairs queued now.
    pub fn depth(&self) -> usize {
        self.lock().pending.len()
    }

    pub fn stats(&self) -> QueueStats {
        let levels = self.lock().pending.levels();
        QueueStats {
            depth: levels.iter().map(|l| l.1).sum(),
            batches: self.batches.load(Ordering::Relaxed),
            batched_pairs: self.batched_pairs.load(Ordering::Relaxed),
            by_priority: levels
                .into_iter()
                .map(|(priority, depth, evicted_pairs)| LevelStats {
                    priority,
                    depth,
                    evicted_pairs,
                })
                .collect(),
        }
    }

    /// A replica died: stops admission, records why, and hands back every queued pair (the
    /// caller answers them); the other replicas then find the queue closed and empty, and stop.
    pub fn fail(&self, reason: &str) -> Vec<Job> {
        let mut st = self.lock();
        st.closed = true;
        st.failed.get_or_insert_with(|| reason.to_owned());
        let jobs = st.pending.drain();
        drop(st);
        self.wake.notify_all();
        jobs
    }

    /// Why the model stopped serving, if a replica died.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// Stops admission; replicas finish what is queued, then [`Queue::next_batch`] returns None.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Blocks until a batch is due and returns it; None once closed and empty. A batch is due
    /// when enough is queued to fill one, or when its first pair has waited `max_wait` (or a
    /// deadline among the pairs it may take comes sooner).
    pub fn next_batch(&self) -> Option<Batch> {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            let expired = st.pending.sweep(now);
            if !expired.is_empty() {
                return Some(Batch {
                    id: 0,
                    jobs: Vec::new(),
                    expired,
                });
            }
            let Some(due) = st.pending.due(&self.limits, now) else {
                if st.closed {
                    return None;
                }
                st.idle += 1;
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                st.idle -= 1;
                continue;
            };
            let full = st.pending.len() >= self.limits.max_batch_pairs
                || st.pending.tokens() >= self.limits.max_batch_tokens;
            if full || st.closed || now >= due {
                // With other replicas idle, leave them an equal share of the queued tokens:
                // one request's pairs then run on every replica at once instead of one after
                // the other, and finish together (a share of pairs would hand one replica the
                // long outliers).
                let share = st.pending.tokens().div_ceil(st.idle + 1);
                let jobs = st.pending.take(&self.limits, now, share);
                st.next_batch_id += 1;
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.batched_pairs
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                return Some(Batch {
                    id: st.next_batch_id,
                    jobs,
                    expired: Vec::new(),
                });
            }
            st.idle += 1;
            st = self
                .wake
                .wait_timeout(st, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.idle -= 1;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A replica that panicked while holding the lock leaves consistent state (every
        // mutation completes before anything that can panic); keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_replicas_share_the_tokens_of_one_large_request() {
        let queue = Queue::new(BatchLimits {
            max_batch_pairs: 100,
            max_wait: Duration::from_millis(20),
            ..Default::default()
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let (queue, done_tx) = (queue.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let size = queue
                    .next_batch()
                    .map(|b| b.jobs.iter().map(|j| j.encoded.len()).sum::<usize>());
                done_tx.send(size).unwrap();
            });
        }
        while queue.lock().idle < 2 {
            std::thread::yield_now();
        }
        let (jobs, _rx) = test_jobs(&[[10; 60].as_slice(), &[30; 40]].concat());
        queue
            .reserve(100, &Class::default())
            .unwrap()
            .submit(jobs)
            .unwrap();
        // 1800 tokens: one replica takes the 60 short pairs and 10 long ones, the other the
        // 30 long ones left (an equal share of pairs would have given it 1300 of the 1800).
        let sizes = [done_rx.recv().unwrap(), done_rx.recv().unwrap()];
        assert_eq!(sizes, [Some(900), Some(900)]);
    }

    #[test]
    fn a_full_queue_refuses_before_tokenizing_and_reservations_count() {
        let queue = Queue::new(BatchLimits {
            max_queue_pairs: 10,
            ..Default::default()
        });
        let held = queue.reserve(8, &Class::default()).unwrap();
        assert_eq!(
            queue.reserve(3, &Class::default()).err(),
            Some(Rejected::Full {
                queued: 8,
                asked: 3,
                limit: 10
            })
        );
        drop(held);
        assert!(
            queue.reserve(10, &Class::default()).is_ok(),
            "a dropped reservation gives its room back"
        );
    }
}
