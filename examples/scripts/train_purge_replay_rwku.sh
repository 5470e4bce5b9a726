#!/usr/bin/env bash
# PURGE + hard-case replay: the train_purge_rwku.sh run plus ReRULE's --replay.* flags, scaled to PURGE's 4 prompts
# a step (purge_defaults in _common.sh; REPLAY_*=... to override). The two runs differ in those flags only.
#   STAGE2_DATA=data/rwku_purge/stage2.jsonl bash examples/scripts/train_purge_replay_rwku.sh   (DRY_RUN=1: validate only)
NUM_GPUS="${NUM_GPUS:-1}"      # the authors train on one GPU (strzar/purge run_a100.sh@3cb73e7:18, runs grpo.py)
SAVE_STEPS="${SAVE_STEPS:-500}"  # theirs: src/configs/training/binary.yaml:8 save_steps 500 (:9 keeps 1, as CKPT_MAX_NUM)
source "$(dirname "$0")/_common.sh"
purge_defaults
replay_args
grpo_stage2 purge_replay "${REPLAY_ARGS[@]}" "$@"
