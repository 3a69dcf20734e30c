"""The labelling page in a real headless Chromium: keys in, exactly those decisions stored."""

import os
from pathlib import Path

import pytest

from unsee.bench.label import make_world_set
from unsee.feedback.browser import find_chromium, open_browser, press, screenshot, wait_for
from unsee.feedback.config import LabelConfig
from unsee.feedback.server import BackgroundServer
from unsee.feedback.store import FeedbackStore

SCREENSHOTS = Path(__file__).resolve().parent.parent / "runs" / "screenshots"

if find_chromium() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must have chromium and chromedriver (.ci/run installs them)")
    pytest.skip(
        "chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> Path:
    return make_world_set(tmp_path_factory.mktemp("browser") / "set", 20)


@pytest.fixture(scope="module")
def browser():
    driver = open_browser()
    yield driver
    driver.quit()


def fresh(image_set, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "set"
    shutil.copytree(image_set, folder)
    return folder


def shown_image(driver) -> int:
    wait_for(
        driver, "document.getElementById('current') && document.getElementById('current').complete"
    )
    src = driver.execute_script("return document.getElementById('current').getAttribute('src')")
    return int(src.rsplit("/", 1)[1].split("?")[0])


def all_saved(driver, n: int) -> bool:
    return wait_for(
        driver,
        f"document.querySelectorAll('#recent .st').length === {n} && "
        "[...document.querySelectorAll('#recent .st')].every(e => e.textContent === 'saved')",
    )


def test_binary_keys_undo_and_the_store_agree(browser, image_set, tmp_path):
    folder = fresh(image_set, tmp_path)
    with BackgroundServer(LabelConfig(dir=folder, port=0, annotator="tester")) as server:
        browser.get(server.url + "/?annotator=tester")
        pressed = []
        for key, label in [("b", "bad"), ("g", "good"), ("s", "skip"), ("b", "bad")]:
            image_id = shown_image(browser)
            press(browser, key)
            pressed.append((image_id, label))
            wait_for(
                browser,
                f"!document.getElementById('current') || "
                f"!document.getElementById('current').src.includes('/images/{image_id}')",
            )
        all_saved(browser, 4)
        press(browser, "u")  # undo the last one
        all_saved(browser, 3)
        undone = pressed[-1][0]  # the undone image comes back
        wait_for(browser, f"document.getElementById('current').src.includes('/images/{undone}')")
        assert shown_image(browser) == undone
        screenshot(browser, SCREENSHOTS / "label-binary.png")
    store = FeedbackStore.for_folder(folder)
    live = [(d["image_id"], d["label"]) for d in store.decisions()]
    assert live == pressed[:3]
    every = store.decisions(include_undone=True)
    assert len(every) == 4 and every[-1]["undone_at"] is not None
    assert all(d["annotator"] == "tester" and d["seconds"] > 0 for d in every)


def test_grid_mode_marks_and_submits(browser, image_set, tmp_path):
    folder = fresh(image_set, tmp_path)
    with BackgroundServer(LabelConfig(dir=folder, port=0, mode="grid", grid_size=16)) as server:
        browser.get(server.url + "/?annotator=grid")
        wait_for(browser, "document.querySelectorAll('.card img').length === 16")
        ids = browser.execute_script(
            "return [...document.querySelectorAll('.card img')].map(i => i.getAttribute('src'))"
        )
        press(browser, "13")  # mark the first and third
        wait_for(browser, "document.querySelectorAll('.card.marked').length === 2")
        screenshot(browser, SCREENSHOTS / "label-grid.png")
        press(browser, "\n")
        all_saved(browser, 10)  # the side list keeps the last 10
    store = FeedbackStore.for_folder(folder)
    labels = {d["image_id"]: d["label"] for d in store.decisions()}
    first, third = (int(ids[i].rsplit("/", 1)[1].split("?")[0]) for i in (0, 2))
    assert len(labels) == 16
    assert {i for i, lab in labels.items() if lab == "bad"} == {first, third}


def test_rank_mode_orders_by_keys(browser, image_set, tmp_path):
    folder = fresh(image_set, tmp_path)
    with BackgroundServer(LabelConfig(dir=folder, port=0, mode="rank", rank_size=4)) as server:
        browser.get(server.url + "/?annotator=ranker")
        wait_for(browser, "document.querySelectorAll('.rankrow .card').length === 4")
        before = browser.execute_script(
            "return [...document.querySelectorAll('.rankrow .card')].map(c => Number(c.dataset.id))"
        )
        press(browser, "312")  # the 4th is implied
        wait_for(
            browser,
            "document.querySelectorAll('.rank').length === 4 && "
            "[...document.querySelectorAll('.rank')].every(r => r.textContent)",
        )
        screenshot(browser, SCREENSHOTS / "label-rank.png")
        press(browser, "\n")
        all_saved(browser, 4)
    ranks = [(d["rank"], d["image_id"]) for d in FeedbackStore.for_folder(folder).decisions()]
    assert [i for _, i in sorted(ranks)] == [before[2], before[0], before[1], before[3]]
