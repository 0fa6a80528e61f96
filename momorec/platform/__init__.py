"""What a platform team runs around the stages: Ray Jobs submission, MLflow run comparison, config overlays.

- `submit`:  `momorec submit <stage|run|refresh> --address http://HEAD:8265` through the Ray Jobs API.
- `auth`:    the Ray cluster token (Ray 2.60 token authentication): found, sent, never shown.
- `compare`: runs of an MLflow experiment side by side, best per metric, protocol and seeds.
- `overlay`: a partial config YAML (e.g. infra/spark-cluster.yaml) turned into `--set` overrides.
- `cli_commands`: the typer commands; `register(app)` adds them to the `momorec` CLI.
"""
