"""The page with a model served with its text tower, in headless Chromium: a text box in place of image 2,
the words coloured by their scores, a word pressed shows the regions that match it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium")

from test_web_browser import CHROMEDRIVER, CHROMIUM, browser, keep, open_page  # noqa: E402, F401

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("browser test skipped: no Chromium here", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from webtools import image_bytes, server_in_thread  # noqa: E402


def painted(driver) -> bool:
    """Every shown overlay holds opaque pixels of more than one colour (the text's figure slot is hidden)."""
    return driver.execute_script(
        """
        const canvases = [...document.querySelectorAll('figure:not([hidden]) canvas.overlay')];
        return canvases.length > 0 && canvases.every((c) => {
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const colours = new Set();
          for (let i = 0; i < d.length; i += 4 * 7) if (d[i + 3] > 0) colours.add(d[i] + ',' + d[i + 2]);
          return colours.size > 1;
        });
        """
    )


def test_an_image_and_a_text_with_the_words_coloured_and_matched(browser, tmp_path):  # noqa: F811 (fixture)
    from simexplain.web import WebSettings

    with server_in_thread(WebSettings(text_models=("python:test_image_text_doors:tiny_clip",))) as base:
        wait = open_page(browser, base, 1280, 900)
        assert not browser.find_element(By.ID, "drop2").is_displayed()
        assert browser.find_element(By.ID, "text").is_displayed()
        visible = [
            b.get_attribute("value") for b in browser.find_elements(By.NAME, "method") if b.is_displayed()
        ]
        assert "word-occlusion" in visible and "deep-similarity" not in visible
        path = tmp_path / "photo.png"
        path.write_bytes(image_bytes(1, size=48))
        browser.find_element(By.ID, "image1").send_keys(str(path))
        browser.find_element(By.ID, "text").send_keys("a cat on the sofa")
        browser.find_element(By.CSS_SELECTOR, "input[name=method][value=pair-interaction]").click()
        browser.find_element(By.ID, "explain").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card .words button")) == 10)
        wait.until(painted)
        words = browser.find_elements(By.CSS_SELECTOR, ".card:last-child .words button")
        assert [w.text for w in words] == ["#0", "#1", "#2", "#3", "#4"]
        assert all(w.get_attribute("title").startswith("score ") for w in words)
        words[1].click()
        assert words[1].get_attribute("aria-pressed") == "true" and painted(browser)
        assert keep(browser, "web-image-text.png", tmp_path).stat().st_size > 10_000
