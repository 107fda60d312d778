"""A loss chart drawn in braille dots (2x4 dots per cell): train and eval lines of one stage.

Braille works in any UTF-8 terminal over SSH and needs no colour to read: train is drawn as a line,
eval as heavier points, and the legend says which is which. Colours are the 16 ANSI ones.
"""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row 0..3][col 0..1] of a braille cell


def _fmt(y: float) -> str:
    return f"{y:.3g}" if abs(y) < 1000 else f"{y:.0f}"


def braille_chart(series: list[tuple[str, list[tuple[float, float]], str]], width: int, height: int,
                  x_max: float | None = None) -> list[Text]:
    """Lines of a chart `width` cells wide (y labels included) and `height` rows high.

    series: (label, [(x, y), ...], style). Points are joined by straight segments."""
    pts = [p for _, s, _ in series for p in s]
    label_w = 7
    plot_w = max(4, width - label_w)
    if not pts or height < 2:
        return [Text("waiting for the first loss...", style="dim")]
    ys = [y for _, y in pts]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x_lo = 0.0
    x_hi = max(x_max or 0, max(x for x, _ in pts), 1)
    dots_w, dots_h = plot_w * 2, height * 4
    grid = [[0] * plot_w for _ in range(height)]
    owner: list[list[str | None]] = [[None] * plot_w for _ in range(height)]

    def put(dx: int, dy: int, style: str) -> None:
        if 0 <= dx < dots_w and 0 <= dy < dots_h:
            r, c = dy // 4, dx // 2
            grid[r][c] |= _BITS[dy % 4][dx % 2]
            owner[r][c] = style

    def to_dot(x: float, y: float) -> tuple[int, int]:
        dx = round((x - x_lo) / (x_hi - x_lo) * (dots_w - 1))
        dy = round((hi - y) / (hi - lo) * (dots_h - 1))
        return dx, dy

    for _, s, style in series:
        prev = None
        for x, y in s:
            cur = to_dot(x, y)
            if prev is None:
                put(*cur, style)
            else:
                n = max(abs(cur[0] - prev[0]), abs(cur[1] - prev[1]), 1)
                for k in range(n + 1):
                    put(round(prev[0] + (cur[0] - prev[0]) * k / n), round(prev[1] + (cur[1] - prev[1]) * k / n), style)
            if len(s) == 1 or style.endswith("bold"):  # points of sparse series stand out
                put(cur[0] + 1, cur[1], style)
                put(cur[0], cur[1] + 1, style)
            prev = cur

    out = []
    for r in range(height):
        label = _fmt(hi) if r == 0 else (_fmt(lo) if r == height - 1 else "")
        line = Text()
        line.append(f"{label:>{label_w - 1}}│", style="dim")
        for c in range(plot_w):
            if grid[r][c]:
                line.append(chr(0x2800 + grid[r][c]), style=owner[r][c] or "")
            else:
                line.append(" ")
        out.append(line)
    return out


class LossChart(Widget):
    """Train and eval loss of one stage; `set_data` redraws."""

    DEFAULT_CSS = "LossChart { height: 8; }"

    def __init__(self, stage: str = "", **kw):
        super().__init__(**kw)
        self.stage = stage
        self.train: list[tuple[float, float]] = []
        self.eval: list[tuple[float, float]] = []
        self.total: int | None = None

    def set_data(self, stage: str, train, eval_, total: int | None) -> None:
        self.stage, self.train, self.eval, self.total = stage, list(train), list(eval_), total
        self.refresh()

    def render(self) -> Text:
        w, h = self.size.width, self.size.height
        head = Text.assemble((f"{self.stage or '-'} loss ", "bold"), ("⠒train ", "cyan"))
        head.append(f"{self.train[-1][1]:.3f}" if self.train else "-")
        head.append("  ⠿eval ", style="yellow bold")
        head.append(f"{self.eval[-1][1]:.3f}" if self.eval else "-")
        lines = braille_chart([("train", self.train, "cyan"), ("eval", self.eval, "yellow bold")],
                              w, max(1, h - 1), x_max=self.total)
        return Text("\n").join([head, *lines])
