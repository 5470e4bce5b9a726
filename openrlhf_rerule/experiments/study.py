"""`rerule study`: the ReRULE paper's conditional claim, measured in the synthetic world — replay helps where the
hard/easy disparity is pronounced (MUSE-Books) and little where early training has few hard cases (TOFU
forget01, its Table 6).

The disparity knob is Stage 1's stance on the boundary people, one signed level s in [-1, 1]: s > 0 teaches Stage 1
to also refuse the questions about a share s of them (`build_world(stage1_over_refuse=s)`: their `<normal>` prompts
start Stage 2 refused, reward 0: hard, while the forget prompts are already refused: easy); s < 0 teaches it to
answer the questions about a share -s of them (`stage1_answer_boundary=-s`: they start easy); s = 0 leaves the
over-refusal Stage 1 causes by itself. The study's world has 3 forget and 9 boundary people (96 Stage 2 prompts, as
the demo's), so that the levels span the paper's contrast: from a few percent of hard early groups to about 75%,
above MUSE's 67.5%. The early hard-group ratio is measured and reported (the Table 6 statistic), and the effects
are read against it, not against the knob.

Each world set is --replicates consecutive world seeds from its first world (--world_sets). For each replicate r of
a set (world seed first + r, Stage 2 seed r) the world is learned once; at each level, Stage 1 trains from that
model and RULE, ReRULE (hard-case storage) and ReRULE with random storage (the paper's ablation, same expected
admission count) run from the same Stage 1 checkpoint with the same seed. Every effect is the paired difference
within a replicate; intervals are 95% t-intervals over replicates; the trend of the gain against the hard ratio is
tested with replicate fixed effects, per world set and pooled (study_stats.py), with the design's power.

    rerule study --out runs/study --jobs 16   # 4 levels x 2 world sets x 5 replicates x 3 arms, 40 steps
    rerule study --out runs/study_quick --quick   # 2 levels x 2 replicates, 20 steps: the plumbing in minutes
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path

import torch

from openrlhf_rerule.cli_convention import Parser, UserError, number, user_errors
from openrlhf_rerule.data.world import build_world
from openrlhf_rerule.local.config import Stage1Config, parse_bool
from openrlhf_rerule.local.evaluate import evaluate_model
from openrlhf_rerule.local.metrics import read_log
from openrlhf_rerule.local.sft import train_stage1
from openrlhf_rerule.replay import ReplayConfig

from . import units
from .demo import REPLAY, STAGE1, STAGE1_DATA, STAGE2, WORLD, learn_world, stage2_run
from .report import hard_case_rewards, mean_std
from .study_report import EFFECTS, p_text, plain, plot_study, ratio_text, signed, write_study_report
from .study_stats import ALPHA, POWER, within_slope

ARMS = {"rule": None, "rerule": "hard", "random": "random"}  # arm -> replay admission (None: no replay)
# The demo's world with 3 forget and 9 boundary people: the same 96 Stage 2 prompts (24 forget, 72 boundary), so a
# fully over-refused boundary side is 75% hard early groups (the paper's MUSE: 67.5% at tau 0.4).
STUDY_WORLD = dict(num_forget=3, num_boundary=9, stage2_ratio=3.0)
# Signed stance of Stage 1 on the boundary people (< 0 answered, > 0 refused): measured in worlds 0-2 and 30 after 8
# RULE steps, about 5-20% hard early groups at -1/3 (under TOFU's 54.3% at tau 0.6) to 73-76% at 1 (over MUSE's 67.5%).
LEVELS = (-1 / 3, 0.0, 1 / 3, 1.0)
FULL = dict(levels=LEVELS, replicates=5, steps=40, world_sets=(0, 30))
QUICK = dict(levels=(-1 / 3, 1.0), replicates=2, steps=20, world_sets=(0,))


def build_parser() -> Parser:
    p = Parser(prog="rerule study", description=__doc__.split("\n\n")[0],
               epilog="Each finished unit (a world learned, a level's Stage 1, one arm's Stage 2 run with its "
                      "evaluation) is saved under OUT/units/ as it finishes; the same command again resumes a killed "
                      "study without redoing them (OUT/experiment.json holds the settings; other settings are "
                      "refused). --restart starts over; --report_only rebuilds the report from what is on disk.")
    p.add_argument("--out", default="runs/study", help="output directory (report.md, report.json, plots/, runs)")
    p.add_argument("--levels", type=parse_levels, default=None,
                   help="disparity levels in [-1, 1], comma-separated: s > 0, Stage 1 also refuses a share s of the "
                        "boundary people; s < 0, it answers a share -s of them; write --levels=-0.5,0,1 when the "
                        "first is negative "
                        f"(default: {','.join(f'{x:.4g}' for x in LEVELS)})")
    p.add_argument("--replicates", type=number(int, minimum=2), default=None,
                   help="replicates per world set (world seed first + r, Stage 2 seed r); intervals are over these "
                        f"(default: {FULL['replicates']})")
    p.add_argument("--steps", type=number(int, minimum=1), default=None,
                   help=f"Stage 2 steps per run (default: {FULL['steps']})")
    p.add_argument("--world_sets", type=parse_world_sets, default=None,
                   help="first world seed of each world set, comma-separated; a set is --replicates consecutive "
                        "world seeds, and sets must not overlap (default: "
                        f"{','.join(map(str, FULL['world_sets']))})")
    p.add_argument("--jobs", type=number(int, minimum=1), default=1,
                   help="worker processes (one torch thread each); the results do not depend on it")
    p.add_argument("--quick", action="store_true",
                   help=f"levels {','.join(f'{x:.4g}' for x in QUICK['levels'])}, {QUICK['replicates']} replicates, "
                        f"{QUICK['steps']} steps, world set {QUICK['world_sets'][0]} unless those flags are given "
                        "(a few minutes on a 2-core CPU): plumbing, its verdict is underpowered")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train")
    p.add_argument("--cpu_threads", type=int, default=1, help="torch threads per run (1 is fastest for a tiny model)")
    p.add_argument("--progress", type=parse_bool, nargs="?", const=True, default=False, metavar="BOOL",
                   help="tqdm bars per run with --jobs 1 (default: off; one bar over the finished units is shown)")
    p.add_argument("--restart", action="store_true",
                   help="delete the study under --out (experiment.json, units/, world*/, the report) and start over; "
                        "without it a rerun resumes, and a rerun with other settings is refused")
    p.add_argument("--report_only", action="store_true",
                   help="rebuild report.md, report.json and plots/ from the finished units under --out, training "
                        "nothing (the study's flags are read from --out); refused while a unit is unfinished")
    return p


def parse_world_sets(text: str) -> list[int]:
    """`--world_sets`: distinct non-negative world seeds, comma-separated, in the order given (an argparse type)."""
    try:
        firsts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not firsts or min(firsts) < 0 or len(set(firsts)) != len(firsts):
        raise argparse.ArgumentTypeError(f"need distinct world seeds >= 0, got {text!r}")
    return firsts


def parse_levels(text: str) -> list[float]:
    """`--levels`: two or more distinct levels in [-1, 1], comma-separated, returned sorted (an argparse type)."""
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if len(levels) < 2 or any(not -1.0 <= x <= 1.0 for x in levels) or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"need at least two distinct levels in [-1, 1], got {text!r}")
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
    """One level over replicates: Table-6 statistics, effects and cost ratios as mean [95% CI]. A paired effect
    on the hard cases is left out of a replicate with no hard prompts; with none anywhere its mean is NaN."""
    summary = {"table6": {k: mean_std([c["table6"][k] for c in cells]) for k in cells[0]["table6"]},
               "effects": {arm: {name: over_replicates([c["effects"][arm][name] for c in cells
                                                 if not math.isnan(c["effects"][arm][name])])
                                 for name, _, _ in EFFECTS} for arm in ("rerule", "random")},
               # Which groups are stored: hard minus random storage, paired within the replicate.
               "hard_vs_random": {name: over_replicates([c["effects"]["rerule"][name] - c["effects"]["random"][name]
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


def over_replicates(values: list[float]) -> dict:
    """mean_std, or a NaN cell without an interval where no replicate has a value."""
    return mean_std(values) if values else {"mean": float("nan"), "std": float("nan"), "lo": None, "hi": None, "n": 0,
                                            "values": []}


def trend(levels: list[float], cells: dict, arm: str, world_set: int | None = None) -> dict:
    """Slope of the paired hard-case gain against the measured early hard ratio over the replicate x level cells
    (of one world set, or of all: pooled), with replicate fixed effects (study_stats.within_slope): does the gain
    grow with the disparity?"""
    return within_slope([(c["world"], c["table6"]["hard_ratio_tau0.6"], c["effects"][arm]["hard-case reward"])
                         for level in levels for c in cells[level]
                         if world_set in (None, c["world_set"]) and not math.isnan(c["effects"][arm]["hard-case reward"])])


def verdict(levels: list[float], summary: dict, trends: dict, by_set: dict, quick: bool) -> list[str]:
    """The pooled verdict (all world sets), each world set's own, and the design's power."""
    lo, hi = summary[levels[0]], summary[levels[-1]]
    gain_hi = hi["effects"]["rerule"]["hard-case reward"]
    gain_lo = lo["effects"]["rerule"]["hard-case reward"]
    versus_random = hi["hard_vs_random"]["hard-case reward"]
    slope = trends["rerule"]
    reproduces = claim_holds(gain_hi, slope)
    lines = [
        f"- Highest disparity (level {levels[-1]:+.2f}, early hard ratio "
        f"{hi['table6']['hard_ratio_tau0.6']['mean']:.0%} at τ 0.6, {hi['table6']['hard_ratio_tau0.4']['mean']:.0%} at "
        f"τ 0.4): ReRULE − RULE on the hard cases' reward = {gain_hi['mean']:+.3f} [{signed(gain_hi['lo'])}, "
        f"{signed(gain_hi['hi'])}] over {gain_hi['n']} replicates "
        f"({'interval above 0' if gain_hi['lo'] is not None and gain_hi['lo'] > 0 else 'interval includes or is below 0'}).",
        f"- Lowest disparity (level {levels[0]:+.2f}, early hard ratio {lo['table6']['hard_ratio_tau0.6']['mean']:.0%} at "
        f"τ 0.6): {gain_lo['mean']:+.3f} [{signed(gain_lo['lo'])}, {signed(gain_lo['hi'])}].",
        f"- Trend of the gain against the measured early hard ratio, pooled over the world sets with replicate fixed "
        f"effects: slope {signed(slope['slope'])} [{signed(slope['lo'])}, {signed(slope['hi'])}] per unit ratio, "
        f"p = {p_text(slope['p_value'])} ({slope['n']} cells, {slope['groups']} replicates, {slope['df']} df).",
        f"- Power: this design (its measured hard ratios, {slope['groups']} replicates, residual SD "
        f"{plain(slope['residual_sd'])}) detects a slope of {plain(slope['detectable_slope'])} per unit ratio with "
        f"{POWER:.0%} power (two-sided α = {ALPHA}, noncentral t).",
        f"- Hard storage minus random storage at the highest level, on the hard cases' reward: "
        f"{versus_random['mean']:+.3f} [{signed(versus_random['lo'])}, {signed(versus_random['hi'])}].",
    ]
    ratios = hi["ratios"]
    lines.append(f"- Time to RULE's final hard-case reward at the highest level, ReRULE ÷ RULE: wall time "
                 f"{ratio_text(ratios['rerule_seconds'])}, generated tokens {ratio_text(ratios['rerule_tokens'])}.")
    for first, own in by_set.items():
        held = claim_holds(own["summary"][levels[-1]]["effects"]["rerule"]["hard-case reward"], own["trend"])
        lines.append(f"- World set {first} (worlds {own['worlds'][0]}–{own['worlds'][-1]}) alone: the claim "
                     f"{'holds' if held else 'does not hold'} (slope {signed(own['trend']['slope'])}, "
                     f"p = {p_text(own['trend']['p_value'])}).")
    lines.append(f"- **Pooled over {len(by_set)} world set(s), the paper's conditional claim "
                 f"{'reproduces' if reproduces else 'does not reproduce'} here** (criterion: a hard-case gain whose "
                 "interval is above 0 at the highest disparity, and a gain that grows with the measured hard ratio, "
                 "p < 0.05).")
    if quick:
        lines.append(f"- **Underpowered: `--quick` is plumbing** ({sum(len(own['worlds']) for own in by_set.values())} "
                     "replicates, short runs); its verdict is not evidence either way.")
    return lines


def analyse(levels: list[float], sets: dict, cells: dict, quick: bool) -> dict:
    """The report's statistics from the cells: per level over all replicates, the trends pooled, each world set's
    own summary and trend, and the verdict."""
    summary = {lv: level_summary(cells[lv]) for lv in levels}
    trends = {arm: trend(levels, cells, arm) for arm in ("rerule", "random")}
    by_set = {first: {"worlds": worlds, "trend": trend(levels, cells, "rerule", first),
                      "summary": {lv: level_summary([c for c in cells[lv] if c["world_set"] == first])
                                  for lv in levels}} for first, worlds in sets.items()}
    return {"summary": summary, "trends": trends, "by_world_set": by_set,
            "verdict": verdict(levels, summary, trends, by_set, quick)}


def claim_holds(gain_hi: dict, slope: dict) -> bool:
    """The study's criterion: the highest level's gain interval above 0 and a positive slope with p < ALPHA."""
    return (gain_hi["lo"] is not None and gain_hi["lo"] > 0 and slope["slope"] is not None and slope["slope"] > 0
            and slope["p_value"] < ALPHA)


def learn_unit(world_seed: int, out: Path, common: dict) -> Path:
    """A unit of work: learn world `world_seed` (the study's shape) once for all levels; the pretrained model."""
    return learn_world(world_seed, out, common, **STUDY_WORLD)[1]


def stage1_unit(world_seed: int, level: float, pretrained: Path, cell_dir: Path, common: dict) -> Path:
    """A unit of work: the level's world files and its Stage 1 checkpoint, trained from the learned world."""
    knobs = {"stage1_over_refuse": level} if level >= 0 else {"stage1_answer_boundary": -level}
    build_world(seed=world_seed, **{**WORLD, **STAGE1_DATA, **STUDY_WORLD, **knobs}).write(cell_dir / "world")
    return train_stage1(Stage1Config(model=str(pretrained), data=str(cell_dir / "world" / "stage1.jsonl"),
                                     out=str(cell_dir / "stage1"), seed=world_seed, **STAGE1, **common))


def arm_unit(arm: str, seed: int, stage1: Path, cell_dir: Path, steps: int, common: dict, device: str) -> dict:
    """A unit of work: one arm's Stage 2 run from the level's Stage 1 checkpoint and its greedy evaluation."""
    replay = ReplayConfig(**{**REPLAY, "enable": ARMS[arm] is not None, "admission": ARMS[arm] or "hard",
                             "seed": seed})
    run = stage2_run(stage1, cell_dir / "world", cell_dir / "stage2" / arm, seed, steps, replay, common)
    return evaluate_model(run / "final", cell_dir / "world", device)["metrics"]


def _quiet_worker() -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


def run_units(replicates: list[tuple[int, int]], levels: list[float], out: Path, steps: int, common: dict,
              device: str, jobs: int, store: units.Units) -> dict:
    """Learn each world, then each level's Stage 1, then each arm, each unit as soon as what it needs is done, in
    `jobs` spawned processes (--jobs 1: one worker thread in this process). Every unit seeds itself and reads only
    its inputs' files, so the results do not depend on `jobs`, on the order units finish in, or on which units a
    resumed run found finished (`store`: their records are read back, not redone; a new one is saved at once).
    replicates: (world seed, Stage 2 seed). Returns {(world seed, level index): {arm: evaluation metrics}}."""
    from tqdm import tqdm

    pool = ThreadPoolExecutor(1) if jobs == 1 else ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet_worker)
    seeds = dict(replicates)
    pending, evals = {}, {}
    # closed on the way out whatever happens: a bar left open by a failed unit would print when collected, later
    bar = tqdm(total=len(replicates) * (1 + len(levels) * (1 + len(ARMS))), desc="study units", unit="unit",
               dynamic_ncols=True)

    def launch(key, fn, *a, tag):
        """Submit unit `key`, or hand back its record at once when it finished before."""
        record = store.get(key)
        if record is None:
            future = pool.submit(fn, *a)
        else:
            future = Future()
            future.set_result(record)
        pending[future] = (key, record is None, *tag)

    with pool, bar:
        for ws, _ in replicates:
            launch(f"world{ws}/learn", learn_unit, ws, out / f"world{ws}", common, tag=("learn", ws, None, None))
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                key, fresh, kind, ws, i, arm = pending.pop(future)
                result = future.result()
                # learn / Stage 1 units record where their model is (relative to --out), arms their evaluation
                record = store.put(key, {"evaluation": result} if kind == "arm" else
                                   {"model": str(Path(result).relative_to(out))}) if fresh else result
                bar.update()
                if kind == "learn":
                    for i, level in enumerate(levels):
                        cell_dir = out / f"world{ws}" / f"level{i}"
                        launch(f"world{ws}/level{i}/stage1", stage1_unit, ws, level, out / record["model"], cell_dir,
                               common, tag=("stage1", ws, i, None))
                elif kind == "stage1":
                    for arm in ARMS:
                        launch(f"world{ws}/level{i}/{arm}", arm_unit, arm, seeds[ws], out / record["model"],
                               out / f"world{ws}" / f"level{i}", steps, common, device, tag=("arm", ws, i, arm))
                else:
                    evals.setdefault((ws, i), {})[arm] = record["evaluation"]
    return evals


@user_errors("rerule study")
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, argv = units.parse_args(parser, argv)
    preset = QUICK if args.quick else FULL  # explicit flags win over the preset
    levels = args.levels or list(preset["levels"])
    replicates = args.replicates or preset["replicates"]
    steps = args.steps or preset["steps"]
    world_sets = args.world_sets or list(preset["world_sets"])
    sets = {first: list(range(first, first + replicates)) for first in world_sets}
    seen = [ws for worlds in sets.values() for ws in worlds]
    if len(set(seen)) != len(seen):
        parser.error(f"argument --world_sets: sets of {replicates} consecutive worlds overlap: "
                     f"{','.join(map(str, world_sets))}")
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    out = Path(args.out)
    common = dict(device=args.device, cpu_threads=args.cpu_threads, progress=args.progress and args.jobs == 1,
                  overwrite=True)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    settings = {"--levels": levels, "--replicates": replicates, "--steps": steps, "--world_sets": world_sets,
                "--quick": args.quick, "--device": device, "--cpu_threads": args.cpu_threads}
    store = units.Units(out, "rerule study", argv, settings, restart=args.restart, report_only=args.report_only)
    tau, warmup, window = REPLAY["threshold"], REPLAY["warmup_steps"], max(1, steps // 4)
    t_start = time.perf_counter()
    if args.report_only:  # every statistic pairs arms and levels within a replicate: a partial study is refused
        keys = {(ws, i, arm): f"world{ws}/level{i}/{arm}" for ws in seen for i in range(len(levels)) for arm in ARMS}
        records = {cell: store.get(key) for cell, key in keys.items()}
        if store.missing:
            raise UserError(f"--report_only: {store.missing_line(len(keys))}; run the same command without "
                            "--report_only to finish them")
        evals = {}
        for (ws, i, arm), record in records.items():
            evals.setdefault((ws, i), {})[arm] = record["evaluation"]
    else:
        evals = run_units([(ws, r) for worlds in sets.values() for r, ws in enumerate(worlds)], levels, out, steps,
                          common, device, args.jobs, store)
    cells = {lv: [] for lv in levels}
    for first, worlds in sets.items():
        for ws in worlds:
            for i, lv in enumerate(levels):
                runs = {arm: out / f"world{ws}" / f"level{i}" / "stage2" / arm for arm in ARMS}
                cells[lv].append({"world_set": first, "world": ws, "evaluation": evals[(ws, i)],
                                  **replicate_level(runs, evals[(ws, i)], tau, warmup, window)})
    analysis = analyse(levels, sets, cells, args.quick)
    report = {"command": store.command, "wall_seconds": time.perf_counter() - t_start, "units_kept": len(store.kept),
              "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores visible, {args.jobs} worker(s) with "
                         f"{args.cpu_threads} torch thread(s) each" if device == "cpu" else torch.cuda.get_device_name(0),
              "levels": levels,
              "settings": {"replicates": replicates, "world_sets": sets, "steps": steps, "jobs": args.jobs,
                           "quick": args.quick, "tau": tau, "warmup": warmup, "smoothing_window": window,
                           "world": {**WORLD, **STUDY_WORLD}, "stage1_data": STAGE1_DATA, "stage1": STAGE1,
                           "stage2": STAGE2, "replay": REPLAY},
              "cells": {str(lv): cells[lv] for lv in levels}, **analysis,
              "plots": plot_study(out, levels, analysis["summary"])}
    write_study_report(out, report)
    print("\n".join(report["verdict"]))
    print(f"report: {out / 'report.md'}  ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
