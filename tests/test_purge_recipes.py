"""The PURGE recipes (train_purge_rwku.sh, train_purge_replay_rwku.sh, reproduce_purge_rwku.sh) under DRY_RUN, and the
OpenRLHF launcher's check that every prompt's label fits RERULE_REWARD_VARIANT.

The expected values are worked out here from the PURGE authors' files (github strzar/purge at 24d1a3f) and TRL
0.18.1's GRPOConfig defaults, which their trainer inherits, not read back from the scripts:
  src/configs/training/binary.yaml  num_epochs 40, per_device_train_batch_size 2, gradient_accumulation_steps 8,
                                    num_generations 4, dataset_size 100; run_a100.sh@3cb73e7:18: one GPU
  grpo.py@3cb73e7:10 (the binary reward's script): TARGET = "1_Stephen_King"
  -> 2 x 8 x 1 = 16 completions an optimizer step = 16 / 4 = 4 prompts; 100 / 4 = 25 steps an episode; 40 episodes
  TRL 0.18.1: learning_rate 1e-6, linear schedule without warm-up, weight_decay 0, beta 0.04 (k3), epsilon 0.2,
  max_prompt_length 512, max_completion_length 256, temperature 1.0, seed 42; plain prompt strings (no template).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from openrlhf_rerule.openrlhf import compat
from openrlhf_rerule.openrlhf.check_args import check
from test_reproduce import SCRIPTS, commands, flag, touch

compat.import_openrlhf()

FIVE_TARGETS = ["1_Stephen_King", "2_Confucius", "3_Bruce_Lee", "4_Warren_Buffett", "5_Christina_Aguilera"]
PROBES = ["forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2"]
UTILITY = ["retain_mmlu", "retain_bbh", "truthful", "triviaqa", "fluency"]  # RWKU's names for Gen Rea Tru Fac Flu


def inputs(root: Path, targets=FIVE_TARGETS) -> Path:
    """Empty files where RWKU keeps its target folders and the PURGE authors their entity lists."""
    for t in targets:
        touch(*(root / "RWKU" / t / f"{name}.json" for name in ["reject_phi", *PROBES, *UTILITY]),
              root / "PURGE" / t / "fts.json")
    return root


def plan(script: str, root: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / script)], capture_output=True, text=True, env={
        **os.environ, "DRY_RUN": "print", "PYTHON": "python3", "DATA_DIR": str(root), "RUNS_DIR": str(root / "runs"),
        "RWKU_DIR": str(root / "RWKU"), "ENTITIES_DIR": str(root / "PURGE"),
        "STAGE2_DATA": str(root / "stage2.jsonl"), **env})


def grpo(argv) -> tuple[dict, list[str]]:
    """The train_ppo_ray arguments after `--` of a `ray job submit` line, and its runtime environment."""
    runtime_env = json.loads(flag(argv, "--runtime-env-json"))
    return runtime_env["env_vars"], argv[argv.index("--") + 1:]


def test_train_purge_is_the_authors_setting_through_our_adapter(tmp_path):
    (run,) = commands(plan("train_purge_rwku.sh", tmp_path))
    env, argv = grpo(run)
    assert env == {"RERULE_REWARD_VARIANT": "purge_binary"}
    expected = {
        "--actor.model_name_or_path": "microsoft/Phi-3-mini-4k-instruct",  # model/phi_3_mini_4k_instruct_3.8b.yaml
        "--rollout.n_samples_per_prompt": "4", "--rollout.batch_size": "4", "--train.batch_size": "16",
        "--train.micro_batch_size": "2",  # per_device_train_batch_size: 8 micro-batches accumulated
        "--data.max_samples": "100", "--train.num_episodes": "40", "--train.max_epochs": "1",
        "--actor.adam.lr": "1e-6", "--actor.lr_scheduler": "linear", "--actor.lr_warmup_ratio": "0",
        "--actor.adam.weight_decay": "0", "--algo.kl.init_coef": "0.04", "--algo.kl.estimator": "k3",
        "--algo.advantage.estimator": "group_norm", "--rollout.max_new_tokens": "256",
        "--data.max_len": str(512 + 256), "--rollout.temperature": "1.0", "--train.seed": "42",
        "--actor.num_gpus_per_node": "1", "--ckpt.save_steps": "500",
    }
    assert {name: flag(argv, name) for name in expected} == expected
    assert "--algo.kl.use_loss" in argv
    assert "--data.apply_chat_template" not in argv and "--data.input_template" not in argv  # raw prompts
    assert not any(a.startswith("--replay.") for a in argv)
    summary = check(run)  # OpenRLHF's parser, our flags and the whole-batch count
    assert (summary["prompts"], summary["steps_per_episode"]) == (None, None)  # (no data file in this test)


def test_purge_replay_differs_from_purge_only_in_the_replay_flags(tmp_path):
    rows = [{"prompt": f"q{i}", "label": json.dumps(["<purge>", "T", "T"])} for i in range(100)]
    (tmp_path / "stage2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (purge,), (replay,) = (commands(plan(s, tmp_path)) for s in ("train_purge_rwku.sh", "train_purge_replay_rwku.sh"))
    _, plain = grpo(purge)
    _, argv = grpo(replay)
    extra = argv[len(plain):]
    names = {"purge", "purge_replay"}
    assert [a for a in argv[:len(plain)] if not any(n in a for n in names)] == \
        [a for a in plain if not any(n in a for n in names)]
    # ReRULE's RWKU replay (tau 0.6, 100 groups, step 15, capacity 1200 prompts, 32 groups = its rollout batch)
    # scaled to 100 prompts x 4 a step: tau 0.6, 12 groups, after the first episode (25 steps), capacity 100,
    # 4 groups = the rollout batch.
    assert extra == ["--replay.enable", "--replay.threshold", "0.6", "--replay.min_groups", "12",
                     "--replay.warmup_steps", "25", "--replay.capacity", "100", "--replay.batch_groups", "4"]
    summary = check(replay)  # with the replay compatibility checks, on the 100-row file
    assert (summary["prompts"], summary["steps_per_episode"]) == (100, 25)
    assert summary["replay"]["batch_groups"] == 4


def kind(argv) -> str:
    if argv[0] == "rerule":
        return " ".join(argv[:4]) if argv[1] == "data" else " ".join(argv[:3]) if argv[1] == "eval" else argv[1]
    return "train " + Path(flag(argv, "--ckpt.output_dir")).parent.name


def test_reproduce_purge_plan_runs_the_pipeline_per_target_through_the_real_parsers(tmp_path):
    root = inputs(tmp_path)
    runs = commands(plan("reproduce_purge_rwku.sh", root, TARGETS="1_Stephen_King"))
    assert [kind(a) for a in runs] == [
        "rerule data purge answers", "rerule data purge entities", "rerule data purge stage2",
        "train purge", "train purge_replay", "rerule eval rwku", "rerule eval rwku", "rerule eval rwku", "report"]
    for argv in runs:
        check(argv)  # raises SystemExit on a rejected argument
    answers, entities, stage2, purge, replay, *evals, report = runs
    folder, target = root / "runs" / "rwku_purge" / "1_Stephen_King", root / "RWKU" / "1_Stephen_King"
    # answers from the model to be unlearned, on the rejection-tuning questions (the authors' reject_phi.json)
    assert flag(answers, "--questions") == flag(stage2, "--questions") == str(target / "reject_phi.json")
    assert flag(answers, "--local_model") == "microsoft/Phi-3-mini-4k-instruct"
    assert flag(entities, "--answers") == flag(answers, "--out")
    assert flag(entities, "--offline") == str(root / "PURGE" / "1_Stephen_King" / "fts.json")
    assert flag(stage2, "--entities") == flag(entities, "--out") and flag(stage2, "--max_prompts") == "100"
    assert stage2[stage2.index("--eval") + 1:] == [str(target / f"{p}.json") for p in PROBES]  # checked, refused
    for argv in (purge, replay):
        env, args = grpo(argv)
        assert flag(args, "--data.prompt_dataset") == flag(stage2, "--out")
        assert flag(args, "--actor.model_name_or_path") == flag(answers, "--local_model")
        assert env["RERULE_REWARD_VARIANT"] == "purge_binary"
    assert [flag(a, "--model") for a in evals] == ["microsoft/Phi-3-mini-4k-instruct",
                                                   flag(grpo(purge)[1], "--ckpt.output_dir"),
                                                   flag(grpo(replay)[1], "--ckpt.output_dir")]
    assert [flag(a, "--name") for a in evals] == ["Base model", "PURGE (ours)", "PURGE + replay (ours)"]
    assert all(flag(a, "--data") == str(target) for a in evals)
    # raw prompts in training (the authors' default) -> no chat template when evaluating either
    assert all(flag(a, "--chat_template") == "none" for a in evals)
    # every input of the headline numbers (eval/headline.py): the forget probes for effectiveness and AA, the five
    # utility sets for utility kept and the fluency change; RWKU's neighbour probes as RWKU reports them
    assert all(a[a.index("--subsets") + 1:a.index("--chat_template")] == [
        "forget", "neighbor", "mmlu", "bbh", "truthfulqa", "triviaqa", "fluency"] for a in evals)
    assert "--compare_data" not in report  # no RULE_RELEASE: nothing to compare with
    data = folder / "data"  # the arms' unlearning data, as the authors count it: Stage 2 prompts and their answers
    assert "--unlearning_data" not in evals[0]
    for argv in evals[1:]:
        assert argv[argv.index("--unlearning_data") + 1:][:2] == [str(data / "stage2.jsonl"), str(data / "answers.jsonl")]
    assert report[2:5] == [flag(a, "--out") for a in evals]
    assert flag(report, "--base") == flag(evals[0], "--name") == "Base model"
    assert flag(report, "--tokenizer") == flag(answers, "--local_model")
    assert flag(report, "--out") == str(root / "runs" / "rwku_purge" / "report")
    outputs = [flag(a, "--out") for a in runs[:3]] + [flag(grpo(a)[1], "--ckpt.output_dir") for a in (purge, replay)]
    assert all(Path(o).is_relative_to(folder) for o in outputs)


def test_reproduce_purge_defaults_to_the_binary_scripts_target_and_can_use_endpoints(tmp_path):
    root = inputs(tmp_path)
    runs = commands(plan("reproduce_purge_rwku.sh", root))  # grpo.py@3cb73e7:10, not run_h200.sh (exponential decay)
    stage2 = [a for a in runs if a[:4] == ["rerule", "data", "purge", "stage2"]]
    assert [Path(flag(a, "--questions")).parent.name for a in stage2] == ["1_Stephen_King"]
    assert len(runs[-1]) == 2 + 3 * 1 + 6  # report: 3 evaluations x 1 target, --base, --tokenizer, --out
    several = commands(plan("reproduce_purge_rwku.sh", root, TARGETS=" ".join(FIVE_TARGETS)))
    stage2 = [a for a in several if a[:4] == ["rerule", "data", "purge", "stage2"]]
    assert [Path(flag(a, "--questions")).parent.name for a in stage2] == FIVE_TARGETS
    assert len(several[-1]) == 2 + 3 * 5 + 6
    endpoint = commands(plan("reproduce_purge_rwku.sh", inputs(tmp_path / "e", ["1_Stephen_King"]),
                             TARGETS="1_Stephen_King", ANSWERS_BASE_URL="http://h:8000/v1", ANSWERS_MODEL="phi3",
                             EXTRACTOR_MODEL="gpt-4o"))
    answers, entities = endpoint[:2]
    assert (flag(answers, "--base_url"), flag(answers, "--model")) == ("http://h:8000/v1", "phi3")
    assert "--local_model" not in answers and "--cache" in answers
    assert flag(entities, "--model") == "gpt-4o" and "--offline" not in entities and "--cache" in entities


def test_reproduce_purge_counts_rules_data_for_the_same_target(tmp_path):
    """RULE_RELEASE: RULE's Stage 1 and Stage 2 files of each target, converted, counted beside PURGE's data (the
    comparison behind "x fewer tokens"); a comma in the target folder stays in the input paths, never in ours
    (OpenRLHF splits dataset paths at commas)."""
    target = "10_Prince_Harry,_Duke_of_Sussex"
    root = inputs(tmp_path, [target])
    release = root / "RULE-Unlearn"
    stage1, stage2 = (release / "RS/data/RWKU/Target" / target / "reject_target.json",
                      release / "data/RWKU/Target" / target / "rl_rejection_with_fb_neighbor_target.json")
    touch(stage1, stage2)
    runs = commands(plan("reproduce_purge_rwku.sh", root, TARGETS=target, RULE_RELEASE=str(release)))
    converts = [a for a in runs if a[:4] == ["rerule", "data", "convert", "rule"]]
    data = root / "runs" / "rwku_purge" / "10_Prince_Harry_Duke_of_Sussex" / "data"
    assert [(a[4], flag(a, "--out")) for a in converts] == [(str(stage1), str(data / "rule_stage1.jsonl")),
                                                            (str(stage2), str(data / "rule_stage2.jsonl"))]
    report = runs[-1]
    i = report.index("--compare_data")
    assert report[i + 1:i + 5] == ["RULE data", target, str(data / "rule_stage1.jsonl"), str(data / "rule_stage2.jsonl")]
    from openrlhf_rerule.eval.report import build_parser
    parsed = build_parser().parse_args(report[2:])  # the real parser takes it (`rerule report ARGS`)
    assert parsed.compare_data == [["RULE data", target, str(data / "rule_stage1.jsonl"), str(data / "rule_stage2.jsonl")]]
    stage1.unlink()  # a missing release file stops the plan before anything runs
    result = plan("reproduce_purge_rwku.sh", root, TARGETS=target, RULE_RELEASE=str(release))
    assert result.returncode == 2 and result.stdout == "" and result.stderr == f"input not found: {stage1}\n"


@pytest.mark.parametrize("missing", ["PURGE/1_Stephen_King/fts.json", "RWKU/1_Stephen_King/truthful.json"])
def test_a_missing_input_stops_the_plan_before_anything_runs(tmp_path, missing):
    """The entity list, and each file of the evaluation subsets asked for (TruthfulQA: the default's)."""
    root = inputs(tmp_path, ["1_Stephen_King"])
    (root / missing).unlink()
    result = plan("reproduce_purge_rwku.sh", root, TARGETS="1_Stephen_King")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"input not found: {root}/{missing}\n"
    if missing.endswith("truthful.json"):  # not asked for, not needed
        assert plan("reproduce_purge_rwku.sh", root, TARGETS="1_Stephen_King",
                    EVAL_SUBSETS="forget neighbor").returncode == 0


# ---- the launcher's label check ------------------------------------------------------------------------------
PURGE_LABEL = json.dumps(["<purge>", "Stephen King", "Stephen King", "Carrie"])
RULE_LABEL = json.dumps(["<reject>", "refusal text", "Stephen King"])


def launch(tmp_path, monkeypatch, labels, variant, suffix=".jsonl"):
    """Our entry point on a prompt file with `labels`, OpenRLHF's train replaced by a recorder (Ray never starts)."""
    import openrlhf.cli.train_ppo_ray as upstream

    from openrlhf_rerule.openrlhf.train_ppo_ray import main

    path = tmp_path / f"prompts{suffix}"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "label": label}) + "\n" for i, label in enumerate(labels)))
    if variant is None:
        monkeypatch.delenv("RERULE_REWARD_VARIANT", raising=False)
    else:
        monkeypatch.setenv("RERULE_REWARD_VARIANT", variant)
    started = []
    monkeypatch.setattr(upstream, "train", started.append)
    main(["--actor.model_name_or_path", "m", "--reward.remote_url", "openrlhf_rerule/rewards/openrlhf_reward.py",
          "--data.prompt_dataset", str(path), "--data.input_key", "prompt", "--data.label_key", "label",
          "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", "4",
          "--rollout.batch_size", "2", "--train.batch_size", "8"])
    return path, started


@pytest.mark.parametrize("labels, variant, line, says", [
    ([PURGE_LABEL, RULE_LABEL], "purge_binary", 2, "<reject>"),
    ([RULE_LABEL, PURGE_LABEL], "two_stage_abs_target", 2, "purge_binary"),
    ([PURGE_LABEL, PURGE_LABEL], None, 1, "purge_binary"),  # unset: the reward file's default, a RULE variant
])
def test_a_label_the_reward_variant_cannot_score_is_refused_before_ray_starts(tmp_path, monkeypatch, capsys,
                                                                             labels, variant, line, says):
    with pytest.raises(SystemExit) as stop:
        path, started = launch(tmp_path, monkeypatch, labels, variant)
    assert stop.value.code == 2
    (message,) = capsys.readouterr().err.strip().splitlines()
    shown = variant or "two_stage_abs_target"
    assert message.startswith(f"{tmp_path / 'prompts.jsonl'}, line {line}, field 'label': ")
    assert says in message and message.endswith(f"(RERULE_REWARD_VARIANT={shown})")


def test_fitting_labels_start_the_run_and_a_json_array_is_checked_too(tmp_path, monkeypatch, capsys):
    _, started = launch(tmp_path, monkeypatch, [PURGE_LABEL, PURGE_LABEL], "purge_binary")
    assert len(started) == 1
    _, started = launch(tmp_path, monkeypatch, [RULE_LABEL, RULE_LABEL], "two_stage_abs")
    assert len(started) == 1
    array = tmp_path / "prompts.json"
    array.write_text(json.dumps([{"prompt": "a", "label": PURGE_LABEL}, {"prompt": "b", "label": RULE_LABEL}],
                                indent=1))
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "purge_binary")
    from openrlhf_rerule.openrlhf.reward_labels import check_reward_labels

    args = type("A", (), {})()
    args.reward = type("R", (), {"remote_url": "openrlhf_rerule/rewards/openrlhf_reward.py"})()
    args.data = type("D", (), {"label_key": "label", "prompt_dataset": str(array)})()
    with pytest.raises(SystemExit):
        check_reward_labels(args)
    # indent=1 puts "[", " {", two fields, " }," on lines 1-5: the second object opens on line 6
    assert capsys.readouterr().err.startswith(f"{array}, line 6, field 'label': a PURGE label starts with")


def test_an_unknown_reward_variant_is_refused(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as stop:
        launch(tmp_path, monkeypatch, [PURGE_LABEL], "purge")
    assert stop.value.code == 2 and "'purge' is not a reward variant" in capsys.readouterr().err


def test_reward_switch_exponential_decay_is_the_authors_graded_setting(tmp_path):
    """REWARD=exponential_decay: config.yaml:7-8 -> reward/exponential_decay.yaml (rewards/exponential_decay.py) and
    training/exponential_decay.yaml: num_epochs 15, the same 2 x 8 x 4 step and 100 prompts as binary.yaml; its own
    run folder and method names, so that a report can hold both rewards; an unknown reward is refused."""
    root = inputs(tmp_path)
    runs = commands(plan("reproduce_purge_rwku.sh", root, TARGETS="1_Stephen_King", REWARD="exponential_decay"))
    purge, replay = [a for a in runs if a[:3] == ["ray", "job", "submit"]]
    evals = [a for a in runs if a[:3] == ["rerule", "eval", "rwku"]]
    folder = root / "runs" / "rwku_purge_exponential_decay"
    for argv in (purge, replay):
        env, args = grpo(argv)
        assert env["RERULE_REWARD_VARIANT"] == "purge_exp_decay"
        assert (flag(args, "--train.num_episodes"), flag(args, "--rollout.batch_size"),
                flag(args, "--rollout.n_samples_per_prompt"), flag(args, "--train.batch_size")) == ("15", "4", "4", "16")
        assert Path(flag(args, "--ckpt.output_dir")).is_relative_to(folder / "1_Stephen_King")
    assert [flag(a, "--name") for a in evals] == ["Base model", "PURGE exponential decay (ours)",
                                                  "PURGE exponential decay + replay (ours)"]
    assert flag(runs[-1], "--out") == str(folder / "report")
    (run,) = commands(plan("train_purge_rwku.sh", tmp_path))  # the default stays the paper's binary reward
    assert grpo(run)[0]["RERULE_REWARD_VARIANT"] == "purge_binary" and flag(grpo(run)[1], "--train.num_episodes") == "40"
    wrong = plan("train_purge_rwku.sh", tmp_path, REWARD="page_rank")
    assert wrong.returncode == 2 and "REWARD=page_rank: binary, exponential_decay or pagerank" in wrong.stderr


def test_reward_switch_pagerank_is_the_authors_setting_with_its_weights_step(tmp_path):
    """REWARD=pagerank: reward/pagerank.yaml (rewards/pagerank.py) with training/pagerank.yaml: num_epochs 40,
    per_device_train_batch_size 4 x gradient_accumulation_steps 16 = 64 completions = 16 prompts x num_generations
    4 a step; 100 prompts = 6 whole steps of 16 (TRL's RepeatSampler drops the short chunk). The weights are
    computed once per target from the model to be unlearned, before the Stage 2 file that carries them."""
    root = inputs(tmp_path)
    runs = commands(plan("reproduce_purge_rwku.sh", root, TARGETS="1_Stephen_King 2_Confucius", REWARD="pagerank"))
    assert [kind(a) for a in runs[:7]] == [
        "rerule data purge answers", "rerule data purge entities", "rerule data purge weights",
        "rerule data purge stage2", "train purge", "train purge_replay", "rerule eval rwku"]
    for argv in runs:
        check(argv)  # the real parsers
    folder = root / "runs" / "rwku_purge_pagerank"
    for name, target in (("Stephen King", "1_Stephen_King"), ("Confucius", "2_Confucius")):
        weights, stage2 = (a for a in runs if kind(a) in ("rerule data purge weights", "rerule data purge stage2")
                           and Path(flag(a, "--out")).is_relative_to(folder / target))
        # their preprocess: the list file as released, the entity name (entity/<target>.yaml) as the start node,
        # the policy model itself (purge.py:64, 112)
        assert flag(weights, "--entities") == str(root / "PURGE" / target / "fts.json")
        assert (flag(weights, "--target"), flag(weights, "--model")) == (name, "microsoft/Phi-3-mini-4k-instruct")
        assert flag(stage2, "--weights") == flag(weights, "--out")
    purge, replay = [a for a in runs if a[:3] == ["ray", "job", "submit"]][:2]
    for argv in (purge, replay):
        env, args = grpo(argv)
        assert env["RERULE_REWARD_VARIANT"] == "purge_pagerank"
        assert (flag(args, "--train.num_episodes"), flag(args, "--rollout.batch_size"),
                flag(args, "--rollout.n_samples_per_prompt"), flag(args, "--train.batch_size"),
                flag(args, "--train.micro_batch_size"), flag(args, "--data.max_samples")) == \
            ("40", "16", "4", "64", "4", "96")
        assert Path(flag(args, "--ckpt.output_dir")).is_relative_to(folder / "1_Stephen_King")
    extra = grpo(replay)[1][len(grpo(purge)[1]):]  # replay scaled to a step of 16 prompts, after one episode
    assert extra[extra.index("--replay.min_groups"):] == ["--replay.min_groups", "48", "--replay.warmup_steps", "6",
                                                          "--replay.capacity", "100", "--replay.batch_groups", "16"]
    evals = [a for a in runs if a[:3] == ["rerule", "eval", "rwku"]]
    assert [flag(a, "--name") for a in evals[:3]] == ["Base model", "PURGE PageRank (ours)",
                                                      "PURGE PageRank + replay (ours)"]
    assert flag(runs[-1], "--out") == str(folder / "report")
    plain = commands(plan("reproduce_purge_rwku.sh", root, TARGETS="1_Stephen_King"))
    assert "rerule data purge weights" not in [kind(a) for a in plain]  # the other rewards need no weights
