"""The glyphs of gntkit.tools.synth: stroke primitives of CJK writing, radical-like components,
and one fixed composition per tag code (see the synth module's docstring: "How a glyph is made")."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from gntkit.samples.charset import is_symbol_code

# Stroke kinds (the primitives). A stroke is (kind, float (n, 2) points, x right, y down).
H, V, DOT, LEFT_FALL, RIGHT_FALL, RISE, HOOK, TURN = range(8)


def _s(kind: int, *points) -> tuple[int, np.ndarray]:
    return kind, np.array(points, np.float64)


# Radical-like components written from primitives, in their unit box (the narrow left-hand
# radicals first).
RADICALS = {
    "亻": [_s(LEFT_FALL, (.72, .06), (.5, .36), (.12, .58)), _s(V, (.5, .34), (.5, .95))],
    "氵": [_s(DOT, (.3, .1), (.44, .22)), _s(DOT, (.2, .38), (.34, .5)), _s(RISE, (.14, .9), (.48, .58))],
    "扌": [_s(H, (.1, .3), (.86, .3)), _s(HOOK, (.52, .06), (.52, .88), (.36, .8)), _s(RISE, (.1, .72), (.86, .5))],
    "忄": [_s(DOT, (.2, .3), (.28, .56)), _s(DOT, (.72, .28), (.82, .4)), _s(V, (.5, .06), (.5, .95))],
    "讠": [_s(DOT, (.28, .08), (.42, .2)), _s(TURN, (.22, .4), (.3, .86), (.56, .68))],
    "口": [_s(V, (.15, .18), (.18, .86)), _s(TURN, (.15, .18), (.85, .18), (.82, .86)), _s(H, (.18, .83), (.82, .83))],
    "日": [_s(V, (.22, .1), (.24, .92)), _s(TURN, (.22, .1), (.78, .1), (.76, .92)), _s(H, (.24, .5), (.76, .5)),
          _s(H, (.24, .89), (.76, .89))],
    "田": [_s(V, (.12, .14), (.14, .88)), _s(TURN, (.12, .14), (.88, .14), (.86, .88)), _s(H, (.14, .5), (.86, .5)),
          _s(V, (.5, .14), (.5, .86)), _s(H, (.14, .86), (.86, .86))],
    "十": [_s(H, (.08, .45), (.92, .45)), _s(V, (.5, .08), (.5, .94))],
    "土": [_s(H, (.22, .38), (.78, .38)), _s(V, (.5, .1), (.5, .86)), _s(H, (.08, .87), (.92, .87))],
    "工": [_s(H, (.2, .16), (.8, .16)), _s(V, (.5, .16), (.5, .85)), _s(H, (.08, .87), (.92, .87))],
    "王": [_s(H, (.18, .14), (.82, .14)), _s(H, (.24, .5), (.76, .5)), _s(V, (.5, .14), (.5, .86)), _s(H, (.08, .87), (.92, .87))],
    "木": [_s(H, (.08, .34), (.92, .34)), _s(V, (.5, .06), (.5, .95)), _s(LEFT_FALL, (.48, .38), (.3, .64), (.08, .8)),
          _s(RIGHT_FALL, (.52, .38), (.7, .62), (.92, .8))],
    "人": [_s(LEFT_FALL, (.5, .08), (.4, .55), (.08, .92)), _s(RIGHT_FALL, (.46, .42), (.66, .72), (.94, .9))],
    "大": [_s(H, (.08, .34), (.92, .34)), _s(LEFT_FALL, (.5, .06), (.42, .56), (.08, .94)),
          _s(RIGHT_FALL, (.5, .42), (.68, .72), (.94, .94))],
    "月": [_s(LEFT_FALL, (.26, .1), (.26, .68), (.1, .94)), _s(HOOK, (.26, .1), (.8, .1), (.8, .9), (.66, .82)),
          _s(H, (.28, .38), (.78, .38)), _s(H, (.28, .62), (.78, .62))],
    "山": [_s(V, (.5, .08), (.5, .86)), _s(TURN, (.14, .34), (.14, .86), (.86, .86)), _s(V, (.86, .34), (.86, .86))],
    "小": [_s(HOOK, (.5, .06), (.5, .9), (.36, .8)), _s(DOT, (.28, .34), (.14, .66)), _s(DOT, (.72, .34), (.88, .66))],
    "寸": [_s(H, (.08, .3), (.92, .3)), _s(HOOK, (.66, .06), (.66, .92), (.5, .84)), _s(DOT, (.3, .5), (.42, .64))],
    "女": [_s(TURN, (.46, .06), (.3, .52), (.78, .88)), _s(LEFT_FALL, (.7, .3), (.56, .7), (.18, .95)), _s(H, (.08, .5), (.92, .5))],
    "立": [_s(DOT, (.48, .04), (.56, .16)), _s(H, (.18, .26), (.82, .26)), _s(DOT, (.32, .42), (.4, .7)),
          _s(LEFT_FALL, (.7, .4), (.6, .74)), _s(H, (.08, .88), (.92, .88))],
    "又": [_s(TURN, (.14, .18), (.8, .18), (.5, .6), (.1, .92)), _s(RIGHT_FALL, (.3, .44), (.6, .76), (.92, .92))],
}
_RADICALS = list(RADICALS.values())

# Layouts: (slot boxes (x0, y0, x1, y1) in the glyph's unit square, outer strokes, the x split
# and the y split a writer may move). Components fill the slots; enclosures add their strokes.
_ENCLOSURES = {
    "full": [_s(V, (.08, .06), (.1, .94)), _s(TURN, (.08, .06), (.92, .06), (.9, .94)), _s(H, (.1, .92), (.9, .92))],
    "top-left": [_s(DOT, (.5, .0), (.56, .1)), _s(H, (.14, .14), (.94, .14)), _s(LEFT_FALL, (.2, .14), (.18, .62), (.04, .96))],
    "bottom-left": [_s(DOT, (.1, .08), (.2, .2)), _s(TURN, (.04, .38), (.2, .38), (.16, .76)),
                    _s(RIGHT_FALL, (.14, .8), (.5, .94), (.96, .92))],
    "top": [_s(V, (.1, .08), (.1, .96)), _s(HOOK, (.1, .08), (.9, .08), (.9, .92), (.78, .86))],
}
LAYOUTS = [
    ([(0, 0, .36, 1), (.42, 0, 1, 1)], "", .39, None),
    ([(0, 0, .44, 1), (.5, 0, 1, 1)], "", .47, None),
    ([(0, 0, .56, 1), (.62, 0, 1, 1)], "", .59, None),
    ([(0, 0, 1, .34), (0, .4, 1, 1)], "", None, .37),
    ([(0, 0, 1, .45), (0, .51, 1, 1)], "", None, .48),
    ([(0, 0, 1, .6), (0, .66, 1, 1)], "", None, .63),
    ([(0, 0, .38, 1), (.44, 0, 1, .47), (.44, .53, 1, 1)], "", .41, None),
    ([(0, 0, 1, .4), (0, .46, .47, 1), (.53, .46, 1, 1)], "", None, .43),
    ([(0, 0, .3, 1), (.35, 0, .65, 1), (.7, 0, 1, 1)], "", None, None),
    ([(0, 0, 1, .3), (0, .35, 1, .65), (0, .7, 1, 1)], "", None, None),
    ([(0, 0, 1, 1)], "", None, None),
    ([(.24, .22, .76, .78)], "full", None, None),
    ([(.3, .28, .96, .96)], "top-left", None, None),
    ([(.3, .04, .96, .72)], "bottom-left", None, None),
    ([(.24, .28, .76, .9)], "top", None, None),
    ([(0, 0, .47, 1), (.53, 0, 1, 1)], "", .5, None),
]


def _composed_component(index: int) -> list[tuple[int, np.ndarray]]:
    """Component `index` beyond the radicals: 2-5 primitives on a 5-line grid, from its own seed."""
    rng = np.random.default_rng([0xC0, index])
    grid = np.array([.1, .3, .5, .7, .9])
    strokes = []
    for _ in range(int(rng.integers(2, 6))):
        kind = int(rng.choice(8, p=[.3, .2, .12, .12, .08, .05, .06, .07]))
        # Grid lines like a radical's, moved a little so that no two components coincide.
        a, b = rng.choice(grid, 2) + rng.uniform(-0.04, 0.04, size=2)
        lo, hi = float(rng.choice(grid[:2])), float(rng.choice(grid[3:]))
        if kind == H:
            strokes.append(_s(H, (lo, a), (hi, a)))
        elif kind == V:
            strokes.append(_s(V, (a, lo), (a, hi)))
        elif kind == DOT:
            strokes.append(_s(DOT, (a, b), (a + .1, b + .12)))
        elif kind == LEFT_FALL:
            strokes.append(_s(LEFT_FALL, (hi, lo), (.6 * hi + .4 * lo, .5), (lo, hi)))
        elif kind == RIGHT_FALL:
            strokes.append(_s(RIGHT_FALL, (lo, a), ((lo + hi) / 2, (a + hi) / 2 + .05), (hi, hi)))
        elif kind == RISE:
            strokes.append(_s(RISE, (lo, hi), (lo + .35, hi - .2)))
        elif kind == HOOK:
            strokes.append(_s(HOOK, (a, lo), (a, hi), (a - .14, hi - .1)))
        else:
            strokes.append(_s(TURN, (lo, a), (hi, a), (hi, max(a, .5) + .3)))
    return [(kind, np.clip(points, 0.02, 0.98)) for kind, points in strokes]


def component(index: int) -> list[tuple[int, np.ndarray]]:
    """The strokes of component `index` in its unit box: the radicals first, then composed ones."""
    return _RADICALS[index] if index < len(_RADICALS) else _composed_component(index)


def _code_index(tag_code: int) -> int:
    """A bijection of 16-bit codes that scatters neighbouring codes over the layouts."""
    value = (int(tag_code) * 0x9E3B) & 0xFFFF  # odd multiplier: invertible modulo 2**16
    value ^= value >> 7
    return (value * 0x2C1B + 0x1234) & 0xFFFF


@dataclass(frozen=True)
class ClassPlan:
    """A class's glyph: strokes in the unit square, the layout splits a writer may move, and the
    index arrays that let one sample's bowed polylines be made with a few array operations."""

    kinds: np.ndarray  # (k,) stroke kinds
    points: np.ndarray  # (m, 2) all strokes' points
    bounds: np.ndarray  # (k + 1,) stroke s is points[bounds[s]:bounds[s + 1]]
    split_x: float | None
    split_y: float | None
    stroke_of: np.ndarray = field(init=False)  # (m,) stroke of each point
    seg_start: np.ndarray = field(init=False)  # (g,) first point of each segment within a stroke
    drawn_bounds: np.ndarray = field(init=False)  # (k + 1,) strokes in the drawn array (points and bows)
    point_slot: np.ndarray = field(init=False)  # (m,) where each point goes in the drawn array
    bow_slot: np.ndarray = field(init=False)  # (g,) where each segment's bow point goes

    def __post_init__(self):
        counts = np.diff(self.bounds)
        stroke_of = np.repeat(np.arange(len(counts)), counts)
        seg_start = np.flatnonzero(stroke_of[:-1] == stroke_of[1:])
        drawn_bounds = np.concatenate([[0], np.cumsum(2 * counts - 1)])
        point_slot = drawn_bounds[stroke_of] + 2 * (np.arange(len(stroke_of)) - self.bounds[stroke_of])
        for name, value in (("stroke_of", stroke_of), ("seg_start", seg_start), ("drawn_bounds", drawn_bounds),
                            ("point_slot", point_slot), ("bow_slot", point_slot[seg_start] + 1)):
            object.__setattr__(self, name, value)


@lru_cache(maxsize=8192)
def class_plan(tag_code: int) -> ClassPlan:
    """The fixed composition of a class: its layout and a component in each slot."""
    index = _code_index(tag_code)
    if is_symbol_code(tag_code):
        layout, slots = 10, [4096 + (tag_code >> 8)]  # beyond every Chinese class's components
    else:
        layout, rest = index % len(LAYOUTS), index // len(LAYOUTS)  # rest: 0..4095
        count = len(LAYOUTS[layout][0])
        if count == 1:
            slots = [rest]
        elif count == 2:
            slots = [rest % 64, rest // 64]
        else:
            slots = [rest % 16, rest // 16 % 16, rest // 256]
    boxes, enclosure, split_x, split_y = LAYOUTS[layout]
    strokes = list(_ENCLOSURES.get(enclosure, []))
    for (x0, y0, x1, y1), slot in zip(boxes, slots):
        for kind, points in component(slot):
            strokes.append((kind, points * [x1 - x0, y1 - y0] + [x0, y0]))
    bounds = np.cumsum([0] + [len(points) for _, points in strokes])
    return ClassPlan(np.array([kind for kind, _ in strokes]), np.concatenate([points for _, points in strokes]),
                     bounds, split_x, split_y)


def glyph_strokes(tag_code: int) -> np.ndarray:
    """The class's strokes as line segments: float (k, 4) rows (x0, y0, x1, y1), in [0.05, 0.95]."""
    plan = class_plan(int(tag_code))
    segments = [np.hstack([plan.points[a:b - 1], plan.points[a + 1:b]]) for a, b in zip(plan.bounds[:-1], plan.bounds[1:])]
    return 0.05 + 0.9 * np.concatenate(segments)
