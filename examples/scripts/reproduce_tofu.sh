#!/usr/bin/env bash
# Reproduce the ReRULE paper's TOFU forget01 table (Table 5) from TOFU's own files (the RULE release has no TOFU
# data; ReRULE built its TOFU Stage 1 / Stage 2 sets itself, Appendix A, without releasing them):
#
#   TOFU forget01 QA -> forget rows; boundary rows by entity swap; Stage 1 rows; Stage 2 prompts
#   Stage 1 (refusal SFT) -> RULE -> ReRULE (-> ReRULE with random storage when ABLATIONS=random)
#   `rerule eval tofu` of each model (Forget Quality against the retain model's truth ratios)
#   `rerule report`: our rows under the paper's
#
#   TOFU_DIR=path/to/TOFU RETAIN_RUN=runs/tofu/eval/retain bash examples/scripts/reproduce_tofu.sh   (DRY_RUN=1)
#
# Inputs: TOFU_DIR, the locuslab/TOFU files (forget01.json, forget01_perturbed.json, retain_perturbed.json,
# real_authors_perturbed.json, world_facts_perturbed.json; a copy is in github strzar/purge, data/TOFU); for Forget
# Quality either RETAIN_RUN (a `rerule eval tofu` output of the retain model, or TOFU's eval_log_forget.json of it)
# or RETAIN_MODEL (a local retain-model directory, evaluated here once; its record's prompt format is checked
# against the evaluation's before any step); BOUNDARY_ARGS, how `rerule data boundary`
# makes the boundary questions (default: an OpenAI-compatible endpoint, see docs/data.md; "--offline --neighbours
# FILE" swaps names offline), or
# BOUNDARY_RETAIN=TOFU/retain99.json: boundary QA taken from TOFU's retain authors, less retain_perturbed's questions
# (an evaluation set), with no model (under DRY_RUN=1 the endpoint route is validated only, and so is Stage 2's data).
# TOFU's protocol trains on its forget set and evaluates on it. Writes under RUNS_DIR/tofu/.
source "$(dirname "$0")/_common.sh"
TOFU_DIR="${TOFU_DIR:-$DATA_DIR/TOFU}"
ABLATIONS="${ABLATIONS:-}"   # "random": also ReRULE with random storage
export RUN_ROOT="${RUN_ROOT:-$RUNS_DIR/tofu}"
RETAIN_RUN="${RETAIN_RUN:-$RUN_ROOT/eval/retain}"
need_files "$TOFU_DIR"/{forget01,forget01_perturbed,retain_perturbed,real_authors_perturbed,world_facts_perturbed}.json \
  ${BOUNDARY_RETAIN:+"$BOUNDARY_RETAIN"}
if [[ -n "${RETAIN_MODEL:-}" ]]; then need_files "$RETAIN_MODEL/config.json"; else need_files "$RETAIN_RUN"; fi
benchmark_defaults tofu   # BASE_MODEL and INPUT_TEMPLATE, as the recipes will set them
# Evaluation in TOFU's Llama-2 prompt format (the recipes' INPUT_TEMPLATE).
llama2_inst='[INST] {} [/INST]'
template="${INPUT_TEMPLATE:-$llama2_inst}"
# Forget Quality's retain run must be of this split and these settings, and a retain model must take this prompt
# format (its record's): checked now, not after all the training.
if [[ -z "${RETAIN_MODEL:-}" ]]; then
  run rerule eval tofu --check_only --model "$BASE_MODEL" --data "$TOFU_DIR" --split forget01 \
    --prompt_template "$template" --retain_run "$RETAIN_RUN" --out "$RUN_ROOT/eval/.retain_check" ${EVAL_ARGS:-}
else
  run rerule eval tofu --check_only --model "$RETAIN_MODEL" --data "$TOFU_DIR" --split forget01 \
    --prompt_template "$template" --out "$RETAIN_RUN" ${EVAL_ARGS:-}
fi

# 1. Data: forget QA -> boundary QA (a neighbouring entity) -> Stage 1 rows and Stage 2 prompts.
data="$RUN_ROOT/data"
run rerule data convert tofu "$TOFU_DIR/forget01.json" --kind forget --out "$data/forget.jsonl"
if [[ -n "${BOUNDARY_RETAIN:-}" ]]; then
  run rerule data convert tofu "$BOUNDARY_RETAIN" --kind boundary --exclude "$TOFU_DIR/retain_perturbed.json" \
    --out "$data/boundary.jsonl"
else
  # shellcheck disable=SC2086  # BOUNDARY_ARGS: several flags
  run rerule data boundary --forget "$data/forget.jsonl" --out "$data/boundary.jsonl" \
    --cache "$data/boundary_cache.jsonl" ${BOUNDARY_ARGS:-}
fi
# TOFU trains on its forget set by design; its other evaluation sets must not reach training (--eval refuses it).
eval_only=("$TOFU_DIR"/{retain_perturbed,real_authors_perturbed,world_facts_perturbed}.json)
run rerule data stage1 --forget "$data/forget.jsonl" --out "$data/stage1.jsonl" --eval "${eval_only[@]}"
# The paper's 11 steps of 32 prompts (Appendix D): exactly 352 Stage 2 rows, the 80 prompts in seeded shuffled passes.
run rerule data stage2 --forget "$data/forget.jsonl" --boundary "$data/boundary.jsonl" --ratio 1 \
  --steps "${MAX_STEPS:-11}" --rollout_batch "${ROLLOUT_BATCH:-32}" --eval "${eval_only[@]}" \
  --out "$data/stage2.jsonl"
export STAGE1_DATA="$data/stage1.jsonl" STAGE2_DATA="$data/stage2.jsonl"

# 2. Stage 1, RULE, ReRULE (and the ablation): the recipes.
train_arms tofu

# 3. Evaluation: the retain model once (its truth ratios make Forget Quality), then every arm.
if [[ -n "${RETAIN_MODEL:-}" ]]; then
  run rerule eval tofu --model "$RETAIN_MODEL" --data "$TOFU_DIR" --out "$RETAIN_RUN" --name "Retain model (ours)" \
    --split forget01 --prompt_template "$template" --engine "${EVAL_ENGINE:-auto}" ${EVAL_ARGS:-}
fi
EVALUATIONS=()
evaluate_arms tofu --data "$TOFU_DIR" --split forget01 --prompt_template "$template" --retain_run "$RETAIN_RUN"

# 4. The table, the paper's rows above ours.
run rerule report "${EVALUATIONS[@]}" --out "$RUN_ROOT/report"
