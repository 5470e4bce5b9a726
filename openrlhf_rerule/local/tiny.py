"""Tiny local models for the demo and the tests: a word-level tokenizer built with `tokenizers` and a
small Llama, saved as an ordinary Hugging Face model directory (nothing is downloaded from a hub)."""

from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPACE_MARK = "\u2581"  # SentencePiece's marker of a preceding space
SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}

# A plain-text chat template: enough for code that formats prompts with `apply_chat_template`.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def build_word_tokenizer(texts: Iterable[str], keep_text: bool = False) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over `texts`; punctuation becomes its own token.

    keep_text=False (the synthetic world's demo): lower-cased, whitespace dropped, so "I don't know." decodes as
    "i don ' t know ." (the world is lower-case and has no contractions, so nothing is lost there).
    keep_text=True (`rerule data tiny_model`, a first trial on real files): decode(encode(x)) == x for every x
    whose words are in the vocabulary: case is kept (RULE's target check is case-sensitive) and every space,
    newline and tab is a token or part of one (SentencePiece's "\u2581" marks a preceding space), so a refusal
    such as "I don't know Harry Potter." comes back exactly as written."""
    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    texts = [*texts, "user : assistant :"]  # the chat template's own words, or every prompt starts with <unk>
    if keep_text:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[^\S ]"), "isolated"),  # newline, tab, ...: a token each
            pre_tokenizers.Metaspace(replacement=SPACE_MARK, prepend_scheme="never", split=True),
            pre_tokenizers.Punctuation("isolated")])
        tok.decoder = decoders.Metaspace(replacement=SPACE_MARK, prepend_scheme="never", split=True)
        # A word opens a text without the space mark and follows a space with it: learn both forms; and the
        # newline / tab tokens even when every text is one line (prompt formats add newlines).
        texts += [" " + t for t in texts] + ["\n\t\r"]
    else:
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values()), min_frequency=1)
    tok.train_from_iterator(texts, trainer=trainer)
    # Decoder-only generation pads on the left; saved with the tokenizer so every loader gets it.
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", clean_up_tokenization_spaces=False,
                                   **SPECIAL_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, max_positions: int = 256, seed: int = 0) -> LlamaForCausalLM:
    import torch

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def save_tiny_model(texts: Iterable[str], out_dir: str | Path, seed: int = 0, keep_text: bool = False,
                    **model_kwargs) -> Path:
    """Build tokenizer and untrained model from `texts` and save both to `out_dir` (an HF model directory);
    `keep_text`: see build_word_tokenizer."""
    out_dir = Path(out_dir)
    tokenizer = build_word_tokenizer(texts, keep_text=keep_text)
    model = build_tiny_llama(tokenizer, seed=seed, **model_kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
