"""EventBridge semantics as pure functions (design S12–S15): event patterns (`patterns`,
`pattern_ops`), input paths and transformers (`transform`), and the checks AWS applies to names,
endpoints and header values (`checks`). Recorded AWS behaviour in `tests/conformance/`.

May import: nothing else of `sim.live`; `sim.errors` at most.
"""
