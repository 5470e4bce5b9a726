#!/usr/bin/env bash
# PURGE and PURGE + hard-case replay on RWKU, one target at a time as the authors run their binary reward (github
# strzar/purge grpo.py@3cb73e7:10-14: one TARGET per run, its own fts.json and qa_pairs.json), from RWKU's files
# and the model itself:
#
#   for each target in TARGETS:
#     `rerule data purge answers`   the model to be unlearned answers the target's rejection-tuning questions
#                                   (QUESTIONS_FILE, never the evaluation probes)
#     `rerule data purge entities`  the forbidden-term list: offline from ENTITIES_DIR/<target>/fts.json (your
#                                   reviewed list, or the authors' released data/PURGE), or EXTRACTOR_MODEL at an
#                                   OpenAI-compatible endpoint
#     `rerule data purge weights`   REWARD=pagerank only: the terms' PageRank weights from BASE_MODEL's own
#                                   embeddings (on the CPU, as the authors' preprocess; WEIGHTS_DEVICE=cuda is faster)
#     `rerule data purge stage2`    the first 100 questions with <purge> labels, less any copy of a probe
#     PURGE -> PURGE + replay       train_purge_rwku.sh, train_purge_replay_rwku.sh
#     `rerule eval rwku`            the base model and both arms on that target's RWKU probes
#   `rerule report`: one row per method, the mean over targets
#
#   RWKU_DIR=path/to/RWKU/Target ENTITIES_DIR=path/to/purge/data/PURGE BASE_MODEL=/models/Phi-3-mini-4k-instruct \
#     bash examples/scripts/reproduce_purge_rwku.sh                         (DRY_RUN=1: validate the plan)
#
# Every recipe variable (NUM_GPUS, ACTOR_LR, NUM_EPISODES, REPLAY_*, ...) passes through; each target writes only
# under RUNS_DIR/rwku_purge/<target>/: data/, purge/, purge_replay/, eval/. REWARD=exponential_decay: the authors'
# graded reward with its 15 epochs, under RUNS_DIR/rwku_purge_exponential_decay/ (docs/purge.md, "Graded rewards");
# REWARD=pagerank: the PageRank-weighted reward with training/pagerank.yaml's settings, under
# RUNS_DIR/rwku_purge_pagerank/ (docs/purge.md, "PageRank-weighted reward"). BASE_MODEL must be a local directory.
NUM_GPUS="${NUM_GPUS:-1}"   # as the recipes (strzar/purge run_a100.sh@3cb73e7:18, which runs grpo.py)
source "$(dirname "$0")/_common.sh"
purge_defaults
RWKU_DIR="${RWKU_DIR:-$DATA_DIR/RWKU/Target}"   # RWKU's target folders (questions and evaluation probes)
ENTITIES_DIR="${ENTITIES_DIR:-$DATA_DIR/PURGE}" # <target>/fts.json, the layout of the authors' data/PURGE
# The target of the authors' binary-reward script (grpo.py@3cb73e7:10; config.yaml:5 names it too); their lists
# cover all 100 RWKU targets. scripts/run_h200.sh:17 loops over 1_..5_ but runs the follow-up paper's
# exponential_decay reward (config.yaml:7-8); their token budget counts the first 20 (docs/purge.md, "targets").
TARGETS="${TARGETS:-1_Stephen_King}"
QUESTIONS_FILE="${QUESTIONS_FILE:-reject_phi.json}"  # RWKU's Phi-3 rejection set, the authors' input
                                                     # (src/misc/data_generation/generate_responses.py:156)
PURGE_PROMPTS="${PURGE_PROMPTS:-100}"               # training/binary.yaml:12 dataset_size
# The headline numbers' inputs (eval/headline.py): the forget probes (effectiveness, AA robustness) and RWKU's
# utility sets, Gen Rea Tru Fac Flu (utility kept, fluency change), all local files of the target folder; add mia.
EVAL_SUBSETS="${EVAL_SUBSETS:-forget neighbor mmlu bbh truthfulqa triviaqa fluency}"
# RULE_RELEASE (a checkout of github xwtMarch/RULE-Unlearn): RULE's data for the same target, Stage 1 and Stage 2
# as reproduce_rwku.sh trains them, counted beside PURGE's in the report's token table (its "x fewest" column).
RULE_RELEASE="${RULE_RELEASE:-}"
# Answers come from the model itself (--local_model BASE_MODEL), or ANSWERS_BASE_URL + ANSWERS_MODEL (a vLLM server).
if [[ -n "${ANSWERS_BASE_URL:-}" ]]; then
  answerer=(--base_url "$ANSWERS_BASE_URL" --model "${ANSWERS_MODEL:?ANSWERS_MODEL: the served model name}")
else
  answerer=(--local_model "$BASE_MODEL")
fi

overlap_policy=(); if [[ "${EVAL_OVERLAP:-drop}" == keep ]]; then overlap_policy=(--allow_eval_overlap); fi

# Every input, checked before anything runs (under DRY_RUN too).
for target in $TARGETS; do
  need_files "$RWKU_DIR/$target/$QUESTIONS_FILE" "$RWKU_DIR/$target"/forget_level{1,2,3}.json \
             "$RWKU_DIR/$target"/neighbor_level{1,2}.json
  if [[ -z "${EXTRACTOR_MODEL:-}" ]]; then need_files "$ENTITIES_DIR/$target/fts.json"; fi
  for subset in $EVAL_SUBSETS; do
    case "$subset" in
      mmlu|bbh) need_files "$RWKU_DIR/$target/retain_$subset.json" ;;
      truthfulqa) need_files "$RWKU_DIR/$target/truthful.json" ;;
      triviaqa|fluency) need_files "$RWKU_DIR/$target/$subset.json" ;;
      mia) need_files "$RWKU_DIR/$target"/{forget,retain}_mia.json ;;
    esac
  done
  if [[ -n "$RULE_RELEASE" ]]; then
    need_files "$RULE_RELEASE/RS/data/RWKU/Target/$target/reject_target.json" \
               "$RULE_RELEASE/data/RWKU/Target/$target/rl_rejection_with_fb_neighbor_target.json"
  fi
done

EVALUATIONS=() COMPARE_DATA=()
for target in $TARGETS; do
  run_dir="$RUNS_DIR/$PURGE_RUNS/${target//,/}"   # OpenRLHF splits dataset paths at commas: none in ours
  echo "# target $target -> $run_dir"
  questions="$RWKU_DIR/$target/$QUESTIONS_FILE" data="$run_dir/data" TARGET_NAME="$target"

  # 1. Data: answers of the model to be unlearned, the entity list, Stage 2 rows (checked against the probes).
  answers_cache=(); if [[ -n "${ANSWERS_BASE_URL:-}" ]]; then answers_cache=(--cache "$data/answers_cache.jsonl"); fi
  run rerule data purge answers --questions "$questions" "${answerer[@]}" "${answers_cache[@]}" \
    --out "$data/answers.jsonl"
  if [[ -n "${EXTRACTOR_MODEL:-}" ]]; then
    run rerule data purge entities --answers "$data/answers.jsonl" --model "$EXTRACTOR_MODEL" \
      ${EXTRACTOR_BASE_URL:+--base_url "$EXTRACTOR_BASE_URL"} --cache "$data/extractor_cache.jsonl" \
      --out "$data/entities.json"
  else
    answers=(--answers "$data/answers.jsonl")  # DRY_RUN=1 runs no model: no answers to report term hits on
    if [[ "${DRY_RUN:-0}" != 0 && "${DRY_RUN:-0}" != print && ! -e "$data/answers.jsonl" ]]; then
      name="${target#*_}"; answers=(--target "${name//_/ }")   # the folder's name: 3_Bruce_Lee -> Bruce Lee
    fi
    run rerule data purge entities "${answers[@]}" --offline "$ENTITIES_DIR/$target/fts.json" \
      --out "$data/entities.json"
  fi
  weights=()
  if [[ "$REWARD" == pagerank ]]; then
    # the authors' preprocess reads the list file as it is (repeats kept) with their entity name as the start node
    # (src/configs/entity/<target>.yaml name = the folder's name without its number, as here)
    listed="$data/entities.json"; if [[ -z "${EXTRACTOR_MODEL:-}" ]]; then listed="$ENTITIES_DIR/$target/fts.json"; fi
    name="${target#*_}"
    run rerule data purge weights --entities "$listed" --target "${name//_/ }" --model "$BASE_MODEL" \
      --device "${WEIGHTS_DEVICE:-cpu}" --out "$data/weights.json"
    weights=(--weights "$data/weights.json")
  fi
  # A question that copies or nearly copies one of the target's probes is dropped before the first PURGE_PROMPTS
  # are taken (RWKU's own reject_phi.json holds one for 3_Bruce_Lee); EVAL_OVERLAP=keep keeps and marks it.
  run rerule data purge stage2 --questions "$questions" --entities "$data/entities.json" "${weights[@]}" "${overlap_policy[@]}" \
    --max_prompts "$PURGE_PROMPTS" --out "$data/stage2.jsonl" \
    --eval "$RWKU_DIR/$target"/forget_level{1,2,3}.json "$RWKU_DIR/$target"/neighbor_level{1,2}.json

  if [[ -n "$RULE_RELEASE" ]]; then  # RULE's data for this target, for the token count only (never trained here)
    run rerule data convert rule "$RULE_RELEASE/RS/data/RWKU/Target/$target/reject_target.json" \
      --out "$data/rule_stage1.jsonl"
    run rerule data convert rule "$RULE_RELEASE/data/RWKU/Target/$target/rl_rejection_with_fb_neighbor_target.json" \
      --out "$data/rule_stage2.jsonl"
    COMPARE_DATA+=(--compare_data "RULE data" "$target" "$data/rule_stage1.jsonl" "$data/rule_stage2.jsonl")
  fi

  # 2. PURGE and PURGE + replay: the recipes, with this target's file and run folder.
  export RUN_ROOT="$run_dir" STAGE2_DATA="$data/stage2.jsonl"
  bash "$REPO_ROOT/examples/scripts/train_purge_rwku.sh"
  bash "$REPO_ROOT/examples/scripts/train_purge_replay_rwku.sh"

  # 3. Evaluation on RWKU's probes of this target only: the model before unlearning, then both arms.
  # Prompts formatted as in training (raw: no chat template); each arm records the data it unlearned from, so
  # that the report can count its tokens as the authors do (Stage 2 prompts with their answers).
  eval_format=(); if [[ "$PROMPT_FORMAT" == raw ]]; then eval_format=(--chat_template none); fi
  ARMS=(base)
  evaluate_arms rwku --data "$RWKU_DIR/$target" --subsets $EVAL_SUBSETS "${eval_format[@]}"
  ARMS=(purge purge_replay)
  evaluate_arms rwku --data "$RWKU_DIR/$target" --subsets $EVAL_SUBSETS "${eval_format[@]}" \
    --unlearning_data "$data/stage2.jsonl" "$data/answers.jsonl"
done

# 4. The table: per method, the mean over targets of each per-target metric; PURGE's headline numbers against the
# base model on the same target, and the tokens of each arm's unlearning data (BASE_MODEL's tokenizer), with
# RULE's data for the same targets when RULE_RELEASE is set.
run rerule report "${EVALUATIONS[@]}" --base "Base model" --tokenizer "$BASE_MODEL" "${COMPARE_DATA[@]}" \
  --out "$RUNS_DIR/$PURGE_RUNS/report"
