//! `crossrank fetch`: Hugging Face models into the cache ahead of serving (an init container,
//! an image build, a machine that will serve offline).

use anyhow::anyhow;
use clap::Args;
use crossrank::hub::{self, HubConfig, Progress, RepoRef, Transfer};

#[derive(Args)]
pub struct FetchArgs {
    /// Hugging Face ids, org/name[@revision]; each one's snapshot directory is printed.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    hub: HubArgs,
}

/// How long Hub transfers may take (`fetch`, and `serve` for models given by id).
#[derive(Args, Clone, Copy)]
pub struct HubArgs {
    /// Seconds the revision lookup, a HEAD or a small file may take in all, and the bound on
    /// connecting and on the first byte of every answer; downloads get this long before their
    /// rate is checked.
    #[arg(long, env = "CROSSRANK_HUB_TIMEOUT_SECS", default_value_t = hub::DEFAULT_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub hub_timeout_secs: u64,
    /// KiB/s a download must average once past --hub-timeout-secs; a file of SIZE bytes is
    /// thus due within max(--hub-timeout-secs, SIZE / rate).
    #[arg(long, env = "CROSSRANK_HUB_MIN_RATE_KIB", default_value_t = hub::DEFAULT_MIN_RATE_KIB,
        value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub hub_min_rate_kib: u64,
}

impl HubArgs {
    pub fn transfer(&self) -> Transfer {
        Transfer::new(self.hub_timeout_secs, self.hub_min_rate_kib)
    }
}

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let config = HubConfig {
        transfer: args.hub.transfer(),
        ..HubConfig::from_env()
    };
    for id in &args.ids {
        let repo = RepoRef::parse(id)
            .ok_or_else(|| anyhow!("{id:?} is not a Hugging Face id (org/name[@revision])"))?;
        let dir = hub::snapshot(&repo, &config, Progress::for_stderr())?;
        println!("{}", dir.display());
    }
    Ok(())
}
