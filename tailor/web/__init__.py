"""The reviewers' web app (``tailor review serve``): a thin face over the same functions as the CLI."""
