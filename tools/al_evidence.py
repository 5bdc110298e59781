"""Generate docs/active-learning.md: the strategies compared on every labelled real set in the repo.

    python tools/al_evidence.py run SET [SET ...]   # curves of those sets -> docs/active-learning/<set>_*.csv|png
    python tools/al_evidence.py write               # the document, from the saved curves

(``make al-evidence`` does both for every set.) Each set's points are saved as each curve ends. Nothing in the
document is typed by hand: tables, verdicts and the targets' pass/miss are computed from the saved points.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skysift.trainer import comparison, strategies
from skysift.trainer import experiments as ex

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
OUT = ROOT / "docs" / "active-learning"
DOC = ROOT / "docs" / "active-learning.md"
SEEDS = list(range(20))
STRATEGIES = ["random", "uncertainty", "diverse_uncertainty", "balanced", "density"]
MAX_LABELS, BUDGET = 130, 100
RARE_FRACTION = 0.15


def fink() -> ex.LabelledSet:
    return ex.from_alerts([DATA / "alerts" / "ztf" / "fink_labeled"],
                          DATA / "alerts" / "ztf" / "fink_labeled" / "labels_cdsxmatch.csv", "galactic")


def snad() -> ex.LabelledSet:
    data = ex.from_table(DATA / "tabular" / "snad_realbogus" / "akb_obj_features_snad4.csv", "label", "oid",
                         classes=("bogus", "real"))
    data.name = "SNAD real/bogus (ZTF light-curve features)"
    return data


def snad_rare() -> ex.LabelledSet:
    """The SNAD table with a seeded subsample of its positives: a real rare class (15 % of the set)."""
    data = snad()
    rng = np.random.default_rng(2024)
    pos, neg = np.flatnonzero(data.y == 1), np.flatnonzero(data.y == 0)
    keep_pos = rng.choice(pos, int(RARE_FRACTION / (1 - RARE_FRACTION) * len(neg)), replace=False)
    rows = np.sort(np.concatenate([neg, keep_pos]))
    return ex.LabelledSet(f"SNAD real/bogus, 'real' subsampled to {RARE_FRACTION:.0%}", data.X.iloc[rows].reset_index(drop=True),
                          data.y[rows], data.ids[rows], data.classes, notes=data.notes)


# name -> (labelled set, strategies, decision threshold); the last run repeats the rare set with the threshold
# rounds use (chosen by cross-validation: 3 more fits a round, hence fewer strategies)
SETS = {"fink_galactic": (fink, STRATEGIES, "0.5"), "snad_realbogus": (snad, STRATEGIES, "0.5"),
        "snad_rare_real": (snad_rare, STRATEGIES, "0.5"), "snad_rare_real_cv": (snad_rare, ["random", "balanced"], "cv")}


def run(name: str) -> None:
    load, names, threshold = SETS[name]
    data = load()
    configs = ex.grid(names, thresholds=(threshold,))
    started = time.time()
    results = ex.run(data, configs, SEEDS, MAX_LABELS, checkpoint=OUT / f"{name}_points.csv",
                     progress=lambda _: print(f"{name}: curve done ({time.time() - started:.0f} s)", flush=True))
    results.ceiling.to_csv(OUT / f"{name}_ceiling.csv", index=False)
    print(f"{name}: {len(configs) * len(SEEDS)} curves in {time.time() - started:.0f} s")


def _targets(data: ex.LabelledSet, table: pd.DataFrame, points: pd.DataFrame, ceilings: pd.DataFrame) -> list[str]:
    summary = comparison.summarise(points)
    base = points[points["strategy"] == "random"].drop_duplicates("config")["config"].iloc[0]
    pool = int(ceilings["n_labels"].median())
    positive = float(data.y.mean())
    rows = []
    for _, r in table.iterrows():
        if r["config"] == base:
            continue
        curve = summary[summary["config"] == r["config"]].set_index("n_labels")["f1_mean"]
        near = curve[curve >= ceilings["f1"].mean() - 0.05]
        rows.append(
            f"| {r['config'].split(' ')[0]} | {_fmt_share(r)} | {r['f1_ratio_at_budget']:.2f}x | "
            f"{r['verdict']} (p = {r['p_value']:.2g}) | "
            + (f"{int(near.index.min())} ({near.index.min() / pool:.0%} of the pool)" if len(near) else
               f"not within {MAX_LABELS} labels ({MAX_LABELS / pool:.0%} of the pool)") + " |")
    head = [f"Positive share of the set: about {positive:.0%}. Pool: {pool} labels; ceiling F1 (every pool label): "
            f"{ceilings['f1'].mean():.3f}.", "",
            "| strategy | labels to random's final F1 (share) | F1 ratio at budget | paired verdict vs random | "
            "within 0.05 F1 of the ceiling at |", "|---|---|---|---|---|"]
    return head + rows


def _ceilings(name: str, data: ex.LabelledSet, points: pd.DataFrame) -> pd.DataFrame:
    """The saved ceilings, or, for a run stopped before it saved them, the same computed now."""
    path = OUT / f"{name}_ceiling.csv"
    if not path.exists():
        _, names, threshold = SETS[name]
        config = ex.grid(names[:1], thresholds=(threshold,))[0]
        pd.DataFrame([ex.ceiling(data, s, 0.3, config) for s in sorted(points["seed"].unique())]).to_csv(path, index=False)
    return pd.read_csv(path)


def _default_targets(name: str, data: ex.LabelledSet, table: pd.DataFrame, points: pd.DataFrame,
                     ceilings: pd.DataFrame) -> list[str]:
    """Pass/miss rows of the targets for the default strategy on one set (and, for every strategy, the
    'never significantly worse than random' target)."""
    rows = []
    chosen = table[table["config"].str.startswith(strategies.DEFAULT + " ")]
    if len(chosen):
        r = chosen.iloc[0]
        share = r["share_of_random_labels"]
        rows.append(f"| {name} | labels to random's final F1 <= 50 % of random's (stretch 25 %) | "
                    f"{'not reached' if not np.isfinite(share) else f'{share:.0%}'} | "
                    f"{'yes' if np.isfinite(share) and share <= 0.5 else 'no'}"
                    f"{' (stretch met)' if np.isfinite(share) and share <= 0.25 else ''} |")
        if data.y.mean() < 0.2:
            ratio = r["f1_ratio_at_budget"]
            rows.append(f"| {name} | positive class < 20 %: F1 at {int(r['budget'])} labels >= 1.3x random's | "
                        f"{ratio:.2f}x | {'yes' if ratio >= 1.3 else 'no'} |")
        summary = comparison.summarise(points)
        curve = summary[summary["config"] == r["config"]].set_index("n_labels")["f1_mean"]
        pool = int(ceilings["n_labels"].median())
        near = curve[curve >= ceilings["f1"].mean() - 0.05]
        at = int(near.index.min()) if len(near) else None
        last = int(curve.index.max())
        met = "yes" if at and at <= 0.2 * pool else ("no" if at or last >= 0.2 * pool else
                                                     f"not measured: the curves stop at {last / pool:.0%} of the pool")
        rows.append(f"| {name} | within 0.05 F1 of the ceiling at <= 20 % of the pool ({int(0.2 * pool)}) | "
                    + (f"at {at} labels ({at / pool:.0%})" if at else f"not within {last} labels") + f" | {met} |")
    worse = table[table["verdict"] == "worse than random"]
    rows.append(f"| {name} | no strategy significantly worse than random (paired, p < 0.05) | "
                f"{', '.join(c.split(' ')[0] for c in worse['config']) or 'none worse'} | {'no' if len(worse) else 'yes'} |")
    return rows


def _fmt_share(r) -> str:
    if not np.isfinite(r["labels_to_target"]):
        return "not reached"
    return f"{int(r['labels_to_target'])} ({r['share_of_random_labels']:.0%})"


def write() -> None:
    lines = ["# Active learning: what the strategies save, measured", "",
             "Generated by `make al-evidence` (`tools/al_evidence.py`) from the labelled real sets in `tests/data/`;",
             "do not edit by hand. Every number below is computed from the saved points in `docs/active-learning/`.", "",
             f"Method: {len(SEEDS)} seeds per set; each seed splits the set into a stratified held-out part (30 %) and a "
             "pool, and draws a random first batch of 30 from the pool with a generator of its own; every strategy "
             "then starts from that seed's split and first batch, queries 10 labels a round from the oracle up to "
             f"{MAX_LABELS} labels, with the production model and parameters (class weights `auto`; decision threshold "
             "0.5, except in the `_cv` run, where it is chosen for F1 by cross-validation on the training labels each "
             "round, as rounds do). Comparisons are paired by seed: the per-seed difference of the area under the F1 curve to "
             "random, a Wilcoxon signed-rank test and a bootstrap 95 % interval. \"Labels to random's final F1\" "
             "reads the mean curves. The ceiling is the model trained on every pool label.",
             f"The round default is `{strategies.DEFAULT}`.", ""]
    wins: dict[str, list[float]] = {}
    targets: list[str] = []
    for name in SETS:
        points_file = OUT / f"{name}_points.csv"
        if not points_file.exists():
            lines += [f"## {name}", "", "not run yet", ""]
            continue
        points = pd.read_csv(points_file, dtype={"threshold": str})
        data = SETS[name][0]()
        ceilings = _ceilings(name, data, points)
        table = comparison.report(points, ceilings, BUDGET)
        (OUT / f"{name}_curves.png").write_bytes(comparison.plot(points, ceilings, name))
        table.to_csv(OUT / f"{name}_report.csv", index=False)
        about = [data.describe(), *data.notes]
        seeds = points.groupby("config")["seed"].nunique()
        lines += [f"## {name}", "", f"{about[0]}; {seeds.min()}-{seeds.max()} seeds per strategy.", *[f"- {n}" for n in about[1:]],
                  *[f"- warning: {w}" for w in comparison.dropped_seeds(points)], "",
                  f"![learning curves]({OUT.name}/{name}_curves.png)", "", *_targets(data, table, points, ceilings), "",
                  "```", comparison.verdict(table, points, ceilings), "```", ""]
        for _, r in table.dropna(subset=["mean_diff"]).iterrows():
            wins.setdefault(r["config"].split(" ")[0], []).append(r["mean_diff"])
        targets += _default_targets(name, data, table, points, ceilings)
    if wins:
        ranked = sorted(wins.items(), key=lambda kv: -np.mean(kv[1]))
        lines += ["## What wins where", "", "Mean paired area difference to random, averaged over the sets:", "",
                  *[f"- `{s}`: {np.mean(d):+.3f} (per set: {', '.join(f'{v:+.3f}' for v in d)})" for s, d in ranked], "",
                  f"Best on average: `{ranked[0][0]}`; the round default is `{strategies.DEFAULT}`"
                  + ("." if ranked[0][0] == strategies.DEFAULT else " (the evidence points elsewhere: see the tables)."), ""]
    lines += ["## The issue's targets, for the default strategy", "",
              "| set | target | measured | met |", "|---|---|---|---|", *targets, "",
              "A target is met when the measured value says so; nothing here is adjusted by hand.", ""]
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:2] == ["run"]:
        for set_name in sys.argv[2:] or SETS:
            run(set_name)
    elif sys.argv[1:2] == ["write"]:
        write()
    else:
        sys.exit(__doc__)
