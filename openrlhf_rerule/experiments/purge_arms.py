"""PURGE beside RULE and ReRULE in the demo's worlds (`rerule demo --purge`): does hard-case replay help a binary
reward, and how often are the groups it stores all-fail or all-pass? And with the graded rewards of the authors'
follow-up (`--purge_reward exp_decay | pagerank`), which give a group that names one term and one that names four
different rewards: do fewer groups carry no gradient, and does replay then pay?

PURGE (Zaradoukas et al., arXiv 2601.20568) has no refusal SFT and no retain or neighbour data: GRPO from the
model that learned the world, on the forget questions only, with `--reward_variant purge_binary` (1 when the
completion names none of the person's terms: `build_world(purge=True)` gives each forget person the name and the
four attribute values; `purge_exp_decay`: e^-m for m mentions; `purge_pagerank`: 1 minus the PageRank weights of
the terms named, the weights from the model the arms start from, `write_pagerank_data`). Arms, each with the demo's
Stage 2 settings, steps and seeds:

- ``purge``: plain GRPO;
- ``purge_replay``: + hard-case replay with the demo's (ReRULE arm's) replay settings;
- ``purge_replay_variance``: the same with ``require_variance``: groups whose 8 rewards are all equal (advantage 0)
  are never stored.

Beyond the demo's evaluation, every model (pretrained, Stage 1, RULE, ReRULE and these) is scored on the terms:
how often its greedy answers to forget questions name a term (the name included, as PURGE's reward counts it) or an
attribute value (the knowledge itself), and its accuracy on boundary / retain questions whose true answer is a
forbidden value (a city, employer or profession it shares with a forget person) against the others."""

from __future__ import annotations

import json
import statistics
from functools import partial
from pathlib import Path

from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.local.evaluate import attribute_values, evaluate_model
from openrlhf_rerule.local.metrics import read_log
from openrlhf_rerule.rewards.purge import parse_purge_label, term_pattern

from .report import fmt, hard_case_rewards, mean_std

DATA = "purge/stage2.jsonl"
PAGERANK_DATA = "purge/stage2_pagerank.jsonl"  # DATA with each label's PageRank weights (write_pagerank_data)
REWARDS = ("binary", "exp_decay", "pagerank")  # --purge_reward: reward variant purge_<name>
ARMS = {"purge": None, "purge_replay": {}, "purge_replay_variance": {"require_variance": True}}  # replay overrides
LABELS = {"pretrained": "pretrained", "stage1": "Stage 1", "rule": "RULE", "rerule": "ReRULE", "purge": "PURGE",
          "purge_replay": "PURGE+replay", "purge_replay_variance": "PURGE+replay, require_variance"}


def overrides(reward: str) -> dict:
    """The PURGE arms' Stage 2 settings over the demo's STAGE2 (the start model is the pretrained one)."""
    return dict(data=PAGERANK_DATA if reward == "pagerank" else DATA, reward_variant=f"purge_{reward}")


# (split, metric, direction): the comparison table's columns
COLUMNS = [("forget", "accuracy", "↓"), ("heldout_forget", "accuracy", "↓"), ("terms", "forget_mention_rate", "↓"),
           ("terms", "forget_value_mention_rate", "↓"), ("terms", "heldout_forget_value_mention_rate", "↓"),
           ("forget", "refusal_rate", ""), ("boundary", "accuracy", "↑"), ("boundary", "refusal_rate", "↓"),
           ("retain", "accuracy", "↑"), ("collateral", "forbidden_value_accuracy", "↑"),
           ("collateral", "other_value_accuracy", "↑")]
DIFFERENCES = [("forget", "accuracy"), ("heldout_forget", "accuracy"), ("terms", "forget_mention_rate"),
               ("terms", "forget_value_mention_rate"), ("boundary", "accuracy"), ("retain", "accuracy"),
               ("collateral", "forbidden_value_accuracy")]


def write_pagerank_data(world_dir: Path, model_dir: Path) -> None:
    """PAGERANK_DATA: DATA's rows with PageRank weights in their labels, computed once per forget person from
    `model_dir` (the model PURGE starts from, as the authors' src/purge.py:112 computes them from the policy before
    training), exactly as `rerule data purge weights` + `rerule data purge stage2 --weights` make them."""
    from openrlhf_rerule.atomic import atomic_path
    from openrlhf_rerule.data.purge_weights import term_embeddings
    from openrlhf_rerule.rewards.purge import purge_label
    from openrlhf_rerule.rewards.purge_pagerank import forget_set, pagerank_weights

    rows = read_jsonl(world_dir / DATA, "stage2")
    labels = [parse_purge_label(row["label"]) for row in rows]
    # target -> its forget set; every term is embedded alone, so one model load serves every target
    orders = {target: forget_set(target, list(terms)) for target, terms in labels}
    embeddings = iter(term_embeddings(str(model_dir), [t for order in orders.values() for t in order]))
    weighted = {}
    for target, order in orders.items():
        result = pagerank_weights(target, order[1:], [next(embeddings) for _ in order])
        weighted[target] = (result["terms"], result["weights"])
    rows = [{**row, "label": purge_label(target, *weighted[target])} for row, (target, _) in zip(rows, labels)]
    with atomic_path(world_dir / PAGERANK_DATA) as tmp:
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def world_terms(world_dir: Path) -> dict[str, tuple[str, ...]]:
    """Forget person's name -> their PURGE terms, read off the labels of purge/stage2.jsonl."""
    return dict(parse_purge_label(row["label"]) for row in read_jsonl(world_dir / DATA, "stage2"))


def evaluate_with_terms(model_dir: Path, world_dir: Path, device: str) -> dict:
    """The demo's evaluation metrics plus two splits: `terms` (mention rates of greedy answers to forget and
    held-out forget questions: any term, or an attribute value, i.e. a term other than the name) and `collateral`
    (accuracy on boundary and retain questions whose true value is on some forget person's list, and on the rest)."""
    world_dir = Path(world_dir)
    result = evaluate_model(model_dir, world_dir, device)
    terms = world_terms(world_dir)
    values_only = {name: tuple(t for t in ts if t != name) for name, ts in terms.items()}
    forbidden = term_pattern(tuple(t for ts in values_only.values() for t in ts))
    metrics = result["metrics"]

    def mention_rate(split, lists, kind="forget"):
        rows = read_jsonl(world_dir / "eval" / f"{split}.jsonl", "eval")
        hits = [term_pattern(lists[r["subject"]]).search(text) is not None
                for r, text in zip(rows, result["answers"][split]) if r["kind"] == kind]
        return sum(hits) / len(hits)

    metrics["terms"] = {"forget_mention_rate": mention_rate("forget", terms),
                        "forget_value_mention_rate": mention_rate("forget", values_only),
                        "heldout_forget_mention_rate": mention_rate("heldout", terms),
                        "heldout_forget_value_mention_rate": mention_rate("heldout", values_only)}
    values, hit, other = attribute_values(world_dir), [], []
    for split in ("boundary", "retain"):
        rows = read_jsonl(world_dir / "eval" / f"{split}.jsonl", "eval")
        for r, ok in zip(rows, result["correct"][split]):
            (hit if forbidden.fullmatch(values[(r["subject"], r["attribute"])]) else other).append(ok)
    metrics["collateral"] = {"forbidden_value_accuracy": sum(hit) / max(len(hit), 1), "forbidden_value_n": len(hit),
                             "other_value_accuracy": sum(other) / max(len(other), 1), "other_value_n": len(other)}
    return metrics


def run_summary(run: Path, tail: int, warmup: int) -> dict:
    """Scalars of one PURGE run from its logs: rewards, zero-variance shares (all-fail / all-pass groups from the
    reward history) and, with replay, the buffer's counters and its stored zero-variance share."""
    rows = read_log(run / "metrics.jsonl")
    history = read_log(run / "reward_history.jsonl")

    def mean(key, subset=rows):
        vals = [r[key] for r in subset if key in r]
        return statistics.fmean(vals) if vals else None

    out = {"reward_forget": mean("rollout/reward_forget"), "reward_forget_final": mean("rollout/reward_forget", rows[-tail:]),
           "zero_variance_frac": mean("rollout/zero_variance_frac"),
           "zero_variance_frac_early": mean("rollout/zero_variance_frac", rows[:warmup]),
           "zero_variance_frac_final": mean("rollout/zero_variance_frac", rows[-tail:]),
           "all_fail_frac": statistics.fmean(max(h["rewards"]) == 0.0 for h in history),
           "all_pass_frac": statistics.fmean(min(h["rewards"]) == 1.0 for h in history),
           "stage2_seconds": sum(r["timing/step"] for r in rows)}
    if "replay/active" in rows[0]:
        last = rows[-1]
        stored = [r["replay/buffer_stored_zero_variance_frac"] for r in rows if "replay/buffer_stored_zero_variance_frac" in r]
        out.update(replay_first_step=next((r["step"] for r in rows if r["replay/active"]), None),
                   buffer_admitted_total=last["replay/buffer_admitted_total"],
                   buffer_replayed_total=last["replay/buffer_replayed_total"],
                   buffer_stored_zero_variance_frac_final=last.get("replay/buffer_stored_zero_variance_frac"),
                   buffer_stored_zero_variance_frac_mean=statistics.fmean(stored) if stored else None,
                   buffer_stored_mean_reward_final=last.get("replay/buffer_stored_mean_reward"),
                   replay_zero_adv_frac=mean("replay/zero_adv_frac", [r for r in rows if r.get("replay/active")]))
    return out


def over_worlds(per_world: list[list[float | None]], by_seed: bool = False) -> dict:
    """Each world's runs averaged (None: the quantity does not exist in that run, e.g. replay never started), then
    mean and 95% t-interval over the worlds that have a value. `by_seed` (one world): its runs are the units, as
    in the demo's report."""
    per_world = [[x] for x in per_world[0]] if by_seed else per_world
    means = [statistics.fmean(v) for v in ([x for x in runs if x is not None] for runs in per_world) if v]
    return mean_std(means) if means else {"mean": None, "std": 0.0, "lo": None, "hi": None, "n": 0, "values": []}


def purge_section(evals: dict, runs: dict, worlds: list[int], tail: int, warmup: int, tau: float,
                  reward: str) -> dict:
    """The PURGE comparison over worlds (a world's value is the mean of its seeds): evaluation, training and
    paired differences, each with a 95% t-interval over worlds."""
    models = ("pretrained", "stage1", "rule", "rerule", *ARMS)
    over = partial(over_worlds, by_seed=len(worlds) == 1)

    def world_value(ws, name):
        ev = evals[ws][name]
        return [ev] if isinstance(ev, dict) else ev

    evaluation = {name: {split: {metric: over([[e[split][metric] for e in world_value(ws, name)]
                                                       for ws in worlds]) for s, metric, _ in COLUMNS if s == split}
                         for split in dict.fromkeys(s for s, _, _ in COLUMNS)} for name in models}
    summaries = {arm: {ws: [run_summary(d, tail, warmup) for d in runs[ws][arm]] for ws in worlds} for arm in ARMS}
    training = {arm: {key: over([[s.get(key) for s in summaries[arm][ws]] for ws in worlds])
                      for key in summaries[arm][worlds[0]][0]} for arm in ARMS}
    # Hard cases as in the demo: prompts whose plain-PURGE reward up to the warm-up is below tau, per world and seed.
    hard = {ws: [hard_case_rewards(read_log(runs[ws]["purge"][k] / "reward_history.jsonl"),
                                   {arm: read_log(runs[ws][arm][k] / "reward_history.jsonl") for arm in ARMS}, warmup, tau)
                 for k in range(len(runs[ws]["purge"]))] for ws in worlds}
    training["purge"]["hard_prompts"] = over([[float(len(h["hard_ids"])) for h in hard[ws]] for ws in worlds])

    def paired(a, b, split, metric):  # b - a per seed (the same seed in both arms), then per world
        return over([[eb[split][metric] - ea[split][metric] for ea, eb in zip(world_value(ws, a), world_value(ws, b))]
                     for ws in worlds])

    differences = {}
    for a, b in (("purge", "purge_replay"), ("purge_replay", "purge_replay_variance"), ("purge", "rule")):
        cells = {f"{split} {metric}": paired(a, b, split, metric) for split, metric in DIFFERENCES}
        if a == "purge" and b != "rule" or a == "purge_replay":
            cells["hard-case training reward (after the warm-up)"] = over(
                [[h[b] - h[a] for h in hard[ws] if h["hard_ids"]] for ws in worlds])
        differences[f"{b} - {a}"] = cells
    return {"unit": "seed" if len(worlds) == 1 else "world", "reward": reward,
            "arms": {arm: {"replay": replay, "start": "pretrained", **overrides(reward)} for arm, replay in ARMS.items()},
            "evaluation": evaluation, "training": training, "differences": differences}


def markdown(section: dict, plot: str | None) -> list[str]:
    """The report.md section: the comparison table, training and buffer numbers, paired differences."""
    ev, tr = section["evaluation"], section["training"]
    lines = ["## PURGE beside RULE and ReRULE (`--purge`)", "",
             f"PURGE arms start from the pretrained model (no Stage 1), train on the forget questions only "
             f"(`{overrides(section['reward'])['data']}`, `--reward_variant purge_{section['reward']}`; terms: the "
             "person's name and four attribute values), with "
             f"the demo's Stage 2 settings, steps and seeds. Mean [95% t-interval] over {section['unit']}s; greedy "
             "decoding. *mention* = answers naming any term (the name counts: a refusal that names the person is a "
             "mention); *value mention* = naming an attribute value; *forbidden-value accuracy* = boundary and retain "
             "questions whose true value is on a forget person's list.", "",
             "| model | " + " | ".join(f"{s} {m} {d}".strip() for s, m, d in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name, cells in ev.items():
        lines.append(f"| {LABELS[name]} | " + " | ".join(fmt(cells[s][m]) for s, m, _ in COLUMNS) + " |")
    lines += ["", f"Training (mean [95% t-interval] over {section['unit']}s; a world's value is the mean of its seeds):", "",
              "| | " + " | ".join(LABELS[a] for a in ARMS) + " |", "|---" * (len(ARMS) + 1) + "|"]
    for key in dict.fromkeys(k for arm in ARMS for k in tr[arm]):
        lines.append(f"| {key} | " + " | ".join(fmt(tr[a][key]) if key in tr[a] and tr[a][key]["mean"] is not None
                                              else "–" for a in ARMS) + " |")
    lines += ["", f"Paired differences (same seed, then over {section['unit']}s):", ""]
    for pair, cells in section["differences"].items():
        b, a = pair.split(" - ")
        lines += [f"**{LABELS[b]} − {LABELS[a]}**", "",
                  "| | mean [95% CI] |", "|---|---|"]
        lines += [f"| {name} | {fmt(cell)} |" for name, cell in cells.items()] + [""]
    if plot:
        lines += [f"![{plot}]({plot})", ""]
    return lines


def plot(out: Path, section: dict, runs: dict, world: int) -> str:
    """plots/purge_arms.png: the comparison's main cells with intervals, and the first world's per-step forget
    reward and zero-variance share of the PURGE arms (mean over its seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in section["evaluation"] if m not in ("stage1",)]
    cells = [("forget", "accuracy"), ("heldout_forget", "accuracy"), ("terms", "forget_value_mention_rate"),
             ("boundary", "accuracy"), ("retain", "accuracy"), ("collateral", "forbidden_value_accuracy")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    width = 0.8 / len(models)
    for i, name in enumerate(models):
        means, errs = [], [[], []]
        for split, metric in cells:
            c = section["evaluation"][name][split][metric]
            means.append(c["mean"])
            errs[0].append(c["mean"] - c["lo"] if c["lo"] is not None else 0)
            errs[1].append(c["hi"] - c["mean"] if c["hi"] is not None else 0)
        axes[0].bar([j + i * width for j in range(len(cells))], means, width, yerr=errs, capsize=2,
                    label=LABELS[name])
    axes[0].set_xticks([j + 0.4 - width / 2 for j in range(len(cells))])
    axes[0].set_xticklabels([f"{s}\n{m}" for s, m in cells], fontsize=7)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7, ncol=2)
    axes[0].set_title("mean [95% CI over worlds]", fontsize=9)
    for ax, key in zip(axes[1:], ("rollout/reward_forget", "rollout/zero_variance_frac")):
        for arm in ARMS:
            logs = [read_log(d / "metrics.jsonl") for d in runs[world][arm]]
            steps = [r["step"] for r in logs[0]]
            ax.plot(steps, [statistics.fmean(log[i][key] for log in logs) for i in range(len(steps))], label=LABELS[arm])
        ax.set_title(f"{key}, world {world} (mean of seeds)", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(-0.05, 1.05)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    (out / "plots").mkdir(exist_ok=True)
    fig.savefig(out / "plots" / "purge_arms.png", dpi=110)
    plt.close(fig)
    return "plots/purge_arms.png"
