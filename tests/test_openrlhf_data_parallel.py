"""Several actor ranks: the faults only data parallelism shows, each pinned by a test that failed before its fix.

- The replay batch is cut into one equal share of whole optimizer steps per rank, through the driver's own
  `stage_replay` and OpenRLHF's own `RayActorGroup.async_run_method_batch` (its ceiling chunks used to give
  2/2/2/0 or raise), for every configuration the start-up checks accept and every group count the buffer can reach.
- Configurations that cannot split evenly, and dynamic batching, are refused before Ray starts, naming the flags.
- A replay pass never starts inside a gradient-accumulation window (a short on-policy batch used to leave one open).
- The buffer is saved before OpenRLHF's checkpoint, so a kill between the two leaves a resumable checkpoint.
The collectives themselves (two real processes over gloo) are in tests/test_openrlhf_collectives.py.
"""

import contextlib
import io
import math
import os
import re
import types

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrlhf_harness import (PROMPTS, build, cpu_boundaries, model_dir, parse_args,  # noqa: F401 (fixtures)
                              replay_command)
from openrlhf_rerule.openrlhf.args import check_replay_compatible, replay_config_from_args
from openrlhf_rerule.replay import HardCaseReplayBuffer, StoredGroup

from openrlhf.trainer.ray.launcher import RayActorGroup  # noqa: E402 (after the harness imported openrlhf)
from openrlhf_rerule.openrlhf.trainer import ReplayTrainer  # noqa: E402

PROPERTY = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def hard_group(i: int, n: int) -> StoredGroup:
    rewards = torch.zeros(n)
    rewards[0] = 0.2  # mean below tau 0.4, non-zero variance
    return StoredGroup(prompt_id=f"p{i}", label="", step=1, prompt_ids=torch.tensor([5, 6, 7]),
                       response_ids=torch.full((n, 2), 9), action_mask=torch.ones(n, 2, dtype=torch.bool),
                       behaviour_logprobs=torch.zeros(n, 2), rewards=rewards, advantages=rewards - rewards.mean())


class Rank:
    """A Ray actor handle's `execute_batch.remote`, answering with the samples of the chunk it was handed."""

    def __init__(self):
        self.execute_batch = types.SimpleNamespace(remote=self.receive)

    def receive(self, method_name, chunk, start, end):
        assert method_name == "stage_replay"
        return sum(len(e.sequences) for e in chunk["experience"][start:end])


def driver_shares(args, available: int) -> list[int] | None:
    """Samples each actor rank receives when the driver stages a replay update from a buffer of `available` hard
    groups: ReplayTrainer.stage_replay itself, handing out through OpenRLHF's own RayActorGroup. None: skipped."""
    trainer = ReplayTrainer.__new__(ReplayTrainer)  # the driver's state that stage_replay reads, nothing else
    trainer.args, trainer.replay_config = args, replay_config_from_args(args)
    trainer.replay_buffer = HardCaseReplayBuffer(trainer.replay_config)
    trainer.replay_buffer.admit([hard_group(i, args.rollout.n_samples_per_prompt) for i in range(available)], 1)
    trainer.tokenizer = types.SimpleNamespace(pad_token_id=0)
    group = RayActorGroup.__new__(RayActorGroup)
    group._actor_handlers = [Rank() for _ in range(args.actor.num_gpus_per_node)]
    group.duplicate_actors = args.ds.ring_attn_size * args.ds.tensor_parallel_size
    trainer.actor_model_group = group
    if not trainer.replay_buffer.ready(2):
        return None
    shares = []
    trainer.actor_model_group.async_run_method_batch = \
        lambda **kw: shares.extend(RayActorGroup.async_run_method_batch(group, **kw))
    staged = trainer.stage_replay(2)
    return None if "replay/skipped" in staged else shares


# The configurations of the hang reports: 8 GPUs, 32 groups of 8 with train batch 256 (4 rollout micro-batches
# of 64 for 8 ranks: OpenRLHF raises); 4 GPUs, 48 groups (6 micro-batches for 4 ranks: 2/2/2/0, rank 3 skips
# the replay update and the others hang); 2 GPUs, 24 groups of 8 (3 for 2: 2/1, reproduced on the real stack).
@pytest.mark.parametrize("gpus, train_batch, train_micro, groups", [(8, 256, 8, 32), (4, 128, 8, 48), (2, 64, 32, 24)])
def test_reported_hang_configurations_split_into_equal_shares(cpu_boundaries, gpus, train_batch, train_micro, groups):
    args = parse_args(replay_command(gpus, train_batch, train_micro, train_batch // 8 * 2, 64, 8, groups, groups))
    check_replay_compatible(args)
    shares = driver_shares(args, groups)
    assert shares == [groups * 8 // gpus] * gpus


@PROPERTY
@given(dp=st.sampled_from([1, 2, 4, 8]), n=st.sampled_from([2, 4, 8]), train_micro=st.sampled_from([1, 2, 4, 8]),
       accumulation=st.integers(1, 3), rollout_steps=st.integers(1, 3),
       rollout_micro=st.sampled_from([1, 2, 4, 8, 16, 32, 64]), replay_steps=st.integers(1, 3),
       min_fraction=st.floats(0.0, 1.0), extra_groups=st.integers(0, 6), data=st.data())
def test_every_reachable_replay_count_splits_into_equal_non_empty_shares(
        cpu_boundaries, dp, n, train_micro, accumulation, rollout_steps, rollout_micro, replay_steps, min_fraction,
        extra_groups, data):
    # Train batches the start-up check can accept (whole groups, whole micro-batches per rank) plus a random one.
    train_batch = data.draw(st.sampled_from([math.lcm(n, dp * train_micro) * accumulation, n * accumulation * 3]))
    groups_per_step = max(train_batch // n, 1)
    batch_groups = groups_per_step * replay_steps
    min_groups = max(1, round(batch_groups * min_fraction))
    rollout_batch = groups_per_step * rollout_steps
    try:  # OpenRLHF's own parser (it asserts at least one rollout micro-batch per rank), then ours
        args = parse_args(replay_command(dp, train_batch, train_micro, rollout_batch, rollout_micro, n, batch_groups,
                                  min_groups))
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            check_replay_compatible(args)
    except AssertionError as refusal:
        assert "effective number of actor processes" in str(refusal)
        return
    except SystemExit as refusal:
        # Refused before Ray starts (exit 2), and the message names the flags to change.
        said = stderr.getvalue()
        assert refusal.code == 2 and ("--train.batch_size" in said or "--rollout.micro_batch_size" in said), said
        return
    # Every count the buffer can hold: from min_groups (replay starts) to beyond batch_groups (a full update).
    for available in range(min_groups, batch_groups + extra_groups + 1):
        shares = driver_shares(args, available)
        if shares is None:  # fewer live groups than one optimizer step: replay/skipped, no collective at all
            assert available < groups_per_step
            continue
        assert len(shares) == dp and len(set(shares)) == 1 and shares[0] > 0, (available, shares)
        # Whole optimizer steps per rank: a multiple of train_batch / dp samples, i.e. of train_micro x accumulation.
        assert shares[0] % (train_batch // dp) == 0, (available, shares)


@pytest.mark.parametrize("flags, reason", [
    (["--train.dynamic_batch_enable"], "--train.dynamic_batch_enable: OpenRLHF's dynamic batching caps"),
    ([], r"--train.batch_size 24 must be a multiple of --train.micro_batch_size 8 x 2 actor data-parallel ranks"),
])
def test_start_up_refuses_what_data_parallel_replay_cannot_do(flags, reason, capsys):
    train_batch = 64 if flags else 24
    args = parse_args(replay_command(2, train_batch, 8, train_batch // 8, 8, 8, train_batch // 8, 1, extra=flags))
    with pytest.raises(SystemExit) as refusal:
        check_replay_compatible(args)
    assert refusal.value.code == 2 and re.search(reason, capsys.readouterr().err)


@pytest.mark.parametrize("rollout_batch, rollout_micro, reason", [
    (12, 8, r"--rollout.batch_size 12 x n 8 = 96 samples must be whole optimizer steps of --train.batch_size 64"),
    (24, 32, r"must be a multiple of --rollout.micro_batch_size 32 x 4 actor data-parallel ranks"),
])
def test_start_up_refuses_an_on_policy_pass_that_ends_inside_an_accumulation_window(rollout_batch, rollout_micro,
                                                                                   reason, capsys):
    args = parse_args(replay_command(4, 64, 4, rollout_batch, rollout_micro, 8, 8, 8))
    with pytest.raises(SystemExit) as refusal:
        check_replay_compatible(args)
    assert refusal.value.code == 2 and re.search(reason, capsys.readouterr().err)


class ShortLastBatch:
    """The harness's rollouts, one prompt short at step `short_step` (a partial last batch of the prompts)."""

    def __init__(self, generator, short_step):
        self.generator, self.short_step = generator, short_step

    def generate_samples(self, **kwargs):
        samples, *rest = self.generator.generate_samples(**kwargs)
        if self.generator.calls == self.short_step:
            samples = samples[len(samples) // len(PROMPTS):]  # drop the first prompt's n samples
        return (samples, *rest)


def test_a_replay_pass_never_starts_inside_an_accumulation_window(model_dir, tmp_path, cpu_boundaries):
    # 16 samples a step, micro-batches of 4, 4 per optimizer step. Step 2 brings 12 samples: its on-policy
    # update leaves 3 micro-batches of an open window, which step 3's replay pass would have closed.
    trainer, policy, strategy = build(model_dir, tmp_path, cpu_boundaries, steps=4, micro_batch_size=4)
    trainer.samples_generator = ShortLastBatch(trainer.samples_generator, short_step=2)
    windows_at_replay = []
    replay_train = type(policy.trainer).replay_train

    def record(self, kl_ctl):
        windows_at_replay.append(strategy.micro_steps % strategy.accumulated_gradient)
        return replay_train(self, kl_ctl)

    type(policy.trainer).replay_train = record
    try:
        with pytest.raises(RuntimeError, match="would start inside a gradient-accumulation window"):
            trainer.fit()
    finally:
        type(policy.trainer).replay_train = replay_train
    assert windows_at_replay == [3]  # the window the replay would have started in (the refusal came first)
    assert strategy.optimizer_steps == 2  # micro-batches 4 and 8 (steps 1 and 3); no replay step was taken


def test_the_buffer_is_saved_before_openrlhf_checkpoint(model_dir, tmp_path, cpu_boundaries):
    """A kill between the two saves must leave a resumable state: the buffer file of step N exists whenever the
    checkpoint of step N does (and a buffer file without its checkpoint is pruned by the next save)."""
    trainer, policy, strategy = build(model_dir, tmp_path, cpu_boundaries, steps=4)
    replay_dir = tmp_path / "ckpt" / "_replay"
    save_ckpt = strategy.save_ckpt
    seen_at_checkpoint = {}

    def killed_at_step_4(model, path, tag, *args, **kwargs):
        seen_at_checkpoint[tag] = sorted(os.listdir(replay_dir)) if replay_dir.exists() else []
        if tag == "global_step4":
            raise KeyboardInterrupt("killed while OpenRLHF writes its checkpoint")
        return save_ckpt(model, path, tag, *args, **kwargs)

    strategy.save_ckpt = killed_at_step_4
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert seen_at_checkpoint == {"global_step2": ["global_step2.pt"],
                                  "global_step4": ["global_step2.pt", "global_step4.pt"]}
    assert sorted(os.listdir(tmp_path / "ckpt" / "_actor")) == ["global_step2"]  # resumable at step 2 ...
    # ... and the next save prunes the step-4 buffer that has no checkpoint.
    trainer.prune_replay_buffers(None)
    assert sorted(os.listdir(replay_dir)) == ["global_step2.pt"]


def test_a_checkpoint_the_trainer_cannot_see_is_an_error_naming_the_shared_path(model_dir, tmp_path, cpu_boundaries):
    trainer, policy, strategy = build(model_dir, tmp_path, cpu_boundaries, steps=2)
    strategy.save_ckpt = lambda *args, **kwargs: None  # actor rank 0 wrote it on another node's disk
    with pytest.raises(RuntimeError, match="--ckpt.path must be a directory shared by all of them"):
        trainer.fit()

