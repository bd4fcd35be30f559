"""AG_NEWS text classifier: serving code (``code/``), training, evaluation, shipped artifacts."""

import sys
from pathlib import Path

CODE_DIR = Path(__file__).resolve().parent / "code"


def use_serving_code() -> None:
    """Make ``code/`` modules importable by plain name, as the SageMaker container does.

    Training, evaluation and benchmarks import the very modules that ship in ``model.tar.gz``,
    so preprocessing can never differ between training and serving.
    """
    if str(CODE_DIR) not in sys.path:
        sys.path.insert(0, str(CODE_DIR))
