"""Server-side strategies, one module each; ``strategy=<name>`` selects one (``strategies.registry``).

This package's own import is light on purpose: ``flwr run`` finds ``strategies.app`` before it
sends a run, which imports this file, and a file that imported every strategy (and torch) cost
each launch about 1.5 s.
"""
