"""Commands that measure Tailor (accuracy, cost) and write ``benchmarks/results/*.md|png``."""
