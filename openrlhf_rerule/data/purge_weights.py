"""`rerule data purge weights`: the penalty weights of PURGE's PageRank-weighted reward for one target, computed once
from the model to be unlearned, as the authors' ``PageRankWeightedReward.preprocess`` does before training (github
strzar/purge 24d1a3f, src/rewards/pagerank.py:123-176, called from src/purge.py:112 on the policy model of
purge.py:64 before the trainer exists, so on the CPU in float32, transformers' default there).

Each term of the forget set is embedded alone (no template; the tokenizer's own special tokens, truncation at 512
tokens), one at a time, so no padding: the mean over all its tokens of the last hidden layer (pagerank.py:40-50).
The graph and PageRank steps are openrlhf_rerule/rewards/purge_pagerank.py. The output is JSON:
``{"target", "terms", "weights", "scores", "edges", "quantile", "model", "device"}``; `rerule data purge stage2
--weights FILE` writes the terms and weights into every label, so the Stage 2 file defines the reward.
"""

import json
from pathlib import Path

from openrlhf_rerule.atomic import atomic_path
from openrlhf_rerule.cli_convention import UserError, number
from openrlhf_rerule.rewards.purge_pagerank import QUANTILE, forget_set, pagerank_weights

from .purge import read_terms


def term_embeddings(model_dir: str, terms: list[str], device: str = "cpu"):
    """One row per term: pagerank.py:40-59 ``_get_embeddings`` on the model loaded as purge.py:64-65 loads it."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # float32 as transformers 4.52.4 (their requirements.txt) loads without a dtype; recent versions default to
    # the checkpoint's dtype
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    rows = []
    for term in terms:
        inputs = tokenizer(term, return_tensors="pt", truncation=True, max_length=512).to(device)
        with torch.no_grad():
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]
        rows.append(hidden.mean(dim=1).squeeze().cpu().numpy())
    return np.array(rows)


def cmd_weights(args):
    from openrlhf_rerule.local.preflight import check_model_dir

    if not (args.target or "").strip():
        raise UserError("pass --target NAME: the node PageRank starts from, the entity name of the authors' "
                        "src/configs/entity/<target>.yaml (e.g. 'Stephen King')")
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a directory; give the weights file's path")
    order = forget_set(args.target, read_terms(args.entities))
    if len(order) < 2:
        raise UserError(f"{args.entities}: the forget set is only {args.target!r}: one node's min-max weight is 0, "
                        "so every completion would score 1; the list needs other terms")
    check_model_dir("--model", args.model)
    result = pagerank_weights(args.target, order[1:], term_embeddings(args.model, order, args.device), args.quantile)
    out = {"target": args.target, **result, "quantile": args.quantile, "model": args.model, "device": args.device,
           "entities": args.entities}
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    ranked = sorted(zip(result["weights"], result["terms"]), reverse=True)
    print(f"wrote {args.out}: {len(order)} terms for {args.target!r}, {result['edges']} edges; heaviest: "
          + ", ".join(f"{t} {w:.3f}" for w, t in ranked[:5]))
    print(f"next: rerule data purge stage2 --questions QUESTIONS --entities {args.entities} --weights {args.out} "
          "--out STAGE2.jsonl")


def add_weights_command(sub):
    p = sub.add_parser("weights", help="PageRank penalty weights of the terms (purge_pagerank), from the model's "
                       "own embeddings; once per target, before stage2")
    p.add_argument("--entities", required=True, help="the entity list (the authors' fts.json, or ours); the target "
                   "is put first and its exact copies dropped, as their load_forget_set does")
    p.add_argument("--target", required=True, help="the target's name, PageRank's start node")
    p.add_argument("--model", required=True, help="local Hugging Face directory of the model to be unlearned")
    p.add_argument("--out", required=True, help="weights JSON, for `rerule data purge stage2 --weights`")
    p.add_argument("--quantile", type=number(float, 0, 1), default=QUANTILE,
                   help="similarity quantile above which two terms are joined (reward/pagerank.yaml:6)")
    p.add_argument("--device", default="cpu", help="cpu (theirs: preprocessing runs before the trainer moves the "
                   "model) | cuda (faster; its float sums may differ in the last bits, which can move an edge at the threshold)")
    p.set_defaults(func=cmd_weights)
