"""`unsee world path` and `unsee world ship` (train lives in train.py)."""

from unsee.world.config import WorldPathConfig, WorldShipConfig, WorldShipJudgeConfig
from unsee.world.paths import MINISD_DIR
from unsee.world.ship import ship_judge, ship_world


def world_path(cfg: WorldPathConfig) -> None:
    print(MINISD_DIR)


def world_ship(cfg: WorldShipConfig) -> None:
    ship_world(cfg.trained)


def world_ship_judge(cfg: WorldShipJudgeConfig) -> None:
    ship_judge(cfg.trained)
