"""The hypernetwork's parts and their registries (``fedhyper.hnet.config``); the composed
hypernetwork is ``fedhyper.hypernet.HyperNetwork``.

Each part module registers its classes when imported; importing them here fills every registry
before ``HyperNetConfig.validate`` reads one, whichever module of the package is imported first.
A new part module is imported here too.
"""

from fedhyper.hnet import bodies, conditioners, inits, outputs  # noqa: F401  (they register their choices)
