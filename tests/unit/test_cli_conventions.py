"""CLI conventions users of MLflow, DVC and Prefect expect: --version, shell completion, choices
refused by Typer with one line and exit 2, and --debug anywhere on the line."""
from importlib.metadata import version

from tailor import cli


def test_version_prints_the_package_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tailor {version('tailor')}"


def test_shell_completion_is_offered_and_flags_take_no_value_in_help(capsys):
    assert cli.main(["--help"]) == 0
    assert "--install-completion" in capsys.readouterr().out
    assert cli.main(["review", "list", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--json" in out and "<bool>" not in out, "a flag is shown as taking a value"


def test_choices_are_refused_in_one_line_with_exit_2(capsys):
    for argv, option in ((["review", "list", "--status", "bogus"], "--status"),
                         (["meta-train", "--algorithm", "bogus"], "--algorithm")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and option in err and "'bogus'" in err and "\n" not in err


def test_debug_is_accepted_after_the_subcommand(tmp_path, capsys):
    """`--debug` at the end of the line is the global flag, not an unknown option of the command."""
    assert cli.main(["-w", str(tmp_path), "review", "list", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "No such option" not in err and cli.STATE["debug"] is True
    assert cli.main(["-w", str(tmp_path), "predict", "acme", "--", "--debug"]) == 2  # after `--`: a text
    assert cli.STATE["debug"] is False


def test_mlflow_ui_opens_mlflows_own_ui_on_the_workspace_store(tmp_path, capsys, monkeypatch):
    """One worker; "starting" at once, the address only once it answers (issue 31: it printed its
    URL 48 s before answering, ran 11 processes on 2 cores and invited alias edits)."""
    import socket
    import sys
    import time

    from tailor import commands
    from workspace.create import init_workspace

    ws = init_workspace(tmp_path / "ws")
    assert cli.main(["-w", str(ws.root), "mlflow-ui"]) == 2, "no store yet: nothing to show"
    assert "no MLflow store yet" in capsys.readouterr().err
    ws.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    ws.mlflow_db.touch()
    argv = commands._ui_argv(f"sqlite:///{ws.mlflow_db}", ws.artifacts_dir.resolve().as_uri(), "127.0.0.1", 5055)
    assert argv[1:4] == ["-m", "mlflow", "ui"] and argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{ws.mlflow_db}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    answered = []
    # a stand-in for MLflow's server: slow to start, answers one request, then stops
    stub = ("import http.server, os, sys, time; time.sleep(1.5)\n"
            # MLflow's job runner (seven huey consumers) off: started without it, or not at all
            "if os.environ.get('MLFLOW_SERVER_ENABLE_JOB_EXECUTION') != 'false': sys.exit(3)\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
            "    def log_message(self, *a): pass\n"
            f"s = http.server.HTTPServer(('127.0.0.1', {port}), H); s.handle_request(); s.server_close()")
    monkeypatch.setattr(commands, "_ui_argv", lambda *a: [sys.executable, "-c", stub])
    start = time.monotonic()
    capsys.readouterr()
    assert cli.main(["-w", str(ws.root), "mlflow-ui", "--port", str(port)]) == 0
    out = capsys.readouterr()
    assert time.monotonic() - start >= 1.5, "the address came only once the server answered"
    assert out.err.startswith("starting MLflow's UI") and f"http://127.0.0.1:{port}" in out.out
    assert "drift" in out.err and "tailor review" in out.err


EXIT_PROBE = """
import atexit, sys
class Probe:
    def __del__(self):
        print("torn down", flush=True)
probe = Probe()   # the interpreter's teardown of modules would collect it
atexit.register(lambda: print("exit handlers ran", flush=True))
from tailor.cli import console
console()
"""


def test_the_command_leaves_after_its_exit_handlers_without_the_interpreters_teardown(tmp_path):
    """Issue 31, finding 8: tearing down the modules torch, Prefect and MLflow load took 2 s on a quiet
    machine and 12 s beside 8 busy processes, after the command's work, outside any budget. The exit
    code, what was printed and the exit handlers (logs, Prefect's services, leases) are kept."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-c", EXIT_PROBE, "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("tailor ") and "exit handlers ran" in ok.stdout
    assert "torn down" not in ok.stdout
    bad = subprocess.run([sys.executable, "-c", EXIT_PROBE, "-w", str(tmp_path / "nowhere"), "review", "list"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "exit handlers ran" in bad.stdout


def test_output_that_cannot_be_written_fails_the_command_and_a_closed_stream_does_not():
    """A successful command whose printed result cannot be written (a full disk) exits 2 saying so
    (the interpreter's own exit said 120; `leave` said 0 at first); one whose stderr the caller
    closed keeps its code (was 1 with a traceback)."""
    import errno
    import io
    import os
    import subprocess
    import sys

    import pytest

    class Full:   # what is left in stdout's buffer when the command ends meets a full disk
        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", Full())
        mp.setattr(sys, "stderr", io.StringIO())
        assert cli._flushed(0) == 2 and cli._flushed(2) == 2
        said = sys.stderr.getvalue()
    assert said.startswith("error: the command's output could not be written (no space left on device)")
    run = f"{sys.executable} -c 'from tailor.cli import console; console()'"
    if os.path.exists("/dev/full"):   # here the device refuses the first write, inside the command
        full = subprocess.run(f"{run} --version > /dev/full", shell=True, capture_output=True, text=True)
        assert full.returncode == 2 and "no space left on device" in full.stderr and "Traceback" not in full.stderr
    closed = subprocess.run(f"{run} --version 2>&-", shell=True, capture_output=True, text=True)
    assert closed.returncode == 0 and closed.stdout.startswith("tailor ")
    none = subprocess.run(f"{run} --version >&-", shell=True, capture_output=True, text=True)
    assert none.returncode == 0 and "Traceback" not in none.stderr


def test_ctrl_c_exits_130_saying_aborted(monkeypatch, capsys):
    """Typer returns Ctrl-C's 130 instead of raising it outside standalone mode, and Lightning turns
    it into exit(1): both read 0 or 1 before."""
    import sys

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def as_lightning_does(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)

    for command in (interrupted, as_lightning_does):
        monkeypatch.setattr(cli.commands, "meta_train", command)
        capsys.readouterr()
        assert cli.main(["meta-train"]) == 130
        assert capsys.readouterr().err.strip() == "aborted"
