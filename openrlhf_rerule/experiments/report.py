"""The demo's report: aggregate the runs over worlds and seeds, draw the plots (matplotlib, Agg) and write
report.json / report.md. Reads only what the trainers wrote (metrics.jsonl, reward_history.jsonl).

Intervals: a cell is the mean over independent units with its two-sided 95% Student-t confidence interval
(scipy.stats.ttest_1samp). In the demo the unit is the world (Stage 2 seeds of one world share its Stage 1
checkpoint, so they are averaged first); in `rerule study` it is the replicate (a world with its own seed)."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from scipy import stats

from openrlhf_rerule.atomic import atomic_path
from openrlhf_rerule.local.metrics import read_log

CONFIDENCE = 0.95

METHODS = ("rule", "rerule")
LABELS = {"rule": "RULE", "rerule": "ReRULE"}
COLORS = {"rule": "tab:blue", "rerule": "tab:red"}
# (split, metric, direction) columns of the evaluation table
COLUMNS = [("forget", "refusal_rate", "↑"), ("forget", "rougeL_recall", "↓"), ("forget", "accuracy", "↓"),
           ("boundary", "refusal_rate", "↓"), ("boundary", "accuracy", "↑"), ("retain", "accuracy", "↑"),
           ("heldout_forget", "refusal_rate", "↑"), ("heldout_boundary", "accuracy", "↑")]


def mean_std(values: list[float]) -> dict:
    """Mean, sample std and the 95% t-interval of the mean (lo = hi = mean when all values are equal; None for
    a single value: no interval without a spread). A NaN is a unit where the quantity does not exist (no hard
    prompt, no step after the replay warm-up: `--steps 3`): left out, so `n` counts the units that have it, and
    fmt says "n of N"; `values` keeps every unit, in order, for paired differences. No value left: a NaN mean."""
    every = [float(v) for v in values]
    values = [v for v in every if not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "lo": None, "hi": None, "n": 0, "values": every}
    mean = statistics.fmean(values)
    if len(values) < 2:
        lo = hi = None
    elif len(set(values)) == 1:
        lo = hi = mean
    else:
        interval = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
        lo, hi = float(interval.low), float(interval.high)
    return {"mean": mean, "std": statistics.stdev(values) if len(values) > 1 else 0.0, "lo": lo, "hi": hi,
            "n": len(values), "values": every}


def aggregate_eval(per_unit: list[dict]) -> dict:
    """[{split: {metric: v}}] over units -> {split: {metric: {mean, std, lo, hi, n, values}}}."""
    return {split: {metric: mean_std([run[split][metric] for run in per_unit]) for metric in per_unit[0][split]}
            for split in per_unit[0]}


def mean_metrics(per_seed: list[dict]) -> dict:
    """[{split: {metric: v}}] over the seeds of one world -> {split: {metric: mean}} (the world's value)."""
    return {split: {metric: statistics.fmean(run[split][metric] for run in per_seed) for metric in per_seed[0][split]}
            for split in per_seed[0]}


def claim(text: str, held: list[bool], unit: str) -> dict:
    """A sentence of the README with how often it held (in how many worlds or runs)."""
    return {"claim": text, "held": sum(bool(h) for h in held), "of": len(held), "unit": unit}


def hard_case_rewards(rule_history: list[dict], histories: dict, warmup: int, tau: float) -> dict:
    """The hard cases of one world and seed, found as the paper finds them: prompts whose group mean reward under
    RULE up to the warm-up step is below tau (every arm starts from the same checkpoint with the same seed, so
    their early steps are the same rollouts). Returns the hard prompt ids, RULE's early reward on them and, per
    arm, the mean group reward on them after the warm-up (the window in which replay can act)."""
    early = defaultdict(list)
    for row in rule_history:
        if row["step"] <= warmup:
            early[row["prompt_id"]].append(row["mean_reward"])
    hard = sorted(p for p, rewards in early.items() if statistics.fmean(rewards) < tau)
    out = {"hard_ids": hard, "early": statistics.fmean(r for p in hard for r in early[p]) if hard else float("nan")}
    hard_set = set(hard)
    for arm, history in histories.items():
        late = [row["mean_reward"] for row in history if row["step"] > warmup and row["prompt_id"] in hard_set]
        out[arm] = statistics.fmean(late) if late else float("nan")
    return out


def training_summary(run_dirs: list[Path], tail: int, tau: float) -> dict:
    """Per method run: final-window rewards, hard-case ratio, replay activity, wall time; over seeds."""
    rows = [read_log(d / "metrics.jsonl") for d in run_dirs]

    def over_seeds(fn):  # runs where the quantity does not exist (None: e.g. replay never started) are left out
        values = [float(v) for v in map(fn, rows) if v is not None]
        return mean_std(values) if values else {"mean": None, "std": 0.0, "lo": None, "hi": None, "n": 0,
                                                "values": []}

    def tail_mean(key):
        return lambda r: statistics.fmean(vals) if (vals := [x[key] for x in r[-tail:] if key in x]) else None

    out = {"reward_forget_final": over_seeds(tail_mean("rollout/reward_forget")),
           "reward_boundary_final": over_seeds(tail_mean("rollout/reward_boundary")),
           "hard_frac_final": over_seeds(tail_mean("rollout/hard_frac")),
           "zero_variance_frac_final": over_seeds(tail_mean("rollout/zero_variance_frac")),
           "stage2_seconds": over_seeds(lambda r: sum(x["timing/step"] for x in r))}
    # The admission stream: groups (prompt x step) below tau, by prompt kind: what hard-case replay stores.
    histories = [read_log(d / "reward_history.jsonl") for d in run_dirs]
    for kind in ("forget", "boundary"):
        out[f"groups_below_tau_{kind}"] = mean_std(
            [float(sum(h["kind"] == kind and h["mean_reward"] < tau for h in hist)) for hist in histories])
    if "replay/active" in rows[0][0]:
        out["replay_first_step"] = over_seeds(lambda r: next((x["step"] for x in r if x["replay/active"]), None))
        out["replay_started_runs"] = mean_std([float(any(x["replay/active"] for x in r)) for r in rows])
        last = lambda key: (lambda r: r[-1].get(key, 0.0))  # noqa: E731
        for key in ("admitted_total", "replayed_total", "size", "unique_prompts", "stored_zero_variance_frac",
                    "stored_mean_reward", "stored_mean_times_replayed"):
            out[f"buffer_{key}"] = over_seeds(last(f"replay/buffer_{key}"))
        out["replay_is_weight_mean"] = over_seeds(tail_mean("replay/is_weight_mean"))
        out["replay_clip_frac"] = over_seeds(tail_mean("replay/clip_frac"))
        out["replay_zero_adv_frac"] = over_seeds(tail_mean("replay/zero_adv_frac"))
    return out


def prompt_curves(history: list[dict]) -> dict:
    """prompt_id -> [(step, mean reward)] from a reward_history.jsonl."""
    curves = defaultdict(list)
    for row in history:
        curves[row["prompt_id"]].append((row["step"], row["mean_reward"]))
    return curves


def hardest_prompts(histories: list[list[dict]], until_step: int, k: int) -> list[str]:
    """The k prompts with the lowest mean reward under RULE up to `until_step`, over all seeds (Figure 1)."""
    rewards = defaultdict(list)
    for history in histories:
        for row in history:
            if row["step"] <= until_step:
                rewards[row["prompt_id"]].append(row["mean_reward"])
    return sorted(rewards, key=lambda p: (statistics.fmean(rewards[p]), p))[:k]


def plot_all(out: Path, runs: dict, hard_ids: list[str], prompts: dict, activation: float | None) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    written = []

    # Figures 1 and 3(b) of the paper: reward curves of the hardest prompts, RULE vs ReRULE (seed 0).
    cols = 3
    nrows = max(1, (len(hard_ids) + cols - 1) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False, sharey=True,
                             sharex=True)
    for ax, pid in zip(axes.flat, hard_ids):
        for method in METHODS:
            curve = prompt_curves(read_log(runs[method][0] / "reward_history.jsonl")).get(pid, [])
            if curve:
                ax.plot(*zip(*curve), marker="o", ms=3, color=COLORS[method], label=LABELS[method])
        if activation:
            ax.axvline(activation, color="gray", ls=":", lw=1)
        title = prompts.get(pid, {}).get("prompt", pid)
        ax.set_title(f"[{prompts.get(pid, {}).get('kind', '?')}] {title}"[:48], fontsize=8)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(hard_ids):]:
        ax.axis("off")
    axes[0][0].set_ylabel("group mean reward")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Hardest prompts (lowest early RULE reward): reward per step, first world, seed 0; dotted: replay starts")
    fig.tight_layout()
    fig.savefig(plots / "hard_case_rewards.png", dpi=110)
    plt.close(fig)
    written.append("plots/hard_case_rewards.png")

    # Hard-case ratio and per-kind reward over steps, mean over seeds.
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for method in METHODS:
        rows = [read_log(d / "metrics.jsonl") for d in runs[method]]
        steps = [r["step"] for r in rows[0]]
        for ax, key in zip(axes, ("rollout/hard_frac", "rollout/reward_forget", "rollout/reward_boundary")):
            # A step whose few prompts (the --model profile draws 4) hold no prompt of a kind has no reward for it.
            points = [(step, statistics.fmean(values)) for i, step in enumerate(steps)
                      if (values := [run[i][key] for run in rows if key in run[i]])]
            ax.plot(*(zip(*points) if points else ([], [])), marker="o", ms=3, color=COLORS[method],
                    label=LABELS[method])
            ax.set_title(key + f" (mean of {len(rows)} seeds)", fontsize=9)
            ax.set_xlabel("step")
    for ax in axes:
        if activation:
            ax.axvline(activation, color="gray", ls=":", lw=1)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(plots / "hard_case_ratio.png", dpi=110)
    plt.close(fig)
    written.append("plots/hard_case_ratio.png")
    return written


def fmt(cell: dict) -> str:
    """mean [95% CI] (mean alone when there is no interval or it is a point), and "(n of N)" when some units have
    no value (mean_std)."""
    missing = f" (n {cell['n']} of {len(cell['values'])})" if cell.get("n", 0) < len(cell.get("values", ())) else ""
    if cell.get("lo") is None or cell["lo"] == cell["hi"]:
        return f"{cell['mean']:.3f}{missing}"
    return f"{cell['mean']:.3f} [{cell['lo']:.3f}, {cell['hi']:.3f}]{missing}"


def fmt_std(cell: dict) -> str:
    if cell["mean"] is None:
        return "–"
    return f"{cell['mean']:.3f} ± {cell['std']:.3f}" if cell["std"] else f"{cell['mean']:.3f}"


def write_report(out: Path, report: dict) -> None:
    # atomic: a kill while writing leaves the last report, which --report_only can rebuild
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    ev, tr, cfg = report["evaluation"], report["training"], report["settings"]
    worlds = cfg["worlds"]
    lines = [f"# RULE vs ReRULE on {len(worlds)} synthetic world(s) × {cfg['seeds']} seed(s), {cfg['steps']} Stage 2 "
             "steps", "", f"Command: `{report['command']}`  ", f"Wall time: {report['wall_seconds']:.0f} s "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in report['phase_seconds'].items())}"
             # phases are the units' own times: a resumed run's wall time leaves out the units it kept
             f"{f'; {kept} finished units kept from an earlier run' if (kept := report['units_kept']) else ''})  ",
             # --model: the pretrained folder; otherwise each world's own tiny model
             f"Model: {cfg['model']['path'] if 'path' in cfg['model'] else 'a tiny word-level Llama per world'} "
             f"({cfg['parameters']:,} parameters)  ",
             f"Worlds (world seeds): {', '.join(map(str, worlds))}; Stage 2 seeds per world: "
             f"{', '.join(map(str, range(cfg['seeds'])))}", "",
             *([f"**Incomplete run** (`--report_only`): {len(gone)} unit(s) not finished ({', '.join(gone[:4])}"
                f"{', ...' if len(gone) > 4 else ''}); this report covers the complete worlds only.", ""]
               if (gone := report["units_missing"]) else []),
             *((f"## Evaluation (greedy decoding; mean [95% t-interval] over the {len(worlds)} worlds)", "",
                "A world's value for RULE / ReRULE is the mean of its seeds (they share the world's Stage 1 "
                "checkpoint, so the world is the independent unit); pretrained and Stage 1 have one model per world.")
               if cfg["interval_unit"] == "world" else
               (f"## Evaluation (greedy decoding; mean [95% t-interval] over the {cfg['seeds']} Stage 2 seeds)", "",
                "One world: its Stage 2 seeds are the units (they share one Stage 1 checkpoint, so the interval says "
                "nothing about other worlds; use --worlds for that); pretrained and Stage 1 are one model each.")),
             "",
             "| model | " + " | ".join(f"{s} {m} {d}" for s, m, d in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name in ("pretrained", "stage1", "rule", "rerule"):
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(fmt(ev[name][s][m]) for s, m, _ in COLUMNS) + " |")
    lines.append("| chance | " + " | ".join(f"{ev['pretrained'][s]['chance']['mean']:.3f}" if m == "accuracy" else "–"
                                         for s, m, _ in COLUMNS) + " |")
    lines += ["", "accuracy = not a refusal and names the true attribute value; chance = 1 / distinct values of "
              "that attribute; ROUGE-L = recall vs the gold sentence (rouge-score); held-out = paraphrased questions "
              "never trained on.", "", "## Claims and how often they held", "", "| claim | held in |", "|---|---|"]
    lines += [f"| {c['claim']} | {c['held']} / {c['of']} {c['unit']} |" for c in report["claims"]]
    gap = report["hard_case_gap"]
    lines += ["", "## Hard cases (prompts whose RULE reward up to the warm-up step is below τ; per world and seed)", "",
              f"| | mean [95% CI over {cfg['interval_unit']}s] |", "|---|---|"]
    lines += [f"| {key} | {fmt(cell)} |" for key, cell in gap.items()]
    lines += ["", f"## Stage 2 training (mean ± std over all {len(worlds) * cfg['seeds']} runs)", "",
              f"| | {LABELS['rule']} | {LABELS['rerule']} |", "|---|---|---|"]
    for key in tr["rule"]:
        lines.append(f"| {key} (last {cfg['tail']} steps) | {fmt_std(tr['rule'][key])} | {fmt_std(tr['rerule'][key])} |"
                     if key.endswith("_final") else f"| {key} | {fmt_std(tr['rule'][key])} | "
                                                    f"{fmt_std(tr['rerule'][key])} |")
    for key in tr["rerule"]:
        if key not in tr["rule"]:
            lines.append(f"| {key} | – | {fmt_std(tr['rerule'][key])} |")
    lines += ["", f"## Hardest prompts of world {report['hard_cases_world']} (lowest RULE reward up to the replay "
              "warm-up, all its seeds)", "",
              "| prompt | kind | early RULE reward | final RULE | final ReRULE |", "|---|---|---|---|---|"]
    for case in report["hard_cases"]:
        lines.append(f"| {case['prompt']} | {case['kind']} | {case['early_rule']:.2f} | {case['final_rule']:.2f} | "
                     f"{case['final_rerule']:.2f} |")
    lines += ["", *report.get("purge", {}).get("markdown", []), "## Verdict", "", *report["verdict"], "", "## Settings", "", "```", json.dumps(cfg, indent=2), "```",
              "", *[f"![{p}]({p})" for p in report["plots"]], ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
