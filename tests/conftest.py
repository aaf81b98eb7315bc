"""Shared fixtures: small synthetic corpora in the real GNT layout, built once per test run."""

import os
from pathlib import Path

import pytest

from gntkit.tools.synth import write_corpus

# The tests marked numba also run with NUMBA_DISABLE_JIT=1 (see .ci/run); say which mode ran.
JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"


def pytest_report_header(config):
    return f"gntkit: numba JIT {'DISABLED' if JIT_DISABLED else 'enabled'}"


# Test modules whose tests run gntkit's numba kernels (gntkit/kernels/*, directly or through the
# decoder, preprocessing, writers, shard readers or conversion): each gets the `numba` marker,
# and the NUMBA_DISABLE_JIT=1 pass (README, .ci/run) runs only `-m numba`, not every framework
# test twice. A new module that exercises kernels joins this set (or says
# `pytestmark = pytest.mark.numba` itself).
NUMBA_MODULES = {
    "test_alz",
    "test_convert",
    "test_datasets",
    "test_datasets_layout",
    "test_datasets_remote",
    "test_dgrl",
    "test_dgrl_lines",
    "test_gnt",
    "test_jit",
    "test_png",
    "test_preprocess",
    "test_preprocess_records",
    "test_shard_fuzz",
    "test_sources",
    "test_stream",
    "test_writers",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rpartition(".")[2] in NUMBA_MODULES:
            item.add_marker(pytest.mark.numba)


@pytest.fixture(scope="session")
def corpus_c(tmp_path_factory) -> Path:
    """3 writers (1001-1003), 12 Chinese classes, 2 samples each, -c style files."""
    out = tmp_path_factory.mktemp("corpus_c") / "gnt"
    write_corpus(out, writers=3, num_classes=12, samples_per_class=2, style="c", seed=1)
    return out


@pytest.fixture(scope="session")
def corpus_f(tmp_path_factory) -> Path:
    """2 writers (1001-1002), 8 Chinese + 6 symbol classes, -f style files."""
    out = tmp_path_factory.mktemp("corpus_f") / "gnt"
    write_corpus(out, writers=2, num_classes=8, samples_per_class=2, style="f", num_symbols=6, seed=2)
    return out


@pytest.fixture(scope="session")
def corpus_zip(tmp_path_factory) -> Path:
    """The same kind of corpus packed in one zip (deflated), as the CASIA downloads come."""
    out = tmp_path_factory.mktemp("corpus_zip")
    (path,) = write_corpus(out, writers=3, num_classes=12, samples_per_class=2, style="c", seed=1, zip_name="Gnt1.1Test.zip")
    return path
