//! The serving order, tested exactly: every time is given, nothing sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::pending::Pending;
use super::{test_request, BatchLimits, Class, PairError, PairResult, Queue, Rejected};

fn class(priority: u32, tenant: &str) -> Class {
    Class {
        priority,
        tenant: Arc::from(tenant),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn limits(pairs: usize) -> BatchLimits {
    BatchLimits {
        max_batch_pairs: pairs,
        priority_aging: ms(100),
        ..Default::default()
    }
}

/// A clock of its own: every test reads times off one origin.
struct Clock(Instant);

impl Clock {
    fn at(&self, millis: u64) -> Instant {
        self.0 + ms(millis)
    }
}

/// Queues a request of `n` pairs of 10 tokens; its receiver.
fn push(q: &mut Pending, n: usize, class: Class, at: Instant) -> UnboundedReceiver<PairResult> {
    let (jobs, rx) = test_request(&vec![10; n], class, None, at);
    q.push(jobs);
    rx
}

/// Takes one batch; (priority, tenant, index) of each pair in it.
fn take(q: &mut Pending, l: &BatchLimits, now: Instant) -> Vec<(u32, String, usize)> {
    q.take(l, now, usize::MAX)
        .into_iter()
        .map(|j| {
            let c = &j.sink.class;
            let out = (c.priority, c.tenant.to_string(), j.index);
            j.answer(Ok(vec![0.0]), Duration::ZERO, Duration::ZERO, 1);
            out
        })
        .collect()
}

#[test]
fn the_most_urgent_level_goes_first_and_a_batch_holds_one_level() {
    let t = Clock(Instant::now());
    let mut q = Pending::default();
    let _bulk = push(&mut q, 3, class(5, ""), t.at(0));
    let _mid = push(&mut q, 1, class(1, ""), t.at(1));
    let _top = push(&mut q, 2, class(0, ""), t.at(2));
    let l = limits(64);
    let prios = |b: Vec<(u32, String, usize)>| b.into_iter().map(|p| p.0).collect::<Vec<_>>();
    // Room for 64 pairs, yet the batch is the two priority-0 pairs alone.
    assert_eq!(prios(take(&mut q, &l, t.at(3))), vec![0, 0]);
    assert_eq!(prios(take(&mut q, &l, t.at(3))), vec![1]);
    assert_eq!(prios(take(&mut q, &l, t.at(3))), vec![5, 5, 5]);
    assert!(q.is_empty());
}

/// A priority-5 pair is passed over by fresh priority-0 work until it has waited exactly
/// 5 × priority_aging, and is served first from then on.
#[test]
fn aging_reaches_the_top_level_after_exactly_priority_times_aging() {
    let t = Clock(Instant::now());
    let l = limits(1);
    let mut q = Pending::default();
    let _old = push(&mut q, 1, class(5, ""), t.at(0));
    // A stream of priority-0 requests, one every 10 ms, one pair served per step.
    let mut served_at = None;
    let mut rxs = Vec::new();
    for step in 1..=60u64 {
        let now = t.at(10 * step);
        rxs.push(push(&mut q, 1, class(0, ""), now));
        let batch = take(&mut q, &l, now);
        if batch[0].0 == 5 {
            served_at = Some(10 * step);
            break;
        }
    }
    assert_eq!(served_at, Some(500));
    // One nanosecond short of the bound, it still waits.
    let mut q = Pending::default();
    let _old = push(&mut q, 1, class(5, ""), t.at(0));
    let now = t.at(500) - Duration::from_nanos(1);
    let _new = push(&mut q, 1, class(0, ""), now);
    assert_eq!(take(&mut q, &l, now)[0].0, 0);
    // No aging: priority 5 waits behind priority 0 however long it has waited.
    let still = BatchLimits {
        priority_aging: Duration::ZERO,
        ..l
    };
    let mut q = Pending::default();
    let _old = push(&mut q, 1, class(5, ""), t.at(0));
    let _new = push(&mut q, 1, class(0, ""), t.at(100_000));
    assert_eq!(take(&mut q, &still, t.at(100_000))[0].0, 0);
}

/// Within one priority, a tenant's 2,048-pair backlog does not hold back another tenant's 20
/// pairs: they interleave token for token, so the light request is done in two batches of 32
/// (first-come order would have needed 65).
#[test]
fn tenants_of_one_priority_share_batches_fairly() {
    let t = Clock(Instant::now());
    let l = limits(32);
    let mut q = Pending::default();
    let _flood = push(&mut q, 2048, class(0, "flood"), t.at(0));
    // The flood has been served for a while before the light tenant arrives.
    for _ in 0..10 {
        let batch = take(&mut q, &l, t.at(1));
        assert!(batch.iter().all(|p| p.1 == "flood"));
    }
    let _light = push(&mut q, 20, class(0, "light"), t.at(2));
    let first = take(&mut q, &l, t.at(3));
    let second = take(&mut q, &l, t.at(3));
    let light = |b: &[(u32, String, usize)]| b.iter().filter(|p| p.1 == "light").count();
    assert_eq!((light(&first), light(&second)), (16, 4));
    assert_eq!(q.tenant_pairs("light"), 0);
    // Alone again, the flood runs in arrival order.
    let next: Vec<usize> = take(&mut q, &l, t.at(4)).into_iter().map(|p| p.2).collect();
    assert_eq!(
        next,
        (10 * 32 + 16 + 28..10 * 32 + 16 + 28 + 32).collect::<Vec<_>>()
    );
}

#[test]
fn one_tenant_is_served_in_arrival_order() {
    let t = Clock(Instant::now());
    let l = limits(4);
    let mut q = Pending::default();
    let _a = push(&mut q, 3, class(2, "x"), t.at(0));
    let _b = push(&mut q, 3, class(2, "x"), t.at(1));
    let first: Vec<usize> = take(&mut q, &l, t.at(2)).into_iter().map(|p| p.2).collect();
    assert_eq!(first, vec![0, 1, 2, 0]);
    assert_eq!(take(&mut q, &l, t.at(2)).len(), 2);
}

/// A full queue displaces whole requests of strictly lower priority, the newest of the lowest
/// level first, each of their pairs answered Evicted once; equal priority is refused, and a
/// request that lower levels cannot make room for displaces nothing.
#[test]
fn a_full_queue_displaces_the_newest_lowest_priority_requests() {
    let queue = Queue::new(BatchLimits {
        max_queue_pairs: 10,
        ..Default::default()
    });
    let submit = |n: usize, c: Class| {
        let (jobs, rx) = test_request(&vec![10; n], c.clone(), None, Instant::now());
        queue.reserve(n, &c).unwrap().submit(jobs).unwrap();
        rx
    };
    let mut older5 = submit(4, class(5, "a"));
    let mut newer5 = submit(3, class(5, "b"));
    let mut three = submit(3, class(3, "a"));
    // Full: 10 of 10. Priority 5 displaces nothing of its own level.
    assert_eq!(
        queue.reserve(1, &class(5, "c")).err(),
        Some(Rejected::Full {
            queued: 10,
            asked: 1,
            limit: 10
        })
    );
    // Priority 0 needs 2: the newest priority-5 request (3 pairs) goes, whole.
    let held = queue.reserve(2, &class(0, "c")).unwrap();
    for _ in 0..3 {
        let r = newer5.try_recv().unwrap();
        assert_eq!(r.outcome, Err(PairError::Evicted { by_priority: 0 }));
    }
    assert!(newer5.try_recv().is_err(), "each pair is answered once");
    assert!(older5.try_recv().is_err() && three.try_recv().is_err());
    // 7 queued + 2 held. Priority 4 needing 6 could free only the 4 pairs of priority 5:
    // refused, and nothing is displaced.
    assert!(matches!(
        queue.reserve(6, &class(4, "d")),
        Err(Rejected::Full { .. })
    ));
    assert!(older5.try_recv().is_err());
    let stats = queue.stats();
    let level5 = stats.by_priority.iter().find(|l| l.priority == 5).unwrap();
    assert_eq!((level5.depth, level5.evicted_pairs), (4, 3));
    // Priority 0 asking 6 needs 5: both lower levels go (4 + 3 pairs); the 2 pairs held for
    // tokenizing are never displaced.
    let _more = queue.reserve(6, &class(0, "e")).unwrap();
    let evicted = |rx: &mut UnboundedReceiver<PairResult>| {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter(|r| r.outcome == Err(PairError::Evicted { by_priority: 0 }))
            .count()
    };
    assert_eq!((evicted(&mut older5), evicted(&mut three)), (4, 3));
    assert_eq!(queue.depth(), 0);
    drop(held);
}

#[test]
fn a_tenant_over_its_quota_is_refused_and_others_are_not() {
    let queue = Queue::new(BatchLimits {
        tenant_max_queue_pairs: Some(5),
        ..Default::default()
    });
    let a = queue.reserve(3, &class(0, "a")).unwrap();
    assert_eq!(
        queue.reserve(3, &class(0, "a")).err(),
        Some(Rejected::TenantQuota {
            tenant: Arc::from("a"),
            queued: 3,
            asked: 3,
            limit: 5
        })
    );
    assert!(queue.reserve(5, &class(0, "b")).is_ok());
    let (jobs, _rx) = test_request(&[10, 10, 10], class(0, "a"), None, Instant::now());
    a.submit(jobs).unwrap();
    // Queued pairs count as reserved ones did.
    assert!(queue.reserve(3, &class(0, "a")).is_err());
    assert!(queue.reserve(2, &class(0, "a")).is_ok());
}

/// Pairs whose deadline has passed are handed back to be answered, never batched; a batch's
/// window closes at the earliest deadline among its pairs.
#[test]
fn deadlines_drop_pairs_and_cut_the_batch_window() {
    let t = Clock(Instant::now());
    let l = BatchLimits {
        max_wait: ms(50),
        ..limits(8)
    };
    let mut q = Pending::default();
    let (late, _late_rx) = test_request(&[10, 10], class(0, ""), Some(t.at(10)), t.at(0));
    let (calm, _calm_rx) = test_request(&[10], class(0, ""), None, t.at(1));
    q.push(late);
    q.push(calm);
    assert_eq!(
        q.due(&l, t.at(0)),
        Some(t.at(10)),
        "the deadline, not the 50 ms window"
    );
    assert!(q.sweep(t.at(9)).is_empty());
    let expired = q.sweep(t.at(10));
    assert_eq!(expired.len(), 2);
    for job in expired {
        job.answer(Err(PairError::DeadlineExceeded), ms(10), Duration::ZERO, 0);
    }
    assert_eq!(q.due(&l, t.at(10)), Some(t.at(51)));
    assert_eq!(take(&mut q, &l, t.at(51)).len(), 1);
    // A request whose caller is gone is dropped silently.
    let (gone, gone_rx) = test_request(&[10], class(0, ""), None, t.at(60));
    q.push(gone);
    drop(gone_rx);
    assert!(q.sweep(t.at(61)).is_empty());
    assert!(q.is_empty());
}

/// Room held for a lower-priority request still being tokenized gives way too (in its level,
/// before the queued requests); its submit then refuses, naming the displacing priority.
#[test]
fn a_lower_priority_request_being_tokenized_is_displaced_first_in_its_level() {
    let queue = Queue::new(BatchLimits {
        max_queue_pairs: 8,
        ..Default::default()
    });
    let (jobs, mut queued_rx) = test_request(&[10; 4], class(5, "a"), None, Instant::now());
    queue
        .reserve(4, &class(5, "a"))
        .unwrap()
        .submit(jobs)
        .unwrap();
    let tokenizing = queue.reserve(4, &class(5, "b")).unwrap();
    let _top = queue.reserve(3, &class(1, "c")).unwrap();
    let (jobs, _rx) = test_request(&[10; 4], class(5, "b"), None, Instant::now());
    assert_eq!(
        tokenizing.submit(jobs).err(),
        Some(Rejected::Displaced { by_priority: 1 })
    );
    assert!(
        queued_rx.try_recv().is_err(),
        "the queued request keeps its place"
    );
    assert_eq!(queue.depth(), 4);
    let level5 = queue.stats().by_priority[0];
    assert_eq!((level5.priority, level5.evicted_pairs), (5, 4));
}

/// A request whose deadline comes before the work queued ahead of it could be done, even at
/// the fastest recent pace, is refused at once instead of queued; other tenants of its
/// priority (who interleave with that work) are not.
#[test]
fn a_request_that_cannot_start_before_its_deadline_is_refused_at_once() {
    let queue = Queue::new(Default::default());
    queue.set_replicas(2);
    // One token per second per replica: the 100 tokens queued below take at least 50 s.
    queue.record_batch(10, Duration::from_secs(10));
    let (jobs, _rx) = test_request(&[10; 10], class(0, "a"), None, Instant::now());
    queue
        .reserve(10, &class(0, "a"))
        .unwrap()
        .submit(jobs)
        .unwrap();
    let submit = |tenant: &str, deadline: Duration| {
        let deadline = Some(Instant::now() + deadline);
        let (jobs, rx) = test_request(&[10], class(0, tenant), deadline, Instant::now());
        (
            queue.reserve(1, &class(0, tenant)).unwrap().submit(jobs),
            rx,
        )
    };
    let (late, _rx) = submit("a", Duration::from_secs(10));
    match late {
        Err(Rejected::Late {
            ahead_tokens: 100,
            least,
            left,
        }) => assert!(least == Duration::from_secs(50) && left <= Duration::from_secs(10)),
        other => panic!("expected Late, got {other:?}"),
    }
    assert!(submit("a", Duration::from_secs(3600)).0.is_ok());
    assert!(submit("b", Duration::from_secs(10)).0.is_ok());
    assert_eq!(queue.depth(), 12);
}

/// Pairs passed over for their length keep their place: a tenant arriving after a batch that
/// reached ahead for similar lengths starts at the first pair left behind, not after the
/// pairs the batch reached for, and gets its share of the very next batch although its pairs
/// are far in length from that batch's first.
#[test]
fn a_newcomer_starts_at_the_first_pair_left_behind() {
    let t = Clock(Instant::now());
    let l = limits(4);
    let mut q = Pending::default();
    // One tenant alone: the batch takes the first pair and the three nearest it in length,
    // reaching past eight 50-token pairs.
    let lengths = [10, 50, 50, 50, 50, 50, 50, 50, 50, 10, 10, 10];
    let (jobs, _rx) = test_request(&lengths, class(0, "bulk"), None, t.at(0));
    q.push(jobs);
    let indices = |b: Vec<(u32, String, usize)>| b.into_iter().map(|p| (p.1, p.2)).collect();
    let first: Vec<(String, usize)> = indices(take(&mut q, &l, t.at(1)));
    let bulk = |i: usize| ("bulk".to_string(), i);
    assert_eq!(first, vec![bulk(0), bulk(9), bulk(10), bulk(11)]);
    let _light = push(&mut q, 2, class(0, "light"), t.at(2));
    // The light pairs start where the bulk pairs left behind do, so they hold half of the
    // next batch's first four places in fair order, and the batch keeps those shares.
    let second: Vec<(String, usize)> = indices(take(&mut q, &l, t.at(3)));
    let light = |i: usize| ("light".to_string(), i);
    assert_eq!(second, vec![bulk(1), light(0), light(1), bulk(2)]);
}
