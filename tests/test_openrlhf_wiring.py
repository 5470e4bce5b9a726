"""ReRULE wiring through OpenRLHF 0.11.2's real trainer and actor code on CPU.

What runs for real: PPOTrainer.fit / train_step / save_logs_and_checkpoints, RemoteExperienceMaker (log-probs,
group_norm advantages), PolicyModelActor.forward / append / fit / save_checkpoint, ActorPPOTrainer.ppo_train /
training_step, NaiveReplayBuffer, OpenRLHF's Actor on a tiny Llama, TensorboardLogger, plus our subclasses.
What is stubbed, at the boundaries only (tests/openrlhf_harness.py): Ray, vLLM, DeepSpeed, CUDA synchronisation.
"""

import json
import math
import os
import shutil

import pytest
import torch

from openrlhf_harness import N, PROMPTS, REWARDS, build, cpu_boundaries, model_dir  # noqa: F401 (fixtures)
from openrlhf_rerule.openrlhf.experience import capture_rollout, experiences_from_groups
from openrlhf_rerule.replay import groups_from_batch


def test_capture_and_rebuild_round_trip(model_dir, tmp_path, cpu_boundaries):
    trainer, policy, _ = build(model_dir, tmp_path, cpu_boundaries, steps=1)
    rollouts, *_ = trainer.samples_generator.generate_samples()
    experiences = trainer.experience_maker.make_experience_batch(rollouts)
    groups = groups_from_batch(**capture_rollout(experiences, N), step=3)
    assert [g.prompt_id for g in groups] == PROMPTS
    assert [g.rewards.tolist() for g in groups] == REWARDS
    # Advantages stored for replay are the ones OpenRLHF computed for the on-policy update.
    openrlhf_adv = torch.stack([e.advantages[row][e.action_mask[row].bool()][0]
                                for e in experiences for row in range(len(e.sequences))])
    assert torch.allclose(torch.cat([g.advantages for g in groups]), openrlhf_adv, atol=1e-5)

    rebuilt = experiences_from_groups(groups, 8, trainer.tokenizer.pad_token_id, step=5)
    for original, replayed in zip(experiences, rebuilt):
        width = original.action_mask.shape[1]
        assert torch.equal(replayed.sequences, original.sequences)
        assert torch.equal(replayed.action_mask.bool(), original.action_mask.bool())
        mask = original.action_mask.bool()
        assert torch.equal(replayed.action_log_probs[:, :width][mask], original.action_log_probs.float()[mask])
        assert torch.equal(replayed.base_action_log_probs[:, :width][mask],
                           original.base_action_log_probs.float()[mask])
        assert torch.equal(replayed.rollout_log_probs[:, :width][mask], original.rollout_log_probs[mask])
        assert torch.equal(replayed.advantages[:, :width][mask], original.advantages[mask])
        assert torch.equal(replayed.info["age"], torch.full((8,), 2.0))


@pytest.mark.slow
def test_replay_activates_updates_logs_and_checkpoints(model_dir, tmp_path, cpu_boundaries):
    trainer, policy, strategy = build(model_dir, tmp_path, cpu_boundaries, steps=4)
    logged = {}
    log_train = trainer.tensorboard_logger.log_train
    trainer.tensorboard_logger.log_train = lambda step, logs: (logged.__setitem__(step, dict(logs)),
                                                               log_train(step, logs))
    trainer.fit()

    assert [logged[s]["replay/active"] for s in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 1.0]
    assert [logged[s]["replay/size"] for s in (1, 2, 3, 4)] == [2.0, 4.0, 6.0, 8.0]  # 2 hard groups a step
    for step in (3, 4):
        logs = logged[step]
        assert logs["replay/groups"] == 4.0
        # The replayed samples are hard ones (mean reward of groups 0 / 2 is 0.125), of the right age.
        assert logs["replay/reward"] == pytest.approx(0.125)
        assert 0.0 < logs["replay/is_weight_mean"] <= 1.2 + 1e-6 and 0.0 < logs["replay/ess"] <= 1.0
        assert math.isfinite(logs["replay/policy_loss"]) and "replay/kl" in logs
        assert logs["timing/replay"] > 0 and logs["timing/ppo_train"] > 0
    assert "replay/policy_loss" not in logged[2]
    # One optimizer step per on-policy update (16 samples) and one per replay update (4 groups x 4).
    assert strategy.optimizer_steps == 4 + 2
    # No regeneration and no reference recompute for replay: one reference pass per on-policy step only.
    assert trainer.reference_model_group.calls.count("forward") == 4
    assert trainer.samples_generator.calls == 4
    assert policy.trainer.actor_loss_fn is not policy.trainer.replay_loss_fn  # PolicyLoss restored after replay

    # TensorBoard got the replay metrics through OpenRLHF's own logger.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run_dir = os.path.join(trainer.args.logger.tensorboard_dir, trainer.args.logger.wandb.run_name)
    events = EventAccumulator(run_dir)
    events.Reload()
    assert {"train/replay/size", "train/replay/ess", "train/timing/replay"} <= set(events.Tags()["scalars"])

    # Checkpoints at steps 2 and 4 carry the buffer; resuming restores it exactly.
    replay_dir = tmp_path / "ckpt" / "_replay"
    assert sorted(os.listdir(replay_dir)) == ["global_step2.pt", "global_step4.pt"]
    saved = trainer.replay_buffer.state_dict()
    # Buffer files follow OpenRLHF's checkpoint rotation: once DeepSpeed dropped step 2, so does the next save.
    assert json.loads((tmp_path / "ckpt/_actor/global_step2/rerule_model.json").read_text())["steps"] == 2
    shutil.rmtree(tmp_path / "ckpt" / "_actor" / "global_step2")  # (as OpenRLHF's rotation removes it)
    trainer.save_replay_buffer(6)
    os.makedirs(tmp_path / "ckpt" / "_actor" / "global_step6")  # OpenRLHF's checkpoint, written after the buffer
    trainer.prune_replay_buffers("global_step6")
    assert sorted(os.listdir(replay_dir)) == ["global_step4.pt", "global_step6.pt"]

    resumed, resumed_policy, _ = build(model_dir, tmp_path, cpu_boundaries, steps=1, extra=["--ckpt.load_enable"])
    resumed_policy.checkpoint_states = strategy.saved["global_step4"]  # what DeepSpeed's load_ckpt returns
    states = resumed.init_checkpoint_states()
    assert states["global_step"] == 4
    restored = resumed.replay_buffer.state_dict()
    assert restored["counters"] == saved["counters"] and len(restored["groups"]) == len(saved["groups"]) == 8
    for a, b in zip(restored["groups"], saved["groups"]):
        assert a["prompt_id"] == b["prompt_id"] and a["step"] == b["step"]
        assert torch.equal(a["behaviour_logprobs"], b["behaviour_logprobs"])
    assert torch.equal(restored["generator"], saved["generator"])


def test_resume_without_a_saved_buffer_is_a_clear_error(model_dir, tmp_path, cpu_boundaries):
    trainer, policy, _ = build(model_dir, tmp_path, cpu_boundaries, steps=1, extra=["--ckpt.load_enable"])
    os.makedirs(tmp_path / "ckpt" / "_actor")
    policy.checkpoint_states = {"episode": 0, "global_step": 7, "total_consumed_prompts": 28,
                                "data_loader_state_dict": {}}
    with pytest.raises(FileNotFoundError, match="no replay buffer saved for that step"):
        trainer.init_checkpoint_states()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--replay.loss_mode", "decoupled", "--replay.loss_level", "sequence"],
                                  ["--replay.loss_mode", "ppo", "--replay.no_self_normalize"]])
def test_other_replay_loss_modes_run_through_the_actor(model_dir, tmp_path, cpu_boundaries, mode):
    trainer, policy, strategy = build(model_dir, tmp_path, cpu_boundaries, steps=3, extra=mode)
    logged = {}
    trainer.tensorboard_logger.log_train = lambda step, logs: logged.__setitem__(step, dict(logs))
    trainer.fit()
    assert logged[3]["replay/active"] == 1.0 and strategy.optimizer_steps == 3 + 1
    assert all(math.isfinite(logged[3][k]) for k in ("replay/policy_loss", "replay/ess", "replay/kl"))
    if "ppo" in mode:
        assert logged[3]["replay/is_weight_mean"] == 1.0  # PPO against mu carries no extra weight
