"""What the tests, the benchmarks and the template builders share: tiny and full-size random models in
the real key layouts, the real ComfyUI server with those models (``comfy_harness``), fixtures, and the
two-forward oracle. Imported as ``tests.support.*`` from the repository root (pytest's ``pythonpath``
is the root; benchmarks and scripts run as ``python -m`` from it), so nothing edits ``sys.path``.
Nothing here is a test, and nothing here imports a test or a benchmark.
"""
