"""Worker -> quality process hand-over of SR outputs: JSON headers, never pickle; host path on the CPU.

The CUDA IPC path needs a GPU: bench/gpu_check.sh exercises it (a child process shares, the
parent maps and scores); here the header checks that guard it are tested.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.measure.output_share import ShareError, open_output, share_output


def test_host_round_trip_is_exact_and_json_only():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)  # non-contiguous CHW view
    header, payload = share_output(t)
    assert json.loads(json.dumps(header)) == header  # the header is plain JSON
    assert header == {"kind": "host", "shape": [5, 7, 3], "from_cuda": False}
    out, where = open_output(header, payload, expect_hw=(5, 7))
    assert where == "host" and np.array_equal(out, img)


def test_bad_headers_are_refused_before_anything_is_mapped():
    t = torch.zeros(3, 4, 6, dtype=torch.uint8)
    header, payload = share_output(t)
    with pytest.raises(ShareError, match="expected 4x5x3"):
        open_output(header, payload, expect_hw=(4, 5))
    with pytest.raises(ShareError, match="bytes"):
        open_output(header, payload[:-1], expect_hw=(4, 6))
    with pytest.raises(ShareError, match="unknown output kind"):
        open_output({"kind": "pickle"}, payload, expect_hw=(4, 6))
    ipc = {"kind": "cuda_ipc", "shape": [3, 4, 6], "size_bytes": 10, "storage_offset": 0}
    with pytest.raises(ShareError, match="cannot hold 3x4x6"):
        open_output(ipc, None, expect_hw=(4, 6))
    with pytest.raises(ShareError, match=r"expected \[3, 4, 7\]"):
        open_output(ipc, None, expect_hw=(4, 7))
    with pytest.raises(ShareError, match="uint8 3xHxW"):
        share_output(torch.zeros(3, 4, 6))


# ---------------------------------------------------------------- the parent's side (harness.running.quality)

def _quality_fixture(device="cpu"):
    from harness.data.splits import Pair, Split
    from harness.running.quality import Quality

    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-9, 10, hr.shape), 0, 255).astype(np.uint8)
    split = Split(name="t", split="valid", scale=4, pairs=[Pair("img0", hr, hr[::4, ::4])], file_hash="x")
    return Quality({"valid": split}, entry="e", crop_border=4, device=device), hr, sr


def test_receive_scores_every_transport_to_the_same_values():
    from harness.measure.metrics import quality as host_quality

    want = host_quality(*_quality_fixture()[2:0:-1], crop_border=4)
    # the CPU protocol: raw H x W x 3 frame
    q, hr, sr = _quality_fixture()
    reply = q.receive({"type": "sr", "split": "valid", "index": 0, "shape": [40, 48, 3], "dtype": "uint8"}, sr.tobytes())
    assert reply == {"type": "ack"} and q.placement()["where"] == "host"
    assert {k: q.values["valid"][k][0] for k in want} == want
    # a CUDA output copied through the host (as the worker sends it when IPC is unavailable): said so, with the reason
    q, hr, sr = _quality_fixture(device="cuda")
    header, payload = share_output(torch.from_numpy(sr).permute(2, 0, 1))
    header.update(type="sr", split="valid", index=0, from_cuda=True, reason="CUDA IPC disabled")
    assert q.receive(header, payload) == {"type": "ack"}
    placed = q.placement()
    assert placed["where"] == "host-copy" and placed["host_copy_reason"] == "CUDA IPC disabled"
    assert {k: q.values["valid"][k][0] for k in want} == want
    # scored with torch where the tensor is (the device path; here the CPU device): same figures
    q, hr, sr = _quality_fixture()
    got = q.add("valid", 0, torch.from_numpy(sr).permute(2, 0, 1).contiguous())
    assert got["psnr_rgb"] == want["psnr_rgb"] and got["psnr_y"] == want["psnr_y"]
    assert abs(got["ssim_rgb"] - want["ssim_rgb"]) < 1e-9 and abs(got["ssim_y"] - want["ssim_y"]) < 1e-9


def test_receive_refuses_ipc_on_a_cpu_run_and_asks_for_a_host_copy_when_a_handle_cannot_be_mapped():
    from harness.running.quality import BadOutputError

    ipc = {"type": "sr", "split": "valid", "index": 0, "kind": "cuda_ipc", "shape": [3, 40, 48], "device": 0,
           "handle": "00" * 64, "size_bytes": 3 * 40 * 48, "offset_bytes": 0, "ref_counter_handle": "00",
           "ref_counter_offset": 0, "event_handle": "", "event_sync_required": False}
    q, _, _ = _quality_fixture()
    with pytest.raises(BadOutputError, match="CUDA IPC output arrived in a run on the CPU"):
        q.receive(ipc, None)
    q, _, _ = _quality_fixture(device="cuda")
    reply = q.receive(ipc, None)  # a CPU build of torch (or a foreign handle) cannot map it
    assert reply["type"] == "host" and reply["reason"].startswith("CUDA IPC handle not opened")
    assert q.values["valid"]["psnr_rgb"][0] is None  # nothing scored until the host copy arrives
    with pytest.raises(BadOutputError, match="expected"):
        q.receive(dict(ipc, shape=[3, 41, 48]), None)  # sizes are checked before anything is mapped


def test_prepared_hrs_are_shared_by_entries_only_under_a_checked_hash(tmp_path):
    from harness.data.splits import Pair, Split, load_cache, save_cache
    from harness.measure.metrics import quality as host_quality
    from harness.running.quality import Quality, ReferenceStore

    rng = np.random.default_rng(5)
    hrs = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    built = Split(name="t", split="valid", scale=4, pairs=[Pair(f"i{k}", h, h[::4, ::4]) for k, h in enumerate(hrs)],
                  file_hash="x")
    assert built.content_sha256 is None
    split = load_cache(save_cache(built, tmp_path / "valid.npz"))
    assert split.content_sha256  # set once the arrays matched it
    one = (32 * 40) * 4  # bytes of one prepared 40x48 HR cropped by 4: R, G, B, Y planes
    store = ReferenceStore(budget_bytes=2 * one)
    refs = [store.get(split, k, 4) for k in range(3)]
    assert store.bytes == 2 * one  # the third did not fit: prepared, not kept
    again = [store.get(split, k, 4) for k in range(3)]
    assert again[0] is refs[0] and again[1] is refs[1] and again[2] is not refs[2]
    assert store.get(split, 0, 2) is not refs[0]  # another crop is another reference
    assert store.get(built, 0, 4) is not store.get(built, 0, 4)  # no checked hash: never kept
    # an entry scored with shared references gets exactly the figures of a fresh preparation
    sr = np.clip(hrs[1].astype(int) + rng.integers(-9, 10, hrs[1].shape), 0, 255).astype(np.uint8)
    for _ in range(2):
        got = Quality({"valid": split}, entry="e", crop_border=4).add("valid", 1, sr)
        assert got == host_quality(sr, hrs[1], crop_border=4)
