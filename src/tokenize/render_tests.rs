//! The bounds of a render: real templates fit the fuel with a wide margin, a loop runs out of it,
//! printing past the output bound fails (also into a capture), a raised signal stops a loop.

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use minijinja::context;

use super::*;

/// Qwen3's chat template without its tool branch (Qwen/Qwen3-8B tokenizer_config.json): the
/// largest a reranker's template plausibly is (they are its cut-down forms).
const QWEN3: &str = r#"{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n<think>\n\n</think>\n\n' }}
{%- endif %}"#;

fn env_with(source: &str) -> Environment<'static> {
    let mut env = environment();
    env.add_template_owned("t", source.to_owned()).unwrap();
    env
}

fn messages(text: &str) -> Value {
    let m = |role: &str, content: String| context! { role => role, content => content };
    Value::from(vec![
        m("system", text.to_owned()),
        m("user", text.to_owned()),
        m("assistant", format!("<think>{text}</think>{text}")),
    ])
}

/// Qwen3's template with three 64 KiB messages takes a few hundred steps: the fuel is a margin
/// of ~1000x, whatever the texts' length.
#[test]
fn a_real_template_uses_a_sliver_of_the_fuel() {
    let env = env_with(QWEN3);
    for text in ["short", &"long text ".repeat(6554)] {
        let ctx = context! { messages => messages(text), add_generation_prompt => true };
        let captured = env.get_template("t").unwrap().render_captured(ctx).unwrap();
        let (used, _) = captured.state().fuel_levels().unwrap();
        println!(
            "Qwen3 template, {} bytes a message: {used} steps",
            text.len()
        );
        assert!(used * 100 < FUEL, "{used} steps");
    }
}

/// A loop of 10^10 steps stops at the fuel, quickly (the time is printed: what the fuel is worth).
#[test]
fn a_runaway_loop_runs_out_of_fuel() {
    let env = env_with(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    );
    let start = Instant::now();
    let r = render(
        &env,
        "t",
        Value::from(()),
        (1 << 20, None),
        &StopSignal::default(),
    );
    let took = start.elapsed();
    println!("{FUEL} steps of a nested loop: {took:?}");
    assert!(matches!(r, Err(Failure::OutOfFuel)), "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A 100 MB print fails at the bound before it is copied; so does one into a `{% set %}`
/// capture, which never reaches the writer; raw text past the bound fails at the writer.
#[test]
fn printing_past_the_output_bound_fails() {
    for source in [
        r#"{{ "x" * 100000000 }}"#,
        r#"{% set s %}{% for i in range(100) %}{{ "x" * 1000000 }}{% endfor %}{% endset %}"#,
        "{% for i in range(100000) %}raw text, raw text{% endfor %}",
    ] {
        let r = render(
            &env_with(source),
            "t",
            Value::from(()),
            (1 << 20, None),
            &StopSignal::default(),
        );
        let r = r.map(|s| s.len());
        assert!(
            matches!(r, Err(Failure::TooLong { limit }) if limit == 1 << 20),
            "{source}: {r:?}"
        );
    }
    let r = render(
        &env_with("{{ 'x' * 10 }}"),
        "t",
        Value::from(()),
        (10, None),
        &StopSignal::default(),
    );
    assert_eq!(r.unwrap(), "x".repeat(10));
}

/// A loop whose steps are expensive but few in fuel (10 MB strings) stops when the signal is
/// raised, not after its fuel; a signal raised before the render stops it at once.
#[test]
fn a_raised_signal_stops_a_range_loop() {
    let env =
        env_with(r#"{% for i in range(100000) %}{% set x = "y" * (10000000 + i) %}{% endfor %}"#);
    let start = Instant::now();
    let signal = StopSignal::at(start + Duration::from_millis(200));
    let r = render(&env, "t", Value::from(()), (1 << 20, None), &signal);
    let took = start.elapsed();
    println!("stopped after {took:?} (deadline 200 ms)");
    assert!(
        matches!(r, Err(Failure::Stopped)),
        "{:?}",
        r.map(|s| s.len())
    );
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let r = render(
        &env_with("{{ 'a' }}"),
        "t",
        Value::from(()),
        (100, None),
        &StopSignal::raised(),
    );
    assert!(matches!(r, Err(Failure::Stopped)), "{r:?}");
}

/// A request's renders share one step allowance: renders that each fit the fuel fail once they
/// have used it up together.
#[test]
fn a_request_step_budget_is_shared_by_its_renders() {
    let env = env_with("{% for i in range(1000) %}{% endfor %}");
    let budget = StepBudget {
        spent: AtomicU64::new(0),
        limit: 5000,
    };
    let limits = (1 << 20, Some(&budget));
    let first = render(&env, "t", Value::from(()), limits, &StopSignal::default());
    assert_eq!(first.unwrap(), "");
    let used = budget.spent.load(Ordering::Relaxed);
    println!("a loop of 1000: {used} steps");
    assert!((1000..5000).contains(&used), "{used}");
    let second = render(&env, "t", Value::from(()), limits, &StopSignal::default());
    assert!(
        matches!(second, Err(Failure::RequestOutOfSteps { limit: 5000 })),
        "{second:?}"
    );
}
