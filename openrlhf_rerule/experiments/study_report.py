"""`rerule study`'s report: report.md, report.json and the plots, from the study's cells and summaries (study.py)."""

from __future__ import annotations

import json
from pathlib import Path

from openrlhf_rerule.atomic import atomic_path

from .report import COLORS
from .study_stats import ALPHA, POWER

ARM_LABELS = {"rule": "RULE", "rerule": "ReRULE (hard storage)", "random": "ReRULE (random storage)"}
# (name, split, metric): the effects reported; the first is the hard cases' reward after the warm-up
EFFECTS = (("hard-case reward", None, None), ("boundary accuracy", "boundary", "accuracy"),
           ("forget refusal", "forget", "refusal_rate"), ("retain accuracy", "retain", "accuracy"))


def p_text(p) -> str:
    return "–" if p is None else f"{p:.3f}"


def plain(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def signed(x) -> str:
    return "–" if x is None else f"{x:+.3f}"


def plot_study(out: Path, levels: list[float], summary: dict) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "plots").mkdir(exist_ok=True)
    xs = [summary[lv]["table6"]["hard_ratio_tau0.6"]["mean"] for lv in levels]
    fig, axes = plt.subplots(1, len(EFFECTS), figsize=(4.2 * len(EFFECTS), 3.6))
    for ax, (name, _, _) in zip(axes, EFFECTS):
        for arm, color, shift in (("rerule", COLORS["rerule"], 0.0), ("random", "tab:gray", 0.006)):
            cells = [summary[lv]["effects"][arm][name] for lv in levels]
            ys = [c["mean"] for c in cells]
            err = [[c["mean"] - (c["lo"] if c["lo"] is not None else c["mean"]) for c in cells],
                   [(c["hi"] if c["hi"] is not None else c["mean"]) - c["mean"] for c in cells]]
            ax.errorbar([x + shift for x in xs], ys, yerr=err, marker="o", capsize=3, color=color,
                        label=ARM_LABELS[arm] + " − RULE")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("early hard-group ratio (τ = 0.6)")
    axes[0].set_ylabel("paired difference vs RULE (95% CI)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Effect of replay vs the hard/easy disparity (each point: one level, mean over replicates)")
    fig.tight_layout()
    fig.savefig(out / "plots" / "effect_vs_disparity.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, unit in zip(axes, ("seconds", "tokens")):
        for arm, color in (("rerule", COLORS["rerule"]), ("random", "tab:gray")):
            pts = [(x, summary[lv]["ratios"][f"{arm}_{unit}"]) for x, lv in zip(xs, levels)
                   if summary[lv]["ratios"][f"{arm}_{unit}"]]
            if not pts:
                continue
            ys = [r["geo_mean"] for _, r in pts]
            err = [[r["geo_mean"] - (r["lo"] or r["geo_mean"]) for _, r in pts],
                   [(r["hi"] or r["geo_mean"]) - r["geo_mean"] for _, r in pts]]
            ax.errorbar([x for x, _ in pts], ys, yerr=err, marker="o", capsize=3, color=color, label=ARM_LABELS[arm])
        ax.axhline(1, color="black", lw=0.8)
        ax.set_title(f"{'wall time' if unit == 'seconds' else 'generated tokens'} to reach RULE's final hard-case "
                     "reward, ÷ RULE's", fontsize=9)
        ax.set_xlabel("early hard-group ratio (τ = 0.6)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "plots" / "time_to_target.png", dpi=110)
    plt.close(fig)
    return ["plots/effect_vs_disparity.png", "plots/time_to_target.png"]


def _ci(cell: dict, pct: bool = False) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:+.3f}")
    if cell["lo"] is None or cell["lo"] == cell["hi"]:
        return f(cell["mean"])
    return f"{f(cell['mean'])} [{f(cell['lo'])}, {f(cell['hi'])}]"


def ratio_text(r: dict | None) -> str:
    if not r:
        return "never reached"
    interval = f" [{r['lo']:.2f}, {r['hi']:.2f}]" if r["lo"] is not None and r["lo"] != r["hi"] else ""
    return f"{r['geo_mean']:.2f}{interval} ({r['reached']}/{r['of']} reached)"


def write_study_report(out: Path, report: dict) -> None:
    # atomic: a kill while writing leaves the last report, which --report_only can rebuild
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    levels, summary, cfg = report["levels"], report["summary"], report["settings"]
    sets = cfg["world_sets"]
    total = sum(len(worlds) for worlds in sets.values())
    slope = report["trends"]["rerule"]
    lines = [f"# When does replay help? RULE vs ReRULE over {len(levels)} disparity levels × {len(sets)} world set(s) × "
             f"{cfg['replicates']} replicates", "", f"Command: `{report['command']}`  ",
             f"Wall time: {report['wall_seconds']:.0f} s on {report['machine']}"
             f"{f' ({kept} finished units kept from an earlier run)' if (kept := report.get('units_kept')) else ''}  ",
             "World sets: " + "; ".join(f"from {first}: world seeds {', '.join(map(str, worlds))}"
                                        for first, worlds in sets.items()) +
             f" (Stage 2 seeds {', '.join(map(str, range(cfg['replicates'])))} in each set)  ",
             f"{cfg['steps']} Stage 2 steps; replay τ {cfg['tau']}, warm-up {cfg['warmup']} (hard cases = prompts whose "
             "RULE reward up to the warm-up is below τ).  ",
             f"Power: the pooled design detects a slope of the hard-case gain on the measured hard ratio of "
             f"{plain(slope['detectable_slope'])} per unit ratio with {POWER:.0%} power (two-sided α = {ALPHA}; "
             f"noncentral t with the measured hard ratios, {slope['groups']} replicates and the residual SD "
             f"{plain(slope['residual_sd'])} observed).", "",
             f"Intervals: 95% t-intervals over all {total} replicates of the paired (same world, same seed) difference; "
             "trends: least squares with one intercept per replicate (so per world set too), t-test on the slope.", "",
             "## Hard-case statistics (the paper's Table 6: share of early groups below τ, in %)", "",
             "| level (< 0: Stage 1 answers, > 0: refuses that share of the boundary people) | τ = 0.4 | τ = 0.6 | "
             "forget groups < τ | boundary groups < τ | hard prompts | replay started (ReRULE / random) | groups stored "
             "(ReRULE) |", "|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        s = summary[lv]
        t6 = s["table6"]
        lines.append(f"| {lv:+.2f} | {_ci(t6['hard_ratio_tau0.4'], True)} | {_ci(t6['hard_ratio_tau0.6'], True)} | "
                     f"{_ci(t6['hard_ratio_forget'], True)} | {_ci(t6['hard_ratio_boundary'], True)} | "
                     f"{t6['hard_prompts']['mean']:.1f} | {s['replay_started']['rerule']} / "
                     f"{s['replay_started']['random']} of {total} | {s['admitted']['rerule']['mean']:.0f} |")
    lines += ["", "Paper (Table 6): MUSE τ 0.4 → 67.5; TOFU τ 0.4 → 47.5, τ 0.6 → 54.3.", "",
              "## By world set (ReRULE − RULE on the hard cases' reward unless said)", "",
              "| world set | hard ratio τ 0.6, lowest → highest level | gain, lowest level | gain, highest level | "
              "slope of the gain on the hard ratio [95% CI], p | hard − random storage, highest level |",
              "|---|---|---|---|---|---|"]
    rows = [(f"{first} (worlds {own['worlds'][0]}–{own['worlds'][-1]})", own["summary"], own["trend"])
            for first, own in report["by_world_set"].items()]
    for name, summ, tr in rows + [("pooled", summary, slope)]:
        lo, hi = summ[levels[0]], summ[levels[-1]]
        lines.append(f"| {name} | {_ci(lo['table6']['hard_ratio_tau0.6'], True)} → "
                     f"{_ci(hi['table6']['hard_ratio_tau0.6'], True)} | "
                     f"{_ci(lo['effects']['rerule']['hard-case reward'])} | "
                     f"{_ci(hi['effects']['rerule']['hard-case reward'])} | {signed(tr['slope'])} [{signed(tr['lo'])}, "
                     f"{signed(tr['hi'])}], p = {p_text(tr['p_value'])} | {_ci(hi['hard_vs_random']['hard-case reward'])} |")
    lines.append("")
    for arm in ("rerule", "random"):
        lines += [f"## {ARM_LABELS[arm]} − RULE", "", "| level | " + " | ".join(n for n, _, _ in EFFECTS) + " |",
                  "|---" * (len(EFFECTS) + 1) + "|"]
        lines += [f"| {lv:+.2f} | " + " | ".join(_ci(summary[lv]["effects"][arm][n]) for n, _, _ in EFFECTS) + " |"
                  for lv in levels]
        lines.append("")
    lines += ["## Hard-case storage − random storage (which groups are replayed)", "",
              "| level | " + " | ".join(n for n, _, _ in EFFECTS) + " |", "|---" * (len(EFFECTS) + 1) + "|"]
    lines += [f"| {lv:+.2f} | " + " | ".join(_ci(summary[lv]["hard_vs_random"][n]) for n, _, _ in EFFECTS) + " |"
              for lv in levels]
    lines.append("")
    lines += ["## Time to target (RULE's final hard-case reward), as a ratio to RULE's own", "",
              "Step from which the smoothed hard-case reward (trailing window of steps / 4) stays at or above RULE's "
              "final value; geometric mean over the replicates where the arm reached it [95% CI]; < 1 = faster than "
              "RULE.", "",
              "| level | ReRULE wall time | ReRULE generated tokens | random wall time | random generated tokens |",
              "|---|---|---|---|---|"]
    for lv in levels:
        r = summary[lv]["ratios"]
        lines.append(f"| {lv:+.2f} | {ratio_text(r['rerule_seconds'])} | {ratio_text(r['rerule_tokens'])} | "
                     f"{ratio_text(r['random_seconds'])} | {ratio_text(r['random_tokens'])} |")
    lines += ["", "## Verdict", "", *report["verdict"], "", *[f"![{p}]({p})" for p in report["plots"]], "",
              "## Settings", "", "```", json.dumps(cfg, indent=2), "```", ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
