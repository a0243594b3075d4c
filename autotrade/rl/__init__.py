"""Training the policy model on the harness: the evaluator as a reward, prompts as a dataset, runs as data."""
