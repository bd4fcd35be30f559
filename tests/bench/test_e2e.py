"""The load tester / wrk agreement statistic."""

from __future__ import annotations

import pytest

from bench import e2e


def test_difference_is_taken_within_each_pair_then_the_median():
    # pair 1 ran while the machine was busy: both sides slow, 45% apart
    tester, wrk = [5.87, 4.45, 5.95], [4.04, 4.69, 5.59]
    assert e2e.paired_difference(tester, wrk) == pytest.approx(abs(5.95 - 5.59) / 5.59)


def test_a_tester_run_without_answers_counts_as_a_full_difference():
    assert e2e.paired_difference([None, None, 2.0], [2.0, 2.0, 2.0]) == 1.0


def test_pairs_must_match():
    with pytest.raises(ValueError):
        e2e.paired_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        e2e.paired_difference([], [])


def test_case_bodies_are_the_load_test_requests():
    class Case:
        def __init__(self, sentence):
            self.sentence = sentence

    class Cfg:
        class load_test:
            cases = [Case("a b"), Case("c")]

    assert e2e.case_bodies(Cfg) == [{"sentence": "a b"}, {"sentence": "c"}]


def test_process_tree_cpu_is_labelled_by_kind():
    import os
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                              "localcloud.lambda_worker"])
    try:
        tree = e2e._tree_cpu(os.getpid())
        assert tree[os.getpid()][0] == "daemon"
        assert tree[child.pid][0] == "Lambda workers"
        assert all(cpu >= 0 for _, cpu in tree.values())
    finally:
        child.kill()
        child.wait()
