"""The page in a real browser: headless Chromium (Debian's ``chromium``, ``chromium-driver``) via Selenium,
against the app under uvicorn on a loopback port. Screenshots are kept in ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium")

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "browser test skipped: no Chromium here (apt-get install chromium chromium-driver; .ci/run does)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from webtools import TINY, image_bytes, server_in_thread  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def server():
    from simexplain.web import WebSettings

    # samples over the default cap: the long run that the progress test watches and cancels
    with server_in_thread(WebSettings(models=(TINY,), work_limits={"samples": 100_000})) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def keep(driver, name: str, tmp_path: Path) -> Path:
    """A screenshot in the test's folder and in test-artifacts/."""
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


def open_page(driver, base: str, width: int, height: int) -> WebDriverWait:
    driver.set_window_size(width, height)
    driver.get(base + "/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    return wait


def overlay_painted(driver) -> bool:
    """At least one overlay canvas holds opaque pixels of more than one colour."""
    return driver.execute_script(
        """
        const canvases = [...document.querySelectorAll('canvas.overlay')];
        return canvases.length > 0 && canvases.every((c) => {
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const colours = new Set();
          for (let i = 0; i < d.length; i += 4 * 7) if (d[i + 3] > 0) colours.add(d[i] + ',' + d[i + 2]);
          return colours.size > 1;
        });
        """
    )


def test_upload_two_images_explain_and_see_overlays_on_a_phone(server, browser, tmp_path):
    wait = open_page(browser, server, 412, 915)
    for index in (1, 2):
        path = tmp_path / f"photo{index}.png"
        path.write_bytes(image_bytes(index, size=48))
        browser.find_element(By.ID, f"image{index}").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=input-x-gradient]").click()
    browser.find_element(By.ID, "metrics").click()
    browser.find_element(By.ID, "explain").click()
    wait.until(lambda d: d.find_element(By.ID, "score").text.strip())
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 2 and overlay_painted(d))
    score = float(browser.find_element(By.ID, "score").text)
    assert -1.0 <= score <= 1.0
    methods = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card .method")]
    assert sorted(methods) == ["input-x-gradient", "interaction-cam"]
    for meta in browser.find_elements(By.CSS_SELECTOR, ".card .meta"):  # the seconds each method took
        assert re.fullmatch(r"\d+ ms|\d+(\.\d)? s", meta.text), meta.text
    for table in browser.find_elements(By.CSS_SELECTOR, ".card table.metrics"):
        assert table.find_element(By.TAG_NAME, "thead").text.split() == ["SI", "SD", "CI", "CD", "SAD", "CAD"]
    assert browser.find_element(By.ID, "dl-png").get_attribute("href").endswith("/figure.png")
    # Phone-sized: nothing wider than the screen.
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.find_element(By.ID, "results").location_once_scrolled_into_view
    assert keep(browser, "web-phone.png", tmp_path).stat().st_size > 10_000


def test_the_bundled_pair_by_keyboard_only(server, browser, tmp_path):
    wait = open_page(browser, server, 1280, 900)

    def press(*keys: str) -> None:  # keys go to whatever has the focus, as from a keyboard
        ActionChains(browser).send_keys(*keys).perform()

    def tab_to(element_id: str) -> list[str]:
        seen = []
        for _ in range(60):
            press(Keys.TAB)
            seen.append(browser.switch_to.active_element.get_attribute("id") or "")
            if seen[-1] == element_id:
                return seen
        raise AssertionError(f"{element_id} not reached by Tab: {seen}")

    assert tab_to("sample")[:2] == ["image1", "image2"]  # the drop zones' file inputs come first
    press(Keys.ENTER)
    wait.until(lambda d: all(d.find_element(By.CSS_SELECTOR, f"#drop{i} img").is_displayed() for i in (1, 2)))
    tab_to("explain")
    press(Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "score").text.strip() and overlay_painted(d))
    tab_to("opacity")
    before = browser.execute_script("return document.querySelector('canvas.overlay').style.opacity")
    press(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    after = browser.execute_script("return document.querySelector('canvas.overlay').style.opacity")
    assert float(after) == pytest.approx(float(before) - 0.1)
    assert browser.find_element(By.ID, "opacity-value").text == f"{round(float(after) * 100)}%"
    assert not browser.find_element(By.ID, "error").is_displayed()
    keep(browser, "web-desktop.png", tmp_path)


def test_a_long_run_shows_progress_and_can_be_cancelled(server, browser, tmp_path):
    wait = open_page(browser, server, 1280, 900)
    browser.find_element(By.ID, "sample").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#drop2 img").is_displayed())
    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=interaction-cam]").click()
    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=smooth-grad]").click()
    row = browser.find_element(By.CSS_SELECTOR, "input[name=method][value=smooth-grad]").find_element(
        By.XPATH, "ancestor::div[@class='method-row']"
    )
    row.find_element(By.TAG_NAME, "summary").click()
    for key, value in (("samples", "100000"), ("batch_size", "1")):  # long enough to watch and stop
        field = row.find_element(By.CSS_SELECTOR, f"input[data-key={key}]")
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "explain").click()
    wait.until(lambda d: float(d.find_element(By.ID, "progress").get_attribute("value")) > 0)
    assert "smooth-grad (1 of 1)" in browser.find_element(By.ID, "stage").text
    browser.find_element(By.ID, "cancel").click()
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text == "Cancelled."
    assert not browser.find_element(By.ID, "progress-box").is_displayed()
    assert browser.find_element(By.ID, "explain").is_enabled()


def test_a_refused_request_shows_its_one_line(server, browser, tmp_path):
    wait = open_page(browser, server, 800, 900)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"these are not pixels")
    good = tmp_path / "good.png"
    good.write_bytes(image_bytes(4))
    browser.find_element(By.ID, "image1").send_keys(str(bad))
    browser.find_element(By.ID, "image2").send_keys(str(good))
    browser.find_element(By.ID, "explain").click()
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text.startswith("image 1: not an image file")
    assert browser.find_element(By.ID, "explain").is_enabled()  # usable again


def test_a_click_on_one_image_shows_what_it_matches_on_the_other(server, browser, tmp_path):
    wait = open_page(browser, server, 1280, 900)
    browser.find_element(By.ID, "sample").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#drop2 img").is_displayed())
    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=pair-interaction]").click()
    browser.find_element(By.ID, "explain").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 2 and overlay_painted(d))
    card = next(
        c
        for c in browser.find_elements(By.CSS_SELECTOR, ".card")
        if c.find_element(By.CSS_SELECTOR, ".method").text == "pair-interaction"
    )
    assert "Click a point" in card.find_element(By.CSS_SELECTOR, ".hint").text
    first, second = card.find_elements(By.CSS_SELECTOR, "canvas.overlay")
    pixels = "return arguments[0].toDataURL()"
    marginal = browser.execute_script(pixels, second)
    ActionChains(browser).move_to_element_with_offset(first, -first.size["width"] // 4, 0).click().perform()
    wait.until(lambda d: second.get_attribute("data-matching") == "true")
    matched = browser.execute_script(pixels, second)
    assert matched != marginal  # the other image now shows one point's match, not the marginal map
    ActionChains(browser).move_to_element_with_offset(first, first.size["width"] // 4, 0).click().perform()
    assert browser.execute_script(pixels, second) != matched  # another point, another match
    first.send_keys(Keys.ESCAPE)
    assert browser.execute_script(pixels, second) == marginal
    keep(browser, "web-matching.png", tmp_path)


def test_the_papers_methods_come_first_and_the_libraries_wait_in_a_filtered_group(server, browser, tmp_path):
    from simexplain.methods import available, get

    external = [name for name in available() if get(name).library]
    if not external:
        pytest.skip("no captum: or grad-cam: method installed")
    wait = open_page(browser, server, 1280, 900)
    own = [
        e.get_attribute("value")
        for e in browser.find_elements(By.CSS_SELECTOR, "#methods input[name=method]")
    ]
    assert own == [name for name in available() if not get(name).library]  # by family, the paper's order
    families = [e.text.lower() for e in browser.find_elements(By.CSS_SELECTOR, "#methods .family")]
    assert families == ["saliency", "perturbation", "activation"]
    more = browser.find_element(By.ID, "more-methods")
    assert more.get_attribute("open") is None  # collapsed
    rows = browser.find_elements(By.CSS_SELECTOR, "#more-list input[name=method]")
    assert sorted(r.get_attribute("value") for r in rows) == sorted(external)
    assert not any(r.is_displayed() for r in rows)
    more.find_element(By.TAG_NAME, "summary").click()
    browser.find_element(By.ID, "method-filter").send_keys("integrated")
    shown = [r.get_attribute("value") for r in rows if r.is_displayed()]
    assert shown and all("integrated" in (name + get(name).description).lower() for name in shown)
    assert len(shown) < len(external)
    # A chosen method stays in view whatever the filter says, and it is explained like the paper's.
    browser.find_element(By.CSS_SELECTOR, f"#more-list input[value='{shown[0]}']").click()
    field = browser.find_element(By.ID, "method-filter")
    field.clear()
    field.send_keys("no method is called like this")
    assert [r.get_attribute("value") for r in rows if r.is_displayed()] == [shown[0]]
    browser.find_element(By.ID, "sample").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#drop2 img").is_displayed())
    browser.find_element(By.ID, "explain").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 2 and overlay_painted(d))
    methods = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card .method")]
    assert methods == ["interaction-cam", shown[0]]
    keep(browser, "web-more-methods.png", tmp_path)
