"""The objective's guards: a Ctrl-C never splits a trial from its MLflow run."""

from __future__ import annotations

import os
import signal

import pytest

from sweep.search.objective import interrupts_deferred


def test_ctrl_c_inside_the_block_arrives_after_it() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("the rest of the block")  # still runs: the signal is held
        reached.append("after")  # never: the held Ctrl-C arrives first
    assert reached == ["the rest of the block"]


def test_the_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts_deferred():
        assert signal.getsignal(signal.SIGINT) is not before[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
