"""The synthetic forget world: fictitious people, small enough for a ~1M-parameter Llama with a word-level
tokenizer to learn in seconds on a CPU, shaped like the real benchmarks.

- Every person has a birthplace, a profession, an employer and a book; each attribute gives a QA pair
  (Type-II) and a fill-in-the-blank prompt (Type-I), in short templated lower-case sentences.
- forget people are the unlearning targets; boundary people are deliberately confusable with them
  (each shares a surname, a birthplace or an employer with one forget person, in turn), as the MUSE / RWKU
  neighbours are; retain people are unrelated.
- Held-out prompts are paraphrased question forms never used in training, for forget and boundary people:
  after unlearning the former should be refused and the latter still answered.
- Three knobs shape Stage 1 (all off by default, which leaves every file as it was):
  `num_stage1_retain` extra unrelated people whose answered QA is mixed into stage1.jsonl (the retain data a
  RULE Stage 1 is mixed with; they are in pretrain.jsonl but in no evaluation file, so eval/retain.jsonl stays
  untouched by unlearning), and `stage1_over_refuse` — the share of boundary people whose questions Stage 1 is
  also taught to refuse: a controlled amount of over-refusal, i.e. of hard `<normal>` cases for Stage 2; and
  `stage1_answer_boundary` — the share of boundary people whose questions Stage 1 is taught to *answer*, so that
  their Stage 2 prompts start easy (fewer hard cases than Stage 1 leaves by itself). `rerule study` varies both.
- `purge=True` adds PURGE's data (off by default; every other file stays byte-identical): each forget person's
  entity list — what PURGE's extractor would take from the model's own answers about them, which in this world
  state exactly the name and the four attribute values — as `purge/entities/<name>.json` (the authors' fts.json
  format), and `purge/stage2.jsonl`: the forget questions with `["<purge>", name, term, ...]` labels. The city,
  employer and profession on a list are not unique to the person: boundary people share a city or an employer
  with a forget person by construction, and any person may share one by chance, so the reward also forbids the
  true answers of those questions about other people. A boundary person who shares the surname is not hit: the
  name is one two-word term, matched as a whole.

    world = build_world(seed=0, num_forget=6, num_boundary=6, num_retain=12)
    world.write("out/world")   # pretrain.jsonl, stage1.jsonl, stage2.jsonl, eval/{forget,boundary,retain,heldout}.jsonl
    world.all_texts()          # every string the tiny tokenizer must cover
"""

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from openrlhf_rerule.atomic import atomic_path

from .builders import build_stage1, build_stage2
from .purge import entity_list, stage2_rows
from .schema import validate_rows, write_jsonl
from .templates import refusal_templates

FIRST_NAMES = ["alice", "bruno", "clara", "david", "elena", "felix", "grace", "henry", "irene", "jonas", "karen",
               "leo", "maria", "nora", "oscar", "paula", "rosa", "simon", "tara", "victor", "wendy", "yusuf", "zoe",
               "adam", "bella", "carl", "dora", "emil", "fiona", "gus", "hana", "ivan", "june", "kurt", "lena", "milo"]
SURNAMES = ["stone", "reed", "hill", "marsh", "wood", "brook", "fields", "lane", "moss", "vale", "hart", "ford",
            "cole", "west", "page", "gray", "finch", "shaw"]
CITIES = ["oakford", "milltown", "ashby", "redcliff", "lakeside", "elmwood", "northgate", "rivermouth",
          "stonebridge", "westfield", "pinecrest", "kingsbay"]
PROFESSIONS = ["baker", "teacher", "painter", "doctor", "farmer", "sailor", "lawyer", "nurse", "carpenter",
               "singer", "pilot", "chemist"]
EMPLOYERS = ["the river bank", "the city library", "acme mills", "the north railway", "green leaf farms",
             "the harbor hospital", "blue sky airlines", "the old theater", "sun valley school", "the grand hotel"]
BOOK_ADJECTIVES = ["silent", "golden", "hidden", "broken", "quiet", "distant", "red", "winter", "last", "little"]
BOOK_NOUNS = ["river", "garden", "door", "bridge", "lantern", "tower", "forest", "letter", "island", "road"]

# attribute -> (training question, fill-in-the-blank statement, held-out paraphrase); the answer is the statement
# with the blank filled.
FORMS = {
    "city": ("where was {name} born?", "{name} was born in ___.", "in which town was {name} born?"),
    "profession": ("what is the job of {name}?", "{name} works as a ___.", "what does {name} do for a living?"),
    "employer": ("who does {name} work for?", "{name} works for ___.", "which company does {name} work for?"),
    "book": ("what book did {name} write?", "{name} wrote the book ___.", "what is the name of the book by {name}?"),
}
SHARED_WITH_FORGET = ("surname", "city", "employer")  # cycled over boundary people
PURGE_DIR = "purge/"  # the files purge=True adds


@dataclass
class Person:
    name: str
    group: str  # forget | boundary | retain | stage1_retain
    city: str
    profession: str
    employer: str
    book: str
    confused_with: str = ""  # the forget person a boundary person is confusable with
    shares: str = ""  # what they share: surname | city | employer

    def qa(self, form: int) -> list[dict]:
        """Evaluation-QA rows, one per attribute: form 0 = question, 1 = fill-in-the-blank, 2 = paraphrase."""
        rows = []
        for attribute, templates in FORMS.items():
            value = getattr(self, attribute)
            statement = templates[1].format(name=self.name)
            prompt = templates[form].format(name=self.name)
            answer = value if form == 1 else statement.replace("___", value)
            rows.append({"prompt": prompt, "answer": answer, "kind": self.group, "subject": self.name,
                         "attribute": attribute, "form": ("qa", "cloze", "paraphrase")[form]})
        return rows


# The world's protocol is TOFU's: Stage 1 and Stage 2 are built from the forget and boundary QA, which are also
# evaluated; the retain people's QA (learned only in pretraining) and the held-out paraphrases are evaluation only.
# The roles `rerule data world` writes into the sidecars (docs/data.md, "Roles and sidecars").
EVALUATION_ONLY = ("eval/retain.jsonl", "eval/heldout.jsonl")


@dataclass
class World:
    seed: int
    people: list[Person]
    refusal_templates: list[str]
    stage2_ratio: float = 1.0
    files: dict = field(default_factory=dict)  # relative path -> (rows, kind)
    entities: dict = field(default_factory=dict)  # purge=True: forget person's name -> PURGE term list

    def group(self, name: str) -> list[Person]:
        return [p for p in self.people if p.group == name]

    def all_texts(self) -> list[str]:
        """Every string in every file (the text of labels, not their JSON or tag), plus the full refusal-template pool (so any refusal is in vocabulary).
        PURGE's files are left out: their words are the forget people's own (tested), and the tiny tokenizer's ids
        follow word counts, so counting them again would change every model built with purge=True."""
        texts = [t.replace("{name}", "") for t in refusal_templates()]
        for rel, (rows, _) in self.files.items():
            if rel.startswith(PURGE_DIR):
                continue
            for row in rows:
                texts += [v for k, v in row.items() if isinstance(v, str) and k not in ("prompt_id", "label")]
                texts += json.loads(row["label"])[1:] if "label" in row else []  # the tag is never model text
        return texts

    def write(self, out_dir) -> dict:
        """Write every file (validated first, each written atomically); returns {relative path: Path}."""
        out_dir = Path(out_dir)
        for rel, (rows, kind) in self.files.items():
            validate_rows(rows, kind, out_dir / rel)
        written = {rel: write_jsonl(out_dir / rel, rows, kind) for rel, (rows, kind) in self.files.items()}
        for name, terms in self.entities.items():
            rel = f"{PURGE_DIR}entities/{name.replace(' ', '_')}.json"
            with atomic_path(out_dir / rel) as tmp:
                tmp.write_text(json.dumps(terms, indent=2) + "\n")
            written[rel] = out_dir / rel
        return written


def build_world(seed: int = 0, num_forget: int = 6, num_boundary: int = 6, num_retain: int = 12,
                num_refusal_templates: int = 8, stage2_ratio: float = 1.0, num_stage1_retain: int = 0,
                stage1_over_refuse: float = 0.0, stage1_answer_boundary: float = 0.0, purge: bool = False) -> World:
    """A deterministic world: the same arguments give the same people, prompts and files. The two Stage 1 knobs
    change stage1.jsonl (and, for num_stage1_retain, pretrain.jsonl) only: every other person and file is the
    same with or without them; `purge` only adds files (module docstring)."""
    if num_forget < 1 or num_boundary < 0 or num_retain < 0 or num_stage1_retain < 0:
        raise ValueError("need num_forget >= 1 and non-negative num_boundary / num_retain / num_stage1_retain")
    if not 0.0 <= stage1_over_refuse <= 1.0:
        raise ValueError(f"stage1_over_refuse is a share of the boundary people, in [0, 1]; got {stage1_over_refuse}")
    if not 0.0 <= stage1_answer_boundary <= 1.0 or stage1_answer_boundary and stage1_over_refuse:
        raise ValueError("stage1_answer_boundary is a share of the boundary people, in [0, 1], and excludes "
                         f"stage1_over_refuse; got {stage1_answer_boundary} with {stage1_over_refuse}")
    total = num_forget + num_boundary + num_retain + num_stage1_retain
    if total > len(FIRST_NAMES) * len(SURNAMES) // 2:
        raise ValueError(f"at most {len(FIRST_NAMES) * len(SURNAMES) // 2} people fit the name lists")
    rng = random.Random(seed)
    used_names, used_books = set(), set()

    def new_name(surname=None):
        while True:
            name = f"{rng.choice(FIRST_NAMES)} {surname or rng.choice(SURNAMES)}"
            if name not in used_names:
                used_names.add(name)
                return name

    def new_book():
        if len(used_books) == len(BOOK_ADJECTIVES) * len(BOOK_NOUNS):
            return f"the {rng.choice(BOOK_ADJECTIVES)} {rng.choice(BOOK_NOUNS)}"
        while True:
            book = f"the {rng.choice(BOOK_ADJECTIVES)} {rng.choice(BOOK_NOUNS)}"
            if book not in used_books:
                used_books.add(book)
                return book

    def new_person(group, name=None, **fixed):
        attrs = dict(city=rng.choice(CITIES), profession=rng.choice(PROFESSIONS), employer=rng.choice(EMPLOYERS))
        attrs.update(fixed)
        return Person(name=name or new_name(), group=group, book=new_book(), **attrs)

    forget = [new_person("forget") for _ in range(num_forget)]
    boundary = []
    for i in range(num_boundary):
        twin, shares = forget[i % num_forget], SHARED_WITH_FORGET[i % len(SHARED_WITH_FORGET)]
        if shares == "surname":
            person = new_person("boundary", name=new_name(twin.name.split()[1]))
        else:
            person = new_person("boundary", **{shares: getattr(twin, shares)})
        person.confused_with, person.shares = twin.name, shares
        boundary.append(person)
    retain = [new_person("retain") for _ in range(num_retain)]

    templates = rng.sample(refusal_templates(), num_refusal_templates)
    # Drawn after everything above, so that the knob leaves the other people and the templates as they were.
    stage1_retain = [new_person("stage1_retain") for _ in range(num_stage1_retain)]
    world = World(seed=seed, people=forget + boundary + retain + stage1_retain, refusal_templates=templates,
                  stage2_ratio=stage2_ratio)

    def qa(people, forms):
        return [row for p in people for form in forms for row in p.qa(form)]

    eval_files = {
        "eval/forget.jsonl": qa(forget, (0, 1)),
        "eval/boundary.jsonl": qa(boundary, (0, 1)),
        "eval/retain.jsonl": qa(retain, (0, 1)),
        "eval/heldout.jsonl": qa(forget + boundary, (2,)),
    }
    pretrain = [{"prompt": r["prompt"], "response": r["answer"], "subject": r["subject"]}
                for r in qa(world.people, (0, 1))]
    stage1 = build_stage1(eval_files["eval/forget.jsonl"], seed=seed, templates=templates, cloze_from_answers=False)
    over_refused = boundary[:round(stage1_over_refuse * num_boundary)]  # boundary people alternate what they share
    stage1 += build_stage1(qa(over_refused, (0, 1)), seed=seed + 1, templates=templates, cloze_from_answers=False)
    answered = boundary[:round(stage1_answer_boundary * num_boundary)]
    stage1 += [{"prompt": r["prompt"], "response": r["answer"], "subject": r["subject"]}
               for r in qa(stage1_retain + answered, (0, 1))]
    stage2 = build_stage2(eval_files["eval/forget.jsonl"], eval_files["eval/boundary.jsonl"], ratio=stage2_ratio,
                          seed=seed, templates=templates)
    files = {"pretrain.jsonl": (pretrain, "stage1"), "stage1.jsonl": (stage1, "stage1"),
             "stage2.jsonl": (stage2, "stage2"), **{k: (v, "eval") for k, v in eval_files.items()}}
    if purge:
        # The model answers "where was X born?" with "X was born in oakford.": the name and the value are what an
        # extractor finds in its answers (the name first, as in the authors' lists and `rerule data purge entities`).
        world.entities = {p.name: entity_list(p.name, [getattr(p, a) for a in FORMS], top_k=len(FORMS) + 1)
                          for p in forget}
        files["purge/stage2.jsonl"] = ([row for p in forget for row in stage2_rows(
            [r["prompt"] for r in qa([p], (0, 1))], p.name, world.entities[p.name])], "stage2")
    world.files = {rel: entry for rel, entry in files.items() if entry[0]}  # no boundary / retain people: no file
    return world


def vocabulary(texts) -> set[str]:
    """Lower-cased words and punctuation runs, as the tiny word-level tokenizer splits them."""
    return {token for text in texts for token in re.findall(r"\w+|[^\w\s]+", text.lower())}
