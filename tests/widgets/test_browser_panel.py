"""The live panel as a class sees it: JupyterLab in headless Chromium at projector size (1920×1080), a session
fed from the kernel (a `QueueSource`) to a replay server that scripts 26 turns, translated by Apertium.

- After 20 turns the newest turn is inside the visible turn list (the list follows the conversation).
- A user who scrolls up is not yanked back when more turns come; "↓ Newest" follows again.
- "Large text" makes turns, translations and the live line 28 px or more; the kernel sees the toggle, and
  ``panel.presentation`` set in the kernel reaches the page.
- Text contrast against its background in the light and the dark theme (WCAG ratios, computed in the page).
- "Full screen" fills the screen (the Fullscreen API) or, where the API is refused, the window.

Screenshots (light/dark × normal/large, full screen) go to test-artifacts/panel_*.png: look at them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from browser.lab import JupyterLab, chromium, execute_in_kernel, run_all_cells, wait_for_kernel_idle, write_notebook
from gateway_server import Reply
from helpers import API_KEY, ROOT, wait_until
from playwright.sync_api import sync_playwright

from live_stt_kernel.v3.replay import even_turns, turns_script

assert Path("/usr/bin/chromium").exists(), "the browser tests need Debian's chromium: apt-get install chromium"

ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1920, "height": 1080}
SENTENCES = [
    "Good morning everyone and welcome to today's class",
    "Today we talk about how rivers shape the land",
    "Water always looks for the lowest path",
    "Over many years a small stream can cut a deep valley",
    "Look at the picture on the first page",
    "Can everyone see the bend in the river",
    "That bend is called a meander",
    "The water moves faster on the outside of the bend",
    "So the outside bank wears away",
    "And the inside bank collects sand and mud",
    "Slowly the bend grows wider and wider",
    "Sometimes the river cuts straight through",
    "Then the old bend becomes a small lake",
    "We call that an oxbow lake",
    "Who has seen one near their home",
    "Great, please tell us where it was",
    "Now let's write three key words in our notes",
    "Erosion means the land is worn away",
    "Deposition means the river drops what it carries",
    "A meander is a bend in the river",
    "Please work with the person next to you",
    "Draw a river with two meanders",
    "Mark where erosion happens with a red pen",
    "Mark where deposition happens with a blue pen",
    "You have ten minutes for this task",
    "Does that make sense to everyone",
]
TURNS = even_turns(SENTENCES, start_ms=300, word_ms=150, gap_ms=500)
TURNS[-1] = dataclasses.replace(TURNS[-1], formatted="Does that make sense to everyone?")

CELL = """
from pathlib import Path
from live_stt_kernel import QueueSource, Session
from live_stt_kernel.widgets import LivePanel

source = QueueSource()
session = Session(source, url={url!r}, api_key={key!r}, folder=None, translate_to="es", translator="apertium").start()
panel = LivePanel(session, coach_options={coach!r})

def speak(until_ms):  # audio up to this point of the script: the replay server answers as far as it reaches
    global sent_ms
    source.push(bytes(32 * max(0, until_ms - sent_ms)))
    sent_ms = max(sent_ms, until_ms)

sent_ms = 0
panel
"""

NEWEST = """() => {
  const list = document.querySelector('.lsk-turns');
  const rows = list.querySelectorAll('.lsk-turn');
  const box = list.getBoundingClientRect();
  const last = rows.length ? rows[rows.length - 1].getBoundingClientRect() : null;
  return { count: rows.length, inside: !!last && last.top >= box.top - 1 && last.bottom <= box.bottom + 1,
           scrollTop: list.scrollTop, scrollHeight: list.scrollHeight, clientHeight: list.clientHeight,
           pinned: list.dataset.pinned,
           last: rows.length ? rows[rows.length - 1].querySelector('.lsk-text').textContent : null };
}"""
SIZES = """() => {
  const px = (selector) => [...document.querySelectorAll(selector)].map((e) => parseFloat(getComputedStyle(e).fontSize));
  return { text: px('.lsk-turn .lsk-text'), translation: px('.lsk-translation'), live: px('.lsk-live'),
           time: px('.lsk-time') };
}"""
# WCAG contrast of a text against the background it is drawn on (the first opaque one up its ancestors)
CONTRAST = """(selector) => {
  const rgba = (c) => { const m = c.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const el = document.querySelector(selector);
  let bg = null;
  for (let e = el; e && !bg; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor); if (c[3] > 0.99) bg = c; }
  bg = bg || [255, 255, 255, 1];
  const fg = rgba(getComputedStyle(el).color);  // blend a translucent colour over its background
  const mixed = [0, 1, 2].map((i) => fg[i] * fg[3] + bg[i] * (1 - fg[3]));
  const [a, b] = [lum(mixed), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def newest(page: Any) -> dict[str, Any]:
    return page.evaluate(NEWEST)


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"panel_{name}.png"))


def end_of(turn: int) -> int:
    """Audio (ms) that releases turn ``turn``'s final and the first words of the next one."""
    return TURNS[turn].end_ms + 240 + 50 if turn + 1 >= len(TURNS) else TURNS[turn + 1].words[1][2] + 20


def contrasts(page: Any) -> dict[str, float]:
    return {name: round(page.evaluate(CONTRAST, selector), 2) for name, selector in
            (("text", ".lsk-turn .lsk-text"), ("translation", ".lsk-translation"), ("live", ".lsk-live"))}


FRENCH = {  # what the scripted model answers for the last three turns, streamed a word at a time
    SENTENCES[23]: "Marquez où se produit le dépôt avec un stylo bleu.",
    SENTENCES[24]: "Vous avez dix minutes pour cette tâche.",
    SENTENCES[25]: "Oui, ça a du sens pour tout le monde.",  # answers the question: marked, not shown as a translation
}


ANALYSIS = ("## What went well\n" + " ".join(["You explained each step of the river lesson in short, clear sentences."] * 6)
            + "\n\n## What to try next\n" + " ".join(["Pause after each question so that the class can answer."] * 6))


def french(body: dict[str, Any]) -> str:
    """The scripted model: French for the last turns; a coaching analysis when asked to coach."""
    asked = body["messages"][-1]["content"]
    if "<transcript>" in asked:
        return ANALYSIS
    return next((answer for source, answer in FRENCH.items() if source in asked), "Bonjour.")


@pytest.mark.timeout(150)
def test_a_class_can_follow_the_panel(serve, gateway, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    server = serve(turns_script(TURNS, "B"))
    llm = gateway(*[Reply(gap_s=0.25) for _ in range(3)], Reply(gap_s=0.04), respond=french)  # 3 translations, a report
    coach = {"backend": "openai", "base_url": llm.url, "api_key": "k", "model": "m"}
    notebook = write_notebook(tmp_path / "panel.ipynb", CELL.format(url=server.url, key=API_KEY, coach=coach))
    flag = tmp_path / "large.txt"
    report: dict[str, Any] = {}
    began = time.monotonic()
    with JupyterLab(tmp_path) as lab, sync_playwright() as p:
        browser = chromium(p, lab.env)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(lab.url(notebook.name), timeout=30_000)
            wait_for_kernel_idle(page)
            run_all_cells(page)
            page.wait_for_selector(".lsk-panel .lsk-presenter button:not([hidden])", timeout=60_000)
            page.wait_for_function("() => /streaming/.test(document.querySelector('.lsk-status').textContent)",
                                   timeout=30_000)
            wait_for_kernel_idle(page)

            # 20 turns, and the first words of the 21st on the live line
            execute_in_kernel(page, f"speak({end_of(19)})")
            page.wait_for_function("() => document.querySelectorAll('.lsk-turn').length >= 20"
                                   " && document.querySelectorAll('.lsk-translation').length >= 20"
                                   " && document.querySelector('.lsk-live').textContent.trim()", timeout=30_000)
            page.wait_for_function(f"() => ({NEWEST})().inside", timeout=5_000)
            after_20 = report["after_20"] = newest(page)
            assert after_20["count"] == 20 and after_20["last"] == SENTENCES[19] + "."  # the formatted finals
            assert after_20["scrollHeight"] > 2 * after_20["clientHeight"]  # it did have to scroll
            report["light_normal"] = {"sizes": page.evaluate(SIZES), "contrast": contrasts(page)}
            shot(page, "light_normal")

            # the user scrolls up to read an earlier turn: new turns do not pull them back down
            box = page.locator(".lsk-turns").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -600)
            page.wait_for_function("() => document.querySelector('.lsk-turns').dataset.pinned === 'false'", timeout=5_000)
            time.sleep(0.3)  # let the wheel's scrolling settle
            scrolled = newest(page)
            execute_in_kernel(page, f"speak({end_of(22)})")
            page.wait_for_function("() => document.querySelectorAll('.lsk-turn').length >= 23", timeout=15_000)
            time.sleep(0.5)  # frames after the new rows (the panel sends at most 10 a second)
            held = report["held"] = newest(page)
            assert held["count"] == 23 and not held["inside"], held  # newest below the box: the reader was left alone
            assert abs(held["scrollTop"] - scrolled["scrollTop"]) <= 1, (scrolled, held)
            shot(page, "light_normal_scrolled_up")
            page.get_by_role("button", name="↓ Newest").click()  # follow again
            page.wait_for_function(f"() => ({NEWEST})().inside", timeout=5_000)

            # large text, from the page: 28 px or more, and the kernel knows
            page.get_by_role("button", name="Large text").click()
            page.wait_for_selector(".lsk-panel.lsk-large", timeout=5_000)
            execute_in_kernel(page, f"Path({str(flag)!r}).write_text(str(panel.presenter.large))")
            wait_until(lambda: flag.exists() and flag.read_text() == "True", 10, what="the kernel to see large text")
            page.wait_for_function(f"() => ({NEWEST})().inside", timeout=5_000)  # still following, bigger
            sizes = page.evaluate(SIZES)
            report["light_large"] = {"sizes": sizes, "contrast": contrasts(page), "newest": newest(page)}
            assert min(sizes["text"]) >= 28 and min(sizes["translation"]) >= 28 and min(sizes["live"]) >= 28, sizes
            shot(page, "light_large")

            # the language changed from code, to a model that streams: the controls say so, only French shows
            # under the turns from now on, and a translation being written shows as pending with its draft
            execute_in_kernel(page, f"session.translation.configure(to='fr', translator='openai', base_url={llm.url!r},"
                                    " api_key='k', model='m')")
            page.wait_for_function("() => { const v = [...document.querySelectorAll('.lsk-panel input, .lsk-panel select')]"
                                   ".map((e) => e.value); return v.includes('fr') && v.includes('openai') && v.includes('m'); }",
                                   timeout=10_000)
            page.wait_for_function("() => !document.querySelector('.lsk-translation[data-lang=es]')", timeout=5_000)
            execute_in_kernel(page, f"speak({end_of(25)})")
            page.wait_for_function("() => [...document.querySelectorAll('.lsk-pending .lsk-draft')]"
                                   ".some((e) => e.textContent.split(' ').length >= 3)", timeout=20_000)
            pending = page.evaluate("() => [...document.querySelectorAll('.lsk-pending')].map((e) => e.textContent)")
            report["pending"] = pending
            assert any(line.startswith("fr: ") and line.endswith("… translating") for line in pending), pending
            shot(page, "light_large_translating")
            page.wait_for_function("() => document.querySelectorAll('[data-lang=fr]').length === 3"
                                   " && !document.querySelector('.lsk-pending')", timeout=30_000)
            landed = page.evaluate("() => [...document.querySelectorAll('[data-lang=fr]')].map((e) => e.className + ' ' + e.textContent)")
            report["landed"] = landed
            answers = list(FRENCH.values())
            assert landed == [f"lsk-translation fr: {answers[0]}", f"lsk-translation fr: {answers[1]}",
                              f"lsk-unverified fr: {answers[2]} ⚠ unverified"], landed
            shot(page, "light_large_translated")

            # coaching: the analysis streams into the report area while the model writes, then the report
            execute_in_kernel(page, "panel.presenter.large = False")
            page.wait_for_function("() => !document.querySelector('.lsk-panel.lsk-large')", timeout=10_000)
            page.get_by_role("button", name="Coach").click()
            page.wait_for_function("() => [...document.querySelectorAll('.lsk-panel button')]"
                                   ".some((b) => Number((b.textContent.match(/Coaching… (\\d+) words/) || [0, 0])[1]) >= 20)",
                                   timeout=30_000)  # the words so far, on the button
            page.wait_for_function("() => /The model is writing/.test(document.querySelector('.lsk-report').textContent)",
                                   timeout=10_000)
            page.locator(".lsk-report").scroll_into_view_if_needed()
            report["coaching_progress"] = page.locator(".lsk-report").inner_text()[:300]
            shot(page, "light_coaching_streams")
            page.wait_for_function("() => /Speaking coach report/.test(document.querySelector('.lsk-report').textContent)",
                                   timeout=30_000)
            assert "The model is writing" not in page.locator(".lsk-report").inner_text()
            page.get_by_role("button", name="Large text").click()  # back to the projector's size
            page.wait_for_selector(".lsk-panel.lsk-large", timeout=5_000)

            # the dark theme: as readable
            page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
            page.wait_for_selector("body[data-jp-theme-light=false]", state="attached", timeout=10_000)
            time.sleep(0.5)
            report["dark_large"] = {"contrast": contrasts(page)}
            shot(page, "dark_large")
            execute_in_kernel(page, "panel.presentation = False")  # from code: normal size, controls back
            page.wait_for_function("() => !document.querySelector('.lsk-panel.lsk-large')", timeout=10_000)
            report["dark_normal"] = {"sizes": page.evaluate(SIZES), "contrast": contrasts(page)}
            shot(page, "dark_normal")
            execute_in_kernel(page, "panel.presentation = True")
            page.wait_for_selector(".lsk-panel.lsk-large.lsk-compact", timeout=10_000)
            assert not page.locator(".lsk-panel .lsk-controls").first.is_visible()
            page.get_by_role("button", name="Show controls").click()  # the way back, in the page
            page.wait_for_selector(".lsk-panel.lsk-large:not(.lsk-compact)", timeout=5_000)
            assert page.locator(".lsk-panel .lsk-controls").first.is_visible()
            assert not page.get_by_role("button", name="Show controls").is_visible()

            # full screen: the Fullscreen API, and where a page refuses it, the whole window
            page.get_by_role("button", name="Full screen").click()
            page.wait_for_function("() => document.querySelector('.lsk-panel').dataset.fullscreen", timeout=5_000)
            time.sleep(0.3)
            mode = page.evaluate("() => document.querySelector('.lsk-panel').dataset.fullscreen")
            panel_box = page.locator(".lsk-panel").bounding_box()
            page.wait_for_function(f"() => ({NEWEST})().inside", timeout=5_000)
            status_box, turns_box = (page.locator(f".lsk-panel {name}").bounding_box() for name in (".lsk-status", ".lsk-turns"))
            assert status_box["height"] >= 15 and status_box["y"] + status_box["height"] <= turns_box["y"] + 1  # not squeezed
            report["fullscreen"] = {"mode": mode, "box": panel_box, "newest": newest(page)}
            shot(page, "dark_fullscreen")
            assert mode in ("fullscreen", "fullpage") and panel_box["width"] >= 1900 and panel_box["height"] >= 1060, report
            page.get_by_role("button", name="Exit full screen").click()
            page.wait_for_function("() => !document.querySelector('.lsk-panel').dataset.fullscreen", timeout=5_000)
            page.evaluate("() => { Element.prototype.requestFullscreen = function () {"
                          " return Promise.reject(new TypeError('Permissions check failed')); }; }")  # as a policy does
            page.get_by_role("button", name="Full screen").click()
            page.wait_for_function("() => document.querySelector('.lsk-panel').dataset.fullscreen === 'fullpage'",
                                   timeout=5_000)
            fallback_box = page.locator(".lsk-panel").bounding_box()
            report["fallback"] = {"box": fallback_box}
            shot(page, "dark_fullpage_fallback")
            assert fallback_box == {"x": 0, "y": 0, **VIEWPORT}, fallback_box  # the whole window, on top
            assert page.evaluate("() => document.elementFromPoint(960, 540).closest('.lsk-panel') !== null")
            page.keyboard.press("Escape")
            page.wait_for_function("() => !document.querySelector('.lsk-panel').dataset.fullscreen", timeout=5_000)
            assert page.evaluate("() => !!document.querySelector('.jp-Cell .lsk-panel')")  # back in its cell
            execute_in_kernel(page, "source.close()")
        finally:
            browser.close()
    report["seconds"] = round(time.monotonic() - began, 1)
    (ARTIFACTS / "panel_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))

    for name in ("light_normal", "light_large", "dark_large", "dark_normal"):
        contrast = report[name]["contrast"]  # WCAG AAA for the turns, AA for the rest
        assert contrast["text"] >= 7 and contrast["translation"] >= 4.5 and contrast["live"] >= 4.5, (name, contrast)
    assert max(report["dark_normal"]["sizes"]["text"]) < 28  # large text is a mode, not the default
