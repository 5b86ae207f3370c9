"""Re-parameterisation: the folding helpers (brute force), FMEN and SPAN (counts, deploy, checkpoints, Set5)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import zoo_file
from torch import nn

from harness import reparam
from harness.submissions.checkpoint import load_entry_checkpoint
from harness.measure.deploy import apply_deploy
from models.fmen import ENTRIES as FMEN_ENTRIES
from models.fmen import FMEN, RRRB
from models.span import ENTRIES as SPAN_ENTRIES
from models.span import SPAN, Conv3XC

FMEN_CARD = FMEN_ENTRIES[0]
SPAN_CARD = SPAN_ENTRIES[0]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomise(model: nn.Module, seed: int, gain: float = 0.5) -> nn.Module:
    """All conv weights ~ N(0, gain^2 / fan_in) and biases ~ N(0, 0.1^2): non-zero biases reach
    every border term of the folds, and the scale keeps activations O(1) through the network."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / math.sqrt(m.weight[0].numel()))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def conv64(c_in: int, c_out: int, k: int, g: torch.Generator, padding: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, k, padding=padding, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g, dtype=torch.float64))
    return conv


def apply_kernel(x: torch.Tensor, kernel) -> torch.Tensor:
    w, b = kernel
    return F.conv2d(x, w, b, padding=w.shape[-1] // 2)


# ---------------------------------------------------------------- folding helpers, brute force

SIZES = [(1, 1), (2, 3), (5, 4), (7, 7), (8, 6)]  # odd, even, and smaller than the kernel


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("k", [3, 5])
def test_fuse_1x1_kxk_equals_chain_with_bias_padding(h, w, k):
    g = torch.Generator().manual_seed(1)
    expand, conv = conv64(3, 6, 1, g), conv64(6, 4, k, g)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    chain = conv(reparam.pad_with_values(expand(x), expand.bias, k // 2))
    folded = apply_kernel(x, reparam.fuse_1x1_kxk(reparam.conv_kernel(expand), reparam.conv_kernel(conv)))
    # the same chain written as "1x1 of the zero-padded input" (SPAN's Conv3XC convention)
    chain_zero_first = conv(expand(F.pad(x, (k // 2,) * 4)))
    assert folded.shape == (2, 4, h, w)
    assert torch.allclose(folded, chain, rtol=0, atol=1e-10)
    assert torch.allclose(chain_zero_first, chain, rtol=0, atol=1e-10)


def test_zero_padding_of_the_expanded_map_breaks_the_fold_only_at_the_border():
    g = torch.Generator().manual_seed(2)
    expand, conv = conv64(3, 6, 1, g), conv64(6, 4, 3, g)
    x = torch.randn(1, 3, 6, 5, generator=g, dtype=torch.float64)
    folded = apply_kernel(x, reparam.fuse_1x1_kxk(reparam.conv_kernel(expand), reparam.conv_kernel(conv)))
    with torch.no_grad():
        wrong = conv(F.pad(expand(x), (1, 1, 1, 1)))  # zeros instead of the expand bias
    diff = (folded - wrong).abs()
    assert float(diff[..., 1:-1, 1:-1].max()) < 1e-10  # interior: identical
    assert float(diff[..., 0, :].min()) > 1e-6           # every top-row pixel differs


@pytest.mark.parametrize("h,w", SIZES)
def test_fuse_kxk_1x1_equals_chain(h, w):
    g = torch.Generator().manual_seed(3)
    conv, reduce = conv64(4, 8, 3, g, padding=1), conv64(8, 5, 1, g)
    x = torch.randn(1, 4, h, w, generator=g, dtype=torch.float64)
    folded = apply_kernel(x, reparam.fuse_kxk_1x1(reparam.conv_kernel(conv), reparam.conv_kernel(reduce)))
    assert torch.allclose(folded, reduce(conv(x)), rtol=0, atol=1e-10)


@pytest.mark.parametrize("h,w", SIZES)
def test_add_branches_with_identity_1x1_and_5x5(h, w):
    g = torch.Generator().manual_seed(4)
    c3, c1, c5 = conv64(4, 4, 3, g, padding=1), conv64(4, 4, 1, g), conv64(4, 4, 5, g, padding=2)
    x = torch.randn(1, 4, h, w, generator=g, dtype=torch.float64)
    kernel = reparam.add_branches(reparam.conv_kernel(c3), reparam.conv_kernel(c1), reparam.conv_kernel(c5),
                                  reparam.identity_kernel(4, 3))
    assert kernel[0].shape == (4, 4, 5, 5)
    assert torch.allclose(apply_kernel(x, kernel), c3(x) + c1(x) + c5(x) + x, rtol=0, atol=1e-10)


def test_identity_kernel_and_to_conv():
    x = torch.randn(1, 3, 5, 4)
    conv = reparam.to_conv(reparam.identity_kernel(3, 3))
    assert isinstance(conv, nn.Conv2d) and conv.padding == (1, 1) and conv.weight.dtype == torch.float32
    assert torch.equal(conv(x), x)


def test_helpers_reject_what_they_cannot_fold():
    k3 = (torch.zeros(2, 2, 3, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="1x1"):
        reparam.fuse_1x1_kxk(k3, k3)
    with pytest.raises(ValueError, match="1x1"):
        reparam.fuse_kxk_1x1(k3, k3)
    with pytest.raises(ValueError, match="odd"):
        reparam.pad_kernel((torch.zeros(2, 2, 2, 2), torch.zeros(2)), 3)
    with pytest.raises(ValueError, match="stride 1"):
        reparam.conv_kernel(nn.Conv2d(2, 2, 3, stride=2))


# ---------------------------------------------------------------- blocks

@pytest.mark.parametrize("h,w", [(1, 1), (4, 7), (9, 8)])
def test_rrrb_and_conv3xc_fold_in_float64(h, w):
    g = torch.Generator().manual_seed(5)
    for block in (RRRB(6), Conv3XC(3, 5), Conv3XC(5, 5)):
        block = randomise(block.double(), 6, gain=1.0)
        x = torch.randn(1, block.channels if isinstance(block, RRRB) else block.c_in, h, w,
                        generator=g, dtype=torch.float64)
        with torch.no_grad():
            before = block(x)
            block.switch_to_deploy()
            after = block(x)
        assert torch.allclose(after, before, rtol=0, atol=1e-10)
        assert [n for n, _ in block.named_children()] == (["rep_conv"] if isinstance(block, RRRB) else ["eval_conv"])


# ---------------------------------------------------------------- FMEN

def test_fmen_parameter_counts():
    model = FMEN_CARD.build()
    assert n_params(model) == 1_044_714  # training form: each RRRB 40 C^2 + 5 C instead of 9 C^2 + C
    model.switch_to_deploy()
    assert n_params(model) == 341_066 == FMEN_CARD.expected["params"]
    assert n_params(FMEN(deploy=True)) == 341_066


def test_fmen_deploy_keys_match_the_listing():
    # the key listing of the official checkpoint, in file order (see ../shared/zoo/*.keys.txt)
    path = zoo_file("ntire2022_team03_fmen.keys.txt")
    listed = [line.split("\t")[0] for line in path.read_text().splitlines() if line.strip()]
    model = FMEN_CARD.build()
    model.switch_to_deploy()
    assert list(model.state_dict().keys()) == listed
    assert list(FMEN(deploy=True).state_dict().keys()) == listed


def test_fmen_deploy_is_equivalent_on_random_weights():
    model = randomise(FMEN_CARD.build(), seed=7)
    x = torch.rand(1, 3, 21, 16, generator=torch.Generator().manual_seed(8))  # odd and even sides
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert float(before.abs().max()) > 0.1  # not a degenerate network
    assert float((after - before).abs().max()) < 1e-4
    # the harness's own check on the card's method
    result = apply_deploy(randomise(FMEN_CARD.build(), seed=9), FMEN_CARD.deploy, name="fmen")
    assert result["equivalent"] and result["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fmen_forward_shape(scale):
    model = FMEN(scale=scale, deploy=True).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 9, 7) * 255)
    assert out.shape == (1, 3, 9 * scale, 7 * scale)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 34


def test_fmen_checkpoint_loads_strictly_after_deploy(zoo):
    path = zoo_file(FMEN_CARD.checkpoint)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = FMEN_CARD.build()
    model.switch_to_deploy()
    model.load_state_dict(state, strict=True)
    # the harness path: build training form, deploy with the equivalence check, load (sha256 checked)
    model = FMEN_CARD.build()
    assert apply_deploy(model, FMEN_CARD.deploy, name=FMEN_CARD.name)["equivalent"]
    info = load_entry_checkpoint(model, FMEN_CARD, zoo)
    assert info.trained and info.sha256 == FMEN_CARD.sha256
    assert torch.equal(model.tail[0].weight, state["tail.0.weight"])


# ---------------------------------------------------------------- SPAN

def test_span_parameter_counts():
    assert n_params(SPAN_CARD.build()) == 150_688 == SPAN_CARD.expected["params"]
    training = SPAN(deploy=False)
    assert n_params(training) == 634_048  # 19 Conv3XC(28, 28) x 32,312 + Conv3XC(3, 28) 4,812 + 15,308
    training.switch_to_deploy()
    assert n_params(training) == 150_688
    assert list(training.state_dict().keys()) == list(SPAN_CARD.build().state_dict().keys())


def test_span_deploy_keys_match_the_listing():
    path = zoo_file("ntire2026_team00_SPAN.keys.txt")
    listed = [line.split("\t")[0] for line in path.read_text().splitlines() if line.strip()]
    assert list(SPAN_CARD.build().state_dict().keys()) == listed


def test_span_training_form_folds_to_the_deploy_form():
    model = randomise(SPAN(deploy=False), seed=10)
    x = torch.rand(1, 3, 15, 12, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert float(before.abs().max()) > 0.1
    assert float((after - before).abs().max()) < 1e-4
    result = apply_deploy(randomise(SPAN(deploy=False), seed=12), "switch_to_deploy", name="span")
    assert result["equivalent"] and result["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_span_forward_shape(scale):
    model = SPAN(upscale=scale, deploy=True).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 9, 7))
    assert out.shape == (1, 3, 9 * scale, 7 * scale)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 22


def test_span_checkpoint_loads_strictly(zoo):
    path = zoo_file(SPAN_CARD.checkpoint)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = SPAN_CARD.build()
    model.load_state_dict(state, strict=True)
    info = load_entry_checkpoint(SPAN_CARD.build(), SPAN_CARD, zoo)
    assert info.trained and info.sha256 == SPAN_CARD.sha256


# ---------------------------------------------------------------- complexity of the deploy forms

@pytest.mark.parametrize("card", [FMEN_CARD, SPAN_CARD], ids=["fmen", "span"])
def test_deploy_form_complexity(card):
    """Issue 7 targets at 1x3x256x256, measured at 64x64: every conv is stride 1 with "same"
    padding, so MACs and conv-output elements scale exactly with h x w (factor 16)."""
    from harness.measure.complexity import profile

    model = card.build()
    if card.deploy:
        model.switch_to_deploy()
    prof = profile(model, input_shape=(1, 3, 64, 64), input_range=card.input_range)
    assert prof["conv"] == prof["conv_calls"] == card.expected["conv"]
    assert prof["macs"] == prof["macs_legacy"] == prof["flop_counter_macs"]
    assert round(prof["macs"] * 16 / 1e9, 4) == card.expected["macs"] / 1e9
    assert round(prof["activations"] * 16 / 1e6, 4) == round(card.expected["activations"] / 1e6, 4)
    # exact integers at 256 x 256 (FMEN 22,280,011,776 / 72,089,600; SPAN 9,833,807,872 / 41,680,896)
    assert prof["macs"] * 16 == {"fmen": 22_280_011_776, "span": 9_833_807_872}[card.name]
    assert prof["activations"] * 16 == {"fmen": 72_089_600, "span": 41_680_896}[card.name]


# ---------------------------------------------------------------- Set5 x4, the published figures

SET5_KEYS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")


def set5_x4(model: nn.Module, input_range: float, set5) -> list[float]:
    from PIL import Image

    from harness.measure.metrics import psnr, ssim, to_uint8

    rows = []
    for hr_path in sorted((set5 / "HR").glob("*.png")):
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        lr = np.asarray(Image.open(set5 / "LR_bicubic" / "X4" / f"{hr_path.stem}x4.png").convert("RGB"))
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        x = torch.from_numpy(lr.astype(np.float32)).permute(2, 0, 1)[None] * np.float32(input_range / 255.0)
        with torch.inference_mode():
            sr = to_uint8(model(x), input_range)
        rows.append([psnr(sr, hr, crop_border=4, channel="rgb"), ssim(sr, hr, crop_border=4, channel="rgb"),
                     psnr(sr, hr, crop_border=4, channel="y"), ssim(sr, hr, crop_border=4, channel="y")])
    assert len(rows) == 5, f"expected the 5 Set5 images in {set5}, found {len(rows)}"
    return [round(float(v), 4) for v in np.mean(rows, axis=0)]


def test_fmen_set5_x4(zoo, set5):
    model = FMEN_CARD.build()
    model.switch_to_deploy()
    model.load_state_dict(torch.load(zoo_file(FMEN_CARD.checkpoint), map_location="cpu", weights_only=True))
    figures = [30.1298, 0.8632, 32.0085, 0.8925]
    assert set5_x4(model.eval(), FMEN_CARD.input_range, set5) == figures
    assert [FMEN_CARD.expected[f"set5.{k}"] for k in SET5_KEYS] == figures


def test_span_set5_x4(zoo, set5):
    model = SPAN_CARD.build()
    model.load_state_dict(torch.load(zoo_file(SPAN_CARD.checkpoint), map_location="cpu", weights_only=True))
    figures = [29.8483, 0.8586, 31.7179, 0.8886]
    assert set5_x4(model.eval(), SPAN_CARD.input_range, set5) == figures
    assert [SPAN_CARD.expected[f"set5.{k}"] for k in SET5_KEYS] == figures
