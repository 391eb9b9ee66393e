"""Drives the playground (`GET /`) of a running `sift serve` in headless Chromium and prints
what it saw as one JSON line.

    python playground.py BASE_URL SCREENSHOT_DIR EXTRACTOR FIELD TEXT [stream] [schema=JSON]
        [set:NAME=VALUE ...]

The extractor is picked (an EXTRACTOR of "" picks the ad-hoc schema, whose schema field gets
JSON when given), TEXT typed into the input field FIELD (a TEXT of `@PATH` chooses the
file PATH in the document input instead), the streamed toggle set when asked, and the run
button pressed; each `set:NAME=VALUE` types VALUE into the input field NAME first. While it runs, the number of streamed elements shown is
sampled; once it is done the result, the attempts and the marked spans are read. Screenshots
of each step go to SCREENSHOT_DIR.
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

base, shots, extractor, field, text = sys.argv[1:6]
stream = "stream" in sys.argv[6:]
schema = next((a[len("schema="):] for a in sys.argv[6:] if a.startswith("schema=")), None)
others = [a[len("set:"):].split("=", 1) for a in sys.argv[6:] if a.startswith("set:")]
os.makedirs(shots, exist_ok=True)
options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
             "--no-proxy-server", "--disable-background-networking", "--disable-component-update"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
by_id = lambda name: (By.CSS_SELECTOR, f"[data-testid='{name}']")
out = {}
try:
    started = time.monotonic()
    driver.get(base + "/")
    picker = WebDriverWait(driver, 10).until(
        lambda d: d.find_element(*by_id("extractor")) if d.find_elements(By.CSS_SELECTOR, "[data-testid=extractor] option") else None)
    out["interactive_ms"] = round((time.monotonic() - started) * 1000)
    out["extractors"] = [o.get_attribute("value") for o in picker.find_elements(By.TAG_NAME, "option")]
    Select(picker).select_by_value(extractor)
    if schema is not None:
        schema_box = WebDriverWait(driver, 5).until(lambda d: d.find_element(*by_id("input-schema")))
        schema_box.clear()
        schema_box.send_keys(schema)
    for name, value in others:
        other = WebDriverWait(driver, 5).until(lambda d: d.find_element(*by_id("input-" + name)))
        other.clear()
        other.send_keys(value)
    box = WebDriverWait(driver, 5).until(lambda d: d.find_element(*by_id("input-" + field)))
    box.clear()
    if text.startswith("@"):
        driver.find_element(*by_id("file")).send_keys(text[1:])
    else:
        box.send_keys(text)
    toggle = driver.find_element(*by_id("stream"))
    if toggle.is_selected() != stream:
        toggle.click()
    driver.save_screenshot(os.path.join(shots, "1-form.png"))
    driver.find_element(*by_id("run")).click()
    counts = []
    # Generous: the embedded model on a loaded 2-core machine took over 30 s for its first
    # answer (the loop ends as soon as the run does).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts.append(len(driver.find_elements(By.CSS_SELECTOR, "[data-testid=element]")))
        state = driver.find_element(By.ID, "state").text
        if state and not state.startswith("running"):
            break
        time.sleep(0.03)
    out["state"] = driver.find_element(By.ID, "state").text
    out["element_counts"] = sorted(set(counts))
    out["result"] = driver.find_element(*by_id("result")).text
    out["item_errors"] = [e.text for e in driver.find_elements(*by_id("item-error"))]
    out["attempts"] = [a.text for a in driver.find_elements(*by_id("attempt"))]
    out["document"] = [d.text for d in driver.find_elements(*by_id("document"))]
    out["cost"] = [c.text for c in driver.find_elements(*by_id("cost"))]
    marks = driver.find_elements(*by_id("span"))
    out["spans"] = [{"text": m.text, "pointer": m.get_attribute("data-pointer")} for m in marks]
    if marks:
        webdriver.ActionChains(driver).move_to_element(marks[0]).perform()
        out["hovered_row"] = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#fields tr.hot")]
    driver.save_screenshot(os.path.join(shots, "2-result.png"))
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    out["external"] = [r for r in resources if not r.startswith(base)]
    # The page and everything it loaded from the server (its shared script), API calls aside.
    out["page_bytes"] = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].transferSize"
        " + performance.getEntriesByType('resource').filter(e => e.initiatorType === 'script')"
        ".reduce((n, e) => n + e.transferSize, 0)")
finally:
    driver.quit()
print(json.dumps(out))
