"""The `tailor` command: parse arguments at the edge, call one function, print for people.

A user's mistake (``UserError``) prints one line and exits 2; an internal error prints one line
too, and its traceback only with ``--debug``.
"""
from __future__ import annotations

import errno
import sys
import traceback
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tailor import commands, logs, progress
from tailor.output import one_line
from workspace.errors import UserError
from workspace.paths import Workspace

# Click's plain help (as DVC and MLflow print it): Typer 0.29's rich panels label every flag,
# --help included, with a `<bool>` type that takes no value
PLAIN = {"rich_markup_mode": None}
app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, **PLAIN,
                  help="Tailor: one meta-learned base model, adapted per tenant, governed like a release.")
review_app = typer.Typer(no_args_is_help=True, **PLAIN, help="List, approve or reject candidates.")
audit_app = typer.Typer(no_args_is_help=True, **PLAIN, help="The hash-chained audit log.")
data_app = typer.Typer(no_args_is_help=True, **PLAIN, help="A tenant's data versions (DVC).")
app.add_typer(review_app, name="review")
app.add_typer(audit_app, name="audit")
user_app = typer.Typer(no_args_is_help=True, **PLAIN, help="Review-page users (hashed passwords in the workspace).")
tenant_app = typer.Typer(no_args_is_help=True, **PLAIN, help="A tenant's consent to train the base, and its erasure.")
app.add_typer(data_app, name="data")
app.add_typer(user_app, name="user")
app.add_typer(tenant_app, name="tenant")

STATE = {"workspace": None, "debug": False}


class Status(str, Enum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    rolled_back = "rolled_back"
    all = "all"


class Algorithm(str, Enum):
    pooled = "pooled"
    fomaml = "fomaml"
    reptile = "reptile"
    pooled_fomaml = "pooled-fomaml"


class YesNo(str, Enum):
    yes = "yes"
    no = "no"


def _acting(old_name: str):
    """The acting person's option, ``--user`` on every command; ``old_name`` is what it was called
    on this command before, still accepted."""
    return typer.Option(None, "--user", old_name, help="who acts; must be you (TAILOR_USER or the OS user). "
                                                       f"Old name: {old_name}")


def _person():
    """``--user`` on a command that had no acting person before."""
    return typer.Option(None, "--user", help="who acts; must be you (TAILOR_USER or the OS user)")


def _dry_run(help: str = "run every check and say what would happen; change nothing"):
    return typer.Option(False, "--dry-run", help=help)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"tailor {version('tailor')}")
        raise typer.Exit()


@app.callback()
def _global(workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", envvar="TAILOR_HOME",
                                                     help="workspace folder (default: current directory)"),
            debug: bool = typer.Option(False, "--debug", help="show tracebacks and Prefect's logs "
                                                            "(accepted anywhere on the line)"),
            _: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                   help="print Tailor's version and exit")) -> None:
    STATE.update(workspace=workspace, debug=debug)


def _ctx() -> commands.Context:
    return commands.Context(STATE["workspace"], STATE["debug"])


@app.command()
def init(directory: Optional[Path] = typer.Argument(
        None, help="folder to create or complete (default: --workspace, else the current directory)"),
         json_out: bool = typer.Option(False, "--json")) -> None:
    """Create a workspace: params.yaml, dvc.yaml, git + DVC, embedded MLflow/Prefect stores."""
    commands.init(directory or STATE["workspace"] or Path("."), json_out)


@app.command()
def demo(fresh: bool = typer.Option(False, "--fresh", help="delete the demo workspace first")) -> None:
    """Build demo tenants from WordNet and Home Assistant intents and walk the whole loop."""
    from tailor.demo import run_demo

    run_demo(Path(STATE["workspace"] or "demo-workspace"), fresh=fresh, debug=STATE["debug"])


@app.command()
def ingest(tenant: Optional[str] = typer.Argument(None), file: Optional[Path] = typer.Argument(None),
           folder: Optional[Path] = typer.Option(None, "--dir", help="every <tenant-id>.csv|.jsonl of a folder"),
           user: Optional[str] = _person(),
           json_out: bool = typer.Option(False, "--json")) -> None:
    """Validate a tenant's CSV/JSONL file and version it with DVC; prints the data version. With
    --dir, every file of a folder (file name = tenant id) through one flow, versioned in batches."""
    if folder is not None:
        if tenant or file:
            raise UserError("give TENANT FILE or --dir DIR (not both)")
        commands.ingest_dir(_ctx(), folder, json_out, user)
        return
    if not tenant or file is None:
        raise UserError("give TENANT FILE, or --dir DIR for a folder of <tenant-id>.csv files")
    commands.ingest(_ctx(), tenant, file, json_out, user)


@app.command()
def validate(tenant: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Validate a tenant's current data with its Great Expectations suite."""
    commands.validate(_ctx(), tenant, json_out)


@app.command("meta-train")
def meta_train(algorithm: Optional[Algorithm] = typer.Option(None, help="default: meta_train.algorithm in params.yaml"),
               register_anyway: bool = typer.Option(False, "--register-anyway",
                                                    help="register the base even when no training step improved "
                                                         "on its start"),
               user: Optional[str] = _person(),
               json_out: bool = typer.Option(False, "--json")) -> None:
    """Train the base on the consenting tenants, judge it on tenants held out of training, and register
    it as a candidate: `adapt` uses it once someone else approves it (`review approve --base-version N`)."""
    commands.meta_train(_ctx(), algorithm.value if algorithm else None, json_out, register_anyway, user,
                        started=STATE.get("process_started"))


@app.command()
def adapt(tenants: list[str] = typer.Argument(None, help="tenant ids"),
          all_tenants: bool = typer.Option(False, "--all", help="every tenant with data"),
          requested_by: Optional[str] = _acting("--requested-by"),
          force: bool = typer.Option(False, "--force", help="with --all: adapt tenants unchanged since their newest version too"),
          json_out: bool = typer.Option(False, "--json"),
          dry_run: bool = _dry_run("say which tenants would be adapted, and why; change nothing")) -> None:
    """Adapt tenants to the current base and register candidates (pending review). With --all, only
    tenants whose data, base or adaptation settings changed since their newest version."""
    if bool(tenants) == all_tenants:
        raise UserError("give tenant ids or --all (not both)")
    commands.adapt(_ctx(), None if all_tenants else tenants, requested_by, force, json_out, dry_run)


@app.command()
def predict(tenant: str, texts: list[str] = typer.Argument(None), file: Optional[Path] = typer.Option(None, "--file"),
            out: Optional[Path] = typer.Option(None, "--out"), json_out: bool = typer.Option(False, "--json"),
            force: bool = typer.Option(False, "--force", help="replace an existing --out file"),
            cold: bool = typer.Option(False, "--cold", help="load the champion in this process even when the "
                                                            "workspace's `tailor serve-api` runs")) -> None:
    """Classify texts with the tenant's champion (base + delta); batch from a CSV with --file. TEXTs
    are answered by the workspace's running `tailor serve-api` when there is one (it says so)."""
    if bool(texts) == bool(file):
        raise UserError("give TEXT... or --file F (not both)")
    commands.predict(_ctx(), tenant, texts, file, out, json_out, force, cold)


@review_app.command("list")
def review_list(status: Status = typer.Option(Status.pending),
                json_out: bool = typer.Option(False, "--json"),
                limit: int = typer.Option(200, "--limit", help="rows per page (0: all)"),
                offset: int = typer.Option(0, "--offset", help="rows to skip (the next page)")) -> None:
    """Candidates waiting for review (or with another status), with gate results and the champion,
    a page at a time, by tenant then version."""
    commands.review_list(_ctx(), status.value, json_out, limit, offset)


def _target(tenant: str | None, version: str | None, base_version: str | None) -> None:
    if base_version is not None and (tenant or version):
        raise UserError("give TENANT VERSION or --base-version N (not both)")
    if base_version is None and not (tenant and version):
        raise UserError("give TENANT VERSION, or --base-version N for a base model")


@review_app.command("approve")
def review_approve(tenant: Optional[str] = typer.Argument(None), version: Optional[str] = typer.Argument(None),
                   base_version: Optional[str] = typer.Option(None, "--base-version",
                                                              help="approve this tailor-base candidate instead"),
                   reviewer: Optional[str] = _acting("--reviewer"),
                   reason: str = typer.Option(..., help="why"),
                   override: Optional[str] = typer.Option(None, "--override-reason", help="approve despite failed gates, because ..."),
                   json_out: bool = typer.Option(False, "--json"), dry_run: bool = _dry_run()) -> None:
    """Make a candidate the tenant's champion (gates and four-eyes apply), or with --base-version
    make a base current: what adaptations start from (four-eyes: not who trained it)."""
    _target(tenant, version, base_version)
    if base_version is not None:
        commands.approve_base(_ctx(), base_version, reviewer, reason, json_out, dry_run)
        return
    commands.approve(_ctx(), tenant, version, reviewer, reason, override, json_out, dry_run)


@review_app.command("reject")
def review_reject(tenant: Optional[str] = typer.Argument(None), version: Optional[str] = typer.Argument(None),
                  base_version: Optional[str] = typer.Option(None, "--base-version",
                                                             help="reject this tailor-base candidate instead"),
                  reviewer: Optional[str] = _acting("--reviewer"),
                  reason: str = typer.Option(...), json_out: bool = typer.Option(False, "--json"),
                  dry_run: bool = _dry_run()) -> None:
    """Reject a candidate (or, with --base-version, a base candidate)."""
    _target(tenant, version, base_version)
    if base_version is not None:
        commands.reject_base(_ctx(), base_version, reviewer, reason, json_out, dry_run)
        return
    commands.reject(_ctx(), tenant, version, reviewer, reason, json_out, dry_run)


@app.command()
def rollback(tenant: Optional[str] = typer.Argument(None), base_version: Optional[str] = typer.Option(None),
             reason: str = typer.Option(..., help="why"),
             actor: Optional[str] = _acting("--actor"),
             json_out: bool = typer.Option(False, "--json"),
             dry_run: bool = _dry_run()) -> None:
    """Restore a tenant's previous approved version, or make an older base current. Who may do it
    alone is gates.rollback_alone; anyone else requests it and a second person completes it."""
    if bool(tenant) == bool(base_version):
        raise UserError("give a TENANT or --base-version X (not both)")
    commands.rollback(_ctx(), tenant, base_version, reason, actor, json_out, dry_run)


@app.command()
def lineage(tenant: Optional[str] = typer.Argument(None), version: Optional[str] = typer.Option(None),
            at: Optional[str] = typer.Option(None, help="ISO time: what served then"),
            all_tenants: bool = typer.Option(False, "--all", help="every tenant and every version (auditors)"),
            html: Optional[Path] = typer.Option(None, "--html", help="with --all: write an HTML audit report"),
            force: bool = typer.Option(False, "--force", help="replace an existing --html file"),
            tenant_data: Optional[str] = typer.Option(None, "--tenant-data", metavar="TENANT",
                                                      help="which bases and which tenants' champions were trained "
                                                           "on this tenant's data, and when"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """What serves a tenant (or served at a time): data, validation, base, metrics, approvals."""
    if tenant_data is not None:
        if tenant or all_tenants or html or version or at:
            raise UserError("--tenant-data TENANT goes alone (with --json)")
        commands.lineage_tenant_data(_ctx(), tenant_data, json_out)
        return
    if bool(tenant) == all_tenants:
        raise UserError("give a TENANT or --all (not both)")
    if all_tenants:
        commands.lineage_all(_ctx(), json_out, html, force)
        return
    if html is not None:
        raise UserError("--html writes the audit report of every tenant: use it with --all")
    when = None
    if at:
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise UserError(f"--at {at!r} is not an ISO time such as 2026-11-27T10:00:00Z") from None
    commands.lineage(_ctx(), tenant, version, when, json_out)


@audit_app.command("verify")
def audit_verify(repair: bool = typer.Option(False, "--repair", help="finish interrupted transitions first"),
                 full: bool = typer.Option(False, "--full", help="every record and every tenant, not only what "
                                                                  "changed since the last clean verify"),
                 json_out: bool = typer.Option(False, "--json")) -> None:
    """Recompute the audit chain, check its anchors, and name every change made outside Tailor."""
    commands.audit_verify(_ctx(), repair, json_out, full)


@audit_app.command("rotate-key")
def audit_rotate_key(reason: str = typer.Option(..., help="why (e.g. the key may have leaked)"),
                     key_path: Optional[str] = typer.Option(None, "--key-path", help="where the new key goes "
                                                            "(stores.signing_key); default: where the key is now"),
                     actor: Optional[str] = _person(),
                     json_out: bool = typer.Option(False, "--json")) -> None:
    """Hand the audit log over to a new signing key: a signed record, the new pin committed to git."""
    commands.audit_rotate_key(_ctx(), reason, key_path, actor, json_out)


@review_app.command("serve")
def review_serve(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8765)) -> None:
    """Start the review page (log in with a user from `tailor user add`)."""
    commands.review_serve(_ctx(), host, port)


@app.command("serve-api")
def serve_api(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8780),
              add_key: Optional[str] = typer.Option(None, "--add-key", metavar="CALLER",
                                                    help="make an API key for CALLER, print it once and exit"),
              tenants: str = typer.Option("", "--tenants", help="with --add-key: the tenants CALLER may query "
                                                                "(comma-separated; '*' = all)"),
              revoke_key: Optional[str] = typer.Option(None, "--revoke-key", metavar="CALLER",
                                                       help="delete CALLER's key and exit")) -> None:
    """Serve every tenant's champion over HTTP from one process (encoder loaded once, deltas on
    demand, approvals picked up without a restart). Callers need a key from --add-key."""
    commands.serve_api(_ctx(), host, port, add_key, tenants, revoke_key)


@app.command("mlflow-ui")
def mlflow_ui(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(5000)) -> None:
    """Open MLflow's own UI on this workspace's store (runs, models, aliases, artifacts)."""
    commands.mlflow_ui(_ctx(), host, port)


@user_app.command("add")
def user_add(name: str, password_stdin: bool = typer.Option(False, "--password-stdin",
                                                           help="read the password from standard input"),
             json_out: bool = typer.Option(False, "--json")) -> None:
    """Add (or reset) a review-page user; the password is stored hashed (scrypt)."""
    commands.user_add(_ctx(), name, password_stdin, json_out)


@data_app.command("show")
def data_show(tenant: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """The tenant's current data version and its history."""
    commands.data_show(_ctx(), tenant, json_out)


@data_app.command("checkout")
def data_checkout(tenant: str, rev: str = typer.Argument(..., help="git commit or md5 prefix"),
                  json_out: bool = typer.Option(False, "--json"), dry_run: bool = _dry_run()) -> None:
    """Make an earlier data version current again."""
    commands.data_checkout(_ctx(), tenant, rev, json_out, dry_run)


@data_app.command("prune")
def data_prune(user: Optional[str] = _acting("--actor"), json_out: bool = typer.Option(False, "--json"),
               dry_run: bool = _dry_run("list what data.keep_versions / data.keep_days would prune; change nothing")
               ) -> None:
    """Prune every tenant's older data versions (DVC cache and remote, validation pages) as
    data.keep_versions / data.keep_days say, never one a champion, a pending candidate or a base
    was trained on; each tenant's pruning is recorded in the audit log."""
    commands.data_prune(_ctx(), user, json_out, dry_run)


@tenant_app.command("set")
def tenant_set(tenant: str, train_base: YesNo = typer.Option(..., "--train-base",
                                                            help="may this tenant's data train the shared base?"),
               reason: str = typer.Option(..., help="why (e.g. the contract clause)"),
               user: Optional[str] = _acting("--actor"), json_out: bool = typer.Option(False, "--json"),
               dry_run: bool = _dry_run()) -> None:
    """Record whether the tenant's data may train the shared base (audited; meta-train follows it)."""
    commands.tenant_set(_ctx(), tenant, train_base.value == "yes", reason, user, json_out, dry_run)


@tenant_app.command("show")
def tenant_show(tenant: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """The tenant's consent to train the base (recorded or the default), data and erasure."""
    commands.tenant_show(_ctx(), tenant, json_out)


@tenant_app.command("erase")
def tenant_erase(tenant: str, reason: str = typer.Option(..., help="why (e.g. the customer's request)"),
                 user: Optional[str] = _acting("--actor"), json_out: bool = typer.Option(False, "--json"),
                 dry_run: bool = _dry_run("list everything the erasure would remove or change; change nothing")
                 ) -> None:
    """Erase the tenant's data everywhere Tailor keeps it (DVC cache and remote, validation pages,
    MLflow artifacts, Prefect runs, caches); archive its versions; mark the bases trained on it."""
    commands.tenant_erase(_ctx(), tenant, reason, user, json_out, dry_run)


@app.command()
def serve(once: bool = typer.Option(False, "--once", help="run the scheduled adaptation once and exit"),
          pool: Optional[str] = typer.Option(None, "--pool", help="deploy to this Prefect process work pool (a "
                                             "`prefect worker` runs the flows) instead of serving here")) -> None:
    """Scheduled Prefect deployments: re-adapt changed tenants on params.yaml's cron and timezone.
    Served by this command, or deployed to a work pool with --pool."""
    commands.serve(_ctx(), once, pool)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 internal error, 2 user mistake).

    Whatever fails, in the CLI, inside a Prefect flow or task, or in a library, the user sees one
    line; the traceback goes to the workspace's log file (and to the screen with ``--debug``).
    """
    args = list(argv if argv is not None else sys.argv[1:])
    # --debug anywhere before a `--`: Click knows options only at the level they are declared on,
    # so a trailing `tailor predict acme x --debug` is moved to the front
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end]
    if debug:
        args = ["--debug"] + [a for a in args[:end] if a != "--debug"] + args[end:]
    since = progress.started()
    try:
        code = app(args=args, standalone_mode=False)
        if code == 130:   # Typer turns Ctrl-C into Exit(130) and, outside standalone mode, returns it
            return _aborted()
        if isinstance(code, int) and not isinstance(code, bool) and code:   # another typer.Exit(code)
            return code
        progress.elapsed(since)  # after a long command (one that showed progress): how long it took
        return 0
    except (typer.Exit, SystemExit) as exc:
        if any(isinstance(e, KeyboardInterrupt) for e in _chain(exc, every_context=True)):   # Lightning: exit 1 on Ctrl-C
            return _aborted()
        return int(getattr(exc, "exit_code", getattr(exc, "code", 0)) or 0)
    except (typer.Abort, KeyboardInterrupt):
        return _aborted()
    except Exception as exc:  # noqa: BLE001 - the last line of defence for people
        return _fail(args, exc, debug)


def _aborted() -> int:
    print("aborted", file=sys.stderr)
    return 130


def _fail(args: list[str], exc: Exception, debug: bool) -> int:
    usage = hasattr(exc, "format_message") and hasattr(exc, "exit_code")  # click's usage errors
    user = None if usage else user_error(exc)
    logged = logs.record(_workspace(), args, exc, user_error=usage or user is not None, debug=debug)
    if debug and logged is None:  # with a log, --debug showed the record (and traceback) already
        traceback.print_exception(exc, file=sys.stderr)
    if usage:
        print(f"error: {one_line(exc.format_message())} (see `tailor --help`)", file=sys.stderr)
        return 2
    if user is not None:
        print(f"error: {one_line(str(user))}", file=sys.stderr)
        return user.exit_code
    full = disk_full(exc)
    if full is None and _workspace_full():  # a server or library said it otherwise (an HTTP 500 of Prefect's)
        full = str(_workspace().root)
    if full is not None:
        print(f"error: no space left on device{f' ({full})' if full else ''}: the command stopped and kept "
              "the previous state; free disk space and run it again", file=sys.stderr)
        return 2
    where = f"traceback in {logged}" if logged else "rerun with --debug for the traceback"
    print(f"internal error: {type(exc).__name__}: {one_line(str(exc))[:300]} ({where})", file=sys.stderr)
    return 1


def _chain(exc: BaseException, every_context: bool):
    """``exc`` and what lies behind it, breadth first: causes, exception groups' members and (for
    Prefect's own exceptions, raised while handling a task's, or for all with ``every_context``)
    the exception being handled when it was raised."""
    stack, seen = [exc], set()
    while stack:
        current = stack.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.append(current.__cause__)
        if every_context or type(current).__module__.startswith("prefect"):
            stack.append(current.__context__)


def user_error(exc: BaseException) -> UserError | None:
    """The ``UserError`` behind ``exc``: itself, its cause, or one Prefect wrapped (in an exception
    group, a failed state, a crashed run) on the way out of a flow or task."""
    return next((e for e in _chain(exc, every_context=False) if isinstance(e, UserError)), None)


def disk_full(exc: BaseException) -> str | None:
    """The file a full disk (or quota) refused to write, "" if unnamed, or None when ``exc`` was no
    such failure: it is searched, as ``user_error`` does, through causes and Prefect's wrappers."""
    full = next((e for e in _chain(exc, every_context=True)
                 if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)), None)
    return None if full is None else (full.filename or "")


def _workspace_full() -> bool:
    ws = _workspace()
    free = commands.free_bytes(ws) if ws is not None else None
    return free is not None and free < commands.MIN_FREE


def _workspace() -> Workspace | None:
    try:
        ws = Workspace.find(STATE["workspace"])
    except (OSError, RuntimeError, ValueError):
        return None
    return ws if ws.state_dir.is_dir() else None


def console() -> None:
    STATE["process_started"] = commands.process_started()   # the console script's own process: its start
    leave(main())


def leave(code: int) -> None:
    """Exit once the command's work is done and said: threads joined, exit handlers run (logs
    flushed, Prefect's services drained, the server lease let go), then out, without the
    interpreter tearing down every module torch, Prefect and MLflow loaded: seconds of nothing on
    a quiet machine, tens on a loaded one, which ``meta_train.max_minutes`` has to cover
    (benchmarks/results/budget.md)."""
    import atexit
    import os
    import threading

    try:
        threading._shutdown()   # what the interpreter's exit does first: non-daemon threads joined
        atexit._run_exitfuncs()
    finally:
        os._exit(_flushed(code))


def _flushed(code: int) -> int:
    """``code``, unless what a successful command printed cannot be written (a full disk, a reader
    gone): then the command failed, as the interpreter's own exit would have said (its 120)."""
    try:
        if sys.stdout is not None:   # None: the caller closed it (`>&-`)
            sys.stdout.flush()
    except (OSError, ValueError) as exc:
        if code == 0:
            code = 2 if disk_full(exc) is not None else 1
            reason = ("no space left on device" if code == 2 else getattr(exc, "strerror", None) or str(exc))
            if getattr(exc, "errno", None) != errno.EPIPE:   # a closed pipe's reader wanted no more
                _say_last(f"error: the command's output could not be written ({reason}); its work is done")
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass   # nowhere left to say anything
    return code


def _say_last(line: str) -> None:
    try:
        if sys.stderr is not None:
            print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
