#!/usr/bin/env python3
"""Validates Prometheus Operator custom resources (ServiceMonitor, PodMonitor, PrometheusRule) in
a multi-document YAML file against the operator's CRD schemas, offline.

The schemas come from PyPI's `cloudcoil-models-prometheus-operator` (pydantic models generated
from the operator's CRDs; the pinned 0.80.1.0 carries operator v0.80): types, enums and patterns are checked by pydantic; unknown
fields, which the models would silently drop, are found by comparing the input with the model's
round trip. Other kinds are skipped (kubernetes-validate covers them).

Usage: crd_check.py FILE.yaml...   -> prints one line per resource, exits 1 on any error.
(Several files in one run: importing the models takes seconds.)
"""

import sys

import yaml
from cloudcoil.models.prometheus_operator import v1

KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def unknown_fields(given, kept, path=""):
    """Keys present in `given` but dropped by the model (so unknown to the schema)."""
    out = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for k, v in given.items():
            if k not in kept:
                out.append(f"{path}.{k}" if path else k)
            else:
                out += unknown_fields(v, kept[k], f"{path}.{k}" if path else k)
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            out += unknown_fields(g, k, f"{path}[{i}]")
    return out


def check_file(path):
    errors = 0
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for d in docs:
        kind = d.get("kind")
        if kind not in KINDS or not str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
            continue
        name = f"{kind.lower()}/{d.get('metadata', {}).get('name', '?')}"
        try:
            obj = getattr(v1, kind).model_validate(d)
        except Exception as e:  # pydantic.ValidationError: one message per bad field
            print(f"ERROR {path}: {name}: {e}")
            errors += 1
            continue
        kept = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
        extra = unknown_fields(d, kept)
        if extra:
            print(f"ERROR {path}: {name}: unknown fields {extra}")
            errors += 1
        else:
            print(f"OK {path}: {name} matches the {kind} CRD schema")
    return errors


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(1 if sum(check_file(p) for p in sys.argv[1:]) else 0)
