"""`gntkit preview` labels and fonts: Chinese labels need a CJK font; without one the command
says once how to install one (or pass --font / GNTKIT_FONT), and only when Chinese text was
to be drawn. Digits are labelled by the digit alone."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.tools import preview as preview_module
from gntkit.tools.fixtures.dgrl import write_dgrl_corpus
from gntkit.tools.fixtures.idx import write_mnist

pytestmark = pytest.mark.numba  # conversions and previews run the kernels
runner = CliRunner()


@pytest.fixture
def latin_font() -> Path:
    """A font file with Latin glyphs and no Chinese ones (DejaVu Sans, shipped with matplotlib)."""
    matplotlib = pytest.importorskip("matplotlib")
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def preview(*args, env=None):
    return runner.invoke(app, ["preview", *map(str, args)], env=env)


def test_a_font_without_chinese_characters_is_noticed_once_with_the_fix(tmp_path, corpus_c, latin_font):
    result = preview(corpus_c, "--out", tmp_path / "p.png", "--count", "6", "--font", latin_font)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("note:") == 1 and f"the font {latin_font} has no Chinese characters" in result.stderr
    for fix in ("fonts-noto-cjk", "google-noto-sans-cjk-fonts", "PingFang", "conda-forge font-ttf-noto-cjk", "--font PATH", "GNTKIT_FONT"):
        assert fix in result.stderr
    labels = preview_module.preview(corpus_c, tmp_path / "q.png", count=6, font=latin_font)["labels"]
    assert all(len(label) == 4 and int(label, 16) >= 0xB0A1 for label in labels)  # the GB codes stand in for the characters


def test_gntkit_font_names_the_font(tmp_path, corpus_c, latin_font):
    result = preview(corpus_c, "--out", tmp_path / "p.png", "--count", "4", env={"GNTKIT_FONT": str(latin_font)})
    assert result.exit_code == 0 and str(latin_font) in result.stderr
    missing = preview(corpus_c, "--out", tmp_path / "p.png", env={"GNTKIT_FONT": str(tmp_path / "none.ttf")})
    assert missing.exit_code == 2 and "none.ttf (GNTKIT_FONT): expected a font file" in missing.output
    not_a_font = tmp_path / "font.ttf"
    not_a_font.write_bytes(b"not a font")
    result = preview(corpus_c, "--out", tmp_path / "p.png", "--font", not_a_font)
    assert result.exit_code == 2 and "Pillow can read" in result.output


def test_no_installed_cjk_font_is_noticed(tmp_path, corpus_c, monkeypatch):
    monkeypatch.delenv("GNTKIT_FONT", raising=False)
    monkeypatch.setattr(preview_module, "find_cjk_font", lambda: None)
    result = preview(corpus_c, "--out", tmp_path / "p.png", "--count", "4")
    assert result.exit_code == 0 and "because no installed font has Chinese characters" in result.stderr
    assert result.stderr.count("note:") == 1 and "fonts-noto-cjk" in result.stderr


def test_digits_are_labelled_by_the_digit_and_need_no_notice(tmp_path, latin_font, monkeypatch):
    monkeypatch.setattr(preview_module, "find_cjk_font", lambda: None)
    write_mnist(tmp_path / "mnist", train_count=12, test_count=4)
    result = preview(tmp_path / "mnist", "--out", tmp_path / "p.png", "--count", "12")
    assert result.exit_code == 0 and "note:" not in result.output
    labels = preview_module.preview(tmp_path / "mnist", tmp_path / "q.png", count=12, font=latin_font)["labels"]
    assert len(labels) == 12 and all(label in "0123456789" and len(label) == 1 for label in labels)


def test_text_lines_without_a_cjk_font_show_question_marks_and_the_notice(tmp_path, latin_font):
    write_dgrl_corpus(tmp_path / "pages", writers=1, pages=1)
    result = preview(tmp_path / "pages", "--out", tmp_path / "p.png", "--count", "3", "--font", latin_font)
    assert result.exit_code == 0 and result.stderr.count("note:") == 1 and "'?'" in result.stderr
    labels = preview_module.preview(tmp_path / "pages", tmp_path / "q.png", count=3, font=latin_font)["labels"]
    assert labels and all("?" in label and label.isascii() for label in labels)


def test_label_font_knows_which_characters_it_draws(latin_font):
    font = preview_module.label_font(latin_font)
    assert font.path == latin_font and font.draws("A3 é") and not font.draws("啊")


def test_a_gb_code_is_shown_only_beside_characters_that_are_not_ascii():
    assert preview_module._label_text("3", 3, True) == "3"
    assert preview_module._label_text("A", 0x41, True) == "A"
    assert preview_module._label_text("啊", 0xB0A1, True) == "啊 B0A1"
    assert preview_module._label_text("啊", 0xB0A1, False) == "B0A1"
