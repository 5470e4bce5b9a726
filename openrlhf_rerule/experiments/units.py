"""Finished units of `rerule demo` and `rerule study`, kept on disk so that a killed run resumes where it stopped.

A unit (a learned world, a Stage 1 checkpoint, one arm's Stage 2 run with its evaluation) writes its result record
to OUT/units/<unit>.json the moment it finishes, atomically (a kill leaves it whole or absent). OUT/experiment.json,
written when the run starts, holds the command line and the settings that shape the results. A rerun with the same
settings reads the records of finished units instead of redoing them; one with other settings is refused, naming
the flags, unless --restart. Every unit seeds itself from its own identity (world seed, level, arm, Stage 2 seed)
and reads only its inputs' files, so a resumed run gives the numbers of an uninterrupted one, bit for bit."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from openrlhf_rerule.atomic import atomic_path
from openrlhf_rerule.cli_convention import UserError

SETTINGS = "experiment.json"
UNITS = "units"
# What --restart deletes: everything the demo and the study write under --out.
OWNED = (SETTINGS, UNITS, "report.md", "report.json", "plots", "world*")


def parse_args(parser, argv: list[str]):
    """(args, argv) of a demo or study command line. With --report_only the flags of the command that started
    --out's run are parsed first, so that it needs only --out (a flag given again wins, and must not change a
    setting)."""
    args = parser.parse_args(argv)
    if args.report_only:
        if args.restart:
            parser.error("argument --restart: not allowed with --report_only")
        path = Path(args.out) / SETTINGS
        if not path.is_file():
            raise UserError(f"--report_only: --out {args.out} holds no {parser.prog} run ({SETTINGS} is missing)")
        argv = json.loads(path.read_text())["argv"] + argv
        args = parser.parse_args(argv)
        args.restart = False  # never from the saved flags (an abbreviation of it there would delete the run)
    return args, argv


class Units:
    """The finished-unit store of one --out. `settings`: flag -> value, everything that shapes the results (not
    --out, --jobs, --progress)."""

    def __init__(self, out: str | Path, prog: str, argv: list[str], settings: dict, *, restart: bool = False,
                 report_only: bool = False):
        self.out, self.prog, self.report_only = Path(out), prog, report_only
        self.kept, self.missing = [], []
        settings = json.loads(json.dumps(settings))  # as it reads back from disk (tuples become lists)
        if restart:
            for pattern in OWNED:
                for path in self.out.glob(pattern):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        path = self.out / SETTINGS
        if path.is_file():
            saved = json.loads(path.read_text())
            changed = [f"{flag} {json.dumps(saved['settings'].get(flag))} there, {json.dumps(settings.get(flag))} now"
                       for flag in dict.fromkeys([*saved["settings"], *settings])
                       if saved["settings"].get(flag) != settings.get(flag)]
            if changed:
                raise UserError(f"--out {out} holds a {prog} run with other settings ({'; '.join(changed)}): give "
                                "that run's flags to resume it, or add --restart to delete it and start over")
            self.argv = saved["argv"]
        else:
            self.argv = [a for a in argv if a != "--restart"]
            self.out.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({"command": f"{prog} {shlex.join(self.argv)}", "argv": self.argv,
                                           "settings": settings}, indent=1))
        self.command = f"{prog} {shlex.join(self.argv)}"  # the command that made the results, resumed or not

    def get(self, key: str) -> dict | None:
        """Unit `key`'s record if it finished before (it is not redone), else None."""
        path = self.out / UNITS / f"{key}.json"
        if path.is_file():
            self.kept.append(key)
            if not self.report_only:
                print(f"{self.prog}: {key}: finished before, kept ({path})", flush=True)
            return json.loads(path.read_text())
        if self.report_only:
            self.missing.append(key)
        return None

    def put(self, key: str, record: dict) -> dict:
        """Save a unit's record as soon as it finishes; returns it as a resumed run would read it back, so the
        results are the same whether or not the run was interrupted."""
        text = json.dumps(record, indent=1)
        with atomic_path(self.out / UNITS / f"{key}.json") as tmp:
            tmp.write_text(text)
        return json.loads(text)

    def missing_line(self, total: int) -> str:
        """One line naming the units that are not finished (the first few)."""
        names = ", ".join(self.missing[:4]) + (", ..." if len(self.missing) > 4 else "")
        return f"{len(self.missing)} of {total} units are not finished ({names})"
