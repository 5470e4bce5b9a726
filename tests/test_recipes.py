"""Every recipe in examples/scripts: valid bash, and its resolved command accepted by the real parsers.

Each recipe runs with DRY_RUN=print (bash only, fast); its commands then go through the same validator as
DRY_RUN=1 (`check_args.check`), in this process, so OpenRLHF is imported once. One recipe also runs with
DRY_RUN=1 end to end, through the shell and a fresh Python.
"""

import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_rerule.openrlhf.check_args import check
from openrlhf_rerule.replay import PAPER_PRESETS

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"
# (the reproduce_*.sh plans: tests/test_reproduce.py)
RECIPES = sorted(p.name for p in SCRIPTS.glob("*.sh") if not p.name.startswith(("_", "reproduce_")))
ENV = {**os.environ, "PYTHON": "python3", "DATA_DIR": "/data", "RUNS_DIR": "/runs", "NUM_GPUS": "4"}


def commands(recipe, **env):
    out = subprocess.run(["bash", str(SCRIPTS / recipe)], env={**ENV, "DRY_RUN": "print", **env},
                         capture_output=True, text=True, check=True).stdout
    return [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("+ ")]


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_every_recipe_family_is_there():
    expected = {f"train_{kind}_{b}.sh" for kind in ("sft_stage1", "rule", "rerule") for b in PAPER_PRESETS}
    expected |= {"ablation_random_storage_muse.sh", "ablation_tau_muse.sh", "train_sft_stage1_local.sh",
                 "train_rule_local.sh", "train_rerule_local.sh", "train_purge_rwku.sh", "train_purge_replay_rwku.sh"}
    assert set(RECIPES) == expected


@pytest.mark.parametrize("script", RECIPES + ["_common.sh"])
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(SCRIPTS / script)], check=True)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_dry_run_is_accepted_by_the_real_parsers(recipe):
    runs = commands(recipe)
    assert runs, f"{recipe} printed no command"
    for argv in runs:
        summary = check(argv)
        if "sft_stage1" in recipe:
            assert summary["module"] in ("openrlhf_rerule.cli.train_sft", "rerule train stage1")
            continue
        benchmark = next((b for b in PAPER_PRESETS if b in recipe), "rwku")  # local recipes default to rwku
        replay = summary["replay"]
        if "purge" in recipe:  # PURGE's own values, replay scaled to it: tests/test_purge_recipes.py
            assert (replay is not None) == ("replay" in recipe)
            continue
        if "rule_" in recipe and "rerule" not in recipe:
            assert replay is None  # RULE: vanilla GRPO
            continue
        preset = dict(PAPER_PRESETS[benchmark])
        if "tau" in recipe:
            preset.pop("threshold")
        assert {key: replay[key] for key in preset} == preset
        assert replay["admission"] == ("random" if "random_storage" in recipe else "hard")
    if "tau" in recipe:
        assert [float(flag(argv, "--replay.threshold")) for argv in runs] == [0.6, 0.8]


@pytest.mark.parametrize("benchmark", sorted(PAPER_PRESETS))
def test_rerule_is_the_rule_command_plus_replay_flags_only(benchmark):
    (rule,) = commands(f"train_rule_{benchmark}.sh")
    (rerule,) = commands(f"train_rerule_{benchmark}.sh")
    kept, skip_value = [], False
    for arg in rerule:
        if skip_value:
            skip_value = False
        elif arg.startswith("--replay."):
            skip_value = arg != "--replay.enable"  # every other replay flag takes a value
        else:
            kept.append(arg)
    renamed = ["rule" if a == "rerule" else a.replace("/rerule/", "/rule/") for a in kept]
    assert renamed == rule  # the output paths and the run name differ, nothing else
    # The paper's Appendix D, in OpenRLHF's units: 32 prompts x 8 samples, one 256-sample optimizer step.
    for name, value in {"--rollout.batch_size": "32", "--rollout.n_samples_per_prompt": "8",
                        "--train.batch_size": "256", "--actor.adam.lr": "2e-6", "--algo.kl.init_coef": "1e-2",
                        "--algo.advantage.estimator": "group_norm", "--rollout.temperature": "1.0"}.items():
        assert flag(rule, name) == value


def test_environment_overrides_reach_the_command():
    (argv,) = commands("train_rerule_tofu.sh", REPLAY_THRESHOLD="0.8", NUM_GPUS="8", STAGE1_MODEL="/m/s1")
    assert flag(argv, "--replay.threshold") == "0.8" and flag(argv, "--actor.num_gpus_per_node") == "8"
    assert flag(argv, "--actor.model_name_or_path") == "/m/s1"
    assert flag(argv, "--rollout.max_new_tokens") == "256"
    assert flag(argv, "--data.input_template") == "[INST] {} [/INST]"


def test_dry_run_validates_through_a_fresh_python_and_launches_nothing():
    result = subprocess.run(["bash", str(SCRIPTS / "train_rerule_rwku.sh")], capture_output=True, text=True,
                            env={**ENV, "DRY_RUN": "1", "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("+ ray job submit")
    assert "DRY_RUN ok: arguments accepted by openrlhf_rerule.cli.train_ppo_ray" in result.stdout

    bad = subprocess.run(["bash", str(SCRIPTS / "train_rerule_rwku.sh"), "--replay.loss_mode", "bogus"],
                         capture_output=True, text=True, env={**ENV, "DRY_RUN": "1", "PYTHON": sys.executable})
    assert bad.returncode != 0 and "invalid choice: 'bogus'" in bad.stderr

    # settings replay cannot run with (a replay update of 3 groups x 8 samples is not whole steps of 256): the
    # reason and exit 2, as the real start-up refuses it before Ray starts, and no traceback
    bad = subprocess.run(["bash", str(SCRIPTS / "train_rerule_rwku.sh"), "--replay.batch_groups", "3"],
                         capture_output=True, text=True, env={**ENV, "DRY_RUN": "1", "PYTHON": sys.executable})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert "--replay.batch_groups 3 groups x n 8 samples must fill whole optimizer steps" in bad.stderr


@pytest.mark.parametrize("benchmark, cutoff", [("rwku", "512"), ("muse", "640"), ("tofu", "512")])
def test_stage1_is_rules_llama_factory_recipe(benchmark, cutoff, tmp_path):
    """RS/scripts/full/run_rt_epoch_target.sh / run_rt_epoch_muse_target.sh in the RULE release: lr 4e-7, a global
    batch of 8, 3 epochs, cosine, 20 warm-up steps, cutoff 512 / 640; HF TrainingArguments' AdamW defaults."""
    data = tmp_path / "stage1.jsonl"
    data.write_text('{"prompt": "q", "response": "I do not know.", "subject": "s"}\n' * 300)
    (argv,) = commands(f"train_sft_stage1_{benchmark}.sh", STAGE1_DATA=str(data))
    expected = {"--adam.lr": "4e-7", "--train.batch_size": "8", "--train.micro_batch_size": "2",
                "--train.max_epochs": "3", "--lr_scheduler": "cosine", "--adam.weight_decay": "0",
                "--adam.eps": "1e-8", "--max_norm": "1.0", "--data.max_len": cutoff}
    assert {name: flag(argv, name) for name in expected} == expected
    assert argv[argv.index("--adam.betas") + 1:argv.index("--adam.betas") + 3] == ["0.9", "0.999"]
    # 300 rows on 4 ranks of micro-batch 2: 37 full micro-batches a rank (OpenRLHF drops the remainder), one
    # optimizer step each, 3 epochs = 111 steps; OpenRLHF's warm-up is ceil(111 x ratio) steps.
    assert math.ceil(111 * float(flag(argv, "--lr_warmup_ratio"))) == 20
    assert check(argv)["module"] == "openrlhf_rerule.cli.train_sft"


def test_stage1_values_are_overridable(tmp_path):
    data = tmp_path / "stage1.jsonl"
    data.write_text('{"prompt": "q", "response": "r", "subject": "s"}\n' * 48)
    (argv,) = commands("train_sft_stage1_rwku.sh", STAGE1_DATA=str(data), NUM_GPUS="1", SFT_BATCH="16",
                       SFT_MICRO_BATCH="8", SFT_EPOCHS="10", SFT_LR="1e-3", SFT_WARMUP_STEPS="1",
                       SFT_LR_SCHEDULER="cosine_with_min_lr", SFT_BETAS="0.9 0.95", SFT_MAX_LEN="64")
    assert [flag(argv, f) for f in ("--train.batch_size", "--adam.lr", "--lr_scheduler", "--data.max_len")] == \
        ["16", "1e-3", "cosine_with_min_lr", "64"]
    assert argv[argv.index("--adam.betas") + 1:argv.index("--adam.betas") + 3] == ["0.9", "0.95"]
    assert math.ceil(30 * float(flag(argv, "--lr_warmup_ratio"))) == 1  # 48 // 16 = 3 steps x 10 epochs
