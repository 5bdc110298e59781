"""A first session as a new user has it: `skysift dev` (what `make dev` runs) on a clean work directory, every
service SERVING, the demo alerts polled with their stamps and round 0 queued; then, in Chromium, the queue with
stamps, labels by key, a round from another shell (with the printed `export` lines) and the rounds page."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skysift.config import SERVICES
from skysift.modeltags import DEFAULT_EXPERIMENT, label_keys
from skysift.store import keys
from tests.e2e.browser import MARKS, assert_rounds_page_tells_the_truth, idle, overflow_px, screenshot
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = MARKS


def clean_env() -> dict:
    """No SKYSIFT_* from the test session: the stack must work on its own defaults (ports moved off the usual)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSIFT_")}
    env.update({f"SKYSIFT_{s.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for s in SERVICES})
    return env


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory):
    """`skysift dev` running until the test ends; yields (its output so far, the app's URL, the export lines)."""
    work = tmp_path_factory.mktemp("dev")
    cmd = [str(BIN / "skysift"), "dev", "--workdir", str(work), "--mlflow-port", str(free_port()),
           "--app-port", str(free_port())]
    proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving; Ctrl-C to stop"):
                break
        out = "".join(lines)
        assert lines and lines[-1].startswith("serving"), out
        app_url = re.search(r"^app:\s+(http://\S+)", out, re.M).group(1)
        exports = dict(re.findall(r"^  export (SKYSIFT_\w+)=(\S+)$", out, re.M))
        yield out, app_url, exports, work
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_dev_serves_everything_polls_the_demo_with_stamps_and_queues_round_0(dev_stack):
    out, _, exports, work = dev_stack
    assert out.count("SERVING") == len(SERVICES)
    store = work / "store"
    for stage in ("alerts", "cutouts", "enriched", "features"):
        files = sorted(store.glob(f"{stage}/survey=*/night=*/*_{stage}.parquet"))
        assert {f.parent.parent.name for f in files} == {"survey=ztf", "survey=lsst"}, stage
    assert re.search(rf"round 0 of experiment '{DEFAULT_EXPERIMENT}' \(galactic\): \d+ alerts queued", out), out
    # the demo's pool filter: the first alerts a scanner sees have a light curve (round 0 queued the demo's
    # single-detection Rubin alerts too)
    round_0 = store / keys.round_prefix(DEFAULT_EXPERIMENT, 0)
    assert json.loads((round_0 / "meta.json").read_text())["pool_filter"]["min_detections"] == 2
    queued = set(pq.read_table(round_0 / "queue.parquet").column("candid").to_pylist())
    features = pa.concat_tables([pq.read_table(f, columns=["candid", "ndets"])
                                 for f in store.glob("features/survey=*/night=*/*_features.parquet")])
    ndets = dict(zip(features.column("candid").to_pylist(), features.column("ndets").to_pylist()))
    assert queued and all(ndets[c] >= 2 for c in queued)
    assert {"SKYSIFT_STORE_URL", "SKYSIFT_MLFLOW_TRACKING_URI", "SKYSIFT_TRAINER_ADDRESS"} <= set(exports)
    # the poll went through the services with a token made for the stack (mode 600), exported by path only
    token_file = work / "auth" / "token"
    assert exports["SKYSIFT_AUTH_TOKEN_FILE"] == str(token_file)
    assert token_file.stat().st_mode & 0o777 == 0o600 and (work / "auth" / "tokens").stat().st_mode & 0o777 == 0o600
    logs = "".join(p.read_text(errors="replace") for p in work.glob("*.log"))
    assert token_file.read_text().strip() not in out + logs


def test_first_session_labels_with_stamps_then_a_round_from_another_shell_shows_on_the_rounds_page(dev_stack, page):
    out, app_url, exports, work = dev_stack
    page.goto(app_url)
    name = page.get_by_label("Your name (labels are attributed to it)")
    name.wait_for(timeout=120_000)
    page.get_by_text("Give your name in the sidebar first").wait_for(timeout=60_000)  # what a newcomer is told
    name.fill("first-user")
    name.press("Enter")
    # the app moves the focus off the field after Enter: a label key typed into it would rename the labeller
    page.wait_for_function("() => document.activeElement?.tagName !== 'INPUT'", timeout=60_000)
    try:
        page.locator(".sk-card").wait_for(timeout=120_000)
    finally:
        screenshot(page, "first-session-label")
    idle(page)
    assert page.locator(".sk-stamp img.sk-small").count() == 3  # the demo's stamps were kept
    screenshot(page, "first-session-label")
    assert overflow_px(page) <= 0
    labelled = []
    for label in ("galactic", "extragalactic") * 3:  # three of each class: one of each is held out, so round 1 has F1
        candid = page.locator(".sk-card").get_attribute("data-candid")
        page.keyboard.press(label_keys()[label])
        page.wait_for_function("c => { const e = document.querySelector('.sk-card');"
                               " return !e || e.dataset.candid !== c; }", arg=candid, timeout=60_000)
        labelled.append(candid)
    idle(page)

    # another shell: only the printed export lines point it at the stack
    shell = {**{k: v for k, v in os.environ.items() if not k.startswith("SKYSIFT_")}, **exports}
    check = subprocess.run([str(BIN / "skysift"), "config", "check"], env=shell, capture_output=True, text=True,
                           timeout=120)
    assert exports["SKYSIFT_MLFLOW_TRACKING_URI"] in check.stdout + check.stderr
    rnd = subprocess.run([str(BIN / "skysift"), "round", "--force"], env=shell, capture_output=True, text=True,
                         timeout=900)
    assert rnd.returncode == 0, rnd.stdout + rnd.stderr
    assert rnd.stdout.startswith("round 1 created"), rnd.stdout

    page.goto(f"{app_url}/rounds")
    page.get_by_text("Per round").wait_for(timeout=120_000)
    idle(page)
    screenshot(page, "first-session-rounds")
    assert page.get_by_text(DEFAULT_EXPERIMENT, exact=True).count()  # the experiment the app opens on is chosen
    assert_rounds_page_tells_the_truth(page, champion_round=1)
