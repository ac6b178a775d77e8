"""What a rank-spectrum table says: one-number summaries, Wilson intervals of its rates,
the gap between two models with its (paired) interval, and the plot (Figures 6, 7, 13).

Every name here is re-exported by :mod:`rankcore.spectrum` (``rankcore.spectrum.plot``,
``rankcore.spectrum.gap``, ...), which computes the tables.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

#: The columns that are fractions of images (binomial proportions, with intervals).
RATES = ("agreement", "top1", "top5")


def summary(df, column: str = "agreement") -> dict[str, float]:
    """One-number summaries of a rank spectrum, for comparing models.

    Args:
        df (pandas.DataFrame): a table from :func:`rank_spectrum`.
        column (str, optional): the curve to summarise, ``"agreement"`` or ``"top1"``.
            Default: ``"agreement"``.

    Returns:
        dict: ``rank_50`` and ``rank_90``, the smallest evaluated rank whose ``column``
        reaches 0.5 and 0.9 (NaN if none does); ``auc``, the area under the curve over
        the evaluated rank range divided by its width (in ``[0, 1]``; 1 means the full
        answer at every rank: a rank-robustness score); ``full``, the value at the
        highest evaluated rank; ``max_rank``, that rank.
    """
    if column not in df.columns:
        raise ValueError(f"column={column!r}; expected one of {list(df.columns)}")
    d = df.sort_values("rank")
    r = d["rank"].to_numpy(dtype=float)
    v = d[column].to_numpy(dtype=float)
    if len(r) == 0:
        raise ValueError("df is empty: no ranks to summarise")

    def first(th: float) -> float:
        hit = np.nonzero(v >= th)[0]
        return float(r[hit[0]]) if len(hit) else float("nan")

    width = r[-1] - r[0]
    area = float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(r)) / width) if width > 0 else float(v[0])
    return {"rank_50": first(0.5), "rank_90": first(0.9), "auc": area,
            "full": float(v[-1]), "max_rank": float(r[-1])}


def summary_table(tables: dict[str, Any]):
    """One row per model: :func:`summary` of agreement and of top-1 (fractions).

    Columns: ``model``, ``n``, ``max_rank``, ``agreement_rank_50``, ``agreement_rank_90``,
    ``agreement_auc``, ``top1_full``, ``top1_auc``, ``top1_saturation`` (smallest rank
    whose top-1 reaches 95% of the full-rank top-1; NaN without labels).
    """
    import pandas as pd

    rows = []
    for label, df in tables.items():
        a = summary(df, "agreement")
        row = {"model": label, "n": int(df["n"].iloc[0]), "max_rank": int(a["max_rank"]),
               "agreement_rank_50": a["rank_50"], "agreement_rank_90": a["rank_90"],
               "agreement_auc": a["auc"]}
        if df["top1"].notna().all():
            t = summary(df, "top1")
            row.update(top1_full=t["full"], top1_auc=t["auc"],
                       top1_saturation=saturation_rank(df, "top1"))
        else:
            row.update(top1_full=np.nan, top1_auc=np.nan, top1_saturation=np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def saturation_rank(df, column: str = "top1", fraction: float = 0.95) -> float:
    """The smallest evaluated rank whose ``column`` reaches ``fraction`` of its value at the
    highest rank: where the curve saturates (Section 4.2.1: about rank 100 on ImageNet,
    15 on CIFAR-10)."""
    d = df.sort_values("rank")
    v = d[column].to_numpy(dtype=float)
    hit = np.nonzero(v >= fraction * v[-1])[0]
    return float(d["rank"].to_numpy()[hit[0]]) if len(hit) else float("nan")


def _check_rates(p: np.ndarray, n: np.ndarray) -> None:
    if np.any(np.asarray(n) < 1):
        raise ValueError(f"n must be >= 1, got {np.min(n):g}")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p must lie in [0, 1]")


def wilson_interval(p, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials
    (:func:`rankcore.stats.wilson`, scipy's, at ``round(p * n)`` successes).

    Args:
        p (float or array): observed fractions in ``[0, 1]``.
        n (int or array): numbers of trials (images), ``>= 1``.
        confidence (float, optional): Default: 0.95.

    Returns:
        (ndarray, ndarray): lower and upper bounds, in ``[0, 1]``, of ``p``'s shape.
    """
    from .stats import wilson

    p, n = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(n, dtype=float))
    _check_rates(p, n)
    lo, hi = np.empty(p.shape), np.empty(p.shape)
    for i in np.ndindex(p.shape):
        lo[i], hi[i] = wilson(int(round(p[i] * n[i])), int(n[i]), confidence)
    return lo, hi


def per_image_outcomes(blocks: dict[int, dict[str, Any]]) -> dict[str, np.ndarray | None]:
    """Each image's outcome at each rank from :func:`rank_spectrum`'s blocks, in image order.

    Returns:
        dict: ``agree`` ``(R, N)`` bool (rank-k prediction equals the full-rank one) and
        ``correct`` ``(R, N)`` bool (equals the true label; ``None`` without labels).
    """
    order = sorted(blocks)
    pred = torch.cat([blocks[b]["pred"] for b in order], dim=-1)            # (R, N)
    full = torch.cat([blocks[b]["full"] for b in order])                    # (N,)
    out: dict[str, np.ndarray | None] = {"agree": (pred == full).numpy(), "correct": None}
    if all("y" in blocks[b] for b in order):
        y = torch.cat([blocks[b]["y"] for b in order])
        out["correct"] = (pred == y).numpy()
    return out


def with_intervals(df, confidence: float = 0.95):
    """``df`` with ``<rate>_lo`` and ``<rate>_hi`` columns: the Wilson interval of every
    rate (``agreement``, ``top1``, ``top5``) over the table's ``n`` images (NaN where the
    rate is NaN)."""
    out = df.copy()
    for col in RATES:
        if col not in df.columns:
            continue
        v = df[col].to_numpy(dtype=float)
        ok = ~np.isnan(v)
        lo, hi = np.full(len(v), np.nan), np.full(len(v), np.nan)
        if ok.any():
            lo[ok], hi[ok] = wilson_interval(v[ok], df["n"].to_numpy()[ok], confidence)
        out[f"{col}_lo"], out[f"{col}_hi"] = lo, hi
    return out


def gap(robust, natural, column: str = "top1", confidence: float = 0.95,
        correct: tuple[Any, Any] | None = None):
    """``robust - natural`` of ``column`` at every rank both evaluated (Figures 7c, 7d),
    with a confidence interval.

    Both models see the same images, so the right interval is the paired one: with
    ``correct`` (each model's per-image outcomes), Newcombe's paired interval
    (:func:`rankcore.stats.newcombe_paired`), which uses the images on which exactly one
    model is right. Without it, Newcombe's independent-samples interval
    (:func:`rankcore.stats.newcombe_independent`), wider where the
    models' errors are correlated (conservative). Both are returned when ``correct`` is given.

    Args:
        robust, natural (DataFrame): tables of :func:`rank_spectrum`.
        column (str, optional): Default: ``"top1"``.
        confidence (float, optional): Default: 0.95.
        correct (pair of arrays, optional): ``(robust, natural)`` per-image outcomes
            ``(R, N)`` bool, row ``i`` at the table's ``i``-th rank (``per_image=True`` of
            :func:`rank_spectrum`: ``outcomes["correct"]``, or ``["agree"]`` for
            ``column="agreement"``), on the same ``N`` images.

    Returns:
        pandas.DataFrame: ``rank``, ``gap``, ``gap_lo``, ``gap_hi`` (the paired interval when
        ``correct`` is given), ``gap_lo_unpaired``, ``gap_hi_unpaired`` and ``paired``
        (bool), in the column's unit.
    """
    from .stats import newcombe_independent, newcombe_paired, paired_counts

    if column not in robust.columns or column not in natural.columns:
        raise ValueError(f"column={column!r} is not in both tables")
    m = robust[["rank", column, "n"]].merge(natural[["rank", column, "n"]], on="rank",
                                            suffixes=("_robust", "_natural"))
    if m.empty:
        raise ValueError("robust and natural share no evaluated rank")
    p1, p2 = m[f"{column}_robust"].to_numpy(float), m[f"{column}_natural"].to_numpy(float)
    d = p1 - p2
    if column in RATES:
        n1, n2 = m["n_robust"].to_numpy(), m["n_natural"].to_numpy()
        _check_rates(p1, n1)
        _check_rates(p2, n2)
        # the rates' success counts, as wilson_interval reads a table's fractions
        lo_u, hi_u = np.array([newcombe_independent(int(round(a * i)), int(i), int(round(b * j)),
                                                    int(j), confidence=confidence)[1:]
                               for a, i, b, j in zip(p1, n1, p2, n2)]).reshape(-1, 2).T
    else:
        lo_u = hi_u = np.full(len(d), np.nan)
    lo, hi = lo_u.copy(), hi_u.copy()
    if correct is not None:
        rows_r = {int(k): i for i, k in enumerate(robust["rank"])}
        rows_n = {int(k): i for i, k in enumerate(natural["rank"])}
        cr, cn = (np.asarray(c) for c in correct)
        if cr.shape[0] != len(robust) or cn.shape[0] != len(natural) or cr.shape[1] != cn.shape[1]:
            raise ValueError(f"correct: shapes {cr.shape} and {cn.shape} do not match the "
                             f"tables' {len(robust)} and {len(natural)} ranks of the same images")
        for j, k in enumerate(m["rank"].astype(int)):
            _, lo[j], hi[j] = newcombe_paired(*paired_counts(cr[rows_r[k]], cn[rows_n[k]]),
                                              confidence=confidence)
    return m.assign(gap=d, gap_lo=lo, gap_hi=hi, gap_lo_unpaired=lo_u, gap_hi_unpaired=hi_u,
                    paired=correct is not None)[
        ["rank", "gap", "gap_lo", "gap_hi", "gap_lo_unpaired", "gap_hi_unpaired", "paired"]]


# ---------------------------------------------------------------------------- plot

#: Axis names of the table's columns.
COLUMN_NAMES = {"top1": "top-1 accuracy", "agreement": "agreement with full rank",
                "top5": "top-5 accuracy", "mean_true_prob": "mean true-class probability"}


def plot(tables, column: str | Sequence[str] = "top1", ax=None, percent: bool = True,
         title: str | None = None):
    """Draw rank spectra: ``column`` against input rank, one curve per table and column
    (Figures 6, 7 and 13 of the paper), with the interval band of :func:`with_intervals`
    where the table has ``<column>_lo`` and ``<column>_hi``.

    Needs matplotlib (``pip install 'rankcore[plot]'``), imported only here.

    Args:
        tables (DataFrame or dict of str to DataFrame): a table of :func:`rank_spectrum`,
            or several keyed by their legend label (e.g. ``{"natural": df1, "robust": df2}``).
        column (str or sequence of str, optional): the columns to draw (``"top1"``,
            ``"agreement"``, ``"top5"``, ``"mean_true_prob"``). A column that is all NaN
            (``top1`` of unlabelled images) is left out. Default: ``"top1"``.
        ax (matplotlib Axes, optional): where to draw. Default: a new 5.5 x 3.6 inch figure.
        percent (bool, optional): rates in percent. Default: True.
        title (str, optional): the axes' title. Default: none.

    Returns:
        matplotlib.axes.Axes: the axes drawn on.

    Examples::

        >>> import pandas as pd
        >>> df = pd.DataFrame({"rank": [0, 16, 32], "agreement": [0.1, 0.8, 1.0],
        ...                    "top1": [float("nan")] * 3})
        >>> ax = plot(df, ["agreement", "top1"])
        >>> [line.get_label() for line in ax.get_lines()]  # top1 is all NaN: left out
        ['agreement with full rank']
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("rankcore.spectrum.plot needs matplotlib: "
                          "pip install 'rankcore[plot]'") from err
    if not isinstance(tables, dict):
        tables = {"": tables}
    columns = [column] if isinstance(column, str) else list(column)
    for label, df in tables.items():
        missing = [c for c in ["rank", *columns] if c not in df.columns]
        if missing:
            raise ValueError(f"table {label!r} has no column {missing[0]!r} "
                             f"(its columns: {list(df.columns)})")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    scale = 100 if percent else 1
    for label, df in tables.items():
        for c in columns:
            if df[c].isna().all():
                continue
            name = " ".join(filter(None, [label, COLUMN_NAMES.get(c, c) if len(columns) > 1
                                          or not label else ""]))
            line, = ax.plot(df["rank"], scale * df[c], marker=".", ms=3, label=name)
            if f"{c}_lo" in df.columns:
                ax.fill_between(df["rank"], scale * df[f"{c}_lo"], scale * df[f"{c}_hi"],
                                color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("input rank k")
    ylabel = COLUMN_NAMES.get(columns[0], columns[0]) if len(columns) == 1 else "fraction"
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
