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


# --- issue 31, finding 4: invisible and combining-mark-only additions, service look-alikes ----------

import unicodedata  # noqa: E402

from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

_ALL = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
IGNORABLES = sorted(set(identity._IGNORABLE.findall(_ALL)))  # Unicode's Default_Ignorable_Code_Point
LOOSE_MARKS = [ch for ch in _ALL if unicodedata.category(ch) in ("Mn", "Me")]
NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)


def test_the_character_classes_are_unicodes():
    """4,174 default-ignorable code points (Unicode 15+), the combining grapheme joiner, variation
    selectors and fillers among them; the combining marks (Mn, Me) by the thousand."""
    assert len(IGNORABLES) > 4000 and {"\u034f", "\ufe0f", "\ufe00", "\U000e0100", "\u200b", "\u3164",
                                        "\u115f", "\uffa0", "\u00ad", "\u180e"} <= set(IGNORABLES)
    assert len(LOOSE_MARKS) > 1500


@given(name=NAMES, mark=st.sampled_from(IGNORABLES), at=st.integers(min_value=0, max_value=12))
@hsettings(max_examples=300, deadline=None)
def test_any_default_ignorable_addition_is_refused_and_makes_no_new_person(name, mark, at):
    marked = name[:at] + mark + name[at:]
    with pytest.raises(UserError, match="invisible"):
        identity.checked(marked, "user name")
    assert identity.same_person(marked, name)


@given(name=NAMES, mark=st.sampled_from(LOOSE_MARKS), before=st.sampled_from(["", " ", "1", ".", "-", "'"]))
@hsettings(max_examples=300, deadline=None)
def test_a_combining_mark_on_no_letter_is_refused_and_makes_no_new_person(name, mark, before):
    """At the start, or after a space, digit or punctuation, a combining mark adds nothing a
    reader can tell apart (or stacks on a neighbour): refused where names enter, dropped when compared."""
    for marked in (before + mark + name, name + before + mark):
        if before == "" and marked.endswith(mark):
            continue  # a mark right after a letter belongs to it (tested below)
        with pytest.raises(UserError, match="invisible|combining mark"):
            identity.checked(marked, "user name")
        assert identity.normalise(marked) == identity.normalise(marked.replace(mark, ""))


@pytest.mark.parametrize("name", ["Jose\u0301", "Zoe\u0308 Smith", "\u0928\u092e\u0938\u094d\u0924\u0947",
                                  "\u0915\u094b\u0902"])
def test_a_combining_mark_on_a_letter_is_part_of_the_name(name):
    """é typed as e + U+0301, Devanagari vowel signs and viramas: kept."""
    assert identity.checked(name, "user name") == identity.normalise(name)


SERVICE_LOOKS = {ch: [ch] + [src for src, proto in identity._PROTOTYPE.items() if proto == ch]
                 + [chr(c) for c in range(0x20, 0x30000)
                    if unicodedata.normalize("NFKC", chr(c)).casefold() == ch and chr(c) != ch]
                 for ch in "service:"}


@st.composite
def service_look_alikes(draw):
    letters = [draw(st.sampled_from(SERVICE_LOOKS[ch])) for ch in "service:"]
    letters.insert(7, draw(st.sampled_from(["", " ", "  "])))  # "service :scheduler"
    return "".join(letters) + draw(st.sampled_from(["scheduler", "meta-train", "x"]))


@given(name=service_look_alikes())
@hsettings(max_examples=300, deadline=None)
def test_a_service_identity_is_recognised_by_its_skeleton(name):
    """``service꞉scheduler`` (U+A789), ``service :scheduler``, a Cyrillic ѕ: each is a service (it
    may not approve, reject or roll back, nor log in), and only the one spelling enters."""
    assert identity.is_service(name)
    with pytest.raises(UserError, match="service identity"):
        identity.require_person(name, "approve")
    if identity.normalise(name) not in ("service:scheduler", "service:meta-train", "service:x"):
        with pytest.raises(UserError):
            identity.checked(name, "TAILOR_USER")


@pytest.mark.parametrize("name", ["service\ua789scheduler", "service :scheduler", "\u0455ervice:scheduler",
                                  "service\u2236scheduler", "SERVICE\uff1aSCHEDULER"])
def test_the_issues_service_look_alikes_are_services(name, monkeypatch):
    assert identity.is_service(name)
    monkeypatch.setenv("TAILOR_USER", name)
    if identity.normalise(name) != "service:scheduler":
        with pytest.raises(UserError, match="TAILOR_USER"):
            identity.cli_identity()


@pytest.mark.parametrize("name", ["alice", "Service Desk", "servicedesk", "services", "Sergei Vice"])
def test_a_person_is_no_service(name):
    assert not identity.is_service(name)


def test_the_issues_invisible_marks_are_refused_and_make_no_new_person(ws, monkeypatch, capsys):
    """`alice͏` (U+034F) approved alice's own candidate; `user add bob️` (U+FE0F) was accepted."""
    assert identity.same_person("alice\u034f", "alice")
    monkeypatch.setenv("TAILOR_USER", "alice\u034f")
    with pytest.raises(UserError, match="invisible.*U\\+034F"):
        identity.cli_identity()
    code, out = add(ws, "bob\ufe0f", monkeypatch, capsys)
    assert code == 2 and len(out.err.strip().splitlines()) == 1 and "U+FE0F" in out.err
    assert users.load(ws) == {}
