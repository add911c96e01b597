"""Imported only in a multiprocessing forkserver (as a preload): it dies with the process that
started it (see :mod:`smki.services.procguard`)."""

from smki.services.procguard import die_with_parent

die_with_parent()
