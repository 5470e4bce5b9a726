"""Before Ray starts a `--ckpt.load_enable` run: the checkpoint DeepSpeed will resume from is there.

DeepSpeed resumes from the tag its `<ckpt.path>/_actor/latest` file names, and writes that file last, after every
rank's files (runtime/engine.py, save_checkpoint): a kill during a save leaves `latest` on the previous checkpoint.
What it cannot survive is that checkpoint being gone. OpenRLHF's own rotation deleted it before writing the next one
(which our policy actor no longer does: actor.py, save_checkpoint), and `latest` itself is written in place, so a
kill at that instant leaves it empty. DeepSpeed would then fail deep inside the load, on every rank. Such a run is
refused here in one line naming the file (exit 2). No `latest` at all (killed during the first save) is a fresh
start, as DeepSpeed makes it.
"""

import os
import sys


def check_resumable(args) -> None:
    actor_dir = os.path.join(args.ckpt.path, "_actor")
    latest = os.path.join(actor_dir, "latest")
    if not args.ckpt.load_enable or not os.path.isfile(latest):
        return
    with open(latest) as f:
        tag = f.read().strip()
    folders = sorted(d for d in os.listdir(actor_dir) if os.path.isdir(os.path.join(actor_dir, d)))
    problem = None
    if not tag:
        problem = "is empty (the run was killed while DeepSpeed wrote it)"
    elif tag not in folders:
        problem = f"names {tag}, which is not there"
    elif not any(name.endswith("model_states.pt") for name in os.listdir(os.path.join(actor_dir, tag))):
        problem = f"names {tag}, which holds no DeepSpeed model states (a partly deleted checkpoint)"
    if problem:
        print(f"openrlhf_rerule.cli.train_ppo_ray: error: --ckpt.load_enable: {latest} {problem}; checkpoint "
              f"folders there: {', '.join(folders) or 'none'}. Write the tag of a complete one into it, or start "
              "again without --ckpt.load_enable", file=sys.stderr)
        raise SystemExit(2)
