#!/usr/bin/env bash
# One command for the CUDA paths CI cannot run: bash bench/gpu_check.sh [PAIRS]
#
# Needs torch, numpy, OpenCV and the project (pip install -e .); fvcore and Ray may be missing
# (the complexity one-off is then skipped and said so; Ray is not used). Finishes in < 5 minutes
# on one GPU. Without CUDA every GPU check prints "no CUDA: skipped" and the script exits 0
# after the CPU-side self-checks, so it can be smoke-tested anywhere.
#
# Checks: (1) CUDA events against host wall time around the same forwards; (2) peak memory
# reset per split; (3) fp16 + channels_last outputs against fp32; (4) device-side quality
# (harness.measure.metrics_torch) equal to the host values on the same outputs (PSNR exactly,
# SSIM to 1e-6); (5) CUDA IPC hand-over of an output from a child process
# (harness.measure.output_share) and the host-copy fallback; (6) bench/bench_scale.py on PAIRS
# (default 3) DIV2K-size images on the device; (7) one `esr run --device cuda` whose record says
# where quality was computed (cuda-ipc, or host-copy with the reason).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PAIRS=${1:-3}
export ESR_ZOO=${ESR_ZOO:-$(pwd)/../shared/zoo}

status=0
timeout 200 "$PY" - <<'EOF' || status=$?
import json, math, os, subprocess, sys, time
import numpy as np
import torch

from harness.measure import metrics, metrics_torch
from harness.measure.output_share import open_output, share_output

ok = True
def report(name, passed, detail=""):
    global ok
    ok &= bool(passed)
    print(f"{'PASS' if passed else 'FAIL'}  {name}  {detail}")

def skipped(name, why):
    print(f"SKIP  {name}  ({why})")

print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
try:
    import fvcore  # noqa: F401
    print("fvcore: present")
except ImportError:
    print("fvcore: missing -> complexity one-off skipped in the scale bench")

# CPU self-check: the host fast path against the reference functions (runs everywhere)
from skimage import data
hr = data.astronaut()
from harness.data.bicubic import imresize
sr = imresize(imresize(hr, 0.25), 4)
q = metrics.quality(sr, hr, crop_border=4)
report("host quality == psnr/ssim", all(abs(q[k] - (metrics.psnr if k[0] == "p" else metrics.ssim)(
    sr, hr, crop_border=4, channel=k.split("_")[1])) < 1e-9 for k in q), json.dumps(q))

if not torch.cuda.is_available():
    for name in ("cuda events vs host wall time", "peak memory reset per split", "fp16 + channels_last",
                 "device quality == host quality", "CUDA IPC hand-over"):
        skipped(name, "no CUDA: skipped")
    sys.exit(0 if ok else 1)

dev = "cuda"
from harness.measure.inference import wrap_forward
from harness.measure.memory import PeakMemory
from harness.measure.timing import run_timed
sys.path.insert(0, "models")
from span import SPAN  # the NTIRE 2026 baseline architecture
model = SPAN(3, 3, upscale=4, feature_channels=28, deploy=True).eval()
ckpt = os.path.join(os.environ["ESR_ZOO"], "ntire2026_team00_SPAN.pth")
if os.path.isfile(ckpt):
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    missing = model.load_state_dict(state, strict=False)
    print(f"SPAN weights: {ckpt} (missing {len(missing.missing_keys)}, unexpected {len(missing.unexpected_keys)})")
else:
    print("SPAN weights: not found, random weights (timings still valid)")
model = model.to(dev)
lr = torch.rand(1, 3, 339, 510, generator=torch.Generator().manual_seed(0)).to(dev)

# (1) CUDA events against host wall time
torch.backends.cudnn.benchmark = False
res = run_timed(model, [lr] * 10, trials=3, device=dev)
with torch.inference_mode():
    walls = []
    for _ in range(30):
        torch.cuda.synchronize(); t0 = time.perf_counter(); model(lr); torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1e3)
ev = res.mean_ms
wall = float(np.median(walls))
report("cuda events vs host wall time", res.protocol["clock"] == "cuda_event" and 0.5 * wall <= ev <= 1.05 * wall + 0.2,
       f"events {ev:.3f} ms, host wall (sync'd) median {wall:.3f} ms, cv {res.stats()['cv']:.3f}")

# (2) peak memory reset per split: a big split, then a small one, must report a smaller peak
with torch.inference_mode():
    with PeakMemory(dev) as big:
        model(torch.rand(1, 3, 678, 1020, device=dev))
    with PeakMemory(dev) as small:
        model(lr)
report("peak memory reset per split", small.peak_mib < big.peak_mib, f"big {big.peak_mib:.1f} MiB, small {small.peak_mib:.1f} MiB")

# (3) fp16 + channels_last against fp32 on the same input
with torch.inference_mode():
    ref32 = model(lr).float()
import copy
m16 = copy.deepcopy(model)
fwd16, mode = wrap_forward(m16, fp16=True, channels_last=True)
with torch.inference_mode():
    out16 = fwd16(lr)
u32 = metrics.to_uint8(ref32, 1.0); u16 = metrics.to_uint8(out16, 1.0)
p = metrics.psnr(u16, u32, crop_border=0, channel="rgb")
t16 = run_timed(fwd16, [lr] * 10, trials=3, device=dev)
report("fp16 + channels_last", p > 40 and out16.dtype == torch.float32,
       f"PSNR(fp16, fp32) {p:.1f} dB, fp16+cl {t16.mean_ms:.3f} ms vs fp32 {ev:.3f} ms, mode {mode}")

# (4) device-side quality equal to the host values on the same outputs
with torch.inference_mode():
    out = model(lr)
hr_img = metrics.to_uint8(out, 1.0).copy()
hr_img[::7] = 255 - hr_img[::7]  # a different HR, same shape
host = metrics.quality(metrics.to_uint8(out, 1.0), hr_img, crop_border=4)
tref = metrics_torch.prepare_reference(hr_img, crop_border=4, device=dev)
torch.cuda.synchronize(); t0 = time.perf_counter()
devq = metrics_torch.quality(out, tref, crop_border=4, input_range=1.0)
torch.cuda.synchronize(); tq = (time.perf_counter() - t0) * 1e3
report("device quality == host quality",
       devq["psnr_rgb"] == host["psnr_rgb"] and devq["psnr_y"] == host["psnr_y"]
       and abs(devq["ssim_rgb"] - host["ssim_rgb"]) < 1e-6 and abs(devq["ssim_y"] - host["ssim_y"]) < 1e-6,
       f"device {json.dumps(devq)} in {tq:.1f} ms; host {json.dumps(host)}")

# (5) CUDA IPC: a child process shares an output, this process maps it and scores it
child = subprocess.Popen([sys.executable, "-c", """
import json, sys, torch
from harness.measure.output_share import share_output
t = (torch.arange(3 * 64 * 96, device='cuda') % 251).to(torch.uint8).view(3, 64, 96)
h, p = share_output(t)
print(json.dumps(h), flush=True)
sys.stdin.readline()  # keep the tensor alive until the parent has read it
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
header = json.loads(child.stdout.readline())
want = (torch.arange(3 * 64 * 96, device=dev) % 251).to(torch.uint8).view(3, 64, 96)
try:
    got, where = open_output(header, None if header["kind"] == "cuda_ipc" else b"", expect_hw=(64, 96), device=dev)
    same = bool((torch.as_tensor(got, device=dev) == want).all())
    report("CUDA IPC hand-over", where == "cuda-ipc" and same, f"where={where}, header kind {header['kind']}")
except Exception as exc:
    report("CUDA IPC hand-over", False, f"{type(exc).__name__}: {exc}; header {header}")
finally:
    child.stdin.write("done\n"); child.stdin.flush(); child.wait(timeout=30)
h2, p2 = share_output(want, allow_ipc=False)
back, where2 = open_output(h2, p2, expect_hw=(64, 96))
report("host-copy fallback recorded", where2 == "host-copy" and np.array_equal(back, want.permute(1, 2, 0).cpu().numpy()),
       f"where={where2}, reason={h2.get('reason')}")
sys.exit(0 if ok else 1)
EOF

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  # (7) a real run on the device: the parent scores the outputs where they are (CUDA IPC) or says why not
  RUN=$(mktemp -d)
  timeout 150 "$PY" -m harness.cli run --entries span --device cuda --trials 1 --no-complexity --quiet \
      --out "$RUN" >/dev/null 2>"$RUN/err" || { echo "FAIL  esr run on cuda  ($(tail -1 "$RUN/err"))"; status=1; }
  "$PY" - "$RUN/records/span.json" <<'EOF2' || status=$?
import json, math, sys
rec = json.load(open(sys.argv[1]))
q = rec.get("quality") or {}
psnr = (rec.get("metrics") or {}).get("valid.psnr_rgb")
ok = rec.get("status") in ("ok", "untrained") and q.get("where") in ("cuda-ipc", "host-copy") and psnr and math.isfinite(psnr)
print(f"{'PASS' if ok else 'FAIL'}  esr run on cuda: quality where={q.get('where')} device={q.get('device')} "
      f"reason={q.get('host_copy_reason')} psnr_rgb={psnr} status={rec.get('status')}")
sys.exit(0 if ok else 1)
EOF2
  timeout 240 "$PY" bench/bench_scale.py --pairs "$PAIRS" --trials 3 --device cuda --no-complexity || status=$?
else
  echo "SKIP  scale bench on the device  (no CUDA: skipped)"
fi
exit $status
