"""graders/incontainer.py's functions for unit tests, without running its main() (the runner
is shipped as program text, not imported as a module)."""

from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "graders" / "incontainer.py"


def runner() -> dict:
    """The in-container runner's functions, without running its main()."""
    source = RUNNER.read_text().rstrip()
    assert source.endswith("\nmain()")
    ns: dict = {"__name__": "incontainer"}
    exec(compile(source[: -len("main()")], str(RUNNER), "exec"), ns)  # noqa: S102
    return ns
