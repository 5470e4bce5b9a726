"""`rerule data purge ...`: PURGE's training corpus for one target (Zaradoukas et al., arXiv 2601.20568; the
authors' code, github strzar/purge, is cited per step).

    answers   the model to be unlearned answers the probe questions (RWKU's rejection-tuning questions,
              reject.json / reject_phi.json; never the evaluation probes), locally with Hugging Face generate
              or through an OpenAI-compatible server; settings of src/misc/data_generation/generate_responses.py
    entities  the forbidden terms: an extractor LLM reads all answers at once (the prompt of
              src/misc/data_generation/generate_forget_words.py), cut at top-K with the target's name first,
              or a list the user gives (the authors' fts.json), used whole; a common-word guard, and how
              often each term occurs in the answers
    weights   the PageRank penalty weights of the terms for purge_pagerank, from the model's own embeddings
              (purge_weights.py)
    stage2    Stage 2 rows ``{"prompt", "label": ["<purge>", target, *terms], "prompt_id", "kind": "forget"}``

The entity file is a JSON array of strings, the format of the authors' released ``data/PURGE/<target>/fts.json``
(so their lists can be used as they are): review it, edit it, then build the Stage 2 file from it.
"""

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openrlhf_rerule.atomic import atomic_path
from openrlhf_rerule.chat_endpoint import APIS, ChatEndpoint, ReplyCache
from openrlhf_rerule.cli_convention import UserError, number
from openrlhf_rerule.provenance import TRAINING, common_fields, source_entry, write_sidecar
from openrlhf_rerule.rewards.purge import purge_label, term_pattern

from .builders import prompt_id
from .overlap import add_eval_arguments, drop_eval_overlaps
from .roles import check_training_inputs, released_evaluation
from .schema import DataError, read_records, read_text, require, write_with_sidecar

# generate_responses.py: do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=100, the raw question as the
# prompt (no chat template), fp16 on the GPU.
ANSWER_SETTINGS = dict(temperature=0.7, top_p=0.9, max_new_tokens=100)
# generate_forget_words.py, verbatim but for the number, which is --ask (their 60).
EXTRACTION_PROMPT = ("Suppose you are doing named entity recognition on {target} based only on the responses below. "
                     "What are the top {ask} entities that are unique and specific to it? Try avoiding generic words. "
                     "Give the answer in pure JSON format.\n\n=== RESPONSES ===\n{responses}")
# The paper keeps the top K = 50 of the extractor's candidates (its text); their code asks for 60
# (generate_forget_words.py:57) and keeps what was pasted back by hand, so the released lists hold 49-64.
EXTRACTED_TOP_K = 50
# English function words (pronouns, articles, auxiliaries, prepositions, conjunctions): a term that is one of these
# makes nearly every completion score 0 under case-insensitive matching ("It" in the released Stephen King list).
# Our own short list: nltk's stopwords corpus is a separate download. --stopwords FILE adds to it.
FUNCTION_WORDS = frozenset("""
a an the this that these those it its it's he him his she her hers they them their theirs we us our ours you your
yours i me my mine who whom whose which what when where why how there here
is are was were be been being am do does did done have has had having will would shall should can could may might
must of in on at by for from to with without about above below over under into onto out up down off through
between among after before during since until against and or but nor so yet if then than as not no yes all any
both each few more most other some such only own same too very just also again once
""".split())


# ---- probe questions ---------------------------------------------------------------------------------------------
def read_questions(path) -> list[dict]:
    """Probe questions as [{"prompt", "subject"}]: RWKU's rejection-tuning JSON (``[{"instruction", "subject",
    ...}]``, the authors' input: reject_phi.json for Phi-3) or jsonl rows with a "prompt". Evaluation probes are
    refused by file name (forget_level*, neighbor_level*, ...: roles.released_evaluation), by shape (RWKU probes
    have "query" and "level"; our converted probes carry "level") and by their sidecar's role (the commands, through
    roles.check_training_inputs); `stage2 --eval FILE...` also checks the text against them."""
    path = Path(path)
    if released_evaluation(path):
        raise DataError(path, 0, "(file)", f"named like {released_evaluation(path)}, evaluation data: training on "
                        "them leaks the test. Use the rejection-tuning questions of the target folder (reject.json, or "
                        "reject_phi.json for Phi-3)")
    rows = []
    for record in read_records(path):
        line = record["__line__"]
        if "level" in record and ("query" in record or record.get("kind") in ("forget", "neighbor")):
            raise DataError(path, line, "level", "an evaluation probe (RWKU forget / neighbour level): training "
                            "on it leaks the test; use reject.json / reject_phi.json")
        field = "instruction" if "instruction" in record else "prompt"
        rows.append({"prompt": require(record, field, path), "subject": str(record.get("subject") or "")})
    return rows


def target_of(rows: list[dict], given: str | None, path) -> str:
    """--target, else the one subject every row names."""
    if given:
        return given
    subjects = sorted({r["subject"] for r in rows if r.get("subject")})
    if len(subjects) != 1:
        found = ", ".join(map(repr, subjects[:3])) or "none"
        raise UserError(f"{path}: cannot tell the target from the rows' subjects ({found}); pass --target NAME")
    return subjects[0]


# ---- answers -----------------------------------------------------------------------------------------------------
def answer_locally(model_dir: str, prompts: list[str], seed: int = 0, device: str = "auto", temperature: float = 0.7,
                   top_p: float = 0.9, max_new_tokens: int = 100) -> list[str]:
    """One sampled answer per prompt, one prompt at a time, as generate_responses.py does: the tokenized raw
    prompt (no chat template), model.generate with the model's generation config and these overrides, the new
    tokens decoded with skip_special_tokens=True. fp16 on cuda (theirs), fp32 on cpu."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    torch.manual_seed(seed)
    answers = []
    for prompt in tqdm(prompts, desc="answers", leave=False):
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                 top_p=top_p)
        answers.append(tokenizer.decode(out[0][inputs.input_ids.shape[1]:], skip_special_tokens=True))
    return answers


def ask_endpoint(endpoint: ChatEndpoint, prompts: list[str], cache_path=None, batch_size: int = 8) -> list[str]:
    """Every prompt through the endpoint, `batch_size` at a time, from the reply cache when paid for before. The
    cache key names the model, the api and the sampling settings, so other settings never reuse a reply."""
    cache = None
    if cache_path:
        cache = ReplyCache(cache_path, f"{endpoint.model}|{endpoint.api}|T={endpoint.temperature}|"
                                       f"top_p={endpoint.top_p}|max_tokens={endpoint.max_tokens}")
    ask = (lambda p: cache.answer(p, endpoint.complete)) if cache else endpoint.complete
    with ThreadPoolExecutor(max_workers=batch_size) as pool:
        return list(pool.map(ask, prompts))


# ---- entities ----------------------------------------------------------------------------------------------------
def read_terms(path) -> list[str]:
    """An entity list: a JSON array of strings (the authors' fts.json), or plain text with one term a line
    (blank lines and lines starting with # skipped)."""
    text = read_text(path)
    if text.lstrip().startswith(("[", "{")):  # JSON (an object is refused below, not read as one odd term)
        try:
            terms = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, "(file)", f"invalid JSON: {e.msg}") from None
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise DataError(path, 0, "(file)", "expected a JSON array of strings")
    else:
        terms = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    terms = [t.strip() for t in terms if t.strip()]
    if not terms:
        raise DataError(path, 0, "(file)", "no terms")
    return terms


def parse_extraction(reply: str) -> list[str]:
    """The entities of an extractor's JSON reply, in order: a list of strings, a list of objects (their "name",
    "entity", "text" or first string value), or an object of lists (categories, read in order)."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", reply.strip())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the extractor's reply is not JSON ({e.msg}): {reply[:120]!r}") from None
    out = []

    def walk(node):
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            named = next((node[k] for k in ("name", "entity", "text") if isinstance(node.get(k), str)), None)
            if named is not None:
                out.append(named)
            else:
                for value in node.values():
                    walk(value)

    walk(data)
    return out


def entity_list(target: str, candidates: list[str], top_k: int) -> list[str]:
    """The target's name first (as in the released lists), then the candidates in order, each term once
    (case-insensitively), at most top_k in all."""
    terms, seen = [], set()
    for term in [target, *candidates]:
        term = " ".join(term.split())
        if term and term.lower() not in seen:
            seen.add(term.lower())
            terms.append(term)
    return terms[:top_k]


def common_word_warnings(terms: list[str], extra_stopwords=frozenset()) -> list[str]:
    """Terms likely to match ordinary text: function words, one short word (<= 3 letters, not an acronym:
    "It", "Li", "Ren"), bare numbers."""
    stop = FUNCTION_WORDS | {w.lower() for w in extra_stopwords}
    warnings = []
    for term in terms:
        if term.lower() in stop:
            warnings.append(f"{term!r} is a common English word: every completion using it scores 0")
        elif len(term) <= 3 and term.isalpha() and not term.isupper():  # acronyms ("AOL") rarely occur otherwise
            warnings.append(f"{term!r} is a short word: it also matches unrelated words and names")
        elif term.replace(",", "").replace(".", "").isdigit():
            warnings.append(f"{term!r} is a bare number: it matches any text that mentions it")
    return warnings


def answer_hits(terms: list[str], answers: list[str]) -> dict[str, int]:
    """How many answers mention each term (the authors' matching)."""
    return {t: sum(term_pattern((t,)).search(a) is not None for a in answers) for t in terms}


# ---- command line ------------------------------------------------------------------------------------------------
def cmd_answers(args):
    questions = read_questions(args.questions)  # refuses released probes by name first: one line, not a WARNING too
    sources, _ = check_training_inputs("purge answers", [("--questions", args.questions)], allow=None)
    target = target_of(questions, args.target, args.questions)
    prompts = [q["prompt"] for q in questions]
    if bool(args.local_model) == bool(args.base_url):
        raise UserError("give --local_model DIR (Hugging Face generate) or --base_url URL --model NAME (a server)")
    if args.local_model:
        from openrlhf_rerule.local.preflight import check_model_dir

        check_model_dir("--local_model", args.local_model)
        answers = answer_locally(args.local_model, prompts, seed=args.seed, device=args.device,
                                 temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
        source = args.local_model
    else:
        if not args.model:
            raise UserError("--base_url needs --model (the served name of the model to be unlearned)")
        endpoint = ChatEndpoint(args.base_url, args.model, args.api_key, temperature=args.temperature,
                                top_p=args.top_p, max_tokens=args.max_new_tokens, api=args.api,
                                max_retries=args.max_retries)
        answers = ask_endpoint(endpoint, prompts, args.cache, args.batch_size)
        source = f"{args.model} at {args.base_url} ({endpoint.requests_sent} requests sent, the rest cached)"
    rows = [{"prompt": p, "response": a, "subject": target} for p, a in zip(prompts, answers)]
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    # role training: the model's answers to training-side questions, read by `purge entities`; nothing trains on
    # them (`rerule report` leaves a "purge answers" file out of a run's training data, eval/data_overlap.py)
    write_sidecar(args.out, {"command": "purge answers", "role": TRAINING, "sources": sources, "target": target,
                             "answered_by": source, "api": None if args.local_model else args.api,
                             **{k: getattr(args, k) for k in ("seed", "temperature", "top_p", "max_new_tokens")},
                             **common_fields([args.questions], ("benchmark", "split")), "rows": len(rows)})
    print(f"wrote {args.out} ({len(rows)} answers of {source} about {target!r})")
    print(f"next: rerule data purge entities --answers {args.out} --out ENTITIES.json (--offline LIST | --model M)")


def read_answers(path, target: str | None) -> tuple[list[str], str]:
    """The responses of an answers file and the target (`target`, else the rows' one subject)."""
    records = read_records(path)
    for r in records:
        if not isinstance(r.get("response"), str):
            raise DataError(path, r["__line__"], "response", "missing or not a string (an answers file of "
                            "rerule data purge answers is expected)")
    return [r["response"] for r in records], target_of(records, target, path)


def cmd_entities(args):
    answers, target = read_answers(args.answers, args.target) if args.answers else ([], args.target)
    if not target:
        raise UserError("pass --target NAME (or --answers FILE whose rows name it)")
    if args.offline:
        candidates, source = read_terms(args.offline), f"the list {args.offline}"
    else:
        if not answers or not args.model:
            raise UserError("extraction through an endpoint needs --answers FILE and --model NAME (or --offline LIST)")
        base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        endpoint = ChatEndpoint(base_url, args.model, args.api_key or os.environ.get("OPENAI_API_KEY"),
                                max_retries=args.max_retries)
        prompt = EXTRACTION_PROMPT.format(target=target, ask=args.ask, responses="\n".join(answers))
        reply = ask_endpoint(endpoint, [prompt], args.cache, 1)[0]
        try:
            candidates = parse_extraction(reply)
        except ValueError as e:
            raise UserError(f"{e}; the reply is in the cache: edit it there, or write the list yourself and use "
                            "--offline LIST") from None
        source = f"{args.model}'s reply ({endpoint.requests_sent} requests sent, the rest cached)"
    if args.offline and not args.top_k:  # as released: their reward reads the whole file into a set
        terms, kept = list(dict.fromkeys(candidates)), "all, as listed"  # (src/rewards/base.py:47-50, binary.py:34-40)
    else:
        top_k = args.top_k or EXTRACTED_TOP_K
        terms, kept = entity_list(target, candidates, top_k), f"top {top_k}, target first"
    extra = read_terms(args.stopwords) if args.stopwords else []
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(terms, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    inputs = [(flag, path) for flag, path in (("--answers", args.answers), ("--offline", args.offline)) if path]
    write_sidecar(args.out, {"command": "purge entities", "role": TRAINING, "target": target, "extracted_by": source,
                             "kept": kept, "terms": len(terms), "sources": [{"as": flag, **source_entry(path)}
                                                                           for flag, path in inputs]})
    print(f"wrote {args.out}: {len(terms)} terms for {target!r} from {source} ({kept})")
    if args.offline and args.top_k and len(terms) < len(dict.fromkeys(candidates)):
        print(f"note: --top_k {args.top_k} leaves out terms of {args.offline}; without it the list is used whole")
    if target.lower() not in {t.lower() for t in terms}:
        print(f"warning: {target!r} is not in the list, and the authors' reward does not add it: add it to "
              f"{args.out} to forbid the name itself")
    for warning in common_word_warnings(terms, extra):
        print(f"warning: {warning}")
    if answers:
        hits = answer_hits(terms, answers)
        pattern = term_pattern(tuple(terms))
        reward_zero = sum(pattern.search(a) is not None for a in answers)
        print(f"{reward_zero} of {len(answers)} answers mention a term (reward 0 before training); most frequent:")
        for term, n in sorted(hits.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  {n:5d}  {term}")
    print(f"review and edit {args.out}, then: rerule data purge stage2 --questions QUESTIONS --entities {args.out} "
          "--out STAGE2.jsonl")


def stage2_rows(prompts: list[str], target: str, terms: list[str], drop_repeats: bool = False,
                weights: list[float] | None = None) -> list[dict]:
    """PURGE Stage 2 rows: one forget row per prompt, in order, each labelled with the target's whole term list
    (``["<purge>", target, *terms]``, then the PageRank weights when given). A repeated prompt stays, marked
    ``"repeat": k`` (the authors train on the rows as released: src/purge.py:116-117 selects the first 100, repeats
    included); `drop_repeats` drops it."""
    label = purge_label(target, terms, weights)
    rows, seen = [], {}
    for prompt in prompts:
        pid = prompt_id("forget", prompt)
        if pid in seen and drop_repeats:
            continue
        row = {"prompt": prompt, "label": label, "prompt_id": pid, "kind": "forget", "target": target}
        rows.append({**row, "repeat": seen[pid]} if pid in seen else row)
        seen[pid] = seen.get(pid, 0) + 1
    return rows


def read_weights(path) -> dict:
    """A weights file of `rerule data purge weights` (purge_weights.py), checked (DataError otherwise)."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, "(file)", f"invalid JSON: {e.msg}") from None
    if not (isinstance(data, dict) and isinstance(data.get("target"), str) and isinstance(data.get("terms"), list)
            and isinstance(data.get("weights"), list) and len(data["terms"]) == len(data["weights"]) >= 2):
        raise DataError(path, 0, "(file)", "not a weights file of `rerule data purge weights` (target, terms and "
                        "one weight per term)")
    return data


def cmd_stage2(args):
    questions = read_questions(args.questions)
    sources, _ = check_training_inputs("purge stage2", [("--questions", args.questions)], allow=None)
    terms, weights = read_terms(args.entities), None
    if args.weights:  # purge_pagerank: the weights file's forget set (target first) and weights go into the label
        scored = read_weights(args.weights)
        target = args.target or scored["target"]
        if target != scored["target"] or set(scored["terms"]) != {target, *terms}:
            raise UserError(f"--weights {args.weights} was computed for {scored['target']!r} and another term list "
                            f"than {target!r} with {args.entities}: rerun `rerule data purge weights` on this list")
        terms, weights = scored["terms"], scored["weights"]
    else:
        target = target_of(questions, args.target, args.questions)
    rows = stage2_rows([q["prompt"] for q in questions], target, terms, args.drop_repeats, weights)
    rows, overlap = drop_eval_overlaps(rows, args.out, args, [args.questions])  # before the cut: still 100 rows
    rows = rows[:args.max_prompts] if args.max_prompts else rows
    repeats = sum("repeat" in row for row in rows)
    sources += [{"as": flag, **source_entry(path)} for flag, path in (("--entities", args.entities),
                                                                       ("--weights", args.weights)) if path]
    meta = {"command": "purge stage2", "role": TRAINING, "sources": sources, "questions": args.questions,
            "entities": args.entities, "weights": args.weights, "target": target,
            "terms": len(terms), "max_prompts": args.max_prompts, "drop_repeats": args.drop_repeats,
            "repeats_kept": repeats, **common_fields([args.questions], ("benchmark", "split")), **overlap}
    said = ("repeated questions dropped (--drop_repeats)" if args.drop_repeats else
            f"{repeats} of them repeat an earlier question, kept as the authors train them (--drop_repeats: drop)")
    print(f"wrote {write_with_sidecar(args.out, rows, 'stage2', meta)} ({len(rows)} prompts about {target!r}, "
          f"{len(terms)} terms each; {said})")
    if target.lower() not in {t.lower() for t in terms}:
        print(f"warning: {target!r} is not in {args.entities}: the reward does not forbid the name itself")


def add_endpoint_arguments(p, what: str, defaults: str = ""):
    p.add_argument("--base_url", help=f"OpenAI-compatible endpoint of {what}{defaults}")
    p.add_argument("--model", help=f"served model name of {what}")
    p.add_argument("--api_key", help="bearer token, if the endpoint wants one")
    p.add_argument("--cache", help="jsonl cache of replies; a rerun re-sends nothing it holds")
    p.add_argument("--max_retries", type=number(int, 0), default=5, help="retries of a failed request")


def add_purge_commands(parser):
    sub = parser.add_subparsers(dest="purge_command", required=True, metavar="STEP")
    p = sub.add_parser("answers", help="the model to be unlearned answers the probe questions")
    p.add_argument("--questions", required=True, help="RWKU rejection-tuning questions (reject.json / "
                   "reject_phi.json of a target folder) or jsonl rows with a prompt; never evaluation probes")
    p.add_argument("--out", required=True, help="answers jsonl: {prompt, response, subject}")
    p.add_argument("--target", help="the target's name (default: the subject of the questions)")
    p.add_argument("--local_model", help="Hugging Face model directory: answer with transformers' generate")
    add_endpoint_arguments(p, "the model to be unlearned", " (e.g. a vLLM server)")
    p.add_argument("--api", choices=APIS, default="completions",
                   help="completions: the raw question, no chat template (the authors'); chat: a user message")
    p.add_argument("--batch_size", type=number(int, 1), default=8, help="concurrent requests")
    p.add_argument("--temperature", type=number(float, 0), default=ANSWER_SETTINGS["temperature"],
                   help="sampling temperature (the authors')")
    p.add_argument("--top_p", type=number(float, 0, 1), default=ANSWER_SETTINGS["top_p"],
                   help="nucleus sampling (the authors')")
    p.add_argument("--max_new_tokens", type=number(int, 1), default=ANSWER_SETTINGS["max_new_tokens"],
                   help="answer length limit (the authors')")
    p.add_argument("--seed", type=int, default=0, help="local generation's torch seed")
    p.add_argument("--device", default="auto", help="local generation: auto | cpu | cuda")
    p.set_defaults(func=cmd_answers)

    p = sub.add_parser("entities", help="the target's forbidden terms: LLM extraction from the answers, or a list")
    p.add_argument("--answers", help="answers jsonl of `rerule data purge answers`")
    p.add_argument("--out", required=True, help="entity file: a JSON array of strings, target first")
    p.add_argument("--target", help="the target's name (default: the subject of the answers)")
    p.add_argument("--offline", metavar="LIST",
                   help="candidate terms instead of an extractor: JSON array or one a line")
    add_endpoint_arguments(p, "the extractor", " (default: $OPENAI_BASE_URL, else OpenAI's; key: $OPENAI_API_KEY)")
    p.add_argument("--ask", type=number(int, 1), default=60, help="how many entities the prompt asks for (theirs: 60)")
    p.add_argument("--top_k", type=number(int, 1), default=None,
                   help=f"terms kept, target included and first. --offline: default the whole list as it is (the "
                        f"released lists hold 49-64 terms and their reward reads them whole); extraction: default "
                        f"{EXTRACTED_TOP_K} (the paper's K)")
    p.add_argument("--stopwords", metavar="FILE", help="more common words to warn about (one a line, or a JSON array)")
    p.set_defaults(func=cmd_entities)

    p = sub.add_parser("stage2", help="Stage 2 prompt rows with the PURGE label")
    p.add_argument("--questions", required=True, help="the probe questions (as for answers)")
    p.add_argument("--entities", required=True, help="the reviewed entity file (or an fts.json of the authors)")
    p.add_argument("--out", required=True)
    p.add_argument("--target", help="the target's name (default: the weights file's, else the subject of the "
                   "questions)")
    p.add_argument("--weights", help="PageRank weights of `rerule data purge weights` for this list: the labels "
                   "carry them (reward variant purge_pagerank)")
    p.add_argument("--max_prompts", type=number(int, 0), default=100,
                   help="the first N questions as listed (the authors train on the first 100 rows, "
                        "src/purge.py:116-117); 0: all")
    p.add_argument("--drop_repeats", action="store_true",
                   help="drop a question that repeats an earlier one before taking the first N (default: kept, "
                        "as the authors train them; 2 of RWKU's 100 targets repeat one in their first 100)")
    add_eval_arguments(p)
    p.set_defaults(func=cmd_stage2)
    return sub
