"""Drives /traces of a running `sift serve` in headless Chromium (Selenium with Debian's
chromium-driver) and prints what it saw as one JSON line.

    python traces.py BASE_URL SCREENSHOT_DIR [SERVICE_KEY]

The page is loaded; with a key, the prompt it shows on the first 401 is answered. The list's
first `/user` row is opened and the waterfall's spans are read. Screenshots of each step go
to SCREENSHOT_DIR. Printed: the rows, the spans' names, the resources the page loaded from
anywhere but BASE_URL, and the time until the first row showed.
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, shots = sys.argv[1], sys.argv[2]
key = sys.argv[3] if len(sys.argv) > 3 else None
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
             "--no-proxy-server", "--disable-background-networking", "--disable-component-update"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
out = {}
try:
    started = time.monotonic()
    driver.get(base + "/traces")
    if key:
        alert = WebDriverWait(driver, 10).until(lambda d: d.switch_to.alert)
        out["asked_for_key"] = alert.text
        alert.send_keys(key)
        alert.accept()

    def user_row(d):
        for row in d.find_elements(By.CSS_SELECTOR, "[data-testid=trace-row]"):
            if "/user" in row.text:
                return row
        return None

    try:
        row = WebDriverWait(driver, 15).until(user_row)
    except TimeoutException:
        driver.save_screenshot(os.path.join(shots, "traces-no-row.png"))
        out["status"] = driver.find_element(By.ID, "status").text
        raise
    out["first_row_ms"] = round((time.monotonic() - started) * 1000)
    out["rows"] = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "[data-testid=trace-row]")]
    driver.save_screenshot(os.path.join(shots, "traces-1-list.png"))
    row.click()
    spans = WebDriverWait(driver, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=trace-span]") or None)
    out["spans"] = [s.get_attribute("title") for s in spans]
    chat = next(s for s in spans if s.get_attribute("title").startswith("chat "))
    chat.click()
    out["details"] = driver.find_element(By.CSS_SELECTOR, "#trace pre").text
    driver.save_screenshot(os.path.join(shots, "traces-2-waterfall.png"))
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    out["external"] = [r for r in resources if not r.startswith(base)]
    # The page and everything it loaded from the server (its shared script), API calls aside.
    out["page_bytes"] = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].transferSize"
        " + performance.getEntriesByType('resource').filter(e => e.initiatorType === 'script')"
        ".reduce((n, e) => n + e.transferSize, 0)")
finally:
    try:
        driver.switch_to.alert.dismiss()
    except NoAlertPresentException:
        pass
    driver.quit()
print(json.dumps(out))
