"""Several replicas trained from real shards on the CPU, compared with one replica.

TensorFlow: MirroredStrategy over two logical CPU devices (in a subprocess, so this
process's TensorFlow keeps one device) and MultiWorkerMirroredStrategy with two worker
processes on 127.0.0.1. PyTorch: DistributedDataParallel under torchrun with two
processes (Gloo). The shards come from gntkit.shards.convert over a synthetic corpus;
the validation split holds an odd number of samples, so a padded duplicate would show in
the count and in the metrics.

With a vanishing learning rate the weights stay the initial ones, so every metric of a
run with several replicas must equal the one-replica run's up to summation order,
whatever samples each step groups.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

import gntkit.training as training
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.tools.synth import write_corpus
from gntkit.training.metrics import read_metrics

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

TRAIN_SAMPLES, VAL_SAMPLES = 132, 33
OPTIONS = dict(model="cnn3", epochs=1, batch_size=32, optimizer="sgd", lr=1e-9, momentum=0.0, weight_decay=0.0,
               augment=False, seed=0, quiet=True, precision="fp32")

# Run in a subprocess: `mirrored` splits the CPU into two logical devices before TensorFlow
# starts, and gives the run a MirroredStrategy over them (as over two GPUs).
SCRIPT = textwrap.dedent("""
    import json, sys
    options = json.loads(open(sys.argv[1]).read())
    shards, out, mode = options.pop("shards"), options.pop("out"), options.pop("mode")
    if mode == "mirrored":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from gntkit.training.tf_trainer import backend, placement

        def two_devices(device="auto"):
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            return placement.Placement(strategy, True, 0, False, "MirroredStrategy (2 logical CPUs)")

        backend.make_strategy = two_devices
    if options.pop("record_progress", False):
        import os
        import gntkit.training.loop as loop

        class Recorder:
            # every epoch's progress total and the samples it advanced by, per rank
            def __init__(self, total, description, enabled):
                self.total, self.done = total, 0
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                path = f"{out}-progress-{os.environ.get('RANK', '0')}.json"
                open(path, "w").write(json.dumps({"total": self.total, "done": self.done}))
            def update(self, advance=0, **fields):
                self.done += advance
            def settle(self):  # the planned total is what is checked
                pass

        loop.progress_bar = Recorder
    import gntkit.training as training
    training.train(shards, out, **options)
""")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Shards of 11 classes x 3 samples per writer: writers 1001-1004 train (132), 1005 validation (33)."""
    root = tmp_path_factory.mktemp("replicas")
    write_corpus(root / "gnt", writers=5, num_classes=11, samples_per_class=3, seed=5)
    convert([root / "gnt"], root / "shards", to="tfrecord", split="train=1001-1004,val=1005",
            charset="data", preprocess=Preprocess(size=28), workers=1, shard_records=20)
    (root / "train.py").write_text(SCRIPT)
    return root


def _options(root, name, **extra):
    path = root / f"options-{name}.json"
    path.write_text(json.dumps({**OPTIONS, "shards": str(root / "shards"), "out": str(root / name), "mode": "plain",
                                **extra}))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_replica(root, framework):
    out = root / f"{framework}-single"
    if not out.exists():
        training.train(root / "shards", out, framework=framework, **OPTIONS)
    return out


def _compare(single, multi):
    """Same metrics, every training and validation sample counted once."""
    a, b = read_metrics(single / "metrics.csv"), read_metrics(multi / "metrics.csv")
    assert [r["epoch"] for r in b] == [1]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top5"):
        assert b[0][key] == pytest.approx(a[0][key], rel=1e-4, abs=1e-5), (key, a, b)
    info = json.loads((multi / "run.json").read_text())
    assert info["world_size"] == 2
    log = (multi / "train.log").read_text()
    assert "16 per device" in log, log
    return info


@pytest.mark.slow
def test_tf_mirrored_strategy_from_shards_matches_one_replica(job):
    single = _one_replica(job, "tf")
    multi = job / "tf-mirrored"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(job / "train.py"), str(_options(job, "tf-mirrored", framework="tf",
                                                                              mode="mirrored"))],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    info = _compare(single, multi)
    assert "MirroredStrategy" in info["device"]


@pytest.mark.slow
def test_tf_multi_worker_strategy_from_shards_counts_each_sample_once(job):
    single = _one_replica(job, "tf")
    multi = job / "tf-mwms"
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    options = _options(job, "tf-mwms", framework="tf")
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, str(job / "train.py"), str(options)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [proc.communicate(timeout=600)[0].decode(errors="replace") for proc in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    info = _compare(single, multi)
    assert "MultiWorkerMirroredStrategy" in info["device"]


@pytest.mark.slow
def test_torch_ddp_from_shards_matches_one_process(job):
    single = _one_replica(job, "torch")
    multi = job / "torch-ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(job / "train.py"), str(_options(job, "torch-ddp", framework="torch", record_progress=True))],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    info = _compare(single, multi)
    assert info["device"] == "cpu"
    for rank in range(2):  # each rank's bar counts its own samples, out of its own share
        progress = json.loads((job / f"torch-ddp-progress-{rank}.json").read_text())
        assert progress == {"total": TRAIN_SAMPLES // 2, "done": TRAIN_SAMPLES // 2}, (rank, progress)
