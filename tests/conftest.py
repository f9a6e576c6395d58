"""Shared fixtures: tiny encoder settings and small synthetic tenants (fast, deterministic)."""
import os
import random
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workspace.settings import Settings  # noqa: E402

WORDS = {
    "animal": "dog cat horse cow sheep lion tiger bear wolf fox goat deer".split(),
    "food": "bread rice pasta soup cheese apple pear salad cake pie jam bun".split(),
    "tool": "hammer saw drill wrench pliers chisel file rasp axe knife vise clamp".split(),
    "music": "guitar piano drum violin flute harp song tune chord bass choir opera".split(),
    "sport": "soccer tennis golf rugby hockey cricket boxing rowing skiing judo polo darts".split(),
    "car": "engine wheel brake clutch tyre gear axle seat door trunk hood bumper".split(),
    "weather": "rain snow wind storm fog hail sun cloud frost thunder drizzle sleet".split(),
    "law": "court judge jury appeal verdict lawyer trial statute contract tort bail plea".split(),
}


def tiny_settings(**meta_train) -> Settings:
    s = Settings().replace("encoder", name="tiny", adapted_layers=1, lora_rank=2)
    s = s.replace("meta_train", **{"meta_steps": 6, "val_every": 3, "meta_batch": 2, "inner_steps": 3,
                                   "val_tasks": 2, "pooled_steps": 6, "pooled_val_every": 3, "pooled_batch": 16,
                                   **meta_train})
    return s.replace("adapt", inner_steps=4)


def edit_params(root, section: str, **values) -> None:
    """Change settings of a workspace's params.yaml as a person editing the file would (the section
    is created if the file has none)."""
    path = Path(root) / "params.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    doc.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


def synthetic_tenant(classes, n=10, seed=0):
    rng = random.Random(seed)
    texts, labels = [], []
    for c in classes:
        for i in range(n):
            texts.append(" ".join(rng.sample(WORDS[c], 3)) + f" note {i}")
            labels.append(c.title())
    return texts, labels


@pytest.fixture
def settings():
    return tiny_settings()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of Debian's package for the whole session (``tests/postgres.py``): started
    on first use, stopped and removed at the end."""
    from tests.postgres import Postgres

    with Postgres() as server:
        yield server
