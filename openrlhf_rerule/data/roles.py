"""What may train and what only evaluates, checked where files meet (docs/data.md, "Roles and sidecars").

Every file a data command writes has a sidecar `F.meta.json` (openrlhf_rerule/provenance.py) whose "role" is
"training" or "evaluation". A command that trains on an input (stage1 --forget, stage2 --forget / --boundary /
--retain, boundary --forget / --neighbours, purge --questions) refuses an input whose sidecar says "evaluation",
unless --allow_eval_as_training, which prints a WARNING and is recorded in the output's sidecar ("allowed").
A file without a sidecar (the user's own, or a release) is accepted; one whose name is a released evaluation
file's is named as such. Stage 2 also refuses one prompt in two roles (the same text as forget and boundary ...).
"""

import re
import sys
from itertools import combinations
from pathlib import Path

from openrlhf_rerule.cli_convention import UserError
from openrlhf_rerule.provenance import EVALUATION, file_sha256, read_sidecar, source_entry

ALLOW_FLAG = "--allow_eval_as_training"
# Released evaluation files by name: RWKU's probes, MIA and utility sets (RWKU process/data_process.py writes them
# from the dataset's test splits), MUSE's KnowMem / VerbMem / PrivLeak sets, TOFU's retain / real-author / world-fact
# sets, the RULE authors' validation files.
_RELEASED_EVALUATION = [
    (re.compile(r"^(forget_level\d|neighbor_level\d)\b", re.I), "RWKU's forget / neighbour probes"),
    (re.compile(r"^(forget_mia|retain_mia|retain_mmlu|retain_bbh|truthful|triviaqa|fluency)\b", re.I),
     "RWKU's MIA / utility sets"),
    (re.compile(r"^(forget|retain)_qa(_icl)?\b", re.I), "MUSE's KnowMem QA"),
    (re.compile(r"^(retain_perturbed|real_authors_perturbed|world_facts_perturbed)\b", re.I),
     "TOFU's retain / real-author / world-fact evaluation sets"),
    (re.compile(r"^rl_rejection_eval", re.I), "the RULE authors' validation files (rl_rejection_eval*)"),
]
_MUSE_EVAL_FOLDERS = {"knowmem": "MUSE's KnowMem QA", "verbmem": "MUSE's VerbMem set",
                      "privleak": "MUSE's PrivLeak sets"}


def released_evaluation(path) -> str | None:
    """Which released evaluation set `path` is named like, or None."""
    path = Path(path)
    if path.parent.name.lower() in _MUSE_EVAL_FOLDERS:
        return _MUSE_EVAL_FOLDERS[path.parent.name.lower()]
    return next((what for pattern, what in _RELEASED_EVALUATION if pattern.match(path.name)), None)


def is_evaluation(path) -> bool:
    """By its sidecar, else by a released evaluation file's name: what a converted or split file inherits."""
    meta = read_sidecar(path)
    return (meta or {}).get("role") == EVALUATION or (meta is None and released_evaluation(path) is not None)


def add_allow_argument(p) -> None:
    p.add_argument(ALLOW_FLAG, action="store_true",
                   help="train on an input whose sidecar says role \"evaluation\" (a WARNING; recorded in "
                        "OUT.meta.json as \"allowed\"); without it such an input is refused")


def check_training_inputs(command: str, inputs: list[tuple[str, str]], allow: bool | None) -> tuple[list, list]:
    """(sources, allowed) for the output's sidecar: each (flag, path) input's source entry, and what the flag let
    through. Refuses, in one line naming every such input, those whose sidecar says "evaluation" (allow None: the
    command has no flag to override it). Inputs without a sidecar that are named like a released evaluation file
    are named in a WARNING."""
    sources, flagged = [], []
    for flag, path in inputs:
        entry = {"as": flag, **source_entry(path)}
        sources.append(entry)
        if entry["role"] == EVALUATION:
            flagged.append(f"{flag} {path}")
        elif read_sidecar(path) is None and released_evaluation(path):
            print(f"WARNING: {command} {flag} {path}: no sidecar, and its name is that of {released_evaluation(path)}, "
                  "which are evaluation data: make sure it is not an evaluation set", file=sys.stderr)
    if flagged and not allow:
        what, it = ("an evaluation file", "it") if len(flagged) == 1 else ("evaluation files", "them")
        override = f", or {ALLOW_FLAG} to train on {it} anyway (recorded in the output's sidecar)" \
            if allow is not None else " (this command has no override)"
        raise UserError(f"{command} {' and '.join(flagged)}: {what} (field 'role' of the .meta.json sidecar: "
                        f"\"evaluation\"): training on the test; pass {it} to --eval instead{override}")
    for item in flagged:
        print(f"WARNING: {command} {item}: an evaluation file, trained on as you asked ({ALLOW_FLAG}); the output's "
              "sidecar records it", file=sys.stderr)
    return sources, [f"eval_as_training: {item}" for item in flagged]


def refuse_shared_prompts(command: str, roles: list[tuple[str, str, list[dict]]]) -> None:
    """One prompt in two roles of one training file (forget and boundary: both <reject> and <normal>), compared after
    overlap.py's normalisation: refused in one line naming both files, the first clash and how many prompts clash.
    `roles`: (flag, path, rows) per input."""
    from .overlap import normalise, question_of

    for (flag_a, path_a, rows_a), (flag_b, path_b, rows_b) in combinations(roles, 2):
        both = f"{flag_a} {path_a} and {flag_b} {path_b}"
        if Path(path_a).resolve() == Path(path_b).resolve() or file_sha256(path_a) == file_sha256(path_b):
            same = "the same file" if Path(path_a).resolve() == Path(path_b).resolve() else "files with the same bytes"
            raise UserError(f"{command} {both}: {same}: every prompt would be trained in both roles; give each role "
                            "its own prompts")
        first = {}
        for line, row in enumerate(rows_a, 1):
            first.setdefault(normalise(question_of(row["prompt"])), line)
        clashes = {}
        for line, row in enumerate(rows_b, 1):
            key = normalise(question_of(row["prompt"]))
            if key in first:
                clashes.setdefault(key, (line, first[key]))
        if clashes:
            (line_b, line_a), n = min(clashes.values()), len(clashes)
            raise UserError(f"{command} {flag_b} {path_b} shares {n} prompt{'s' if n > 1 else ''} with {flag_a} "
                            f"{path_a} (field 'prompt', equal after casefolding and removing punctuation); first: "
                            f"{path_b} line {line_b} = {path_a} line {line_a}: a prompt has one role in a training "
                            "file; remove it from one of them")
