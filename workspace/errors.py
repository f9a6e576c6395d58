"""Errors a user can fix: the CLI prints their message on one line and exits with code 2."""


class UserError(Exception):
    """A wrong file, id or setting. The message says what is wrong and what to do."""

    exit_code = 2
