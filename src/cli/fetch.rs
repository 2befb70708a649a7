//! `crossrank fetch`: Hugging Face models into the cache ahead of serving (an init container,
//! an image build, a machine that will serve offline).

use anyhow::anyhow;
use clap::Args;
use crossrank::hub::{self, HubConfig, Progress, RepoRef};

#[derive(Args)]
pub struct FetchArgs {
    /// Hugging Face ids, org/name[@revision]; each one's snapshot directory is printed.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
}

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let config = HubConfig::from_env();
    for id in &args.ids {
        let repo = RepoRef::parse(id)
            .ok_or_else(|| anyhow!("{id:?} is not a Hugging Face id (org/name[@revision])"))?;
        let dir = hub::snapshot(&repo, &config, Progress::for_stderr())?;
        println!("{}", dir.display());
    }
    Ok(())
}
