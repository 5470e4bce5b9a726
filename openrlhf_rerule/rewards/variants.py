"""Every reward variant by name, for the two backends (the OpenRLHF reward file and the embedded trainer) and the
checks that run before training: which label tags a variant scores, and one scorer per variant."""

from functools import partial

from .purge import DECAY_TAU, PURGE_TAG, PURGE_VARIANTS, parse_purge_label, purge_reward, purge_weights
from .rule import VARIANTS as RULE_VARIANTS
from .rule import LabelError, decode_label, parse_label, rule_reward

REWARD_VARIANTS = RULE_VARIANTS + PURGE_VARIANTS


def label_tag(label) -> str:
    """The tag of a well-formed RULE (<reject> / <normal>) or PURGE (<purge>) label; LabelError otherwise."""
    items = decode_label(label)
    if items and items[0] == PURGE_TAG:
        parse_purge_label(items)
        return PURGE_TAG
    return parse_label(items)[0]


def check_label_fits(variant: str, label) -> None:
    """LabelError when `variant` cannot score `label` (checked for every row before a model loads)."""
    if variant in PURGE_VARIANTS:
        (purge_weights if variant == "purge_pagerank" else parse_purge_label)(label)
        return
    tag, _, target = parse_label(label)  # refuses a <purge> label by name
    if variant == "two_stage_abs_target" and tag == "<reject>" and not (target or "").strip():
        raise LabelError("a <reject> label without a target name; --reward_variant two_stage_abs_target needs one "
                         "(or use two_stage_abs)")


def make_scorer(variant: str, refusal_mode: str = "rule", rouge_backend: str = "rouge", purge_boundary: str = "word",
                purge_case_sensitive: bool = False):
    """`score(completion, label)` of one variant: RuleReward for RULE's variants, PurgeReward for PURGE's."""
    if variant in PURGE_VARIANTS:
        return partial(purge_reward, boundary=purge_boundary, case_sensitive=purge_case_sensitive,
                       refusal_mode=refusal_mode, decay_tau=DECAY_TAU if variant == "purge_exp_decay" else None,
                       pagerank=variant == "purge_pagerank")
    if variant in RULE_VARIANTS:
        return partial(rule_reward, variant=variant, refusal_mode=refusal_mode, rouge_backend=rouge_backend)
    raise ValueError(f"unknown reward variant {variant!r} (expected one of {REWARD_VARIANTS})")
