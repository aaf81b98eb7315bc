"""Distributed training on the CPU: torch DDP under torchrun (2 processes, Gloo) and
TensorFlow MultiWorkerMirroredStrategy (2 worker processes on localhost).

Both must train the same model as one process does: with the global batch split over
two processes, each step sees the same samples and the averaged gradient is the same, so
the per-epoch metrics agree up to floating-point summation order. GPUs (NCCL, several
GPUs per node) are not exercised here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gntkit.training as training
from gntkit.training.metrics import read_metrics
from test_training import CHARSET, PREPROCESS, glyph_arrays

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

# fp32: bf16 (the CPU default where the CPU has it) rounds differently at batch 16 and 32, which
# is not what these tests compare; augmentation stays on (the default): every process draws the
# warps of the global batch and keeps its share, so the samples are warped as in one process.
OPTIONS = dict(model="cnn3", epochs=2, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9,
               weight_decay=1e-4, seed=0, quiet=True, precision="fp32")

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import gntkit.training as training
    data = np.load(sys.argv[1])
    options = json.loads(open(sys.argv[2]).read())
    classes = options.pop("classes")
    preprocess = options.pop("preprocess")
    out = options.pop("out")
    training.train_arrays((data["tx"], data["ty"]), (data["vx"], data["vy"]), classes, out,
                          preprocess=preprocess, **options)
""")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    (tx, ty), (vx, vy) = glyph_arrays(12, seed=1), glyph_arrays(4, seed=2)  # 240 train, 80 val
    np.savez(root / "data.npz", tx=tx, ty=ty, vx=vx, vy=vy)
    (root / "train.py").write_text(SCRIPT)
    return root, (tx, ty), (vx, vy)


def _options_file(root, framework, out):
    path = root / f"options-{framework}-{out.name}.json"
    path.write_text(json.dumps({**OPTIONS, "framework": framework, "out": str(out),
                                "classes": CHARSET.characters, "preprocess": PREPROCESS.to_json()}))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compare(single, multi):
    a, b = read_metrics(single / "metrics.csv"), read_metrics(multi / "metrics.csv")
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=2e-3, abs=2e-3), (key, ra, rb)


@pytest.mark.slow
def test_torch_ddp_under_torchrun_matches_one_process(job):
    root, train, val = job
    single = root / "torch-single"
    training.train_arrays(train, val, CHARSET, single, framework="torch", preprocess=PREPROCESS, **OPTIONS)
    multi = root / "torch-ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    str(root / "train.py"), str(root / "data.npz"), str(_options_file(root, "torch", multi))],
                   check=True, env=env, timeout=300)
    info = json.loads((multi / "run.json").read_text())
    assert info["world_size"] == 2 and info["device"] == "cpu"
    _compare(single, multi)


@pytest.mark.slow
def test_tf_multi_worker_strategy_matches_one_process(job):
    root, train, val = job
    single = root / "tf-single"
    training.train_arrays(train, val, CHARSET, single, framework="tf", preprocess=PREPROCESS, **OPTIONS)
    multi = root / "tf-mwms"
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    options = _options_file(root, "tf", multi)
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, str(root / "train.py"), str(root / "data.npz"), str(options)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        outputs.append(out.decode(errors="replace"))
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    info = json.loads((multi / "run.json").read_text())
    assert info["world_size"] == 2 and "MultiWorkerMirroredStrategy" in info["device"]
    _compare(single, multi)
