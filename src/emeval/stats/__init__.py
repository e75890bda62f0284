"""Every statistic: the bootstrap (one seed and level policy), Inspect metrics, change points."""
