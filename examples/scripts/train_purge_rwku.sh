#!/usr/bin/env bash
# PURGE on one RWKU target: OpenRLHF GRPO with the forbidden-entity reward (purge_binary), from the model to be
# unlearned, with the authors' settings (purge_defaults in _common.sh: each value cited; docs/purge.md#recipes).
#   STAGE2_DATA=data/rwku_purge/stage2.jsonl bash examples/scripts/train_purge_rwku.sh   (DRY_RUN=1: validate only)
NUM_GPUS="${NUM_GPUS:-1}"      # the authors train on one GPU (strzar/purge run_a100.sh@3cb73e7:18, runs grpo.py)
SAVE_STEPS="${SAVE_STEPS:-500}"  # theirs: src/configs/training/binary.yaml:8 save_steps 500 (:9 keeps 1, as CKPT_MAX_NUM)
source "$(dirname "$0")/_common.sh"
purge_defaults
grpo_stage2 purge "$@"
