"""The command-line layer (advisor/cli_kit.py) on a throwaway app, and the real `advisor` app's start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import pytest

import advisor.cli
from advisor.cli_kit import App, Argument, Exit, Option, UsageError, echo

app = App(help="A throwaway app.\n\nOnly its first line is a summary.")
seen: dict = {}


@app.command()
def fit(
    model: Annotated[str, Option("--model", "-m", help="What to fit.")],
    input_size: Annotated[Optional[int], Option(help="Input size.")] = None,
    budget_ms: Annotated[Optional[float], Option(help="Budget (ms).")] = None,
    threads: Annotated[int, Option(help="Threads.")] = 1,
    rate: Annotated[float, Option(help="Rate.")] = 0.5,
    store: Annotated[Path, Option(help="Store folder.")] = Path("store"),
    out: Annotated[Optional[Path], Option("--out", help="Output.")] = None,
    new: Annotated[Optional[list[Path]], Option("--new", help="Shards (repeatable).")] = None,
    layer_latency: Annotated[bool, Option("--layer-latency/--no-layer-latency", help="Per-layer costs.")] = True,
    colour: Annotated[bool, Option(help="Colour.")] = False,
    as_json: Annotated[bool, Option("--json", help="JSON.")] = False,
    quiet: Annotated[bool, Option("--quiet", "-q", help="Quiet.")] = False,
) -> None:
    """Fit one thing.

    More words, shown by --help only.
    """
    seen.clear()
    seen.update(locals())


@app.command("ingest")
def ingest_paths(
    paths: Annotated[Optional[list[Path]], Argument(help="Files.")] = None,
    dry_run: Annotated[bool, Option("--dry-run", help="Write nothing.")] = False,
) -> None:
    """Ingest files."""
    seen.clear()
    seen.update(locals())


@app.command()
def stop(code: Annotated[int, Argument(help="Exit code.")]) -> None:
    """Stop with a code."""
    echo("stopping", err=True)
    raise Exit(code)


@app.command()
def pipe() -> None:
    """Write to a reader that went away."""
    raise BrokenPipeError


group = App(help="A group with a command of its own.")


@group.default()
def group_list(as_json: Annotated[bool, Option("--json", help="JSON.")] = False) -> None:
    """List."""
    seen.clear()
    seen.update(listed=True, as_json=as_json)


@group.command("use")
def group_use(version: Annotated[str, Argument(help="Version to use.")]) -> None:
    """Use one."""
    seen.clear()
    seen.update(used=version)


app.add_app(group, "group")


@pytest.fixture
def run(run_cli):
    """Run the throwaway app through `advisor.cli.main`: (exit code, stdout, stderr)."""
    return lambda *args: run_cli(app, *args)


def test_names_types_and_defaults(run):
    assert run("fit", "-m", "net")[0] == 0
    assert seen == {"model": "net", "input_size": None, "budget_ms": None, "threads": 1, "rate": 0.5,
                    "store": Path("store"), "out": None, "new": None, "layer_latency": True, "colour": False,
                    "as_json": False, "quiet": False}
    code, _, err = run("fit", "--model", "net", "--input-size", "96", "--budget-ms", "1e-4", "--threads=3",
                       "--rate", "2", "--store", "s", "--out", "o", "--json", "-q")
    assert code == 0, err
    assert (seen["input_size"], seen["budget_ms"], seen["threads"], seen["rate"]) == (96, 1e-4, 3, 2.0)
    assert type(seen["rate"]) is float and seen["store"] == Path("s") and seen["out"] == Path("o")
    assert seen["as_json"] is True and seen["quiet"] is True


def test_flags_on_off_and_repeatable_options(run):
    run("fit", "-m", "x", "--no-layer-latency", "--colour", "--new", "a", "--new", "b/c")
    assert seen["layer_latency"] is False and seen["colour"] is True
    assert seen["new"] == [Path("a"), Path("b/c")]
    run("fit", "-m", "x", "--no-layer-latency", "--layer-latency", "--no-colour")
    assert seen["layer_latency"] is True and seen["colour"] is False


def test_list_arguments_mix_with_options(run):
    run("ingest")
    assert seen == {"paths": None, "dry_run": False}
    run("ingest", "a.csv", "--dry-run", "b.csv")
    assert seen == {"paths": [Path("a.csv"), Path("b.csv")], "dry_run": True}


def test_groups_run_their_own_command_or_a_subcommand(run):
    assert run("group", "--json")[0] == 0 and seen == {"listed": True, "as_json": True}
    assert run("group", "use", "v2")[0] == 0 and seen == {"used": "v2"}
    code, _, err = run("group", "nosuch")
    assert code == 2 and err == "error: No such command 'nosuch' (see `advisor group --help`)\n"
    code, out, _ = run("group", "--help")
    assert code == 0 and "--json" in out and "use" in out and "Use one." in out


@pytest.mark.parametrize("args, message", [
    (["fit", "-m", "x", "--threads", "1.5"], "error: Invalid value for '--threads': '1.5' is not an integer"),
    (["fit", "-m", "x", "--budget-ms", "abc"], "error: Invalid value for '--budget-ms': 'abc' is not a number"),
    (["fit", "-m", "x", "--bogus", "3"], "error: No such option: --bogus"),
    (["fit", "-m", "x", "extra"], "error: Unexpected extra argument 'extra'"),
    (["fit", "--threads", "2"], "error: Missing option '--model' / '-m'"),
    (["fit", "--model"], "error: Option '--model' requires an argument"),
    (["fit", "--mod", "x"], "error: No such option: --mod"),  # no abbreviations
    (["stop"], "error: Missing argument 'CODE'"),
    (["nosuch"], "error: No such command 'nosuch'"),
    (["--bogus"], "error: No such option: --bogus"),
])
def test_usage_errors_are_one_line_and_exit_2(run, args, message):
    code, out, err = run(*args)
    assert code == 2 and out == ""
    assert err.startswith(message) and len(err.splitlines()) == 1
    assert err.rstrip().endswith("--help`)")  # where to look


def test_exit_and_its_code(run):
    assert run("stop", "3") == (3, "", "stopping\n")
    assert run("stop", "0")[0] == 0


def test_a_closed_pipe_ends_quietly_with_code_1(run):  # `advisor ... | head`
    assert run("pipe") == (1, "", "")


def test_help(run):
    for args in ([], ["--help"], ["-h"]):
        code, out, err = run(*args)
        assert code == 0 and err == ""
        assert "A throwaway app." in out and "Only its first line" in out
        assert "  fit     Fit one thing.\n" in out and "  ingest  Ingest files.\n" in out
        assert "More words" not in out and "  group   A group with a command of its own.\n" in out
    code, out, _ = run("fit", "--help")
    assert code == 0 and "usage: advisor fit [OPTIONS]" in out and "More words, shown by --help only." in out
    for shown in ("-m, --model TEXT", "What to fit. [required]", "--input-size INTEGER", "--budget-ms FLOAT",
                  "--threads INTEGER", "Threads. [default: 1]", "--layer-latency / --no-layer-latency",
                  "[default: --layer-latency]", "--colour / --no-colour", "--new PATH", "-q, --quiet", "--json"):
        assert shown in out, shown
    code, out, _ = run("ingest", "--help")
    assert code == 0 and "usage: advisor ingest [OPTIONS] [PATHS]..." in out and "Files." in out


def test_unsupported_parameter_types_are_refused():
    bad = App()

    @bad.command()
    def odd(x: Annotated[dict, Option(help="?")] = None) -> None:  # noqa: B006
        """Odd."""

    with pytest.raises(TypeError, match="unsupported type"):
        bad.run(["odd"])
    with pytest.raises(UsageError):
        bad.run(["even"])


def test_the_advisor_app_lists_its_options(capsys):
    assert advisor.cli.main(["recommend", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--budget-ms FLOAT" in out and "Latency budget per inference (ms)." in out and "-m, --model" in out
    assert advisor.cli.main(["models", "use", "--help"]) == 0
    assert "VERSION" in capsys.readouterr().out


def test_the_command_line_imports_no_typer_click_or_pydantic():
    code = ("import sys; from advisor.cli import main; code = main(['recommend', '--help']); "
            "heavy = sorted(m for m in ('typer', 'click', 'pydantic', 'rich') if m in sys.modules); "
            "print(code, heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "0 []"
    assert "--budget-ms" in proc.stdout
