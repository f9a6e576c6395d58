"""Retry policy: only I/O tasks retry, and never on a user's mistake (that would not change)."""
from workspace.errors import UserError


def io_retry(task, task_run, state) -> bool:
    try:
        state.result()
    except UserError:
        return False
    except Exception:  # noqa: BLE001 - any other failure of an I/O step may be transient
        return True
    return False
