"""The command-line wrapper: what stops a command is one line and an exit code, not a trace."""

from __future__ import annotations

import errno
import os

import pytest

from training.config import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, run_entrypoint


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free space on that disk, or write the outputs elsewhere"),
        (errno.EROFS, "the file system is mounted read-only"),
        (errno.EACCES, "this user may not use that path"),
    ],
)
def test_a_full_disk_or_forbidden_path_is_one_line_naming_the_path(code, advice, capsys):
    def work() -> None:
        try:
            raise OSError(code, os.strerror(code), "/data/out/scores.parquet")
        except OSError as err:  # as deep inside a writer, wrapped by something else
            raise RuntimeError("writing failed") from err

    assert run_entrypoint(work) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert err.startswith(f"error: {os.strerror(code)} (/data/out/scores.parquet): {advice}")
    assert err.count("\n") == 1


def test_bad_input_is_exit_2_and_anything_else_is_not_swallowed(capsys):
    def bad() -> None:
        raise ValueError("column 'amount' has 3 negative values; expected amount >= 0")

    assert run_entrypoint(bad) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        "error: column 'amount' has 3 negative values; expected amount >= 0\n"
    )

    def bug() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_entrypoint(bug)
