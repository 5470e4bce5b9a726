"""Verifiable rewards: RULE's refusal reward, PURGE's forbidden-term reward, refusal detection (torch / rouge only)."""

from .purge import PURGE_TAG, PURGE_VARIANTS, PurgeReward, parse_purge_label, purge_label, purge_reward
from .refusal import is_refusal, normalize_text
from .rule import VARIANTS, LabelError, RuleReward, parse_label, rouge_l_recall, rule_reward
from .variants import REWARD_VARIANTS, check_label_fits, label_tag, make_scorer

__all__ = ["is_refusal", "normalize_text", "VARIANTS", "LabelError", "RuleReward", "parse_label",
           "rouge_l_recall", "rule_reward", "PURGE_TAG", "PURGE_VARIANTS", "PurgeReward", "parse_purge_label",
           "purge_label", "purge_reward", "REWARD_VARIANTS", "check_label_fits", "label_tag", "make_scorer"]
