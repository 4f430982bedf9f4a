"""Coverage-guided scenario search (`paysim explore --guided`): a fuzzer's corpus loop over
scenarios.

Every example is a scenario and a run seed; the signal is which of the engine's own branches and
lines the run reached (`points`). An example that reaches one that neither the baseline (the CI
suite's `coverage.json`, `baseline`), an earlier corpus (`corpus`) nor an earlier example reached
is kept in the corpus as a replayable scenario file, and later examples are mutations of kept
ones (`mutation`): what AFL and libFuzzer do with byte strings, done with scenario knobs. Failing
examples are shrunk by `simulator.explore.shrink_known`, as `explore --shrink` does. `search`
runs the loop, `job` is what a worker process runs, `report` writes the page.
"""
