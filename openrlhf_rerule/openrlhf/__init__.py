"""OpenRLHF 0.11.2 adapter: ReRULE as `--replay.*` on OpenRLHF's own Ray trainer. The only package that imports
openrlhf / ray / vllm / deepspeed; importing this __init__ imports none of them.

    train_ppo_ray  entry point: OpenRLHF's train_ppo_ray parser and train(), plus --replay.* (vanilla when off)
    args           --replay.* flags from ReplayConfig, the compatibility checks, running OpenRLHF's own parser
    check_args     DRY_RUN validation of a recipe's command through the real parsers
    compat         version check; flash-attn / vLLM import stubs on CUDA-less machines only
    trainer        driver: ReplayExperienceMaker (capture), ReplayTrainer (buffer, admission, replay, checkpoints)
    actor          actors: ReplayPolicyModel (stage_replay; fit = on-policy + replay update), ReplayLoss (PolicyLoss's
                   signature around replay_loss), exact whole-batch self-normalisation, LR schedule frozen for replay
    experience     OpenRLHF Experience <-> StoredGroup
    vllm_offline   vLLM in-process on token ids: greedy ids and prompt log-probs (`rerule eval --engine vllm`,
                   `rerule data real_model --check_vllm`)
"""
