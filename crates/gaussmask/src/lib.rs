//! The `gaussmask` command line: every experiment of the project behind one binary.

use gaussmask_harness::Experiment;

pub mod eval;
pub mod train;

/// Every experiment, in the order `gaussmask list` shows them.
pub fn experiments() -> Vec<&'static dyn Experiment> {
    vec![
        &trajectories::Trajectories,
        &smoothed_relu::SmoothedRelu,
        &decomposition::Decomposition,
        &expected_objective::ExpectedObjective,
        &floor_scaling::FloorScaling,
        &correlated_masks::CorrelatedMasks,
        &two_rates::TwoRates,
        &identity_mapping::IdentityMapping,
        &masked_neurons::MaskedNeurons,
        &depth::Depth,
        &image_accuracy::ImageAccuracy,
        &membership_inference::MembershipInference,
        &lira::Lira,
        &dp_baseline::DpBaseline,
        &federated_fading::FederatedFading,
    ]
}

/// Runs the command line.
pub fn main() -> std::process::ExitCode {
    gaussmask_harness::cli::main(
        &experiments(),
        &[
            &train::TrainTool,
            &train::PredictTool,
            &train::AuditTool,
            &eval::EvalLoss,
        ],
    )
}
