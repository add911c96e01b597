"""Rerunnable performance measurements: the one home of smki's benchmarks (``smki bench …``).

Nothing on the issuing path imports this package; it drives the product from outside, the way an
operator would, and reports figures as ratios within one run (these machines are noisy).

| command | module | what it measures |
|---|---|---|
| ``smki bench issue`` | :mod:`smki.bench.issue` | batch Device issuance in-process vs openssl's limit |
| ``smki bench http`` | :mod:`smki.bench.http` | ``SubmitCSRBatch`` over mutual TLS against a live ``smki serve`` |
| ``smki bench codec`` | :mod:`smki.bench.dcc_codec` | the DCC batch XML codecs at 50,000 CSRs |
| ``smki bench repository`` | :mod:`smki.bench.repository_scale` | look-ups, CRL and extract as the store grows |
| ``smki bench hsm`` | :mod:`smki.bench.hsm_sign` | signatures/s, file key backend beside PKCS#11 (SoftHSM2) |
| ``smki bench crl`` | :mod:`smki.bench.crl` | CRL generation time for N revoked entries |
| ``smki bench device-factory`` | :mod:`smki.bench.device_factory` | Device Certificate build + sign rate on one core |
| ``smki bench batch-cpu`` | :mod:`smki.bench.batch_cpu` | where a batch's CPU goes: writer vs signing workers |
| ``smki bench cluster`` | :mod:`smki.bench.cluster` | one node direct vs two nodes behind HAProxy (PostgreSQL) |
| ``smki bench store-size`` | :mod:`smki.bench.store_size` | single-CSR issuance latency as the store grows |
| ``smki bench service-phases`` | :mod:`smki.bench.service_phases` | the batch service's CPU per CSR, phase by phase |
| ``smki bench sql-forms`` | :mod:`smki.bench.sql_forms` | one CSR's statements, plain vs packed (PostgreSQL) |
"""
