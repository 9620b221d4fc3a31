"""Speed and memory benchmarks of mfrs against baselines measured in the same run."""
