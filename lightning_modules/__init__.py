"""Meta-learning: encoder, pure algorithms over parameter dicts, episodes, adaptation, deltas."""
