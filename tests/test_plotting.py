"""The result plots stay readable: point labels overlap nothing drawn and stay inside their axes; the all-models
plot's key fits its figure."""

from __future__ import annotations

import pytest

from benchmarks import plotting, reporting


def crossings(figure, axes) -> list[str]:
    """What each of the axes' labels overlaps: another label, something drawn, or the axes' edge."""
    renderer = figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in axes.texts]
    frame = axes.get_window_extent(renderer)
    found = []
    for index, (text, box) in enumerate(zip(axes.texts, boxes)):
        if any(box.overlaps(other) for other in boxes[:index]):
            found.append(f"{text.get_text()}: another label")
        if any(path.intersects_bbox(box, filled=filled) for path, filled in plotting.drawn_paths(axes)):
            found.append(f"{text.get_text()}: something drawn")
        if not (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1):
            found.append(f"{text.get_text()}: outside the axes")
    return found


def test_labels_of_crowded_points_overlap_nothing():
    """Five points close together on a line, one at the axes' edge, each labelled at its right by default: placed,
    no label overlaps another, a marker, the line or the legend, and none leaves the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    xs, ys = [1.0, 1.05, 1.1, 1.15, 2.0], [1.0, 1.02, 1.0, 1.03, 2.0]
    axes.plot(xs, ys, marker="o", label="points")
    axes.scatter([1.5], [1.5], s=120, marker="*", label="star")
    axes.legend(loc="upper left")
    labels = [
        (axes.annotate(f"{y:.2f}", (x, y), xytext=(6, 0), textcoords="offset points", size=8), plotting.around((x, y)))
        for x, y in zip(xs, ys)
    ]
    figure.tight_layout()
    unplaced = crossings(figure, axes)
    assert unplaced, "the labels at their default places must overlap something, or this test tests nothing"
    assert plotting.place_labels(figure, axes, labels) == 0
    assert crossings(figure, axes) == []


def test_the_all_models_plot_shows_every_model_in_its_key_and_labels_that_overlap_nothing(tmp_path):
    rows = [
        {"name": f"model-{number}", "method": "mixacm", "role": "student", "clean": 0.6 + 0.002 * number,
         "pgd20": 0.3 + 0.001 * number, "autoattack": 0.25 if number % 2 else None, "train_seconds": 1500 + number}
        for number in range(1, 35)
    ]  # fmt: skip
    figure = reporting.plot_results(rows, tmp_path / "all.png", 1000, 500)
    assert (tmp_path / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    renderer = figure.canvas.get_renderer()
    key = [text for text in figure.texts if "model-" in text.get_text()]
    assert sum(text.get_text().count("model-") for text in key) == len(rows)
    for text in key:  # the key's columns lie inside the figure, below the plots
        box = text.get_window_extent(renderer)
        assert box.y0 >= 0 and box.x1 <= figure.bbox.x1, text.get_text()[:40]
        assert box.y1 <= min(axes.get_tightbbox(renderer).y0 for axes in figure.axes) + 1
    assert [crossings(figure, axes) for axes in figure.axes] == [[], []]  # 34 points within 7 points of accuracy


@pytest.mark.parametrize(
    "view, value, label",
    [((1, 200), 2.0, "2"), ((1, 200), 3.0, "3"), ((1, 200), 50.0, "50"), ((1, 200), 7.0, ""), ((1, 200), 90.0, ""),
     ((10, 80), 70.0, ""), ((57, 94), 70.0, "70"), ((57, 94), 90.0, "90"), ((45, 94), 70.0, "")],
)  # fmt: skip
def test_log_ticks_label_2_3_and_5_between_powers_and_every_tick_in_a_narrow_view(view, value, label):
    """Between powers of 10 only 2, 3 and 5 times one are labelled; a view holding none of those (57 to 94) labels
    every tick rather than none."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.set_xscale("log")
    axes.set_xlim(*view)
    plotting.plain_log_ticks(axes.xaxis)
    assert axes.xaxis.get_minor_formatter()(value, 0) == label
    assert axes.xaxis.get_major_formatter()(100.0, 0) == "100"


def test_placed_labels_keep_clear_of_a_legend_that_stays_where_it_was(tmp_path):
    """A "best" legend is placed again at each draw, around the labels: it is pinned where the labels were placed
    around it, so that saving the figure draws it there."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    xs = [1, 2, 3, 4, 5, 6]
    axes.plot(xs, [1, 1.2, 1.1, 1.3, 1.2, 1.4], marker="o", label="a line")
    axes.legend(loc="best")
    labels = [(axes.annotate("label", (x, 1), xytext=(6, 0), textcoords="offset points"), plotting.around((x, 1)))
              for x in xs]  # fmt: skip
    figure.tight_layout()
    plotting.place_labels(figure, axes, labels)
    renderer = figure.canvas.get_renderer()
    placed = axes.get_legend().get_window_extent(renderer)
    figure.savefig(tmp_path / "legend.png")
    figure.canvas.draw()  # as the figure was saved
    assert axes.get_legend().get_window_extent(renderer).bounds == pytest.approx(placed.bounds)
    assert crossings(figure, axes) == []  # the labels keep clear of the legend where it is drawn
