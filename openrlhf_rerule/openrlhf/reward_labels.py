"""Before Ray starts: every prompt's label must be one the reward file's variant scores.

Under OpenRLHF our reward file (`openrlhf_rerule/rewards/openrlhf_reward.py`) takes its variant from
RERULE_REWARD_VARIANT and scores a label it cannot read as 0, counted in `bad_label`: a PURGE file trained under a
RULE variant (or the reverse) would run to the end on zero rewards. So the launcher reads the prompt files first,
as `rerule train stage2` does for --reward_variant (`check_labels_fit`, one function for both), and refuses the
first misfit label with one line naming file, line and field (exit 2).
"""

import os
import sys
from pathlib import Path

from .whole_batches import dataset_paths

REWARD_FILE = "openrlhf_reward.py"


def check_reward_labels(args) -> None:
    """Exit 2 on a label RERULE_REWARD_VARIANT cannot score; nothing to check unless the reward is our file with
    --data.label_key. Datasets that are not local .json / .jsonl files are left to OpenRLHF."""
    urls = args.reward.remote_url or []  # OpenRLHF's parser splits it at commas into a list
    if not any(Path(url).name == REWARD_FILE for url in ([urls] if isinstance(urls, str) else urls)):
        return
    if not args.data.label_key:
        return
    # (imported here: the launcher's modules import data / rewards only on this path, docs/development.md#layout)
    from openrlhf_rerule.data.schema import DataError, check_labels_fit, read_records
    from openrlhf_rerule.rewards.openrlhf_reward import DEFAULT_VARIANT
    from openrlhf_rerule.rewards.variants import REWARD_VARIANTS

    variant = os.environ.get("RERULE_REWARD_VARIANT", DEFAULT_VARIANT)
    try:
        if variant not in REWARD_VARIANTS:
            raise DataError("RERULE_REWARD_VARIANT", 0, "(file)", f"{variant!r} is not a reward variant "
                            f"({', '.join(REWARD_VARIANTS)})")
        for path in dataset_paths(args.data.prompt_dataset):
            if path.is_file() and path.suffix.lower() in (".json", ".jsonl"):
                records = read_records(path)
                check_labels_fit(path, ((r["__line__"], r.get(args.data.label_key)) for r in records), variant,
                                 field=args.data.label_key, setting=f"RERULE_REWARD_VARIANT={variant}")
    except DataError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
