"""Charsets: explicit total decoding, built-in orders, save/load, out-of-charset policies."""

import json

import numpy as np
import pytest

from gntkit.errors import CharsetError
from gntkit.samples.charset import Charset, builtin, decode_tag, encode_character, from_data, resolve


def test_gb2312_level1_is_3755_in_code_order():
    charset = builtin("gb2312-1")
    assert len(charset) == 3755
    assert charset.characters[0] == "啊" and charset.tag_codes[0] == 0xB0A1
    assert charset.characters[-1] == "座" and charset.tag_codes[-1] == 0xD7F9
    assert (np.diff(charset.tag_codes.astype(int)) > 0).all()
    assert not set(range(0xD7FA, 0xD7FF)) & set(charset.tag_codes.tolist())
    # Independent check: every level-1 cell that strict gb2312 decodes.
    expected = []
    for high in range(0xB0, 0xD8):
        for low in range(0xA1, 0xFF):
            try:
                expected.append(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    assert charset.characters == expected


def test_full_gb2312_is_6763():
    charset = builtin("gb2312")
    assert len(charset) == 6763
    assert charset.characters[:3755] == builtin("gb2312-1").characters


@pytest.mark.parametrize("code, character", [
    (0x2100, "!"), (0x4100, "A"), (0x3000, "0"), (0x2000, " "),
    (0xB0A1, "啊"), (0x8140, "丂"),  # 0x8140 is GBK only
    # GB 18030's mapping, as HWDB2.x transcriptions need it ("迈克尔·布朗"): Python's gb2312
    # codec gives U+30FB katakana middle dot and U+2015 horizontal bar for these two.
    (0xA1A4, "\u00b7"), (0xA1AA, "\u2014"),
    (0x4142, None),  # two ASCII bytes: not one character
    (0xD7FA, None), (0x0000, None), (0x0A00, None), (0xFFFF, None), (0x00B0, None),
])
def test_decode_is_explicit_and_total(code, character):
    assert decode_tag(code) == character


def test_encode_inverts_decode():
    for code in (0x2100, 0xB0A1, 0x8140, 0xD7F9, 0xA1A4, 0xA1AA):
        assert encode_character(decode_tag(code)) == code
    with pytest.raises(CharsetError, match="U\\+1F600"):
        encode_character("😀")


def test_from_data_sorts_by_code_and_leaves_out_unknown():
    charset = from_data([0xB0A2, 0x2100, 0xB0A1, 0xB0A1, 0x4142])
    assert charset.tag_codes.tolist() == [0x2100, 0xB0A1, 0xB0A2]
    assert charset.characters == ["!", "啊", "阿"]


def test_save_and_load_round_trip(tmp_path):
    charset = from_data([0x2100, 0x2000, 0xB0A1, 0x8140]).with_other()
    text_path, json_path = charset.save(tmp_path)
    lines = text_path.read_text(encoding="utf-8").split("\n")
    assert lines[:-1] == charset.characters and lines[-1] == ""
    assert Charset.load(json_path) == charset
    assert Charset.load(text_path) == charset  # codes recovered from characters
    assert Charset.load(tmp_path) == charset
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["tag_codes"][-1] == 0xFFFF and data["order"]


def test_classes_of_codes_and_other():
    charset = builtin("gb2312-1")
    labels = charset.classes_of_codes(np.array([0xB0A1, 0x2100, 0xD7F9]))
    assert labels.tolist() == [0, -1, 3754]
    other = charset.with_other()
    assert len(other) == 3756 and other.has_other and other.class_of("\ufffd") == 3755


@pytest.mark.parametrize("bad", ["gb9999", "nope.txt"])
def test_unknown_charset_names(bad):
    with pytest.raises(CharsetError):
        resolve(bad)


def test_bad_charset_files(tmp_path):
    path = tmp_path / "charset.txt"
    path.write_text("啊\nab\n", encoding="utf-8")
    with pytest.raises(CharsetError, match="line 2: expected exactly one character"):
        Charset.load(path)
    path.write_text("啊\n啊\n", encoding="utf-8")
    with pytest.raises(CharsetError, match="twice"):
        Charset.load(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(CharsetError, match="UTF-8"):
        Charset.load(path)
    bad_json = tmp_path / "charset.json"
    bad_json.write_text("{", encoding="utf-8")
    with pytest.raises(CharsetError, match="expected JSON"):
        Charset.load(bad_json)
