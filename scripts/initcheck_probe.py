"""A control for compute-sanitizer --tool initcheck: no jax_fp4 code at all.

Puts small NumPy arrays on the GPU with jax.device_put (sizes where initcheck flagged reads of
harness inputs in scripts/cross_check.py) and reads them with XLA's own kernels. If initcheck
reports these reads, it does not see JAX's host-to-device transfers as initialising writes.
"""

import jax
import jax.numpy as jnp
import numpy as np

dev = jax.devices()[0]
for n in (3, 33, 512, 4096):
    x = jax.device_put(np.arange(n, dtype=np.float32), dev)
    y = jax.jit(lambda v: jnp.sin(v) * 2 + v)(x)
    print(n, float(jnp.sum(y)))
