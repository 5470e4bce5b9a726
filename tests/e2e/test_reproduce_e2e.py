"""examples/scripts/reproduce_rwku.sh end to end on the real stack, for one target, scaled down by environment
variables only: the synthetic world laid out as the RULE authors' release (their Stage 1 / Stage 2 JSON arrays and
RWKU's probe files, written by `write_release` below), then data -> Stage 1 -> RULE -> ReRULE -> eval -> report.

Asserted on what the runs log and write, not on exit codes: each Stage 2 arm logs exactly the whole rollout batches
(96 prompts at rollout batch 20: 4 steps, where OpenRLHF alone would train a fifth step of 16), the adapter says it
dropped 16 prompts, ReRULE replays, every arm's evaluation summary holds RWKU's forget / neighbour scores (Stage 1's
forget score below its neighbour score), and the report has our three rows (one target each) under the paper's.
"""

import json
import re
from pathlib import Path

import pytest

from e2e_stack import STAGE2_ENV, dump, parse_steps

pytestmark = pytest.mark.e2e

TARGET = "1_Synthetic_World"


def write_json(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))


def write_release(world_dir: Path, root: Path) -> Path:
    """The synthetic world in the layout of github xwtMarch/RULE-Unlearn: Stage 1 rows {instruction, input,
    output, subject} (RS/data/RWKU/Target/<t>/reject_target.json), Stage 2 rows {prompt, solution}
    (data/RWKU/Target/<t>/rl_rejection_with_fb_neighbor_target.json), and RWKU's probes {query, answer(, type)}
    in the same target folder: the world's held-out forget questions as forget levels 1-3, its retain people's
    as neighbour levels 1-2 (evaluation files only: none of them is a Stage 1 or Stage 2 prompt)."""
    def rows(name):
        return [json.loads(line) for line in (world_dir / name).read_text().splitlines() if line.strip()]

    write_json(root / f"RS/data/RWKU/Target/{TARGET}/reject_target.json",
               [{"instruction": r["prompt"], "input": "", "output": r["response"], "subject": r["subject"]}
                for r in rows("stage1.jsonl")])
    target = root / f"data/RWKU/Target/{TARGET}"
    write_json(target / "rl_rejection_with_fb_neighbor_target.json",
               [{"prompt": r["prompt"], "solution": json.loads(r["label"])} for r in rows("stage2.jsonl")])
    forget, neighbours = rows("eval/heldout.jsonl"), rows("eval/retain.jsonl")
    for level in (1, 2, 3):
        write_json(target / f"forget_level{level}.json",
                   [{"query": r["prompt"], "answer": r["answer"], **({"type": "role playing"} if level == 3 else {})}
                    for r in forget[level - 1::3]])
    for level in (1, 2):
        write_json(target / f"neighbor_level{level}.json",
                   [{"query": r["prompt"], "answer": r["answer"]} for r in neighbours[level - 1::2]])
    return root


def segments(log: str) -> dict[str, str]:
    """The reproduce log cut at each printed command (`+ ...`): Stage 2 segments keyed by their run folder."""
    parts, out = re.split(r"^(\+ .*)$", log, flags=re.M), {}
    for command, text in zip(parts[1::2], parts[2::2]):
        match = re.search(r"--ckpt\.output_dir (\S+)/model", command)
        if command.startswith("+ ray job submit") and match:
            out[Path(match.group(1)).name] = text
    return out


@pytest.mark.timeout(1800)  # the world is learned in this test when it runs alone
def test_reproduce_rwku_one_target_end_to_end(stack, world, tmp_path):
    release = write_release(world["dir"], tmp_path / "release")
    runs = tmp_path / "runs"
    run = stack.recipe("reproduce_rwku.sh", runs, {
        **STAGE2_ENV, "RULE_RELEASE": str(release), "TARGETS": TARGET, "BASE_MODEL": str(world["model"]),
        # Stage 1 as the e2e Stage 1 test runs it (a tiny model learning in 30 steps)
        "SFT_BATCH": "16", "SFT_MICRO_BATCH": "8", "SFT_EPOCHS": "10", "SFT_LR": "1e-3", "SFT_MAX_LEN": "64",
        "SFT_WARMUP_STEPS": "1", "SFT_LR_SCHEDULER": "cosine_with_min_lr", "SFT_BETAS": "0.9 0.95",
        # Stage 2: every prompt of the 96 (no step cap) at 20 a batch, one episode; replay from step 2
        # (STAGE2_STEPS 0: the file's distinct prompts once, so that the adapter's drop of a short batch runs)
        "MAX_STEPS": "0", "STAGE2_STEPS": "0", "NUM_EPISODES": "1", "ROLLOUT_BATCH": "20", "REPLAY_BATCH_GROUPS": "20",
        "REPLAY_MIN_GROUPS": "20", "REPLAY_WARMUP_STEPS": "1",
        # one environment for both stages: the Stage 2 machine flags go where train_sft does not see them
        "EXTRA_ARGS": "--ds.attn_implementation eager",
        "STAGE2_EXTRA_ARGS": STAGE2_ENV["EXTRA_ARGS"].replace("--ds.attn_implementation eager", ""),
    }, timeout=1500)  # the whole plan; DeepSpeed's first JIT build of its CPU ops alone takes minutes
    log, target_dir = run.log, runs / "rwku" / TARGET
    arms = segments(log)
    assert set(arms) == {"rule", "rerule"}, log[-3000:]
    for name, text in arms.items():
        steps = parse_steps(text)
        dump(name, steps)
        assert sorted(steps) == [1, 2, 3, 4], (name, sorted(steps))  # 80 of 96 prompts: 4 whole batches of 20
        assert ("whole rollout batches: training on 80 of 96 prompts, 4 steps of 20 an episode (--data.max_samples 80);"
                " the last 16 would have made a short batch\n") in text
    rerule = parse_steps(arms["rerule"])
    assert any(m.get("replay/active") == 1 for m in rerule.values()) and "replay/active" not in parse_steps(arms["rule"])[1]

    for arm in ("stage1", "rule", "rerule"):
        summary = json.loads((target_dir / "eval" / arm / "rwku_summary.json").read_text())
        print(f"\n{arm} summary: forget_all {summary['forget_all']:.3f} neighbor_all {summary['neighbor_all']:.3f}")
        assert summary["targets"] == [TARGET]
        assert all(0 <= summary[k] <= 1 for k in ("forget_level1", "forget_level2", "forget_level3", "forget_all",
                                                 "neighbor_level1", "neighbor_level2", "neighbor_all"))
    # Stage 1 refuses the held-out forget probes more than the neighbours' (deterministic: forget 0.036 vs neighbour
    # 0.209 in both runs that printed it). Not asserted for RULE / ReRULE: their vLLM samples differ run to run, and
    # the gap moved between 0.07 and 0.21 in three runs (docs/development.md#how-certain-the-slow-and-end-to-end-tests-are).
    stage1 = json.loads((target_dir / "eval" / "stage1" / "rwku_summary.json").read_text())
    assert stage1["forget_all"] < stage1["neighbor_all"], stage1
    report = (runs / "rwku" / "report" / "report.md").read_text()
    for row in ("*ReRULE paper:* RULE", "Stage 1 (ours)", "RULE (ours)", "ReRULE (ours)"):
        assert f"| {row} |" in report, report
