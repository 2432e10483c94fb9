"""Training: one shared loop (``loop``), run configs (``config``), the plugin protocol (``base``) and
the registry of trainers (``registry``, entry-point group ``sltdata.trainers``).

Importing this package does not import torch-heavy trainer modules; ``get_trainer(name)`` does.
"""

from sltdata.train.base import DatasetInfo, Trainer
from sltdata.train.config import DataConfig, LoopConfig, RunConfig, load_config
from sltdata.train.registry import get_trainer, register_trainer, trainer_entry_points

__all__ = ["DatasetInfo", "Trainer", "DataConfig", "LoopConfig", "RunConfig", "load_config", "get_trainer",
           "register_trainer", "trainer_entry_points"]
