"""Report figures are laid out without overlapping or clipped text.

The report page is opened at a fixed viewport and screenshotted (test-artifacts/); then every
text element of the inline SVG figures is measured in the browser as an oriented box (tick
labels may be turned, so axis-aligned boxes would overlap where the glyphs do not). No two
boxes of one figure may intersect, none may stick out of its figure, and no figure may be
wider than the page. The detector itself is checked on hand-made SVGs first, so a passing
report test means something."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.platform.leaderboards.synthetic import ranked_phase, rebuild

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1280, "height": 900}
# Method names as long as the demo's, and longer.
NAMES = [
    "Xeno-learning (pig malperfusion)",
    "Human physiological U-Net",
    "Joint pig + human U-Net",
    "Pig-only U-Net",
    "A method with a rather long name indeed",
    "m6",
    "Ensemble of fifteen fold models",
    "EfficientNet-B5 U-Net",
]

# Returns [{fig, kind: "overlap"|"clipped"|"too wide", a, b}] for the SVGs under `root`.
TEXT_BOXES_JS = """
(root) => {
  const quad = (t) => {
    const b = t.getBBox(), m = t.getScreenCTM();
    return [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
  };
  // Font boxes include the line gap: pull each corner 1.5 px towards the centre.
  const shrink = (q) => {
    const cx = q.reduce((s, p) => s + p[0], 0) / 4, cy = q.reduce((s, p) => s + p[1], 0) / 4;
    return q.map(([x, y]) => {
      const dx = cx - x, dy = cy - y, d = Math.hypot(dx, dy) || 1;
      return [x + dx / d * 1.5, y + dy / d * 1.5];
    });
  };
  const separated = (a, b) => {  // separating axis test for two convex quadrilaterals
    for (const poly of [a, b]) for (let i = 0; i < 4; i++) {
      const [x1, y1] = poly[i], [x2, y2] = poly[(i + 1) % 4];
      const nx = y2 - y1, ny = x1 - x2;
      const pa = a.map(([x, y]) => nx * x + ny * y), pb = b.map(([x, y]) => nx * x + ny * y);
      if (Math.max(...pa) <= Math.min(...pb) || Math.max(...pb) <= Math.min(...pa)) return true;
    }
    return false;
  };
  const out = [];
  const page = document.documentElement.clientWidth;
  document.querySelectorAll(root + ' svg').forEach((svg, n) => {
    const fig = (svg.closest('figure') || {}).id || 'svg' + n;
    const sb = svg.getBoundingClientRect();
    if (sb.right > page + 1) out.push({fig, kind: 'too wide', a: String(sb.right), b: String(page)});
    const items = [];
    svg.querySelectorAll('text').forEach((t) => {
      const text = t.textContent.trim();
      const r = t.getBoundingClientRect();
      if (!text || r.width <= 0 || r.height <= 0) return;
      if (r.left < sb.left - 1 || r.right > sb.right + 1 || r.top < sb.top - 1 || r.bottom > sb.bottom + 1)
        out.push({fig, kind: 'clipped', a: text, b: ''});
      items.push({text, q: shrink(quad(t))});
    });
    for (let i = 0; i < items.length; i++) for (let j = i + 1; j < items.length; j++)
      if (!separated(items[i].q, items[j].q))
        out.push({fig, kind: 'overlap', a: items[i].text, b: items[j].text});
  });
  return out;
}
"""


def test_the_detector_finds_overlaps_and_clipping_and_accepts_turned_neighbours(page):
    page.set_content(
        """<figure id="bad"><svg width="200" height="100" xmlns="http://www.w3.org/2000/svg">
        <text x="10" y="50" font-size="14">first label</text>
        <text x="40" y="55" font-size="14">second label</text>
        <text x="170" y="90" font-size="14">cut off here</text></svg></figure>
        <figure id="good"><svg width="300" height="150" xmlns="http://www.w3.org/2000/svg">
        <text font-size="12" text-anchor="end" transform="translate(60 80) rotate(-45)">a long name</text>
        <text font-size="12" text-anchor="end" transform="translate(90 80) rotate(-45)">another name</text>
        <text font-size="12" text-anchor="end" transform="translate(120 80) rotate(-45)">third name</text>
        </svg></figure>"""
    )
    found = page.evaluate(TEXT_BOXES_JS, "figure")
    kinds = {(f["fig"], f["kind"], f["a"]) for f in found}
    assert ("bad", "overlap", "first label") in kinds
    assert ("bad", "clipped", "cut off here") in kinds
    assert not [f for f in found if f["fig"] == "good"], found  # 45-degree neighbours are fine


@pytest.mark.parametrize("n", [3, 8])
def test_report_figures_have_no_overlapping_or_clipped_text(page, live_server, n):
    ch, phase, subs, _ = ranked_phase(n=n)
    for sub, name in zip(subs, NAMES, strict=False):
        sub.method_name = name
        sub.save(update_fields=["method_name"])
    snap = rebuild(phase, figures=True)
    assert len(snap.figures) == 6, sorted(snap.figures)
    page.set_viewport_size(VIEWPORT)
    page.goto(live_server.url + phase.get_absolute_url() + "report/")
    page.wait_for_selector("#figures figure svg")
    assert page.locator("#figures figure svg").count() == 6
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report-layout-{n}-methods.png"), full_page=True)
    problems = page.evaluate(TEXT_BOXES_JS, "#figures figure")
    assert problems == [], problems
    n_texts = page.evaluate("() => document.querySelectorAll('#figures svg text').length")
    assert n_texts > 6 * 5  # the figures' text is SVG text, so the check above saw it
    assert page.evaluate(NO_PAGE_SCROLL_JS)  # wide tables scroll in their own box


NO_PAGE_SCROLL_JS = (
    "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
)


def test_challenge_report_heatmap_has_no_overlapping_text(page, live_server):
    ch, phase, subs, _ = ranked_phase(n=5, task_slug="organs-pig-to-human")
    ranked_phase(n=5, task_slug="kidney-malperfusion", challenge=ch)
    ranked_phase(n=5, task_slug="icg-pig-to-human", challenge=ch)
    page.set_viewport_size(VIEWPORT)
    page.goto(live_server.url + f"/c/{ch.slug}/report/")
    page.wait_for_selector("#fig-heatmap svg")
    assert page.evaluate(TEXT_BOXES_JS, "#fig-heatmap") == []
    assert page.evaluate(NO_PAGE_SCROLL_JS)
