"""Models on this machine: the demo model, checkpoints, likelihoods, fine-tuning, sweeps and the audit."""
