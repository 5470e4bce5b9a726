"""`rerule demo` and `rerule study` keep what they finished: each unit's record is written under OUT/units/ as it
finishes, a killed run resumes without redoing them and ends with the numbers of an uninterrupted run, bit for bit,
`--report_only` rebuilds the report from disk, and a rerun with other settings is refused (or starts over with
--restart)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrlhf_rerule.experiments import demo, study, units
from test_study import without_timings  # report.json minus timings (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """Stands in for a kill at the first unit (the fast tests train nothing)."""


def stop(*args, **kwargs):
    raise Stop


@pytest.mark.parametrize("module, patch, flags, changed", [
    (demo, "learn_world", ["--worlds", "1", "--steps", "3"], ["--worlds", "1", "--steps", "4"]),
    (study, "learn_unit", ["--quick", "--steps", "3"], ["--quick", "--steps", "3", "--levels", "0,1"]),
])
def test_a_rerun_with_other_settings_is_refused_until_restart(tmp_path, monkeypatch, capsys, module, patch, flags,
                                                               changed):
    monkeypatch.setattr(module, patch, stop)
    out = ["--out", str(tmp_path)]
    with pytest.raises(Stop):
        module.main(out + flags)
    saved = json.loads((tmp_path / units.SETTINGS).read_text())
    assert saved["argv"] == out + flags and "--device" in saved["settings"] and "--jobs" not in saved["settings"]
    (tmp_path / units.UNITS / "world0").mkdir(parents=True)  # as if a unit had finished
    capsys.readouterr()
    assert module.main(out + changed) == 2
    err = capsys.readouterr().err
    flag = changed[-2]
    assert len(err.splitlines()) == 1 and f"{flag} " in err and "--restart" in err and "Traceback" not in err
    assert "--device" not in err  # only the flags that differ are named
    with pytest.raises(Stop):  # the same settings: accepted (it resumes)
        module.main(out + flags + ["--no_progress" if module is demo else "--jobs=1"])
    with pytest.raises(Stop):  # --restart deletes the run and starts over with the new settings
        module.main(out + changed + ["--restart"])
    assert not (tmp_path / units.UNITS).exists()
    assert json.loads((tmp_path / units.SETTINGS).read_text())["argv"] == out + changed
    # Nothing finished: --report_only has nothing to report; without a run under --out it says so.
    assert module.main(out + ["--report_only"]) == 2
    assert "not finished" in capsys.readouterr().err
    assert module.main(["--out", str(tmp_path / "empty"), "--report_only"]) == 2
    assert units.SETTINGS in capsys.readouterr().err


def start(module, out, *flags):
    """`python -m openrlhf_rerule.experiments.<module> --out OUT flags...` with its output in OUT.<n>.log."""
    log = Path(f"{out}.{len(list(Path(out).parent.glob(Path(out).name + '.*.log')))}.log")
    proc = subprocess.Popen([sys.executable, "-m", f"openrlhf_rerule.experiments.{module}", "--out", str(out), *flags],
                            cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.log = log
    return proc


def finish(proc) -> str:
    assert proc.wait(timeout=600) == 0, proc.log.read_text()[-3000:]
    return proc.log.read_text()


def records(out: Path) -> dict:
    """Every unit record under OUT/units, less its timings, as text (NaN compares equal as text)."""
    return {str(p.relative_to(out)): json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"},
                                                sort_keys=True) for p in sorted((out / units.UNITS).rglob("*.json"))}


def report(out: Path) -> str:
    return json.dumps(without_timings(json.loads((out / "report.json").read_text())), sort_keys=True)


@pytest.mark.slow
@pytest.mark.parametrize("module, flags, kill_at", [
    # Two worlds, killed once world 0 is complete. 12 steps of 16 prompts are two passes over the 96: every hard
    # case of the first pass (the warm-up) is trained on again after it, so no hard-case reward is NaN (which the
    # report's intervals cannot take); replay starts after the warm-up.
    ("demo", ["--worlds", "2", "--seeds", "1", "--steps", "12", "--replay.warmup_steps", "6", "--replay.min_groups",
              "4", "--no_progress"], "world0/stage2/rerule/seed0"),
    # --quick with 9 steps (past the 8-step warm-up), killed at its 7th of 12 Stage 2 units (world 0's are done).
    ("study", ["--quick", "--steps", "9"], "world1/level0/rule"),
])
def test_a_killed_run_resumes_without_redoing_finished_units_and_ends_bit_identical(tmp_path, module, flags, kill_at):
    t0 = time.perf_counter()
    reference = start(module, tmp_path / "reference", *flags)  # uninterrupted, beside the killed one
    killed = start(module, tmp_path / "run", *flags)
    record = tmp_path / "run" / units.UNITS / f"{kill_at}.json"
    while not record.exists():
        assert killed.poll() is None, killed.log.read_text()[-3000:]
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "run" / units.UNITS).rglob("*.json")}
    assert record in finished and not (tmp_path / "run" / "report.json").exists()

    rebuilt = start(module, tmp_path / "run", "--report_only")  # before the resume: what it does with missing units
    if module == "demo":  # the complete world makes a report, the missing units are named in one line
        log = finish(rebuilt)
        assert "units are not finished (world1/learn" in log and "complete world(s) 0" in log
        partial = json.loads((tmp_path / "run" / "report.json").read_text())
        assert partial["settings"]["worlds"] == [0] and partial["units_missing"][0] == "world1/learn"
        assert "**Incomplete run**" in (tmp_path / "run" / "report.md").read_text()
    else:  # a study pairs arms and levels within a replicate: refused, one line
        assert rebuilt.wait(timeout=600) == 2
        assert "units are not finished" in rebuilt.log.read_text() and "Traceback" not in rebuilt.log.read_text()

    log = finish(start(module, tmp_path / "run", *flags))  # the same command: resumes
    for path, stat in finished.items():
        key = str(path.relative_to(tmp_path / "run" / units.UNITS))[:-len(".json")]
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stat and f"{key}: finished before, kept" in log
    finish(reference)
    assert records(tmp_path / "run") == records(tmp_path / "reference")
    assert report(tmp_path / "run") == report(tmp_path / "reference")
    assert json.loads((tmp_path / "run" / "report.json").read_text())["units_kept"] == len(finished)

    md = (tmp_path / "run" / "report.md").read_text()
    finish(start(module, tmp_path / "run", "--report_only"))
    assert report(tmp_path / "run") == report(tmp_path / "reference")
    drop_wall_time = lambda text: [line for line in text.splitlines() if not line.startswith("Wall time")]  # noqa: E731
    assert drop_wall_time((tmp_path / "run" / "report.md").read_text()) == drop_wall_time(md)
    print(f"{module}: kill, resume and two --report_only runs beside an uninterrupted run: "
          f"{time.perf_counter() - t0:.0f} s")
