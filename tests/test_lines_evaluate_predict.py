"""A line run evaluated (CR, AR, CER per writer, substitutions; greedy and beam) and reading line photos."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.errors import GntkitError
from gntkit.samples.photos import prepare_line
from gntkit.samples.preprocess import Preprocess
from gntkit.tools.fixtures.dgrl import page_lines, write_dgrl_corpus
from gntkit.training import evaluate, predict, train
from gntkit.training.ctc import log_softmax
from gntkit.training.line_evaluation import decode_lines, writer_of
from gntkit.training.line_prediction import read_best_path

pytest.importorskip("h5py")
pytest.importorskip("torch")
runner = CliRunner()


@pytest.fixture(scope="module")
def line_run(tmp_path_factory):
    from gntkit.shards.convert import convert

    root = tmp_path_factory.mktemp("h25-eval")
    write_dgrl_corpus(root / "pages", writers=4, pages=2, lines=4)
    convert(root / "pages", root / "lines", to="hdf5", on_unknown="other", workers=1, split="train=1-3,test=4-4",
            preprocess={"line_height": 32}, hash_sources=False)
    train(root / "lines", root / "run", model="crnn", width=0.25, batch_size=8, lr=0.003, epochs=3, precision="fp32",
          quiet=True)
    return root


def _levenshtein(a, b) -> int:
    """The textbook edit distance (plain dynamic programming)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def test_line_report_matches_a_plain_edit_distance(line_run):
    report = evaluate(line_run / "run", line_run / "lines", split="test")
    assert report["lines"] == 8 == len(report["examples"]) and report["decoding"] == "greedy"
    edits = sum(_levenshtein(e["truth"], e["read"]) for e in report["examples"])
    assert report["cer"] == pytest.approx(edits / sum(len(e["truth"]) for e in report["examples"]))
    assert report["accurate_rate"] == pytest.approx(1 - report["cer"])
    assert report["correct_rate"] >= report["accurate_rate"] and list(report["per_writer"]) == ["004"]
    assert "CER" in (line_run / "run" / "report.md").read_text(encoding="utf-8")
    beam = evaluate(line_run / "run", line_run / "lines", split="test", beam=4, write=False)
    assert beam["decoding"] == "beam 4" and beam["lines"] == 8


def _most_probable_labelling(log_probs, blank):
    """Plain reference: sum the probability of every path per labelling, return the best labelling."""
    totals: dict = {}
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        labels = tuple(c for k, c in enumerate(path) if c != blank and (k == 0 or path[k - 1] != c))
        totals[labels] = totals.get(labels, 0.0) + np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
    return list(max(totals, key=totals.get))


@pytest.mark.parametrize("seed", range(4))
def test_beam_decoding_against_a_plain_reference(seed):
    log_probs = log_softmax(np.random.default_rng(seed).normal(size=(2, 5, 3)) * 2)
    assert decode_lines(log_probs, np.array([5, 5]), 2, beam=9) == [_most_probable_labelling(lp, 2) for lp in log_probs]
    assert decode_lines(log_probs, np.array([5, 3]), 2) == [
        [c for k, c in enumerate(p) if c != 2 and (k == 0 or p[k - 1] != c)] for p in
        (log_probs[0].argmax(1).tolist(), log_probs[1, :3].argmax(1).tolist())]


def test_best_path_characters_and_confidences():
    probs = np.array([[0.1, 0.2, 0.7], [0.6, 0.1, 0.3], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    read = read_best_path(np.log(probs), blank=2)
    assert [c for c, _ in read] == [0, 1] and [round(p, 6) for _, p in read] == [0.9, 0.7]
    assert writer_of("001-P16/3") == "001" and writer_of("page/0") == "page"


def _photo(tmp_path):
    """A line of the fixture as a phone might see it: 2x larger, on grey paper with noise."""
    codes, _, _, bitmap = page_lines(9, 1, lines=1)[0]
    big = np.asarray(Image.fromarray(bitmap).resize((bitmap.shape[1] * 2, bitmap.shape[0] * 2)), np.float32)
    paper = np.full((big.shape[0] + 80, big.shape[1] + 60), 190.0)
    paper[40:40 + big.shape[0], 30:30 + big.shape[1]] = big * (190 / 255)
    noisy = paper + np.random.default_rng(0).normal(0, 4, paper.shape)
    path = tmp_path / "line.png"
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path)
    return path, bitmap


def test_a_line_photo_is_prepared_like_the_conversion(tmp_path):
    path, bitmap = _photo(tmp_path)
    settings = Preprocess(line_height=32, invert=True)
    line = prepare_line(np.asarray(Image.open(path)), settings)
    expected_width = bitmap.shape[1] * 32 / bitmap.shape[0]
    assert line.shape[0] == 32 and abs(line.shape[1] - expected_width) < 0.15 * expected_width
    assert np.median(line) == 0 and line.max() > 200  # clean paper (inverted), bright ink
    with pytest.raises(GntkitError, match="no ink"):
        prepare_line(np.full((40, 200), 180, np.uint8), settings)


def test_predict_reads_a_line_photo_and_the_cli_prints_it(line_run, tmp_path):
    path, _ = _photo(tmp_path)
    (result,) = predict(line_run / "run", [path])
    assert result["text"] == "".join(c["character"] for c in result["characters"])
    assert all(0 < c["confidence"] <= 1 for c in result["characters"])
    out = runner.invoke(app, ["predict", str(line_run / "run"), str(path)])
    assert out.exit_code == 0 and out.output.startswith(f"{path}: ")
    out = runner.invoke(app, ["evaluate", str(line_run / "run"), str(line_run / "lines"), "--json", "--beam", "3"])
    assert out.exit_code == 0, out.output
    assert {"cer", "correct_rate", "accurate_rate", "per_writer"} <= set(json.loads(out.output))
    out = runner.invoke(app, ["train", str(line_run / "lines"), "--out", str(tmp_path / "r"), "--model", "cnn3"])
    assert out.exit_code != 0 and "--model crnn" in out.output and "Traceback" not in out.output


def test_export_refuses_a_line_run_with_one_sentence(line_run, tmp_path):
    out = runner.invoke(app, ["export", str(line_run / "run"), "--out", str(tmp_path / "export")])
    assert out.exit_code != 0 and "text-line run of crnn" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "export").exists()
