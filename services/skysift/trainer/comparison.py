"""The statistics of an experiment (:mod:`.experiments`): curves, paired tests against random, labels saved.

Every configuration shares each seed's split (and, with a random first batch, its first batch), so the honest
comparison is paired: per seed, the difference between a configuration's area under the F1 curve (the mean
held-out F1 over its points) and that of random sampling with the same settings. Reported per configuration:
wins out of seeds, the mean difference with a bootstrap 95 % interval, and the Wilcoxon signed-rank p-value.

"Labels to reach random's final F1" is read off the mean curves: the fewest labels at which a configuration's
mean held-out F1 reaches random's mean F1 at its last point, and that number as a share of random's labels.
"F1 ratio at N" divides a configuration's mean F1 at N labels by random's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skysift.trainer import evaluation
from skysift.trainer.experiments import CEILING, CURVE_METRICS, Config

BOOTSTRAP = 10_000
SIGNIFICANCE = 0.05


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of seeds with a model, per configuration and number of labels."""
    stats = points.groupby(["config", "n_labels"])[list(CURVE_METRICS)].agg(["mean", "std", "count"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    return stats.reset_index()


def dropped_seeds(points: pd.DataFrame) -> list[str]:
    """Warnings for points without a model (a first batch of one class): they leave the means there."""
    missing = points[points["f1"].isna()]
    return [f"{config}: {len(rows)} seed(s) had no model at {n} labels (one class in the batch): seeds "
            f"{', '.join(map(str, sorted(rows['seed'])))} leave the mean there"
            for (config, n), rows in missing.groupby(["config", "n_labels"])]


def area_under_curves(points: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Mean held-out ``metric`` over each curve, then its mean and spread over seeds; best first."""
    per_seed = points.groupby(["config", "seed"])[metric].mean()
    table = per_seed.groupby("config").agg(["mean", "std", "count"]).rename(
        columns={"mean": f"mean_{metric}", "std": f"std_{metric}", "count": "seeds"})
    last = points.loc[points.groupby(["config", "seed"])["n_labels"].idxmax()]
    final = last.groupby("config")[[m for m in CURVE_METRICS]].mean()
    table[f"final_{metric}_std"] = last.groupby("config")[metric].std()
    for m in CURVE_METRICS:
        table[f"final_{m}"] = final[m]
    return table.sort_values(f"mean_{metric}", ascending=False).reset_index()


def paired_test(differences) -> dict:
    """Wins, losses, mean difference, bootstrap 95 % interval and Wilcoxon p of per-seed differences."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    out = {"seeds": len(d), "wins": int((d > 0).sum()), "losses": int((d < 0).sum()),
           "mean_diff": float(d.mean()) if len(d) else np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    if len(d) >= 2:
        rng = np.random.default_rng(0)
        means = d[rng.integers(0, len(d), size=(BOOTSTRAP, len(d)))].mean(axis=1)
        out["ci_low"], out["ci_high"] = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    if len(d) and np.any(d != 0):
        out["p_value"] = float(wilcoxon(d).pvalue)
    elif len(d):
        out["p_value"] = 1.0
    return out


def verdict_word(test: dict) -> str:
    if not np.isfinite(test["p_value"]) or test["p_value"] >= SIGNIFICANCE:
        return "no significant difference" if test["seeds"] >= 2 else "one seed: no test"
    return "better than random" if test["mean_diff"] > 0 else "worse than random"


def paired(points: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Each configuration against its random baseline (:attr:`Config.baseline`), paired by seed."""
    per_seed = points.groupby(["config", "seed"])[metric].mean().unstack("seed")
    configs = Config.of_points(points)
    rows = []
    for label, config in configs.items():
        base = config.baseline.label
        if label == base or base not in per_seed.index:
            continue
        test = paired_test(per_seed.loc[label] - per_seed.loc[base])
        rows.append({"config": label, "baseline": base, **test, "verdict": verdict_word(test)})
    return pd.DataFrame(rows, columns=["config", "baseline", "seeds", "wins", "losses", "mean_diff", "ci_low",
                                       "ci_high", "p_value", "verdict"])


def labels_saved(summary: pd.DataFrame, points: pd.DataFrame, budget: int, metric: str = "f1") -> pd.DataFrame:
    """Per configuration: labels to reach its random baseline's final mean F1 (and their share of the
    baseline's labels), and the ratio of mean F1 at ``budget`` labels (or the nearest point below)."""
    configs = Config.of_points(points)
    curves = {c: s.set_index("n_labels")[f"{metric}_mean"] for c, s in summary.groupby("config")}
    rows = []
    for label, config in configs.items():
        base = curves.get(config.baseline.label)
        curve = curves[label]
        row = {"config": label, "target_f1": np.nan, "labels_to_target": np.nan, "share_of_random_labels": np.nan,
               "budget": budget, "f1_at_budget": np.nan, "f1_ratio_at_budget": np.nan}
        if base is not None and len(base.dropna()):
            target = float(base.dropna().iloc[-1])
            reached = curve[curve >= target - 1e-12]
            row["target_f1"] = target
            if len(reached):
                row["labels_to_target"] = int(reached.index.min())
                row["share_of_random_labels"] = reached.index.min() / base.dropna().index.max()
            at = [n for n in curve.index if n <= budget]
            if at:
                n = max(at)
                row["budget"], row["f1_at_budget"] = n, float(curve[n])
                if n in base.index and base[n] > 0:
                    row["f1_ratio_at_budget"] = float(curve[n] / base[n])
        rows.append(row)
    return pd.DataFrame(rows)


def identical_groups(points: pd.DataFrame, metric: str = "f1") -> list[list[str]]:
    """Configurations whose curves are identical on every seed (for a binary model uncertainty, margin and
    entropy always are): they are drawn as one line."""
    curves = points.sort_values(["seed", "n_labels"]).groupby("config", sort=False)[metric].apply(
        lambda s: tuple(np.round(s.fillna(-1).to_numpy(), 12)))
    return [sorted(same) for same in curves.groupby(curves).groups.values()]


def report(points: pd.DataFrame, ceilings: pd.DataFrame, budget: int = 100) -> pd.DataFrame:
    """One row per configuration: area, final metrics, labels saved and the paired verdict against random."""
    auc = area_under_curves(points)
    table = auc.merge(labels_saved(summarise(points), points, budget), on="config", how="left")
    table = table.merge(paired(points).rename(columns={"seeds": "paired_seeds"}), on="config", how="left")
    table["ceiling_f1"] = ceilings["f1"].mean() if len(ceilings) else np.nan
    return table


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f}" if not np.isfinite(std) else f"{mean:.3f} ± {std:.3f}"


def verdict(table: pd.DataFrame, points: pd.DataFrame, ceilings: pd.DataFrame, metric: str = "f1") -> str:
    """Plain words: who won, the paired verdicts, labels saved, the ceiling, and which curves coincide."""
    best = table.iloc[0]
    lines = [f"best by mean held-out {metric} over the curve: {best['config']} "
             f"({_pm(best[f'mean_{metric}'], best[f'std_{metric}'])} over {int(best['seeds'])} seeds)"]
    if len(ceilings):
        lines.append(f"ceiling (every pool label, {int(ceilings['n_labels'].median())}): held-out {metric} "
                     f"{_pm(ceilings[metric].mean(), ceilings[metric].std())}")
    for _, r in table.iterrows():
        if not isinstance(r.get("baseline"), str):
            continue
        share = (f"reached with {int(r['labels_to_target'])} labels ({r['share_of_random_labels']:.0%} of random's)"
                 if np.isfinite(r["labels_to_target"]) else "not reached")
        ratio = f"{r['f1_ratio_at_budget']:.2f}x" if np.isfinite(r["f1_ratio_at_budget"]) else "n/a"
        ci = (f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if np.isfinite(r["ci_low"]) else "")
        p = f", Wilcoxon p = {r['p_value']:.2g}" if np.isfinite(r["p_value"]) else ""
        lines.append(f"{r['config']} vs random: {r['verdict']} (paired by seed: area difference "
                     f"{r['mean_diff']:+.3f}{ci}, better on {int(r['wins'])} of {int(r['paired_seeds'])} seeds{p}); "
                     f"random's final {metric} {r['target_f1']:.3f} {share}; "
                     f"{metric} ratio at {int(r['budget'])} labels {ratio}")
    for same in identical_groups(points, metric):
        if len(same) > 1:
            lines.append("identical curves (same queries every round): " + "; ".join(same))
    return "\n".join(lines)


def plot(points: pd.DataFrame, ceilings: pd.DataFrame, title: str) -> bytes:
    """Held-out F1 and macro F1 (one line per distinct curve, mean ± 1 sd, the ceiling dashed) and the paired
    difference of F1 to random per number of labels with its bootstrap 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(points)
    groups = identical_groups(points)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    colours = {}
    for ax, metric in zip(axes[:2], ("f1", "f1_macro")):
        for same in groups:
            curve = summary[summary["config"] == same[0]]
            mean, std = curve[f"{metric}_mean"], curve[f"{metric}_std"].fillna(0)
            line, = ax.plot(curve["n_labels"], mean, marker="o", ms=3, label=" = ".join(same))
            colours[same[0]] = line.get_color()
            ax.fill_between(curve["n_labels"], mean - std, mean + std, color=line.get_color(), alpha=0.12)
        if len(ceilings):
            ax.axhline(ceilings[metric].mean(), color="black", ls="--", lw=1,
                       label=f"{CEILING} ({int(ceilings['n_labels'].median())})")
        ax.set_xlabel("labels used for training")
        ax.set_ylabel(f"held-out {metric} (mean ± 1 sd over seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    ax = axes[2]
    by_config = Config.of_points(points)
    for same in groups:
        config = by_config[same[0]]
        base = config.baseline.label
        if same[0] == base or base not in by_config:
            continue
        a = points[points["config"] == same[0]].set_index(["seed", "n_labels"])["f1"]
        b = points[points["config"] == base].set_index(["seed", "n_labels"])["f1"]
        diff = (a - b).dropna().groupby(level="n_labels")
        stats = pd.DataFrame([{"n": n, **paired_test(d.to_numpy())} for n, d in diff])
        if stats.empty:
            continue
        ax.plot(stats["n"], stats["mean_diff"], marker="o", ms=3, color=colours.get(same[0]), label=same[0])
        ax.fill_between(stats["n"], stats["ci_low"], stats["ci_high"], color=colours.get(same[0]), alpha=0.15)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("labels used for training")
    ax.set_ylabel("F1 minus random's, same seed (mean, 95 % CI)")
    ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return evaluation.png_bytes(fig)
