"""params.yaml: every setting round-trips, and a wrong one is refused before anything runs."""
import pytest
import yaml

from workspace.errors import UserError
from workspace.settings import Settings, default_params_yaml, load_settings, settings_from_dict
from workspace.tenants import check_tenant_id, tenant_model_name


def test_written_defaults_load_back_identically(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(default_params_yaml())
    assert load_settings(path) == Settings()
    assert "# fewest examples of each label" in path.read_text()


def test_missing_file_means_defaults(tmp_path):
    assert load_settings(tmp_path / "none.yaml") == Settings()


@pytest.mark.parametrize("raw, message", [
    ({"meta_train": {"algorithm": "sgd"}}, "use pooled, fomaml, reptile, pooled-fomaml"),
    ({"meta_train": {"inner_steps": "five"}}, "must be int"),
    ({"meta_train": {"inner_steps": True}}, "must be int"),
    ({"adapt": {"holdout_fraction": 0.99}}, "holdout_fraction"),
    ({"validation": {"min_labels": 1}}, "min_labels"),
    ({"gates": {"unknown": 1}}, "unknown setting"),
    ({"nonsense": {}}, "unknown section"),
    ({"encoder": "tiny"}, "must be a mapping"),
])
def test_wrong_settings_are_refused_with_the_setting_named(raw, message):
    with pytest.raises(UserError, match=message):
        settings_from_dict(raw)


def test_ints_are_accepted_where_floats_are_expected():
    assert settings_from_dict({"meta_train": {"inner_lr": 1}}).meta_train.inner_lr == 1.0


def test_broken_yaml_is_one_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("meta_train: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_settings(path)


def test_a_folder_as_params_yaml_is_one_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.mkdir()
    with pytest.raises(UserError, match="is a folder"):
        load_settings(path)


def test_tenant_lists_parse_from_comma_separated_text():
    s = settings_from_dict(yaml.safe_load("meta_train: {tenants: 'a-1, b-2,', val_tenants: c-3}"))
    assert s.meta_train.tenant_list() == ["a-1", "b-2"] and s.meta_train.val_tenant_list() == ["c-3"]


@pytest.mark.parametrize("bad", ["", "a", "Acme", "acme_corp", "-acme", "../etc", "a" * 64, "acme/x"])
def test_bad_tenant_ids_are_refused_before_any_path_is_built(bad):
    with pytest.raises(UserError, match="invalid tenant id"):
        check_tenant_id(bad)


def test_good_tenant_id_names_its_model():
    assert tenant_model_name("acme-2") == "tailor-tenant-acme-2"


# --- issue 31, finding 9: params.yaml parsed with limits, every value checked as data ---------------

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
        "encoder: {name: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]}\n")
HOSTILE = {
    "non-string section": ("1: {}\n", "not a name"),
    "null section": ("~: {}\n", "not a name"),
    "non-string setting": ("limits: {7: 3}\n", "not a name"),
    "deep nesting": ("encoder: " + "[" * 20000 + "]" * 20000 + "\n", "nested more than"),
    "alias bomb in encoder.name": (BOMB, "aliases expand"),
    "a long value": ("encoder: {name: " + "x" * 100_000 + "}\n", "is not known"),
    "a long key": ("encoder: {" + "k" * 1000 + ": 1}\n", "unknown setting"),
    "a collection for a number": ("limits: {max_rows: [1, 2, 3]}\n", "must be int"),
    "a huge integer": ("limits: {max_rows: " + "9" * 5000 + "}\n", "not valid YAML"),
    "a list": ("[1, 2]\n", "mapping of sections"),
}


@pytest.mark.parametrize("text, message", HOSTILE.values(), ids=HOSTILE)
def test_hostile_params_yaml_is_one_short_line_in_under_a_second(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(UserError, match=message) as caught:
        load_settings(path)
    took = time.perf_counter() - start
    line = str(caught.value)
    assert took < 1.0, f"{took:.2f} s"
    assert "\n" not in line and len(line) < 300, line[:400]
    assert "x" * 81 not in line and "k" * 81 not in line and "9" * 81 not in line


def test_the_cli_says_it_in_one_line_with_exit_2(tmp_path):
    """As the issue ran it: `tailor review list` in a workspace whose params.yaml has `1:` was
    "internal error: TypeError", exit 1; the bomb took 59 s and 1.8 GB."""
    from workspace.paths import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    for text in ("1: {}\n", BOMB):
        ws.params_file.write_text(text)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(ws.root),
                               "review", "list"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-500:]
        assert done.stderr.startswith("error: params.yaml") and time.perf_counter() - start < 30


def test_a_fifo_or_an_oversized_file_as_params_yaml_is_refused(tmp_path):
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        load_settings(fifo)  # never blocks waiting for a writer
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(UserError, match="over 1 MB"):
        load_settings(big)


def test_a_command_reads_its_settings_once_and_a_changed_file_again(tmp_path, monkeypatch):
    """The face, the flow and its tasks each open the workspace: the file is parsed once per
    process while it is unchanged, and again as soon as it changes."""
    import yaml as yaml_module

    from workspace import settings as module

    path = tmp_path / "params.yaml"
    path.write_text("adapt:\n  inner_steps: 3\n")
    parsed = []
    real = yaml_module.load
    monkeypatch.setattr(module.yaml, "load", lambda text, Loader: parsed.append(1) or real(text, Loader=Loader))
    first = module.load_settings(path)
    assert module.load_settings(path) is first and len(parsed) == 1
    path.write_text("adapt:\n  inner_steps: 4\n")
    assert module.load_settings(path).adapt.inner_steps == 4 and len(parsed) == 2


@pytest.mark.parametrize("stores, message", [
    ({"tracking_uri": "postgresql://tailor:secret@db:5432/mlflow"}, "stores.tracking_uri holds a password"),
    ({"prefect_database_url": "postgresql+asyncpg://tailor:secret@db/prefect"}, "holds a password"),
    ({"prefect_database_url": "postgresql://tailor@db/prefect"}, "postgresql+asyncpg://"),
    ({"prefect_database_url": "postgresql+asyncpg://tailor@db/prefect", "prefect_api_url": "http://p:4200/api"},
     "set one of them"),
])
def test_database_settings_carry_no_password_and_name_the_driver_prefect_needs(stores, message):
    with pytest.raises(UserError, match=message.replace("+", r"\+").replace("(", r"\(")):
        settings_from_dict({"stores": stores})
    ok = settings_from_dict({"stores": {"tracking_uri": "postgresql://tailor@db:5432/mlflow",
                                        "prefect_database_url": "postgresql+asyncpg://tailor@db:5432/prefect"}})
    assert ok.stores.tracking_uri.startswith("postgresql://")


def test_the_settings_page_lists_every_setting_with_its_default_and_help():
    """docs/settings.md's tables are the dataclasses' own defaults and help texts: a setting added,
    removed or re-documented in code without the page fails here."""
    import dataclasses
    import json
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text(encoding="utf-8")
    page = page.split("## Every setting", 1)[1].split("\n## ", 1)[0]
    documented = {m.group(1): (m.group(2), m.group(3).replace("\\|", "|"))
                  for m in re.finditer(r"^\| `([a-z_]+\.[a-z_0-9]+)` \| `(.*?)` \| (.*) \|$", page, re.M)}
    expected = {}
    for section in dataclasses.fields(Settings):
        obj = getattr(Settings(), section.name)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            expected[f"{section.name}.{f.name}"] = (str(value) if isinstance(value, bool) else json.dumps(value),
                                                   f.metadata["help"])
    assert documented == expected, "docs/settings.md disagrees with workspace/settings.py: update the page's tables"
