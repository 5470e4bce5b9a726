"""`rerule report RUN_DIR... [--out DIR] [--hide_published]`: side-by-side markdown tables in the units and column
order of the papers' tables (ReRULE Table 1 for RWKU, Table 2 for MUSE-Books, Table 5 for TOFU; RWKU's own
paper for its MIA and utility columns), one row per run directory, under the published rows of the ReRULE paper;
plus PNG plots of the trade-offs, where a picture reads better than a table (forget vs retain).
RWKU runs of one method name, each on a single target, become one row: the unweighted mean over targets.
`--base NAME` adds PURGE's headline numbers against the base model's runs (eval/headline.py); `--tokenizer PATH`
adds the tokens of each model's unlearning data per target (eval/data_tokens.py). Every report ends with what each
run trained on against the evaluation probes (eval/data_overlap.py): rows dropped as probe copies, rows trained as
released that overlap a probe (the row marked §), or "unknown".
Flags use the underscore spelling; the hyphen spelling is accepted too."""

import json
import sys
from pathlib import Path

from openrlhf_rerule.atomic import atomic_path
from openrlhf_rerule.cli_convention import Parser, UserError

from . import comparable, data_overlap
from .data_tokens import count_tokens, load_tokenizer
from .headline import headline_rows
from .io import EvalDataError, write_json_atomic
from .published import PAPER, PAPER_SETTINGS, PUBLISHED
from .run_record import model_of, same_model

BENCHMARKS = ("rwku", "muse", "tofu")
NATURALNESS = ("naturalness", *(f"naturalness_{b}" for b in BENCHMARKS))  # untagged, then one per benchmark
PROXY_MARK = "†"
PROXY_NOTE = f"{PROXY_MARK} offline keyword proxy (`--judge proxy`), not a judge: a quick check, not comparable " \
             "with published naturalness numbers."
RETAIN_MARK = "¶"
RETAIN_NOTE = f"{RETAIN_MARK} Forget Quality against a retain run whose settings could not be checked (TOFU's " \
              "eval_log_forget.json records none; a summary written before provenance existed): its split, prompt " \
              "format, generation length and tokenizer may not be this row's."


def load_runs(run_dirs) -> list[dict]:
    """One dict per run: {"name", "dir", key: summary} for every {key}_summary.json present, key one of
    BENCHMARKS or NATURALNESS (naturalness_rwku is the naturalness of the RWKU model, and so on)."""
    runs = []
    for d in run_dirs:
        d = Path(d)
        if not d.is_dir():
            raise EvalDataError(f"{d}: run directory not found")
        run = {"dir": str(d), "name": d.resolve().name}
        for key in BENCHMARKS + NATURALNESS:
            path = d / f"{key}_summary.json"
            if path.is_file():
                try:
                    run[key] = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError as e:
                    raise EvalDataError(f"{path}: not valid JSON ({e})") from None
                if not isinstance(run[key], dict):
                    raise EvalDataError(f"{path}: expected a JSON object (a `rerule eval` summary)")
                run["name"] = run[key].get("name") or run["name"]
        if not any(k in run for k in BENCHMARKS + NATURALNESS):
            raise EvalDataError(f"{d}: no *_summary.json from `rerule eval` in this directory")
        models = [(k, model_of(run[k])) for k in BENCHMARKS + NATURALNESS if k in run and model_of(run[k])]
        other = next((m for m in models if not same_model(m[1], models[0][1])), None)
        if other:  # one row = one model: a reused --out would mix them
            raise EvalDataError(f"{d}: {models[0][0]}_summary.json evaluates {models[0][1][0]}, {other[0]}"
                                f"_summary.json evaluates {other[1][0]}: one run directory per model (`rerule eval "
                                "--overwrite_out` replaces another model's results)")
        runs.append(run)
    return runs


def _mean_summaries(summaries: list[dict]) -> dict:
    """Each numeric metric as the mean over the targets of the per-target value; a metric some target lacks is
    left out (shown "-"), not averaged over fewer targets."""
    merged = {}
    for key, value in summaries[0].items():
        values = [s.get(key) for s in summaries]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = sum(values) / len(values)
        elif all(v == value for v in values) and not isinstance(value, (dict, list)):
            merged[key] = value  # settings every target shares (scorer, stop_at_newline, ...)
    return merged


def average_rwku_targets(runs: list[dict]) -> list[dict]:
    """RWKU unlearns one target per run (RULE and ReRULE: a Stage 1 and a Stage 2 per target), and its results are
    averaged over targets: runs of one method name, each evaluated on a single target, become one row whose every
    metric is the unweighted mean over targets of the per-target metric (as the RULE release's make_table.py does:
    per-target scores, then a mean per metric). The row's name says how many targets went in."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        single = len((run.get("rwku") or {}).get("targets") or []) == 1 and not {"muse", "tofu"} & run.keys()
        groups.setdefault(run["name"] if single else f"\0{id(run)}", []).append(run)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        targets = [m["rwku"]["targets"][0] for m in members]
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            dirs = [m["dir"] for m in members if m["rwku"]["targets"][0] == twice[0]]
            raise EvalDataError(f"runs named '{members[0]['name']}' evaluate target {twice[0]} twice "
                                f"({', '.join(dirs)}): give each method its own `rerule eval --name`")
        merged = {"name": f"{members[0]['name']} (mean of {len(members)} targets)", "targets": targets,
                  "dir": ", ".join(m["dir"] for m in members), "members": [m["dir"] for m in members],
                  "method": members[0]["name"]}
        for key in ("rwku", "naturalness_rwku"):
            if all(key in m for m in members):
                own = [{k: v for k, v in comparable.settings(m[key], key).items() if k not in ("targets", "items")}
                       for m in members]
                odd = next((i for i, o in enumerate(own) if o != own[0]), None)
                if odd is not None:  # a mean over targets of numbers made with other settings means nothing
                    differ = [k for k in own[0] if own[0][k] != own[odd][k]]
                    raise EvalDataError(
                        f"runs named '{members[0]['name']}' differ in {', '.join(differ)} ({members[0]['dir']}: "
                        f"{', '.join(str(own[0][k]) for k in differ)}; {members[odd]['dir']}: "
                        f"{', '.join(str(own[odd][k]) for k in differ)}): not averaged over targets; re-evaluate "
                        "them alike or give each setting its own `rerule eval --name`")
                items = {}  # RWKU counts per target already; naturalness per file, so under its target
                for target, m in zip(targets, members):
                    counted = (m[key].get("provenance") or {}).get("items") or {}
                    items.update(counted if key == "rwku" else {target: counted})
                settings = (members[0][key].get("provenance") or {}).get("settings") or {}
                merged[key] = {**_mean_summaries([m[key] for m in members]), "targets": targets,
                               "provenance": {"settings": settings, "items": items}}
        out.append(merged)
    return out


def fmt(value, scale=1.0, digits=1) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value * scale:.{digits}f}"


def fmt_fq(value) -> str:
    """As TOFU tables print Forget Quality: 4 decimals, scientific notation below 1e-3 (4.4883e-06)."""
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.4e}"


def table(header: list[str], rows: list[list[str]], groups: str | None = None, note: str | None = None) -> str:
    lines = ([groups] if groups else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows] + ([note] if note else []))


def naturalness_cells(run, key: str, with_all: bool) -> tuple[list[str], bool]:
    """Read / Help / Truth (/ All) of one naturalness summary, marked when the offline proxy produced them;
    and whether it did."""
    nat = run.get(key, {})
    proxy = nat.get("scorer") == "proxy"
    cells = [fmt(nat.get(k)) for k in ("readability", "helpfulness", "truthfulness") + (("all",) if with_all else ())]
    return [c + PROXY_MARK if proxy and c != "-" else c for c in cells], proxy


def rwku_table(runs) -> str:
    """ReRULE Table 1: Forget Quality (down) FB QA AA All | Forget Naturalness (up) Read Help Truth All |
    Retain Quality (up) FB QA All. ROUGE-L recall x100; All = the mean of the level scores."""
    rows, proxy = [], False
    for run in runs:
        s = run["rwku"]
        nat, is_proxy = naturalness_cells(run, "naturalness_rwku", with_all=True)
        proxy |= is_proxy
        rows.append([run["name"]] + [fmt(s.get(k), 100) for k in
                                     ("forget_level1", "forget_level2", "forget_level3", "forget_all")]
                    + nat + [fmt(s.get(k), 100) for k in ("neighbor_level1", "neighbor_level2", "neighbor_all")])
    header = ["Methods", "FB", "QA", "AA", "All", "Read", "Help", "Truth", "All", "FB", "QA", "All"]
    groups = "**RWKU** (ReRULE paper layout) — Forget Quality (↓): FB QA AA All · Forget Naturalness (↑): " \
             "Read Help Truth All · Retain Quality (↑): FB QA All · All = mean of the level scores"
    return table(header, rows, groups, PROXY_NOTE if proxy else None)


# RWKU paper layout: key, label, scale (our summary -> the paper's unit)
RWKU_PAPER_COLUMNS = [
    ("forget_level1", "FB", 100), ("forget_level2", "QA", 100), ("forget_level3", "AA", 100),
    ("forget_all_pooled", "All", 100), ("neighbor_level1", "FB", 100), ("neighbor_level2", "QA", 100),
    ("neighbor_all_pooled", "All", 100),
    ("mia_forget_loss", "FM", -100), ("mia_retain_loss", "RM", -100),  # mean log-likelihood -> NLL x 100
    ("mmlu_acc", "Gen", 100), ("bbh_em", "Rea", 100), ("truthfulqa_mc1", "Tru", 100), ("triviaqa_f1", "Fac", 100),
    ("fluency_entropy", "Flu", 100),
]


def rwku_paper_table(runs) -> str:
    """RWKU's own layout: Forget Set FB QA AA All | Neighbor Set FB QA All | MIA Set FM RM | Utility Set Gen Rea
    Tru Fac Flu. All = the mean over every probe (pooled); MIA = NLL x 100; the rest x 100."""
    rows = [[run["name"]] + [fmt(run["rwku"].get(k), scale) for k, _, scale in RWKU_PAPER_COLUMNS] for run in runs]
    groups = "**RWKU** (RWKU paper layout) — Forget Set (↓): FB QA AA All · Neighbor Set (↑): FB QA All · " \
             "MIA Set: FM (↑) RM (↓), NLL × 100 · Utility Set (↑): Gen (MMLU) Rea (BBH) Tru (TruthfulQA MC1) " \
             "Fac (TriviaQA F1) Flu (2/3-gram entropy × 100) · All = mean over all probes"
    return table(["Methods"] + [label for _, label, _ in RWKU_PAPER_COLUMNS], rows, groups)


def muse_table(runs) -> str:
    """ReRULE Table 2: Forget Quality (down) Verb. Know. | Forget Naturalness (up) Read Help Truth | Retain
    Quality Utility; then PrivLeak, which that table does not print."""
    rows, proxy = [], False
    for run in runs:
        s = run["muse"]
        nat, is_proxy = naturalness_cells(run, "naturalness_muse", with_all=False)
        proxy |= is_proxy
        rows.append([run["name"], fmt(s.get("verbmem_f")), fmt(s.get("knowmem_f"))] + nat
                    + [fmt(s.get("utility")), fmt(s.get("privleak"))])
    header = ["Methods", "Verb.", "Know.", "Read", "Help", "Truth", "Utility", "PrivLeak"]
    groups = "**MUSE** (ReRULE paper layout) — Forget Quality (↓): Verb. Know. · Forget Naturalness (↑): Read Help " \
             "Truth · Retain Quality (↑): Utility (KnowMem on retain) · PrivLeak (→ 0, not in that table)"
    return table(header, rows, groups, PROXY_NOTE if proxy else None)


def tofu_table(runs) -> str:
    """ReRULE Table 5: FQ (up) MU (up) F-RL (down), 4 decimals; FQ marked where its retain run's settings are
    unchecked."""
    rows = []
    for run in runs:
        s, against = run["tofu"], retain_cell(run["tofu"])
        rows.append([run["name"], fmt_fq(s.get("forget_quality")) + (RETAIN_MARK if RETAIN_MARK in against else ""),
                     fmt(s.get("model_utility"), digits=4), fmt(s.get("forget_rougeL_recall"), digits=4), against])
    splits = sorted({run["tofu"].get("split", "") for run in runs})
    note = RETAIN_NOTE if any(RETAIN_MARK in r[1] for r in rows) else None
    return table(["Model", "FQ (↑)", "MU (↑)", "F-RL (↓)", "FQ against"], rows, f"**TOFU** ({', '.join(splits)})",
                 note)


def retain_cell(summary: dict) -> str:
    """Which retain run Forget Quality compared against: its folder and file, the start of its sha256 (two files of
    one name differ there), on how many forget items, and whether its settings were checked."""
    if not summary.get("retain_run"):
        return "-"
    block = (summary.get("provenance") or {}).get("retain_run") or {}
    path = Path(block.get("path") or summary["retain_run"])
    sha = f" @{block['sha256'][:8]}" if block.get("sha256") else ""
    unchecked = "" if block.get("settings_checked") else \
        f", {block.get('note') or 'settings unchecked'}{RETAIN_MARK}"
    return f"{path.parent.name}/{path.name}{sha} ({summary.get('forget_quality_n', '?')} items{unchecked})"


def naturalness_table(runs) -> str:
    """Every naturalness run of every run directory, with the benchmark it belongs to and its scorer."""
    rows, proxy = [], False
    for run in runs:
        for key in NATURALNESS:
            if key in run:
                cells, is_proxy = naturalness_cells(run, key, with_all=True)
                proxy |= is_proxy
                rows.append([run["name"], run[key].get("for_benchmark") or "-"] + cells
                            + [str(run[key].get("scorer", ""))])
    return table(["Methods", "For", "Read", "Help", "Truth", "All", "Scorer"], rows, "**Forget naturalness** (↑)",
                 PROXY_NOTE if proxy else None)


# table builder -> the key a run must have to get a row; published rows only where the paper gives them
TABLES = [(rwku_table, "rwku", True), (rwku_paper_table, "rwku", False), (muse_table, "muse", True),
          (tofu_table, "tofu", True), (naturalness_table, NATURALNESS, False)]
# bench -> (x key, x label, y key, y label): forgetting against what must be kept.
TRADEOFFS = {"rwku": ("forget_all", "Forget ROUGE-L All (↓)", "neighbor_all", "Neighbour ROUGE-L All (↑)"),
             "muse": ("knowmem_f", "KnowMem forget (↓)", "utility", "Utility: KnowMem retain (↑)"),
             "tofu": ("forget_rougeL_recall", "Forget ROUGE-L (↓)", "model_utility", "Model Utility (↑)")}


def headline_table(rows: list[dict], base_name: str) -> str:
    """PURGE's abstract numbers, per target and as the mean over targets (definitions: eval/headline.py)."""
    cells = [[r["name"], r["target"], fmt(r["effectiveness"], 100), fmt(r["effectiveness_points"]),
              fmt(r["utility_kept"], 100), fmt(r["fluency_change"], 100, 2), fmt(r["aa_robustness"], 100, 2)]
             for r in rows]
    groups = f"**PURGE headline numbers** against `{base_name}` on the same target (PURGE, Phi-3: 11% effective, " \
             "98% utility, fluency +5.48%, adversarial robustness +12.02%) — Eff. % = 1 − forget/base, forget = " \
             "mean of FB QA AA · Eff. pts = the drop in ROUGE-L points · Utility % = mean of Gen Rea Tru Fac Flu " \
             "over base · Flu % and AA % = change over base (AA: 1 − AA/base) · the paper's own definitions " \
             "were not readable: docs/purge.md#evaluation"
    return table(["Methods", "Target", "Eff. %", "Eff. pts", "Utility %", "Flu %", "AA %"], cells, groups)


def data_token_rows(runs: list[dict], tokenizer, compare=()) -> list[dict]:
    """Per method, the tokens of each target's unlearning data (`rerule eval rwku --unlearning_data`), then
    the mean over targets; `x fewest` = a method's mean over the smallest method mean. `compare`: (name, target,
    file, ...) entries of `--compare_data`, data no run here trained on (RULE's files for the same target: the
    comparison behind PURGE's "46x fewer tokens"), counted the same way."""
    methods: dict[str, list[dict]] = {}
    for run in runs:
        files = (run.get("rwku") or {}).get("unlearning_data")
        if files:
            count = count_tokens(tokenizer, files)
            methods.setdefault(run["name"], []).append({"target": ", ".join(run["rwku"].get("targets") or []),
                                                        **count})
    if not methods:
        raise EvalDataError("--tokenizer: no RWKU run records its unlearning data (`rerule eval rwku "
                            "--unlearning_data FILE...`)")
    ran = set(methods)
    for name, target, *files in compare:
        if name in ran:
            raise EvalDataError(f"--compare_data {name}: a method of the runs has this name; give the data another")
        methods.setdefault(name, []).append({"target": target, **count_tokens(tokenizer, files)})
    rows = []
    for name, per in methods.items():
        mean = {"name": name, "target": f"mean of {len(per)} targets" if len(per) > 1 else per[0]["target"],
                "rows": sum(p["rows"] for p in per) / len(per), "tokens": sum(p["tokens"] for p in per) / len(per),
                "method_mean": True, "n_targets": len(per)}
        rows += ([{"name": name, **p} for p in per] if len(per) > 1 else []) + [mean]
    fewest = min(r["tokens"] for r in rows if r.get("method_mean"))
    for r in rows:
        r["x_fewest"] = r["tokens"] / fewest if fewest and r.get("method_mean") else None
    return rows


def data_token_table(rows: list[dict]) -> str:
    digits = [1 if r.get("n_targets", 1) > 1 else 0 for r in rows]  # a mean over targets may be fractional
    cells = [[r["name"], r["target"], fmt(r["rows"], digits=d), fmt(r["tokens"], digits=d), fmt(r["x_fewest"])]
             for r, d in zip(rows, digits)]
    groups = "**Unlearning data per target** (tokens of the training files, each distinct row once; rule and " \
             "files: docs/evaluation.md#unlearning-data-tokens) — × fewest = method mean over the smallest"
    return table(["Methods", "Target", "Rows", "Tokens", "× fewest"], cells, groups)


def plot_tradeoff(runs, bench, out_path, settings: str | None = None) -> Path:
    """One scatter of forgetting against retention; `settings`: the line naming what sets these runs apart from
    another plot's (comparable.tables), as its subtitle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xkey, xlabel, ykey, ylabel = TRADEOFFS[bench]
    fig, ax = plt.subplots(figsize=(5, 4))
    for run in runs:
        x, y = run[bench].get(xkey), run[bench].get(ykey)
        if x is not None and y is not None:
            ax.scatter(x, y)
            ax.annotate(run["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    ax.set_title(f"{bench.upper()}: forgetting vs retention" + (f"\n{settings}" if settings else ""),
                 fontsize=10 if settings else None)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:  # the temporary name has no .png suffix: say the format
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(out_path)


def render(runs, published: bool = True) -> str:
    """The benchmark tables, each split where its rows' settings differ (comparable.py: a line under the caption
    names them) with the paper's rows above the rows of its settings; a subset row is marked ‡ and a run that
    trained rows overlapping a probe (data_overlap) §, with the legend under every table that shows one."""
    parts = []
    runs = [{**r, "name": r["name"] + data_overlap.MARK} if r.get("training_data", {}).get("marked") else r
            for r in runs]
    for make, keys, with_published in TABLES:
        keys = (keys,) if isinstance(keys, str) else keys
        # one entry per summary: each naturalness summary of a run is compared on its own settings
        present = [{**{k: v for k, v in r.items() if k not in keys}, key: r[key]} for r in runs for key in keys
                   if key in r]
        if not present:
            continue
        key_of = lambda run: next(k for k in keys if k in run)  # noqa: E731
        legends = comparable.subsets([(r[key_of(r)], key_of(r)) for r in present])
        present = [{**r, "name": r["name"] + comparable.SUBSET_MARK, "subset_legend": legend} if legend else r
                   for r, legend in zip(present, legends)]
        paper = [r for r in PUBLISHED if any(k in r for k in keys)] if published and with_published else []
        placed = False
        for line, group, fits in comparable.tables(present, key_of, legends):
            head, rest = make((paper if fits else []) + group).split("\n", 1)
            placed |= fits
            notes = [r["subset_legend"] for r in group if "subset_legend" in r][:1]
            notes += [data_overlap.NOTE] if any(r.get("training_data", {}).get("marked") for r in group) else []
            parts.append("\n".join([head] + ([line] if line else []) + [rest] + notes))
        if paper and not placed:
            wanted = ", ".join(f"{k} {v}" for k, v in PAPER_SETTINGS[keys[0]].items())
            parts[-1] += f"\n*{PAPER}* rows not shown: no table here has the paper's settings ({wanted}, the full " \
                         "benchmark)"
    return "\n\n".join(parts) + "\n"


def build_parser() -> Parser:
    parser = Parser(prog="rerule report", description=__doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="output directories of `rerule eval`; RWKU runs sharing a name, one target each, are "
                             "averaged over targets into one row")
    parser.add_argument("--out", default=None, help="also write report.md, report.json and PNG plots here")
    parser.add_argument("--hide_published", action="store_true",
                        help=f"leave out the rows of published numbers ({PAPER})")
    parser.add_argument("--base", default=None, metavar="NAME",
                        help="the method name (`rerule eval --name`) of the base model's RWKU runs: adds PURGE's "
                             "headline numbers (effectiveness, utility kept, fluency and AA change) of every other "
                             "method against it, per target and averaged over targets")
    parser.add_argument("--tokenizer", default=None, metavar="PATH",
                        help="a local tokenizer.json (or a model directory holding one): adds the tokens of each "
                             "method's unlearning data per target, from the files `rerule eval rwku "
                             "--unlearning_data` recorded")
    parser.add_argument("--compare_data", nargs="+", action="append", default=[], metavar="NAME TARGET FILE",
                        help="with --tokenizer: one more row of the token table, NAME's data for TARGET (files "
                             "no run here trained on, e.g. RULE's converted Stage 1 and Stage 2 files of the same "
                             "target); repeat per target. Counted as the runs' data")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    extra, extra_json = [], {}
    try:
        loaded = load_runs(args.runs)
        runs = average_rwku_targets(loaded)
        trained = data_overlap.overlap_rows(loaded, runs, args.base)
        overlap = [data_overlap.overlap_table(trained, table)] if trained else []
        if args.base is not None:
            extra_json["headline"] = headline_rows(loaded, args.base)
            extra.append(headline_table(extra_json["headline"], args.base))
        if args.compare_data and args.tokenizer is None:
            raise UserError("--compare_data needs --tokenizer (the data are counted in tokens)")
        if args.tokenizer is not None:
            bad = next((c for c in args.compare_data if len(c) < 3), None)
            if bad is not None:
                raise UserError(f"--compare_data {' '.join(bad)}: expected NAME TARGET FILE [FILE...]")
            extra_json["unlearning_data"] = data_token_rows(loaded, load_tokenizer(args.tokenizer), args.compare_data)
            extra.append(data_token_table(extra_json["unlearning_data"]))
    except (EvalDataError, UserError) as e:  # UserError: a data file that does not read (file, line, field)
        print(f"rerule report: {e}", file=sys.stderr)
        return 2
    text = render(runs, published=not args.hide_published) + "".join(f"\n{part}\n" for part in overlap + extra)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        # each file whole or not replaced: a killed report never leaves half a table behind
        with atomic_path(out / "report.md") as tmp:
            tmp.write_text(text, encoding="utf-8")
        write_json_atomic(out / "report.json", runs)
        if extra_json:
            write_json_atomic(out / "report_purge.json", extra_json)
        for bench in TRADEOFFS:  # as the tables: runs of other settings never share a plot
            present = [r for r in runs if bench in r]
            groups = comparable.tables(present, lambda r: bench, [False] * len(present)) if present else []
            for k, (line, group, _) in enumerate(groups, 1):
                name = f"{bench}_tradeoff.png" if len(groups) == 1 else f"{bench}_tradeoff_{k}.png"
                print(f"plot: {plot_tradeoff(group, bench, out / name, line)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
