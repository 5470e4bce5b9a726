"""`deepspeed --module openrlhf_rerule.cli.train_sft`: OpenRLHF 0.11.2's `openrlhf.cli.train_sft`, plus the
rerule_model.json record in every model folder it saves (Stage 1 of the recipes).

The implementation lives in `openrlhf_rerule.openrlhf.train_sft` (the one package allowed to import OpenRLHF);
this module only gives it the command-line path next to OpenRLHF's own `openrlhf.cli.train_sft`.
"""

from openrlhf_rerule.openrlhf.train_sft import main

if __name__ == "__main__":
    main()
