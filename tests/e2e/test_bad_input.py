"""Every bad input a user can give `tailor ingest`, through the real CLI and Prefect flow: exit 2,
exactly one line on stderr and nothing on stdout, the previous data version still current, the
traceback in the workspace log, and nothing of a linked or oversized file copied anywhere."""
import json
import os
import re
import subprocess
import sys

import pytest

from tailor import cli
from tests.conftest import synthetic_tenant, tiny_settings
from workspace import versioning
from workspace.create import init_workspace
from workspace.paths import Workspace

GOOD = "text,label\n" + "".join(f"{t},{lb}\n" for t, lb in zip(*synthetic_tenant(["animal", "food"], 6)))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "ws"
    settings = tiny_settings().replace("limits", max_file_mb=0.01, max_rows=40, quarantine_kb=1)
    init_workspace(root, settings)
    good = root.parent / "good.csv"
    good.write_text(GOOD)
    assert cli.main(["--workspace", str(root), "ingest", "acme", str(good)]) == 0
    return Workspace(root)


def run(ws, capsys, *argv):
    capsys.readouterr()
    code = cli.main(["--workspace", str(ws.root), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def case(tmp, name, content):
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD_FILES = {  # name: (file name, content, words the one line must contain)
    "empty": ("e.csv", "", "is empty"),
    "header only": ("h.csv", "text,label\n", "header but no rows"),
    "wrong columns": ("c.csv", "body,category\nhi,a\n", "lacks column(s) text, label"),
    "binary": ("b.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "NUL bytes"),
    "not utf-8": ("l.csv", b"text,label\ncaf\xe9,a\n", "not UTF-8"),
    "broken quoting": ("q.csv", 'text,label\n"unclosed,a\n', "not a valid CSV"),
    "unquoted comma": ("w.csv", "text,label\nhello, world,a\n", "3 fields but the header has 2"),
    "duplicate columns": ("d.csv", "text,Text,label\na,b,c\n", "2 columns named 'text'"),
    "jsonl not an object": ("o.jsonl", '{"text": "a", "label": "b"}\n[1, 2]\n', "line 2 is not a JSON object"),
    "jsonl not json": ("j.jsonl", '{"text": "a", "label": \n', "line 1 is not valid JSON"),
    "jsonl list as text": ("t.jsonl", '{"text": [0, "list", "text"], "label": "b"}\n', "text is a list"),
    "jsonl boolean label": ("v.jsonl", '{"text": "a", "label": true}\n', "label is true/false"),
    "over the size limit": ("big.csv", "text,label\n" + "x" * 20000 + ",a\n", "MB limit"),
    "over the row limit": ("rows.csv", "text,label\n" + "".join(f"t{i},a\n" for i in range(41)), "more than 40 rows"),
    "fails validation": ("few.csv", "text,label\nonly one,A\n\" \",B\nx,B\n", "failed validation"),
    "unsupported type": ("x.xlsx", "text,label\n", "unsupported file type"),
    "control characters": ("\x1b[31mred\nname.csv", "text,label\n", "header but no rows"),
}


# All bad files run through the real console entry in ONE child process (it reuses the workspace's
# Prefect server, which this test process keeps alive), so whatever Prefect or a library writes to
# the process's real stderr is seen, as a user would see it; markers split the commands' output.
DRIVER = """
import json, sys
from tailor.cli import main
for kind, argv in json.loads(sys.argv[1]):
    code = main(argv)
    sys.stdout.flush(); sys.stderr.flush()
    print(f"@@end {kind} {code}", flush=True)
    print(f"@@end {kind}", file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def outputs(ws, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-files")
    cases = [(kind, ["--workspace", str(ws.root), "ingest", "acme", str(case(folder, name, content))])
             for kind, (name, content, _) in BAD_FILES.items()]
    before = versioning.history(ws, "acme")
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    outs = re.split(r"@@end (.+?) (\d+)\n", done.stdout)
    errs = re.split(r"@@end .+?\n", done.stderr)
    found = {}
    for i, (kind, _) in enumerate(cases):
        assert outs[3 * i + 1] == kind
        found[kind] = (int(outs[3 * i + 2]), outs[3 * i], errs[i])
    return before, found


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_one_line_exit_2_and_loses_nothing(ws, outputs, kind):
    before, found = outputs
    code, out, err = found[kind]
    assert code == 2
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and BAD_FILES[kind][2] in err and "Traceback" not in err and "\x1b" not in err
    assert versioning.history(ws, "acme") == before
    assert versioning.current_version(ws, "acme") == before[0]


def test_symlink_to_a_system_file_is_refused_and_nothing_is_copied(ws, tmp_path, capsys):
    link = tmp_path / "passwd.csv"
    link.symlink_to("/etc/passwd")
    code, out, err = run(ws, capsys, "ingest", "acme", str(link))
    assert (code, out, len(err.splitlines())) == (2, "", 1) and "symbolic link" in err
    secret = open("/etc/passwd").read().splitlines()[0]
    for path in ws.state_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000 and "logs" not in path.parts:
            assert secret not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("kind", ["folder", "missing", "fifo", "bad tenant id"])
def test_what_cannot_be_a_file_is_refused_before_any_flow(ws, tmp_path, capsys, kind):
    target, tenant = tmp_path / "x.csv", "acme"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "bad tenant id":
        target, tenant = case(tmp_path, "x.csv", GOOD), "../Acme"
    code, out, err = run(ws, capsys, "ingest", tenant, str(target))
    assert (code, out, len(err.splitlines())) == (2, "", 1), err


def test_a_refused_file_is_quarantined_as_a_bounded_prefix(ws, tmp_path, capsys):
    code, _, _ = run(ws, capsys, "ingest", "acme", str(case(tmp_path, "huge.csv", "text,label\n" + "y" * 50000)))
    assert code == 2
    reports = sorted(ws.quarantine_dir("acme").glob("*huge.csv.report.json"))
    record = json.loads(reports[-1].read_text())
    assert record["n_bytes"] == 50011 and record["kept_bytes"] == 1024 and record["truncated"] is True
    assert reports[-1].with_name(reports[-1].name.removesuffix(".report.json")).stat().st_size == 1024


def test_the_traceback_goes_to_the_log_and_debug_shows_it(ws, tmp_path, capsys):
    bad = case(tmp_path, "h.csv", "text,label\n")
    log = ws.state_dir / "logs" / "tailor.log"
    size = log.stat().st_size if log.exists() else 0
    assert run(ws, capsys, "ingest", "acme", str(bad))[0] == 2
    assert "Traceback" in log.read_text()[size:] and "has a header but no rows" in log.read_text()[size:]
    code, out, err = run(ws, capsys, "--debug", "ingest", "acme", str(bad))
    assert code == 2 and "Traceback" in err and err.splitlines()[-1].startswith("error: ")
