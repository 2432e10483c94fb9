"""`sltdata app`: the page shows what `sltdata predict --json` prints, checked in a real headless
browser (Debian's chromium + chromedriver driven by selenium) on a real signing video."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sltdata.testing import realdata_dir
from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.runs import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REAL = realdata_dir()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def run(islr_store, tmp_path_factory):
    work = tmp_path_factory.mktemp("app-run")
    shards = islr_shards(islr_store, work / "shards", folds=2)
    train("islr", shards, work / "run", tiny_islr_config(train={"epochs": 1}), val_fold=0)
    return work / "run"


def test_results_table_has_each_sign_and_its_score_to_four_decimals():
    from sltdata.app import results_html

    page = results_html({"input": "a.mp4", "key": "a", "predictions": [{"label": "go<", "score": 0.61234},
                                                                        {"label": "me", "score": 0.1}]})
    assert page == ('<table id="predictions" data-key="a"><thead><tr><th>sign</th><th>probability</th></tr>'
                    '</thead><tbody><tr class="prediction"><td class="label">go&lt;</td><td class="score">0.6123'
                    '</td></tr><tr class="prediction"><td class="label">me</td><td class="score">0.1000</td></tr>'
                    '</tbody></table>')
    assert results_html({"input": "a", "key": "a", "text": "hi"}) == '<p id="text">hi</p>'


def test_demo_analyses_a_store_key_as_predict_does(run, islr_store):
    from sltdata.app import Demo
    from sltdata.predict import predict

    demo = Demo(run, device="cpu", store=islr_store)
    key = demo.store_keys()[3]
    _, record = demo.analyse_key(key)
    assert record == predict(run, [islr_store], keys=[key], device="cpu").records[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"sltdata app exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"sltdata app did not answer on {url} in {seconds} s")


@pytest.mark.skipif(REAL is None, reason="no shared/realdata beside the checkout (set SLTDATA_REALDATA)")
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="no system chromium + chromedriver (apt-get install chromium chromium-driver)")
def test_browser_upload_shows_the_top_sign_and_score_predict_gives(run, tmp_path, capsys):
    pytest.importorskip("gradio", reason="the app extra is not installed (pip install 'sltdata[app]')")
    pytest.importorskip("mediapipe", reason="video extraction needs the extract extra")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from sltdata.cli import main

    video = REAL / "video/datasets/autsl/signer0_sample1000_color.mp4"
    assert main(["predict", str(run), str(video), "--json", "--device", "cpu"]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[0])["predictions"]

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from sltdata.cli import main; sys.exit(main())",
                             "app", str(run), "--port", str(port), "--host", "127.0.0.1", "--device", "cpu"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, 60)
        driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
        driver.get(f"http://127.0.0.1:{port}/")
        upload = WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        upload.send_keys(str(video))
        rows = WebDriverWait(driver, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#predictions tr.prediction"))
        shown = [(r.find_element(By.CSS_SELECTOR, ".label").text, r.find_element(By.CSS_SELECTOR, ".score").text)
                 for r in rows]
        assert shown[0] == (expected[0]["label"], f"{expected[0]['score']:.4f}")
        assert shown == [(p["label"], f"{p['score']:.4f}") for p in expected]
        skeleton = driver.find_element(By.CSS_SELECTOR, "#skeleton img").get_attribute("src")
        with urllib.request.urlopen(skeleton, timeout=10) as r:
            assert r.read(6) == b"GIF89a"  # the animation sltdata.view drew
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=20)
