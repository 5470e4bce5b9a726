"""Published numbers that `rerule report` prints above ours, as runs in our summary units (so they go through the
same formatting as ours and land in the same columns). Source: the ReRULE paper (arXiv 2606.15333; text in
/work/shared/papers/rerule-paper.txt): Table 1 (RWKU, Llama-3-8B-Instruct), Table 2 (MUSE-Books, Llama-2-7B),
Table 5 (TOFU forget01, Llama-2-7B); the rows of the base model and of RULE / ReRULE. Naturalness there comes
from the authors' judge. "All" values are the printed ones, not recomputed."""


def _rwku(fb, qa, aa, all_, read, help_, truth, nat_all, nfb, nqa, nall):
    # RWKU ROUGE-L columns are printed x100; our summaries hold fractions.
    return {"rwku": {"forget_level1": fb / 100, "forget_level2": qa / 100, "forget_level3": aa / 100,
                     "forget_all": all_ / 100, "neighbor_level1": nfb / 100, "neighbor_level2": nqa / 100,
                     "neighbor_all": nall / 100},
            "naturalness_rwku": {"readability": read, "helpfulness": help_, "truthfulness": truth, "all": nat_all,
                                 "scorer": "paper's judge"}}


def _muse(verb, know, utility, read=None, help_=None, truth=None):
    nat = {} if read is None else {"naturalness_muse": {"readability": read, "helpfulness": help_,
                                                        "truthfulness": truth, "scorer": "paper's judge"}}
    return {"muse": {"verbmem_f": verb, "knowmem_f": know, "utility": utility}, **nat}


def _tofu(fq, mu, frl):
    return {"tofu": {"forget_quality": fq, "model_utility": mu, "forget_rougeL_recall": frl, "split": "forget01"}}


PAPER = "ReRULE paper"
PUBLISHED = [
    {"name": f"*{PAPER}:* Original",
     **_rwku(85.6, 70.3, 74.7, 76.9, 94.0, 26.4, 91.5, 70.6, 93.1, 82.0, 87.6), **_muse(58.4, 63.9, 55.2),
     **_tofu(4.4883e-06, 0.6239, 0.9851)},
    {"name": f"*{PAPER}:* Retained LLM", **_tofu(1.0000, 0.6267, 0.4080)},
    {"name": f"*{PAPER}:* RULE",
     **_rwku(28.0, 16.8, 38.3, 27.7, 99.6, 71.9, 95.7, 89.1, 76.2, 71.3, 73.7),
     **_muse(0.0, 1.4, 46.3, 99.2, 38.2, 90.8), **_tofu(0.1650, 0.6151, 0.1322)},
    {"name": f"*{PAPER}:* ReRULE",
     **_rwku(26.5, 13.1, 33.2, 24.2, 95.2, 56.3, 94.7, 82.1, 79.5, 68.8, 74.1),
     **_muse(0.0, 1.4, 56.2, 98.8, 28.7, 93.0), **_tofu(0.1650, 0.6076, 0.1322)},
]
for _run in PUBLISHED:
    _run["published"] = True

# Items per part of each benchmark as released, keyed as a summary's provenance `items` counts them: a run on fewer
# is a subset (`rerule report` marks it ‡). TOFU: the locuslab/TOFU files (forget01/05/10_perturbed 40 / 200 / 400
# rows, retain_perturbed 400, real_authors_perturbed 100, world_facts_perturbed 117). MUSE-Books: 100 per file,
# counted in the RULE authors' copy (data/MUSE/books/); the few-shot files are prompts, not items. RWKU (sizes vary by
# target) and MUSE-News are not counted here: a report compares those with its largest run instead.
RELEASED_ITEMS = {
    "tofu": {split: {"forget": n, "retain": 400, "real_authors": 100, "world_facts": 117}
             for split, n in (("forget01", 40), ("forget05", 200), ("forget10", 400))},
    "muse": {"books": {"verbmem": 100, "forget_qa": 100, "retain_qa": 100, "forget_texts": 100, "holdout_texts": 100}},
}
# The settings of the published rows (summary setting names): the split / corpus the paper states, and the generation
# lengths of the benchmarks' reference code, which the paper does not restate; on full benchmarks (no subset). The
# paper states no prompt format or chat template, so those place no row.
PAPER_SETTINGS = {"tofu": {"split": "forget01", "max_new_tokens": 200},
                  "muse": {"corpus": "books", "verbmem_max_new_tokens": 128, "knowmem_max_new_tokens": 32},
                  "rwku": {"max_new_tokens": 30}}
