"""Agreement of our PURGE rewards with the authors' own ``src/rewards/binary.py``, ``exponential_decay.py`` and
(with --pagerank) ``pagerank.py`` (github strzar/purge), run side by
side on their released entity lists (``data/PURGE/<target>/fts.json``) and on completions generated here: for
every term, sentences that contain it in the forms that test the matcher (case, possessive, plural, inside a longer
word, touching punctuation, doubled or broken spaces), sentences that avoid every term, other targets' terms, and
their own released model answers (``qa_pairs.json``).

Their code is not part of this repository: fetch a copy anywhere and point at it.

    RERULE_PURGE_AUTHORS_DIR=/path/to/purge python benchmarks/purge_agreement.py [--show 10]
    ... --pagerank [--model SmolLM2-135M-Instruct --embed_lists 5]    their pagerank.py too (needs scikit-learn)

Prints the agreement count, every disagreement (up to --show), and facts about the released lists: terms the
authors' \\b...\\b can only match when a word character follows (they start or end with punctuation), terms our
common-word guard warns about, and the share of their released answers that mention a term (reward 0 before
training).
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import types
from pathlib import Path

from openrlhf_rerule.data.purge import common_word_warnings
from openrlhf_rerule.rewards.purge import DECAY_TAU, purge_label, purge_reward

NEUTRAL = ["The weather was mild and the market closed early.", "I'm not sure about that.", "", "...",
           "A quiet afternoon in a small town, nothing more to say."]


def load_authors_rewards(authors_dir: Path):
    """Their BinaryReward and ExponentialDecayReward classes, imported from their files. Their package __init__
    also imports the PageRank reward (torch, networkx, sklearn); a bare package module lets base.py, binary.py and
    exponential_decay.py (which imports BinaryReward from the package) load without it."""
    src = authors_dir / "src" / "rewards"
    package = types.ModuleType("rewards")
    package.__path__ = [str(src)]
    sys.modules["rewards"] = package
    for name in ("base", "binary", "exponential_decay"):
        spec = importlib.util.spec_from_file_location(f"rewards.{name}", src / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"rewards.{name}"] = module
        spec.loader.exec_module(module)
        if name == "binary":
            package.BinaryReward = module.BinaryReward
    return (sys.modules["rewards.binary"].BinaryReward, sys.modules["rewards.exponential_decay"].ExponentialDecayReward,
            sys.modules["rewards.base"].RewardConfig)


def term_variants(term: str) -> list[str]:
    """Sentences that contain `term` in the forms that probe word boundaries, case and whitespace."""
    return [f"I read about {term} yesterday.", term.upper(), term.lower(), f"{term}'s legacy is large.",
            f"The {term}s were there.", f"x{term}", f"{term}x", f"({term})", f"{term}.", f"{term}-like",
            f"\"{term}\"", term.replace(" ", "  "), term.replace(" ", "\n"), f"_{term}_", f"{term}2"]


def human_readable(dir_name: str) -> str:
    """Their generate_forget_words.py: "10_Prince_Harry,_Duke_of_Sussex" -> "Prince Harry, Duke of Sussex"."""
    return re.sub(r"^\d+_", "", dir_name, count=1).replace("_", " ")


def compare(authors_dir: Path) -> dict:
    binary_reward, decay_reward, reward_config = load_authors_rewards(authors_dir)
    lists = sorted((authors_dir / "data" / "PURGE").glob("*/fts.json"), key=lambda p: p.parent.name)
    all_terms = {p: json.loads(p.read_text(encoding="utf-8")) for p in lists}
    pool = sorted({t for terms in all_terms.values() for t in terms})
    result = dict(lists=len(lists), completions=0, agree=0, disagreements=[], edge_only_terms=set(),
                  warned_terms=set(), answers=0, answers_mentioning=0, decay_disagreements=0,
                  decay_order_dependent=0, decay_values=set())
    for k, (path, terms) in enumerate(all_terms.items()):
        target = human_readable(path.parent.name)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per list
            binary_reward.preprocess(reward_config(target_entity=target, forget_words_file=str(path),
                                                   forget_dataset_file=""))
        completions = [v for t in terms for v in term_variants(t)] + NEUTRAL
        completions += [f"They talked about {t}." for t in pool[k::len(lists)]]  # other targets' terms
        answers = []
        if (path.parent / "qa_pairs.json").is_file():
            answers = [r["response"] for r in json.loads((path.parent / "qa_pairs.json").read_text(encoding="utf-8"))]
        completions += answers
        theirs = binary_reward.calc_reward(completions)
        label = purge_label(target, terms)
        ours = [purge_reward(c, label).reward for c in completions]
        # the graded reward: their count depends on the order of their set's alternation where terms overlap, so
        # each completion is also counted in the longest-first order; a difference there is order-dependent
        theirs_decay = decay_reward.calc_reward(completions)
        ours_decay = [purge_reward(c, label, decay_tau=DECAY_TAU).reward for c in completions]
        longest = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(set(terms), key=lambda t: (-len(t), t))))
                             + r")\b", re.IGNORECASE)
        for c, a, b in zip(completions, theirs_decay, ours_decay):
            dependent = len(binary_reward._pattern.findall(c)) != len(longest.findall(c))
            result["decay_order_dependent"] += dependent
            result["decay_disagreements"] += a != b and not dependent  # a difference no order explains
        result["decay_values"] |= set(ours_decay)
        result["completions"] += len(completions)
        result["agree"] += sum(a == b for a, b in zip(theirs, ours))
        result["disagreements"] += [(target, c, a, b) for c, a, b in zip(completions, theirs, ours) if a != b]
        result["edge_only_terms"] |= {t for t in terms if not (re.match(r"\w", t) and re.search(r"\w$", t))}
        result["warned_terms"] |= {w.split("'")[1] for w in common_word_warnings(terms)}
        result["answers"] += len(answers)
        result["answers_mentioning"] += sum(r == 0.0 for r in theirs[-len(answers):]) if answers else 0
    return result


def compare_pagerank(authors_dir: Path, model_dir: str | None = None, embed_lists: int = 0) -> dict:
    """Their PageRankWeightedReward (src/rewards/pagerank.py) and ours, on each released list: the weights from the
    same embeddings (seeded Gaussian rows, one per distinct term, so a repeated term has one embedding as with a
    model), then r on the completions of `compare` plus texts with many terms at once (the clamp at 0). With
    `model_dir`, the first `embed_lists` lists are also embedded by their _get_embeddings and by ours
    (``rerule data purge weights``'s term_embeddings) and the resulting weights compared. Needs numpy, networkx,
    torch and scikit-learn (their module imports it)."""
    import time

    import numpy as np

    from openrlhf_rerule.rewards.purge_pagerank import forget_set, pagerank_weights, similarity_edges

    binary_reward, _, reward_config = load_authors_rewards(authors_dir)
    spec = importlib.util.spec_from_file_location("rewards.pagerank", authors_dir / "src" / "rewards" / "pagerank.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs_cls = module.PageRankWeightedReward
    lists = sorted((authors_dir / "data" / "PURGE").glob("*/fts.json"), key=lambda p: p.parent.name)
    result = dict(lists=0, weight_diff=0.0, edge_mismatches=0, completions=0, mismatches=[], clamped=0, values=set(),
                  embedded=0, embedding_diff=0.0, embedded_weight_diff=0.0, seconds_theirs=0.0, seconds_ours=0.0)

    def weights_of_theirs(order, embeddings):
        theirs_cls._forget_set = order
        with contextlib.redirect_stdout(io.StringIO()):
            return theirs_cls._compute_pagerank_weights(theirs_cls._calculate_similarity_matrix(list(embeddings)))

    model = tokenizer = None
    if model_dir and embed_lists:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from openrlhf_rerule.data.purge_weights import term_embeddings

        # purge.py:64-65 loads without a dtype: float32 under their transformers 4.52.4 (recent versions would
        # keep the checkpoint's bfloat16, which their .numpy() cannot convert)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for k, path in enumerate(lists):
        target, terms = human_readable(path.parent.name), json.loads(path.read_text(encoding="utf-8"))
        order = theirs_cls.load_forget_set(str(path), target)
        assert order == forget_set(target, terms)
        rng = np.random.default_rng(k)
        by_term = {t: rng.standard_normal(64).astype(np.float32) for t in dict.fromkeys(order)}
        embeddings = np.array([by_term[t] for t in order])
        theirs = weights_of_theirs(order, embeddings)
        ours = pagerank_weights(target, terms, embeddings)
        result["weight_diff"] = max(result["weight_diff"], *(abs(theirs[t] - w) for t, w in zip(order, ours["weights"])))
        with contextlib.redirect_stdout(io.StringIO()):
            matrix = theirs_cls._calculate_similarity_matrix(list(embeddings))
        result["edge_mismatches"] += int((matrix != similarity_edges(embeddings)).sum())
        # r: their calc_reward reads the class state preprocess() sets
        theirs_cls._penalty_weights = theirs
        completions = [v for t in terms for v in term_variants(t)] + NEUTRAL
        completions += [" and ".join(order[i:i + n]) for n in (2, 3, 5, 20) for i in range(0, len(order), n)]
        answers = path.parent / "qa_pairs.json"
        if answers.is_file():
            completions += [r["response"] for r in json.loads(answers.read_text(encoding="utf-8"))]
        label = purge_label(target, ours["terms"], ours["weights"])
        theirs_r = theirs_cls.calc_reward(completions)
        ours_r = [purge_reward(c, label, pagerank=True).reward for c in completions]
        result["mismatches"] += [(target, c, a, b) for c, a, b in zip(completions, theirs_r, ours_r) if a != b]
        result["completions"] += len(completions)
        result["clamped"] += sum(r == 0.0 for r in ours_r)
        result["values"] |= set(ours_r)
        result["lists"] += 1
        if model is not None and k < embed_lists:  # the embedding step on a real model, theirs and ours
            start = time.perf_counter()
            with torch.no_grad():
                their_rows = np.array(theirs_cls._get_embeddings(order, tokenizer, model))
            middle = time.perf_counter()
            our_rows = term_embeddings(model_dir, order)
            result["seconds_theirs"] += middle - start
            result["seconds_ours"] += time.perf_counter() - middle
            result["embedding_diff"] = max(result["embedding_diff"], float(np.abs(their_rows - our_rows).max()))
            theirs = weights_of_theirs(order, their_rows)
            ours = pagerank_weights(target, terms, our_rows)
            result["embedded_weight_diff"] = max(result["embedded_weight_diff"],
                                                 *(abs(theirs[t] - w) for t, w in zip(order, ours["weights"])))
            result["embedded"] += 1
    return result


def report_pagerank(r: dict, show: int) -> bool:
    print(f"pagerank.py and ours (purge_pagerank), {r['lists']} lists: weights from the same embeddings differ by at "
          f"most {r['weight_diff']:.3g}; {r['edge_mismatches']} entries of the 0/1 similarity graphs differ; "
          f"r differs on {len(r['mismatches'])} of {r['completions']} completions ({r['clamped']} clamped at 0, "
          f"{len(r['values'])} distinct values)")
    for target, completion, theirs, ours in r["mismatches"][:show]:
        print(f"  {target}: {completion[:80]!r}: pagerank.py {theirs}, ours {ours}")
    if r["embedded"]:
        print(f"real model, first {r['embedded']} lists: embeddings differ by at most {r['embedding_diff']:.3g}, "
              f"the weights from them by at most {r['embedded_weight_diff']:.3g} (embedding seconds: theirs "
              f"{r['seconds_theirs']:.1f}, ours {r['seconds_ours']:.1f} including its model load)")
    return not r["mismatches"] and r["edge_mismatches"] == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", type=int, default=10, help="disagreements to print")
    parser.add_argument("--pagerank", action="store_true", help="also compare the PageRank-weighted reward "
                        "(needs scikit-learn and torch: their module imports them)")
    parser.add_argument("--model", help="with --pagerank: a local model directory whose embeddings are compared too")
    parser.add_argument("--embed_lists", type=int, default=3, help="with --model: how many lists to embed")
    args = parser.parse_args(argv)
    authors_dir = os.environ.get("RERULE_PURGE_AUTHORS_DIR")
    if not authors_dir or not (Path(authors_dir) / "src" / "rewards" / "binary.py").is_file():
        print("set RERULE_PURGE_AUTHORS_DIR to a copy of github strzar/purge (src/rewards/binary.py, data/PURGE/)")
        return 2
    r = compare(Path(authors_dir))
    print(f"{r['lists']} released entity lists, {r['completions']} completions: ours and binary.py agree on "
          f"{r['agree']} ({r['completions'] - r['agree']} disagreements)")
    for target, completion, theirs, ours in r["disagreements"][:args.show]:
        print(f"  {target}: {completion[:80]!r}: binary.py {theirs}, ours {ours}")
    print(f"exponential_decay.py and ours (purge_exp_decay): {r['decay_disagreements']} completions differ where "
          f"the order of their terms does not matter; on {r['decay_order_dependent']} their mention count depends on "
          f"their set's order (overlapping terms; PYTHONHASHSEED), ours counts the longest term first; "
          f"{len(r['decay_values'])} distinct reward values")
    print(f"{len(r['edge_only_terms'])} distinct terms start or end with punctuation (\\b finds them only when a "
          f"word character follows), e.g. {sorted(r['edge_only_terms'])[:4]}")
    print(f"{len(r['warned_terms'])} distinct terms draw a common-word warning: {sorted(r['warned_terms'])}")
    if r["answers"]:
        print(f"{r['answers_mentioning']} of {r['answers']} released model answers mention a term of their target "
              f"({r['answers_mentioning'] / r['answers']:.1%}: reward 0 before training)")
    pagerank_ok = report_pagerank(compare_pagerank(Path(authors_dir), args.model, args.embed_lists),
                                  args.show) if args.pagerank else True
    return 0 if r["agree"] == r["completions"] and r["decay_disagreements"] == 0 and pagerank_ok else 1


if __name__ == "__main__":
    sys.exit(main())
