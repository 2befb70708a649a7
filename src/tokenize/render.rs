//! A chat template's render with bounds: fuel (minijinja steps), an output bound (bytes), and
//! the request's stop signal. A model's template is code from whoever published the model; none
//! of these lets it hold a core or grow memory past its bound (docs/hardening/templates.md).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use minijinja::{Environment, Error, ErrorKind, Output, State, Value};

use super::stop::StopSignal;

/// minijinja steps one render may take. A reranker template (Qwen3's, with a system message)
/// takes a few hundred per pair whatever the texts' length: this is a margin of ~1000x, and a
/// runaway loop spends it in well under a second (docs/hardening/templates.md has the figures).
pub const FUEL: u64 = 500_000;

/// Template steps a request's renders may take together besides [`FUEL`], per pair: ~40x what
/// Qwen3's template takes. A template just under its fuel on every pair would otherwise cost
/// a request ~0.1 s a pair until its deadline.
pub const STEPS_PER_PAIR: u64 = 10_000;

/// Output a render may write besides the template's own text and its inputs.
pub const OUTPUT_SLACK_BYTES: usize = 64 * 1024;

/// How many times its inputs a render may write (a template may print a text more than once).
pub const OUTPUT_PER_INPUT_BYTE: usize = 4;

/// The output bound of one render: the slack, the template's length, and 4x its inputs' bytes.
pub fn output_limit(template_bytes: usize, input_bytes: usize) -> usize {
    OUTPUT_SLACK_BYTES
        .saturating_add(template_bytes)
        .saturating_add(input_bytes.saturating_mul(OUTPUT_PER_INPUT_BYTE))
}

/// The environment chat templates run in: Jinja as transformers configures it (`trim_blocks`,
/// `lstrip_blocks`, Python string methods, `raise_exception`), with fuel and a `range` that
/// obeys the stop signal.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("range", range);
    env.set_formatter(counted_formatter);
    env.set_fuel(Some(FUEL));
    env
}

/// Why a render gave no text.
#[derive(Debug)]
pub enum Failure {
    /// The template took [`FUEL`] steps.
    OutOfFuel,
    /// The output passed `limit` bytes.
    TooLong { limit: usize },
    /// The request's renders together took more than `limit` steps (see [`StepBudget`]).
    RequestOutOfSteps { limit: u64 },
    /// The request's stop signal was raised during the render.
    Stopped,
    /// The template failed by itself (undefined filter, `raise_exception`, …).
    Template(minijinja::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfFuel => write!(
                f,
                "rendering ran out of fuel: it took {FUEL} template steps, the limit per pair \
                 (a reranker template takes a few hundred)"
            ),
            Self::TooLong { limit } => write!(
                f,
                "the rendered prompt passed {limit} bytes, the limit for this pair (64 KiB + the \
                 template's length + {OUTPUT_PER_INPUT_BYTE} x the pair's text bytes)"
            ),
            Self::RequestOutOfSteps { limit } => write!(
                f,
                "the request's pairs took more than {limit} template steps together, the limit \
                 ({FUEL} + {STEPS_PER_PAIR} per pair)"
            ),
            Self::Stopped => write!(f, "rendering was stopped (deadline or cancellation)"),
            Self::Template(e) => write!(f, "rendering failed: {e:#}"),
        }
    }
}

/// The template steps a request's renders have taken, against the request's allowance.
pub struct StepBudget {
    spent: AtomicU64,
    limit: u64,
}

impl StepBudget {
    /// [`FUEL`] + [`STEPS_PER_PAIR`] for each of `pairs`.
    pub fn for_pairs(pairs: usize) -> Self {
        let per_pair = STEPS_PER_PAIR.saturating_mul(pairs as u64);
        Self {
            spent: AtomicU64::new(0),
            limit: FUEL.saturating_add(per_pair),
        }
    }

    fn charge(&self, steps: u64) -> Result<(), Failure> {
        let spent = self.spent.fetch_add(steps, Ordering::Relaxed);
        match spent.saturating_add(steps) > self.limit {
            true => Err(Failure::RequestOutOfSteps { limit: self.limit }),
            false => Ok(()),
        }
    }
}

/// Renders template `name` of `env` with `ctx`, writing at most `limit` bytes, stopping when
/// `signal` is raised, and charging its steps to `budget` when given.
pub fn render(
    env: &Environment<'static>,
    name: &str,
    ctx: Value,
    (limit, budget): (usize, Option<&StepBudget>),
    signal: &StopSignal,
) -> Result<String, Failure> {
    let template = env.get_template(name).map_err(Failure::Template)?;
    let mut out = Bounded::new(limit, signal);
    let watch = Watch::enter(signal, limit);
    let result = template.render_captured_to(ctx, &mut out);
    let (stopped, overflow) = watch.outcome();
    drop(watch);
    match (result, out.overflow || overflow, out.stopped || stopped) {
        (_, _, true) => Err(Failure::Stopped),
        (_, true, _) => Err(Failure::TooLong { limit }),
        (Err(e), ..) if e.kind() == ErrorKind::OutOfFuel => Err(Failure::OutOfFuel),
        (Err(e), ..) => Err(Failure::Template(e)),
        (Ok(captured), ..) => {
            let steps = captured.state().fuel_levels().map_or(0, |(used, _)| used);
            budget.map_or(Ok(()), |b| b.charge(steps))?;
            utf8(out.buf)
        }
    }
}

fn utf8(buf: Vec<u8>) -> Result<String, Failure> {
    String::from_utf8(buf).map_err(|_| {
        Failure::Template(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "the rendered prompt is not UTF-8",
        ))
    })
}

/// A writer that refuses to grow past `limit` bytes, and stops when the signal is raised.
struct Bounded<'s> {
    buf: Vec<u8>,
    limit: usize,
    signal: &'s StopSignal,
    /// A write would have passed the limit.
    overflow: bool,
    /// The signal was raised at a write.
    stopped: bool,
}

impl<'s> Bounded<'s> {
    fn new(limit: usize, signal: &'s StopSignal) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            signal,
            overflow: false,
            stopped: false,
        }
    }
}

impl io::Write for Bounded<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.signal.is_raised() {
            self.stopped = true;
            return Err(io::Error::other("stopped"));
        }
        if bytes.len() > self.limit - self.buf.len() {
            self.overflow = true;
            return Err(io::Error::other("output bound"));
        }
        self.buf.try_reserve(bytes.len()).map_err(|_| {
            self.overflow = true;
            io::Error::other("out of memory")
        })?;
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the template's own code sees of the render running on this thread.
struct Watched {
    signal: StopSignal,
    /// The render's output bound, applied to printed values even where the template captures
    /// them (`{% set x %}…{% endset %}`, `{% filter %}`, macros) instead of writing them out.
    limit: usize,
    /// Bytes of values printed so far, captured or not.
    printed: usize,
    /// A `range` loop or a print was cut short by the signal.
    stopped: bool,
    /// A print passed the bound.
    overflow: bool,
}

thread_local! {
    /// The render running on this thread (renders are synchronous: one at a time per thread).
    static WATCHED: RefCell<Option<Watched>> = const { RefCell::new(None) };
}

/// Makes a render's signal and bound visible to its `range` and prints until dropped.
struct Watch {
    /// The render this one interrupted on the same thread (none in practice), restored on drop.
    previous: Option<Watched>,
}

impl Watch {
    fn enter(signal: &StopSignal, limit: usize) -> Self {
        let watched = Watched {
            signal: signal.clone(),
            limit,
            printed: 0,
            stopped: false,
            overflow: false,
        };
        Self {
            previous: WATCHED.with(|w| w.replace(Some(watched))),
        }
    }

    /// (stopped by the signal, printed past the bound) during this render.
    fn outcome(&self) -> (bool, bool) {
        WATCHED.with(|w| {
            w.borrow()
                .as_ref()
                .map_or((false, false), |w| (w.stopped, w.overflow))
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let previous = self.previous.take();
        WATCHED.with(|w| *w.borrow_mut() = previous);
    }
}

/// Whether this thread's render must stop; records it so the render is known to be cut short.
fn stop_now() -> bool {
    WATCHED.with(|w| match w.borrow_mut().as_mut() {
        Some(w) if w.signal.is_raised() => {
            w.stopped = true;
            true
        }
        _ => false,
    })
}

/// Jinja's `range` (minijinja's, with its 100,000-item limit) whose iteration ends as soon as the
/// render's stop signal is raised: a template looping over ranges stops at the deadline, not
/// only when its fuel runs out. The cut render is then refused (see [`render`]).
fn range(lower: isize, upper: Option<isize>, step: Option<isize>) -> Result<Value, Error> {
    let inner = minijinja::functions::range(lower, upper, step)?;
    Ok(Value::make_iterable(move || {
        inner
            .try_iter()
            .into_iter()
            .flatten()
            .take_while(|_| !stop_now())
    }))
}

/// minijinja's formatter for `{{ value }}`, after checking the stop signal and counting the
/// value's bytes against the render's output bound, captured output included.
fn counted_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    // Strings by their bytes; anything else (lists, maps, numbers) by its display, which is
    // what the formatter writes.
    let len = value
        .as_str()
        .map_or_else(|| value.to_string().len(), str::len);
    let refused = WATCHED.with(|w| {
        let mut w = w.borrow_mut();
        let w = w.as_mut()?;
        if w.signal.is_raised() {
            w.stopped = true;
            return Some("stopped");
        }
        w.printed = w.printed.saturating_add(len);
        w.overflow = w.printed > w.limit;
        w.overflow.then_some("output bound")
    });
    match refused {
        Some(why) => Err(Error::new(ErrorKind::InvalidOperation, why)),
        None => minijinja::escape_formatter(out, state, value),
    }
}

/// transformers' `raise_exception(message)` for templates: rendering fails with the message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("the chat template raised: {message}"),
    ))
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
