"""One process of the two-process jax.distributed test (tests/test_distributed.py).

Each process owns 2 CPU devices; the 4-device global mesh shards a batch of 8 inputs. Every
process quantizes its local shards with the vmapped FFI op and checks the bytes against its
own unsharded computation of the same rows. Prints OK on success.
"""

import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)
port, pid = int(sys.argv[1]), int(sys.argv[2])
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                           process_id=pid, initialization_timeout=60)

import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jax_fp4 as F  # noqa: E402

mesh = Mesh(np.array(jax.devices()), ("b",))
assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2
rng = np.random.default_rng(0)  # same data in both processes
x = rng.standard_normal((8, 130, 64)).astype(np.float32).astype(jax.numpy.bfloat16)
sharding = NamedSharding(mesh, P("b"))
local_rows = slice(4 * pid, 4 * pid + 4)
gx = jax.make_array_from_process_local_data(sharding, x[local_rows], x.shape)
f = jax.jit(jax.vmap(lambda a: F.fp4_quantize(a, 300.0)))
hlo = f.lower(gx).compile().as_text()
assert "all-gather" not in hlo and "all-to-all" not in hlo, "collectives in the HLO"
q, sf = f(gx)
want_q, want_sf = jax.vmap(lambda a: F.fp4_quantize(a, 300.0))(x[local_rows])
for shard in q.addressable_shards:
    i = shard.index[0].start - 4 * pid
    assert np.array_equal(np.asarray(shard.data), np.asarray(want_q)[i:i + 2]), "codes differ"
for shard in sf.addressable_shards:
    i = shard.index[0].start - 4 * pid
    assert np.array_equal(np.asarray(shard.data), np.asarray(want_sf)[i:i + 2]), "scales differ"
print("OK", pid)
jax.distributed.shutdown()
