"""Practitioner mode's labeling tools: the contact sheet, the labeling page's server (over HTTP),
`tavaal label`, and the page itself driven by keyboard in headless Chromium.

The Chromium tests skip where Debian's chromium/chromium-driver or selenium are missing, unless
TAVAAL_REQUIRE_CHROMIUM=1 (set by .ci/run, which installs them): then they fail.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tavaal.cli import main
from tavaal.errors import DatasetError, LabelingError
from tavaal.labeling import LabelingServer, read_request, write_contact_sheet
from tavaal.labeling.contact_sheet import CAPTION_HEIGHT, GAP, TITLE_HEIGHT, cell_origin
from tavaal.labeling.images import BACKGROUND
from tavaal.labeling.page import NAVIGATION_KEYS, THUMBNAIL_SIZE, shortcut_keys
from tavaal.labeling.screenshot import chromium_missing, headless_chromium, screenshot_page

CLASSES = ["cat", "dog", "bird", "fish"]
# (relative path, size, PIL mode, colour): modes and formats the page and the sheet must read.
IMAGES = [
    ("pool/a/red_wide.png", (30, 20), "RGB", (220, 30, 30)),
    ("pool/a/grey.jpg", (28, 28), "L", 128),
    ("pool/b/blue_tall.png", (10, 40), "RGBA", (20, 40, 200, 255)),
    ("pool/b/c/green_palette.png", (64, 64), "P", (30, 180, 60)),
    ("pool/yellow.jpg", (50, 50), "RGB", (230, 210, 20)),
]
SAMPLE_IDS = [17, 3, 250, 42, 8]
HEADER = "sample_id,path,label\n"


def rgb_of(mode: str, colour) -> tuple[int, int, int]:
    return (colour,) * 3 if mode == "L" else tuple(colour[:3])


def make_image(path: Path, size, mode: str, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        Image.new("RGB", size, colour).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    else:
        Image.new(mode, size, colour).save(path)


@pytest.fixture
def batch(tmp_path, monkeypatch) -> Path:
    """A batch folder with relative image paths (relative to the cwd, here tmp_path); returns
    its label_request.json. The labels file goes to a folder that does not exist yet."""
    monkeypatch.chdir(tmp_path)
    for relative, size, mode, colour in IMAGES:
        make_image(tmp_path / relative, size, mode, colour)
    folder = tmp_path / "results" / "practice" / "stage1"
    folder.mkdir(parents=True)
    rows = "".join(f"{i},{p},\n" for i, (p, *_) in zip(SAMPLE_IDS, IMAGES, strict=True))
    (folder / "to_label.csv").write_text(HEADER + rows)
    request = {
        "experiment": "practice",
        "method": "entropy",
        "seed": 0,
        "stage": 1,
        "classes": CLASSES,
        "labels_file": "labels/practice/stage1/labels.csv",
        "to_label": "results/practice/stage1/to_label.csv",
    }
    (folder / "label_request.json").write_text(json.dumps(request))
    return folder / "label_request.json"


def labels_csv(labels: list[str]) -> str:
    """The exact labels file with `labels` in to_label.csv's row order."""
    rows = zip(SAMPLE_IDS, IMAGES, labels, strict=True)
    return HEADER + "".join(f"{i},{p},{label}\n" for i, (p, *_), label in rows)


LABELS_FILE = Path("labels/practice/stage1/labels.csv")


# ---------------------------------------------------------------- the contact sheet


@pytest.mark.parametrize("title", ["practice / entropy / seed 0 / stage 1", ""])
def test_contact_sheet_size_and_thumbnails(batch, tmp_path, title):
    out = tmp_path / "sheets" / "sheet.png"
    paths = [p for p, *_ in IMAGES]
    write_contact_sheet(paths, SAMPLE_IDS, out, title=title, thumb=40, columns=3)
    sheet = Image.open(out)
    assert sheet.format == "PNG" and sheet.mode == "RGB"
    # 5 images in 3 columns: 2 rows of 40-pixel cells with captions, gaps around them.
    titled = TITLE_HEIGHT if title else 0
    assert sheet.size == (GAP + 3 * (40 + GAP), titled + GAP + 2 * (40 + CAPTION_HEIGHT + GAP))
    assert sheet.size == (136, 140 if title else 120)
    for index, (_, _, mode, colour) in enumerate(IMAGES):
        x, y = cell_origin(index, thumb=40, columns=3, titled=bool(title))
        centre = sheet.getpixel((x + 20, y + 20))
        # JPEG is lossy: a few levels of tolerance.
        assert max(abs(a - b) for a, b in zip(centre, rgb_of(mode, colour), strict=True)) <= 6, (
            index
        )
    # The 30x20 image becomes 40x27, centred: the bands above and below are the background.
    x, y = cell_origin(0, thumb=40, columns=3, titled=bool(title))
    assert sheet.getpixel((x + 20, y + 2)) == BACKGROUND
    assert sheet.getpixel((x + 20, y + 37)) == BACKGROUND
    # The 10x40 image becomes 10x40 centred: background left and right of it.
    x, y = cell_origin(2, thumb=40, columns=3, titled=bool(title))
    assert sheet.getpixel((x + 5, y + 20)) == BACKGROUND
    assert sheet.getpixel((x + 20, y + 20)) == (20, 40, 200)
    # Captions are drawn: dark pixels below the first thumbnail.
    x, y = cell_origin(0, thumb=40, columns=3, titled=bool(title))
    caption = sheet.crop((x, y + 40, x + 40, y + 40 + CAPTION_HEIGHT)).convert("L")
    assert caption.getextrema()[0] < 100
    assert not list(out.parent.glob(".*.tmp"))


def test_contact_sheet_fewer_images_than_columns(batch, tmp_path):
    out = tmp_path / "two.png"
    write_contact_sheet([p for p, *_ in IMAGES[:2]], SAMPLE_IDS[:2], out, thumb=50, columns=8)
    assert Image.open(out).size == (GAP + 2 * (50 + GAP), GAP + 50 + CAPTION_HEIGHT + GAP)


def test_contact_sheet_names_an_unreadable_image(batch, tmp_path):
    broken = tmp_path / "pool" / "broken.png"
    broken.write_bytes(b"not a png at all")
    out = tmp_path / "sheet.png"
    with pytest.raises(DatasetError, match=r"pool/broken\.png: not a readable image"):
        write_contact_sheet([IMAGES[0][0], broken], [1, 2], out)
    with pytest.raises(DatasetError, match=r"pool/missing\.png: not a readable image"):
        write_contact_sheet(["pool/missing.png"], [1], out)
    assert not out.exists()


# ---------------------------------------------------------------- the request files


def test_request_is_found_from_its_folder_or_its_csv(batch):
    for given in (batch, batch.parent, batch.parent / "to_label.csv"):
        request = read_request(given)
        assert request.request_file == batch
        assert [s.sample_id for s in request.samples] == SAMPLE_IDS
        assert [s.row for s in request.samples] == [1, 2, 3, 4, 5]
        assert request.classes == tuple(CLASSES)


def test_malformed_request_is_named(batch):
    raw = json.loads(batch.read_text())
    batch.write_text(json.dumps({**raw, "seed": "zero"}))
    with pytest.raises(LabelingError, match=r"label_request\.json: 'seed' must be a int"):
        read_request(batch)
    batch.write_text(json.dumps({**raw, "classes": ["cat", "cat"]}))
    with pytest.raises(LabelingError, match="names a class twice"):
        read_request(batch)
    with pytest.raises(LabelingError, match="labeling request not found"):
        read_request(batch.parent / "nowhere")


def test_shortcut_keys_skip_the_navigation_keys():
    assert shortcut_keys(3) == ["1", "2", "3"]
    keys = shortcut_keys(40)
    assert keys[:12] == [*"1234567890", "a", "b"]
    assert not set(NAVIGATION_KEYS) & set(keys)
    # 10 digits and 24 letters; the rest are labeled by clicking their button.
    assert keys[33] == "z" and keys[34:] == [None] * 6


# ---------------------------------------------------------------- the server over HTTP


def call(url: str, payload=None, host: str | None = None) -> tuple[int, bytes]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_posted_labels_land_in_the_csv(batch):
    with LabelingServer(batch, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = call(server.url + "label", {"sample_id": 250, "label": "bird"})
        assert (status, json.loads(body)) == (200, {"labeled": 1, "total": 5})
        assert LABELS_FILE.read_text() == labels_csv(["", "", "bird", "", ""])
        call(server.url + "label", {"sample_id": 17, "label": "dog"})
        call(server.url + "label", {"sample_id": 8, "label": "cat"})
        assert LABELS_FILE.read_text() == labels_csv(["dog", "", "bird", "", "cat"])
        # Relabel, then clear.
        call(server.url + "label", {"sample_id": 250, "label": "fish"})
        status, body = call(server.url + "label", {"sample_id": 17, "label": ""})
        assert (status, json.loads(body)["labeled"]) == (200, 2)
        assert LABELS_FILE.read_text() == labels_csv(["", "", "fish", "", "cat"])
        state = json.loads(call(server.url + "state")[1])
        assert [s["label"] for s in state["samples"]] == ["", "", "fish", "", "cat"]
        assert state["classes"] == CLASSES and state["keys"] == ["1", "2", "3", "4"]
    assert not list(LABELS_FILE.parent.glob(".*.tmp"))


def test_unknown_classes_and_samples_are_refused(batch):
    with LabelingServer(batch, port=0) as server:
        for payload in (
            {"sample_id": 17, "label": "horse"},
            {"sample_id": 999, "label": "cat"},
            {"sample_id": "17", "label": "cat"},
            {"sample_id": 17, "label": 1},
            {"sample_id": 17},
            ["not", "an", "object"],
        ):
            status, body = call(server.url + "label", payload)
            assert status == 400, payload
            assert json.loads(body)["error"]
        status, _ = call(server.url + "unlabel", {"sample_id": 17, "label": "cat"})
        assert status == 404
    assert not LABELS_FILE.exists()


def test_labeling_resumes_from_an_existing_labels_file(batch):
    LABELS_FILE.parent.mkdir(parents=True)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "fish", ""]))
    with LabelingServer(batch, port=0) as server:
        state = json.loads(call(server.url + "state")[1])
        assert [s["label"] for s in state["samples"]] == ["cat", "", "", "fish", ""]
        call(server.url + "label", {"sample_id": 3, "label": "dog"})
    assert LABELS_FILE.read_text() == labels_csv(["cat", "dog", "", "fish", ""])


def test_a_mismatching_labels_file_is_refused_naming_the_row(batch):
    LABELS_FILE.parent.mkdir(parents=True)
    swapped = labels_csv(["", "", "", "", ""]).splitlines(keepends=True)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    LABELS_FILE.write_text("".join(swapped))
    with pytest.raises(LabelingError, match=r"labels\.csv: row 2 is sample_id '250'"):
        LabelingServer(batch, port=0)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "horse", ""]))
    with pytest.raises(LabelingError, match=r"labels\.csv: row 4: label 'horse' is not one of"):
        LabelingServer(batch, port=0)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "", ""]).rsplit("\n", 2)[0] + "\n")
    with pytest.raises(LabelingError, match="4 rows, but .*to_label.csv has 5"):
        LabelingServer(batch, port=0)
    # Refusing never rewrites the human's file.
    assert LABELS_FILE.read_text().count("\n") == 5


def test_only_the_requests_images_are_served(batch):
    with LabelingServer(batch, port=0) as server:
        status, png = call(server.url + "image/17")
        assert status == 200
        image = Image.open(io.BytesIO(png))
        # 30x20 fitted into THUMBNAIL_SIZE, aspect kept.
        assert image.size == (THUMBNAIL_SIZE, round(20 * THUMBNAIL_SIZE / 30))
        assert image.convert("RGB").getpixel((5, 5)) == (220, 30, 30)
        for path in ("image/999", "image/..%2F..%2Fetc%2Fpasswd", "image/-1", "pool/yellow.jpg"):
            assert call(server.url + path)[0] == 404, path
        # Requests naming another host (DNS rebinding) are refused.
        assert call(server.url + "state", host="attacker.example:80")[0] == 403


def test_an_unreadable_image_is_reported_not_served(batch, tmp_path):
    (tmp_path / IMAGES[4][0]).write_bytes(b"\xff\xd8 truncated")
    with LabelingServer(batch, port=0) as server:
        status, body = call(server.url + "image/8")
    assert status == 500 and "pool/yellow.jpg: not a readable image" in json.loads(body)["error"]


def test_a_busy_port_is_a_clear_error(batch):
    with LabelingServer(batch, port=0) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(LabelingError, match=f"cannot listen on 127.0.0.1:{port}"):
            LabelingServer(batch, port=port).start()


# ---------------------------------------------------------------- tavaal label


def test_cli_label_errors_exit_2(batch, capsys):
    assert main(["label", "results/nowhere", "--no-browser"]) == 2
    assert "tavaal: error: results/nowhere: labeling request not found" in (capsys.readouterr().err)


def test_cli_label_serves_until_ctrl_c(batch, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tavaal.cli",
            "label",
            str(batch.parent),
            "--port",
            "0",
            "--no-browser",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("labeling page: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        assert process.stdout.readline().startswith(f"labels file: {LABELS_FILE} (0 of 5")
        assert call(url + "label", {"sample_id": 42, "label": "cat"})[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "1 of 5 labeled" in out and not err
    assert LABELS_FILE.read_text() == labels_csv(["", "", "", "cat", ""])


# ---------------------------------------------------------------- the page in Chromium

REQUIRE_ENV = "TAVAAL_REQUIRE_CHROMIUM"


@pytest.fixture
def chromium_available() -> None:
    reason = chromium_missing()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
        pytest.skip(reason)


def wait_until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return value


def test_keyboard_labeling_in_chromium(batch, chromium_available):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tavaal.labeling.screenshot import wait_for_page

    with LabelingServer(batch, port=0) as server:
        driver = headless_chromium(1000, 700)
        try:
            driver.get(server.url)
            wait_for_page(driver)
            progress = driver.find_element(By.ID, "progress")
            assert progress.text == "labeled 0 of 5"
            current = driver.find_element(By.CSS_SELECTOR, ".cell.current")
            assert current.get_attribute("id") == "cell-17"
            # '2' labels row 1 dog; '1' labels row 2 cat; skip row 3; '3' labels row 4 bird.
            ActionChains(driver).send_keys("2", "1", Keys.ARROW_RIGHT, "3").perform()
            wait_for_page(driver)
            expected = labels_csv(["dog", "cat", "", "bird", ""])
            wait_until(lambda: LABELS_FILE.exists() and LABELS_FILE.read_text() == expected)
            assert progress.text == "labeled 3 of 5"
            # After labeling row 4 the cursor moved to the next unlabeled row, 5.
            current = driver.find_element(By.CSS_SELECTOR, ".cell.current")
            assert current.get_attribute("id") == "cell-8"
            assert not driver.find_element(By.ID, "done").is_displayed()

            driver.refresh()
            wait_for_page(driver)
            assert driver.find_element(By.ID, "progress").text == "labeled 3 of 5"
            # Resumed at the first unlabeled row; Backspace clears, a click selects.
            current = driver.find_element(By.CSS_SELECTOR, ".cell.current")
            assert current.get_attribute("id") == "cell-250"
            driver.find_element(By.ID, "cell-3").click()
            ActionChains(driver).send_keys(Keys.BACKSPACE).perform()
            wait_for_page(driver)
            expected = labels_csv(["dog", "", "", "bird", ""])
            wait_until(lambda: LABELS_FILE.read_text() == expected)
            # Label the rest: the page says it is done.
            ActionChains(driver).send_keys("4", "4", "4").perform()
            wait_for_page(driver)
            wait_until(
                lambda: (
                    LABELS_FILE.read_text() == labels_csv(["dog", "fish", "fish", "bird", "fish"])
                )
            )
            done = driver.find_element(By.ID, "done")
            assert done.is_displayed() and "rerun snakemake" in done.text
            assert driver.find_element(By.ID, "progress").text == "labeled 5 of 5"
        finally:
            driver.quit()


def test_screenshot_has_the_requested_size(batch, tmp_path, chromium_available):
    out = tmp_path / "docs" / "labeling.png"
    screenshot_page(batch, out, keys="12", width=640, height=480)
    assert Image.open(out).size == (640, 480)
    assert LABELS_FILE.read_text() == labels_csv(["cat", "dog", "", "", ""])
