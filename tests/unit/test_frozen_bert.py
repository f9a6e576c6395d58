"""Serving's plain-torch encoder (``lightning_modules.frozen_bert``) gives exactly transformers'
token ids and frozen-layer states, so a champion predicts what adaptation measured."""
import torch

from lightning_modules.encoder import load_encoder, load_serving_encoder
from workspace.settings import EncoderSettings

TEXTS = ["a small furry animal", "Café naïve résumé 東京 ÀÉÎ", "word " * 120, "x", "Hello, WORLD!! 3.5 km/h",
         "tab\tand\nnewline", "the act of moving something from one place to another quickly"]


def _same(settings: EncoderSettings, batch_sizes: tuple) -> None:
    reference, serving = load_encoder(settings), load_serving_encoder(settings)
    assert serving.digest == reference.digest and serving.num_layers == reference.num_layers
    ids, mine = reference.tokenize(TEXTS), serving.tokenize(TEXTS)
    assert torch.equal(ids["input_ids"], mine["input_ids"])  # padding and truncation at max_length too
    assert torch.equal(ids["attention_mask"], mine["attention_mask"])
    frozen = reference.num_layers - settings.adapted_layers
    for batch_size in batch_sizes:
        want, want_mask = reference.lower_states(TEXTS, frozen, batch_size)
        got, got_mask = serving.lower_states(TEXTS, frozen, batch_size)
        assert torch.equal(want_mask, got_mask)
        assert torch.equal(want, got), f"max difference {(want.float() - got.float()).abs().max().item()}"
    top = reference.layer_weights(frozen)
    assert top.keys() == serving.layer_weights(frozen).keys()
    assert all(torch.equal(top[k], serving.layer_weights(frozen)[k]) for k in top)


def test_packaged_encoder_states_are_transformers_states_bit_for_bit():
    # batches of 1 are never padded (transformers then passes no attention mask), of 4 padded
    _same(EncoderSettings(name="all-MiniLM-L6-v2", max_length=64, adapted_layers=1), batch_sizes=(1, 4))


def test_tiny_encoder_states_are_transformers_states_bit_for_bit():
    _same(EncoderSettings(name="tiny", max_length=32, adapted_layers=1), batch_sizes=(1, 3))


def test_serving_the_packaged_encoder_does_not_import_transformers():
    """transformers' import is most of a cold `tailor predict`; serving must not pay it."""
    import subprocess
    import sys

    script = ("import sys; from lightning_modules.encoder import load_serving_encoder; "
              "from workspace.settings import EncoderSettings; "
              "enc = load_serving_encoder(EncoderSettings(name='all-MiniLM-L6-v2', adapted_layers=1)); "
              "enc.lower_states(['a small furry animal'], enc.num_layers - 1); "
              "print('transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
