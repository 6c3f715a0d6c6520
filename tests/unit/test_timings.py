"""The launch's timeline (``bottle run --timings``): steps from any thread, each with its own start."""

import threading
import time

import pytest

from bottle.timings import Timings


def test_steps_are_a_timeline_in_the_order_they_started_whatever_thread():
    timings = Timings()

    def background():
        with timings.step("background"):
            time.sleep(0.02)

    with timings.step("outer"):
        worker = threading.Thread(target=background)
        worker.start()
        time.sleep(0.01)
    worker.join()
    report = timings.as_dict()
    assert [step["name"] for step in report["steps"]] == ["outer", "background"], "by start, not by end"
    outer, inner = report["steps"]
    assert outer["start_s"] <= inner["start_s"] < outer["start_s"] + outer["duration_s"], "they overlap"
    assert inner["duration_s"] >= 0.02 and report["total_s"] >= inner["start_s"] + inner["duration_s"]


def test_a_step_that_fails_still_took_its_time():
    timings = Timings()
    with pytest.raises(RuntimeError):
        with timings.step("broken"):
            raise RuntimeError("no")
    assert [step.name for step in timings.steps] == ["broken"]


def test_the_lines_give_start_and_duration_and_the_total():
    timings = Timings()
    with timings.step("network"):
        pass
    lines = timings.lines()
    assert lines[0].startswith("network  at ") and " took " in lines[0]
    assert lines[-1].startswith("total    ")


def test_the_timeline_starts_with_the_process():
    """What ran before the launch (interpreter, imports, plan) is the first step, from the process's start."""
    timings = Timings.since_process_start("before")
    with timings.step("after"):
        pass
    before, after = timings.as_dict()["steps"]
    assert before["name"] == "before" and before["start_s"] == 0.0
    # this test process has been running for a while: its pytest session started before this test
    assert before["duration_s"] > 0.05
    assert after["start_s"] >= before["duration_s"] - 0.02  # the clock ticks are 10 ms
