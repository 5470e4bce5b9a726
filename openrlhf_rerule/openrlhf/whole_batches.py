"""Whole rollout batches: no Stage 2 step trains on a short batch of prompts.

OpenRLHF 0.11.2 trains on every prompt it loads (`ppo_trainer.prepare_datasets`: the first `--data.max_samples`
rows, then a shuffled loader of one prompt per item, so its `drop_last` drops nothing) and ends each episode with a
short rollout batch when the count is not a multiple of `--rollout.batch_size` (`samples_generator.
_collect_prompt_batch` keeps a partial batch). That step is smaller than the others, and since DeepSpeed's micro-step
counter runs on across `fit` calls, every later optimizer step straddles two rollout batches. RULE's trainer (EasyR1,
`verl/trainer/ray_trainer.py`) drops the last partial batch instead (`drop_last=True`).

So before Ray starts, we count the prompts OpenRLHF will use exactly as it does and lower `--data.max_samples` to the
last whole batch, saying so in one line; with fewer prompts than one rollout batch the run is refused (exit 2).
Differences from EasyR1 kept visible in the docs: `--data.max_samples` keeps the file's *first* rows (EasyR1 drops a
random remainder of each shuffled epoch). With `--algo.dynamic_filtering_enable` the number of prompts a step
draws depends on the rewards, so the last batch of an episode can still be short.
"""

import json
import sys
from pathlib import Path


def count_rows(path: Path) -> int | None:
    """Rows `datasets.load_dataset("json")` reads from a local .jsonl / .json file; None for anything else."""
    if path.suffix.lower() == ".jsonl":
        with path.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    if path.suffix.lower() == ".json":
        text = path.read_text(encoding="utf-8").lstrip()
        if text.startswith("["):
            try:
                return len(json.loads(text))
            except ValueError:
                return None  # OpenRLHF's loader reports the broken file itself
        return sum(1 for line in text.splitlines() if line.strip())  # JSON lines under a .json name
    return None


def dataset_paths(datasets) -> list[Path]:
    """The paths of OpenRLHF's comma-separated dataset list (`path` or `path@split`), local or not."""
    return [Path(name.split("@")[0].strip()) for name in str(datasets).split(",")]


def prompts_per_episode(args) -> tuple[int | None, int | None, str]:
    """(prompts OpenRLHF will use per episode, rows available, why None): `prepare_datasets` takes
    min(max_samples, rows) of each comma-separated dataset, concatenates them, then min(max_samples, total).
    None when a dataset is not a local JSON file or `--data.prompt_probs` interleaves them (not counted)."""
    if getattr(args.data, "prompt_probs", None):
        return None, None, "--data.prompt_probs interleaves the datasets"
    limit, counts = int(args.data.max_samples), []
    for path in dataset_paths(args.data.prompt_dataset):
        if not path.is_file():
            return None, None, f"{path}: no such local file"
        count = count_rows(path)
        if count is None:
            return None, None, f"{path}: not a .json / .jsonl file"
        counts.append(count)
    return min(limit, sum(min(limit, c) for c in counts)), sum(counts), ""


def whole_batches(args) -> dict:
    """Lower `args.data.max_samples` to the last whole rollout batch (and say so), or stop (exit 2) when not one
    whole batch remains. Returns {"prompts", "steps_per_episode"} (None values when the data were not counted)."""
    batch = int(args.rollout.batch_size)
    used, rows, why = prompts_per_episode(args)
    if used is None:
        print(f"whole rollout batches: not checked ({why})", file=sys.stderr)
        return {"prompts": None, "steps_per_episode": None}
    asked = int(args.data.max_samples)  # OpenRLHF's default, 1e8, asks for nothing
    short_file = f"; --data.max_samples asked for {asked}, the data have {rows}" if rows < asked < 10**8 else ""
    if used < batch:
        print(f"--data.prompt_dataset {args.data.prompt_dataset}: {used} prompts are fewer than one rollout batch "
              f"(--rollout.batch_size {batch}){short_file}", file=sys.stderr)
        raise SystemExit(2)
    whole = used - used % batch
    if whole != used:
        args.data.max_samples = whole
        print(f"whole rollout batches: training on {whole} of {used} prompts, {whole // batch} steps of {batch} an "
              f"episode (--data.max_samples {whole}); the last {used - whole} would have made a short batch"
              f"{short_file}", file=sys.stderr)
    return {"prompts": whole, "steps_per_episode": whole // batch}
