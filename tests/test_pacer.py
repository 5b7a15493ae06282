"""The pacer: while answers flow, the process's running Python leaves the interpreter's lock
(and its core) to the pacer's thread at short intervals; otherwise the pacer sleeps."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import pytest

from monitor.pacer import Pacer


@pytest.fixture(autouse=True)
def switch_interval() -> Iterator[None]:
    saved = sys.getswitchinterval()
    yield
    sys.setswitchinterval(saved)


def busy(seconds: float) -> None:
    """Runs Python code (never sleeping) for `seconds`."""
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pass


@pytest.fixture
def pacer() -> Iterator[Pacer]:
    pacer = Pacer(every=0.001, hold=0.2)
    pacer.start()
    yield pacer
    pacer.stop()


def test_a_started_pacer_sets_the_switch_interval_to_its_interval(pacer: Pacer) -> None:
    assert sys.getswitchinterval() == pytest.approx(0.001)


def test_without_answers_it_takes_no_turn(pacer: Pacer) -> None:
    busy(0.1)
    assert pacer.turns == 0


def test_while_answers_flow_running_python_gives_it_the_lock_again_and_again(
    pacer: Pacer,
) -> None:
    pacer.answering()
    busy(0.1)
    # one every millisecond or so; far fewer only if the machine stalls the test
    assert pacer.turns >= 10


def test_its_turns_end_once_no_answer_came_for_its_hold(pacer: Pacer) -> None:
    pacer.answering()
    busy(0.3)  # past the hold (0.2 s)
    after_hold = pacer.turns
    busy(0.1)
    assert after_hold >= 10
    assert pacer.turns == after_hold


def test_answers_after_a_quiet_spell_start_its_turns_again(pacer: Pacer) -> None:
    pacer.answering()
    busy(0.3)
    quiet = pacer.turns
    busy(0.05)
    assert pacer.turns == quiet
    pacer.answering()
    busy(0.1)
    assert pacer.turns >= quiet + 10


def test_stop_ends_its_thread_whether_it_waits_or_takes_turns() -> None:
    for flowing in (False, True):
        pacer = Pacer(every=0.001, hold=10.0)
        pacer.start()
        if flowing:
            pacer.answering()
        pacer.stop(timeout=1.0)
        assert not any(t.name == "pacer" and t.is_alive() for t in threading.enumerate())
