"""`rerule study`: the ReRULE paper's conditional claim, measured in the synthetic world — replay helps where the
hard/easy disparity is pronounced (MUSE-Books) and little where early training has few hard cases (TOFU
forget01, its Table 6).

The disparity knob is `build_world(stage1_over_refuse=s)`: Stage 1 is also taught to refuse the questions about a
share s of the boundary people, so that many `<normal>` prompts start Stage 2 refused (reward 0: hard) while the
forget prompts are already refused (easy). s = 0 leaves only the over-refusal Stage 1 causes by itself. The
early hard-group ratio it produces is measured and reported (the Table 6 statistic), so a reader can read the
effects against the disparity that was actually there, not against the knob.

For each replicate r (world seed first_world + r, Stage 2 seed r) the world is learned once; at each level,
Stage 1 trains from that model and RULE, ReRULE (hard-case storage) and ReRULE with random storage (the paper's
ablation, same expected admission count) run from the same Stage 1 checkpoint with the same seed. Every effect is
the paired difference within a replicate; intervals are 95% t-intervals over replicates.

    rerule study --out runs/study            # 4 levels x 5 replicates x 3 arms, 40 steps
    rerule study --out runs/study_quick --quick   # 2 levels x 2 replicates, 20 steps: the plumbing in minutes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy import stats

from openrlhf_rerule.cli_convention import Parser, number, user_errors
from openrlhf_rerule.data.world import build_world
from openrlhf_rerule.local.config import Stage1Config, parse_bool
from openrlhf_rerule.local.evaluate import evaluate_model
from openrlhf_rerule.local.metrics import read_log
from openrlhf_rerule.local.sft import train_stage1
from openrlhf_rerule.replay import ReplayConfig

from .demo import REPLAY, STAGE1, STAGE1_DATA, STAGE2, WORLD, learn_world, stage2_run
from .report import COLORS, hard_case_rewards, mean_std

ARMS = {"rule": None, "rerule": "hard", "random": "random"}  # arm -> replay admission (None: no replay)
ARM_LABELS = {"rule": "RULE", "rerule": "ReRULE (hard storage)", "random": "ReRULE (random storage)"}
LEVELS = (0.0, 1 / 3, 2 / 3, 1.0)  # shares of the 6 boundary people: 0, 2, 4, 6 people
FULL = dict(levels=LEVELS, replicates=5, steps=40)
QUICK = dict(levels=(0.0, 1.0), replicates=2, steps=20)
# (name, split, metric): the effects reported; the first is the hard cases' reward after the warm-up
EFFECTS = (("hard-case reward", None, None), ("boundary accuracy", "boundary", "accuracy"),
           ("forget refusal", "forget", "refusal_rate"), ("retain accuracy", "retain", "accuracy"))


def build_parser() -> Parser:
    p = Parser(prog="rerule study", description=__doc__.split("\n\n")[0],
               epilog="The study owns everything under --out: a rerun regenerates (overwrites) it.")
    p.add_argument("--out", default="runs/study", help="output directory (report.md, report.json, plots/, runs)")
    p.add_argument("--levels", type=parse_levels, default=None,
                   help="disparity levels: shares in [0, 1] of the boundary people Stage 1 also refuses, "
                        f"comma-separated (default: {','.join(f'{x:.4g}' for x in LEVELS)})")
    p.add_argument("--replicates", type=number(int, minimum=2), default=None,
                   help="replicates (world seed first_world + r, Stage 2 seed r); intervals are over these "
                        f"(default: {FULL['replicates']})")
    p.add_argument("--steps", type=number(int, minimum=1), default=None,
                   help=f"Stage 2 steps per run (default: {FULL['steps']})")
    p.add_argument("--first_world", type=number(int, minimum=0), default=0, help="world seed of replicate 0")
    p.add_argument("--quick", action="store_true",
                   help=f"levels {','.join(f'{x:g}' for x in QUICK['levels'])}, {QUICK['replicates']} replicates, "
                        f"{QUICK['steps']} steps unless those flags are given (2 minutes on this project's 2-core CPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train")
    p.add_argument("--cpu_threads", type=int, default=1, help="torch threads (1 is fastest for a tiny model)")
    p.add_argument("--progress", type=parse_bool, nargs="?", const=True, default=False, metavar="BOOL",
                   help="tqdm bars per run (default: off; one line per world and level is printed)")
    return p


def parse_levels(text: str) -> list[float]:
    """`--levels`: distinct shares in [0, 1], comma-separated, returned sorted (an argparse type)."""
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not levels or any(not 0.0 <= x <= 1.0 for x in levels) or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"need distinct shares in [0, 1], got {text!r}")
    return sorted(levels)


def smoothed_hard_reward(history: list[dict], hard: set, window: int) -> dict[int, float]:
    """step -> mean group reward of the hard prompts over the trailing `window` steps (a step samples only a few
    of them, so one step alone is too noisy to compare with a target)."""
    by_step = {}
    for row in history:
        if row["prompt_id"] in hard:
            by_step.setdefault(row["step"], []).append(row["mean_reward"])
    steps = sorted({row["step"] for row in history})
    out = {}
    for step in steps:
        vals = [v for s in range(step - window + 1, step + 1) for v in by_step.get(s, [])]
        if vals:
            out[step] = statistics.fmean(vals)
    return out


def cost_to_target(history: list[dict], metrics: list[dict], hard: set, target: float, window: int,
                   samples_per_step: int) -> dict | None:
    """The first step from which the smoothed hard-case reward stays at or above `target` to the end of the run
    (reached and kept: a noisy early touch does not count), with the wall time up to it (sum of step times, the
    replay update included) and the tokens generated up to it; None if the run ends below the target."""
    curve = smoothed_hard_reward(history, hard, window)
    step = None
    for s in sorted(curve, reverse=True):
        if curve[s] < target - 1e-12:
            break
        step = s
    if step is None:
        return None
    upto = [m for m in metrics if m["step"] <= step]
    return {"step": step, "seconds": sum(m["timing/step"] for m in upto),
            "tokens": sum(m["rollout/response_len"] * samples_per_step for m in upto)}


def replicate_level(runs: dict, evals: dict, tau: float, warmup: int, window: int) -> dict:
    """Everything one (replicate, level) cell contributes: Table-6 statistics, paired effects, costs to target."""
    hist = {arm: read_log(d / "reward_history.jsonl") for arm, d in runs.items()}
    mets = {arm: read_log(d / "metrics.jsonl") for arm, d in runs.items()}
    early = [r for r in hist["rule"] if r["step"] <= warmup]
    table6 = {f"hard_ratio_tau{t}": sum(r["mean_reward"] < t for r in early) / len(early) for t in (0.4, 0.6)}
    for kind in ("forget", "boundary"):
        mine = [r for r in early if r["kind"] == kind]
        table6[f"hard_ratio_{kind}"] = sum(r["mean_reward"] < tau for r in mine) / max(len(mine), 1)
    hard = hard_case_rewards(hist["rule"], hist, warmup, tau)
    table6["hard_prompts"] = len(hard["hard_ids"])
    out = {"table6": table6, "hard": hard, "effects": {}, "cost": {}, "replay": {}}
    for arm in ("rerule", "random"):
        eff = {"hard-case reward": hard[arm] - hard["rule"]}
        for name, split, metric in EFFECTS[1:]:
            eff[name] = evals[arm][split][metric] - evals["rule"][split][metric]
        out["effects"][arm] = eff
        last = mets[arm][-1]
        out["replay"][arm] = {"first_step": next((m["step"] for m in mets[arm] if m.get("replay/active")), None),
                              "admitted": last.get("replay/buffer_admitted_total", 0.0),
                              "unique_prompts": last.get("replay/buffer_unique_prompts", 0.0),
                              "stored_zero_variance_frac": last.get("replay/buffer_stored_zero_variance_frac", 0.0)}
    if hard["hard_ids"]:
        samples = STAGE2["rollout_batch"] * STAGE2["n_samples"]
        rule_curve = smoothed_hard_reward(hist["rule"], set(hard["hard_ids"]), window)
        target = rule_curve[max(rule_curve)]  # RULE's final hard-case reward (its last window)
        costs = {arm: cost_to_target(hist[arm], mets[arm], set(hard["hard_ids"]), target, window, samples)
                 for arm in ARMS}
        out["cost"] = {"target": target, **costs}
    return out


def level_summary(cells: list[dict]) -> dict:
    """One level over replicates: Table-6 statistics, effects and cost ratios as mean [95% CI]."""
    summary = {"table6": {k: mean_std([c["table6"][k] for c in cells]) for k in cells[0]["table6"]},
               "effects": {arm: {name: mean_std([c["effects"][arm][name] for c in cells
                                                 if not math.isnan(c["effects"][arm][name])])
                                 for name, _, _ in EFFECTS} for arm in ("rerule", "random")},
               # Which groups are stored: hard minus random storage, paired within the replicate.
               "hard_vs_random": {name: mean_std([c["effects"]["rerule"][name] - c["effects"]["random"][name]
                                                  for c in cells if not math.isnan(c["effects"]["rerule"][name])
                                                  and not math.isnan(c["effects"]["random"][name])])
                                  for name, _, _ in EFFECTS},
               "replay_started": {arm: sum(c["replay"][arm]["first_step"] is not None for c in cells)
                                  for arm in ("rerule", "random")},
               "admitted": {arm: mean_std([c["replay"][arm]["admitted"] for c in cells]) for arm in ("rerule", "random")},
               "ratios": {}}
    for arm in ("rerule", "random"):
        for unit in ("seconds", "tokens"):
            pairs = [(c["cost"][arm][unit], c["cost"]["rule"][unit]) for c in cells
                     if c["cost"] and c["cost"][arm] is not None and c["cost"]["rule"][unit] > 0]
            # Ratios are averaged on the log scale (a 2x and a 0.5x cancel); the interval is exponentiated back.
            logs = mean_std([math.log(a / b) for a, b in pairs]) if pairs else None
            summary["ratios"][f"{arm}_{unit}"] = None if logs is None else {
                "geo_mean": math.exp(logs["mean"]), "lo": None if logs["lo"] is None else math.exp(logs["lo"]),
                "hi": None if logs["hi"] is None else math.exp(logs["hi"]), "reached": len(pairs),
                "of": sum(bool(c["cost"]) for c in cells)}
    return summary


def trend(levels: list[float], cells: dict, arm: str) -> dict:
    """Least-squares slope of the paired hard-case gain against the measured early hard ratio (all replicate x
    level cells), with its p-value (scipy.stats.linregress): does the gain grow with the disparity?"""
    xs, ys = [], []
    for level in levels:
        for c in cells[level]:
            if not math.isnan(c["effects"][arm]["hard-case reward"]):
                xs.append(c["table6"]["hard_ratio_tau0.6"])
                ys.append(c["effects"][arm]["hard-case reward"])
    if len(set(xs)) < 2:
        return {"slope": None, "p_value": None, "n": len(xs)}
    fit = stats.linregress(xs, ys)
    return {"slope": float(fit.slope), "p_value": float(fit.pvalue), "n": len(xs)}


def verdict(levels: list[float], summary: dict, trends: dict) -> list[str]:
    lo, hi = summary[levels[0]], summary[levels[-1]]
    gain_hi = hi["effects"]["rerule"]["hard-case reward"]
    gain_lo = lo["effects"]["rerule"]["hard-case reward"]
    versus_random = hi["hard_vs_random"]["hard-case reward"]
    slope = trends["rerule"]
    positive_hi = gain_hi["lo"] is not None and gain_hi["lo"] > 0
    grows = slope["slope"] is not None and slope["slope"] > 0 and slope["p_value"] < 0.05
    lines = [
        f"- Highest disparity (level {levels[-1]:.2f}, early hard ratio "
        f"{hi['table6']['hard_ratio_tau0.6']['mean']:.0%}): ReRULE − RULE on the hard cases' reward = "
        f"{gain_hi['mean']:+.3f} [{_num(gain_hi['lo'])}, {_num(gain_hi['hi'])}] "
        f"({'interval above 0' if positive_hi else 'interval includes or is below 0'}).",
        f"- Lowest disparity (level {levels[0]:.2f}, early hard ratio {lo['table6']['hard_ratio_tau0.6']['mean']:.0%}): "
        f"{gain_lo['mean']:+.3f} [{_num(gain_lo['lo'])}, {_num(gain_lo['hi'])}].",
        f"- Trend of the gain against the measured early hard ratio: slope {_num(slope['slope'])} per unit ratio, "
        f"p = {'–' if slope['p_value'] is None else format(slope['p_value'], '.3f')} over {slope['n']} replicate × level cells "
        f"({'grows with the disparity' if grows else 'no significant growth'}).",
        f"- Hard storage minus random storage at the highest level, on the hard cases' reward: "
        f"{versus_random['mean']:+.3f} [{_num(versus_random['lo'])}, {_num(versus_random['hi'])}].",
    ]
    ratios = hi["ratios"]
    lines.append(f"- Time to RULE's final hard-case reward at the highest level, ReRULE ÷ RULE: wall time "
                 f"{_ratio(ratios['rerule_seconds'])}, generated tokens {_ratio(ratios['rerule_tokens'])}.")
    reproduces = positive_hi and grows
    lines.append(f"- **The paper's conditional claim {'reproduces' if reproduces else 'does not reproduce'} here** "
                 "(criterion: a hard-case gain whose interval is above 0 at the highest disparity, and a gain that "
                 "grows with the measured hard ratio, p < 0.05).")
    return lines


def _num(x) -> str:
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


def _ratio(r: dict | None) -> str:
    if not r:
        return "never reached"
    interval = f" [{r['lo']:.2f}, {r['hi']:.2f}]" if r["lo"] is not None and r["lo"] != r["hi"] else ""
    return f"{r['geo_mean']:.2f}{interval} ({r['reached']}/{r['of']} reached)"


def write_study_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2))
    levels, summary, cfg = report["levels"], report["summary"], report["settings"]
    lines = [f"# When does replay help? RULE vs ReRULE over {len(levels)} disparity levels × {cfg['replicates']} "
             "replicates", "", f"Command: `{report['command']}`  ",
             f"Wall time: {report['wall_seconds']:.0f} s on {report['machine']}  ",
             f"Replicates: world seeds {', '.join(map(str, cfg['worlds']))} with Stage 2 seeds "
             f"{', '.join(map(str, range(cfg['replicates'])))}; {cfg['steps']} Stage 2 steps; replay τ {cfg['tau']}, "
             f"warm-up {cfg['warmup']} (hard cases = prompts whose RULE reward up to the warm-up is below τ).", "",
             "Intervals: 95% t-intervals over replicates of the paired (same world, same seed) difference.", "",
             "## Hard-case statistics (the paper's Table 6: share of early groups below τ, in %)", "",
             "| level (share of boundary people Stage 1 refuses) | τ = 0.4 | τ = 0.6 | forget groups < τ | boundary "
             "groups < τ | hard prompts | replay started (ReRULE / random) | groups stored (ReRULE) |",
             "|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        s = summary[lv]
        t6 = s["table6"]
        lines.append(f"| {lv:.2f} | {_ci(t6['hard_ratio_tau0.4'], True)} | {_ci(t6['hard_ratio_tau0.6'], True)} | "
                     f"{_ci(t6['hard_ratio_forget'], True)} | {_ci(t6['hard_ratio_boundary'], True)} | "
                     f"{t6['hard_prompts']['mean']:.1f} | {s['replay_started']['rerule']} / "
                     f"{s['replay_started']['random']} of {cfg['replicates']} | {s['admitted']['rerule']['mean']:.0f} |")
    lines += ["", "Paper (Table 6): MUSE τ 0.4 → 67.5; TOFU τ 0.4 → 47.5, τ 0.6 → 54.3.", ""]
    for arm in ("rerule", "random"):
        lines += [f"## {ARM_LABELS[arm]} − RULE", "", "| level | " + " | ".join(n for n, _, _ in EFFECTS) + " |",
                  "|---" * (len(EFFECTS) + 1) + "|"]
        lines += [f"| {lv:.2f} | " + " | ".join(_ci(summary[lv]["effects"][arm][n]) for n, _, _ in EFFECTS) + " |"
                  for lv in levels]
        lines.append("")
    lines += ["## Hard-case storage − random storage (which groups are replayed)", "",
              "| level | " + " | ".join(n for n, _, _ in EFFECTS) + " |", "|---" * (len(EFFECTS) + 1) + "|"]
    lines += [f"| {lv:.2f} | " + " | ".join(_ci(summary[lv]["hard_vs_random"][n]) for n, _, _ in EFFECTS) + " |"
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
        lines.append(f"| {lv:.2f} | {_ratio(r['rerule_seconds'])} | {_ratio(r['rerule_tokens'])} | "
                     f"{_ratio(r['random_seconds'])} | {_ratio(r['random_tokens'])} |")
    lines += ["", "## Verdict", "", *report["verdict"], "", *[f"![{p}]({p})" for p in report["plots"]], "",
              "## Settings", "", "```", json.dumps(cfg, indent=2), "```", ""]
    (out / "report.md").write_text("\n".join(lines))


@user_errors("rerule study")
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    preset = QUICK if args.quick else FULL  # explicit flags win over the preset
    levels = args.levels or list(preset["levels"])
    replicates = args.replicates or preset["replicates"]
    steps = args.steps or preset["steps"]
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(device=args.device, cpu_threads=args.cpu_threads, progress=args.progress, overwrite=True)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    tau, warmup, window = REPLAY["threshold"], REPLAY["warmup_steps"], max(1, steps // 4)
    worlds = [args.first_world + r for r in range(replicates)]
    t_start = time.perf_counter()
    cells = {lv: [] for lv in levels}
    for r, ws in enumerate(worlds):
        _, pretrained = learn_world(ws, out / f"world{ws}", common)
        for i, lv in enumerate(levels):
            cell_dir = out / f"world{ws}" / f"level{i}"
            world_dir = cell_dir / "world"
            build_world(seed=ws, **WORLD, **STAGE1_DATA, stage1_over_refuse=lv).write(world_dir)
            stage1 = train_stage1(Stage1Config(model=str(pretrained), data=str(world_dir / "stage1.jsonl"),
                                               out=str(cell_dir / "stage1"), seed=ws, **STAGE1, **common))
            runs, evals = {}, {}
            for arm, admission in ARMS.items():
                replay = ReplayConfig(**{**REPLAY, "enable": admission is not None, "admission": admission or "hard",
                                         "seed": r})
                runs[arm] = stage2_run(stage1, world_dir, cell_dir / "stage2" / arm, r, steps, replay, common)
                evals[arm] = evaluate_model(runs[arm] / "final", world_dir, device)["metrics"]
            cells[lv].append(replicate_level(runs, evals, tau, warmup, window))
            print(f"[study] world {ws} level {lv:.2f}: done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    summary = {lv: level_summary(cells[lv]) for lv in levels}
    trends = {arm: trend(levels, cells, arm) for arm in ("rerule", "random")}
    report = {"command": "rerule study " + shlex.join(argv), "wall_seconds": time.perf_counter() - t_start,
              "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores visible, torch threads {args.cpu_threads}"
                         if device == "cpu" else torch.cuda.get_device_name(0),
              "levels": levels,
              "settings": {"replicates": replicates, "worlds": worlds, "steps": steps, "tau": tau, "warmup": warmup,
                           "smoothing_window": window, "world": WORLD, "stage1_data": STAGE1_DATA, "stage1": STAGE1,
                           "stage2": STAGE2, "replay": REPLAY},
              "cells": {str(lv): cells[lv] for lv in levels}, "summary": summary, "trends": trends,
              "plots": plot_study(out, levels, summary), "verdict": verdict(levels, summary, trends)}
    write_study_report(out, report)
    print("\n".join(report["verdict"]))
    print(f"report: {out / 'report.md'}  ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
