"""`deepspeed --module openrlhf_rerule.cli.train_sft ARGS`: OpenRLHF 0.11.2's own train_sft (its parser, its
`train`, its SFTTrainer), plus rerule_model.json in every model folder it saves: `--ckpt.output_dir` at the end,
and each checkpoint (`--ckpt.path`/global_step<N>, and its `_hf` copy with `--ckpt.save_hf`).

Only rank 0 writes, after OpenRLHF's own save returned on it: strategy.save_model and DeepSpeed's save_checkpoint
end in a barrier of all ranks, so the folder is complete, and no collective is added that a rank could skip.
The record is the last file written into the folder (OpenRLHF writes its folders in place, not by renaming): a
folder without it was not finished by this entry point.
"""

import os
import sys
from unittest import mock

import torch.distributed as dist

from openrlhf_rerule.provenance import write_model_record

from .args import run_openrlhf_main
from .compat import import_openrlhf
from .records import stage1_record


def train(args) -> None:
    import openrlhf.cli.train_sft as upstream

    record, done = stage1_record(args), {"steps": 0}  # built before any weights load, from the files given

    class RecordingSFTTrainer(upstream.SFTTrainer):
        def save_logs_and_checkpoints(self, args, global_step, step_bar, logs_dict=None, client_states=None):
            super().save_logs_and_checkpoints(args, global_step, step_bar, logs_dict, client_states)
            done["steps"] = global_step
            if global_step % args.ckpt.save_steps == 0 and self.strategy.is_rank_0():  # OpenRLHF's own condition
                tag = os.path.join(args.ckpt.path, f"global_step{global_step}")
                for folder in (tag, f"{tag}_hf"):
                    if os.path.isdir(folder):
                        write_model_record(folder, {**record, "steps": global_step})

    # upstream.train names the class at module level: exchanging it for this call keeps the rest OpenRLHF's.
    with mock.patch.object(upstream, "SFTTrainer", RecordingSFTTrainer):
        upstream.train(args)
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_model_record(args.ckpt.output_dir, {**record, "steps": done["steps"]})


def main(argv=None) -> None:
    import_openrlhf()
    run_openrlhf_main("openrlhf.cli.train_sft", list(sys.argv[1:] if argv is None else argv), train=train)


if __name__ == "__main__":
    main()
