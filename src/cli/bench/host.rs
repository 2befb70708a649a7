//! The machine a run was taken on (CPU model, cores and the vector flags that decide libtorch's
//! kernels, from /proc/cpuinfo) and the CPU time of processes (from /proc/PID/stat), so that a
//! report says what it measured on and the server's CPU per pair can be compared across
//! protocols.

use anyhow::{bail, Context};
use serde::Serialize;

/// The /proc/cpuinfo flags a report names: the instruction sets libtorch and the tokenizer's
/// code paths choose between.
const FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
];

#[derive(Serialize, Debug)]
pub struct Host {
    /// `model name` of the first processor ("unknown" where /proc/cpuinfo has none).
    pub cpu: String,
    /// Processors the bench can see.
    pub cores: usize,
    /// The flags of [`FLAGS`] the first processor has.
    pub flags: Vec<String>,
}

impl Host {
    pub fn this_machine() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::from_cpuinfo(&cpuinfo)
    }

    fn from_cpuinfo(text: &str) -> Self {
        let field = |name: &str| {
            text.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let have = field("flags").unwrap_or_default();
        let have: Vec<&str> = have.split_whitespace().collect();
        Self {
            cpu: field("model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            flags: FLAGS
                .iter()
                .filter(|f| have.contains(f))
                .map(|f| f.to_string())
                .collect(),
        }
    }

    /// The report's `host` line.
    pub fn line(&self) -> String {
        format!(
            "  host        {}, {} cores, flags: {}\n",
            self.cpu,
            self.cores,
            self.flags.join(" ")
        )
    }
}

/// User + system CPU seconds process `pid` has used so far, all its threads together.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (is process {pid} running?)"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command name (field 2, in
/// parentheses) may hold spaces, so fields are counted after its closing parenthesis.
fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("no `)` after the command name");
    };
    // rest starts at field 3 (state): utime is the 12th field after the name, stime the 13th.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        let text = fields.get(i).context("too few fields")?;
        text.parse()
            .with_context(|| format!("field {} is {text:?}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system; it takes no pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_after_the_command_name() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 5 6 7";
        assert_eq!(parse_stat_ticks(stat).unwrap(), 281);
        assert!(parse_stat_ticks("42 (x) S 1").is_err());
    }

    #[test]
    fn cpuinfo_model_and_known_flags() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: fpu avx2 fma \
                    avx512f sse4_2\n\nprocessor\t: 1\n";
        let host = Host::from_cpuinfo(text);
        assert_eq!(host.cpu, "Some CPU @ 2GHz");
        assert_eq!(host.flags, ["sse4_2", "avx2", "fma", "avx512f"]);
        assert_eq!(Host::from_cpuinfo("").cpu, "unknown");
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
