"""Robustness of space files (issue 15): a corpus of hostile inputs through the real command line.

Each input is written to a fresh folder and given to ``automl spaces validate FILE`` and to a one-trial
``automl search --space FILE --trials 1`` (its own ledger and results folder), each in a subprocess with a
timeout; the child's peak resident memory comes from ``wait4`` (and a child past 2 GiB is stopped). Each
run's outcome is one of:

- ``clear_error``: exit status 2 and one line, ``error: FILE[:LINE]: ...`` (for a command-line value: naming
  the option);
- ``warned_not_run``: ``validate`` accepted a file that names code to import, said so, and ran nothing;
- ``accepted``: exit status 0 on an odd input that is fine to accept (a newline in an NNI parameter's name, a
  ConfigSpace ``q`` past int64, which ConfigSpace ignores);
- ``unclear_error``: exit status 2 but not one line naming the file;
- ``traceback``: a Python traceback, or another exit status (a crash, a kill);
- ``accepted_wrongly``: exit status 0 on an input that cannot work (``validate`` said ok without a word
  about code it names, a search "finished" with every trial failed);
- ``hang``: past the timeout; ``memory_exceeded``: past 2 GiB;
- ``code_executed``: the code the file names ran (its marker file appeared, or the folder it names vanished);
- ``wrote_outside``: the search wrote outside its results folder (a ``name:`` such as ``../../x``).

Categories: alias bombs, size bombs, overflowing numbers, wrong types, code-executing builders,
path-escaping names, NNI JSON (and ConfigSpace JSON), invalid encodings, inputs accepted that cannot work.

    .venv/bin/python benchmarks/robustness_spaces.py [--quick]      # prints the JSON result
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py

import psutil
from machine import ForeignCpu, git_commit

AUTOML = str(Path(sys.executable).parent / "automl")
MB = 1024 * 1024
#: a child past this much resident memory is stopped (the issue's bound is "well under 1 GB")
MEMORY_CAP = 2048 * MB
VALIDATE_TIMEOUT = 30.0
SEARCH_TIMEOUT = 60.0
OUTCOMES = ("clear_error", "warned_not_run", "accepted", "unclear_error", "traceback", "accepted_wrongly", "hang",
            "memory_exceeded", "code_executed", "wrote_outside")

# a small valid space around which hostile parts are put (digits + mlp: a trial trains in about a second)
BASE = """name: {name}
task: digits
builder: {builder}
objectives: {{accuracy: max}}
budget: {{name: epochs, min: 1, max: 1}}
space:
  model: {model}
{extra}"""
MLP = "{layers: {type: constant, value: [{width: 8, activation: relu}]}}"


@dataclass
class Case:
    """One hostile input: the file (relative to the case's working folder) and what would show it ran code."""

    category: str
    name: str
    filename: str
    content: bytes
    #: files to write beside it (modules a builder names), relative to the working folder
    beside: dict[str, str] = field(default_factory=dict)
    #: extra arguments to ``automl search``
    search_args: tuple[str, ...] = ()
    #: run ``validate`` too (a case about a command-line value only searches)
    validate: bool = True
    #: a file whose appearance means the code ran ({work} is the working folder)
    marker: str | None = None
    #: a folder whose disappearance means the code ran ({work})
    victim: str | None = None
    #: odd but fine to accept (``validate`` may say ok)
    acceptable: bool = False


def _space(name: str = "x", builder: str = "mlp", extra: str = "", model: str = MLP) -> str:
    return BASE.format(name=name, builder=builder, extra=extra, model=model)


def _text(category: str, name: str, text: str, filename: str = "space.yaml", **kw: Any) -> Case:
    return Case(category, name, filename, text.encode(), **kw)


def alias_bomb(indent: str = "    ", levels: int = 9, width: int = 10) -> str:
    """``levels`` lines, each a list of ``width`` aliases of the line before: ``width ** levels`` values."""
    lines = [f"{indent}l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"{indent}l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def corpus() -> list[Case]:
    """Every hostile input, by category (see the module)."""
    cases: list[Case] = []
    add = cases.append

    # -- alias bombs: KBs of text that expand to billions of values -------------------------------
    add(_text("alias_bombs", "billion_laughs_in_space", _space(extra="  bomb:\n" + alias_bomb())))
    add(_text("alias_bombs", "billion_laughs_in_choices", _space(
        extra="  bomb:\n    type: categorical\n    choices:\n      - " + alias_bomb("        ").lstrip())))
    add(_text("alias_bombs", "billion_laughs_top_level", _space() + "bomb:\n" + alias_bomb("  ")))
    add(_text("alias_bombs", "recursive_alias", _space(extra="  loop: &a [*a]\n")))
    add(_text("alias_bombs", "recursive_mapping_alias", "name: x\nspace: &s\n  a: *s\n"))

    # -- size bombs: declared sizes that are cheap to write and expensive to build ---------------
    add(_text("size_bombs", "repeat_max_1e9", _space(extra="  many: {type: repeat, min: 0, max: 1.0e9, "
                                                          "item: {w: {type: int, low: 1, high: 8}}}\n")))
    add(_text("size_bombs", "graph_max_nodes_1e6", _space(extra="  cell: {type: graph, inputs: [a], ops: {neg: 1}, "
                                                               "max_nodes: 1.0e6}\n")))
    add(_text("size_bombs", "graph_arity_1e6", _space(extra="  cell: {type: graph, inputs: [a], ops: {wide: 1000000}, "
                                                           "max_nodes: 4}\n")))
    add(_text("size_bombs", "nested_repeat_1000x1000", _space(extra="  outer:\n    type: repeat\n    min: 1000\n"
                                                                   "    max: 1000\n    item:\n      inner: {type: "
                                                                   "repeat, min: 1000, max: 1000, item: {w: {type: "
                                                                   "bool}}}\n")))
    add(_text("size_bombs", "flow_nesting_5000", _space(extra="  deep: {type: constant, value: " + "[" * 5000 +
                                                               "]" * 5000 + "}\n")))
    add(_text("size_bombs", "block_nesting_300", _space(extra="".join("  " * (i + 1) + f"g{i}:\n" for i in range(300))
                                                         + "  " * 301 + "a: {type: bool}\n")))
    add(_text("size_bombs", "expression_nesting", _space(extra='  a: {type: bool}\n  b: {type: bool, when: "' +
                                                              "not " * 2400 + 'a"}\n')))
    add(_text("size_bombs", "file_of_4_mb", _space() + "# padding\n" * 400_000))
    add(_text("size_bombs", "fifty_thousand_choices", _space(extra="  c: {type: categorical, choices: [" +
                                                                  ", ".join(map(str, range(50_000))) + "]}\n")))

    # -- numbers that overflow ---------------------------------------------------------------------
    for name, spec in [("int_bound_10e400", "{type: int, low: 0, high: %d}" % 10**400),
                       ("int_high_past_int64", "{type: int, low: 0, high: %d}" % 2**70),
                       ("int_of_5000_digits", "{type: constant, value: %s}" % ("9" * 5000)),
                       ("lognormal_exp_overflow", "{type: normal, mu: 1000, sigma: 1, log: true}"),
                       ("float_width_overflow", "{type: float, low: -1.0e308, high: 1.0e308}"),
                       ("float_step_underflow", "{type: float, low: 0, high: 1, step: 1.0e-320}"),
                       ("normal_sigma_1e308", "{type: normal, mu: 0, sigma: 1.0e308}"),
                       ("normal_step_zero", "{type: normal, mu: 0, sigma: 1, step: 0}")]:
        add(_text("overflow_numbers", name, _space(extra=f"  p: {spec}\n")))
    add(_text("overflow_numbers", "budget_max_1e300", _space().replace("max: 1}", "max: 1.0e300}")))

    # -- wrong types -------------------------------------------------------------------------------
    for name, extra in [("type_is_a_mapping", "  p: {type: {x: 1}, low: 0}\n"),
                        ("type_is_a_list", "  p: {type: [float], low: 0}\n"),
                        ("when_true_on_a_group", "  g:\n    when: true\n    a: {type: bool}\n"),
                        ("choices_a_string", "  p: {type: categorical, choices: abc}\n"),
                        ("graph_inputs_repeated", "  cell: {type: graph, inputs: [q, q, q], ops: {add: 2}, "
                                                  "max_nodes: 3}\n"),
                        ("choices_equal_in_python", "  p: {type: categorical, choices: [1, true, 1.0]}\n"),
                        ("prior_type_a_list", "  p: {type: float, low: 0, high: 1, prior: {type: [normal]}}\n"),
                        ("graph_ops_nested_lists", "  cell: {type: graph, inputs: [q], ops: [[neg]], max_nodes: 2}\n"),
                        ("impossible_date", "  p: {type: constant, value: 2001-13-45}\n")]:
        add(_text("wrong_types", name, _space(extra=extra)))
    add(_text("wrong_types", "space_is_a_list", "name: x\nspace: [1, 2]\n"))
    add(_text("wrong_types", "trials_a_word", _space() + "search: {trials: many}\n"))
    add(_text("wrong_types", "document_is_a_scalar", "42\n"))

    # -- builders that run code ----------------------------------------------------------------------
    add(_text("code_executing_builders", "pty_spawn", _space(builder='"pty:spawn"', model='[sh, -c, "touch ran-pty"]'),
              marker="{work}/ran-pty"))
    add(_text("code_executing_builders", "shutil_rmtree", _space(builder='"shutil:rmtree"', model="{work}/victim"),
              victim="{work}/victim"))
    add(_text("code_executing_builders", "module_run_at_import", _space(builder='"evilmod:build"'),
              beside={"evilmod.py": "open('ran-import', 'w').write('ran')\ndef build(config, info):\n    pass\n"},
              marker="{work}/ran-import"))
    add(_text("code_executing_builders", "importlib_import_module",
              _space(builder='"importlib:import_module"', model="evilmod2"),
              beside={"evilmod2.py": "open('ran-importlib', 'w').write('ran')\n"}, marker="{work}/ran-importlib"))

    # -- names that lead out of the results folder ---------------------------------------------------
    add(_text("path_escaping_names", "name_dot_dot", _space(name='"../../escaped"')))
    add(_text("path_escaping_names", "name_absolute", _space(name='"{work}/../absolute"')))
    add(_text("path_escaping_names", "name_with_slash", _space(name='"a/../../../b"')))
    add(_text("path_escaping_names", "study_name_dot_dot", _space(), search_args=("--study-name", "../../escaped"),
              validate=False))

    # -- NNI JSON (and ConfigSpace JSON) -------------------------------------------------------------
    for name, text in [
        ("randint_10e400", '{"n": {"_type": "randint", "_value": [0, %d]}}' % 10**400),
        ("quniform_tiny_q", '{"lr": {"_type": "quniform", "_value": [0, 1, 1e-320]}}'),
        ("type_a_list", '{"x": {"_type": ["choice"], "_value": [1]}}'),
        ("lognormal_mu_800", '{"x": {"_type": "lognormal", "_value": [800, 1]}}'),
        ("nesting_5000", '{"x": {"_type": "choice", "_value": ' + "[" * 5000 + "]" * 5000 + "}}"),
        ("int_of_5000_digits", '{"n": {"_type": "randint", "_value": [0, ' + "9" * 5000 + "]}}"),
        ("choices_equal_in_python", '{"x": {"_type": "choice", "_value": [1, true, 1.0]}}'),
        ("duplicate_keys", '{"x": {"_type": "uniform", "_value": [0, 1]},\n'
                           ' "x": {"_type": "uniform", "_value": [0, 2]}}'),
        ("newline_in_a_name", '{"a\\nb": {"_type": "uniform", "_value": [0, 1]}}'),
        ("configspace_q_10e400", '{"hyperparameters": [{"name": "a", "type": "uniform_float", "lower": 0, '
                                 '"upper": 1, "q": %d}]}' % 10**400),
    ]:
        add(_text("nni_json", name, text, filename="search_space.json",
                  acceptable=name in ("newline_in_a_name", "configspace_q_10e400")))

    # -- encodings -----------------------------------------------------------------------------------
    base = _space(extra="  p: {type: categorical, choices: [café, naïve]}\n")
    add(Case("invalid_encodings", "latin_1", "space.yaml", base.encode("latin-1")))
    add(Case("invalid_encodings", "utf_16", "space.yaml", base.encode("utf-16")))
    add(Case("invalid_encodings", "nul_byte", "space.yaml", base.encode().replace(b"name: x", b"name: x\x00")))
    add(Case("invalid_encodings", "surrogate_bytes", "space.yaml",
             base.encode().replace(b"caf\xc3\xa9", b"\xed\xa0\x80")))
    add(Case("invalid_encodings", "random_binary", "space.yaml", bytes(range(256)) * 8))
    add(Case("invalid_encodings", "latin_1_json", "search_space.json",
             '{"x": {"_type": "choice", "_value": ["café"]}}'.encode("latin-1")))

    # -- accepted, but cannot work -----------------------------------------------------------------------
    for name, text in [("unknown_builder", _space(builder="nope")),
                       ("unknown_task", _space().replace("task: digits", "task: digitz")),
                       ("unknown_strategy", _space() + "search: {strategy: evolutoin}\n"),
                       ("batch_size_zero", _space(extra="  train: {batch_size: 0}\n")),
                       ("negative_learning_rate", _space(extra="  train:\n    lr: {type: float, low: -1, high: 1}\n")),
                       ("trials_1e12", _space() + "search: {trials: 1.0e12}\n"),
                       ("budget_ratio_1e9", _space().replace("min: 1, max: 1", "min: 1.0e-9, max: 1"))]:
        add(_text("cannot_work", name, text))
    return cases


# ==================================================================================================
# Running one command
# ==================================================================================================
@dataclass
class Run:
    returncode: int | None
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str
    timed_out: bool = False
    memory_exceeded: bool = False


def run_command(args: list[str], cwd: Path, timeout: float) -> Run:
    """``args`` in ``cwd`` (its own process group), stopped after ``timeout`` s or past :data:`MEMORY_CAP`;
    the peak resident memory is the child's own (``wait4``)."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    env = {**os.environ, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join(p for p in (str(cwd), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("AUTOML_TRUSTED_MODULES", None)
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(args, cwd=cwd, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
    start = time.perf_counter()
    try:
        watcher: psutil.Process | None = psutil.Process(proc.pid)
    except psutil.Error:  # it has already exited
        watcher = None
    timed_out = memory_exceeded = False
    status, usage = 0, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.perf_counter() - start
        try:
            rss = watcher.memory_info().rss if watcher is not None else 0
        except psutil.Error:  # it exited meanwhile
            rss = 0
        if elapsed > timeout or rss > MEMORY_CAP:
            timed_out, memory_exceeded = elapsed > timeout, rss > MEMORY_CAP
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return Run(returncode=None if timed_out or memory_exceeded else proc.returncode, seconds=round(seconds, 2),
               peak_mb=round((usage.ru_maxrss if usage else 0) / 1024, 1), timed_out=timed_out,
               memory_exceeded=memory_exceeded, stdout=out.read_text(errors="replace"),
               stderr=err.read_text(errors="replace"))


def classify(case: Case, run: Run, command: str, work: Path, before: set[Path]) -> str:
    """The outcome of one run (see the module)."""
    if case.marker and Path(case.marker.format(work=work)).exists():
        return "code_executed"
    if case.victim and not Path(case.victim.format(work=work)).exists():
        return "code_executed"
    if command == "search":
        out = work / "out"
        new = {p for p in work.parent.rglob("*") if p not in before and p.is_file()}
        if any(out not in p.parents and p.parent != work for p in new):
            return "wrote_outside"
    if run.memory_exceeded:
        return "memory_exceeded"
    if run.timed_out:
        return "hang"
    if "Traceback" in run.stderr or run.returncode not in (0, 2):
        return "traceback"
    if run.returncode == 2:
        lines = run.stderr.strip().splitlines()
        options = [arg for arg in case.search_args if arg.startswith("--")]
        named = case.filename in run.stderr or any(option in run.stderr for option in options)
        return "clear_error" if len(lines) == 1 and lines[0].startswith("error: ") and named else "unclear_error"
    if command == "validate" and "names code to import and run" in run.stdout:
        return "warned_not_run"
    return "accepted" if case.acceptable else "accepted_wrongly"


def try_case(case: Case, root: Path, index: int) -> dict[str, Any]:
    """Validate and search one case in its own folder (``root/case-i/a/b``, so ``../..`` stays inside)."""
    work = root / f"case-{index}" / "a" / "b"
    work.mkdir(parents=True)
    (work / "victim").mkdir()
    (work / "victim" / "keep.txt").write_text("keep")
    path = work / case.filename
    path.write_bytes(case.content.replace(b"{work}", str(work).encode()))
    for name, text in case.beside.items():
        (work / name).write_text(text)
    result: dict[str, Any] = {"case": case.name}
    commands: list[tuple[str, list[str], float]] = []
    if case.validate:
        commands.append(("validate", [AUTOML, "spaces", "validate", case.filename], VALIDATE_TIMEOUT))
    commands.append(("search", [AUTOML, "search", "--space", case.filename, "--trials", "1", "--seed", "0",
                                "--storage", f"sqlite:///{work}/ledger.db", "--output", str(work / "out"),
                                *case.search_args], SEARCH_TIMEOUT))
    for command, args, timeout in commands:
        before = {p for p in work.parent.rglob("*")}
        run = run_command(args, work, timeout)
        said = run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or [""]
        result[command] = {"outcome": classify(case, run, command, work, before), "returncode": run.returncode,
                           "seconds": run.seconds, "peak_mb": run.peak_mb, "message": said[-1][:300]}
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """Try every case (``quick``: the first two of each category) and return the outcomes per category
    (JSON-serialisable)."""
    cases = corpus()
    if quick:
        kept: list[Case] = []
        for case in cases:
            if sum(1 for k in kept if k.category == case.category) < 2:
                kept.append(case)
        cases = kept
    started = time.perf_counter()
    foreign = ForeignCpu()
    with tempfile.TemporaryDirectory(prefix="robustness-spaces-") as tmp:
        root = Path(tmp)
        with ThreadPoolExecutor(max_workers=max(1, min(3, (os.cpu_count() or 2)))) as pool:
            results = list(pool.map(lambda item: try_case(item[1], root, item[0]), enumerate(cases)))
    categories: dict[str, Any] = {}
    for case, result in zip(cases, results):
        entry = categories.setdefault(case.category, {"tried": 0, "validate": {}, "search": {}, "cases": []})
        entry["tried"] += 1
        for command in ("validate", "search"):
            if command in result:
                outcome = result[command]["outcome"]
                entry[command][outcome] = entry[command].get(outcome, 0) + 1
        entry["cases"].append(result)
    runs = [r[c] for r in results for c in ("validate", "search") if c in r]
    bad = {"traceback", "accepted_wrongly", "hang", "memory_exceeded", "code_executed", "wrote_outside",
           "unclear_error"}
    totals = {outcome: sum(1 for r in runs if r["outcome"] == outcome) for outcome in OUTCOMES}
    return {
        "benchmark": "robustness_spaces",
        "quick": quick,
        "cases": len(cases),
        "runs": len(runs),
        "totals": totals,
        "all_clear": not any(totals[o] for o in bad),
        "slowest_run_s": max((r["seconds"] for r in runs), default=0.0),
        "largest_peak_mb": max((r["peak_mb"] for r in runs), default=0.0),
        "categories": categories,
        "other_processes_cpu": foreign.stop(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "commit": git_commit(),
                    "load_average": [round(v, 2) for v in os.getloadavg()]},
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first two cases of each category")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
