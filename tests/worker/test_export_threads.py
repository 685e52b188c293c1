"""``worker.export_threads`` and ``worker.workers_per_gpu`` reach the export: the real export's
torch pool, seen from its own progress callback, has the size the settings give it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pipelines.export import threads
from pipelines.export.textured import ExportConfig, export_textured_mesh
from shared.settings import Settings
from tests.pipelines.export.meshes import bumpy_sphere
from tests.pipelines.export.scene import render_stage1_views
from worker.runtime import limit_export_threads


@pytest.fixture()
def budget() -> Iterator[None]:
    """No export budget before and after the test; torch's pool as it was afterwards."""
    threads.clear_export_threads()
    pool = torch.get_num_threads()
    yield
    threads.clear_export_threads()
    torch.set_num_threads(pool)


def pool_sizes_during_export() -> set[int]:
    """torch's intra-op pool size at every bake step of a small real export."""
    mesh = bumpy_sphere(2)
    seen: set[int] = set()
    export_textured_mesh(mesh, render_stage1_views(mesh, 64), texture_size=64, simplify=0.0, bake_steps=3,
                         callback=lambda *_: seen.add(torch.get_num_threads()), config=ExportConfig(hole_fill=None))
    return seen


def worker_settings(monkeypatch, **env: str):
    for name, value in env.items():
        monkeypatch.setenv(f"SYNCHUMAN_WORKER__{name}", value)
    return Settings().worker


def test_export_threads_setting_sizes_the_exports_pool_and_the_pool_is_restored(monkeypatch, budget) -> None:
    torch.set_num_threads(3)  # what the process runs with outside the export
    assert limit_export_threads(worker_settings(monkeypatch, EXPORT_THREADS="1")) == 1
    assert pool_sizes_during_export() == {1}
    assert torch.get_num_threads() == 3

    assert limit_export_threads(worker_settings(monkeypatch, EXPORT_THREADS="2")) == 2
    assert pool_sizes_during_export() == {2}


def test_workers_per_gpu_share_torchs_pool_by_default(monkeypatch, budget) -> None:
    share = max(1, threads.TORCH_THREADS // 2)
    assert limit_export_threads(worker_settings(monkeypatch, WORKERS_PER_GPU="2")) == share
    torch.set_num_threads(threads.TORCH_THREADS + 1)
    assert pool_sizes_during_export() == {share}
    # One worker per GPU: torch's own pool size, as without the setting.
    monkeypatch.delenv("SYNCHUMAN_WORKER__WORKERS_PER_GPU")
    assert limit_export_threads(worker_settings(monkeypatch)) == threads.TORCH_THREADS


def test_without_a_budget_the_export_leaves_torchs_pool_alone(budget) -> None:
    assert threads.export_threads() is None
    torch.set_num_threads(3)
    assert pool_sizes_during_export() == {3}


def test_settings_refuse_a_budget_below_one_thread(monkeypatch) -> None:
    with pytest.raises(ValueError):
        worker_settings(monkeypatch, EXPORT_THREADS="0")
    with pytest.raises(ValueError):
        worker_settings(monkeypatch, WORKERS_PER_GPU="0")


def test_compose_tells_each_gpu_worker_how_many_processes_share_its_gpu() -> None:
    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    workers = {name: service for name, service in compose["services"].items() if name.startswith("worker-gpu")}
    assert workers
    for name, service in workers.items():
        # The same variable sets the replicas and the workers' share of the cores.
        assert service["environment"]["SYNCHUMAN_WORKER__WORKERS_PER_GPU"] == service["deploy"]["replicas"], name
        assert "SYNCHUMAN_WORKERS_PER_GPU" in service["deploy"]["replicas"], name
