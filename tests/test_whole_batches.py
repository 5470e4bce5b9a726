"""No Stage 2 step of any recipe trains on a short rollout batch.

Each Stage 2 recipe's resolved command (DRY_RUN=print) is parsed by the real parser, goes through the adapter's
start-up check (`whole_batches`, what our train() runs before Ray), and then OpenRLHF's own data path counts the
prompts of every step: `ppo_trainer.prepare_datasets` (max_samples, loader) and `samples_generator.
_collect_prompt_batch` (one rollout batch), episode after episode. The expected step counts are the papers'
(Appendix D: RWKU at most 37, TOFU 11) and one pass over the authors' 5988 MUSE prompts in whole batches (187).
"""

import json
import os
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from openrlhf_rerule.openrlhf.args import run_openrlhf_main
from openrlhf_rerule.openrlhf.compat import import_openrlhf
from openrlhf_rerule.openrlhf.whole_batches import whole_batches
from openrlhf_rerule.replay.config import add_replay_arguments

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"
STAGE2_RECIPES = sorted(p.name for p in SCRIPTS.glob("*.sh")
                        if p.name.startswith(("train_rule_", "train_rerule_", "ablation_")) and "local" not in p.name)


def write_stage2(path: Path, rows: int) -> Path:
    label = json.dumps(["<reject>", "I do not know.", "Someone"])
    path.write_text("".join(json.dumps({"prompt": f"question {i}?", "label": label, "prompt_id": f"p{i}",
                                        "kind": "forget"}) + "\n" for i in range(rows)))
    return path


def resolved_args(recipe: str, stage2: Path, **env):
    out = subprocess.run(["bash", str(SCRIPTS / recipe)], capture_output=True, text=True, check=True,
                         env={**os.environ, "DRY_RUN": "print", "PYTHON": "python3", "DATA_DIR": "/data",
                              "RUNS_DIR": "/runs", "STAGE2_DATA": str(stage2), **env}).stdout
    argv = [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("+ ")][-1]
    argv = argv[argv.index("openrlhf_rerule.cli.train_ppo_ray") + 1:]
    captured = {}
    import_openrlhf()
    run_openrlhf_main("openrlhf.cli.train_ppo_ray", argv, train=lambda a: captured.setdefault("args", a),
                      extra_arguments=add_replay_arguments)
    return captured["args"]


class ChatTemplateOnly:
    """PromptDataset calls only apply_chat_template on the tokenizer (RWKU recipes use the chat template)."""

    def apply_chat_template(self, chat, tokenize=False, add_generation_prompt=True):
        return chat[0]["content"] + "\n"


def openrlhf_prompts_per_step(args) -> list[int]:
    """The prompts of every step, episode after episode, as OpenRLHF's driver draws them."""
    from openrlhf.trainer.ppo_trainer import prepare_datasets
    from openrlhf.trainer.ppo_utils.samples_generator import _collect_prompt_batch
    from openrlhf.utils.deepspeed.deepspeed import DeepspeedStrategy

    strategy = SimpleNamespace(args=args, print=lambda *a: None, is_rank_0=lambda: True, seed=args.train.seed)
    strategy.setup_dataloader = DeepspeedStrategy.setup_dataloader.__get__(strategy)
    loader, _, _ = prepare_datasets(strategy, ChatTemplateOnly())
    sizes = []
    for _ in range(args.train.num_episodes):
        it, exhausted = iter(loader), False
        while not exhausted:
            prompts, _, _, exhausted = _collect_prompt_batch(it, args.rollout.batch_size)
            if prompts:
                sizes.append(len(prompts))
    return sizes


# benchmark -> (rows of the released / built Stage 2 file, whole steps the recipe must train)
PAPER = {"rwku": (1200, 37), "muse": (5988, 187), "tofu": (352, 11)}


@pytest.mark.parametrize("recipe", STAGE2_RECIPES)
def test_every_stage2_recipe_trains_whole_rollout_batches_only(recipe, tmp_path, capsys):
    benchmark = next(b for b in PAPER if b in recipe)
    rows, steps = PAPER[benchmark]
    args = resolved_args(recipe, write_stage2(tmp_path / "stage2.jsonl", rows))
    whole_batches(args)
    sizes = openrlhf_prompts_per_step(args)
    assert sizes == [32] * steps, (recipe, sizes)


def test_without_the_check_openrlhf_trains_a_short_batch_and_the_check_drops_it(tmp_path, capsys):
    # Today's TOFU file: 40 forget + 40 boundary prompts, asked to train 11 steps of 32.
    args = resolved_args("train_rule_tofu.sh", write_stage2(tmp_path / "stage2.jsonl", 80))
    assert openrlhf_prompts_per_step(args) == [32, 32, 16]  # OpenRLHF alone: a 16-prompt step
    capsys.readouterr()
    assert whole_batches(args) == {"prompts": 64, "steps_per_episode": 2}
    message = capsys.readouterr().err.strip()
    assert message == ("whole rollout batches: training on 64 of 80 prompts, 2 steps of 32 an episode "
                       "(--data.max_samples 64); the last 16 would have made a short batch; --data.max_samples "
                       "asked for 352, the data have 80")
    assert openrlhf_prompts_per_step(args) == [32, 32]


def test_a_target_with_fewer_released_prompts_trains_fewer_whole_steps(tmp_path, capsys):
    # 5_Christina_Aguilera: 1200 released rows, 1046 distinct prompts after `rerule data convert rule`.
    args = resolved_args("train_rerule_rwku.sh", write_stage2(tmp_path / "stage2.jsonl", 1046))
    whole_batches(args)
    assert openrlhf_prompts_per_step(args) == [32] * 32  # 1024 prompts; "at most 37 steps" (Appendix D)


def test_several_episodes_and_several_files_are_counted_as_openrlhf_loads_them(tmp_path, capsys):
    a, b = write_stage2(tmp_path / "a.jsonl", 20), write_stage2(tmp_path / "b.jsonl", 30)
    args = resolved_args("train_rule_rwku.sh", a, MAX_STEPS="0", ROLLOUT_BATCH="16", NUM_EPISODES="2")
    args.data.prompt_dataset = f"{a},{b}"
    assert openrlhf_prompts_per_step(args) == [16, 16, 16, 2] * 2
    capsys.readouterr()
    assert whole_batches(args) == {"prompts": 48, "steps_per_episode": 3}
    assert capsys.readouterr().err == ("whole rollout batches: training on 48 of 50 prompts, 3 steps of 16 an episode "
                                       "(--data.max_samples 48); the last 2 would have made a short batch\n")
    assert openrlhf_prompts_per_step(args) == [16, 16, 16] * 2


def test_fewer_prompts_than_one_rollout_batch_is_refused_in_one_line(tmp_path, capsys):
    args = resolved_args("train_rule_tofu.sh", write_stage2(tmp_path / "stage2.jsonl", 20))
    with pytest.raises(SystemExit) as stop:
        whole_batches(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "20 prompts are fewer than one rollout batch (--rollout.batch_size 32)" in err


def test_data_that_cannot_be_counted_is_said_not_checked(tmp_path, capsys):
    args = resolved_args("train_rule_tofu.sh", tmp_path / "missing.jsonl")
    assert whole_batches(args) == {"prompts": None, "steps_per_episode": None}
    assert "not checked" in capsys.readouterr().err
