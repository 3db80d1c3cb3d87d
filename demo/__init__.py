"""`make demo`: the pipeline, run locally against the compose stack, with a checked summary."""
