"""The machine stall probe's summary and its report line (benchmarks/load/stalls.py)."""

from __future__ import annotations

from benchmarks.load import stalls


def test_interruptions_close_together_are_one_episode() -> None:
    interruptions = [(1.00, 16.0), (1.03, 7.0), (2.50, 9.0), (4.00, 30.0), (4.05, 12.0)]
    out = stalls.summarize(10.0, 1.0, interruptions)
    assert out["episodes"] == 3
    assert out["worst_ms"] == 30.0
    assert out["median_gap_s"] == 1.5
    # (15 + 6 + 8 + 29 + 11) ms lost over 10 s
    assert out["lost_percent"] == 0.69


def test_a_quiet_machine_has_no_episodes_and_says_so() -> None:
    out = stalls.summarize(5.0, 1.0, [])
    assert out == {
        "seconds": 5.0,
        "piece_ms": 1.0,
        "episodes": 0,
        "worst_ms": 0.0,
        "median_gap_s": None,
        "lost_percent": 0.0,
    }
    assert "never interrupted for over 5 ms" in stalls.sentence(out)


def test_the_report_line_gives_count_period_and_longest() -> None:
    line = stalls.sentence(stalls.summarize(10.0, 1.0, [(1.0, 16.0), (2.4, 20.5), (3.9, 8.0)]))
    assert "lost the CPU 3 times for over 5 ms, about every 1.5 s, the longest 20.5 ms" in line


def test_the_probe_measures_a_real_piece_of_work() -> None:
    out = stalls.probe(0.2)
    assert out["seconds"] == 0.2
    assert 0 < out["piece_ms"] < stalls.THRESHOLD_MS
    assert out["episodes"] >= 0 and out["lost_percent"] >= 0
