"""The live core's configuration in AWS shapes (design §5): the typed `resources` (Connection,
ApiDestination, Rule with Targets), `loading` (a core config file or a scenario, secrets from
`${env:...}`) and `cloudformation` (a template's AWS::Events resources, intrinsics resolved).

May import: `sim.live.eventbridge`, `sim.scenario`, `sim.errors`.
"""
