"""Plots that stay readable: point labels placed where they overlap nothing (each goes to the first of its candidate
places where it overlaps no label placed before it and crosses nothing drawn in its axes, once the figure's layout is
final), and log-scale ticks labelled as plain numbers without crowding."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.path import Path
    from matplotlib.text import Annotation

# Around a point, in order of preference: offset in points, horizontal and vertical alignment of the label; beside,
# above, below and diagonal, then the same twice and three times as far.
_BESIDE = [
    ((6, 0), "left", "center"), ((-6, 0), "right", "center"), ((0, 6), "center", "bottom"),
    ((0, -6), "center", "top"), ((5, 5), "left", "bottom"), ((-5, 5), "right", "bottom"),
    ((5, -5), "left", "top"), ((-5, -5), "right", "top"),
]  # fmt: skip
AROUND = [((dx * k, dy * k), ha, va) for k in (1, 2, 3) for (dx, dy), ha, va in _BESIDE]
Place = tuple[tuple[float, float], tuple[float, float], str, str]  # (anchor in data, offset in points, ha, va)


def around(xy: tuple[float, float]) -> list[Place]:
    """The places `AROUND` the point `xy` (data coordinates), nearest first."""
    return [(xy, offset, ha, va) for offset, ha, va in AROUND]


def drawn_paths(axes: Axes) -> list[tuple[Path, bool]]:
    """What the axes draw, as paths in display pixels with whether their inside counts (markers, the legend) or only
    their outline (lines): each line's polyline and markers, each error bar, each scatter marker (a square of the
    marker's size) and the legend's box."""
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.path import Path

    def box(x0: float, y0: float, x1: float, y1: float) -> Path:
        return Path([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], closed=True)

    def square(x: float, y: float, half: float) -> Path:
        return box(x - half, y - half, x + half, y + half)

    pixels_per_point = axes.figure.dpi / 72
    paths = []
    for line in axes.lines:
        points = line.get_transform().transform(line.get_xydata())
        if len(points) > 1 and line.get_linestyle() not in ("None", "", " "):
            paths.append((Path(points), False))
        if line.get_marker() not in ("None", "", " ", None):
            half = line.get_markersize() * pixels_per_point / 2
            paths += [(square(x, y, half), True) for x, y in points]
    for collection in axes.collections:
        if isinstance(collection, LineCollection):
            transform = collection.get_transform()
            paths += [
                (Path(transform.transform(segment)), False) for segment in collection.get_segments() if len(segment)
            ]
        elif isinstance(collection, PathCollection):
            sizes = collection.get_sizes()
            offsets = collection.get_offset_transform().transform(collection.get_offsets())
            for index, (x, y) in enumerate(offsets):
                size = sizes[index % len(sizes)] if len(sizes) else 36.0
                paths.append((square(x, y, math.sqrt(size) * pixels_per_point / 2), True))
    if (legend := axes.get_legend()) is not None:
        box = legend.get_window_extent(axes.figure.canvas.get_renderer())
        paths.append(
            (Path([(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)], closed=True), True)
        )
    return paths


def place_labels(figure: Figure, axes: Axes, labels: list[tuple[Annotation, list[Place]]]) -> int:
    """Put each label (an annotation with `textcoords="offset points"`) at the first of its places where its box lies
    inside the axes and overlaps no label placed before it and no path the axes draw (`drawn_paths`); at its first
    place when none is free. Call once the figure's layout is final. Returns how many labels found no free place."""
    figure.canvas.draw()  # lays out what is drawn: a "best" legend finds its place
    renderer = figure.canvas.get_renderer()
    if (legend := axes.get_legend()) is not None:  # "best" would move it again around the placed labels: pin it
        corner = legend.get_window_extent(renderer).transformed(axes.transAxes.inverted())
        legend.set_loc((corner.x0, corner.y0))
    obstacles = drawn_paths(axes)
    frame = axes.get_window_extent(renderer)
    taken = []
    crowded = 0

    def put(text: Annotation, place: Place) -> bool:
        anchor, offset, ha, va = place
        text.xy = anchor
        text.set(ha=ha, va=va)
        text.set_position(offset)
        box = text.get_window_extent(renderer)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        if not inside or any(box.overlaps(other) for other in taken):
            return False
        return not any(path.intersects_bbox(box, filled=filled) for path, filled in obstacles)

    for text, places in labels:
        if not any(put(text, place) for place in places):
            put(text, places[0])
            crowded += 1
        taken.append(text.get_window_extent(renderer))
    return crowded


def plain_log_ticks(axis: Any) -> None:
    """Label a log-scale axis (`axes.xaxis`) with plain numbers: its powers of 10 and, of its minor ticks, those at
    2, 3 and 5 times a power of 10 (the others would crowd the powers' labels), or every minor tick where the view
    holds none of those (a span of less than a decade)."""
    from matplotlib.ticker import FuncFormatter

    def leading(value: float) -> str:
        return f"{value:.0e}"[0]

    def minor(value: float, _: Any) -> str:
        low, high = sorted(axis.get_view_interval())
        ticks = [tick for tick in axis.get_minorticklocs() if low <= tick <= high]
        powers = math.ceil(math.log10(low)) <= math.floor(math.log10(high)) if low > 0 else True  # one in view
        shown = powers or any(leading(tick) in "235" for tick in ticks)
        return f"{value:g}" if leading(value) in "235" or not shown else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))
