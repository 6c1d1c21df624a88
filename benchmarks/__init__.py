"""Speed and memory measurements; each module prints its figures (never timed tests)."""
