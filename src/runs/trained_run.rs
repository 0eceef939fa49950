//! A trained run, loaded for inference (`eval`, `export`, `predict`): its saved config, how it
//! computes here, and its network with the best or last weights (the average, when the recipe
//! keeps one).
use crate::compute::{Compute, ComputeRequest};
use crate::config::Experiment;
use crate::model::network::Network;
use crate::runs::checkpoint::Checkpoint;
use crate::runs::run_dir::{CheckpointName, RunDir};
use anyhow::{ensure, Result};

pub struct TrainedRun {
    pub experiment: Experiment,
    pub compute: Compute,
    pub network: Network,
}

impl TrainedRun {
    /// Rebuilds the run's network from its `config.json` on `request`'s device (in the run's
    /// precision unless asked otherwise) and loads the `which` checkpoint's weights.
    pub fn load(run: &RunDir, which: CheckpointName, request: &ComputeRequest) -> Result<Self> {
        let experiment = run.load_experiment()?;
        let path = run.checkpoint(which);
        ensure!(
            path.is_file(),
            "{} has no {} yet: train at least one epoch first",
            run.path().display(),
            path.display()
        );
        let compute = Compute::new(request, request.precision_for(&experiment))?;
        let network = Network::new(&experiment, &compute);
        Checkpoint::load(&path)?.restore_inference(&network.vs, &path)?;
        Ok(TrainedRun { experiment, compute, network })
    }
}
