"""Settings of `unsee label` and `unsee feedback ...`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import arg, check_out_folder
from unsee.errors import UnseeError


@dataclass(kw_only=True)
class LabelConfig:
    dir: Path = arg(help="an image folder made by `unsee generate`", positional=True)
    mode: Literal["binary", "grid", "rank"] = arg(
        "binary",
        help="binary: one image, bad/good/skip; grid: 4x4 pages, mark the bad ones;"
        " rank: order M images from most to least like the concept",
    )
    annotator: str = arg("me", help="your name, stored with every decision")
    host: str = arg("127.0.0.1", help="address to listen on (anything else needs a token)")
    port: int = arg(8765, help="port (0 picks a free one)")
    token: str | None = arg(
        None, help="access token required on every request (generated when --host is not local)"
    )
    order: Literal["shuffled", "sequential", "uncertain", "bad-first"] = arg(
        "shuffled",
        help="order images are served in; uncertain / bad-first read DIR/reward.jsonl"
        " (`unsee reward score R DIR`): the reward's least certain, or likeliest bad, first",
    )
    rank_size: int = arg(5, help="images per ranking (rank mode)")
    grid_size: int = arg(16, help="images per page (grid mode)")
    until_bad: int | None = arg(None, help="stop once this many images are labelled bad")
    seed: int = arg(0, help="seed of the shuffled order")
    open_browser: bool = arg(False, help="open the page in the default browser")

    def __post_init__(self) -> None:
        if not 2 <= self.rank_size <= 9:
            raise UnseeError("--rank-size must be between 2 and 9 (one key per image)")
        if not 1 <= self.grid_size <= 25:
            raise UnseeError("--grid-size must be between 1 and 25")
        if not self.annotator.strip() or len(self.annotator) > 64:
            raise UnseeError("--annotator must be a non-empty name of at most 64 characters")
        if self.until_bad is not None and self.until_bad < 1:
            raise UnseeError("--until-bad must be at least 1")
        if not 0 <= self.port <= 65535:
            raise UnseeError("--port must be between 0 and 65535")


@dataclass(kw_only=True)
class FeedbackStatsConfig:
    dir: Path = arg(help="an image folder with feedback.sqlite", positional=True)
    json: bool = arg(False, help="print JSON instead of a table")


@dataclass(kw_only=True)
class FeedbackExportConfig:
    dir: Path = arg(help="an image folder with feedback.sqlite", positional=True)
    format: Literal["jsonl", "csv", "parquet"] = arg("jsonl", help="file format")
    out: Path | None = arg(
        None,
        help="output folder (default DIR/labelled): jsonl and csv make an imagefolder dataset"
        " (metadata + images), parquet a table",
    )
    decisions: bool = arg(False, help="one row per decision instead of one per image")

    def __post_init__(self) -> None:
        if self.out is not None:
            self.out = check_out_folder(self.out)


@dataclass(kw_only=True)
class FeedbackImportConfig:
    dir: Path = arg(help="an image folder made by `unsee generate`", positional=True)
    file: Path = arg(
        help="a .jsonl or .csv with file_name and label (bad/good/skip), and optionally"
        " annotator and seconds",
        positional=True,
    )
    annotator: str = arg("imported", help="annotator for rows that name none")


@dataclass(kw_only=True)
class FeedbackSimulateConfig:
    dir: Path = arg(help="an image folder made by `unsee generate`", positional=True)
    concept: str = arg(help="watermark, or an artist of the world (Vanmond, Brakovic, Solvei)")
    budget: int = arg(help="binary: decisions to make; rank: rankings to make")
    mode: Literal["binary", "rank"] = arg("binary", help="binary labels or rankings")
    noise: float = arg(0.0, help="share of answers flipped (binary) or pairs swapped (rank)")
    rank_size: int = arg(5, help="images per ranking")
    balanced: bool = arg(
        False, help="binary: stop each class at budget/2 (as 10 bad + 10 good in the papers)"
    )
    seed: int = arg(0, help="seed of the order and of the noise")
    annotator: str = arg("simulated", help="annotator name the decisions are stored under")
    device: str = arg("auto", help="device for the judge")

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise UnseeError("--budget must be at least 1")
        if not 0 <= self.noise <= 1:
            raise UnseeError("--noise must be between 0 and 1")
        if self.rank_size < 2:
            raise UnseeError("--rank-size must be at least 2")
