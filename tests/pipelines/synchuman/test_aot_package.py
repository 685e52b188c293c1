"""Networks compiled ahead of time: built once, loaded on later starts, running on the module's weights.

The package mechanics run on the CPU with a small network (AOTInductor's C++
build of it takes seconds); the real stage-1 networks are exported here so
a change that breaks ``torch.export`` fails in CI, and compiled on the GPU in
tests/gpu.  Each test builds into its own temporary cache folder.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from pipelines.synchuman.aot_package import load_or_build, package_key, recorded_inputs

pytestmark = pytest.mark.slow


class SmallNet(nn.Module):
    """Two convolutions and a normalisation: a network with parameters and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8).eval()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.norm(self.conv(x)))
        return self.head(h) * scale, h.mean(dim=(2, 3))


@pytest.fixture()
def net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet().eval()


@pytest.fixture()
def args() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 3, 16, 16), torch.tensor([0.5])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache folder holding the small network's package, built by the first test that asks."""
    return tmp_path_factory.mktemp("aot-cache")


def test_built_once_then_loaded_matching_the_module(net, args, cache):
    first = load_or_build(net, args, cache, "small")
    assert first.built and first.path.is_file() and first.path.parent == cache
    package_bytes = first.path.stat().st_mtime_ns

    second = load_or_build(net, args, cache, "small")
    assert not second.built and second.path == first.path
    assert second.path.stat().st_mtime_ns == package_bytes  # loaded, not rewritten
    assert sorted(p.name for p in cache.iterdir() if p.suffix == ".pt2") == [first.path.name]

    with torch.no_grad():
        expected = net(*args)
        for network in (first, second):
            actual = network(*args)
            for a, e in zip(actual, expected, strict=True):
                torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


def test_the_package_runs_on_the_modules_own_weights(net, args, cache):
    network = load_or_build(net, args, cache, "small")
    assert {"conv.weight", "head.weight"} <= set(network.run.get_constant_fqns())
    with torch.no_grad():
        before = network(*args)[0].clone()
        net.head.weight.mul_(2.0)  # in place: a package holding its own copy would not see this
        after = network(*args)[0]
    bias_part = net.head.bias.view(1, -1, 1, 1) * args[1]
    torch.testing.assert_close(after - bias_part, 2 * (before - bias_part), rtol=1e-4, atol=1e-5)


def test_other_weight_values_get_their_own_package(net, args, cache):
    """Small tensors are folded into the compiled code, so a package is never reused for new weights."""
    first = load_or_build(net, args, cache, "small")
    with torch.no_grad():
        net.head.bias.add_(1.0)
        net.norm.running_mean.add_(0.3)
    second = load_or_build(net, args, cache, "small")
    assert second.built and second.path != first.path
    with torch.no_grad():
        torch.testing.assert_close(second(*args)[0], net(*args)[0], rtol=1e-4, atol=1e-5)


def test_the_key_follows_shapes_layout_and_weights(net, args):
    key = package_key(net, args)
    assert package_key(net, (args[0].clone(), args[1].clone())) == key  # input values do not matter
    with torch.no_grad():
        net.conv.weight.mul_(3)
    assert package_key(net, args) != key
    key = package_key(net, args)
    assert package_key(net, (torch.randn(4, 3, 16, 16), args[1])) != key
    assert package_key(net, (args[0].half(), args[1])) != key
    net.conv.weight.data = net.conv.weight.data.contiguous(memory_format=torch.channels_last)
    assert package_key(net, args) != key


def test_a_second_process_waits_for_the_first_build_and_loads_it(tmp_path):
    """Two workers starting together on one host: one builds, the other loads (no double build)."""
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from tests.pipelines.synchuman.test_aot_package import SmallNet
        from pipelines.synchuman.aot_package import load_or_build
        torch.manual_seed(0)
        network = load_or_build(SmallNet().eval(), (torch.randn(2, 3, 16, 16), torch.tensor([0.5])),
                                __import__('pathlib').Path({str(tmp_path)!r}), "small")
        print("built" if network.built else "loaded")
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted(p.communicate(timeout=300)[0].split()[-1] for p in processes)
    assert [p.returncode for p in processes] == [0, 0]
    assert outcomes == ["built", "loaded"]
    assert len(list(tmp_path.glob("*.pt2"))) == 1 and not list(tmp_path.glob(".building-*"))


def test_recorded_inputs_capture_every_positional_call(net, args):
    with recorded_inputs(net) as calls, torch.no_grad():
        net(*args)
        net(args[0][:1], args[1])
    assert [tuple(c[0].shape) for c in calls] == [(2, 3, 16, 16), (1, 3, 16, 16)]
    with recorded_inputs(net) as calls, pytest.raises(TypeError, match="keyword"):
        net(args[0], scale=args[1])


@pytest.mark.parity
def test_the_stage1_networks_export_for_the_shapes_of_a_job(parity_dir):
    """The cross-space network and the VAE decode export whole (no graph breaks) on the tiny weights."""
    from PIL import Image

    from pipelines.synchuman.stage1 import SyncHumanStage1Pipeline

    onestage = parity_dir / "onestage"
    pipe = SyncHumanStage1Pipeline.from_pretrained(onestage / "ckpt", dinov2=onestage / "dinov2/dinov2_vitl14_reg4_tiny.pth")
    with recorded_inputs(pipe.denoiser) as denoiser_calls, recorded_inputs(pipe._vae_decode) as decode_calls:
        pipe(Image.open(onestage / "input.png"), generator=torch.Generator().manual_seed(0), num_inference_steps=1)
    assert len(denoiser_calls) == 1 and len(decode_calls) == 5  # one step; 10 views decoded two at a time
    with torch.no_grad():
        for module, calls in ((pipe.denoiser, denoiser_calls), (pipe._vae_decode, decode_calls)):
            exported = torch.export.export(module, calls[0], strict=False)
            placeholders = [n for n in exported.graph.nodes if n.op == "placeholder"]
            assert len(placeholders) == len(exported.state_dict) + len(calls[0])  # weights + inputs, nothing else
