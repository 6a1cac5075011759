"""Take docs/web.jpg: the page in headless Chromium, the bundled pair explained by the default model.

PYTHONPATH=src:tests python docs/web_screenshot.py   (about a minute on a 2-core CPU)
"""

import io
import sys
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from webtools import server_in_thread

from simexplain.web import WebSettings

METHODS = ("interaction-cam", "smooth-grad", "conditional-occlusion")
OUT = Path(__file__).resolve().parent / "web.jpg"


def main() -> int:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        with server_in_thread(WebSettings(models=("efficientnet-lite0",))) as base:
            driver.set_window_size(1280, 1000)
            driver.get(base + "/")
            wait = WebDriverWait(driver, 600)
            wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
            driver.find_element(By.ID, "sample").click()
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#drop2 img").is_displayed())
            for box in driver.find_elements(By.CSS_SELECTOR, "input[name=method]"):
                if (box.get_attribute("value") in METHODS) != box.is_selected():
                    box.click()
            driver.find_element(By.ID, "explain").click()
            wait.until(lambda d: d.find_element(By.ID, "score").text.strip())
            driver.execute_script("window.scrollTo(0, 0)")
            time.sleep(0.5)
            shot = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    Image.open(io.BytesIO(shot)).convert("RGB").save(
        OUT, quality=88, optimize=True
    )  # JPEG like the other docs
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
