"""Run settings: every choice that changes a number, recorded with it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.core.sandbox import check_memory_limit, check_mode, default_memory_limit_mib


@dataclass
class RunSettings:
    """Measurement settings shared by every entry of a run.

    device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available).
    trials: passes over all images after the warm-up; runtime statistics are the mean
        (NTIRE 2026) and the best (AIM 2019) of the per-trial means.
    crop_border: pixels cropped from each border before PSNR/SSIM, an int or ``"scale"``.
    threads: CPU thread count fixed for the worker (None: torch's default, recorded).
    input_shape: LR input of the complexity counters (challenges: 1x3x256x256).
    cudnn_benchmark: recorded; off by default so the first images are not autotuning.
    timeout_s: wall-clock limit of one entry's subprocess.
    modes: optional inference modes (fp16, channels_last, self_ensemble, tile, overlap);
        all off by default and recorded when on.
    sandbox: confinement of team code, ``auto`` | ``required`` | ``off`` (harness.core.sandbox).
    memory_limit_mib: memory limit of one entry's whole process tree (default 75 % of RAM;
        None: no limit); exceeding it kills only that entry, recorded as ``oom``.
    save_sr: folder (absolute) where the uint8 SR outputs are written as PNG
        (``<entry>/<split>/<image>.png``); None: not saved. Changes no measurement.
    """

    device: str = "cpu"
    trials: int = 3
    crop_border: int | str = 4
    threads: int | None = None
    input_shape: tuple = (1, 3, 256, 256)
    cudnn_benchmark: bool = False
    timeout_s: float = 1800.0
    complexity: bool = True
    modes: dict = field(default_factory=dict)
    sandbox: str = "auto"
    memory_limit_mib: int | None = field(default_factory=default_memory_limit_mib)
    save_sr: str | None = None

    def __post_init__(self) -> None:
        check_mode(self.sandbox)
        self.memory_limit_mib = check_memory_limit(self.memory_limit_mib)
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")
        if self.crop_border != "scale":
            self.crop_border = int(self.crop_border)
            if self.crop_border < 0:
                raise ValueError("crop_border must be >= 0 or 'scale'")
        self.input_shape = tuple(int(v) for v in self.input_shape)

    def crop_for(self, scale: int) -> int:
        return scale if self.crop_border == "scale" else int(self.crop_border)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def key_dict(self) -> dict:
        """The settings that change a measurement (timeout, sandbox and memory limit do not)."""
        d = self.to_dict()
        for key in ("timeout_s", "sandbox", "memory_limit_mib", "save_sr"):
            d.pop(key, None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSettings":
        return cls(**d)


def parse_shape(text: str) -> tuple:
    """``3x256x256`` or ``1x3x256x256`` -> (1, 3, 256, 256)."""
    parts = [int(p) for p in text.lower().replace(",", "x").split("x") if p]
    if len(parts) == 3:
        parts = [1] + parts
    if len(parts) != 4:
        raise ValueError(f"input shape {text!r}: expected CxHxW or NxCxHxW")
    return tuple(parts)
