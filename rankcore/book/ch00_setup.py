"""Chapter 00 (setup): the data sets found here and Table 1, the model zoo, measured.

Table 1 is generated from the model registry (:mod:`rankcore.models`): for every model
whose weights are on this machine, its clean top-1 is measured on the data set it was
trained for, in its own preprocessing, one model and one preprocessing setting at a time
through a streaming ``DataLoader`` (uint8 until the device), so memory does not grow with
the number of images. A model that cannot be loaded (missing, mismatched, unsafe or
corrupt weights) becomes a row with the reason, never a crash. Rates are fractions here;
the book shows them as percent.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rankcore import data, models
from rankcore.paths import data_root

from .figures import COLUMN_INCHES, figsize
from .verdicts import rule

#: Table 1's rows compare the zoo's accuracies with the *sources'* published accuracies
#: (torchvision, timm, robustness, akamaster); the paper's Table 1 states none. They are
#: scored as a zoo check, shown and counted apart from the paper's claims.
KIND = "zoo check"

#: A model is within reach of its published top-1 when the gap is at most this (1.5 points).
TOLERANCE = 0.015
COLUMNS = ["model", "dataset", "training", "source", "present", "evaluated on", "images",
           "measured top-1", "published top-1", "difference", "how to get", "skipped"]


def where_things_are(root: str | os.PathLike | None = None,
                     weights_dirs: list | None = None) -> dict[str, str]:
    """The data root, the data sets and the weight folders found here, for the reader."""
    imagenet, cifar = data.find_imagenet(root), data.find_cifar10(root)
    dirs = [*(Path(d) for d in weights_dirs or []), *models.weight_dirs()]
    return {"data root": str(data_root(root)),
            "ImageNet validation": str(imagenet) if imagenet else
            "absent (imagenet-auto falls back to the embedded samples)",
            "CIFAR-10 test set": str(cifar) if cifar else "absent",
            "weight folders": ", ".join(str(d) for d in dirs if d.is_dir())
            or "none of them exists",
            "download folder": str(models.models_dir())}


def _find(name: str, weights_dirs: list | None) -> Path | None:
    for d in [*(weights_dirs or []), None]:
        path = models.find_weights(name, d)
        if path is not None:
            return path
    return None


def clean_accuracy_table(names: list[str] | None = None, weights_dirs: list | None = None,
                         imagenet_n: int | None = None, cifar_n: int | None = None,
                         seed: int = 0, batch_size: int = 50, workers: int | None = None,
                         root=None, device=None, progress: bool = True) -> pd.DataFrame:
    """Table 1 with measured clean top-1 beside the published one, for weights present here.

    Nothing is downloaded. Each model is evaluated with :func:`rankcore.data.evaluate` on
    a streaming data set in its own ``data_config``; memory stays bounded for any number of
    images.

    Args:
        names (list[str], optional): models. Default: every registered model with weights.
        weights_dirs (list of paths, optional): extra folders searched for weight files.
        imagenet_n, cifar_n (int, optional): seeded subsets (``None`` = all images).
        seed (int, optional): subset seed. Default: 0.
        batch_size (int, optional): evaluation batch. Default: 50.
        workers (int, optional): decoding processes. Default: ``data.default_workers``.
        root (path, optional): data root. Default: ``$RANKCORE_DATA``, else ``data/``.
        device (optional): Default: CUDA when available, else CPU.
        progress (bool, optional): a tqdm bar over models. Default: ``True``.

    Returns:
        DataFrame with :data:`COLUMNS`; ``measured top-1``, ``published top-1`` and
        ``difference`` are fractions; ``skipped`` says why a present model was not measured.
    """
    chosen = names or [n for n in models.names() if models.get_cfg(n).weights != "none"]
    have = {"imagenet": data.find_imagenet(root) is not None,
            "cifar10": data.find_cifar10(root) is not None}
    rows = []
    for name in tqdm(chosen, desc="Table 1", disable=not progress):
        cfg = models.get_cfg(name)
        path = _find(name, weights_dirs)
        row = {"model": name, "dataset": cfg.dataset, "training": cfg.training,
               "source": cfg.weights, "present": path is not None, "evaluated on": "",
               "images": 0, "measured top-1": np.nan, "published top-1": cfg.published_top1,
               "how to get": "" if path else models.how_to_get(cfg), "skipped": ""}
        if path is not None and not have.get(cfg.dataset, False):
            row["skipped"] = f"no {cfg.dataset} data under {data_root(root)}"
        elif path is not None:
            try:
                model = models.load(name, weights=path, device=device, download=False)
            except models.WeightsError as e:
                row["skipped"] = f"{type(e).__name__}: {e}"
            else:
                ds = data.dataset("imagenet-val" if cfg.dataset == "imagenet" else "cifar10",
                                  n=imagenet_n if cfg.dataset == "imagenet" else cifar_n,
                                  seed=seed, root=root, download=False, progress=False,
                                  **model.data_kwargs)
                r = data.evaluate(model, ds, batch_size=batch_size, workers=workers,
                                  topk=(1,), progress=False)
                row.update({"evaluated on": ds.source, "images": r["n"],
                            "measured top-1": r["top1"]})
                del model
        rows.append(row)
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "difference"])
    df["measured top-1"] = df["measured top-1"].astype(float)
    df["published top-1"] = df["published top-1"].astype(float)
    df["difference"] = df["measured top-1"] - df["published top-1"]
    return df[COLUMNS]


def proxy_note(source: str, root=None) -> str:
    """Why accuracy on the data found here is not the published setting ('' when it is)."""
    if source == "cifar10":
        found = data.find_cifar10(root)
        if found is not None and found.name != "cifar-10-batches-py":
            return "JPEG copy of the CIFAR-10 test set (compression removes fine detail)"
    if source == "imagenet-val":
        found = data.find_imagenet(root)
        if found is not None and len(data.dataset("imagenet-val", root=root, progress=False,
                                                  download=False)) < 50_000:
            return "a subset of the ImageNet validation set, not the 50,000 images"
    return ""


@rule("table1", kind=KIND)
def table1_verdicts(table: pd.DataFrame, tolerance: float = TOLERANCE,
                    root=None) -> pd.DataFrame:
    """Scorecard verdicts for the rows of :func:`clean_accuracy_table`.

    ``reproduced``: within ``tolerance`` (a fraction) on the official data; ``same trend``:
    within it on a proxy (JPEG CIFAR-10, an ImageNet subset); ``differs``: further away
    (the note says why); ``needs GPU or data``: weights or data absent, or unloadable.

    Returns:
        DataFrame with ``model, verdict, note`` per row.
    """
    rows, notes = [], {}
    for _, r in table.iterrows():
        if pd.isna(r["measured top-1"]):
            why = r.get("skipped") or r["how to get"] or r["evaluated on"]
            rows.append({"model": r["model"], "verdict": "needs GPU or data", "note": why})
            continue
        if r["evaluated on"] not in notes:
            notes[r["evaluated on"]] = proxy_note(r["evaluated on"], root)
        proxy = notes[r["evaluated on"]]
        close = abs(r["difference"]) <= tolerance
        verdict = "differs" if not close else ("same trend" if proxy else "reproduced")
        rows.append({"model": r["model"], "verdict": verdict,
                     "note": f"{r['images']} images" + (f"; {proxy}" if proxy else "")})
    return pd.DataFrame(rows, columns=["model", "verdict", "note"])


def depth_order(table: pd.DataFrame, pattern: str = r"cifar_resnet(\d+)$"):
    """Depths of the measured CIFAR ResNets ordered by published and by measured top-1.

    Returns:
        (published_order, measured_order, images) or ``None`` with fewer than two measured.
    """
    rows = table[table["model"].str.match(pattern) & table["measured top-1"].notna()].copy()
    if len(rows) < 2:
        return None
    rows["depth"] = rows["model"].str.extract(pattern)[0].astype(int)
    return (list(rows.sort_values("published top-1")["depth"]),
            list(rows.sort_values("measured top-1")["depth"]), int(rows["images"].iloc[0]))


def percent(table: pd.DataFrame) -> pd.DataFrame:
    """The table for display: rates as percent (2 decimals), column names with ``(%)``."""
    out = table.copy()
    for c in ("measured top-1", "published top-1", "difference"):
        if c in out:
            out[f"{c} (%)"] = (100 * out.pop(c)).round(2)
    return out


def record_scores(res, table: pd.DataFrame, verdicts: pd.DataFrame, order) -> None:
    """Write the Table 1 rows and the depth-order check to the chapter's scorecard."""
    for (_, row), (_, v) in zip(table.iterrows(), verdicts.iterrows()):
        ours = "absent" if pd.isna(row["measured top-1"]) else round(100 * row["measured top-1"], 2)
        paper = None if pd.isna(row["published top-1"]) else round(100 * row["published top-1"], 2)
        res.score("table1", f"{row['model']}: clean top-1", paper, ours, v["verdict"],
                  note=v["note"], unit="%", kind=KIND)
    if order is not None:
        published, measured, n = order
        res.score("table1", "akamaster ResNets: accuracy order by depth", str(published),
                  str(measured), "same trend" if published == measured else "differs",
                  note=f"{n} CIFAR-10 test images; small subsets can swap neighbours", kind=KIND)


def plot_accuracy(table: pd.DataFrame, profile: str):
    """Bars of published vs measured top-1 (%) for the measured models."""
    measured = table[table["measured top-1"].notna()]
    width = min(COLUMN_INCHES, max(4, 0.9 * len(measured) + 1))   # never wider than the column
    fig, ax = plt.subplots(figsize=figsize(1, 1, aspect=3.4 / width, width=width))
    pos = np.arange(len(measured))
    ax.bar(pos - 0.2, 100 * measured["published top-1"], 0.4, label="published")
    ax.bar(pos + 0.2, 100 * measured["measured top-1"], 0.4, label="measured here")
    for p, value in zip(pos, measured["measured top-1"]):
        ax.annotate(f"{100 * value:.1f}", (p + 0.2, 100 * value), ha="center", va="bottom",
                    fontsize=8)
    ax.set_xticks(pos, measured["model"], rotation=30, ha="right")
    ax.set_ylabel("clean top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    ax.set_title(f"Clean top-1: published vs measured ({profile} profile)")
    return fig


def summary_markdown(table: pd.DataFrame, verdicts: pd.DataFrame, order, profile: str) -> str:
    """The chapter's summary, generated from this run's table."""
    measured = table[table["measured top-1"].notna()]
    absent = table[~table["present"]]
    skipped = table[table["present"] & table["measured top-1"].isna()]
    lines = [f"Measured here ({profile} profile): {len(measured)} of {len(table)} models with "
             f"published weights; {len(absent)} absent (listed with how to get them)"
             + (f"; {len(skipped)} present but not measured" if len(skipped) else "") + "."]
    for _, r in measured.iterrows():
        lines.append(f"* **{r['model']}**: {100 * r['measured top-1']:.2f}% on {r['images']} "
                     f"{r['evaluated on']} images (published {100 * r['published top-1']:.2f}%, "
                     f"{100 * r['difference']:+.2f} points).")
    for _, r in skipped.iterrows():
        lines.append(f"* **{r['model']}**: skipped: {r['skipped']}")
    lite = measured[measured["model"].str.startswith("efficientnet_lite")]
    if len(lite):
        lines.append("* The embedded EfficientNet-Lite weights map onto timm's "
                     f"`tf_efficientnet_lite*`: {100 * lite['measured top-1'].min():.1f}-"
                     f"{100 * lite['measured top-1'].max():.1f}% top-1, where a wrong mapping "
                     "scores near 0.1% (chance).")
    if order is not None:
        published, measured_order, n = order
        lines.append("* The akamaster CIFAR ResNets " + ("keep" if published == measured_order
                                                         else "do not keep")
                     + f" their published order by depth on these {n} images.")
    counts = verdicts["verdict"].value_counts()
    lines.append("* Verdicts: " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ".")
    return "\n".join(lines)
