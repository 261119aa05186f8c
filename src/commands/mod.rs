//! One module per subcommand. Each has an `Args` (clap) and a `run`.

pub mod createsuperuser;
pub mod migrate;
pub mod rabbit_check;
pub mod serve;
pub mod smoke_test;

use std::path::PathBuf;

/// The data dir flag every command that opens the database takes.
#[derive(clap::Args, Debug, Clone)]
pub struct DataDir {
    /// Where chatctl keeps its database (chatctl.redb).
    #[arg(long = "data-dir", env = "CHATCTL_DATA_DIR", default_value = "./chatctl-data")]
    pub path: PathBuf,
}

/// A multi-threaded tokio runtime for the commands that serve or connect.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
