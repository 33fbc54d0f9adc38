"""`cnnlab study --workers N` on a machine with several GPUs: each worker process gets its own GPU,
round-robin by CUDA_VISIBLE_DEVICES, several per GPU when there are more workers than GPUs.
Checked on the CPU through the environment each worker process is started with."""

from __future__ import annotations

from pathlib import Path

import cnnlab.studies.launch as launch
from cnnlab.device import visible_gpus, worker_gpu


class FakeProcess:
    started: list[tuple[list[str], dict[str, str]]] = []

    def __init__(self, cmd: list[str], env: dict[str, str]):
        FakeProcess.started.append((cmd, env))


def start(monkeypatch, workers: int, visible: str | None) -> tuple[list[str | None], list[str]]:
    """The CUDA_VISIBLE_DEVICES of each worker started as a new process (None: forked, studies/forked.py)."""
    FakeProcess.started = []
    monkeypatch.setattr(launch.subprocess, "Popen", FakeProcess)
    forked: list[int] = []
    monkeypatch.setattr(launch.forked, "start", lambda run, path, overrides, storage, threads, i, say: forked.append(i))
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    said: list[str] = []
    launch._start_processes(Path("study.yaml"), [], None, workers, said.append)
    if forked:
        assert forked == list(range(1, workers)) and not FakeProcess.started
        return [None] * len(forked), said
    assert [cmd[cmd.index("--worker-index") + 1] for cmd, _ in FakeProcess.started] == [str(i) for i in range(1, workers)]
    return [env.get("CUDA_VISIBLE_DEVICES") for _, env in FakeProcess.started], said


def test_workers_get_gpus_round_robin(monkeypatch):
    # 8 workers on 2 GPUs: worker 0 (this process) and 2, 4, 6 on GPU 0; 1, 3, 5, 7 on GPU 1.
    gpus, said = start(monkeypatch, 8, "0,1")
    assert gpus == ["1", "0", "1", "0", "1", "0", "1"]
    assert said == ["8 workers over 2 GPUs, round-robin (GPU 0: 4, GPU 1: 4)"]
    # The GPUs a scheduler gave us, by index or UUID, are the ones handed out.
    gpus, _ = start(monkeypatch, 3, "5, 7,GPU-aa11")
    assert gpus == ["7", "GPU-aa11"]
    # One GPU is shared by every worker and the mask is left alone; no GPU: the CPU, workers forked.
    assert start(monkeypatch, 3, "0")[0] == ["0", "0"]
    assert start(monkeypatch, 3, "") == ([None] * 2, [])


def test_this_machine_has_no_gpu_to_hand_out(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == [] and worker_gpu(3, []) is None
    gpus, said = start(monkeypatch, 2, None)
    assert gpus == [None] and said == []
