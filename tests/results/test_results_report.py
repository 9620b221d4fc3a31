"""``mfrs report`` and the end of ``mfrs demo``: headline, self-contained HTML, reruns, bad input, real Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests_support import run_mfrs

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _report_of(stdout: str) -> Path:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("report ("), last
    return Path(last.split(": ", 1)[1])


def test_demo_ends_with_headline_and_report_path(demo_run):
    root, proc = demo_run
    path = _report_of(proc.stdout)
    assert path == root / "reports" / "demo.html" and path.is_file()
    head = proc.stdout.split("headline findings:", 1)[1]
    for area in ("V1", "OFA", "FFA", "STS"):
        assert f"  {area}: best layer mobilenet_v2/" in head
    assert "noise ceiling" in head and "planted" in head
    text = path.read_text()
    for needle in ("Headline findings", "Planted truth vs recovered", "What ran", "git revision",
                   "Wall time per stage", "family: time x layer"):
        assert needle in text
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["n_figures"] >= 6


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and "reports" not in p.parts}


def test_report_rerun_is_unchanged_and_recomputes_nothing(demo_copy):
    root = demo_copy
    html = root / "reports" / "demo.html"
    before, html_before = _snapshot(root), html.stat().st_mtime_ns
    proc = run_mfrs("report", "demo", root=root)
    assert _report_of(proc.stdout) == html
    assert "report (unchanged" in proc.stdout
    assert html.stat().st_mtime_ns == html_before
    assert _snapshot(root) == before  # no store, mark or intermediate touched


def test_report_on_incomplete_stores_names_them_and_writes_nothing(demo_copy):
    root = demo_copy
    shutil.rmtree(root / "reports")
    marks = sorted((root / "rsa.zarr" / ".mfrs-complete").glob("region=*.json"))
    unit = json.loads(marks[0].read_text())["unit"]  # e.g. region=0:2,time=0:50
    marks[0].unlink()
    shutil.rmtree(root / "model_rdms.zarr")
    proc = run_mfrs("report", "demo", root=root, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "store 'rsa'" in proc.stderr and unit in proc.stderr and "is incomplete" in proc.stderr
    assert "store 'model_rdms'" in proc.stderr and "does not exist" in proc.stderr
    assert "nothing was written" in proc.stderr
    assert not (root / "reports").exists() or not any((root / "reports").iterdir())


@pytest.fixture(scope="module")
def chromium():
    """A real headless Chromium (Debian's chromium + chromium-driver), never downloaded by selenium-manager."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: run `bash cluster/install-system-deps.sh` as root")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_in_headless_chromium(demo_run, chromium):
    path = _report_of(demo_run[1].stdout)
    chromium.get(path.as_uri())
    chromium.set_script_timeout(60)
    state = chromium.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const check = () => {
            const imgs = Array.from(document.images);
            if (document.readyState === 'complete' && imgs.every(i => i.complete)) {
                done(imgs.map(i => ({src: i.src.slice(0, 30), w: i.naturalWidth, h: i.naturalHeight})));
            } else { setTimeout(check, 100); }
        };
        check();
    """)
    figures = [i for i in state if i["src"].startswith("data:image/")]
    assert len(figures) >= 6, state
    broken = [i for i in state if i["w"] == 0 or i["h"] == 0]
    assert not broken, broken
    errors = [e for e in chromium.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    # every resource is inside the file: nothing was fetched from a network
    urls = chromium.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in urls if u.startswith(("http://", "https://"))] == []


def test_report_before_any_run_names_every_missing_store(catalog):
    from mfrs.errors import StoreError
    from mfrs.report import build_report

    with pytest.raises(StoreError, match=r"(?s)store 'rsa' .*does not exist.*store 'model_rdms' .*store 'sources' "
                                         r".*Run `mfrs run demo`"):
        build_report("demo", catalog=catalog)
    assert not (catalog.root / "reports").exists()
