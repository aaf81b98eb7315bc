"""Charsets: tag code <-> character <-> class id, with an explicit, recorded order.

Decoding a GNT tag code is total and explicit (`decode_tag`):
- `[ascii byte, 0x00]` (tag code = byte << 8) with a printable ASCII byte -> that character;
- a valid GB2312 or GBK double-byte code -> its character, as GB 18030 maps it (GB2312's A1A4 is
  U+00B7 middle dot and A1AA U+2014 em dash, not Python's gb2312 codec's U+30FB and U+2015);
- anything else -> None, reported as unknown with its raw code, never guessed.

A charset is saved as `charset.txt` (UTF-8, one class name per line, line number = class
id, no other text; a name is one character for CASIA data, a word for some IDX data sets)
and `charset.json` (name, order, tag codes and characters).
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from gntkit.errors import CharsetError, OutputExistsError

# Tag code and character of the optional catch-all class (on_unknown="other").
OTHER_TAG_CODE = 0xFFFF
OTHER_CHARACTER = "\ufffd"

ON_UNKNOWN_CHOICES = ("drop", "error", "other")


def decode_tag(tag_code: int) -> str | None:
    """The character a GNT tag code stands for, or None when it decodes to nothing.

    Args:
        tag_code: the 2-byte code as stored (first byte high), 0..0xFFFF.

    Returns:
        A one-character string, or None for an unknown code.
    """
    if not 0 <= int(tag_code) <= 0xFFFF:
        raise CharsetError(f"A tag code must fit in 2 bytes, found {tag_code}.")
    return _decode_table()[int(tag_code)] or None


def describe_tag(tag_code: int) -> str:
    """Human form of a tag code: the character and its code, or 'unknown 0xHHHH'."""
    character = decode_tag(tag_code)
    if character is None:
        return f"unknown 0x{int(tag_code):04X}"
    return f"{character!r} (0x{int(tag_code):04X})"


@lru_cache(maxsize=1)
def _decode_table() -> tuple[str, ...]:
    table = [""] * 65536
    for code in range(65536):
        high, low = code >> 8, code & 0xFF
        if low == 0:
            # ASCII symbols in -f files are stored as [ascii byte, 0x00].
            if 0x20 <= high <= 0x7E:
                table[code] = chr(high)
            continue
        if high < 0x81 or low < 0x40:
            continue  # not a double-byte GB code: would decode as two characters
        raw = bytes((high, low))
        if not _valid_gb_code(raw):
            continue
        # GB 18030, the standard that supersedes GB2312 and GBK, gives the character. Python's
        # gb2312 codec differs from it on two codes: A1A4 (U+30FB katakana middle dot where the
        # standard has U+00B7 middle dot) and A1AA (U+2015 horizontal bar where it has U+2014 em
        # dash); its gbk codec agrees with it on every code.
        text = raw.decode("gb18030")
        if len(text) == 1:
            table[code] = text
    return tuple(table)


def _valid_gb_code(raw: bytes) -> bool:
    """A double-byte code of GB2312 or GBK (GB 18030's additions beyond GBK are not CASIA codes)."""
    for encoding in ("gb2312", "gbk"):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return True
    return False


def is_symbol_code(tag_code: int) -> bool:
    """True for the ASCII-symbol form [byte, 0x00] that -f files use."""
    return (int(tag_code) & 0xFF) == 0 and 0x20 <= (int(tag_code) >> 8) <= 0x7E


class Charset:
    """An ordered list of classes: class id i is (tag_codes[i], characters[i]).

    Args:
        name: short name, e.g. "gb2312-1".
        tag_codes: GNT tag codes, one per class.
        characters: one single-character string per class.
        order: how the classes are ordered, in words (recorded with shards).

    Raises:
        CharsetError: duplicate codes or characters, or lengths that differ.
    """

    def __init__(self, name: str, tag_codes, characters, order: str):
        codes = np.asarray(tag_codes, dtype=np.int64)
        characters = list(characters)
        if codes.ndim != 1 or len(codes) != len(characters):
            raise CharsetError(f"Charset {name!r}: expected one tag code per character, "
                               f"found {codes.size} codes for {len(characters)} characters.")
        if len(codes) == 0:
            raise CharsetError(f"Charset {name!r}: expected at least one class, found none.")
        if codes.min() < 0 or codes.max() > 0xFFFF:
            raise CharsetError(f"Charset {name!r}: tag codes must be 0..0xFFFF, found {codes.min()}..{codes.max()}.")
        for i, character in enumerate(characters):
            # Class names are usually one character (CASIA); IDX data sets name classes in words
            # ("T-shirt/top"). Either way a name is one line of charset.txt.
            if not isinstance(character, str) or not character or "\r" in character or "\n" in character:
                raise CharsetError(f"Charset {name!r}: class {i} must be a non-empty name without line breaks, found {character!r}.")
        if len(set(codes.tolist())) != len(codes):
            dup = _first_duplicate(codes.tolist())
            raise CharsetError(f"Charset {name!r}: each tag code must appear once, found 0x{dup:04X} twice.")
        if len(set(characters)) != len(characters):
            raise CharsetError(f"Charset {name!r}: each character must appear once, found {_first_duplicate(characters)!r} twice.")
        self.name = name
        self.order = order
        self.tag_codes = codes.astype(np.uint16)
        self.characters = characters
        self._class_of_code = np.full(65536, -1, np.int64)
        self._class_of_code[self.tag_codes] = np.arange(len(codes))
        self._class_of_character = {c: i for i, c in enumerate(characters)}

    def __len__(self) -> int:
        return len(self.characters)

    def __repr__(self) -> str:
        return f"Charset({self.name!r}, {len(self)} classes, {self.order})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Charset) and self.characters == other.characters and np.array_equal(self.tag_codes, other.tag_codes)

    @property
    def has_other(self) -> bool:
        """True when the last class is the catch-all 'other' class."""
        return int(self.tag_codes[-1]) == OTHER_TAG_CODE and self.characters[-1] == OTHER_CHARACTER

    def classes_of_codes(self, tag_codes: np.ndarray) -> np.ndarray:
        """int64 class id of each tag code; -1 where the code is not in the charset."""
        return self._class_of_code[np.asarray(tag_codes, dtype=np.int64)]

    def class_of(self, character: str) -> int:
        """Class id of a character.

        Raises:
            CharsetError: the character is not in this charset.
        """
        try:
            return self._class_of_character[character]
        except KeyError:
            raise CharsetError(f"Character {character!r} is not in charset {self.name!r} ({len(self)} classes).") from None

    def with_other(self) -> Charset:
        """This charset plus a last catch-all class (U+FFFD, tag code 0xFFFF)."""
        if self.has_other:
            return self
        return Charset(self.name + "+other", np.append(self.tag_codes, OTHER_TAG_CODE), self.characters + [OTHER_CHARACTER],
                       self.order + "; then one 'other' class (U+FFFD) for codes outside it")

    def to_json(self) -> dict:
        """JSON-able form that keeps tag codes and order."""
        return {
            "name": self.name,
            "order": self.order,
            "num_classes": len(self),
            "tag_codes": [int(c) for c in self.tag_codes],
            "characters": self.characters,
        }

    @classmethod
    def from_json(cls, data: dict, source: str = "charset JSON") -> Charset:
        """Build a charset from `to_json()` output.

        Raises:
            CharsetError: missing fields or inconsistent content.
        """
        if not isinstance(data, dict):
            raise CharsetError(f"{source}: expected a JSON object, found {type(data).__name__}.")
        missing = [k for k in ("name", "tag_codes", "characters") if k not in data]
        if missing:
            raise CharsetError(f"{source}: expected the fields name, tag_codes and characters, found no {', '.join(missing)}.")
        return cls(data["name"], data["tag_codes"], data["characters"], data.get("order", "as listed"))

    def save(self, folder: str | Path, overwrite: bool = True) -> tuple[Path, Path]:
        """Write charset.txt (line number = class id) and charset.json into folder (created).

        Args:
            folder: where to write.
            overwrite: replace existing charset files (False: refuse, as `charset export` does).

        Returns:
            The two paths written.

        Raises:
            OutputExistsError: a charset file exists and overwrite is False.
        """
        folder = Path(folder)
        text_path, json_path = folder / "charset.txt", folder / "charset.json"
        if not overwrite:
            for existing in (text_path, json_path):
                if existing.exists():
                    raise OutputExistsError(f"{existing}: the file already exists; choose another folder.")
        folder.mkdir(parents=True, exist_ok=True)
        text_path.write_text("".join(c + "\n" for c in self.characters), encoding="utf-8")
        json_path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return text_path, json_path

    @classmethod
    def load(cls, path: str | Path) -> Charset:
        """Load a charset from charset.json, charset.txt, or a folder holding them.

        A .txt charset has no tag codes: they are recovered by encoding each
        character (ASCII as [byte, 0x00], else GB2312, else GBK).

        Raises:
            CharsetError: missing or malformed file.
        """
        path = Path(path)
        if path.is_dir():
            for candidate in ("charset.json", "charset.txt"):
                if (path / candidate).is_file():
                    return cls.load(path / candidate)
            raise CharsetError(f"{path}: expected charset.json or charset.txt in this folder, found neither.")
        if not path.is_file():
            raise CharsetError(f"{path}: expected a charset file, found nothing there.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CharsetError(f"{path}: expected UTF-8 text, found an undecodable byte at offset {exc.start}.") from None
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CharsetError(f"{path}: expected JSON, found a syntax error at line {exc.lineno}: {exc.msg}.") from None
            return cls.from_json(data, str(path))
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if lines and len(lines[0]) != 1:
            # A list of class names (Fashion-MNIST's "T-shirt/top", ...): tag code = class id,
            # as IDX labels store it.
            for number, line in enumerate(lines, start=1):
                if not line or "\r" in line:
                    raise CharsetError(f"{path} line {number}: expected a class name, found {line!r}.")
            return cls(path.stem, range(len(lines)), lines, "as listed in " + path.name + " (tag code = line number - 1)")
        for number, line in enumerate(lines, start=1):
            if len(line) != 1:
                raise CharsetError(f"{path} line {number}: expected exactly one character, as line 1 holds, found {line!r}.")
        codes = [encode_character(c, f"{path} line {i}") for i, c in enumerate(lines, start=1)]
        return cls(path.stem, codes, lines, "as listed in " + path.name)


def encode_character(character: str, where: str = "character") -> int:
    """The GNT tag code of a character (inverse of decode_tag).

    Raises:
        CharsetError: the character has no GB2312/GBK/ASCII code.
    """
    if character == OTHER_CHARACTER:
        return OTHER_TAG_CODE
    if len(character) == 1 and 0x20 <= ord(character) <= 0x7E:
        return ord(character) << 8
    for encoding in ("gb2312", "gbk"):
        try:
            raw = character.encode(encoding)
        except UnicodeEncodeError:
            continue
        if len(raw) == 2:
            return raw[0] << 8 | raw[1]
    raise CharsetError(f"{where}: expected a character with a GB2312, GBK or ASCII code, found {character!r} (U+{ord(character[0]):04X}).")


def _first_duplicate(items):
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _gb2312_codes(first_bytes: range) -> list[int]:
    table = _decode_table()
    codes = []
    for high in first_bytes:
        for low in range(0xA1, 0xFF):
            code = high << 8 | low
            if table[code]:
                try:
                    bytes((high, low)).decode("gb2312")
                except UnicodeDecodeError:
                    continue
                codes.append(code)
    return codes


def _from_codes(name: str, codes, order: str) -> Charset:
    table = _decode_table()
    return Charset(name, codes, [table[c] for c in codes], order)


#: Fashion-MNIST's classes in label order (Xiao et al. 2017, the data set's README).
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

BUILTIN_CHARSETS = {
    "gb2312-1": "GB2312-80 level 1: 3,755 characters (HWDB1.1's Chinese classes), in GB code order",
    "gb2312": "GB2312-80 levels 1 and 2: 6,763 characters, in GB code order",
    "mnist": "MNIST digits 0-9 (tag code = the IDX label value)",
    "fashion-mnist": "Fashion-MNIST's 10 class names, T-shirt/top .. Ankle boot (tag code = the IDX label value)",
    "data": "every tag code found in the data that decodes to a character, sorted by code",
}


@cache
def builtin(name: str) -> Charset:
    """A built-in charset by name: "gb2312-1", "gb2312", "mnist" or "fashion-mnist" (see BUILTIN_CHARSETS).

    Raises:
        CharsetError: unknown name.
    """
    if name == "gb2312-1":
        return _from_codes(name, _gb2312_codes(range(0xB0, 0xD8)), "GB code order (B0A1 啊 .. D7F9 座)")
    if name == "gb2312":
        return _from_codes(name, _gb2312_codes(range(0xB0, 0xF8)), "GB code order (level 1 B0A1..D7F9, then level 2 D8A1..F7FE)")
    if name in ("mnist", "fashion-mnist"):
        names = [str(d) for d in range(10)] if name == "mnist" else list(FASHION_CLASSES)
        return Charset(name, range(10), names, "IDX label order (tag code = label value 0..9)")
    names = ", ".join(n for n in BUILTIN_CHARSETS if n != "data")
    raise CharsetError(f"Unknown built-in charset {name!r}: expected one of {names}, 'data', or a path to charset.txt/charset.json.")


def from_data(tag_codes, name: str = "data") -> Charset:
    """Charset of every distinct tag code seen that decodes to a character, sorted by code.

    Codes that decode to nothing are left out (they are reported as unknown).
    """
    table = _decode_table()
    codes = sorted({int(c) for c in np.unique(np.asarray(tag_codes, dtype=np.int64))} - {OTHER_TAG_CODE})
    codes = [c for c in codes if table[c]]
    if not codes:
        raise CharsetError("The data holds no tag code that decodes to a character: expected at least one class.")
    return _from_codes(name, codes, "tag code order (sorted by GB/ASCII code), from the data")


def resolve(spec: str | Charset, data_codes=None) -> Charset:
    """A charset from a user's choice: a Charset, a built-in name, "data", or a file path.

    Args:
        spec: what the user asked for.
        data_codes: every tag code in the data; needed for "data".

    Raises:
        CharsetError: unknown name, unreadable file, or "data" without codes.
    """
    if isinstance(spec, Charset):
        return spec
    if spec == "data":
        if data_codes is None:
            raise CharsetError("Charset 'data' needs the tag codes of the data, found none given.")
        return from_data(data_codes)
    if spec in BUILTIN_CHARSETS:
        return builtin(spec)
    if Path(spec).exists() or str(spec).endswith((".txt", ".json")):
        return Charset.load(spec)
    return builtin(spec)
