"""What the trainer plugins share: model blocks, the pose projector of the text trainers, CTC
decoding and the HuggingFace translation base. A plugin module (``trainers.islr``, ``trainers.ctc``,
``trainers.seq2seq``, ``trainers.causal_lm``) imports from here and from ``sltdata``, never from
another plugin, so each can change (or be removed) without touching the others.

``CONFIGS_DIR`` holds the bundled recipes (``trainers/configs/NAME-*.yaml``); each trainer names it as
its ``configs_dir`` and the registry (``sltdata.train.registry.bundled_config``) finds recipes by
asking the trainers, so ``sltdata`` never imports this package.
"""

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
