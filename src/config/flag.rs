//! The `--model NAME=DIR[,key=value…]` flag.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{ModelConfig, ModelOptions};

/// The keys of `--model`, in the order the error lists them.
const KEYS: &str = "device, dtype, replicas, max_batch_tokens, max_batch_pairs, max_wait_ms, \
                    max_queue_pairs, max_length, priority_aging_ms, tenant_max_queue_pairs";

impl FromStr for ModelConfig {
    type Err = String;

    /// `NAME=DIR[,device=cuda:0][,dtype=f16][,replicas=2][,max_batch_tokens=N][,max_batch_pairs=N]
    /// [,max_wait_ms=N][,max_queue_pairs=N][,max_length=N][,priority_aging_ms=N]
    /// [,tenant_max_queue_pairs=N]`; DIR relative to the working directory.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s.split_once('=').ok_or_else(|| {
            format!(
                "--model {s:?}: expected NAME=DIR[,key=value…] (DIR: a directory or a Hugging \
                 Face id org/name[@revision])"
            )
        })?;
        let mut parts = rest.split(',');
        let mut m = ModelOptions {
            name: name.to_owned(),
            path: PathBuf::from(parts.next().unwrap_or_default()),
            ..Default::default()
        };
        for kv in parts {
            set(&mut m, kv)?;
        }
        m.into_config(Path::new("")).map_err(|e| e.to_string())
    }
}

/// One `key=value` of the flag.
fn set(m: &mut ModelOptions, kv: &str) -> Result<(), String> {
    let name = &m.name;
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| format!("--model {name}: {kv:?} is not key=value"))?;
    let num = || {
        v.parse::<usize>()
            .map_err(|_| format!("--model {name}: {k}={v:?} is not a whole number"))
    };
    match k {
        "device" => m.device = Some(v.to_owned()),
        "dtype" => m.dtype = Some(v.to_owned()),
        "replicas" => m.replicas = Some(num()?),
        "max_batch_tokens" => m.max_batch_tokens = Some(num()?),
        "max_batch_pairs" => m.max_batch_pairs = Some(num()?),
        "max_wait_ms" => m.max_wait_ms = Some(num()? as u64),
        "max_queue_pairs" => m.max_queue_pairs = Some(num()?),
        "max_length" => m.max_length = Some(num()?),
        "priority_aging_ms" => m.priority_aging_ms = Some(num()? as u64),
        "tenant_max_queue_pairs" => m.tenant_max_queue_pairs = Some(num()?),
        _ => {
            return Err(format!(
                "--model {name}: unknown option {k:?}; known: {KEYS}"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Placement;
    use crate::device::DType;
    use crate::hub::ModelSource;

    #[test]
    fn model_flag_with_options() {
        let m: ModelConfig =
            "ce=/m,device=cpu,replicas=2,dtype=bf16,max_wait_ms=7,max_queue_pairs=10"
                .parse()
                .unwrap();
        assert_eq!(m.name, "ce");
        assert_eq!(
            m.source,
            ModelSource::Local {
                dir: PathBuf::from("/m"),
                shadows_id: false
            }
        );
        assert_eq!(m.placement, Placement::Devices(vec!["cpu".into(); 2]));
        assert_eq!(m.dtype, Some(DType::Bf16));
        assert_eq!(m.batching.max_wait, Duration::from_millis(7));
        assert_eq!(m.batching.max_queue_pairs, 10);
    }

    #[test]
    fn model_flag_errors_name_the_option() {
        let err = |spec: &str| spec.parse::<ModelConfig>().unwrap_err();
        assert!(err("ce").contains("NAME=DIR"));
        assert!(err("ce=/m,colour=red").contains("\"colour\""));
        assert!(err("ce=/m,replicas=x").contains("replicas"));
        assert!(err("ce=/m,replicas=0").contains("at least 1"));
    }

    #[test]
    fn batch_pairs_default_by_device_unless_given() {
        let pairs = |spec: &str| {
            spec.parse::<ModelConfig>()
                .unwrap()
                .batching
                .max_batch_pairs
        };
        assert_eq!(pairs("ce=/m"), 32);
        assert_eq!(pairs("ce=/m,device=cuda:0"), 64);
        assert_eq!(pairs("ce=/m,max_batch_pairs=48"), 48);
    }
}
