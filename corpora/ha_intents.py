"""Home Assistant voice-intent utterances (``ha-intents``), sampled from the intents' sentence templates.

Licence: the PyPI packages ``home-assistant-intents`` (the sentence templates, Apache-2.0) and
``hassil`` (the template parser, Apache-2.0), from their wheels' metadata.
Taxonomies: intents (``HassTurnOn``: Turn on or open); the Home Assistant domain each intent
belongs to (intents.json: the media player's nine intents ...); the domain of the template block an
utterance comes from (HassTurnOn on a light, a fan, a cover ...).
Leak (mean share of a class's utterances containing a word of its label name, unmasked; regenerated
by ``python -m benchmarks.sources`` into benchmarks/results/sources.md): 74.3%; the benchmark masks
label words (benchmarks/data.py's ``mask_leaks``).
"""
from __future__ import annotations

import random
import re

from hassil import (Alternative, Intents, ListReference, Permutation, RangeSlotList, RuleReference,
                    Sequence, TextChunk, TextSlotList, normalize_whitespace)
from home_assistant_intents import get_intent_info, get_intents

from corpora.masking import mask_label_words
from corpora.regrouping import Pools, Regrouping, merges, renames, splits, tidy

LICENCE = "home-assistant-intents and hassil (PyPI): Apache-2.0 (wheel metadata)"
TAXONOMIES = {"ha-intents": ("Home Assistant intents", "WordNet synonyms", "Home Assistant intent descriptions",
                             "Home Assistant domains", "Home Assistant intent x domain blocks")}
LEAK = {"ha-intents": 0.743}   # benchmarks/results/sources.md, "mean leak"
_REPEATED_WORD = re.compile(r"\b(\w+) \1\b")   # "lawn mower mower": a filled name meets template text

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
    return {key: list(texts) for key, texts in intent_samples(language, per_intent, seed).items()}


def intent_samples(language: str = "en", per_intent: int = 60,
                   seed: int = 0) -> dict[str, dict[str, tuple[str, ...]]]:
    """Intent key -> utterance -> the Home Assistant domains of the template block it came from
    (``block.domains``: ("light",), ("cover", "valve"), () for a block of no domain), in the order
    and with the draws of ``intent_classes``."""
    data = get_intents(language)
    if data is None:
        raise ValueError(f"home-assistant-intents has no language {language!r}")
    intents = Intents.from_dict(data)
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for name in sorted(intents.intents):
        rng = random.Random(f"{seed}:{name}")    # per intent, so one intent's draw never shifts another's
        blocks = [(b, s) for b in intents.intents[name].data for s in b.sentences]
        texts: dict[str, tuple[str, ...]] = {}
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
                texts.setdefault(text, tuple(sorted(block.domains)))
        out[f"ha-intent:{name}"] = texts
    return out


def label_name(key: str) -> str:
    """Human label for an intent key, e.g. 'ha-intent:HassTurnOn' -> 'Turn on or open'."""
    source, _, name = key.partition(":")
    if source != "ha-intent":
        raise ValueError(f"not a Home Assistant intent key: {key!r}")
    return HA_LABELS.get(name) or re.sub(r"(?<!^)(?=[A-Z])", " ", name.removeprefix("Hass")).capitalize()


def regroupings(pools: Pools, seed: int = 0, language: str = "en", per_intent: int = 60) -> list[Regrouping]:
    """ha-intents, its texts drawn as ``intent_classes(language, per_intent, seed)`` draws them:
    WordNet synonyms of the labels (as verbs), else the intent's own description (intents.json);
    merges by the intent's Home Assistant domain (intents.json; the catch-all "homeassistant"
    domain is no category); splits of an intent that spans domains by the one domain of the template
    block an utterance came from (HassTurnOn: light, fan, cover ...)."""
    info = get_intent_info() or {}
    intent = {key: key.partition(":")[2] for key in pools}
    described = {key: [info[name]["description"].split(". ")[0].rstrip(".")]
                 for key, name in intent.items() if info.get(name, {}).get("description")}
    found = renames(pools, label_name, pos=("v",), alternatives=described,
                    alternatives_taxonomy="Home Assistant intent descriptions")
    by_domain: dict[str, list[str]] = {}
    for key, name in sorted(intent.items()):
        domain = info.get(name, {}).get("domain")
        if domain and domain != "homeassistant":
            by_domain.setdefault(_domain_name(domain), []).append(key)
    found += merges(pools, by_domain, "Home Assistant domains")
    samples = intent_samples(language, per_intent, seed)
    for key in sorted(pools):
        label, group_of = label_name(key), {}
        single = {text: domains[0] for text, domains in samples.get(key, {}).items() if len(domains) == 1}
        if len(set(single.values())) < 2:          # an intent of one domain: its blocks split nothing
            continue
        for text, domain in single.items():
            name = f"{label} ({_domain_name(domain).lower()})"
            group_of.update((form, name) for form in (text, *mask_label_words([text], label)))
        found += splits(pools, key, group_of, "Home Assistant intent x domain blocks")
    return tidy(found, pools, label_name)


def _domain_name(domain: str) -> str:
    """A Home Assistant domain id in words: "media_player" -> "Media player"."""
    return domain.replace("_", " ").capitalize()
