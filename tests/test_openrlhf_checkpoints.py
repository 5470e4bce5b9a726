"""A kill during a Stage 2 checkpoint save, through OpenRLHF's real DeepspeedStrategy.save_ckpt (its rotation) and
the policy actor's save_checkpoint; DeepSpeed's engine is stood in for by one that writes a checkpoint's files in
DeepSpeed's order (model states, optimizer states, then `latest`) and can be killed between them.

OpenRLHF's own actor deletes the checkpoint it rotates out before writing the next: under --ckpt.max_num 1 a kill
during the save leaves `latest` naming a deleted folder (the control below). Ours keeps it until the new one is
complete, keeps the same checkpoints as OpenRLHF otherwise (compared save for save, metrics included), and a
resume whose `latest` names nothing loadable is refused before Ray starts, in one line (resume.py). The real stack,
killed during a save at two ranks, is tests/e2e/test_openrlhf_dp_e2e.py."""

import os
import shutil
import types

import deepspeed
import pytest

from openrlhf_rerule.openrlhf.actor import RecordingPolicyModel
from openrlhf_rerule.openrlhf.resume import check_resumable
from openrlhf.trainer.ray import ppo_actor
from openrlhf.utils.deepspeed import deepspeed as openrlhf_deepspeed

OPENRLHF_ACTOR = ppo_actor.PolicyModelActor.__ray_actor_class__  # OpenRLHF's own, unwrapped from ray.remote


class Killed(Exception):
    """The process dying at that point."""


class Engine(deepspeed.DeepSpeedEngine):
    kill_after_model_states = False

    def __init__(self):  # (no DeepSpeed set-up: only the files a checkpoint consists of)
        pass

    def save_checkpoint(self, save_dir, tag=None, client_state=None, save_latest=True, **kwargs):
        os.makedirs(os.path.join(save_dir, tag), exist_ok=True)
        open(os.path.join(save_dir, tag, "mp_rank_00_model_states.pt"), "w").close()
        if self.kill_after_model_states:
            raise Killed
        open(os.path.join(save_dir, tag, "zero_pp_rank_0_mp_rank_00_optim_states.pt"), "w").close()
        with open(os.path.join(save_dir, "latest"), "w") as f:
            f.write(tag)


@pytest.fixture
def one_process(monkeypatch):
    for module in (openrlhf_deepspeed, ppo_actor):  # the barriers of a single rank
        monkeypatch.setattr(module, "torch_dist_barrier_and_cuda_sync", lambda: None)


def actor(cls, ckpt_path, max_num):
    strategy = openrlhf_deepspeed.DeepspeedStrategy.__new__(openrlhf_deepspeed.DeepspeedStrategy)
    strategy.args = types.SimpleNamespace(ckpt=types.SimpleNamespace(path=str(ckpt_path), max_num=max_num,
                                                                     max_mem=1000), rerule_record={"stage": 2})
    policy = cls.__new__(cls)  # init_model_from_pretrained is DeepSpeed's
    policy.strategy, policy.actor, policy.ema_model, policy.tokenizer = strategy, types.SimpleNamespace(
        model=Engine()), None, None
    policy.save_hf_ckpt, policy.disable_ds_ckpt, policy.checkpoint_states = False, False, {}
    return policy


def resume_args(ckpt_path):
    return types.SimpleNamespace(ckpt=types.SimpleNamespace(path=str(ckpt_path), load_enable=True))


def saved(ckpt_path):
    actor_dir = ckpt_path / "_actor"
    return sorted(d for d in os.listdir(actor_dir) if (actor_dir / d).is_dir())


def latest(ckpt_path):
    return (ckpt_path / "_actor" / "latest").read_text()


@pytest.mark.parametrize("ours", [True, False], ids=["ours", "openrlhf_control"])
def test_a_kill_during_a_save_keeps_the_checkpoint_latest_names(one_process, tmp_path, capsys, ours):
    policy = actor(RecordingPolicyModel if ours else OPENRLHF_ACTOR, tmp_path, max_num=1)
    for step in (2, 4):
        policy.save_checkpoint(f"global_step{step}", {"global_step": step})
    assert saved(tmp_path) == ["global_step4"] and latest(tmp_path) == "global_step4"
    policy.actor.model.kill_after_model_states = True
    with pytest.raises(Killed):
        policy.save_checkpoint("global_step6", {"global_step": 6})
    assert latest(tmp_path) == "global_step4"  # DeepSpeed writes it last
    if not ours:  # OpenRLHF's rotation deleted it before the save: nothing to resume from, refused in one line
        assert saved(tmp_path) == ["global_step6"]
        with pytest.raises(SystemExit) as exit_info:
            check_resumable(resume_args(tmp_path))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1
        assert f"{tmp_path / '_actor' / 'latest'} names global_step4, which is not there" in err
        assert "folders there: global_step6" in err
        return
    assert saved(tmp_path) == ["global_step4", "global_step6"]  # the complete one, and the interrupted one
    check_resumable(resume_args(tmp_path))  # resumable: no exit
    # The resumed run saves step 6 again: the interrupted folder is replaced, not counted as a checkpoint.
    policy.actor.model.kill_after_model_states = True
    with pytest.raises(Killed):  # killed again during that save: step 4 is still kept
        policy.save_checkpoint("global_step6", {"global_step": 6})
    assert saved(tmp_path) == ["global_step4", "global_step6"] and latest(tmp_path) == "global_step4"
    policy.actor.model.kill_after_model_states = False
    policy.save_checkpoint("global_step6", {"global_step": 6})
    assert saved(tmp_path) == ["global_step6"] and latest(tmp_path) == "global_step6"
    assert sorted(os.listdir(tmp_path / "_actor" / "global_step6")) == [
        "metric.json", "mp_rank_00_model_states.pt", "rerule_model.json",
        "zero_pp_rank_0_mp_rank_00_optim_states.pt"]


@pytest.mark.parametrize("max_num", [1, 2, 3])
def test_the_same_checkpoints_are_kept_as_openrlhfs_rotation_keeps(one_process, tmp_path, max_num):
    """Save for save, with metrics (worst first), checkpoints without one (first of all) and a best checkpoint
    (never counted), the folders left equal OpenRLHF's own actor's."""
    ours = actor(RecordingPolicyModel, tmp_path / "ours", max_num)
    theirs = actor(OPENRLHF_ACTOR, tmp_path / "theirs", max_num)
    saves = [("global_step1", 0.5), ("global_step2", None), ("global_step3", 0.9), ("best_global_step3", 0.9),
             ("global_step4", 0.1), ("global_step5", 0.7), ("global_step6", None), ("global_step7", 0.8)]
    for order, (tag, metric) in enumerate(saves):
        for policy in (ours, theirs):
            policy.save_checkpoint(tag, {}, metric_value=metric, metric_key="eval" if metric is not None else None)
            # "oldest" by modification time, one second apart, whatever the file system's resolution
            os.utime(os.path.join(policy.strategy.args.ckpt.path, "_actor", tag), (order, order))
        assert saved(tmp_path / "ours") == saved(tmp_path / "theirs"), tag
    assert len([d for d in saved(tmp_path / "ours") if not d.startswith("best")]) == max_num


def test_a_kill_while_a_checkpoint_is_rotated_out_leaves_it_whole_or_gone(one_process, tmp_path, monkeypatch):
    """The CI failure of the two-rank e2e kill: the first run was killed while it deleted global_step2, after
    global_step4 was complete. The half-deleted folder, newer by modification time, was kept by the resumed run's
    next save and global_step4 deleted in its place; a kill in that save then left nothing to resume from."""
    policy = actor(RecordingPolicyModel, tmp_path, max_num=1)
    policy.save_checkpoint("global_step2", {"global_step": 2})
    rmtree = shutil.rmtree

    def killed_during_rmtree(path, *args, **kwargs):
        files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names)
        if files:  # one file goes, then the process dies
            os.remove(files[0])
            raise Killed
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_during_rmtree)
    with pytest.raises(Killed):
        policy.save_checkpoint("global_step4", {"global_step": 4})
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    assert saved(tmp_path) == ["global_step4"] and latest(tmp_path) == "global_step4"  # the rest is out of _actor
    check_resumable(resume_args(tmp_path))
    policy.actor.model.kill_after_model_states = True  # the resumed run, killed in its next save
    with pytest.raises(Killed):
        policy.save_checkpoint("global_step6", {"global_step": 6})
    assert saved(tmp_path) == ["global_step4", "global_step6"] and latest(tmp_path) == "global_step4"
    check_resumable(resume_args(tmp_path))
    policy.actor.model.kill_after_model_states = False
    policy.save_checkpoint("global_step6", {"global_step": 6})
    assert saved(tmp_path) == ["global_step6"] and sorted(os.listdir(tmp_path)) == ["_actor"]


def test_the_oldest_checkpoint_is_the_lowest_step_whatever_the_modification_times(one_process, tmp_path):
    """A copy without timestamps (or a killed deletion) reorders modification times; a folder of a later step than
    the one being saved is an abandoned run's (the run resumed from an earlier checkpoint)."""
    policy = actor(RecordingPolicyModel, tmp_path, max_num=2)
    for step in (2, 4):
        policy.save_checkpoint(f"global_step{step}", {"global_step": step})
    os.utime(tmp_path / "_actor" / "global_step4", (0, 0))  # older than global_step2 by the clock
    policy.save_checkpoint("global_step6", {"global_step": 6})
    assert saved(tmp_path) == ["global_step4", "global_step6"]
    (tmp_path / "_actor" / "global_step10").mkdir()  # the newest by the clock
    policy.save_checkpoint("global_step8", {"global_step": 8})
    assert saved(tmp_path) == ["global_step6", "global_step8"]


def test_a_resume_from_an_empty_or_gutted_latest_is_refused_in_one_line(tmp_path, capsys):
    actor_dir = tmp_path / "_actor"
    (actor_dir / "global_step4").mkdir(parents=True)
    check_resumable(types.SimpleNamespace(ckpt=types.SimpleNamespace(path=str(tmp_path), load_enable=True)))
    (actor_dir / "latest").write_text("")  # killed while DeepSpeed wrote it
    check_resumable(types.SimpleNamespace(ckpt=types.SimpleNamespace(path=str(tmp_path), load_enable=False)))
    for content, problem in (("", "is empty"), ("global_step4", "names global_step4, which holds no DeepSpeed "
                                                                "model states")):
        (actor_dir / "latest").write_text(content)
        with pytest.raises(SystemExit) as exit_info:
            check_resumable(resume_args(tmp_path))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and problem in err, err
    (actor_dir / "global_step4" / "mp_rank_00_model_states.pt").write_bytes(b"")
    check_resumable(resume_args(tmp_path))
