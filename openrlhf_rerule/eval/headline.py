"""PURGE's headline numbers (arXiv 2601.20568, abstract: "11% unlearning effectiveness while preserving 98% of
original utility", "fluency +5.48%", "adversarial robustness +12.02% over the base model") computed from
`rerule eval rwku` summaries, per target against the base model's run on the same target, then the unweighted
mean over targets (RWKU's protocol: per-target scores, then a mean).

The paper's body, where these are defined, was not readable (neither the arXiv text nor the PDF in the authors'
repository, github strzar/purge, could be read here, and no script there computes them). The definitions below are
our reading; docs/purge.md#evaluation names the other plausible readings. Per target t, with u the unlearned run
and b the base run:
  effectiveness (rel.)  = 1 - forget(u) / forget(b), forget = mean of FB, QA, AA ROUGE-L recall (`forget_all`)
  effectiveness (pts)   = (forget(b) - forget(u)) x 100, the same drop in ROUGE-L points (the other reading)
  utility kept          = mean over Gen, Rea, Tru, Fac, Flu present in both runs of u / b
  fluency change        = Flu(u) / Flu(b) - 1 (Flu: RWKU's 2/3-gram entropy of AlpacaEval answers)
  AA robustness         = 1 - AA(u) / AA(b) (AA: the adversarial forget probes, `forget_level3`)
A value whose inputs are missing, or whose base value is 0, is None (shown "-")."""

from __future__ import annotations

import json

from .comparable import COMPARED, settings
from .io import EvalDataError

UTILITY_KEYS = (("mmlu_acc", "Gen"), ("bbh_em", "Rea"), ("truthfulqa_mc1", "Tru"), ("triviaqa_f1", "Fac"),
                ("fluency_entropy", "Flu"))
HEADLINE_KEYS = ("effectiveness", "effectiveness_points", "utility_kept", "fluency_change", "aa_robustness")


def _num(summary: dict, key: str):
    v = summary.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _ratio(run: dict, base: dict, key: str):
    u, b = _num(run, key), _num(base, key)
    return None if u is None or not b else u / b


def headline(run: dict, base: dict) -> dict:
    """The five numbers for one target: `run` and `base` are that target's per-target RWKU metrics."""
    forget = _ratio(run, base, "forget_all")
    aa = _ratio(run, base, "forget_level3")
    flu = _ratio(run, base, "fluency_entropy")
    kept = [r for r in (_ratio(run, base, k) for k, _ in UTILITY_KEYS) if r is not None]
    u, b = _num(run, "forget_all"), _num(base, "forget_all")
    return {"effectiveness": None if forget is None else 1 - forget,
            "effectiveness_points": None if u is None or b is None else (b - u) * 100,
            "utility_kept": sum(kept) / len(kept) if kept else None,
            "utility_kept_of": [label for k, label in UTILITY_KEYS if _ratio(run, base, k) is not None],
            "fluency_change": None if flu is None else flu - 1,
            "aa_robustness": None if aa is None else 1 - aa}


def per_target_metrics(runs: list[dict]) -> dict[str, dict[str, tuple[dict, dict]]]:
    """{method name: {target: (per-target RWKU metrics, the run)}} from the runs as loaded (before averaging): a run
    of one target gives its summary, a run of several gives its `per_target` entries."""
    out: dict[str, dict[str, tuple[dict, dict]]] = {}
    for run in runs:
        s = run.get("rwku")
        if not s:
            continue
        targets = s.get("targets") or []
        per = s.get("per_target") or ({targets[0]: s} if len(targets) == 1 else {})
        mine = out.setdefault(run["name"], {})
        for target, metrics in per.items():
            if target in mine:
                raise EvalDataError(f"runs named '{run['name']}' evaluate target {target} twice ({run['dir']}): "
                                    "give each method its own `rerule eval --name`")
            mine[target] = (metrics, run)
    return out


def not_comparable(run: dict, base: dict, target: str) -> str | None:
    """Why a method's run and the base run cannot be set against each other on `target`, or None. As the report's
    tables (comparable.py), but a ratio cannot be split into two tables: the RWKU settings but the targets must be
    equal (a setting one summary does not record is unknown, never equal to a value), and so must this target's
    item counts: of every forget level (forget_all is their mean, AA is level 3) and of every other part both
    runs have (a utility suite only one run has is left out of the numbers, not compared)."""
    mine, theirs = settings(run["rwku"], "rwku"), settings(base["rwku"], "rwku")
    for name in COMPARED["rwku"]:
        if name != "targets" and mine[name] != theirs[name]:
            return f"{name} {json.dumps(mine[name])} against the base's {json.dumps(theirs[name])} (null: not recorded)"
    parts = {p for p in {**mine["items"], **theirs["items"]} if p.split("/")[0] == target}
    for part in sorted(parts):
        both = part in mine["items"] and part in theirs["items"]
        if (both or part.split("/")[-1].startswith("forget_level")) and \
                mine["items"].get(part, 0) != theirs["items"].get(part, 0):
            return f"{part}: {mine['items'].get(part, 0)} items against the base's {theirs['items'].get(part, 0)}"
    return None


def headline_rows(runs: list[dict], base_name: str) -> list[dict]:
    """Per method other than the base: one row per target that the base run also evaluated, then the mean over
    those targets. Refused when no run carries `base_name`, a method shares no target with it, or a method's run
    was evaluated differently from the base's on a shared target (not_comparable)."""
    methods = per_target_metrics(runs)
    if base_name not in methods:
        names = ", ".join(sorted(methods)) or "none"
        raise EvalDataError(f"--base {base_name}: no RWKU run has this name (names: {names})")
    base, rows = methods[base_name], []
    for name, targets in methods.items():
        if name == base_name:
            continue
        shared = [t for t in targets if t in base]
        if not shared:
            raise EvalDataError(f"--base {base_name}: method '{name}' shares no target with the base runs "
                                f"(its targets: {', '.join(targets)}; the base's: {', '.join(base)})")
        for t in shared:
            why = not_comparable(targets[t][1], base[t][1], t)
            if why:
                raise EvalDataError(f"--base {base_name}: method '{name}' ({targets[t][1]['dir']}) and the base "
                                    f"({base[t][1]['dir']}) on target {t} were evaluated differently, {why}: their "
                                    "ratio would be no headline number; evaluate both with the same settings")
        per = [{"name": name, "target": t, **headline(targets[t][0], base[t][0])} for t in shared]
        mean = {"name": name, "target": f"mean of {len(shared)} targets" if len(shared) > 1 else shared[0],
                "targets": shared}
        for key in HEADLINE_KEYS:
            values = [p[key] for p in per]
            mean[key] = sum(values) / len(values) if all(v is not None for v in values) else None
        rows += (per if len(per) > 1 else []) + [mean]
    return rows
