"""The `--replay.*` command line on OpenRLHF's own parser, its compatibility checks, the vanilla (RULE) path,
the version check and the CPU import shims."""

import importlib.metadata
import sys
from dataclasses import asdict, fields

import pytest
import torch

from openrlhf_rerule.openrlhf import compat
from openrlhf_rerule.openrlhf.check_args import check
from openrlhf_rerule.replay import ReplayConfig

compat.import_openrlhf()

GRPO = ["python3", "-m", "openrlhf_rerule.cli.train_ppo_ray", "--actor.model_name_or_path", "m",
        "--actor.num_gpus_per_node", "1", "--reward.remote_url", "reward.py", "--algo.advantage.estimator",
        "group_norm", "--algo.kl.use_loss", "--algo.kl.estimator", "k3", "--rollout.n_samples_per_prompt", "8",
        "--rollout.batch_size", "32", "--train.batch_size", "256"]


def test_every_replay_config_field_is_a_flag_and_reaches_the_config():
    expected = ReplayConfig(enable=True, threshold=0.4, capacity=50, min_groups=3, warmup_steps=2, batch_groups=64,
                            admission="random", seed=7, require_variance=True, max_age=9, max_replays=2,
                            eviction="lowest_reward", retire_on_mastery=True, loss_mode="decoupled",
                            loss_level="sequence", clip_low=0.1, clip_high=0.3, is_cap=3.0, self_normalize=False,
                            coef=0.5, admit_after_warmup=False, kl=False, behaviour="rollout")
    flags = ["--algo.advantage.is_correction_level", "token"]  # behaviour=rollout needs vLLM's log-probs
    for f in fields(ReplayConfig):
        value = getattr(expected, f.name)
        if f.type in (bool, "bool"):
            flags += [f"--replay.{f.name}"] if value else [f"--replay.no_{f.name}"]
        else:
            flags += [f"--replay.{f.name}", str(value)]
    default = ReplayConfig()
    assert all(getattr(expected, f.name) != getattr(default, f.name) for f in fields(ReplayConfig))
    assert check(GRPO + flags)["replay"] == asdict(expected)
    assert check(GRPO)["replay"] is None  # no --replay.enable: replay off


@pytest.mark.parametrize("flags, reason", [
    (["--algo.advantage.estimator", "reinforce", "--rollout.n_samples_per_prompt", "1", "--train.batch_size", "32"],
     "needs n >= 2"),
    (["--algo.advantage.estimator", "reinforce"], "use --algo.advantage.estimator group_norm"),
    (["--algo.dynamic_filtering_enable"], "hardest cases replay must store"),
    (["--train.async_enable"], "synchronous PPOTrainer"),
    (["--replay.behaviour", "rollout"], "only records with --algo.advantage.is_correction_level"),
    (["--replay.batch_groups", "3"], "whole optimizer steps"),
])
def test_combinations_that_cannot_work_are_refused(flags, reason, capsys):
    with pytest.raises(SystemExit) as refusal:  # a user's settings: exit 2 and the reason, no traceback
        check(GRPO + ["--replay.enable"] + flags)
    assert refusal.value.code == 2 and reason in capsys.readouterr().err


def test_kl_in_the_reward_is_refused_but_a_negative_dynamic_filter_floor_is_accepted(capsys):
    no_kl_loss = [a for a in GRPO if a != "--algo.kl.use_loss"]
    with pytest.raises(SystemExit) as refusal:
        check(no_kl_loss + ["--replay.enable"])
    assert refusal.value.code == 2 and "add --algo.kl.use_loss" in capsys.readouterr().err
    # A lower bound below every reward hides no low-reward group (it still drops all-correct ones).
    accepted = check(GRPO + ["--replay.enable", "--algo.dynamic_filtering_enable",
                             "--algo.dynamic_filtering_range", "-1", "1"])
    assert accepted["replay"]["enable"]


def test_openrlhf_flags_are_openrlhf_validated():
    with pytest.raises(SystemExit):  # argparse rejects an unknown flag
        check(GRPO + ["--replay.no_such_flag", "1"])
    with pytest.raises(AssertionError, match="n_samples_per_prompt > 1"):  # OpenRLHF's own check
        check(GRPO + ["--rollout.n_samples_per_prompt", "1"])


def test_without_replay_it_is_openrlhf_train_with_the_recording_actor_only(monkeypatch):
    import openrlhf.cli.train_ppo_ray as upstream
    import openrlhf.trainer.ppo_trainer as ppo_trainer

    from openrlhf_rerule.openrlhf import train_ppo_ray

    seen = []
    monkeypatch.setattr(upstream, "train", lambda args: seen.append(
        (args.replay.enable, upstream.PolicyModelActor, ppo_trainer.PPOTrainer)))
    original = (upstream.PolicyModelActor, ppo_trainer.PPOTrainer)
    train_ppo_ray.main(GRPO[3:])
    train_ppo_ray.main(GRPO[3:] + ["--replay.enable"])

    from openrlhf_rerule.openrlhf.actor import RecordingPolicyModelActor, ReplayPolicyModelActor
    from openrlhf_rerule.openrlhf.trainer import ReplayPPOTrainer
    assert seen == [(False, RecordingPolicyModelActor, original[1]), (True, ReplayPolicyModelActor, ReplayPPOTrainer)]
    # the RULE arm's actor is OpenRLHF's with the record writing and the kill-safe checkpoint rotation added,
    # nothing else
    assert RecordingPolicyModelActor.__ray_actor_class__.__bases__ == (original[0].__ray_actor_class__,)
    assert set(vars(RecordingPolicyModelActor.__ray_actor_class__)) - {"__module__", "__doc__", "__qualname__"} == {
        "steps_trained", "fit", "save_model", "save_checkpoint", "rotate_out"}
    assert (upstream.PolicyModelActor, ppo_trainer.PPOTrainer) == original  # exchanged for that call only


def test_version_check_names_the_supported_version(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.11.1")
    with pytest.raises(SystemExit, match=r"targets openrlhf==0\.11\.2, found 0\.11\.1"):
        compat.check_openrlhf_version()


def test_cpu_shims_are_marked_specced_and_fail_loudly_when_used():
    import transformers.utils
    import vllm

    assert compat.install_cpu_shims() == ["flash_attn", "vllm"]  # idempotent: already installed, nothing new
    for name in ("flash_attn", "flash_attn.bert_padding", "flash_attn.utils.distributed", "vllm"):
        assert getattr(sys.modules[name], compat.STUB_MARK) and sys.modules[name].__spec__.name == name
    assert not transformers.utils.is_flash_attn_2_available()
    with pytest.raises(RuntimeError, match="CPU import stub"):
        vllm.SamplingParams(temperature=1.0)


def test_no_shims_on_a_gpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compat.install_cpu_shims() == []


def test_readme_documents_every_replay_flag():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    for f in fields(ReplayConfig):
        assert f"`--replay.{f.name}`" in doc or f"`--replay.no_{f.name}`" in doc, f.name


def test_rule_through_our_entry_point_hands_openrlhf_train_the_args_openrlhf_parses():
    """Without --replay.enable, our entry point calls OpenRLHF's own `train` with the namespace OpenRLHF's own
    parser builds from the same command line (plus only the unused `replay` group, `allow_format_change` and the
    record the actors write)."""
    from unittest import mock

    import openrlhf.cli.train_ppo_ray as upstream

    from openrlhf_rerule.openrlhf.args import run_openrlhf_main
    from openrlhf_rerule.openrlhf.train_ppo_ray import main

    argv = GRPO[3:] + ["--train.seed", "7", "--actor.lr_scheduler", "constant"]
    received = []
    with mock.patch.object(upstream, "train", side_effect=received.append):
        main(argv)
    run_openrlhf_main("openrlhf.cli.train_ppo_ray", argv, train=received.append)
    ours, theirs = (vars_tree(a) for a in received)
    assert ours.pop("replay")["enable"] is False and ours.pop("allow_format_change") is False
    assert ours.pop("rerule_record")["made_by"] == "openrlhf_rerule train_ppo_ray"
    assert ours == theirs and theirs["train"]["seed"] == 7


def vars_tree(namespace):
    return {k: vars_tree(v) if hasattr(v, "__dict__") and not callable(v) else v for k, v in vars(namespace).items()}
