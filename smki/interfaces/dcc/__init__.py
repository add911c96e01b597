"""The DCC's own XML web services, so that existing DCC Users' systems work unchanged (spec §3.1, §3.2).

| module | what it holds |
|---|---|
| :mod:`.safe_xml` | the safe streaming XML reader/writer every message uses (no DTDs, byte limits) |
| :mod:`.repository_messages` | Repository ``certificatesearch`` / ``retrievecertificate`` messages |
| :mod:`.csr_messages` | Ad Hoc and Batched Device CSR messages (SEC Appendix M) |
| :mod:`.codec` | the import point, and the one table turning smki's refusals into DCC statuses and codes |
| :mod:`.routes` | the FastAPI routes that serve them on the Gateway (and SPOTI, for the Repository) |

Codecs are pure (no I/O, no web framework); only :mod:`.routes` calls services.
"""
