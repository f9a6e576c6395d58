"""WordNet 3.0's database files read offline (wndb(5WN)): synsets, their pointers, the lemma index.

Two text sources read glosses from it (``corpora.wordnet``), and every source names its categories'
other real names from it (``corpora.regrouping``): a label's synset is found through the lemma index,
the sense chosen by WordNet's own frequency ranking or, where it has none, by the class's texts.
Licence: Debian's ``wordnet-base``, the WordNet 3.0 licence (Princeton University).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from corpora.masking import STOPWORDS, stem

WORDNET_DIR = Path("/usr/share/wordnet")
_POS_FILE = {"n": "n", "v": "v", "a": "a", "s": "a", "r": "r"}   # an adjective satellite lives in data.adj
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_MARKER = re.compile(r"\([a-z]+\)$")
_WORD = re.compile(r"[A-Za-z]+")
# Detachment rules of WordNet's morphy(7WN), enough for a label's plural or -ing form.
_DETACH = {"n": (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
                 ("ies", "y"), ("s", "")),
           "v": (("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""),
                 ("s", ""))}

# WordNet's 45 lexicographer files, in lex_filenum order (the `lexnames` file is not shipped).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
    "adj.ppl"
).split()


class Synset(NamedTuple):
    offset: str
    pos: str
    lexname: str
    lemmas: tuple[str, ...]
    domains: tuple[tuple[str, str], ...]   # (offset, pos) of ";c" topic-domain synsets
    definition: str
    pointers: tuple[tuple[str, str, str], ...] = ()   # (symbol, offset, pos): "@" hypernym, "%p" part ...

    @property
    def key(self) -> tuple[str, str]:
        return self.offset, _POS_FILE[self.pos]

    def names(self) -> list[str]:
        """Its lemmas as words: "natural_science" -> "natural science", an adjective's "(a)" dropped."""
        return [_MARKER.sub("", lemma).replace("_", " ") for lemma in self.lemmas]


def gloss_definition(gloss: str) -> str:
    """The definition part of a gloss: its ';'-separated parts that are not quoted examples."""
    parts, buf, quoted = [], [], False
    for ch in gloss:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return "; ".join(p.strip() for p in parts if p.strip() and not p.strip().startswith('"'))


def iter_synsets(wordnet_dir: Path = WORDNET_DIR) -> Iterator[Synset]:
    """Every synset of data.{noun,verb,adj,adv}; see wndb(5WN) for the line format."""
    wordnet_dir = Path(wordnet_dir)
    if not (wordnet_dir / "data.noun").is_file():
        raise FileNotFoundError(f"WordNet database not found at {wordnet_dir}: run `make setup` "
                                "(it installs Debian's wordnet-base)")
    for pos in ("noun", "verb", "adj", "adv"):
        with open(wordnet_dir / f"data.{pos}", encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):           # licence header
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                n_words = int(fields[3], 16)
                lemmas = tuple(fields[4 + 2 * i] for i in range(n_words))
                i = 4 + 2 * n_words
                n_ptrs = int(fields[i])
                ptrs = [fields[i + 1 + 4 * k: i + 5 + 4 * k] for k in range(n_ptrs)]
                domains = tuple((p[1], p[2]) for p in ptrs if p[0] == ";c")
                yield Synset(fields[0], fields[2], LEXNAMES[int(fields[1])], lemmas, domains,
                             gloss_definition(gloss.strip()), tuple(tuple(p[:3]) for p in ptrs))


@dataclass(frozen=True)
class Database:
    """Every synset by (offset, pos), and the lemma index: (lemma, pos) -> synset keys in sense order,
    with how many of them WordNet ranks by frequency (its index's tagsense_cnt)."""

    synsets: dict[tuple[str, str], Synset]
    index: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], int]]

    def linked(self, synset: Synset, *symbols: str) -> list[Synset]:
        """The synsets ``synset`` points to with any of ``symbols`` ("@" hypernym, "%p" part ...)."""
        return [self.synsets[(o, _POS_FILE[p])] for sym, o, p in synset.pointers if sym in symbols]

    def hypernym(self, synset: Synset) -> Synset | None:
        """The first hypernym (or instance hypernym): one parent, so hypernym chains form a tree."""
        up = self.linked(synset, "@", "@i")
        return up[0] if up else None

    def senses(self, phrase: str, pos: str) -> tuple[list[Synset], int]:
        """The synsets of ``phrase`` as a ``pos`` word (its base form found as morphy would), in
        WordNet's sense order, and how many of them are ranked by frequency."""
        words = phrase.strip().lower().split()
        if not words:
            return [], 0
        last = words[-1]
        bases = [last] + [last[: len(last) - len(end)] + rep for end, rep in _DETACH.get(pos, ()) if last.endswith(end)]
        for base in bases:
            found = self.index.get(("_".join(words[:-1] + [base]), pos))
            if found:
                return [self.synsets[k] for k in found[0]], found[1]
        return [], 0

    def sense(self, phrase: str, pos: str, context: Iterable[str] = (), lexnames: Iterable[str] | None = None,
              topics: Iterable[str] = ()) -> Synset | None:
        """The synset a label means. Given ``topics``, its first sense in one of those topic domains
        (";c" pointers: a computing source says "computer_science", so "utility" is the service
        program, not the public utility) or None. Else the only sense of a phrase ("descriptive
        adjective"); else, among the senses in ``lexnames`` (all if None), the most frequent where
        WordNet ranks them by frequency, or the one whose gloss, lemmas, hypernyms and hyponyms share
        most words with ``context``, the class's texts (simplified Lesk: Lesk 1986; Kilgarriff &
        Rosenzweig 2000); None on a tie or no overlap at all."""
        found, ranked = self.senses(phrase, pos)
        wanted = {t.lower() for t in topics}
        if wanted:
            return next((s for s in found if any(self.synsets[(o, _POS_FILE[p])].lemmas[0].lower() in wanted
                                                 for o, p in s.domains)), None)
        if len(found) == 1 and len(phrase.split()) > 1:
            return found[0]                         # "descriptive adjective": a phrase of one sense
        allowed = set(lexnames) if lexnames is not None else None
        senses = [s for s in found if allowed is None or s.lexname in allowed]
        if len(senses) <= 1 or ranked:
            return senses[0] if senses else None
        bag = {w for text in context for w in _bag(text)}
        scores = [len(self._signature(s) & bag) for s in senses]
        best = max(scores)
        return senses[scores.index(best)] if best > 0 and scores.count(best) == 1 else None

    def _signature(self, synset: Synset) -> set[str]:
        words = _bag(synset.definition) | {w for name in synset.names() for w in _bag(name)}
        for other in self.linked(synset, "@", "@i", "~", "~i"):
            words |= {w for name in other.names() for w in _bag(name)}
        return words


def _bag(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(text) if len(w) > 2 and w.lower() not in STOPWORDS}


def _read_index(path: Path, pos: str) -> Iterator[tuple[tuple[str, str], tuple[tuple[tuple[str, str], ...], int]]]:
    """index.<pos> lines: lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offset..."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):                # licence header
                continue
            fields = line.split()
            n_ptrs = int(fields[3])
            tagged = int(fields[5 + n_ptrs])
            yield (fields[0], pos), (tuple((o, pos) for o in fields[6 + n_ptrs:]), tagged)


def database(wordnet_dir: Path = WORDNET_DIR) -> Database:
    """The whole database, read once per process and folder (about 3 s)."""
    return _database(Path(wordnet_dir).resolve())


@lru_cache(maxsize=2)
def _database(wordnet_dir: Path) -> Database:
    synsets = {s.key: s for s in iter_synsets(wordnet_dir)}
    index = dict(kv for pos, name in _FILES.items() for kv in _read_index(wordnet_dir / f"index.{name}", pos))
    return Database(synsets, index)
