"""Precision stays honest: bf16 agrees with fp32 within the documented error, ``auto`` never
picks a precision the machine lacks, and the fast layouts compute the same numbers.

The documented bf16 error (``benchmarks/README.md``): random-weight networks are chaotic,
so bf16 cannot be held to a fixed number of levels with them. What holds, with random and
stand-in weights alike, is that bf16 moves the 8-bit output less than fp32 itself moves
when the input photo is re-quantized by up to half a level (uniform ±½-level dither):
the ratio was 0.6–0.93 on tiny random weights and about 0.7 on the full-size stand-ins where
first measured, and on an AMD EPYC Zen 4 with AVX512-BF16 (no AMX) quality 0.62, scratch 0.92.
Its source is the same on every CPU: oneDNN rounds the convolutions' inputs to bf16 and sums in
fp32 whether bf16 is emulated, AVX512-BF16 or AMX; only the summation order differs. The test
holds bf16 to ``DITHER_RATIO`` times that (slack for other CPUs' kernels), and to an absolute
ceiling that catches a broken path. It runs on every CPU: where
bf16 is emulated (AVX2, no AVX512-BF16/AMX) it is slow at full size but takes seconds on the
tiny weights, and a user may still ask for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oldphoto import Restorer, devices
from oldphoto.errors import UsageError
from oldphoto.networks.blocks import InstanceNorm, ReflectionPad
from oldphoto.pipeline import finish, prepare, run_networks
from oldphoto.speed import FastInstanceNorm, head_multiple
from tests.support.tiny import make_tiny_weights

PHOTO = Path(__file__).parent / "data" / "photos" / "old_a.png"
#: A broken bf16 path (wrong layout, garbage) differs by tens of levels; a working one by a few.
CEILING_LEVELS = 6.0
#: bf16's change may be at most this multiple of fp32's change under ±½-level input dither.
DITHER_RATIO = 1.5

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("precision") / "weights")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    image = Image.open(PHOTO).convert("RGB")
    return image.crop((0, 0, 200, 248))


def _scratch_mask(size: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 3, 0, size[0] // 3 + 4, size[1]))
    return mask


def _fp32_dither_error(weights: Path, photo: Image.Image, mask: Image.Image | None, mode: str) -> float:
    """Mean 8-bit change of the fp32 output when the input tensor moves by up to ±½ level."""
    restorer = Restorer(weights, device="cpu", precision="fp32")
    meta, bundle = restorer.model(mode)
    prepared = prepare(photo, mask, meta["pipeline"])
    m = prepared.mask
    generator = torch.Generator().manual_seed(0)
    noise = (torch.rand(prepared.x.shape, generator=generator) * 2 - 1) * (1.0 / 255.0)
    with torch.inference_mode():
        clean = finish(run_networks(bundle, prepared.x, m)["output"], prepared).astype(np.int16)
        dithered = finish(run_networks(bundle, prepared.x + noise, m)["output"], prepared).astype(np.int16)
    return float(np.abs(clean - dithered).mean())


@pytest.mark.parametrize("mode", ["quality", "scratch"])
def test_bf16_agrees_with_fp32_within_documented_error(tiny: Path, photo: Image.Image, mode: str) -> None:
    mask = _scratch_mask(photo.size) if mode == "scratch" else None
    outputs = {}
    for precision in ("fp32", "bf16"):
        restored = Restorer(tiny, device="cpu", precision=precision).restore(photo, mask, mode=mode)
        assert restored.size == photo.size
        outputs[precision] = np.asarray(restored, dtype=np.int16)
    diff = np.abs(outputs["fp32"] - outputs["bf16"])
    assert diff.max() > 0, "the bf16 restorer computed in fp32"
    floor = _fp32_dither_error(tiny, photo, mask, mode)
    assert diff.mean() <= DITHER_RATIO * floor, f"bf16 moved the output {diff.mean():.2f} levels, fp32 under dither {floor:.2f}"
    assert diff.mean() <= CEILING_LEVELS


def test_native_bf16_probe_agrees_with_the_cpu_flags() -> None:
    """The probe ``auto`` relies on says what /proc/cpuinfo says, on whatever CPU runs the suite."""
    flags = devices._cpuinfo_flags()
    if not flags or not torch.backends.mkldnn.is_available():
        pytest.skip("no /proc/cpuinfo flags or no oneDNN to compare with")
    assert devices.cpu_has_fast_bf16() == bool({"amx_bf16", "avx512_bf16"} & flags)


def test_auto_on_this_cpu_runs_what_the_cpu_has(tiny: Path) -> None:
    """Unpatched: on a CPU without native bf16, ``auto`` restores in fp32 (weights and compute)."""
    expected = "bf16" if devices.AUTO_BF16_ON_CPU and devices.cpu_has_fast_bf16() else "fp32"
    assert devices.select_precision("auto", torch.device("cpu")) == expected
    assert Restorer(tiny, device="cpu", precision="auto").precision == expected
    if not devices.cpu_has_fast_bf16():
        assert expected == "fp32"


def test_auto_is_fp32_until_bf16_is_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "AUTO_BF16_ON_CPU", False)
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    assert devices.select_precision("auto", torch.device("cpu")) == "fp32"


def test_auto_never_picks_bf16_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "AUTO_BF16_ON_CPU", True)
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: False)
    assert devices.select_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    assert devices.select_precision("auto", torch.device("cpu")) == "bf16"


def test_auto_on_cuda_and_mps_is_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "AUTO_BF16_ON_CPU", True)
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    for kind in ("cuda", "mps"):
        assert devices.select_precision("auto", torch.device(kind)) == "fp32"


def test_fast_bf16_needs_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert devices.cpu_has_fast_bf16() is False


def test_fp16_refused_on_cpu() -> None:
    with pytest.raises(UsageError):
        devices.select_precision("fp16", torch.device("cpu"))


def test_weights_laid_out_once_per_precision(tiny: Path) -> None:
    def layout(precision: str) -> dict[str, bool]:
        _, bundle = Restorer(tiny, device="cpu", precision=precision).model("quality")
        return {name: all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)
                for name, net in bundle.items()}

    assert layout("bf16") == {"encoder": True, "mapping": True, "decoder": True}
    # fp32 on the CPU keeps the published summation order up to the decoder (parity).
    assert layout("fp32") == {"encoder": False, "mapping": False, "decoder": True}


def test_instance_norm_is_layout_independent() -> None:
    x = torch.randn(1, 16, 20, 24) * 3 + 1
    published = InstanceNorm(16, affine=False, track_running_stats=False, eps=1e-5)
    nchw = published(x)
    # On channels-last maps even a norm that keeps the published kernel computes with group norm's.
    cl = FastInstanceNorm(published, published_kernel=True)(x.contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, nchw, rtol=0, atol=1e-5)
    torch.testing.assert_close(nchw, torch.nn.functional.instance_norm(x, eps=1e-5), rtol=0, atol=0)


def test_reflection_pad_keeps_dtype_under_autocast() -> None:
    x = torch.randn(1, 4, 6, 6, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ReflectionPad(1)(x).dtype == torch.bfloat16


def test_padded_attention_heads_are_exact() -> None:
    from oldphoto.networks.nonlocal_block import attention_heads, renormalised_attention

    torch.manual_seed(0)
    theta, phi, g = (torch.randn(1, 24, 5, 7) * 0.3 for _ in range(3))
    weights = (torch.rand(1, 35, 1) > 0.3).float()

    def attend(multiple: int) -> torch.Tensor:
        heads = attention_heads(theta, multiple=multiple), attention_heads(phi, multiple=multiple)
        return renormalised_attention(*heads, attention_heads(g, weights, multiple=multiple), 24)

    padded = attention_heads(theta, multiple=16)
    assert padded.shape[-1] == 32 and not padded[..., 24:].any()
    torch.testing.assert_close(attend(16), attend(1), rtol=0, atol=1e-6)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (head_multiple(cpu, "fp32"), head_multiple(cpu, "bf16"), head_multiple(cuda, "fp32")) == (1, 16, 16)


def test_training_auto_is_bf16_only_for_stages_measured_faster_on_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """``train --precision auto``: fp16 AMP on CUDA; on the CPU bf16 only for the stages whose
    bf16 step measured faster (``benchmarks/train_precision.py``) and only with native bf16."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native, amx in ((True, False), (True, True), (False, False)):
        monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda native=native: native)
        monkeypatch.setattr(devices, "cpu_has_amx", lambda amx=amx: amx)
        for stage in ("vae-a", "vae-b", "mapping", "mapping-scratch", "detector"):
            faster = devices.AUTO_BF16_TRAINING_STAGES_AMX if amx else devices.AUTO_BF16_TRAINING_STAGES
            expected = "bf16" if native and stage in faster else "fp32"
            assert devices.training_precision("auto", cpu, stage) == expected, (native, amx, stage)
            assert devices.training_precision("fp32", cpu, stage) == "fp32"
            assert devices.training_precision("bf16", cpu, stage) == "bf16"
            assert devices.training_precision("auto", cuda, stage) == "fp16"
    # What the benchmark measured faster: with AVX512-BF16 alone (Zen 4) three stages; with AMX also the scratch chain.
    assert devices.AUTO_BF16_TRAINING_STAGES == {"mapping", "detector", "vae-b"}
    assert devices.AUTO_BF16_TRAINING_STAGES_AMX == {"mapping", "mapping-scratch", "detector", "vae-b"}
    with pytest.raises(UsageError, match="fp16 training needs CUDA"):
        devices.training_precision("fp16", cpu, "mapping")
