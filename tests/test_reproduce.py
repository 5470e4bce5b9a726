"""examples/scripts/reproduce_{rwku,muse,tofu}.sh under DRY_RUN: the whole plan, data -> Stage 1 -> RULE -> ReRULE
(-> random storage) -> eval -> report, every command accepted by its real parser (`check_args.check`, what
DRY_RUN=1 runs on each line), the inputs checked before anything, and every output of a run under its own folder.
The plans are printed with DRY_RUN=print and validated in this process (OpenRLHF is imported once)."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from openrlhf_rerule.openrlhf.check_args import check

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"
RULE_TARGETS = ["1_Stephen_King", "2_Confucius", "3_Bruce_Lee", "4_Warren_Buffett", "5_Christina_Aguilera",
                "6_Cindy_Crawford", "7_Marie_Osmond", "8_Paris_Hilton", "9_Justin_Bieber",
                "10_Prince_Harry,_Duke_of_Sussex"]


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def release(root: Path, targets=RULE_TARGETS) -> Path:
    """Empty files where the RULE release and the benchmarks keep theirs (DRY_RUN checks that they exist)."""
    for t in targets:
        touch(root / f"RS/data/RWKU/Target/{t}/reject_target.json",
              *(root / f"data/RWKU/Target/{t}/{name}.json" for name in
                ("rl_rejection_with_fb_neighbor_target", "forget_level1", "neighbor_level1")))
    touch(root / "RS/data/MUSE/Target/books/reject_target_0.5.json", root / "data/MUSE/books/rl_rejection_with_neighbor.json",
          *(root / "data/MUSE/books" / f for f in ("verbmem/forget.json", "knowmem/forget_qa.json",
                                                   "knowmem/retain_qa.json", "knowmem/forget_qa_icl.json",
                                                   "knowmem/retain_qa_icl.json", "privleak/forget.json",
                                                   "privleak/holdout.json")))
    touch(*(root / "TOFU" / f"{name}.json" for name in ("forget01", "forget01_perturbed", "retain_perturbed",
                                                         "real_authors_perturbed", "world_facts_perturbed")),
          root / "retain_run" / "tofu_items.json")
    return root


def plan(script: str, root: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / script)], capture_output=True, text=True, env={
        **os.environ, "DRY_RUN": "print", "PYTHON": "python3", "RULE_RELEASE": str(root), "DATA_DIR": str(root),
        "RUNS_DIR": str(root / "runs"), "TOFU_DIR": str(root / "TOFU"), "RETAIN_RUN": str(root / "retain_run"),
        **env})


def commands(result) -> list[list[str]]:
    assert result.returncode == 0, result.stderr[-2000:]
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


def kind(argv) -> str:
    if argv[0] == "rerule":
        return " ".join(argv[:3]) if argv[1] in ("data", "eval") else "rerule report"
    if argv[0] == "deepspeed":
        return "stage1"
    run_dir = Path(argv[argv.index("--ckpt.output_dir") + 1]).parent
    return "stage2 " + run_dir.name + (" random" if "random" in argv else "")


def flag(argv, name):
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("script, first", [("reproduce_rwku.sh", ["rerule data convert"] * 2 + ["rerule data overlap"] * 2),
                                           ("reproduce_muse.sh", ["rerule data convert"] * 2 + ["rerule data overlap"]),
                                           ("reproduce_tofu.sh", ["rerule eval tofu",  # --check_only: the retain run
                                                                  "rerule data convert", "rerule data boundary",
                                                                  "rerule data stage1", "rerule data stage2"])])
def test_the_whole_plan_is_accepted_by_the_real_parsers(script, first, tmp_path):
    root = release(tmp_path)
    runs = commands(plan(script, root, TARGETS="1_Stephen_King", ABLATIONS="random"))
    arms = ["stage1", "stage2 rule", "stage2 rerule", "stage2 rerule_random_storage random"]
    evaluation = "rerule eval " + script[len("reproduce_"):-3]
    assert [kind(a) for a in runs] == first + arms + [evaluation] * 4 + ["rerule report"]
    for argv in runs:
        check(argv)  # raises SystemExit on a rejected argument
    evals = [a for a in runs if a[:2] == ["rerule", "eval"] and "--check_only" not in a]
    assert len({flag(a, "--out") for a in evals}) == 4 and runs[-1][2:6] == [flag(a, "--out") for a in evals]
    assert [flag(a, "--name") for a in evals] == ["Stage 1 (ours)", "RULE (ours)", "ReRULE (ours)",
                                                  "ReRULE random storage (ours)"]
    assert {flag(a, "--engine") for a in evals} == {"auto"}  # vLLM wherever it is installed (EVAL_ENGINE)
    # Stage 2 trains the model Stage 1 wrote, on the file step 1 wrote, and each arm's model is what is evaluated.
    stage1_out = flag(runs[len(first)], "--ckpt.output_dir")
    for argv, ev in zip(runs[len(first) + 1:len(first) + 4], evals[1:]):
        assert flag(argv, "--actor.model_name_or_path") == stage1_out
        assert flag(argv, "--data.prompt_dataset") == flag([a for a in runs[:len(first)] if "--out" in a][-1], "--out")
        assert flag(argv, "--ckpt.output_dir") == flag(ev, "--model")
    assert flag(evals[0], "--model") == stage1_out
    # Each arm records the files it trained on, so that the report reads their .meta.json overlap counts.
    stage1_data = flag(runs[len(first)], "--data.dataset")
    stage2_data = flag(runs[len(first) + 1], "--data.prompt_dataset")
    recorded = [a[a.index("--unlearning_data") + 1:a.index("--data")] if "--unlearning_data" in a else None for a in evals]
    assert recorded == [[stage1_data]] + [[stage1_data, stage2_data]] * 3


def test_rwku_runs_every_target_in_its_own_folder_and_reports_them_together(tmp_path):
    root = release(tmp_path)
    runs = commands(plan("reproduce_rwku.sh", root))  # default TARGETS: the ten of the RULE release's scripts
    converts = [a for a in runs if a[:3] == ["rerule", "data", "convert"]]
    assert [Path(a[4]).parent.name for a in converts[1::2]] == RULE_TARGETS
    outputs = [flag(a, flag_name) for a in runs for flag_name in ("--out", "--ckpt.output_dir", "--ckpt.path")
               if flag_name in a and a[1] != "report"]
    folders = {Path(o).relative_to(root / "runs" / "rwku").parts[0] for o in outputs}
    assert folders == {t.replace(",", "") for t in RULE_TARGETS}  # no comma: OpenRLHF splits dataset paths at commas
    assert len(outputs) == len(set(outputs))  # no two commands write the same place
    report = runs[-1]
    assert report[:2] == ["rerule", "report"] and len(report) == 2 + 3 * 10 + 2  # 3 arms x 10 targets, --out DIR


def test_a_missing_input_stops_the_plan_before_anything_runs(tmp_path):
    root = release(tmp_path, targets=["1_Stephen_King"])
    result = plan("reproduce_rwku.sh", root, TARGETS="1_Stephen_King 2_Confucius")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"input not found: {root}/RS/data/RWKU/Target/2_Confucius/reject_target.json\n"


def test_muse_uses_one_prompt_format_for_stage1_stage2_and_evaluation(tmp_path):
    runs = commands(plan("reproduce_muse.sh", release(tmp_path)))
    converts = [a for a in runs if a[:4] == ["rerule", "data", "convert", "rule"]]
    evals = [a for a in runs if a[:3] == ["rerule", "eval", "muse"]]
    assert [flag(a, "--prompt_format") for a in converts + evals] == ["rule_muse"] * (len(converts) + len(evals))
    assert all(flag(a, "--icl").endswith("knowmem/forget_qa_icl.json") for a in converts)
    assert not any("--normal_icl" in a for a in converts)  # the label-chosen block only when asked for
    leak = commands(plan("reproduce_muse.sh", release(tmp_path / "leak"), MUSE_PROMPT_FORMAT="rule_muse_label_leak"))
    stage2 = [a for a in leak if a[:4] == ["rerule", "data", "convert", "rule"]][1]
    assert flag(stage2, "--prompt_format") == "rule_muse_label_leak"
    assert flag(stage2, "--normal_icl").endswith("knowmem/retain_qa_icl.json")
    # Stage 1 trained on rule_muse: the label-leak Stage 2 is a format change, said explicitly (and recorded)
    stage2_training = [[a for a in r if "openrlhf_rerule.cli.train_ppo_ray" in a] for r in (runs, leak)]
    assert all(stage2_training) and not any("--allow_format_change" in a for a in stage2_training[0])
    assert all("--allow_format_change" in a for a in stage2_training[1])


def test_tofu_writes_the_papers_eleven_whole_batches_and_keeps_its_evaluation_sets_out(tmp_path):
    runs = commands(plan("reproduce_tofu.sh", release(tmp_path)))
    stage1, stage2 = (next(a for a in runs if a[:3] == ["rerule", "data", name]) for name in ("stage1", "stage2"))
    assert (flag(stage2, "--steps"), flag(stage2, "--rollout_batch")) == ("11", "32")  # Appendix D: 11 steps of 32
    for argv in (stage1, stage2):
        held_out = argv[argv.index("--eval") + 1:argv.index("--eval") + 4]
        assert [Path(p).name for p in held_out] == ["retain_perturbed.json", "real_authors_perturbed.json",
                                                    "world_facts_perturbed.json"]


def test_rwku_stage2_is_the_papers_37_whole_batches_of_32_unless_asked_otherwise(tmp_path):
    """Appendix D: 37 steps of 32. `convert rule` drops the release's repeated prompts, so the plan cycles the
    distinct ones to exactly 37 x 32; STAGE2_STEPS=0 keeps them once (the adapter then drops a short last batch)."""
    def stage2_convert(**env):
        runs = commands(plan("reproduce_rwku.sh", release(tmp_path / str(len(env))), TARGETS="1_Stephen_King", **env))
        return [a for a in runs if a[:4] == ["rerule", "data", "convert", "rule"]][1]
    default = stage2_convert()
    assert (flag(default, "--steps"), flag(default, "--rollout_batch")) == ("37", "32")
    assert "--steps" not in stage2_convert(STAGE2_STEPS="0")
