"""The torch trainer's GPU paths, checked on the CPU: no synchronising host-to-device copy in a step
(every host array built on the host, pinned, moved with non_blocking; under CUDA the real sync
check), a rank's device under torchrun, checkpoints written in the background and every N epochs,
steps GradScaler skips skipping the weight decay, and `--loader gpu` refused without a GPU."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gntkit.training as training  # noqa: E402
from gntkit.cli.main import app  # noqa: E402
from gntkit.datasets import torch_prefetch  # noqa: E402
from gntkit.errors import GntkitError  # noqa: E402
from gntkit.training.config import TrainConfig  # noqa: E402
from gntkit.training.torch_trainer import backend as torch_backend  # noqa: E402
from gntkit.training.torch_trainer import inputs as torch_inputs  # noqa: E402
from gntkit.training.torch_trainer.checkpoints import CheckpointWriter, load_checkpoint, save_checkpoint  # noqa: E402
from gntkit.training.torch_trainer.device import gpu_of_rank  # noqa: E402
from gntkit.training.torch_trainer.steps import TorchSteps, build_optimizer  # noqa: E402
from test_training import CHARSET, PREPROCESS, glyph_arrays  # noqa: E402

OPTIONS = dict(framework="torch", model="cnn3", epochs=1, batch_size=16, optimizer="adam", lr=1e-3, seed=0,
               quiet=True, precision="fp32")


class _TensorSet:
    """Tensors by identity (a tensor's == compares values); held, so that an id is not reused."""

    def __init__(self):
        self.held = {}

    def add(self, tensor) -> None:
        self.held[id(tensor)] = tensor

    def __contains__(self, tensor) -> bool:
        return id(tensor) in self.held


class TransferRecorder:
    """Records every tensor built from host data and every move of one to a device, in the step's code.

    A move counts as asynchronous when the tensor went through `torch_prefetch.pinned`
    (replaced here: on a CPU there is no page-locked memory) and `non_blocking=True`; a
    tensor built from a numpy array directly on a device (`torch.as_tensor(a, device=...)`)
    is a synchronising copy under CUDA.
    """

    def __init__(self, monkeypatch):
        self.host, self.pinned = _TensorSet(), _TensorSet()
        self.moves, self.problems = 0, []
        for name in ("as_tensor", "tensor", "from_numpy"):
            monkeypatch.setattr(torch, name, self._builder(getattr(torch, name), name))
        monkeypatch.setattr(torch.Tensor, "to", self._mover(torch.Tensor.to))
        monkeypatch.setattr(torch.Tensor, "copy_", self._copier(torch.Tensor.copy_))
        monkeypatch.setattr(torch_prefetch, "pinned", self._pin)
        # Recorded: what runs for every step (the step, and the copy of the next batch).
        self.active = 0
        monkeypatch.setattr(TorchSteps, "train_step", self._scope(TorchSteps.train_step))
        monkeypatch.setattr(torch_prefetch.DevicePrefetcher, "_transfer", self._scope(torch_prefetch.DevicePrefetcher._transfer))

    def _scope(self, method):
        def scoped(*args, **kwargs):
            self.active += 1
            try:
                return method(*args, **kwargs)
            finally:
                self.active -= 1
        return scoped

    def _pin(self, tensor):
        self.pinned.add(tensor)
        return tensor

    def _builder(self, build, name):
        def built(data, *args, **kwargs):
            tensor = build(data, *args, **kwargs)
            if self.active and isinstance(data, (np.ndarray, list, tuple, int, float)):
                self.host.add(tensor)
                # gntkit's own calls: torch's optimizers keep their step counts on the host by design
                if kwargs.get("device") is not None and sys._getframe(1).f_globals.get("__name__", "").startswith("gntkit"):
                    self.problems.append(f"torch.{name}(host data, device={kwargs['device']})")
            return tensor
        return built

    def _check(self, tensor, non_blocking, what):
        if self.active and (tensor in self.host or tensor in self.pinned):
            self.moves += 1
            if tensor not in self.pinned or not non_blocking:
                self.problems.append(f"{what}: pinned={tensor in self.pinned}, non_blocking={non_blocking}")

    def _mover(self, to):
        def moved(tensor, *args, **kwargs):
            targets_device = "device" in kwargs or any(isinstance(a, (str, torch.device)) for a in args)
            if targets_device:
                self._check(tensor, bool(kwargs.get("non_blocking", False)), "Tensor.to")
            result = to(tensor, *args, **kwargs)
            if not targets_device and tensor in self.host and result is not tensor:
                self.host.add(result)  # a dtype conversion on the host is still host data
            return result
        return moved

    def _copier(self, copy):
        def copied(tensor, source, non_blocking=False):
            if tensor not in self.host and tensor not in self.pinned:
                self._check(source, non_blocking, "Tensor.copy_")
            return copy(tensor, source, non_blocking)
        return copied


def test_the_torch_step_moves_host_data_only_from_pinned_memory_without_waiting(tmp_path, monkeypatch):
    # The device's path through random_warp (grid made on the device from the drawn parameters).
    monkeypatch.setattr(torch_inputs, "HOST_GRID_DEVICES", ())
    train, val = glyph_arrays(4, seed=1), glyph_arrays(2, seed=2)
    recorder = TransferRecorder(monkeypatch)
    training.train_arrays(train, val, CHARSET, tmp_path / "run", preprocess=PREPROCESS, augment=True, **OPTIONS)
    assert recorder.problems == []
    steps = -(-len(train[1]) // OPTIONS["batch_size"])
    assert recorder.moves >= 4 * steps  # images, labels, warp matrices, elastic offsets of every step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_torch_step_never_synchronises_on_a_gpu(tmp_path, monkeypatch):
    train_step = TorchSteps.train_step

    def checked(self, images, labels, lr, index):
        if index < 2:  # the first steps pick cuDNN algorithms and may wait
            return train_step(self, images, labels, lr, index)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return train_step(self, images, labels, lr, index)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(TorchSteps, "train_step", checked)
    train, val = glyph_arrays(8, seed=1), glyph_arrays(2, seed=2)
    training.train_arrays(train, val, CHARSET, tmp_path / "run", preprocess=PREPROCESS, augment=True,
                          **{**OPTIONS, "precision": "bf16", "device": "cuda"})


def test_device_prefetcher_gives_the_batches_and_the_loader_attributes():
    batches = training.batches.ArrayBatches(np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4), np.arange(5), 2)
    prefetched = torch_prefetch.DevicePrefetcher(batches, "cpu")
    got = [(x.numpy().tolist(), y.numpy().tolist()) for x, y in prefetched]
    assert got == [(x.tolist(), y.tolist()) for x, y in batches]
    assert len(prefetched) == 3 and prefetched.num_samples() == 5
    prefetched.set_epoch(4)
    assert batches.epoch == 4


def test_a_rank_takes_the_gpu_of_its_local_rank():
    assert gpu_of_rank(None, 0, 1, 1) == 0
    assert gpu_of_rank(None, 3, 8, 8) == 3
    assert gpu_of_rank(2, 0, 1, 4) == 2  # one process: an explicit GPU is honoured
    with pytest.raises(GntkitError, match="would put all 2 ranks of this machine on GPU 1"):
        gpu_of_rank(1, 0, 2, 2)
    with pytest.raises(GntkitError, match="4 ranks on this machine need a GPU each, found 2"):
        gpu_of_rank(None, 3, 4, 2)
    with pytest.raises(GntkitError, match="GPU 5 asked for, found 2 visible"):
        gpu_of_rank(5, 0, 1, 2)


def test_checkpoints_are_written_in_the_background(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    writer = CheckpointWriter()
    writer.save(tmp_path / "last.pt", model, optimizer, None, {"epoch": 1})
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # training goes on while the file is written: the checkpoint keeps the old weights
        model.weight.add_(1.0)
    writer.wait()
    saved = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.equal(saved["model"][k], weights[k]) for k in weights)
    assert saved["state"] == {"epoch": 1} and "optimizer" in saved
    save_checkpoint(tmp_path / "same.pt", torch.nn.Linear(3, 2))
    writer.save(tmp_path / "missing" / "last.pt", model)
    with pytest.raises(GntkitError, match="the checkpoint could not be written"):
        writer.wait()


def test_save_every_writes_the_last_checkpoint_every_n_epochs_and_at_the_end(tmp_path, monkeypatch):
    saved = []
    save = torch_backend.TorchBackend.save

    def recording(self, folder, which, state, with_optimizer):
        saved.append((which, state["epoch"]))
        save(self, folder, which, state, with_optimizer)

    monkeypatch.setattr(torch_backend.TorchBackend, "save", recording)
    train, val = glyph_arrays(2, seed=1), glyph_arrays(1, seed=2)
    training.train_arrays(train, val, CHARSET, tmp_path / "run", preprocess=PREPROCESS,
                          **{**OPTIONS, "epochs": 5, "save_every": 2})
    assert [epoch for which, epoch in saved if which == "last"] == [2, 4, 5]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]["epoch"] == 5


def test_a_step_gradscaler_skips_skips_the_weight_decay():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    config = TrainConfig(model="cnn3", optimizer="sgd", weight_decay=0.5, augment=False, label_smoothing=0.0)
    optimizer = build_optimizer(model, config)
    # A loss scale no float32 gradient survives: GradScaler finds inf and skips the step.
    scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    steps = TorchSteps(model, optimizer, config, torch.device("cpu"), scaler=scaler)
    steps.begin_epoch(0)
    before = [p.detach().clone() for p in model.parameters()]
    steps.train_step(np.full((2, 4, 4), 200, np.uint8), np.array([0, 1]), 0.1, 0)
    assert not torch.isfinite(model[1].weight.grad).all()  # GradScaler found inf/NaN: the step is skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_loader_gpu_without_a_gpu_is_one_sentence_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from gntkit.samples.preprocess import Preprocess
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    write_corpus(tmp_path / "gnt", writers=2, num_classes=4, samples_per_class=2, seed=1)
    convert([tmp_path / "gnt"], tmp_path / "shards", to="tfrecord", split="train=1001,val=1002", charset="data",
            preprocess=Preprocess(size=28), workers=1)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "shards"), "--out", str(tmp_path / "run"),
                                      "--model", "cnn3", "--epochs", "1", "--device", "cpu", "--loader", "gpu",
                                      "--quiet"])
    assert result.exit_code == 2, result.output
    assert "--loader gpu keeps the data in GPU memory" in result.output and "Traceback" not in result.output
