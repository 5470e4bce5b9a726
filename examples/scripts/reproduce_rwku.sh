#!/usr/bin/env bash
# Reproduce the ReRULE paper's RWKU table (Table 1) from the RULE authors' released files, one target at a time,
# as RULE and ReRULE did (a Stage 1 and a Stage 2 per target; RWKU averages the per-target results):
#
#   for each target in TARGETS:
#     released Stage 1 / Stage 2 files -> `rerule data convert rule`
#     Stage 1 (refusal SFT) -> RULE -> ReRULE (-> ReRULE with random storage when ABLATIONS=random)
#     `rerule eval rwku` of each model on that target's RWKU probes (evaluation files only)
#   `rerule report`: one row per method, the mean over targets, under the paper's rows
#
#   RULE_RELEASE=path/to/RULE-Unlearn bash examples/scripts/reproduce_rwku.sh     (DRY_RUN=1: validate the plan)
#
# Inputs: RULE_RELEASE, a checkout of github xwtMarch/RULE-Unlearn (its Stage 1 files under RS/data/RWKU/Target/,
# its Stage 2 files under data/RWKU/Target/); RWKU_DIR, RWKU's target folders with the evaluation probes (default:
# the copy inside the release, data/RWKU/Target). Every recipe variable (NUM_GPUS, BASE_MODEL, MAX_STEPS, SFT_*, ...)
# passes through. Each target writes only under RUNS_DIR/rwku/<target>/: data/, stage1/, rule/, rerule/, eval/.
source "$(dirname "$0")/_common.sh"
RULE_RELEASE="${RULE_RELEASE:-$DATA_DIR/RULE-Unlearn}"
RWKU_DIR="${RWKU_DIR:-$RULE_RELEASE/data/RWKU/Target}"
# The targets RULE reports: the ten its released Stage 2 script loops over (examples/exp_target/RWKU/
# run_llama_bs32_kl1e-2_forget_bf16_two_stage_reject_ref_rollout8_withformat_with_fb_neighbor_abs_lr2e-6.sh),
# also the ten names at the top of its Stage 1 script (RS/scripts/full/run_rt_epoch_target.sh).
TARGETS="${TARGETS:-1_Stephen_King 2_Confucius 3_Bruce_Lee 4_Warren_Buffett 5_Christina_Aguilera 6_Cindy_Crawford
7_Marie_Osmond 8_Paris_Hilton 9_Justin_Bieber 10_Prince_Harry,_Duke_of_Sussex}"
EVAL_SUBSETS="${EVAL_SUBSETS:-forget neighbor}"   # Table 1's columns; "forget neighbor mia fluency ..." for more
ABLATIONS="${ABLATIONS:-}"                         # "random": also ReRULE with random storage (Table 4's ablation)
# Appendix D: 37 steps of 32 prompts = the whole batches of a target's 1200 released Stage 2 prompts. `convert rule`
# drops the release's repeated prompts (e.g. 1046 of 1200 distinct for 5_Christina_Aguilera), so it cycles the
# distinct ones in seeded shuffled passes to exactly STAGE2_STEPS x ROLLOUT_BATCH; 0: the distinct prompts once.
STAGE2_STEPS="${STAGE2_STEPS:-37}"
stage2_steps=()
if [[ "$STAGE2_STEPS" != 0 ]]; then stage2_steps=(--steps "$STAGE2_STEPS" --rollout_batch "${ROLLOUT_BATCH:-32}"); fi

overlap_policy=(); if [[ "${EVAL_OVERLAP:-drop}" == keep ]]; then overlap_policy=(--allow_eval_overlap); fi

# Every released and evaluation file, checked before anything runs.
for target in $TARGETS; do
  need_files "$RULE_RELEASE/RS/data/RWKU/Target/$target/reject_target.json" \
             "$RULE_RELEASE/data/RWKU/Target/$target/rl_rejection_with_fb_neighbor_target.json" \
             "$RWKU_DIR/$target/forget_level1.json" "$RWKU_DIR/$target/neighbor_level1.json"
done

EVALUATIONS=()
for target in $TARGETS; do
  run_dir="$RUNS_DIR/rwku/${target//,/}"   # OpenRLHF splits dataset paths at commas: none in ours
  echo "# target $target -> $run_dir"

  # 1. Data: the authors' files, unchanged but for the format (repeated Stage 2 prompts dropped, then cycled to the
  # paper's step count: STAGE2_STEPS above).
  # Rows that copy or nearly copy one of this target's RWKU probes are dropped and counted (OUT.meta.json);
  # EVAL_OVERLAP=keep trains the files as released, as the paper did, with those rows marked (docs/data.md#training-data-and-evaluation-data-are-kept-apart).
  probes=("$RWKU_DIR/$target"/forget_level{1,2,3}.json "$RWKU_DIR/$target"/neighbor_level{1,2}.json)
  TARGET_NAME="$target"
  run rerule data convert rule "$RULE_RELEASE/RS/data/RWKU/Target/$target/reject_target.json" \
    --out "$run_dir/data/stage1.jsonl" --eval "${probes[@]}" "${overlap_policy[@]}"
  run rerule data convert rule "$RULE_RELEASE/data/RWKU/Target/$target/rl_rejection_with_fb_neighbor_target.json" \
    --out "$run_dir/data/stage2.jsonl" "${stage2_steps[@]}" --eval "${probes[@]}" "${overlap_policy[@]}"
  # What of this target's probes the written training files still contain (none, unless EVAL_OVERLAP=keep).
  for train_file in stage1 stage2; do
    run rerule data overlap "$run_dir/data/$train_file.jsonl" "$RWKU_DIR/$target"/forget_level{1,2,3}.json \
      "$RWKU_DIR/$target"/neighbor_level{1,2}.json
  done

  # 2. Stage 1, RULE, ReRULE (and the ablation): the recipes, with this target's files and run folder.
  export RUN_ROOT="$run_dir" STAGE1_DATA="$run_dir/data/stage1.jsonl" STAGE2_DATA="$run_dir/data/stage2.jsonl"
  train_arms rwku

  # 3. Evaluation on RWKU's probes of this target only; one name per method, so the report averages targets.
  evaluate_arms rwku --data "$RWKU_DIR/$target" --subsets $EVAL_SUBSETS
done

# 4. The table: per method, the mean over targets of each per-target metric, the paper's rows above ours.
run rerule report "${EVALUATIONS[@]}" --out "$RUNS_DIR/rwku/report"
