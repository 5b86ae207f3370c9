"""Reference entries EDSR, MSRResNet, IMDN and RLFN against the official record.

Exact parameter counts (derived by hand in the comments), output sizes at every supported
scale, strict loading of the official checkpoints (independently of the harness and through
``harness.submissions.checkpoint``), and the Set5 x4 figures of issue 7 to 4 decimals. Tests that need
``../shared`` skip with the reason when it is absent.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import zoo_file

from harness.submissions.checkpoint import load_entry_checkpoint
from harness.measure.metrics import psnr, ssim, to_uint8
from models import edsr, imdn, msrresnet, rlfn
from models.edsr import EDSR
from models.imdn import IMDN
from models.msrresnet import MSRResNet
from models.rlfn import NTIRE2022_KEY_MAP, RLFN

ENTRIES = {e.name: e for m in (edsr, imdn, msrresnet, rlfn) for e in m.ENTRIES}


def n_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------- parameter counts
# A 3x3 conv cin -> cout has 9 cin cout + cout parameters.
# EDSR, F features, B blocks: head 9*3F + F; B blocks of two 9F^2 + F; body conv 9F^2 + F;
# upsampler x2 stage 9F*4F + 4F (x4: two of them), x3 stage 9F*9F + 9F; tail 9F*3 + 3;
# MeanShift (sub_mean, add_mean) 2 x (3x3 weight + 3 bias) = 24, fixed (requires_grad False).
# Full (B=32, F=256): head 7,168 + 32 x 1,180,160 + 590,080 + tail 6,915 = 38,399,283, plus
#   x2: 2,360,320 -> 40,729,603 trainable;  x3: 5,310,720 -> 43,680,003;  x4: 4,720,640 -> 43,089,923.
# Baseline (B=16, F=64): head 1,792 + 16 x 73,856 + 36,928 + tail 1,731 = 1,222,147, plus
#   x2: 147,712 -> 1,369,859;  x3: 332,352 -> 1,554,499;  x4: 295,424 -> 1,517,571.
# The published 40.73M / 43.68M / 43.09M (and baseline 1.37M / 1.55M / 1.52M) round the same
# with or without the 24 fixed MeanShift parameters, so they cannot tell the two counts apart;
# the harness counts every nn.Parameter (as the challenges' sum(p.numel()) does): trainable + 24.
EDSR_COUNTS = [
    # (n_resblocks, n_feats, res_scale, scale, trainable, published millions)
    (32, 256, 0.1, 2, 40_729_603, 40.73),
    (32, 256, 0.1, 3, 43_680_003, 43.68),
    (32, 256, 0.1, 4, 43_089_923, 43.09),
    (16, 64, 1.0, 2, 1_369_859, 1.37),
    (16, 64, 1.0, 3, 1_554_499, 1.55),
    (16, 64, 1.0, 4, 1_517_571, 1.52),
]


@pytest.mark.parametrize("blocks,feats,res_scale,scale,trainable,published", EDSR_COUNTS)
def test_edsr_parameter_counts(blocks, feats, res_scale, scale, trainable, published):
    model = EDSR(n_resblocks=blocks, n_feats=feats, scale=scale, res_scale=res_scale)
    assert n_params(model, trainable_only=True) == trainable
    assert n_params(model) == trainable + 24
    assert round(trainable / 1e6, 2) == round((trainable + 24) / 1e6, 2) == published


def test_other_parameter_counts():
    # IMDN: head 1,792 + 8 IMDBs x 103,440 (conv1 36,928, conv2 27,712, conv3 27,712, conv4 6,928,
    # conv1x1 4,160) + sub.8 36,928 + model.2 (64 -> 48) 27,696 = 893,936.
    assert n_params(IMDN(upscale=4)) == 893_936
    # RLFN: conv_1 1,288 + 4 RLFBs x 69,230 (c1_r 19,920, c2_r 20,784, c3_r 19,918, c5 2,162,
    # ESA 752 + 272 + 2,320 + 2,320 + 782) + conv_2 19,090 + upsampler.0 (46 -> 48) 19,920 = 317,218.
    assert n_params(RLFN(upscale=4)) == 317_218
    # MSRResNet: conv_first 1,792 + 16 x 73,856 + upconv1/2 2 x 147,712 + HRconv 36,928
    # + conv_last 1,731 = 1,517,571 (the same layers as the trainable EDSR baseline x4).
    assert n_params(MSRResNet(upscale=4)) == 1_517_571
    # x2 and x3 have one upconv stage: 64 -> 256 (147,712) or 64 -> 576 (332,352).
    assert n_params(MSRResNet(upscale=2)) == 1_517_571 - 147_712
    assert n_params(MSRResNet(upscale=3)) == 1_517_571 - 2 * 147_712 + 332_352


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_card_params_match_the_model(name):
    entry = ENTRIES[name]
    model = entry.build()
    assert n_params(model) == entry.expected["params"]
    if "params_trainable" in entry.expected:
        assert n_params(model, trainable_only=True) == entry.expected["params_trainable"]


# ---------------------------------------------------------------- forward shapes
SHAPE_CASES = [
    (EDSR, dict(n_resblocks=16, n_feats=64), "scale", (2, 3, 4), (6, 9)),
    (EDSR, dict(n_resblocks=32, n_feats=256, res_scale=0.1), "scale", (2, 3, 4), (4, 5)),
    (MSRResNet, {}, "upscale", (2, 3, 4), (6, 9)),
    (IMDN, {}, "upscale", (2, 3, 4), (6, 9)),
    (RLFN, {}, "upscale", (2, 3, 4), (16, 19)),  # ESA's 7x7 max-pool needs >= 15 px
]


@pytest.mark.parametrize("cls,kwargs,scale_arg,scales,hw", SHAPE_CASES,
                         ids=["edsr_baseline", "edsr", "msrresnet", "imdn", "rlfn"])
def test_forward_shape_at_every_scale(cls, kwargs, scale_arg, scales, hw):
    torch.manual_seed(0)
    x = torch.rand(1, 3, *hw)
    for scale in scales:
        model = cls(**kwargs, **{scale_arg: scale}).eval()
        with torch.no_grad():
            y = model(x)
        assert y.shape == (1, 3, hw[0] * scale, hw[1] * scale), (cls.__name__, scale)
        assert torch.isfinite(y).all()


def test_unsupported_scales_raise():
    with pytest.raises(ValueError, match="scale must be"):
        EDSR(scale=5)
    with pytest.raises(ValueError, match="upscale must be"):
        MSRResNet(upscale=8)


# ---------------------------------------------------------------- EDSR specifics
def test_edsr_state_dict_names_follow_the_authors_release():
    keys = set(EDSR(n_resblocks=16, n_feats=64, scale=4).state_dict())
    for key in ("sub_mean.weight", "sub_mean.bias", "head.0.weight", "body.0.body.0.weight",
                "body.15.body.2.bias", "body.16.weight", "tail.0.0.weight", "tail.0.2.weight",
                "tail.1.weight", "add_mean.bias"):
        assert key in keys, key
    assert len(keys) == 2 * (2 + 1 + 16 * 2 + 1 + 2 + 1)  # weight + bias of every conv
    x3 = EDSR(n_resblocks=32, n_feats=256, scale=3).state_dict()
    assert x3["tail.0.0.weight"].shape == (2304, 256, 3, 3) and "tail.0.2.weight" not in x3


def test_edsr_mean_shift_is_fixed_and_exact():
    model = EDSR(n_resblocks=1, n_feats=8, scale=2)
    mean = 255.0 * torch.tensor([0.4488, 0.4371, 0.4040])
    for module, sign in ((model.sub_mean, -1), (model.add_mean, 1)):
        assert not module.weight.requires_grad and not module.bias.requires_grad
        assert torch.equal(module.weight.flatten(1), torch.eye(3))
        assert torch.allclose(module.bias, sign * mean, rtol=0, atol=1e-5)
    x = 255 * torch.rand(1, 3, 5, 7)
    assert torch.allclose(model.add_mean(model.sub_mean(x)), x, rtol=0, atol=1e-4)


def test_edsr_residual_scaling():
    model = EDSR(n_resblocks=2, n_feats=8, scale=2, res_scale=0.1).eval()
    block = model.body[0]
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(block(x), x + 0.1 * block.body(x), atol=1e-6)


def test_msrresnet_global_skip_is_bilinear_upsampling():
    model = MSRResNet(upscale=4).eval()
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        x = torch.rand(1, 3, 7, 5)
        expected = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        assert torch.equal(model(x), expected)


# ---------------------------------------------------------------- official checkpoints
def load_plain(name: str, key_map: dict | None = None) -> dict:
    """The checkpoint's state dict, keys renamed by ordered prefix rewrites (independent of harness)."""
    state = torch.load(zoo_file(name), map_location="cpu", weights_only=True)
    out = {}
    for key, value in state.items():
        for old, new in (key_map or {}).items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def test_imdn_loads_strictly():
    model = IMDN(in_nc=3, out_nc=3, nc=64, nb=8, upscale=4)
    model.load_state_dict(load_plain("ntire2022_imdn_baseline.pth"), strict=True)


def test_rlfn_both_layouts_load_strictly_and_agree():
    new = RLFN(upscale=4).eval()
    new.load_state_dict(load_plain("ntire2024_team00_rlfn.pth"), strict=True)
    old = RLFN(upscale=4).eval()
    old.load_state_dict(load_plain("ntire2022_team04_rlfn.pth", NTIRE2022_KEY_MAP), strict=True)
    x = 255 * torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(new(x), old(x))


@pytest.mark.parametrize("name", ["imdn", "rlfn", "rlfn_ntire2022"])
def test_cards_load_through_the_harness(name, zoo):
    entry = ENTRIES[name]
    zoo_file(entry.checkpoint)
    info = load_entry_checkpoint(entry.build(), entry, zoo)
    assert info.trained and info.sha256 == entry.sha256


@pytest.mark.parametrize("name", ["msrresnet", "edsr_baseline"])
def test_absent_checkpoint_means_untrained(name, tmp_path):
    entry = ENTRIES[name]
    info = load_entry_checkpoint(entry.build(), entry, tmp_path)
    assert not info.trained


# ---------------------------------------------------------------- Set5 x4
def set5_scores(model: torch.nn.Module, input_range: float, set5) -> dict:
    """Mean PSNR/SSIM (RGB and Y, border 4) over Set5 x4, by the protocol of issue 7."""
    from skimage.io import imread

    scores = {"psnr_rgb": [], "ssim_rgb": [], "psnr_y": [], "ssim_y": []}
    model.eval()
    hr_paths = sorted((set5 / "HR").glob("*.png"))
    assert len(hr_paths) == 5
    for hr_path in hr_paths:
        hr = imread(hr_path)[..., :3]
        lr = imread(set5 / "LR_bicubic" / "X4" / f"{hr_path.stem}x4.png")[..., :3]
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        # uint8 -> float32 divided by 255 / input_range, as the challenges' uint2tensor does
        x = torch.from_numpy(lr.astype(np.float32) / np.float32(255.0 / input_range)).permute(2, 0, 1)[None]
        with torch.no_grad():
            sr = to_uint8(model(x), input_range)
        for channel in ("rgb", "y"):
            scores[f"psnr_{channel}"].append(psnr(sr, hr, crop_border=4, channel=channel))
            scores[f"ssim_{channel}"].append(ssim(sr, hr, crop_border=4, channel=channel))
    return {k: round(float(np.mean(v)), 4) for k, v in scores.items()}


@pytest.mark.parametrize("name,checkpoint,figures", [
    ("imdn", "ntire2022_imdn_baseline.pth",
     {"psnr_rgb": 30.3343, "ssim_rgb": 0.8659, "psnr_y": 32.2260, "ssim_y": 0.8948}),
    ("rlfn", "ntire2024_team00_rlfn.pth",
     {"psnr_rgb": 30.2058, "ssim_rgb": 0.8636, "psnr_y": 32.0749, "ssim_y": 0.8927}),
])
def test_set5_x4_figures(name, checkpoint, figures, set5):
    entry = ENTRIES[name]
    model = entry.build()
    model.load_state_dict(load_plain(checkpoint, entry.key_map), strict=True)
    assert set5_scores(model, entry.input_range, set5) == figures
    assert {k: entry.expected[f"set5.{k}"] for k in figures} == figures
