"""TOFU aggregates from constructed per-item values; expectations computed here with scipy / numpy,
following the reference's own formulation (locuslab/tofu aggregate_eval_stat.py), not ours."""

import json

import numpy as np
import pytest
from scipy.stats import hmean, ks_2samp

from openrlhf_rerule.eval import tofu


def reference_truth_ratio_stat(para_nll, pert_nll, forget):
    """TOFU's code: curr = exp(mean perturbed loss - paraphrased loss); forget mean(min(curr, 1/curr)),
    otherwise mean(max(0, 1 - 1/curr))."""
    curr = np.exp(np.asarray(pert_nll).mean(-1) - np.asarray(para_nll))
    return np.mean(np.minimum(curr, 1 / curr)) if forget else np.mean(np.maximum(0, 1 - 1 / curr))


def test_truth_ratio_aggregate_equals_reference_formulation():
    rng = np.random.default_rng(0)
    para = rng.uniform(0.5, 3.0, size=20)
    pert = rng.uniform(0.5, 3.0, size=(20, 5))
    ratios = [tofu.truth_ratio(b, p) for b, p in zip(para, pert)]
    for forget in (True, False):
        assert tofu.truth_ratio_score(ratios, forget) == pytest.approx(
            reference_truth_ratio_stat(para, pert, forget))


def test_model_utility_is_harmonic_mean_of_nine():
    values = {}
    rng = np.random.default_rng(1)
    nine = []
    for name in ("retain", "real_authors", "world_facts"):
        for metric in ("prob", "rougeL_recall", "truth_ratio"):
            values[f"{name}_{metric}"] = v = float(rng.uniform(0.1, 0.9))
            nine.append(v)
    values["forget_prob"] = 0.99  # forget metrics must not enter MU
    assert tofu.model_utility(values) == pytest.approx(hmean(nine))
    assert tofu.model_utility(values) == pytest.approx(9 / sum(1 / v for v in nine))
    values["world_facts_rougeL_recall"] = 0.0
    assert tofu.model_utility(values) == 0.0


def test_model_utility_from_per_item_values():
    """Per-item NLLs -> set statistics -> MU, the whole chain recomputed independently."""
    rng = np.random.default_rng(2)
    stats, nine = {}, []
    for name in ("retain", "real_authors", "world_facts"):
        n = 6
        true_nll, base_nll = rng.uniform(0.2, 2, n), rng.uniform(0.2, 2, n)
        pert_nll = rng.uniform(0.5, 3, (n, 3))
        rouge = rng.uniform(0, 1, n)
        if name == "retain":
            prob = np.mean(np.exp(-true_nll))
        else:
            p_true = np.exp(-true_nll)
            prob = np.mean(p_true / (p_true + np.exp(-pert_nll).sum(-1)))
        tr = reference_truth_ratio_stat(base_nll, pert_nll, forget=False)
        nine += [prob, rouge.mean(), tr]
        stats[f"{name}_prob"] = float(np.mean(
            [tofu.probability(t) if name == "retain" else tofu.normalised_probability(t, p)
             for t, p in zip(true_nll, pert_nll)]))
        stats[f"{name}_rougeL_recall"] = float(rouge.mean())
        stats[f"{name}_truth_ratio"] = tofu.truth_ratio_score(
            [tofu.truth_ratio(b, p) for b, p in zip(base_nll, pert_nll)], forget=False)
    assert tofu.model_utility(stats) == pytest.approx(hmean(nine))


def test_forget_quality_is_ks_pvalue_and_invariant_to_tofu_orientation():
    rng = np.random.default_rng(3)
    unlearned = rng.lognormal(0.3, 0.4, size=40)
    retain = rng.lognormal(0.0, 0.4, size=40)
    fq = tofu.forget_quality(unlearned, retain)
    assert fq["forget_quality"] == pytest.approx(ks_2samp(unlearned, retain).pvalue)
    assert fq["ks_statistic"] == pytest.approx(ks_2samp(unlearned, retain).statistic)
    # TOFU's code tests exp(l_pert - l_para) = 1/R: same p-value
    assert fq["forget_quality"] == pytest.approx(ks_2samp(1 / unlearned, 1 / retain).pvalue)
    same = tofu.forget_quality(retain, retain)
    assert same["forget_quality"] == pytest.approx(1.0)


def test_retain_truth_ratios_from_tofu_eval_log(tmp_path):
    from openrlhf_rerule.eval.io import EvalDataError

    log = {"avg_paraphrased_loss": {"0": 1.0, "1": 2.0},
           "average_perturb_loss": {"0": [1.5, 2.5], "1": [1.0, 1.0]}}
    path = tmp_path / "eval_log_forget.json"
    path.write_text(json.dumps(log))
    # R = exp(l_para - mean l_pert): exp(1 - 2), exp(2 - 1)
    run = tofu.load_retain_run(path, ["q0", "q1"], "forget01")
    assert run["ratios"] == pytest.approx([np.exp(-1.0), np.exp(1.0)]) and run["items"] == 2
    path.write_text(json.dumps({"avg_paraphrased_loss": {}}))
    with pytest.raises(EvalDataError, match="missing field 'average_perturb_loss'"):
        tofu.load_retain_run(path, ["q0", "q1"], "forget01")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tofu_items.json").write_text(json.dumps(
        [{"set": "forget", "truth_ratio": 0.5}, {"set": "retain", "truth_ratio": 9.0}]))
    assert tofu.load_retain_run(tmp_path / "run", ["q0"], "forget01")["ratios"] == [0.5]