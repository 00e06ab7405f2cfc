"""Training: the loop and its hooks, the run state (checkpoint = snapshot), NaN guard,
schedule, evaluation, metrics."""
