"""Meta-training under Lightning's DDP (2 CPU processes, gloo): ranks draw different tasks, end with
the same meta-parameters, agree on validation, and exactly one base is written.

Lightning's "ddp" strategy starts the other ranks by re-running the calling command, so the run
happens in a small script of its own (re-running pytest would re-run the whole test session).
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lightning_modules.delta import load_base
from lightning_modules.training import meta_train

from tests.conftest import tiny_settings

ROOT = Path(__file__).resolve().parents[2]


def checksum(params: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(params):
        h.update(k.encode() + params[k].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import lightning_modules.training as training
    from lightning_modules.encoder import load_encoder
    from tests.conftest import synthetic_tenant, tiny_settings
    from tests.unit.test_ddp import checksum

    out = Path(sys.argv[1])


    class Spy(training.MetaLearner):  # records what each rank saw and ended with
        def training_step(self, batch, batch_idx):
            if batch_idx == 0:
                self.first_batch = [t.support.tolist() for t in batch]
                self.start = checksum(self.meta_params())
            return super().training_step(batch, batch_idx)

        def on_train_end(self):
            (out / f"train{self.global_rank}.json").write_text(json.dumps({
                "world": self.trainer.world_size, "first_batch": self.first_batch, "start": self.start,
                "end": checksum(self.meta_params()), "steps": self.global_step,
                "val": [h["val_acc"] for h in self.history if "val_acc" in h],
                "best": [self.best[0], self.best[1], checksum(self.best[2])]}))


    writes = []
    save_base = training.save_base
    training.MetaLearner = Spy
    training.save_base = lambda *a: writes.append(1) or save_base(*a)

    s = tiny_settings(meta_steps=6, val_every=3, patience=5)
    train = {f"t{i}": synthetic_tenant(c, 12, seed=i) for i, c in
             enumerate([["animal", "food", "tool"], ["music", "sport", "car"], ["animal", "music", "sport"]])}
    val = {"v": synthetic_tenant(["car", "food", "tool"], 12, seed=9)}
    result = training.meta_train(load_encoder(s.encoder), s, train, val, out / "base", say=print,
                                 devices=2, strategy="ddp")
    (out / f"result{result.rank}.json").write_text(json.dumps(
        {"writes": len(writes), "best": checksum(result.meta), "base_dir": str(result.base_dir)}))
""")


@pytest.mark.slow  # 15 s on an idle 2-core machine, over a minute on a busy one: 3 Python processes
def test_ddp_two_cpu_processes_agree_and_write_one_base(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # stdout stays open until rank 1 exits too, so both ranks have finished here
    ranks = [json.loads((tmp_path / f"train{r}.json").read_text()) for r in (0, 1)]
    results = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)]

    assert [r["world"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [6, 6]
    assert ranks[0]["first_batch"] != ranks[1]["first_batch"], "each rank must draw its own tasks"
    assert ranks[0]["start"] == ranks[1]["start"] and ranks[0]["end"] == ranks[1]["end"], \
        "DDP must keep the meta-parameters identical on every rank"
    assert ranks[0]["end"] != ranks[0]["start"], "the meta-parameters must have been trained"
    assert ranks[0]["val"] == ranks[1]["val"] and ranks[0]["best"] == ranks[1]["best"]
    assert len(ranks[0]["val"]) == 3  # step 0 + two validations

    assert [r["writes"] for r in results] == [1, 0], "only rank 0 writes the base"
    assert results[0]["best"] == results[1]["best"] == ranks[0]["best"][2]
    meta, info = load_base(Path(results[0]["base_dir"]))  # checks format and digest
    assert checksum(meta) == results[0]["best"] and info["metrics"]["steps_run"] == 6
    assert "meta-step    6/6" in run.stdout and run.stdout.count("base = weights") == 1


def test_strategies_that_fit_in_child_processes_are_refused():
    with pytest.raises(ValueError, match="use 'ddp'"):
        meta_train(None, tiny_settings(), {}, {}, ROOT / "unused", strategy="ddp_spawn")
