"""Reports over the store: result tables, plots, sweep and cost summaries (`results`), and experiment trackers
(`tracking`)."""
