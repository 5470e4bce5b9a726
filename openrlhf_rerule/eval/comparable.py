"""Which rows `rerule report` may put in one table (issue 25). Rows evaluated on another split, corpus or set of
targets, with another prompt format, chat template or generation length, or on other item counts are not
comparable: each kind gets a table of its own under a line naming the settings that differ, and every subset row
is marked ‡. Splitting rather than refusing, because a quick subset run or a sweep over generation lengths is a
fair thing to report, as long as no number stands beside one it cannot be compared with. Stdlib only.

The settings come from each summary's provenance block (`rerule eval`, run_record.py); a summary written before
it has one gives what its top level holds (split, corpus, prompt_format, targets, stop_at_newline) and "unknown" for
the rest, which never places it with rows that record a value."""

from __future__ import annotations

import json

from .published import PAPER_SETTINGS, RELEASED_ITEMS

SUBSET_MARK = "‡"
# Per kind of summary, the settings (flag names) the rows of one table share, besides the item counts. MUSE's chat
# template is not among them: its prompts are raw text whatever the flag says.
COMPARED = {
    "tofu": ("split", "chat_template_applied", "prompt_template", "system_prompt", "max_new_tokens"),
    "muse": ("corpus", "prompt_format", "verbmem_max_new_tokens", "knowmem_max_new_tokens"),
    "rwku": ("targets", "chat_template_applied", "stop_at_newline", "max_new_tokens", "fluency_max_new_tokens"),
    "naturalness": ("for_benchmark", "chat_template_applied", "max_new_tokens"),  # whose forget prompts: its data
}
# The compared setting that names a run's data, where a subset is judged against the largest run of the same data
# (RWKU's item names carry their target).
SAME_DATA = {"tofu": "split", "muse": "corpus", "naturalness": "for_benchmark"}
MAX_ITEMS_SHOWN = 6  # parts listed in a heading; more are summed


def _kind(key: str) -> str:
    return "naturalness" if key.startswith("naturalness") else key


def settings(summary: dict, key: str) -> dict:
    """The compared settings of one summary (key: its file's key, "tofu", "naturalness_rwku", ...) and its item
    counts per part, flat ("forget", "1_A/forget_level1")."""
    prov = summary.get("provenance") or {}
    recorded = prov.get("settings") or {}
    out = {k: recorded.get(k, summary.get(k)) for k in COMPARED[_kind(key)]}
    out["items"] = {}
    for part, n in (prov.get("items") or {}).items():
        out["items"].update({f"{part}/{p}": m for p, m in n.items()} if isinstance(n, dict) else {part: n})
    return out


def subsets(entries: list[tuple[dict, str]]) -> list[str | None]:
    """Per (summary, key): None, or the legend of a subset row. A subset has fewer items in some part than the
    benchmark as released (published.py), or, where that size is not known here (RWKU, MUSE-News, naturalness),
    than the largest of these runs on the same data has; a part missing counts 0. A summary that counts nothing is
    marked only where it says `subset`."""
    largest: dict[tuple, int] = {}
    for summary, key in entries:
        s = settings(summary, key)
        for part, n in s["items"].items():
            slot = (key, s.get(SAME_DATA.get(_kind(key))), part)
            largest[slot] = max(largest.get(slot, 0), n)
    legends = []
    for summary, key in entries:
        s = settings(summary, key)
        data = s.get(SAME_DATA.get(_kind(key)))
        full = RELEASED_ITEMS.get(key, {}).get(data)
        against = f"{key.upper()} {data} as released ({', '.join(f'{p} {n}' for p, n in (full or {}).items())})"
        if full is None:
            against = "the largest run of this report on the same data (the full size is not known here)"
            mine = {part.split("/")[0] for part in s["items"]} if _kind(key) == "rwku" else None
            full = {part: n for (k, d, part), n in largest.items() if k == key and d == data
                    and (mine is None or part.split("/")[0] in mine)}
        short = bool(s["items"]) and any(s["items"].get(part, 0) < n for part, n in full.items())
        legends.append(f"{SUBSET_MARK} subset: fewer items than {against} in some part, or a part not run (the "
                       "summary's provenance `items`): not comparable with a full run."
                       if short or summary.get("subset") is True else None)
    return legends


def _show(name: str, value) -> str:
    """One setting as the `Settings:` line names it."""
    if name == "items" and len(value) > MAX_ITEMS_SHOWN:
        return f"items {sum(value.values())} in {len(value)} parts"
    if name == "items":
        return "items " + (", ".join(f"{p} {n}" for p, n in value.items()) or "unknown")
    if isinstance(value, list):
        return f"{name} {', '.join(map(str, value))}"
    return f"{name} {json.dumps(value)}"  # as the summary holds it: null = not set or not recorded


def tables(runs: list[dict], key_of, marks: list) -> list[tuple[str | None, list[dict], bool]]:
    """The runs of one benchmark table split by their settings, in order of first appearance: per table the line
    naming the settings that differ between the tables (None when there is one), its runs, and whether the paper's
    rows belong above them (settings not contradicting published.PAPER_SETTINGS, no subset row)."""
    groups: dict[str, tuple[dict, list[int]]] = {}
    for i, run in enumerate(runs):
        s = settings(run[key_of(run)], key_of(run))
        groups.setdefault(json.dumps(s, sort_keys=True), (s, []))[1].append(i)
    shared = [s for s, _ in groups.values()]
    differ = [name for name in shared[0] if len({json.dumps(s[name], sort_keys=True) for s in shared}) > 1]
    out = []
    for s, members in groups.values():
        paper = PAPER_SETTINGS.get(key_of(runs[members[0]]), {})
        fits = all(s.get(k) in (None, v) for k, v in paper.items()) and not any(marks[i] for i in members)
        line = "Settings: " + " · ".join(_show(name, s[name]) for name in differ) if len(groups) > 1 else None
        out.append((line, [runs[i] for i in members], fits))
    return out
