"""examples/scripts/reproduce_rwku.sh end to end on the real stack with a real pretrained model: SmolLM2-135M-Instruct
(built by `make install-e2e`, docs/real-model.md), unlearning Confucius from a small release in the RULE authors'
layout (confucius_release.py: Stage 1 / Stage 2 JSON arrays and RWKU probe files of held-out questions), then
data -> Stage 1 -> RULE -> ReRULE -> eval -> report, scaled down by environment variables only.

Asserted on what the runs log and write, not on exit codes: Stage 1 makes the model refuse held-out questions about
Confucius it answered before (its own chat template, RWKU's prompts), while the neighbours' answers survive; each
Stage 2 arm logs exactly the whole rollout batches (28 prompts at rollout batch 8: 3 steps, where OpenRLHF alone
would train a fourth step of 4) and the adapter says it dropped 4 prompts; the trained weights reach vLLM with tied
embeddings (vllm_kl against kl); replay is active in the ReRULE arm only; every arm's model has its record and the
report has our three rows under the paper's.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from confucius_release import FORGET_PROBES, TARGET, write_confucius_release, write_json  # noqa: F401 (re-export)
from e2e_stack import REPO, STAGE2_ENV, dump, parse_steps, sync_ratio

pytestmark = pytest.mark.e2e

# Where `make install-e2e` builds the real model (Makefile REAL_MODEL); RERULE_REAL_MODEL points elsewhere.
REAL_MODEL = Path(os.environ.get("RERULE_REAL_MODEL") or REPO / ".venv-e2e" / "models" / "SmolLM2-135M-Instruct")
STEPS = 3  # 24 of the 28 distinct Stage 2 prompts in whole batches of 8
# The CPU profile of the plan for a 135M model (every other setting the plan's own; docs/real-model.md):
PLAN_ENV = {
    **STAGE2_ENV,
    # Stage 1: 24 rows, 15 optimizer steps of 8
    "SFT_BATCH": "8", "SFT_MICRO_BATCH": "8", "SFT_EPOCHS": "5", "SFT_LR": "5e-5", "SFT_MAX_LEN": "128",
    "SFT_WARMUP_STEPS": "1",
    # Stage 2: 8 prompts x 4 samples x 32 tokens a step (one optimizer step), one episode of the distinct prompts.
    # The LR moves the policy well above vLLM's bf16 floor in 3 steps (measured at 5e-5: kl 0.015 at step 3 against
    # vllm_kl 0.003-0.008, too close for the sync check to tell anything; at 2e-4: kl 0.10 and 0.24 at steps 2 and
    # 3). Replay of 8 groups from step 2, storing every group below a mean reward of 0.9 (the paper's tau 0.6 stored
    # 4 of step 1's 8 groups in one run: replay's start would depend on the draw)
    "ROLLOUT_BATCH": "8", "N_SAMPLES": "4", "MAX_NEW_TOKENS": "32", "MAX_PROMPT_LEN": "128", "ACTOR_LR": "2e-4",
    "ROLLOUT_MICRO_BATCH": "8", "TRAIN_MICRO_BATCH": "16", "MAX_STEPS": "0", "STAGE2_STEPS": "0", "NUM_EPISODES": "1",
    "REPLAY_THRESHOLD": "0.9", "REPLAY_MIN_GROUPS": "8", "REPLAY_BATCH_GROUPS": "8", "REPLAY_WARMUP_STEPS": "1",
    # one environment for both stages: the Stage 2 machine flags go where train_sft does not see them
    "EXTRA_ARGS": "--ds.attn_implementation eager",
    "STAGE2_EXTRA_ARGS": STAGE2_ENV["EXTRA_ARGS"].replace("--ds.attn_implementation eager", ""),
    # greedy decoding of a small model beside Ray and vLLM: one thread is several times faster than two here
    "EVAL_ARGS": "--cpu_threads 1",
    # the thresholds below were measured through transformers; the vLLM engine has its own test
    # (test_eval_engines_e2e.py), and four engine start-ups would add a minute to CI
    "EVAL_ENGINE": "hf",
}


def segments(log: str) -> dict[str, str]:
    """The reproduce log cut at each printed command (`+ ...`): Stage 2 segments keyed by their run folder."""
    parts, out = re.split(r"^(\+ .*)$", log, flags=re.M), {}
    for command, text in zip(parts[1::2], parts[2::2]):
        match = re.search(r"--ckpt\.output_dir (\S+)/model", command)
        if command.startswith("+ ray job submit") and match:
            out[Path(match.group(1)).name] = text
    return out


def refusal_rates(eval_dir: Path) -> dict[str, float]:
    """Share of the forget and of the neighbour probes whose greedy answer is a refusal (RULE's own detector)."""
    from openrlhf_rerule.rewards.refusal import is_refusal

    items = json.loads((eval_dir / "rwku_items.json").read_text())
    rates = {}
    for group in ("forget", "neighbor"):
        answers = [it["prediction"] for it in items if it["probe"].startswith(group)]
        rates[group] = sum(map(is_refusal, answers)) / len(answers)
    return rates


@pytest.mark.timeout(4500)  # limits for hangs only, with room for a machine several times busier
def test_reproduce_rwku_with_the_real_model_end_to_end(stack, tmp_path):
    if not (REAL_MODEL / "rerule_model.json").is_file():
        pytest.fail(f"no real model at {REAL_MODEL}: `make install-e2e` builds it (or set RERULE_REAL_MODEL)")
    release = write_confucius_release(tmp_path / "release")
    probes = release / "data" / "RWKU" / "Target" / TARGET
    base_eval = tmp_path / "eval_base"
    subprocess.run([sys.executable, "-m", "openrlhf_rerule.cli", "eval", "rwku", "--model", str(REAL_MODEL),
                    "--data", str(probes), "--out", str(base_eval), "--subsets", "forget", "neighbor",
                    "--cpu_threads", "1"], check=True, capture_output=True, timeout=1200, cwd=REPO)
    runs = tmp_path / "runs"
    run = stack.recipe("reproduce_rwku.sh", runs, {**PLAN_ENV, "RULE_RELEASE": str(release), "TARGETS": TARGET,
                                                     "BASE_MODEL": str(REAL_MODEL)}, timeout=3600)
    log, target_dir = run.log, runs / "rwku" / TARGET
    assert run.proc.returncode == 0, log[-3000:]
    arms = segments(log)
    assert set(arms) == {"rule", "rerule"}, log[-3000:]

    # Stage 1 (OpenRLHF's SFT, deterministic): held-out forget questions now refused, neighbours still answered.
    rates = {arm: refusal_rates(d) for arm, d in (("base", base_eval), ("stage1", target_dir / "eval" / "stage1"),
                                                 ("rule", target_dir / "eval" / "rule"),
                                                 ("rerule", target_dir / "eval" / "rerule"))}
    scores = {arm: json.loads((d / "rwku_summary.json").read_text()) for arm, d in
              (("base", base_eval), *((a, target_dir / "eval" / a) for a in ("stage1", "rule", "rerule")))}
    print("\nrefusal rates:", rates, "\nRWKU scores:",
          {a: (round(s["forget_all"], 3), round(s["neighbor_all"], 3)) for a, s in scores.items()})
    # Measured: forget refusal 0 -> 0.75 (6 of 8 probes; the two "which country" questions still get "China"),
    # forget score 0.78 -> 0.28; neighbours refused 0 -> 1 of 6, score 0.67 -> 0.50.
    assert rates["base"]["forget"] <= 0.25 and rates["stage1"]["forget"] >= rates["base"]["forget"] + 0.5, rates
    assert scores["stage1"]["forget_all"] < scores["base"]["forget_all"] - 0.3, scores
    assert rates["stage1"]["neighbor"] <= 0.34 and scores["stage1"]["neighbor_all"] >= 0.4, (rates, scores)

    for name, text in arms.items():
        steps = parse_steps(text)
        dump(name, steps)
        assert sorted(steps) == list(range(1, STEPS + 1)), (name, sorted(steps))
        assert ("whole rollout batches: training on 24 of 28 prompts, 3 steps of 8 an episode (--data.max_samples 24);"
                " the last 4 would have made a short batch\n") in text
        # The weights reach vLLM (tied embeddings: one matrix for both ends): vllm_kl stays at bf16's floor while
        # the policy moves away from Stage 1.
        assert steps[STEPS]["kl"] > 0.01 and sync_ratio(steps) < 0.1, {s: (m["vllm_kl"], m["kl"])
                                                                       for s, m in steps.items()}
        record = json.loads((target_dir / name / "model" / "rerule_model.json").read_text())
        assert record["base_record"]["made_by"] == "openrlhf train_sft" and record["chat_template"] == "auto"
    rerule = parse_steps(arms["rerule"])
    active = [s for s in sorted(rerule) if rerule[s]["replay/active"] == 1.0]
    assert active and active == list(range(active[0], STEPS + 1)) and active[0] > 1, rerule
    assert all(rerule[s]["replay/groups"] == 8.0 and 0 < rerule[s]["replay/ess"] <= 1
               and rerule[s]["replay/reward"] < 0.9 for s in active), rerule
    assert not any(key.startswith("replay/") for m in parse_steps(arms["rule"]).values() for key in m)
    # Not asserted: what 3 steps at this LR do to the greedy answers. Their samples differ run to run, and one run
    # (2 optimizer steps a step, kl 0.3-0.6) left RULE answering every probe and ReRULE refusing every one.
    report = (runs / "rwku" / "report" / "report.md").read_text()
    for row in ("*ReRULE paper:* RULE", "Stage 1 (ours)", "RULE (ours)", "ReRULE (ours)"):
        assert f"| {row} |" in report, report
