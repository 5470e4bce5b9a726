"""Between OpenRLHF `Experience` batches and the replay core's `StoredGroup`s.

An OpenRLHF sample is one right-padded row: `sequences` = prompt + response + pad, and the per-action tensors
(`action_mask`, `action_log_probs`, ...) have one column less, column k scoring token k + 1. The response starts
one token after the first action column. Groups are the n consecutive samples of one prompt in the rollout's
original order (`Experience.index`), which is how `compute_advantages_and_returns` groups them too.
"""

import torch

from openrlhf_rerule.openrlhf.compat import import_openrlhf
from openrlhf_rerule.replay import StoredGroup, group_stats

import_openrlhf()
from openrlhf.trainer.ppo_utils.experience import Experience  # noqa: E402


def _right_pad(rows: list[torch.Tensor], value=0) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


@torch.no_grad()
def capture_rollout(experiences: list[Experience], n: int) -> dict:
    """Everything `groups_from_batch` needs from one step's experiences (after rewards and advantages), except
    the step. Copies the data: the experiences travel on to the actors and may be changed there."""
    samples = []
    for exp in experiences:
        for row, index in enumerate(exp.index):
            samples.append((index, exp, row))
    samples.sort(key=lambda s: s[0])  # original rollout order: prompt-major, n samples per prompt

    prompts, responses, per_action = [], [], {"action_mask": [], "action_log_probs": [], "base_action_log_probs": [],
                                               "rollout_log_probs": []}
    for _, exp, row in samples:
        length = int(exp.attention_mask[row].sum())
        actions = exp.action_mask[row].bool().nonzero()
        start = int(actions[0]) if len(actions) else length - 1  # first action column = response start - 1
        prompts.append(exp.sequences[row, :start + 1])
        responses.append(exp.sequences[row, start + 1:length])
        for name, rows in per_action.items():
            value = getattr(exp, name)
            rows.append(None if value is None else value[row, start:length - 1].float())
    rewards = torch.stack([exp.rewards[row].float() for _, exp, row in samples])
    stats = group_stats(rewards, n)  # (r - mean) / (std + 1e-9), the same numbers as OpenRLHF's group_norm
    optional = {name: None if rows[0] is None else _right_pad(rows)
                for name, rows in per_action.items() if name != "action_mask"}
    first_of_group = samples[::n]
    return dict(
        prompt_ids=[prompts[i] for i in range(0, len(samples), n)],
        prompt_keys=[exp.prompts[row] for _, exp, row in first_of_group],
        labels=[exp.labels[row] if exp.labels else "" for _, exp, row in first_of_group],
        response_ids=_right_pad(responses),
        action_mask=_right_pad(per_action["action_mask"]).bool(),
        behaviour_logprobs=optional["action_log_probs"],
        ref_logprobs=optional["base_action_log_probs"],
        rollout_logprobs=optional["rollout_log_probs"],
        rewards=rewards,
        advantages=stats.advantages,
    )


@torch.no_grad()
def experiences_from_groups(groups: list[StoredGroup], micro_batch_size: int, pad_token_id: int,
                            step: int, ranks: int = 1) -> list[Experience]:
    """Stored groups -> micro-batched `Experience`s laid out exactly like on-policy ones, so the actor's own
    NaiveReplayBuffer, micro-batching and `training_step` take them unchanged. No generation, no model pass:
    `action_log_probs` are the behaviour log-probs and `base_action_log_probs` the stored reference ones.

    The samples are cut into `ranks` equal contiguous shares, each cut into the same number of Experiences of at
    most `micro_batch_size` samples, rank after rank: OpenRLHF's `async_run_method_batch` hands out
    ceil(len / ranks) consecutive Experiences per rank, which is then exactly one share each. (Cutting the whole
    batch by `micro_batch_size` instead gives e.g. 3 Experiences for 2 ranks, split 2/1, and the rank with less
    data leaves the others waiting in a collective.)"""
    samples = []
    for group in groups:
        prompt = group.prompt_ids.long()
        lead = len(prompt) - 1  # action columns before the response: the prompt's tokens but the last
        for j in range(group.n):
            valid = group.action_mask[j].nonzero()
            length = int(valid[-1]) + 1 if len(valid) else 0
            sequence = torch.cat([prompt, group.response_ids[j, :length].long()])

            def actions(stored, fill=0.0):
                if stored is None:
                    return None
                return torch.cat([torch.full((lead,), fill, dtype=stored.dtype), stored[j, :length]])[None]

            samples.append(Experience(
                sequences=sequence[None],
                attention_mask=torch.ones_like(sequence)[None],
                action_mask=actions(group.action_mask, False),
                action_log_probs=actions(group.behaviour_logprobs),
                base_action_log_probs=actions(group.ref_logprobs),
                rollout_log_probs=actions(group.rollout_logprobs),
                advantages=torch.full((1, len(sequence) - 1), float(group.advantages[j])),
                returns=torch.full((1, len(sequence) - 1), float(group.advantages[j])),
                rewards=group.rewards[j:j + 1].clone(),
                response_length=torch.tensor([length]),
                total_length=torch.tensor([len(sequence)]),
                prompts=[group.prompt_id],
                labels=[group.label],
                info={"reward": group.rewards[j:j + 1].clone(),
                      "age": torch.tensor([float(step - group.step)]),
                      "times_replayed": torch.tensor([float(group.times_replayed)])},
            ))
    if len(samples) % ranks:
        raise ValueError(f"{len(samples)} replay samples cannot be shared equally by {ranks} ranks")
    share = len(samples) // ranks
    return [Experience.concat_experiences(samples[start + i:start + min(i + micro_batch_size, share)], pad_token_id)
            for start in range(0, len(samples), share) for i in range(0, share, micro_batch_size)]
