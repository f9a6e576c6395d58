"""Real text for demo tenants: WordNet 3.0 glosses and Home Assistant intent utterances, read offline."""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Iterator, NamedTuple

from hassil import (Alternative, Intents, ListReference, Permutation, RangeSlotList, RuleReference,
                    Sequence, TextChunk, TextSlotList, normalize_whitespace)
from home_assistant_intents import get_intents

WORDNET_DIR = Path("/usr/share/wordnet")

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
LEX_LABELS = dict(zip(LEXNAMES, (
    "Descriptive adjectives|Relational adjectives|Adverbs|Top-level concepts|Acts and actions|Animals|"
    "Artifacts|Attributes|Body parts|Knowledge and cognition|Communication|Events|Feelings|Food and drink|"
    "Groups|Places|Motives|Natural objects|People|Natural phenomena|Plants|Possessions|Processes|"
    "Quantities and units|Relations|Shapes|States and conditions|Substances|Time|Body care verbs|"
    "Change verbs|Thinking verbs|Communication verbs|Competition verbs|Eating and drinking verbs|"
    "Contact verbs|Creation verbs|Emotion verbs|Motion verbs|Perception verbs|Possession verbs|"
    "Social verbs|Stative verbs|Weather verbs|Participial adjectives"
).split("|")))
# Topic domains that duplicate a lexicographer class or another domain are folded or dropped, so
# one tenant never holds two labels for the same concept.
_TOPIC_MERGE = {"computer": "computer_science", "commercial_enterprise": "commerce",
                "american_football": "football", "ship": "seafaring"}
_TOPIC_DROP = {"plant", "animal"}
_LEADING_MARK = re.compile(r"^\([^)]*\)\s*")
_REPEATED_WORD = re.compile(r"\b(\w+) \1\b")   # "lawn mower mower": a filled name meets template text


class Synset(NamedTuple):
    offset: str
    pos: str
    lexname: str
    lemmas: tuple[str, ...]
    domains: tuple[tuple[str, str], ...]   # (offset, pos) of ";c" topic-domain synsets
    definition: str


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
                             gloss_definition(gloss.strip()))


def wordnet_classes(wordnet_dir: Path = WORDNET_DIR, min_words: int = 3,
                    min_members: int = 20) -> dict[str, list[str]]:
    """Class key -> definitions, for lexicographer classes and ';c' topic domains.

    Texts are bare definitions, no headword: "gear: ..." reads like a glossary and lets one token
    decide the class; a definition reads like a description a customer writes. Definitions under
    `min_words` words ("move fast") are dropped; topic domains need `min_members` texts.
    """
    synsets = list(iter_synsets(wordnet_dir))
    heads = {(s.offset, s.pos): s.lemmas[0] for s in synsets}
    classes: dict[str, list[str]] = {}
    topics: dict[str, list[str]] = {}
    for s in synsets:
        # "(law) the act of ..." names the topic: a shortcut no real tenant text would carry.
        text = _LEADING_MARK.sub("", s.definition) if s.domains else s.definition
        if len(text.split()) < min_words:
            continue
        classes.setdefault(f"wordnet-lex:{s.lexname}", []).append(text)
        for dom in s.domains:
            name = _TOPIC_MERGE.get(heads[dom].lower(), heads[dom])   # keeps 'Old_Testament' cased
            if name.lower() not in _TOPIC_DROP:
                topics.setdefault(f"wordnet-topic:{name.replace('_', ' ')}", []).append(text)
    classes.update((k, v) for k, v in topics.items() if len(set(v)) >= min_members)
    return {k: list(dict.fromkeys(v)) for k, v in sorted(classes.items())}


# --- Home Assistant intents -------------------------------------------------------------------

HA_LABELS = {
    "HassBroadcast": "Broadcast a message", "HassCancelAllTimers": "Cancel all timers",
    "HassCancelTimer": "Cancel a timer", "HassClimateGetTemperature": "Ask the temperature",
    "HassClimateSetFanMode": "Set fan mode", "HassClimateSetTemperature": "Set the thermostat",
    "HassDecreaseTimer": "Shorten a timer", "HassFanSetSpeed": "Set fan speed",
    "HassGetCurrentDate": "Ask the date", "HassGetCurrentTime": "Ask the time",
    "HassGetState": "Check a device", "HassGetWeather": "Weather", "HassIncreaseTimer": "Extend a timer",
    "HassLawnMowerDock": "Dock the mower", "HassLawnMowerStartMowing": "Start mowing",
    "HassLightSet": "Dim or colour lights", "HassListAddItem": "Add a to-do",
    "HassListCompleteItem": "Complete a to-do", "HassListRemoveItem": "Remove a to-do",
    "HassMediaNext": "Next track", "HassMediaPause": "Pause media", "HassMediaPlayerMute": "Mute",
    "HassMediaPlayerUnmute": "Unmute", "HassMediaPrevious": "Previous track",
    "HassMediaSearchAndPlay": "Play something", "HassMediaUnpause": "Resume media",
    "HassNevermind": "Never mind", "HassPauseTimer": "Pause a timer", "HassRespond": "Ask the assistant",
    "HassSetPosition": "Set blinds position", "HassSetVolume": "Set volume",
    "HassSetVolumeRelative": "Volume up or down", "HassShoppingListAddItem": "Add to shopping list",
    "HassShoppingListCompleteItem": "Tick off shopping", "HassStartTimer": "Start a timer",
    "HassTimerStatus": "Timer status", "HassTurnOff": "Turn off or close", "HassTurnOn": "Turn on or open",
    "HassUnpauseTimer": "Resume a timer", "HassVacuumCleanArea": "Vacuum a room",
    "HassVacuumReturnToBase": "Send vacuum home", "HassVacuumStart": "Start vacuuming",
}

# Plausible values for the lists Home Assistant fills at run time (entities, areas, wildcards).
_NAMES = {
    "light": ["kitchen light", "ceiling light", "desk lamp", "porch light", "hallway lights"],
    "switch": ["coffee maker", "garden pump", "christmas lights", "heated blanket"],
    "fan": ["ceiling fan", "bedroom fan", "bathroom extractor"],
    "cover": ["garage door", "living room blinds", "bedroom curtains", "skylight"],
    "lock": ["front door", "back door", "side gate lock"], "valve": ["sprinkler valve", "water main"],
    "climate": ["thermostat", "heat pump", "upstairs thermostat"],
    "media_player": ["living room tv", "kitchen speaker", "sonos", "bedroom tv"],
    "vacuum": ["roborock", "robot vacuum"], "lawn_mower": ["lawn mower", "mower"],
    "todo": ["to-do", "chores", "work tasks", "packing"], "scene": ["movie night", "good morning"],
    "script": ["bedtime routine", "leaving home"], "person": ["anna", "tom", "grandma"],
    "weather": ["outside", "home forecast"], "binary_sensor": ["motion sensor", "window sensor"],
    "sensor": ["outdoor temperature", "humidity sensor"], "button": ["doorbell", "reset button"],
    "input_button": ["doorbell"], "input_boolean": ["guest mode", "vacation mode"],
}
_FILL = {
    "area": ["kitchen", "living room", "bedroom", "office", "garage", "bathroom", "hallway", "basement",
             "kids room", "patio"],
    "floor": ["upstairs", "downstairs", "first floor", "ground floor", "attic"],
    "message": ["dinner is ready", "time to leave for school", "the movie starts in five minutes",
                "someone is at the door", "please come downstairs"],
    "search_query": ["the beatles", "jazz for cooking", "taylor swift", "the morning news",
                     "abbey road", "rain sounds", "a podcast about history"],
    "zone": ["home", "work", "the office", "school", "the gym"],
    "timer_name": ["pizza", "laundry", "pasta", "tea", "nap", "eggs"],
    "timer_command": ["turn off the oven light", "turn on the porch light", "pause the tv"],
    "shopping_list_item": ["milk", "eggs", "bread", "coffee beans", "bananas", "dish soap", "rice"],
    "todo_list_item": ["call the plumber", "renew passport", "pay the electricity bill",
                       "water the plants", "book a dentist appointment"],
}


def _sample(expr, rng: random.Random, lists, rules, names: list[str]) -> str:
    """One random walk through a hassil template expression (hassil's own sampler enumerates all)."""
    walk = lambda e: _sample(e, rng, lists, rules, names)  # noqa: E731
    if isinstance(expr, TextChunk):
        return expr.original_text
    if isinstance(expr, Alternative):
        return walk(rng.choice(expr.items))
    if isinstance(expr, Permutation):
        return " ".join(walk(e) for e in rng.sample(expr.items, len(expr.items)))
    if isinstance(expr, Sequence):
        return "".join(walk(e) for e in expr.items)
    if isinstance(expr, RuleReference):
        return walk(rules[expr.rule_name].expression)
    if isinstance(expr, ListReference):
        if expr.list_name == "name":
            return rng.choice(names)
        slot = lists.get(expr.list_name)
        if isinstance(slot, TextSlotList):
            return walk(rng.choice(slot.values).text_in)
        if isinstance(slot, RangeSlotList):
            return f"{rng.choice(list(slot.get_numbers())):g}"
        return rng.choice(_FILL[expr.list_name])
    raise ValueError(f"unexpected hassil expression {expr!r}")


def intent_classes(language: str = "en", per_intent: int = 60, seed: int = 0) -> dict[str, list[str]]:
    """Intent key -> up to `per_intent` distinct utterances sampled from home-assistant-intents."""
    data = get_intents(language)
    if data is None:
        raise ValueError(f"home-assistant-intents has no language {language!r}")
    intents = Intents.from_dict(data)
    out: dict[str, list[str]] = {}
    for name in sorted(intents.intents):
        rng = random.Random(f"{seed}:{name}")    # per intent, so one intent's draw never shifts another's
        blocks = [(b, s) for b in intents.intents[name].data for s in b.sentences]
        texts: dict[str, None] = {}
        for _ in range(per_intent * 20):
            if len(texts) >= per_intent:
                break
            block, sentence = rng.choice(blocks)
            names = [n for d in sorted(block.domains) for n in _NAMES.get(d, [])]
            names = names or [n for v in _NAMES.values() for n in v]
            rules = {**intents.expansion_rules, **block.expansion_rules}
            text = _sample(sentence.expression, rng, {**intents.slot_lists, **block.slot_lists}, rules, names)
            text = _REPEATED_WORD.sub(r"\1", normalize_whitespace(text).strip())
            if text:
                texts[text] = None
        out[f"ha-intent:{name}"] = list(texts)
    return out


def label_name(key: str) -> str:
    """Human label for a class key, e.g. 'wordnet-lex:noun.animal' -> 'Animals'."""
    source, _, name = key.partition(":")
    if source == "wordnet-lex":
        return LEX_LABELS[name]
    if source == "wordnet-topic":
        return name[:1].upper() + name[1:]
    if source == "ha-intent":
        return HA_LABELS.get(name) or re.sub(r"(?<!^)(?=[A-Z])", " ", name.removeprefix("Hass")).capitalize()
    from tailor.debian_sources import debian_label_name

    from tailor.more_sources import more_label_name

    other = debian_label_name(key)
    if other is None:
        other = more_label_name(key)
    if other is None:
        raise ValueError(f"unknown class source in {key!r}")
    return other
