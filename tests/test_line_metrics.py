"""CTC decoding and the text-line metrics against plain references (gntkit/tools/reference/edit_distance.py):
the edit distance and its split into substitutions, deletions and insertions on random and edge-case
strings, CR / AR / CER over lines and per writer, greedy decoding and prefix beam search on
hand-built score tables and against the sum over every CTC path."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from gntkit.errors import GntkitError  # noqa: E402
from gntkit.tools.reference.edit_distance import chosen_alignment, labelling_log_probs, levenshtein  # noqa: E402
from gntkit.training.ctc import beam_search, greedy_decode  # noqa: E402
from gntkit.training.line_metrics import align, line_metrics  # noqa: E402

short = st.text(alphabet="abc啊", max_size=6)


@settings(max_examples=300, deadline=None)
@given(short, short)
def test_the_alignment_has_the_edit_distance_and_the_documented_split(reference, hypothesis):
    alignment = align(reference, hypothesis)
    assert alignment.edits == levenshtein(reference, hypothesis)
    assert (alignment.substitutions, alignment.deletions, alignment.insertions) == chosen_alignment(reference, hypothesis)
    assert len(alignment.substituted) == alignment.substitutions
    assert all(truth != read for truth, read in alignment.substituted)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="xyz", max_size=40), st.text(alphabet="xyz", max_size=40))
def test_longer_lines_have_the_textbook_distance(reference, hypothesis):
    assert align(reference, hypothesis).edits == levenshtein(reference, hypothesis)


@pytest.mark.parametrize("reference, hypothesis, counts", [
    ("", "", (0, 0, 0)), ("abc", "", (0, 3, 0)), ("", "ab", (0, 0, 2)), ("abc", "abc", (0, 0, 0)),
    ("ab", "ba", (2, 0, 0)), ("kitten", "sitting", (2, 0, 1)), ("手写汉字", "手汉字", (0, 1, 0)),
])
def test_edge_cases(reference, hypothesis, counts):
    alignment = align(reference, hypothesis)
    assert (alignment.substitutions, alignment.deletions, alignment.insertions) == counts


def test_class_id_sequences_align_like_strings():
    assert align([-1, 5, 7], [-2, 5]).substituted == ((-1, -2),)  # hash(-1) == hash(-2) in CPython: ids compare by value
    assert align(np.array([3, 4, 5]), [3, 5]).deletions == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(short, short, st.sampled_from(["w1", "w2", "w3"])), min_size=1, max_size=8))
def test_rates_sum_the_lines_then_divide(rows):
    references, hypotheses, writers = zip(*rows)
    result = line_metrics(references, hypotheses, writers)
    for subset, rates in [(rows, result), *[([r for r in rows if r[2] == w], result["per_writer"][w]) for w in result["per_writer"]]]:
        n = sum(len(r) for r, _, _ in subset)
        s, d, i = (sum(chosen_alignment(r, h)[k] for r, h, _ in subset) for k in range(3))
        assert (rates["characters"], rates["substitutions"], rates["deletions"], rates["insertions"]) == (n, s, d, i)
        if n:
            assert rates["correct_rate"] == pytest.approx((n - d - s) / n) and rates["accurate_rate"] == pytest.approx((n - d - s - i) / n)
            assert rates["cer"] == pytest.approx(1 - rates["accurate_rate"])
        else:
            assert rates["cer"] is None and rates["correct_rate"] is None
    assert sorted(result["per_writer"]) == sorted(set(writers))


def test_the_most_frequent_substitutions_come_first():
    result = line_metrics(["未来", "未来", "天下"], ["末来", "末耒", "夭下"], top=2)
    assert result["top_substitutions"] == [["未", "末", 2], ["天", "夭", 1]]
    assert result["correct_rate"] == pytest.approx(2 / 6) and "per_writer" not in result


def test_mismatched_lists_are_refused():
    with pytest.raises(GntkitError, match="2 references, 1 hypotheses"):
        line_metrics(["a", "b"], ["a"])


def one_hot_scores(path, classes=4, sure=0.9):
    """Log-probabilities whose best class at frame t is path[t]."""
    probs = np.full((len(path), classes), (1 - sure) / (classes - 1))
    probs[np.arange(len(path)), path] = sure
    return np.log(probs)


def test_greedy_merges_repeats_and_drops_blanks():
    assert greedy_decode(one_hot_scores([0, 1, 1, 0, 1, 2, 2, 3, 0]), blank=0) == [1, 1, 2, 3]
    assert greedy_decode(one_hot_scores([3, 3, 3]), blank=3) == []
    batch = np.stack([one_hot_scores([1, 2, 2, 0]), one_hot_scores([2, 0, 2, 1])])
    assert greedy_decode(batch, blank=0) == [[1, 2], [2, 2, 1]]
    assert greedy_decode(batch, blank=0, lengths=np.array([2, 3])) == [[1, 2], [2, 2]]
    assert greedy_decode(np.zeros((0, 5)), blank=4) == []


def test_beam_search_finds_a_labelling_that_no_single_path_shows():
    # The best path is blank, blank ("" with 0.36); "a" has 0.64 summed over its three paths.
    probs = np.array([[0.6, 0.4], [0.6, 0.4]])  # classes: blank 0, "a" 1
    assert greedy_decode(np.log(probs), blank=0) == []
    sequence, log_p = beam_search(np.log(probs), blank=0, beam_width=4)
    assert sequence == [1] and log_p == pytest.approx(np.log(0.64))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(2, 3))
def test_a_wide_beam_finds_the_most_probable_labelling(seed, frames, classes):
    probs = np.random.default_rng(seed).dirichlet(np.ones(classes), size=frames)
    exact = labelling_log_probs(probs.tolist(), blank=0)
    sequence, log_p = beam_search(np.log(probs), blank=0, beam_width=64)
    assert log_p == pytest.approx(max(exact.values())) and log_p == pytest.approx(exact[tuple(sequence)])


def test_beam_search_takes_logits_and_batches():
    logits = np.random.default_rng(1).normal(size=(2, 5, 4)) * 3
    lines = beam_search(logits, blank=3, beam_width=32, lengths=[5, 3])
    for line, count in zip(range(2), [5, 3]):
        probs = np.exp(logits[line, :count]) / np.exp(logits[line, :count]).sum(axis=1, keepdims=True)
        exact = labelling_log_probs(probs.tolist(), blank=3)
        assert lines[line][1] == pytest.approx(max(exact.values()))


@pytest.mark.parametrize("call, message", [
    (lambda: greedy_decode(np.zeros(4), 0), "must be a \\(T, C\\)"),
    (lambda: greedy_decode(np.zeros((3, 4)), 4), "blank index must be in 0..3"),
    (lambda: greedy_decode(np.zeros((2, 3, 4)), 0, lengths=[1, 4]), "2 frame counts in 0..3"),
    (lambda: beam_search(np.zeros((3, 4)), 0, beam_width=0), "at least 1"),
])
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(GntkitError, match=message):
        call()
