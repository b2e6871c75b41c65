"""Results of the Neural SDE example (``examples/spiral_sde.py``) in one JSON file, resumable.

The regularisation experiments on the spiral and on digits are declared
experiments now (``pyodejl run regularisers-spiral`` / ``regularisers-digits``);
this file format remains only for the Neural SDE example until it is declared too.
"""

from __future__ import annotations

import os

import numpy as np

from pyodejl.experiments.folder import atomic_write_json, read_json


class ResultsFile:
    """Finished runs in one JSON file ``{key: record}``, rewritten atomically after every run (resumable).

    ``config`` is stored under ``"_config"``; a file written with another
    configuration is refused rather than mixed.
    """

    def __init__(self, path: str, config: dict):
        self.path, self.config = path, dict(config)
        self.records = {}
        if os.path.exists(path):
            data = read_json(path)
            if data.get("_config") != self.config:
                raise ValueError(
                    f"{path} holds results of another configuration ({data.get('_config')}); "
                    "use another --out or delete it"
                )
            self.records = {k: v for k, v in data.items() if k != "_config"}

    def __contains__(self, key):
        return key in self.records

    def __getitem__(self, key):
        return self.records[key]

    def add(self, key: str, record: dict):
        self.records[key] = record
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        atomic_write_json(self.path, {"_config": self.config, **self.records})


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4g} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2g}"
