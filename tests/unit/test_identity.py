"""Identities that only look alike are refused where they enter (`tailor user add`, TAILOR_USER):
a Cyrillic "о" in a Latin name, a zero-width space; names in one script, or in the script mixes
people write (Japanese with Latin), are kept; NFKC, case and spacing make no new person."""
import io
import sys

import pytest

from registry.trail import identity
from tailor import cli
from tailor.web import users
from workspace.errors import UserError
from workspace.paths import Workspace

LOOK_ALIKES = ["b\u043eb",          # Cyrillic о in "bob"
               "bo\u200bb",         # zero-width space
               "\u200dbob",         # zero-width joiner
               "bob\u2060",         # word joiner
               "\u0392ob",          # Greek capital beta
               "\u3164bob"]         # Hangul filler, renders as nothing


@pytest.fixture
def ws(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    ws.params_file.write_text("{}\n", encoding="utf-8")
    return ws


def add(ws, name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    capsys.readouterr()
    code = cli.main(["--workspace", str(ws.root), "user", "add", name, "--password-stdin"])
    return code, capsys.readouterr()


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_user_add_refuses_a_look_alike_in_one_line(ws, name, monkeypatch, capsys):
    assert add(ws, "bob", monkeypatch, capsys)[0] == 0
    code, out = add(ws, name, monkeypatch, capsys)
    assert code == 2 and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert "user name" in out.err and ("invisible" in out.err or "mixes letters" in out.err)
    assert list(users.load(ws)) == ["bob"]  # nothing added


@pytest.mark.parametrize("name, who", [("Bob", "bob"), ("  ＢＯＢ ", "bob"), ("José Núñez", "josé núñez"),
                                       ("山田 太郎", "山田 太郎"), ("Yamada 山田", "yamada 山田"), ("Ελένη", "ελένη"),
                                       ("O\u2019Brien", "o\u2019brien")])
def test_names_in_one_script_or_a_usual_mix_are_kept_normalised(ws, name, who, monkeypatch, capsys):
    code, out = add(ws, name, monkeypatch, capsys)
    assert code == 0 and who in users.load(ws)


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_tailor_user_refuses_a_look_alike(name, monkeypatch):
    monkeypatch.setenv("TAILOR_USER", name)
    with pytest.raises(UserError, match="TAILOR_USER .* (invisible|mixes letters)"):
        identity.cli_identity()
    with pytest.raises(UserError, match="TAILOR_USER"):
        identity.resolve(None, "--reviewer")


def test_a_hidden_character_makes_no_new_person():
    assert identity.same_person("bo\u200bb", "bob") and identity.normalise("ＢＯＢ") == "bob"
    assert not identity.same_person("b\u043eb", "bob")  # a look-alike is another name: refused where it enters
