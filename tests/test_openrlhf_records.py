"""Issue 25 on the OpenRLHF path: the Stage 2 record checks on OpenRLHF's flags (before Ray starts, and under
DRY_RUN's check_args) at 1 and 2 actor ranks, and rerule_model.json written by our train_sft entry point and by the
policy actor into every folder they save: at one rank through the stubbed harness, at two ranks in two real
processes over gloo (only rank 0 writes; both ranks make the same collective calls; nothing hangs).

OpenRLHF's own saving (DeepSpeed's save_checkpoint, strategy.save_model) is stood in for by FakeStrategy: rank 0
writes the folder, then every rank meets at a barrier, which is how both end. What only the real stack shows
(DeepSpeed's ZeRO-3 gather, Ray's pickling of args to the actors) is for tests/e2e."""

import datetime
import json
import multiprocessing
import os
import shutil
import socket
import time
import types

import pytest
import torch

from openrlhf_harness import (N, build, cpu_boundaries, model_dir, parse_args,  # noqa: F401 (fixtures)
                              replay_command)
from openrlhf_rerule.openrlhf import train_ppo_ray, train_sft
from openrlhf_rerule.openrlhf.args import run_openrlhf_main
from openrlhf_rerule.openrlhf.check_args import check
from openrlhf_rerule.openrlhf.records import stage1_record
from openrlhf_rerule.local.tiny import save_tiny_model
from openrlhf_rerule.provenance import read_model_record, tokenizer_fingerprint, write_model_record, write_sidecar

TIMEOUT = 600  # seconds for the two-rank run (hangs only); a rank waiting for a collective the other skips hangs until then


def sft_args(model, data, out, *flags):
    parsed = {}
    run_openrlhf_main("openrlhf.cli.train_sft", [
        "--model.model_name_or_path", str(model), "--data.dataset", str(data), "--data.input_key", "prompt",
        "--data.output_key", "response", "--ckpt.output_dir", str(out), "--ckpt.path", str(out) + "_ckpt", *flags],
        train=lambda a: parsed.setdefault("args", a))
    return parsed["args"]


@pytest.fixture(scope="module")
def files(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    rows = [{"prompt": f"where was anna born ? {i}", "label": '["<reject>", "i do not know .", "anna"]'}
            for i in range(4)]
    (root / "stage2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "stage1.jsonl").write_text(json.dumps({"prompt": "where was anna born ?", "response": "i do not know ."}))
    write_sidecar(root / "stage1.jsonl", {"command": "stage1", "role": "training", "prompt_format": "plain"})
    shutil.copytree(model_dir, root / "other_tokenizer")
    save_tiny_model(["zebra yak quokka lemur", "where was anna born ?"], root / "other_tokenizer_src")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(root / "other_tokenizer_src" / name, root / "other_tokenizer" / name)
    return root


def stage1_model(model_dir, files, folder, *sft_flags):
    """A copy of the tiny model with the record our train_sft writes for `sft_flags`."""
    shutil.copytree(model_dir, folder)
    write_model_record(folder, {**stage1_record(sft_args(model_dir, files / "stage1.jsonl", folder, *sft_flags)),
                                "steps": 3})
    return folder


def grpo(gpus, model, files, *extra):
    return replay_command(gpus, 16, 4, 4, 4, N, 4, 4, model=str(model),
                          extra=["--data.prompt_dataset", str(files / "stage2.jsonl"), "--data.input_key", "prompt",
                                 *extra])


def refused(capsys, argv, *words):
    """Refused by DRY_RUN's check_args and by the entry point itself, before OpenRLHF's train (Ray) is reached."""
    import openrlhf.cli.train_ppo_ray as upstream

    for run in (lambda: check(["python3", "-m", "openrlhf_rerule.cli.train_ppo_ray", *argv]),
                lambda: train_ppo_ray.main(argv)):
        original, upstream.train = upstream.train, lambda args: pytest.fail("OpenRLHF's train was reached")
        try:
            with pytest.raises(SystemExit) as exit_:
                run()
        finally:
            upstream.train = original
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1, err
        for word in words:
            assert word in err, (word, err)


@pytest.mark.parametrize("gpus", [1, 2])
def test_a_chat_template_or_input_template_other_than_stage_1s_is_refused(model_dir, files, tmp_path, capsys,
                                                                           gpus):
    chat = stage1_model(model_dir, files, tmp_path / "chat", "--data.apply_chat_template")
    refused(capsys, grpo(gpus, chat, files), f"--actor.model_name_or_path {chat}", str(chat / "rerule_model.json"),
            "field 'chat_template'", "neither --data.apply_chat_template nor --data.input_template",
            "--allow_format_change")
    # train_sft's default input template ("User: {}\nAssistant: ") is a format too: raw Stage 2 prompts are another
    plain = stage1_model(model_dir, files, tmp_path / "plain")
    refused(capsys, grpo(gpus, plain, files), "field 'chat_template'", "the input template 'User: {}\\nAssistant: '")
    refused(capsys, grpo(gpus, plain, files, "--data.input_template", "[INST] {} [/INST]"),
            "with --data.input_template '[INST] {} [/INST]'")
    # the same format passes, and so does another one with --allow_format_change (recorded)
    assert check(["python3", "-m", "openrlhf_rerule.cli.train_ppo_ray",
                  *grpo(gpus, chat, files, "--data.apply_chat_template")])["replay"]["enable"]
    args = parse_args(grpo(gpus, chat, files, "--allow_format_change"))
    from openrlhf_rerule.openrlhf.records import stage2_record
    record = stage2_record(args)
    assert "WARNING: --allow_format_change" in capsys.readouterr().err
    assert record["overrides"] == ["--allow_format_change"] and "field 'chat_template'" in record["format_change"]
    assert record["base_record"]["made_by"] == "openrlhf train_sft" and record["chat_template"] == "none"


@pytest.mark.parametrize("gpus", [1, 2])
def test_swapped_tokenizer_files_and_a_reward_model_with_another_tokenizer_are_refused(model_dir, files, tmp_path,
                                                                                         capsys, gpus):
    swapped = stage1_model(model_dir, files, tmp_path / "swapped", "--data.apply_chat_template")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(files / "other_tokenizer" / name, swapped / name)
    refused(capsys, grpo(gpus, swapped, files, "--data.apply_chat_template", "--allow_format_change"),
            f"--actor.model_name_or_path {swapped}", "field 'tokenizer'", str(swapped / "rerule_model.json"))
    # OpenRLHF loads its reference from the actor's own folder; a reward model reads the actor's token ids
    argv = grpo(gpus, model_dir, files)
    at = argv.index("--reward.remote_url")
    argv[at:at + 2] = ["--reward.model_name_or_path", str(files / "other_tokenizer")]
    refused(capsys, argv, f"--reward.model_name_or_path {files / 'other_tokenizer'}",
            f"--actor.model_name_or_path {model_dir}", "field 'tokenizer'")


class FakeStrategy:
    """OpenRLHF's DeepspeedStrategy at its saving boundary: rank 0 writes, then all ranks meet at a barrier."""

    def __init__(self, args, rank, model_dir):
        self.args, self.rank, self.model_dir, self.accumulated_gradient = args, rank, model_dir, 1

    def is_rank_0(self):
        return self.rank == 0

    def print(self, *a):
        pass

    def _barrier(self):
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    def save_ckpt(self, model, save_dir, tag, *args, **kwargs):
        if self.rank == 0:
            os.makedirs(os.path.join(save_dir, tag))
        self._barrier()

    def save_model(self, model, tokenizer, output_dir, **kwargs):
        if self.rank == 0:
            shutil.copytree(self.model_dir, output_dir, dirs_exist_ok=True)
        self._barrier()


def fake_sft_train(rank, model_dir, steps):
    """openrlhf.cli.train_sft.train's saving, in its order: the trainer's checkpoints, then the final model."""
    import openrlhf.cli.train_sft as upstream

    def train(args):
        strategy = FakeStrategy(args, rank, model_dir)
        trainer = upstream.SFTTrainer.__new__(upstream.SFTTrainer)  # (our recording subclass during the call)
        trainer.strategy, trainer.model, trainer.tokenizer = strategy, types.SimpleNamespace(model=None), None
        trainer._wandb = trainer._tensorboard = trainer.eval_dataloader = None
        trainer.save_hf_ckpt, trainer.disable_ds_ckpt = True, False
        for step in range(1, steps + 1):
            trainer.save_logs_and_checkpoints(args, step, None, {}, {"consumed_samples": step})
        strategy.save_model(None, None, args.ckpt.output_dir)
    return train


def recording_actor(args, rank, model_dir, steps):
    from openrlhf_rerule.openrlhf.actor import RecordingPolicyModel

    actor = RecordingPolicyModel.__new__(RecordingPolicyModel)  # init_model_from_pretrained is DeepSpeed's
    actor.strategy, actor.actor, actor.ema_model, actor.tokenizer = (FakeStrategy(args, rank, model_dir),
                                                                    types.SimpleNamespace(model=None), None, None)
    actor.save_hf_ckpt, actor.disable_ds_ckpt, actor.checkpoint_states = True, False, {"global_step": 1}
    actor.steps_trained = steps - 1  # resumed at global step 1, then trained to `steps`
    return actor


def save_both(rank, model_dir, root, sft_argv, grpo_argv):
    """Stage 1 through our train_sft entry point, then the Stage 2 policy actor's checkpoint and final save."""
    import openrlhf.cli.train_sft as upstream

    upstream.train = fake_sft_train(rank, model_dir, steps=2)
    train_sft.main(sft_argv)
    args = parse_args(grpo_argv)
    from openrlhf_rerule.openrlhf.records import stage2_record
    args.rerule_record = stage2_record(args)
    actor = recording_actor(args, rank, model_dir, steps=3)
    actor.save_checkpoint("global_step3", {"global_step": 3})
    actor.save_model()


def rank_main(rank, world, port, model_dir, root, sft_argv, grpo_argv):
    import torch.distributed as dist

    from openrlhf_rerule.openrlhf import actor as actor_module

    torch.set_num_threads(1)
    torch.cuda.synchronize = lambda *a, **kw: None  # (OpenRLHF's barrier helper also synchronises CUDA)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    calls, writes = [], []
    for name in ("all_reduce", "all_gather", "broadcast", "barrier", "reduce_scatter"):
        real = getattr(dist, name)
        setattr(dist, name, lambda *a, _n=name, _r=real, **kw: (calls.append(_n), _r(*a, **kw))[1])
    for module in (train_sft, actor_module):  # who writes which record
        real_write = module.write_model_record
        module.write_model_record = lambda folder, record, _w=real_write: (writes.append(str(folder)),
                                                                           _w(folder, record))[1]
    save_both(rank, model_dir, root, sft_argv, grpo_argv)
    with open(os.path.join(root, f"rank{rank}.json"), "w") as f:
        json.dump({"calls": calls, "writes": writes}, f)
    dist.destroy_process_group()


def test_records_are_written_by_rank_0_only_and_add_no_collective(model_dir, files, tmp_path):
    out, ckpt = tmp_path / "stage1", tmp_path / "stage1_ckpt"
    sft_argv = ["--model.model_name_or_path", str(model_dir), "--data.dataset", str(files / "stage1.jsonl"),
                "--data.input_key", "prompt", "--data.output_key", "response", "--data.apply_chat_template",
                "--ckpt.output_dir", str(out), "--ckpt.path", str(ckpt), "--ckpt.save_steps", "1",
                "--ckpt.save_hf"]
    grpo_argv = grpo(2, model_dir, files, "--data.apply_chat_template", "--ckpt.path", str(tmp_path / "ckpt"),
                     "--ckpt.output_dir", str(tmp_path / "model"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=rank_main, args=(rank, 2, port, str(model_dir), str(tmp_path), sft_argv,
                                                     grpo_argv)) for rank in range(2)]
    for proc in procs:
        proc.start()
    deadline = time.time() + TIMEOUT
    for proc in procs:
        proc.join(timeout=max(deadline - time.time(), 0))
    hung = [proc for proc in procs if proc.is_alive()]
    for proc in hung:
        proc.kill()
    assert not hung, "a rank did not finish: it waited for a collective the other did not make"
    assert [proc.exitcode for proc in procs] == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0]["calls"] == ranks[1]["calls"] and ranks[0]["calls"]  # the fake saves' barriers, nothing more
    assert ranks[1]["writes"] == []
    expected = [ckpt / "global_step1", ckpt / "global_step1_hf", ckpt / "global_step2", ckpt / "global_step2_hf", out,
                tmp_path / "ckpt/_actor/global_step3", tmp_path / "ckpt/global_step3_hf", tmp_path / "model"]
    assert ranks[0]["writes"] == [str(p) for p in expected]
    steps = [1, 1, 2, 2, 2, 3, 3, 3]
    for folder, n in zip(expected, steps):
        record = read_model_record(folder)
        assert record["steps"] == n and record["chat_template"] == "auto", folder
        assert record["made_by"] == ("openrlhf train_sft" if n < 3 else "openrlhf_rerule train_ppo_ray")
    # the HF folders' tokenizer is the model's; a DeepSpeed folder holds no tokenizer files
    assert read_model_record(out)["tokenizer"] == tokenizer_fingerprint(model_dir)
    assert read_model_record(tmp_path / "ckpt/_actor/global_step3")["tokenizer"] is None
    final = read_model_record(out)
    assert final["data"][0]["role"] == "training" and final["prompt_format"] == "plain"


def test_one_rank_through_the_harness_records_every_checkpoint_and_the_final_model(model_dir, tmp_path,
                                                                                   cpu_boundaries):
    trainer, policy, strategy = build(model_dir, tmp_path, cpu_boundaries, steps=4, extra=[
        "--ckpt.output_dir", str(tmp_path / "model")])
    trainer.fit()
    for step in (2, 4):
        record = read_model_record(tmp_path / "ckpt" / "_actor" / f"global_step{step}")
        assert record["steps"] == step and record["algorithm"] == "group_norm+replay"
    assert policy.steps_trained == 4
    strategy.save_model = lambda model, tokenizer, out: shutil.copytree(model_dir, out)
    policy.tokenizer = None
    policy.save_model()
    record = read_model_record(tmp_path / "model")
    assert record["steps"] == 4 and record["made_by"] == "openrlhf_rerule train_ppo_ray"
    assert record["base_model"] == str(model_dir) and record["base_record"] == "base without record"
    assert record["reference_model"] == str(model_dir) and record["tokenizer"] == tokenizer_fingerprint(model_dir)
    assert record["replay"]["enable"] is True and record["chat_template"] == "none"
