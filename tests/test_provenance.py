"""The records every artefact carries (openrlhf_rerule/provenance.py): a tokenizer's fingerprint tells apart
tokenizers that give other token ids, and only those."""

import json

from transformers import AutoTokenizer

from openrlhf_rerule.data.cli import main as data_main
from openrlhf_rerule.provenance import (read_model_record, read_sidecar, tokenizer_fingerprint, write_model_record,
                                        write_sidecar)


def _tiny(tmp_path, name, words):
    texts = tmp_path / f"{name}.txt"
    texts.write_text("\n".join(words), encoding="utf-8")
    assert data_main(["tiny_model", "--texts", str(texts), "--out", str(tmp_path / name), "--hidden_size", "16",
                      "--num_layers", "1", "--num_heads", "2"]) == 0
    return tmp_path / name


def test_fingerprint_follows_the_token_ids_not_the_chat_template(tmp_path):
    a = _tiny(tmp_path, "a", ["the cat sat on the mat", "a dog ran far"])
    b = _tiny(tmp_path, "b", ["completely other words here", "and a different vocabulary entirely"])
    fa, fb = tokenizer_fingerprint(a), tokenizer_fingerprint(b)
    assert fa["vocab_size"] == len(AutoTokenizer.from_pretrained(a)) and fb["vocab_size"] == len(
        AutoTokenizer.from_pretrained(b))
    assert fa["sha256"] != fb["sha256"]

    # the same tokenizer saved again elsewhere, then with another chat template: same ids, other template
    tok = AutoTokenizer.from_pretrained(a)
    tok.save_pretrained(tmp_path / "a_again")
    assert tokenizer_fingerprint(tmp_path / "a_again") == fa
    tok.chat_template = "{{ messages[0]['content'] }}"
    tok.save_pretrained(tmp_path / "a_template")
    changed = tokenizer_fingerprint(tmp_path / "a_template")
    assert changed["sha256"] == fa["sha256"] and changed["chat_template_sha256"] != fa["chat_template_sha256"]
    assert tokenizer_fingerprint(tmp_path) is None  # no tokenizer files


def test_records_round_trip_and_a_corrupt_one_reads_as_unreadable(tmp_path):
    a = _tiny(tmp_path, "a", ["one two three"])
    write_model_record(a, {"made_by": "test", "chat_template": "none"})
    record = read_model_record(a)
    assert record["made_by"] == "test" and record["tokenizer"] == tokenizer_fingerprint(a)
    data = tmp_path / "rows.jsonl"
    write_sidecar(data, {"role": "evaluation"})
    assert read_sidecar(data) == {"role": "evaluation"}
    assert read_sidecar(tmp_path / "other.jsonl") is None
    (a / "rerule_model.json").write_text("{not json")
    assert "unreadable" in read_model_record(a)
    (a / "rerule_model.json").write_text(json.dumps([1]))
    assert "not a JSON object" in read_model_record(a)["unreadable"]
