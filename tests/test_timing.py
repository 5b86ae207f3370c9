"""Runtime protocol bookkeeping with a fake clock; deploy-safety fingerprint."""
from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch import nn

from harness.measure.timing import run_timed, set_threads, state_fingerprint


class FakeClock:
    """Nanosecond clock that only moves when told to."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(round(ms * 1e6))


class ScriptedForward:
    """Each call takes the next scripted duration on the fake clock; records what it saw."""

    def __init__(self, clock: FakeClock, durations_ms: list[float]):
        self.clock = clock
        self.durations = list(durations_ms)
        self.calls = []

    def __call__(self, x):
        self.calls.append((tuple(x.shape), torch.is_inference_mode_enabled()))
        self.clock.advance_ms(self.durations.pop(0))
        return x * 2


def make_inputs():
    return [torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 6, 5)]


def test_warmup_trials_means_best():
    clock = FakeClock()
    warm = [100.0, 200.0]  # two distinct shapes -> two warm-up forwards, never counted
    trials = [[1.0, 2.0, 3.0], [4.0, 4.0, 4.0], [0.5, 1.5, 1.0]]
    fwd = ScriptedForward(clock, warm + [t for trial in trials for t in trial])
    outputs = []

    def on_output(trial, index, out):
        clock.advance_ms(1000.0)  # quality work: must not leak into the timed region
        outputs.append((trial, index, float(out.sum())))

    r = run_timed(fwd, make_inputs(), trials=3, device="cpu", clock=clock, on_output=on_output)
    assert len(fwd.calls) == 2 + 3 * 3
    assert [c[0] for c in fwd.calls[:2]] == [(1, 3, 4, 4), (1, 3, 6, 5)]
    assert all(inference for _, inference in fwd.calls)
    assert [pytest.approx(t, abs=1e-9) for t in trials] == r.per_image_ms
    means = [statistics.fmean(t) for t in trials]
    assert r.trial_means_ms == pytest.approx(means, abs=1e-9)
    assert r.mean_ms == pytest.approx(statistics.fmean(means), abs=1e-9)
    assert r.best_ms == pytest.approx(1.0, abs=1e-9)
    assert r.spread_ms == pytest.approx(3.0, abs=1e-9)
    assert [(t, i) for t, i, _ in outputs] == [(t, i) for t in range(3) for i in range(3)]
    p = r.protocol
    assert p["warmup_shapes"] == [[1, 3, 4, 4], [1, 3, 6, 5]] and p["warmup_forwards"] == 2
    assert p["trials"] == 3 and p["images"] == 3 and p["batch"] == 1 and p["inference_mode"] is True
    assert p["clock"] == "injected" and p["device"] == "cpu"
    assert p["threads"] == torch.get_num_threads()
    assert p["cudnn_benchmark"] == bool(torch.backends.cudnn.benchmark)


def test_no_warmup():
    clock = FakeClock()
    fwd = ScriptedForward(clock, [2.0, 3.0, 5.0])
    r = run_timed(fwd, make_inputs(), trials=1, device="cpu", clock=clock, warmup=False)
    assert len(fwd.calls) == 3
    assert r.per_image_ms == [pytest.approx([2.0, 3.0, 5.0])]
    assert r.mean_ms == r.best_ms == pytest.approx(10.0 / 3)
    assert r.protocol["warmup_forwards"] == 0


def test_known_sleep_with_real_clock():
    def forward(x):
        time.sleep(0.002)
        return x

    r = run_timed(forward, [torch.zeros(1, 3, 2, 2)] * 2, trials=2, device="cpu")
    assert r.protocol["clock"] == "perf_counter_ns"
    assert len(r.per_image_ms) == 2 and all(len(t) == 2 for t in r.per_image_ms)
    assert all(ms >= 2.0 for t in r.per_image_ms for ms in t)  # sleep guarantees at least 2 ms
    assert r.best_ms == min(r.trial_means_ms) and r.mean_ms == pytest.approx(statistics.fmean(r.trial_means_ms))


def test_bad_arguments():
    with pytest.raises(ValueError):
        run_timed(lambda x: x, [torch.zeros(1)], trials=0, device="cpu")
    with pytest.raises(ValueError):
        run_timed(lambda x: x, [], trials=1, device="cpu")


def test_set_threads():
    old = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads(None) == 1
        with pytest.raises(ValueError):
            set_threads(0)
    finally:
        torch.set_num_threads(old)


class LazyFuse(nn.Module):
    """Folds two parallel convolutions into one on its first forward."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.fused = False

    def forward(self, x):
        if not self.fused:
            with torch.no_grad():
                self.a.weight.add_(self.b.weight)
                self.a.bias.add_(self.b.bias)
            del self.b
            self.fused = True
        return self.a(x)


def test_fingerprint_detects_lazy_reparameterisation():
    model = LazyFuse().eval()
    before = state_fingerprint(model)
    assert before[0] == 2 * (3 * 3 * 9 + 3)
    run_timed(model, [torch.rand(1, 3, 8, 8)], trials=2, device="cpu")
    after = state_fingerprint(model)
    assert after != before and after[0] == 3 * 3 * 9 + 3
    run_timed(model, [torch.rand(1, 3, 8, 8)], trials=2, device="cpu")
    assert state_fingerprint(model) == after  # settled


def test_fingerprint_stable_and_sensitive():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    fp = state_fingerprint(model)
    assert fp == state_fingerprint(model)
    run_timed(model, [torch.rand(1, 3, 8, 8)], trials=2, device="cpu")
    assert state_fingerprint(model) == fp  # an ordinary model does not change while timed
    with torch.no_grad():
        model[1].running_mean[0] += 1e-3  # a buffer changes the hash, not the param count
    fp2 = state_fingerprint(model)
    assert fp2[0] == fp[0] and fp2[1] != fp[1]


def test_runtime_stats_on_synthetic_times():
    from harness.measure.timing import NOISY_CV, runtime_stats

    steady = runtime_stats([[10.0, 12.0], [11.0, 11.0], [10.5, 11.5]])
    assert steady["trial_means_ms"] == [11.0, 11.0, 11.0]
    assert steady["mean_ms"] == steady["median_ms"] == steady["best_ms"] == 11.0
    assert steady["cv"] == 0.0 and steady["noisy"] is False
    # trial means 10, 10, 13: mean 11, population std sqrt(2), cv = 0.1286 > 10%
    busy = runtime_stats([[10.0], [10.0], [13.0]])
    assert busy["median_ms"] == 10.0 and busy["best_ms"] == 10.0
    assert busy["cv"] == pytest.approx(2 ** 0.5 / 11, rel=1e-12)
    assert busy["noisy"] is True
    # just under the threshold: means 9.5 and 10.5 -> cv 0.05; 9 and 11 -> exactly 0.10 is not noisy
    assert runtime_stats([[9.5], [10.5]])["noisy"] is False
    assert runtime_stats([[9.0], [11.0]])["cv"] == pytest.approx(NOISY_CV)
    assert runtime_stats([[7.0, 9.0]])["cv"] == 0.0  # one trial: no spread to measure
    with pytest.raises(ValueError, match="at least one trial"):
        runtime_stats([])


def test_timing_result_stats_from_run_timed():
    clock = FakeClock()
    fwd = ScriptedForward(clock, [1.0] + [4.0, 6.0, 5.0, 5.0, 8.0, 2.0])  # one warm-up: one shape
    res = run_timed(fwd, make_inputs()[:2], trials=3, clock=clock)
    stats = res.stats()
    assert stats["trial_means_ms"] == pytest.approx([5.0, 5.0, 5.0])
    assert stats["cv"] == pytest.approx(0.0, abs=1e-9) and not stats["noisy"]
    assert [pytest.approx(t) for t in ([4.0, 6.0], [5.0, 5.0], [8.0, 2.0])] == res.per_image_ms  # kept raw
