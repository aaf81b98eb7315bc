"""Synthetic handwriting in the real GNT binary layout: character-like glyphs written by writers
with a style of their own, deterministic by seed, no fonts needed.

How a glyph is made:

- **Stroke primitives**, the basic strokes of CJK writing: horizontal (横), vertical (竖), dot
  (点), left-falling (撇), right-falling (捺), rising (提), hooks (竖钩) and turns (横折, 竖折),
  each a short polyline in a component's unit box.
- **Components**: radical-like building blocks (口 日 田 十 土 工 王 木 人 大 亻 氵 扌 忄 月 山 小
  寸 女 立 讠 又) written from primitives, and further components composed from 2-5 primitives
  on a coarse grid, each from its own fixed seed.
- **Classes**: every tag code is one fixed composition, a layout (single, left-right,
  top-bottom, three parts, nested, or an enclosure: 囗, 广, 辶, 冂) with a component in each
  slot. The composition follows from the tag code alone through a bijection of 16-bit codes,
  so no two codes share one, while classes share components as characters share radicals.
- **Writers** (`writer_style`): slant, stroke width, width-to-height proportions, where they put
  the split of a left-right or top-bottom layout, how long they draw horizontals, a smooth
  personal warp of the whole glyph, stroke curvature, neatness and ink darkness. A classifier
  trained on some writers meets new styles on unseen writers: their accuracy is lower than on
  the training writers (tests/test_synth.py shows it), as with real handwriting.
- **Samples**: per-sample warp, affine jitter, point and stroke jitter, pen pressure, ink noise,
  and a bitmap size drawn around HWDB's mean (about 68 x 75 pixels, from 16 to a few hundred a
  side). No two samples are identical.

Strokes are drawn with PIL at twice the bitmap size and reduced by 2 (anti-aliasing), about
1.7 ms a glyph (the random-stroke renderer this replaced: 1.3 ms).

With `font=` (a font file, or "auto" for an installed CJK font such as Debian's
fonts-arphic-ukai or fonts-wqy-microhei) the characters are drawn from the font instead, under
the same writer distortions (warp, slant, proportions, pen width, ink) and sample jitter.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError, OutputExistsError
from gntkit.formats import FORMATS, get_format
from gntkit.formats.gnt import encode_records
from gntkit.samples.charset import builtin, decode_tag, is_symbol_code
from gntkit.tools.glyphs import ClassPlan, H, class_plan, glyph_strokes

# Printable ASCII symbols used for the symbol records of -f style files.
SYMBOLS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!?,.;:()+-"


@dataclass(frozen=True)
class WriterStyle:
    """How one writer writes (all fields dimensionless, glyph = unit square).

    slant: shear (about -0.22..0.22); weight: stroke-width factor (about 0.7..1.4); aspect:
    width/height factor; split: shift of a layout's left-right / top-bottom split; h_length:
    factor on horizontals' length; warp: (3, 6) coefficients of a smooth personal displacement
    field; curvature: bow of straight strokes; jitter: per-point noise (neatness); darkness: ink.
    """

    slant: float = 0.0
    weight: float = 1.0
    aspect: float = 1.0
    split: float = 0.0
    h_length: float = 1.0
    warp: np.ndarray = field(default_factory=lambda: np.zeros((3, 6)))
    curvature: float = 0.04
    jitter: float = 0.012
    darkness: float = 0.85


def _warp_terms(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """(3, 6) rows (ax, ay, fx, fy, phase, unused) of a smooth displacement field."""
    terms = np.zeros((3, 6))
    terms[:, 0:2] = rng.normal(0, amplitude, size=(3, 2))
    terms[:, 2:4] = rng.uniform(-1.5, 1.5, size=(3, 2))
    terms[:, 4] = rng.uniform(0, 2 * np.pi, size=3)
    return terms


def writer_style(rng: np.random.Generator) -> WriterStyle:
    """Draw a writer's style from rng (see WriterStyle for the ranges)."""
    return WriterStyle(slant=float(rng.uniform(-0.22, 0.22)), weight=float(rng.uniform(0.7, 1.4)),
                       aspect=float(np.exp(rng.normal(0, 0.08))), split=float(rng.normal(0, 0.035)),
                       h_length=float(np.exp(rng.normal(0, 0.07))), warp=_warp_terms(rng, 0.05),
                       curvature=float(rng.uniform(0.0, 0.12)), jitter=float(rng.uniform(0.004, 0.014)),
                       darkness=float(rng.uniform(0.6, 1.0)))


def _displace(points: np.ndarray, terms: np.ndarray) -> np.ndarray:
    phase = np.pi * (points @ terms[:, 2:4].T) + terms[:, 4]  # (m, 3)
    return np.sin(phase) @ terms[:, 0:2]


def _move_split(values: np.ndarray, split: float | None, shift: float) -> np.ndarray:
    """Piecewise-linear remap of [0, 1] that moves `split` to `split + shift`."""
    if split is None or shift == 0.0:
        return values
    target = min(max(split + shift, 0.2), 0.8)
    return np.where(values < split, values * (target / split), target + (values - split) * ((1 - target) / (1 - split)))


def _sample_points(plan: ClassPlan, style: WriterStyle, rng: np.random.Generator) -> list[np.ndarray]:
    """Each stroke's polyline for one sample, in the glyph's unit square (before the bitmap size)."""
    points = plan.points.copy()
    points[:, 0] = _move_split(points[:, 0], plan.split_x, style.split)
    points[:, 1] = _move_split(points[:, 1], plan.split_y, style.split)
    points = points + _displace(points, style.warp) + _displace(points, _warp_terms(rng, 0.008))
    points += rng.normal(0, style.jitter, size=points.shape)
    points += rng.normal(0, style.jitter, size=(len(plan.kinds), 2))[plan.stroke_of]
    if style.h_length != 1.0:  # horizontals drawn longer or shorter about their centre
        horizontal = plan.kinds[plan.stroke_of] == H
        centre = (np.add.reduceat(points[:, 0], plan.bounds[:-1]) / np.diff(plan.bounds))[plan.stroke_of]
        points[:, 0] = np.where(horizontal, centre + (points[:, 0] - centre) * style.h_length, points[:, 0])
    # A bow through the middle of each segment: writers' strokes are rarely straight.
    start, end = points[plan.seg_start], points[plan.seg_start + 1]
    bend = style.curvature * rng.normal(1.0, 0.3, size=(len(start), 1))
    drawn = np.empty((plan.drawn_bounds[-1], 2))
    drawn[plan.point_slot] = points
    drawn[plan.bow_slot] = (start + end) / 2 + (end - start)[:, ::-1] * [1, -1] * bend
    angle = rng.normal(0, 0.03)
    scale = rng.uniform(0.92, 1.04)
    shear = style.slant + rng.normal(0, 0.03)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([style.aspect, 1.0])
    drawn = (drawn - 0.5) @ matrix.T + 0.5 + rng.normal(0, 0.02, size=2)
    return np.split(drawn, plan.drawn_bounds[1:-1])


def _bitmap_size(tag_code: int, rng: np.random.Generator) -> tuple[int, int]:
    """A bitmap size drawn around HWDB's (symbols: narrower and smaller)."""
    if is_symbol_code(tag_code):
        height = int(np.clip(rng.normal(40, 15), 12, 120))
        return int(np.clip(height * rng.uniform(0.2, 1.0), 8, 120)), height
    big = rng.random() < 0.01
    return (int(np.clip(rng.normal(68, 14) * (3 if big else 1), 16, 400)),
            int(np.clip(rng.normal(75, 14) * (3 if big else 1), 16, 400)))


def render_glyph(tag_code: int, rng: np.random.Generator, width: int | None = None, height: int | None = None,
                 slant: float = 0.0, weight: float = 1.0, style: WriterStyle | None = None,
                 font: str | Path | None = None) -> np.ndarray:
    """Render one handwritten-looking sample of a class as a GNT bitmap.

    Args:
        tag_code: the class; decides the composition (layout and components).
        rng: source of this sample's variation.
        width, height: bitmap size; drawn around HWDB's mean when None.
        slant: shear (about -0.3..0.3), used when no style is given.
        weight: stroke-width factor (about 0.7..1.4), used when no style is given.
        style: the writer's whole style (see `writer_style`); default: a neat writer with this
            slant and weight.
        font: draw the class's character from this font file (a CJK TrueType/OpenType font;
            "auto" picks an installed one, see `find_cjk_font`) under the writer's distortions,
            instead of composing it from strokes.

    Returns:
        uint8 (height, width) array, 255 background, ink 0..254.

    Raises:
        GntkitError: a tag code outside 0..0xFFFF, an rng or style of another type, a size
            outside 1..65535, a font that cannot be read or lacks the character.
    """
    if isinstance(tag_code, bool) or not isinstance(tag_code, (int, np.integer)) or not 0 <= tag_code <= 0xFFFF:
        raise GntkitError(f"tag_code must be an integer 0..0xFFFF, found {tag_code!r}.")
    if not isinstance(rng, np.random.Generator):
        raise GntkitError(f"rng must be a numpy.random.Generator, found {type(rng).__name__}.")
    if style is not None and not isinstance(style, WriterStyle):
        raise GntkitError(f"style must be a WriterStyle (see writer_style), found {type(style).__name__}.")
    if width is None or height is None:
        width, height = _bitmap_size(tag_code, rng)
    if not (1 <= width <= 65535 and 1 <= height <= 65535):
        raise GntkitError(f"A glyph needs 1..65535 pixels a side, found {width}x{height}.")
    if style is None:
        style = WriterStyle(slant=slant, weight=weight)
    # Drawn at twice the size, then reduced by 2: anti-aliased edges.
    if font is None:
        canvas = _draw_strokes(tag_code, rng, width, height, style)
    else:
        canvas = _draw_font(tag_code, rng, width, height, style, _font_path(font))
    ink = np.asarray(canvas.reduce(2), np.float64) * (style.darkness * rng.uniform(0.92, 1.0))
    inked = np.flatnonzero(ink)
    ink.flat[inked] += rng.normal(0, 6, size=len(inked))
    return np.clip(255.0 - ink, 0, 255).astype(np.uint8)


def _draw_strokes(tag_code: int, rng: np.random.Generator, width: int, height: int, style: WriterStyle):
    """The class's composition, one sample in the writer's style, as ink on a 2x PIL canvas."""
    from PIL import Image, ImageDraw  # pillow is a core dependency; imported here to keep `import gntkit` light

    strokes = _sample_points(class_plan(int(tag_code)), style, rng)
    scale = np.array([2 * (width - 1), 2 * (height - 1)]) * 0.92
    origin = np.array([2 * (width - 1), 2 * (height - 1)]) * 0.04 + 0.5
    pen = 2 * max(0.6, style.weight * min(width, height) * rng.uniform(0.025, 0.04))
    canvas = Image.new("L", (2 * width, 2 * height), 0)
    draw = ImageDraw.Draw(canvas)
    pressures = rng.uniform(0.8, 1.15, size=len(strokes))
    for line, pressure in zip(strokes, pressures.tolist()):
        xy = (line * scale + origin).tolist()
        stroke_width = max(1.0, 2 * pen * pressure)
        ink = int(255 * min(1.0, 0.75 + 0.25 * pressure))
        draw.line([tuple(p) for p in xy], fill=ink, width=int(round(stroke_width)), joint="curve")
        r = stroke_width / 2
        for x, y in (xy[0], xy[-1]):  # round pen ends
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return canvas


# Debian/Ubuntu paths of the CJK fonts `font="auto"` looks for, in order of preference.
CJK_FONTS = (
    "/usr/share/fonts/truetype/arphic/ukai.ttc",  # fonts-arphic-ukai: a brush-like Kai face
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
)


def find_cjk_font() -> Path | None:
    """The first installed font of CJK_FONTS, or None."""
    return next((Path(p) for p in CJK_FONTS if Path(p).is_file()), None)


def _font_path(font: str | Path) -> str:
    if str(font) == "auto":
        found = find_cjk_font()
        if found is None:
            raise GntkitError("font='auto' found no CJK font; install one (Debian: fonts-arphic-ukai or "
                              "fonts-wqy-microhei) or pass a font file.")
        return str(found)
    if not Path(font).is_file():
        raise GntkitError(f"{font}: no such font file.")
    return str(font)


@lru_cache(maxsize=4096)
def _font_mask(font_path: str, character: str) -> np.ndarray:
    """The character drawn from the font at 128 px, cropped to its ink: uint8 (h, w), ink bright."""
    from PIL import Image, ImageDraw, ImageFont  # pillow is a core dependency; imported here to keep `import gntkit` light

    try:
        font = ImageFont.truetype(font_path, 128)
    except OSError as exc:
        raise GntkitError(f"{font_path}: not a font file pillow can read ({exc}).") from None

    def draw(text: str) -> np.ndarray:
        canvas = Image.new("L", (192, 192), 0)
        ImageDraw.Draw(canvas).text((32, 16), text, font=font, fill=255)
        box = canvas.getbbox()
        return np.zeros((0, 0), np.uint8) if box is None else np.asarray(canvas.crop(box))

    mask, missing = draw(character), draw("\U0010fffd")  # a code point no font has: its "missing" glyph
    if mask.size == 0 or (mask.shape == missing.shape and np.array_equal(mask, missing)):
        raise GntkitError(f"{font_path}: the font has no glyph for {character!r} (U+{ord(character):04X}).")
    return mask


def _draw_font(tag_code: int, rng: np.random.Generator, width: int, height: int, style: WriterStyle, font_path: str):
    """The class's character from a font, distorted by the writer's style and this sample's
    jitter (the same warp, slant, proportions and affine as strokes get), on a 2x PIL canvas."""
    from PIL import Image, ImageFilter  # pillow is a core dependency; imported here to keep `import gntkit` light

    character = decode_tag(int(tag_code))
    if character is None:
        raise GntkitError(f"Tag code 0x{int(tag_code):04X} stands for no character; a font cannot draw it.")
    size = (2 * width, 2 * height)
    # Area-averaged to about the drawn size first: the mesh transform samples, it does not average.
    mask = Image.fromarray(_font_mask(font_path, character)).resize(
        (max(1, round(0.92 * size[0])), max(1, round(0.92 * size[1]))), Image.Resampling.BOX)
    # The inverse of the strokes' mapping (affine, then the writer's and the sample's warp) on a
    # 5 x 5 grid of the output (the warps are smooth): PIL's MESH transform takes, per output
    # cell, its source quad.
    angle, scale = rng.normal(0, 0.03), rng.uniform(0.92, 1.04)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, style.slant + rng.normal(0, 0.03)], [0.0, 1.0]]) \
        @ np.diag([style.aspect, 1.0])
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 5)), -1).reshape(-1, 2)
    source = (grid - 0.5 - rng.normal(0, 0.02, size=2)) @ np.linalg.inv(matrix).T + 0.5
    source -= _displace(source, style.warp) + _displace(source, _warp_terms(rng, 0.008))
    source = ((source - 0.04) / 0.92 * [mask.width, mask.height]).reshape(5, 5, 2)
    mesh = []
    for i in range(4):
        for j in range(4):
            box = (round(j * size[0] / 4), round(i * size[1] / 4), round((j + 1) * size[0] / 4), round((i + 1) * size[1] / 4))
            quad = np.concatenate([source[i, j], source[i + 1, j], source[i + 1, j + 1], source[i, j + 1]])
            mesh.append((box, tuple(quad.tolist())))
    canvas = mask.transform(size, Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)
    # The writer's pen: a font's stroke width is fixed, so widen or thin it with a 3x3 filter
    # (not on small glyphs, whose strokes a thinning would erase).
    if style.weight > 1.15:
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    elif style.weight < 0.85 and min(size) >= 64:
        canvas = canvas.filter(ImageFilter.MinFilter(3))
    return canvas


def chinese_codes(num_classes: int) -> list[int]:
    """num_classes GB2312 level-1 tag codes spread evenly over the 3,755, in code order."""
    level1 = builtin("gb2312-1").tag_codes
    if not 1 <= num_classes <= len(level1):
        raise GntkitError(f"num_classes must be 1..{len(level1)}, found {num_classes}.")
    picks = np.linspace(0, len(level1) - 1, num_classes).round().astype(int)
    return [int(level1[i]) for i in picks]


def symbol_codes(num_symbols: int) -> list[int]:
    """num_symbols ASCII symbol tag codes ([byte, 0x00])."""
    if not 0 <= num_symbols <= len(SYMBOLS):
        raise GntkitError(f"num_symbols must be 0..{len(SYMBOLS)}, found {num_symbols}.")
    return [ord(c) << 8 for c in SYMBOLS[:num_symbols]]


def writer_records(writer_number: int, tag_codes, samples_per_class: int, seed: int = 0, font: str | Path | None = None):
    """One writer's samples: (tag codes, bitmaps) in a shuffled writing order, in the writer's style.

    Deterministic in (writer_number, tag_codes, samples_per_class, seed, font). `font`: draw the
    characters from a font file (or "auto") instead of composing them, see `render_glyph`.
    """
    if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, (int, np.integer)) or samples_per_class < 1:
        raise GntkitError(f"samples_per_class must be an integer of at least 1, found {samples_per_class!r}.")
    rng = np.random.default_rng([seed, writer_number])
    style = writer_style(rng)
    order = [code for code in tag_codes for _ in range(samples_per_class)]
    order = [order[i] for i in rng.permutation(len(order))]
    bitmaps = [render_glyph(code, rng, style=style, font=font) for code in order]
    return order, bitmaps


def write_gnt(path: str | Path, tag_codes, bitmaps) -> Path:
    """Write records to a .gnt file (refuses to overwrite an existing file).

    Returns:
        The path written.
    """
    path = Path(path)
    if path.exists():
        raise OutputExistsError(f"{path}: the file already exists; remove it or choose another name.")
    path.write_bytes(encode_records(tag_codes, bitmaps))
    return path


def _polylines(segments: np.ndarray) -> list[np.ndarray]:
    """Chain segments that continue one another (end of one = start of the next) into polylines."""
    lines, current = [], [segments[0, :2], segments[0, 2:]]
    for x0, y0, x1, y1 in segments[1:]:
        if np.allclose(current[-1], (x0, y0)):
            current.append(np.array([x1, y1]))
        else:
            lines.append(np.array(current))
            current = [np.array([x0, y0]), np.array([x1, y1])]
    lines.append(np.array(current))
    return lines


def sample_strokes(tag_code: int, rng: np.random.Generator, size: float, slant: float, origin) -> list[np.ndarray]:
    """One handwritten-looking sample of a class as a list of int (k, 2) tablet-unit strokes: each
    of the class's polylines resampled at 2-12 points per piece with a little pen jitter."""
    strokes = []
    for line in _polylines(glyph_strokes(tag_code)):
        pieces = []
        for a, b in zip(line[:-1], line[1:]):
            count = int(rng.integers(2, 13))
            t = np.linspace(0.0, 1.0, count)[:-1, None]
            pieces.append(a + t * (b - a))
        unit = np.vstack(pieces + [line[-1:]]) + rng.normal(0, 0.003, size=(sum(map(len, pieces)) + 1, 2))
        unit[:, 0] += slant * (0.5 - unit[:, 1])
        strokes.append(np.clip(np.rint(origin + unit * size), 0, 32767).astype(np.int64))
    if rng.random() < 0.25:
        dot = np.array([[rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)]])
        strokes.append(np.rint(origin + dot * size).astype(np.int64))
    return strokes


def writer_strokes(writer_number: int, tag_codes, samples_per_class: int = 1, seed: int = 0):
    """One writer's online samples: (tag codes in writing order, list of int (k, 2) tablet-unit
    strokes per sample), for POT files: each class's prototype segments chained into polylines,
    2-12 points per piece, a per-writer size (150-260 units), slant and position (x about
    500-2000, y about 6400-6900, as real OLHWDB files), per-sample jitter, and about one sample
    in four with an extra single-point stroke (a dot), as real files have."""
    rng = np.random.default_rng([seed, writer_number, 0x907])
    size = rng.uniform(150, 260)  # tablet units a character spans (a whole real file: y within about 300)
    slant = rng.uniform(-0.2, 0.2)
    order = [code for code in tag_codes for _ in range(samples_per_class)]
    order = [order[i] for i in rng.permutation(len(order))]
    samples = []
    for code in order:
        origin = np.array([rng.uniform(500, 2000), rng.uniform(6400, 6900) - size])
        samples.append(sample_strokes(code, rng, size * rng.uniform(0.9, 1.1), slant, origin))
    return order, samples


def write_corpus(out_dir: str | Path, *, writers: int = 4, first_writer: int = 1001, num_classes: int = 20,
                 samples_per_class: int = 2, style: str = "c", num_symbols: int = 10, seed: int = 0,
                 zip_name: str | None = None, font: str | Path | None = None, format: str = "gnt") -> list[Path]:  # noqa: A002 - the CLI's word
    """Write a synthetic corpus: one file per writer in a registered format's real layout, named as
    CASIA names them (GNT `1001-c.gnt` / `1001-f.gnt`; POT `1001.pot`).

    Args:
        out_dir: folder to create (must not exist, or be empty).
        writers: number of writer files.
        first_writer: id of the first writer (HWDB1.1 starts at 1001).
        num_classes: Chinese classes (GB2312 level 1, spread over the range).
        samples_per_class: samples of each class per writer.
        style: "c" (Chinese only) or "f" (Chinese and ASCII symbols).
        num_symbols: symbol classes in "f" files.
        seed: everything is deterministic in the seed.
        zip_name: also pack the files into this zip inside out_dir (and remove the loose files).
        font: draw the characters from this font file ("auto": an installed CJK font) under each
            writer's distortions, instead of composing them from strokes (bitmap formats).
        format: a source format whose module says what it stores (`SYNTH_SAMPLES`: "bitmaps" or
            "strokes"), how files are named (`SYNTH_FILE_NAME`) and encodes them (`encode_records`).

    Returns:
        Paths written: the files, or the one zip.
    """
    synthesizable = [name for name in FORMATS if hasattr(get_format(name), "SYNTH_SAMPLES")]
    if format not in synthesizable:
        raise GntkitError(f"format must be one of {', '.join(synthesizable)} (the formats synth writes), found {format!r}.")
    module = get_format(format)
    if module.SYNTH_SAMPLES == "lines":
        raise GntkitError(f"{format} files hold pages of text lines: write them with gntkit.tools.synth_pages.write_pages.")
    if font is not None and module.SYNTH_SAMPLES != "bitmaps":
        raise GntkitError(f"font draws bitmaps; {format} files store strokes: leave font unset.")
    if style not in ("c", "f"):
        raise GntkitError(f"style must be 'c' (Chinese only) or 'f' (with symbols), found {style!r}.")
    if writers < 1 or samples_per_class < 1:
        raise GntkitError(f"writers and samples_per_class must be at least 1, found {writers} and {samples_per_class}.")
    if font is not None:
        _font_path(font)  # a missing font is named before any folder is made
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputExistsError(f"{out_dir}: the folder exists and is not empty; choose a new one.")
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = chinese_codes(num_classes) + (symbol_codes(num_symbols) if style == "f" else [])
    paths = []
    for number in range(first_writer, first_writer + writers):
        if module.SYNTH_SAMPLES == "strokes":
            tag_codes, samples = writer_strokes(number, codes, samples_per_class, seed)
        else:
            tag_codes, samples = writer_records(number, codes, samples_per_class, seed, font=font)
        path = out_dir / module.SYNTH_FILE_NAME.format(writer=number, style=style)
        path.write_bytes(module.encode_records(tag_codes, samples))
        paths.append(path)
    if zip_name:
        zip_path = out_dir / zip_name
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for path in paths:
                archive.write(path, arcname=path.name)
                path.unlink()
        return [zip_path]
    return paths
