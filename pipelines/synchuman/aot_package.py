"""Networks compiled ahead of time (AOTInductor) and kept on disk between worker starts.

``torch.compile`` keeps its kernels in Inductor's cache, yet every process
start still traces the network again with Dynamo and looks each graph up
(22-29 s for the stage-1 network and VAE decoder on an H200).  An AOTInductor
package holds the compiled network itself: loading it is opening a shared
library, so a restarted worker is ready in seconds.

:func:`load_or_build` exports a module for one fixed set of input shapes,
compiles it into ``{cache_dir}/{name}-{key}.pt2`` the first time and loads the
package on later starts.  The package does not hold the large weights: the
loaded network runs on the module's own tensors (``user_managed`` constants),
so the GPU holds one copy of them.  AOTInductor does fold small tensors that
only feed reshapes (biases, normalisation statistics) into the compiled code,
so ``key`` covers the weights' values too (a fingerprint), besides everything
else the code depends on: torch and diffusers versions, the GPU architecture,
the source of the network's package, parameter and input shapes, dtypes and
strides.  New weights, a new image or another GPU compile afresh instead of
loading a stale package.
Two workers starting together on one host build a package once: the second
waits on a file lock and loads what the first built.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

PACKAGE_FOLDER = "synchuman-aot"
"""Folder for the packages inside the compile cache directory."""


@dataclass(frozen=True)
class AotNetwork:
    """A compiled network for fixed input shapes; call it as the module's ``forward``."""

    run: Callable[..., object]
    path: Path
    built: bool
    """Whether this start compiled the package (else it was loaded from disk)."""
    seconds: float

    def __call__(self, *args: torch.Tensor):
        return self.run(*args)


def default_cache_dir() -> Path:
    """``$TORCHINDUCTOR_CACHE_DIR/synchuman-aot`` (torch's own cache folder when unset)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / PACKAGE_FOLDER


def load_or_build(module: nn.Module, example_args: tuple[torch.Tensor, ...], cache_dir: Path, name: str) -> AotNetwork:
    """The package for ``module`` called on tensors shaped as ``example_args``; built if absent.

    Raises whatever ``torch.export`` or AOTInductor raise when the module
    cannot be compiled ahead of time; the caller decides how to fall back.
    """
    started = time.perf_counter()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}-{package_key(module, example_args)}.pt2"
    with _exclusive(path.with_suffix(".lock")):
        built = not path.is_file()
        if built:
            _build(module, example_args, path)
    runner = torch._inductor.aoti_load_package(str(path), device_index=_device_index(example_args))
    weights = dict(module.named_parameters()) | dict(module.named_buffers())
    wanted = runner.get_constant_fqns()
    missing = [fqn for fqn in wanted if fqn not in weights]
    if missing:
        raise RuntimeError(f"{path.name} expects tensors the module does not hold: {', '.join(missing[:5])}")
    runner.load_constants({fqn: weights[fqn] for fqn in wanted}, check_full_update=True, user_managed=True)
    seconds = round(time.perf_counter() - started, 2)
    log.info("compiled network ready", extra={"network": name, "built": built, "seconds": seconds, "path": str(path)})
    return AotNetwork(run=runner, path=path, built=built, seconds=seconds)


def package_key(module: nn.Module, example_args: tuple[torch.Tensor, ...]) -> str:
    """16 hex digits naming everything the compiled code depends on."""
    digest = hashlib.sha256()
    for part in _key_parts(module, example_args):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _key_parts(module: nn.Module, example_args: tuple[torch.Tensor, ...]) -> Iterator[str]:
    import diffusers

    yield f"torch {torch.__version__} cuda {torch.version.cuda} diffusers {diffusers.__version__}"
    devices = {arg.device for arg in example_args if isinstance(arg, torch.Tensor)}
    for device in sorted(devices, key=str):
        if device.type == "cuda":
            yield f"sm {torch.cuda.get_device_capability(device)}"
    source = Path(inspect.getfile(type(module))).parent
    for file in sorted(source.glob("*.py")):
        yield file.name + hashlib.sha256(file.read_bytes()).hexdigest()
    yield type(module).__qualname__
    for fqn, tensor in [*module.named_parameters(), *module.named_buffers()]:
        yield _describe(fqn, tensor)
    yield _fingerprint(module)
    for index, arg in enumerate(example_args):
        yield _describe(f"arg{index}", arg) if isinstance(arg, torch.Tensor) else f"arg{index}={arg!r}"


def _describe(name: str, tensor: torch.Tensor) -> str:
    return f"{name} {tuple(tensor.shape)} {tuple(tensor.stride())} {tensor.dtype} {tensor.device.type}"


def _fingerprint(module: nn.Module) -> str:
    """The weights' values, summarised: each tensor's sum and sum of squares (float64, on its device)."""
    tensors = [t for _, t in [*module.named_parameters(), *module.named_buffers()] if t.is_floating_point()]
    if not tensors:
        return "no weights"
    with torch.no_grad():
        stats = torch.stack([torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors])
    return " ".join(f"{value:.9e}" for value in stats.cpu().flatten().tolist())


def _build(module: nn.Module, example_args: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export ``module`` and compile it into ``path`` (written whole, then renamed into place)."""
    log.info("compiling network ahead of time", extra={"path": str(path)})
    started = time.perf_counter()
    with torch.no_grad():
        exported = torch.export.export(module, example_args, strict=False)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".building-") as scratch:
        partial = Path(scratch) / path.name
        torch._inductor.aoti_compile_and_package(
            exported,
            package_path=str(partial),
            inductor_configs={"aot_inductor.package_constants_in_so": False},
        )
        os.replace(partial, path)
    log.info("compiled network written", extra={"path": str(path), "seconds": round(time.perf_counter() - started, 1)})


def _device_index(example_args: tuple[torch.Tensor, ...]) -> int:
    for arg in example_args:
        if isinstance(arg, torch.Tensor) and arg.device.type == "cuda":
            return arg.device.index if arg.device.index is not None else torch.cuda.current_device()
    return -1


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (other processes on this host wait)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def recorded_inputs(module: nn.Module) -> Iterator[list[tuple[torch.Tensor, ...]]]:
    """Collect the positional arguments of every call to ``module`` inside the block."""
    calls: list[tuple[torch.Tensor, ...]] = []

    def record(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        if kwargs:
            raise TypeError(f"{type(module).__name__} was called with keyword arguments; pass them by position")
        calls.append(args)

    handle = module.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()
