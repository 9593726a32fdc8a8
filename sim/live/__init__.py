"""The real delivery core (asyncio, real HTTP), in layers, each importing only those below it:

* `eventbridge`: EventBridge semantics as pure functions — event patterns, input
  transformers, and the checks on names, endpoints and header values;
* `config`: the core's configuration in AWS shapes — resources, loading a config or a
  CloudFormation template, turning a scenario into a config;
* `delivery`: building requests, authorizing (connections), sending (transport), the core
  itself (lanes, token buckets, retries, endings), records and the SQLite store;
* `ingest` (events from PutEvents entries and JSONL) and `sigv4` (signature checks with
  botocore's signer), then `put_events` (the PutEvents endpoint over HTTP) and `service`
  (the assembled `sim core run`).

May import: `sim.policy`, `sim.rng`, `sim.records`, `sim.scenario`, `sim.errors`. Never `sim.des`
(the engines are independent), results, reports or the CLI.
"""
